export { type CliContext, emit, type OutputOptions, type SignalHandler } from './context.js';
export { CliError, type ErrorContext, toCliError } from './errors.js';
export { ExitCode, type ExitCodeValue, exitCodeFor } from './exit-codes.js';
export { readInputFile, readSecretFile } from './files.js';
export { formatBytes, table } from './format.js';
export { type CliLogger, type CliLogLevel, createStreamLogger } from './logger.js';
export { parseDuration, parseListen, parseSize } from './parse.js';
export { CLI_VERSION, type CommandRegistrar, createProgram, type ProgramOptions, runCli } from './program.js';
