import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';
import type { CliContext, OutputOptions } from './context.js';
import { toCliError } from './errors.js';
import { ExitCode } from './exit-codes.js';
import { outOfScope } from './non-goals.js';

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
  for (const cmd of program.commands) {
    const group = HELP_GROUPS.find(([, names]) => names.includes(cmd.name()));
    if (group !== undefined) cmd.helpGroup(group[0]);
  }
  return program;
}

/** `vyr --help` lists commands by what a user does, in the order of the full cycle. */
const HELP_GROUPS: readonly (readonly [string, readonly string[]])[] = [
  ['Build and sign artifacts (offline):', ['key', 'pack', 'sign', 'verify', 'inspect']],
  ['Run work on a node:', ['import', 'artifacts', 'run', 'cancel', 'task', 'state']],
  ['Observe and prove:', ['traces', 'metrics', 'receipt']],
  ['Operate:', ['node', 'collector']],
];

/** True when `--json` is among the global options: before `--`, where task arguments begin. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

function reportError(ctx: CliContext, json: boolean, code: string, message: string): void {
  if (json) ctx.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  ctx.stderr.write(`vyr: ${code}: ${message}\n`);
}

/**
 * Parses `argv` (without the node and script entries) and runs the command. Returns the exit code; never exits
 * the process. Errors become one line `vyr: CODE: message` on stderr, and with `--json` also a JSON error object
 * `{"error":{"code","message"}}` on stdout — usage errors found by the parser included (code `USAGE`, exit 2).
 */
export async function runCli(argv: readonly string[], options: ProgramOptions): Promise<number> {
  const ctx = options.context;
  let exitCode: number = ExitCode.OK;
  const wrapped: CliContext = { ...ctx, setExitCode: (code) => (exitCode = code) };
  const json = wantsJson(argv);
  // With --json the parser's own "error: …" line is replaced by the JSON object and our one-line form.
  const program = createProgram({ ...options, context: wrapped });
  program.exitOverride();
  if (json) {
    for (const cmd of allCommands(program)) {
      cmd.configureOutput({
        writeOut: (s) => ctx.stdout.write(s),
        writeErr: () => {},
        outputError: () => {},
      });
      cmd.showHelpAfterError(false);
    }
  }
  try {
    const refused = outOfScope(argv);
    if (refused !== undefined) throw refused;
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return ExitCode.OK;
      }
      if (json) reportError(ctx, true, 'USAGE', err.message.replace(/^error: /, ''));
      return ExitCode.USAGE;
    }
    const cliError = toCliError(err);
    reportError(ctx, json, cliError.code, cliError.message);
    return cliError.exitCode;
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}
