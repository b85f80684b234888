#!/usr/bin/env node
// `vyr-node`: the node daemon alone (`vyr-node node start …`), for process supervisors and tests that must not
// load the whole CLI. The `vyr` binary (apps/cli) offers the same command as `vyr node start`.
import { Command, CommanderError } from 'commander';
import { registerNodeCommands } from './commands.js';

const program = new Command('vyr-node').option('--json', 'JSON logs', false).exitOverride();
registerNodeCommands(
  program,
  {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    setExitCode: (c) => {
      process.exitCode = c;
    },
  },
  () => ({ json: Boolean(program.opts().json) }),
);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'INTERNAL';
    process.stderr.write(`vyr-node: ${code}: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
