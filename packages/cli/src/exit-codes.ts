import { VERIFICATION_CODES } from '@vyr/artifact';

/**
 * Documented exit codes of the `vyr` command (docs/cli.md). Chosen after sysexits.h so scripts can tell a bad
 * input from an unreachable node from a refused artifact. `vyr run` exits with the task's own exit code when the
 * task ran to an exit; the codes below cover everything else.
 */
export const ExitCode = {
  /** Success. */
  OK: 0,
  /** A failure with no more specific code. */
  FAILURE: 1,
  /** Wrong command-line usage (unknown flag, missing argument). */
  USAGE: 2,
  /** An input was malformed or too large: a file, a manifest, a key, a size, an id, a request over a limit. */
  INVALID_INPUT: 64,
  /** Verification refused the artifact: digest mismatch, bad or untrusted signature, unsigned. */
  VERIFY_FAILED: 65,
  /** A named thing does not exist: file, artifact, task, state instance. */
  NOT_FOUND: 66,
  /** The node or collector could not be reached, or the connection to it was lost. */
  UNAVAILABLE: 69,
  /** Something already exists and `--force` was not given. */
  ALREADY_EXISTS: 73,
  /** A local file or directory could not be read or written (e.g. a collector spool). */
  IO_ERROR: 74,
  /** The node refused for lack of capacity (queue full, quota); retry later. */
  RESOURCE_EXHAUSTED: 75,
  /**
   * `vyr run`: the task ended with exit 0 but the node dropped part of its output (the reader was too slow or
   * attached late), so what was printed is incomplete. sysexits' EX_PROTOCOL.
   */
  OUTPUT_LOST: 76,
  /** The node refused the request: untrusted artifact, missing or wrong token, conflicting binding. */
  PERMISSION_DENIED: 77,
  /** The task trapped or failed without an exit code of its own. */
  TASK_FAILED: 125,
  /** The task's deadline passed. */
  DEADLINE_EXCEEDED: 124,
  /** The task was cancelled, or `vyr run` was interrupted (SIGINT/SIGTERM) and cancelled it. */
  CANCELLED: 130,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

// Codes with the same meaning wherever they come from (a local package or the node's ErrorInfo detail).
const VERIFY = new Set<string>([...VERIFICATION_CODES, 'MALFORMED_BUNDLE', 'UNTRUSTED']);

// Precise codes of a node's answer that override its Connect code.
const REMOTE: Record<string, ExitCodeValue> = {
  TOO_LARGE: ExitCode.INVALID_INPUT,
};

// Connect code of a node's answer → exit code.
const BY_CONNECT_CODE: Record<string, ExitCodeValue> = {
  invalid_argument: ExitCode.INVALID_INPUT,
  out_of_range: ExitCode.INVALID_INPUT,
  not_found: ExitCode.NOT_FOUND,
  already_exists: ExitCode.ALREADY_EXISTS,
  permission_denied: ExitCode.PERMISSION_DENIED,
  unauthenticated: ExitCode.PERMISSION_DENIED,
  failed_precondition: ExitCode.PERMISSION_DENIED,
  resource_exhausted: ExitCode.RESOURCE_EXHAUSTED,
  unavailable: ExitCode.UNAVAILABLE,
  deadline_exceeded: ExitCode.UNAVAILABLE,
};

// Codes of errors raised in this process: @vyr/artifact and @vyr/collector. (`vyr node start` sets its own exit code,
// NODE_EXIT_CODES of @vyr/node, which uses the same table.)
const LOCAL: Record<string, ExitCodeValue> = {
  // Malformed or unsupported input (artifact).
  INVALID_ARGUMENT: ExitCode.INVALID_INPUT,
  NOT_WASM: ExitCode.INVALID_INPUT,
  CONTAINER_IMAGE: ExitCode.INVALID_INPUT,
  INVALID_WASM: ExitCode.INVALID_INPUT,
  UNSUPPORTED_IMPORTS: ExitCode.INVALID_INPUT,
  UNSUPPORTED_WORLD: ExitCode.INVALID_INPUT,
  INVALID_MANIFEST: ExitCode.INVALID_INPUT,
  MALFORMED_LAYOUT: ExitCode.INVALID_INPUT,
  UNSUPPORTED_MEDIA_TYPE: ExitCode.INVALID_INPUT,
  MALFORMED_KEY: ExitCode.INVALID_INPUT,
  TOO_LARGE: ExitCode.INVALID_INPUT,
  NOT_FOUND: ExitCode.NOT_FOUND,
  ALREADY_EXISTS: ExitCode.ALREADY_EXISTS,
  IO_ERROR: ExitCode.IO_ERROR,
  // Collector (docs/collector.md).
  INVALID_OPTIONS: ExitCode.USAGE,
  SPOOL_IO: ExitCode.IO_ERROR,
  SPOOL_LOCKED: ExitCode.ALREADY_EXISTS,
  LISTEN_FAILED: ExitCode.UNAVAILABLE,
  SPOOL_FULL: ExitCode.RESOURCE_EXHAUSTED,
  // Node.js system errors of local files.
  ENOENT: ExitCode.NOT_FOUND,
  EEXIST: ExitCode.ALREADY_EXISTS,
  EACCES: ExitCode.IO_ERROR,
  EPERM: ExitCode.IO_ERROR,
  EISDIR: ExitCode.IO_ERROR,
  ENOTDIR: ExitCode.IO_ERROR,
  ENOSPC: ExitCode.IO_ERROR,
  EIO: ExitCode.IO_ERROR,
  EROFS: ExitCode.IO_ERROR,
};

/**
 * The one mapping from an error code to the documented exit code (docs/cli.md "Exit codes").
 *
 * - Verification refusals (`UNTRUSTED_KEY`, `UNSIGNED`, tampered blobs …) exit 65 wherever they were found.
 * - With `connectCode` (the node answered with an error): a few precise codes first (`TOO_LARGE` → 64), then the
 *   Connect code (`not_found` → 66, `permission_denied`/`unauthenticated`/`failed_precondition` → 77, …).
 * - Without it (an error of this process): the code of `@vyr/artifact`, `@vyr/collector` or a Node.js system
 *   error (`ENOENT` → 66).
 *
 * Anything else is 1.
 */
export function exitCodeFor(code: string, connectCode?: string): ExitCodeValue {
  if (VERIFY.has(code)) return ExitCode.VERIFY_FAILED;
  if (connectCode !== undefined) return REMOTE[code] ?? BY_CONNECT_CODE[connectCode] ?? ExitCode.FAILURE;
  return LOCAL[code] ?? ExitCode.FAILURE;
}
