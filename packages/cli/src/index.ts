export { type CliContext, emit, type OutputOptions } from './context.js';
export { CliError } from './errors.js';
export { ExitCode, type ExitCodeValue } from './exit-codes.js';
export {
  CLI_VERSION,
  type CommandRegistrar,
  createProgram,
  type ProgramOptions,
  runCli,
  toCliError,
} from './program.js';
