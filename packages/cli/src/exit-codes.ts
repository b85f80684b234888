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
  /** An input was malformed: a file, a manifest, a key, a size, an id. */
  INVALID_INPUT: 64,
  /** Verification refused the artifact: digest mismatch, bad or untrusted signature, unsigned. */
  VERIFY_FAILED: 65,
  /** A named thing does not exist: file, artifact, task, state instance. */
  NOT_FOUND: 66,
  /** The node or collector could not be reached. */
  UNAVAILABLE: 69,
  /** Something already exists and `--force` was not given. */
  ALREADY_EXISTS: 73,
  /** A local file or directory could not be read or written (e.g. a collector spool). */
  IO_ERROR: 74,
  /** The node refused for lack of capacity (queue full, quota); retry later. */
  RESOURCE_EXHAUSTED: 75,
  /** The node refused the request: untrusted artifact, missing or wrong token, conflicting binding. */
  PERMISSION_DENIED: 77,
  /** The task trapped or failed without an exit code of its own. */
  TASK_FAILED: 125,
  /** The task's deadline passed. */
  DEADLINE_EXCEEDED: 124,
  /** The task was cancelled. */
  CANCELLED: 130,
} as const;

/** One of {@link ExitCode}'s values. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];
