#!/usr/bin/env node
import { runCli, type SignalHandler } from '@vyr/cli';
import { registerNodeCommands } from '@vyr/node';
import { registerCollectorCommands } from './collector.js';

// The `vyr` binary: the composition root that owns the process (stdout, stderr, signals, exit code).

/** Handles the next SIGINT/SIGTERM with `handler` instead of dying; the returned function stops that. */
function onSignal(handler: SignalHandler): () => void {
  const int = (): void => handler('SIGINT');
  const term = (): void => handler('SIGTERM');
  process.once('SIGINT', int);
  process.once('SIGTERM', term);
  return () => {
    process.off('SIGINT', int);
    process.off('SIGTERM', term);
  };
}

/** Resolves once everything written to `stream` so far has been handed to the OS. */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) resolve();
    else stream.write('', () => resolve());
  });
}

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
    onSignal,
  },
  extraCommands: [registerCollectorCommands, registerNodeCommands],
});
// The command is done: exit now rather than when the event loop drains, so nothing left behind (a socket a
// refused upload still writes to, a stdin reader, a timer of a library) can keep `vyr` running.
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
