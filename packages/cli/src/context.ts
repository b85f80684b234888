import type { Writable } from 'node:stream';

/**
 * What a command needs from the process it runs in. The CLI library never touches `process` itself: the app
 * passes these in, and tests pass their own.
 */
export interface CliContext {
  /** Where human or JSON output goes. */
  stdout: Writable;
  /** Where diagnostics and progress go. */
  stderr: Writable;
  /** Standard input, for `--stdin -`. */
  stdin: NodeJS.ReadableStream;
  /** The environment, read only when a command documents a variable (e.g. `VYR_NODE`, `VYR_TOKEN`). */
  env: Readonly<Record<string, string | undefined>>;
  /** Working directory relative paths resolve against. */
  cwd: string;
  /** Set the exit code the process ends with once the command returns. */
  setExitCode(code: number): void;
  /**
   * Handle the next SIGINT or SIGTERM instead of the process's default (dying at once); returns a function that
   * stops handling it. `vyr run` uses it to cancel its task before it exits. Default (absent): signals are not
   * intercepted.
   */
  onSignal?(handler: SignalHandler): () => void;
}

/** Receives the name of the signal the process got (`SIGINT`, `SIGTERM`). */
export type SignalHandler = (signal: 'SIGINT' | 'SIGTERM') => void;

/** Global output mode chosen with `--json`. */
export interface OutputOptions {
  json: boolean;
}

/** Writes a result: `value` as one JSON line with `--json`, otherwise the human text. */
export function emit(ctx: CliContext, output: OutputOptions, value: unknown, human: string): void {
  if (output.json) ctx.stdout.write(`${JSON.stringify(value)}\n`);
  else if (human.length > 0) ctx.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
}
