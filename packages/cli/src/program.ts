import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';
import type { CliContext, OutputOptions } from './context.js';
import { CliError } from './errors.js';
import { ExitCode } from './exit-codes.js';

/** Version printed by `vyr --version`. */
export const CLI_VERSION = '0.1.0';

/** A command group contributed by an app (e.g. `vyr node …`, `vyr collector …`). */
export type CommandRegistrar = (program: Command, ctx: CliContext, output: () => OutputOptions) => void;

/** Options of {@link createProgram}. */
export interface ProgramOptions {
  /** The process the commands talk to. */
  context: CliContext;
  /** Extra command groups registered after the built-in ones. Default: none. */
  extraCommands?: readonly CommandRegistrar[];
}

/** Builds the `vyr` command tree. Parse with {@link runCli} to get errors mapped to exit codes. */
export function createProgram(options: ProgramOptions): Command {
  const { context: ctx } = options;
  const program = new Command('vyr')
    .description('VYR: one signed Wasm artifact, executed the same on laptop, edge and cloud')
    .version(CLI_VERSION)
    .option('--json', 'machine-readable output: one JSON document per result', false)
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
    });
  const output = (): OutputOptions => ({ json: Boolean(program.opts().json) });
  registerCommands(program, ctx, output);
  for (const register of options.extraCommands ?? []) register(program, ctx, output);
  return program;
}

/**
 * Parses `argv` (without the node and script entries) and runs the command. Returns the exit code; never exits
 * the process. Errors become one line `vyr: CODE: message` on stderr (or a JSON error object with `--json`).
 */
export async function runCli(argv: readonly string[], options: ProgramOptions): Promise<number> {
  const ctx = options.context;
  let exitCode: number = ExitCode.OK;
  const wrapped: CliContext = { ...ctx, setExitCode: (code) => (exitCode = code) };
  const program = createProgram({ ...options, context: wrapped });
  program.exitOverride();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return ExitCode.OK;
      }
      return ExitCode.USAGE;
    }
    const json = argv.includes('--json');
    const cliError = toCliError(err);
    if (json) {
      ctx.stdout.write(`${JSON.stringify({ error: { code: cliError.code, message: cliError.message } })}\n`);
    }
    ctx.stderr.write(`vyr: ${cliError.code}: ${cliError.message}\n`);
    return cliError.exitCode;
  }
}

/** Maps any thrown value to a {@link CliError}; package errors keep their `code`. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(code, message, ExitCode.FAILURE, { cause: err });
}
