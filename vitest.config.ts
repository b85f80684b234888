import { existsSync, readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// One root run over every package and app; each keeps its tests in `test/` (one placement for the repo).
const projectDirs = [
  ...['packages', 'apps', 'examples'].flatMap((group) =>
    readdirSync(group)
      .map((name) => `${group}/${name}`)
      .filter((dir) => existsSync(`${dir}/test`)),
  ),
  // bench/test: `make bench QUICK=1` and the whitepaper generated from a results file (no timing assertions).
  ...(existsSync('bench/test') ? ['bench'] : []),
];

export default defineConfig({
  test: {
    reporters: ['default', './scripts/summary-reporter.ts'],
    projects: projectDirs.map((dir) => ({
      extends: true,
      test: { name: dir, root: dir, include: ['test/**/*.test.ts'] },
    })),
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests start real processes, workers and servers; the machine has two cores.
    maxWorkers: 2,
    passWithNoTests: false,
  },
});
