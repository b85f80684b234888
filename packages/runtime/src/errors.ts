/**
 * Every way the runtime refuses a request. Stable strings: the API maps them once to Connect codes and keeps them
 * in error details; docs/runtime.md lists them.
 */
export type RuntimeErrorCode =
  /** A submit or option field is unusable (empty digest, relative guest path, negative limit, unknown key). */
  | 'INVALID_ARGUMENT'
  /** No artifact or task with that id. */
  | 'NOT_FOUND'
  /** The artifact failed verification: unsigned, signed by an untrusted key, or tampered. */
  | 'UNTRUSTED'
  /** The artifact is readable but cannot run here (not a command component, transpile failed). */
  | 'UNSUPPORTED_ARTIFACT'
  /** The queue is full: admission refused the task instead of slowing every other task. */
  | 'RESOURCE_EXHAUSTED'
  /** The runtime was closed. */
  | 'CLOSED'
  /** The runtime cannot run tasks now: its workers keep dying at startup (`warmUp()` retries). */
  | 'UNAVAILABLE'
  /** A task is already finished and the operation needs a live one. */
  | 'FAILED_PRECONDITION'
  /** A bug or an unexpected host failure; the message says what happened. */
  | 'INTERNAL';

/**
 * The one error class of `@vyr/runtime`. `code` is stable and machine-readable; `message` names the offending value
 * and what to do; `cause` keeps the underlying error (for example the `ArtifactError` of a failed verification).
 *
 * @example
 * throw new RuntimeError('RESOURCE_EXHAUSTED', 'queue is full (64 tasks waiting); retry later');
 */
export class RuntimeError extends Error {
  override readonly name = 'RuntimeError';
  /** Stable code, see {@link RuntimeErrorCode}. */
  readonly code: RuntimeErrorCode;

  constructor(code: RuntimeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Whether `err` is a {@link RuntimeError} (optionally with the given code). */
export function isRuntimeError(err: unknown, code?: RuntimeErrorCode): err is RuntimeError {
  return err instanceof RuntimeError && (code === undefined || err.code === code);
}
