#!/usr/bin/env node
import { runCli } from '@vyr/cli';
import { registerNodeCommands } from '@vyr/node';
import { registerCollectorCommands } from './collector.js';

// The `vyr` binary: the composition root that owns the process (stdout, stderr, exit code).
const code = await runCli(process.argv.slice(2), {
  context: {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    setExitCode: (c) => {
      process.exitCode = c;
    },
  },
  extraCommands: [registerCollectorCommands, registerNodeCommands],
});
process.exitCode = code;
