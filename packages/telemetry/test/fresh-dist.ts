import { readdirSync, statSync } from 'node:fs';

/**
 * The tests import the package's built `dist/`. Running vitest alone after editing `src/` would test stale code, so
 * importing this module throws when a source file is newer than its build output.
 */
const src = new URL('../src/', import.meta.url);
const dist = new URL('../dist/', import.meta.url);
const stale = readdirSync(src).filter((name) => {
  if (!name.endsWith('.ts')) return false;
  let builtAt = 0;
  try {
    builtAt = statSync(new URL(name.replace(/\.ts$/, '.js'), dist)).mtimeMs;
  } catch {
    builtAt = 0;
  }
  return statSync(new URL(name, src)).mtimeMs > builtAt;
});
if (stale.length > 0) {
  throw new Error(
    `packages/telemetry/dist is older than src/${stale.join(', src/')}: run \`pnpm -F @vyr/telemetry build\` before the tests`,
  );
}
