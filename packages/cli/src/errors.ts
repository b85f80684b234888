import { ExitCode, type ExitCodeValue } from './exit-codes.js';

/**
 * An error the CLI reports to the user: a stable `code` (printed, and in `--json` output), a message that says
 * what was wrong and what to do, and the process exit code to end with.
 */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: string;
  readonly exitCode: ExitCodeValue;

  constructor(
    code: string,
    message: string,
    exitCode: ExitCodeValue = ExitCode.FAILURE,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.exitCode = exitCode;
  }
}
