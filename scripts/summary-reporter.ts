import { mkdirSync, writeFileSync } from 'node:fs';
import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with the plain closing line `N passed, N failed[, N skipped]` that CI reads, and keeps a copy in
 * `.vyr/test-summary` so `.ci/run` can repeat it as its last line. A test file that fails to load counts as one
 * failure, so a broken import can never look like a green run.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    let skipped = 0;
    for (const module of testModules) {
      let tests = 0;
      for (const test of module.children.allTests()) {
        tests++;
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (tests === 0 || module.state() === 'failed') {
        if (module.errors().length > 0) failed++;
      }
    }
    const line = `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`;
    mkdirSync('.vyr', { recursive: true });
    writeFileSync('.vyr/test-summary', `${line}\n`);
    process.stdout.write(`\n${line}\n`);
  }
}
