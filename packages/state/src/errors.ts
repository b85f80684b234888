/**
 * Every way a state-kernel call can fail. The API layer maps each code once to a Connect code; the CLI prints the
 * code and the message.
 */
export type StateErrorCode =
  /** No live instance (or task) with that id; also an instance whose TTL has passed. */
  | 'NOT_FOUND'
  /** A named instance with that name already exists. */
  | 'ALREADY_EXISTS'
  /** The slot is not among the slots the task's artifact declares. */
  | 'UNDECLARED_SLOT'
  /** `rw` was requested for a slot the artifact declares `ro`. */
  | 'ACCESS_WIDER_THAN_DECLARED'
  /** The task has already ended (released); it can get no more bindings or task-scoped instances. */
  | 'TASK_TERMINATED'
  /** The task already has (or is waiting for) a binding for that slot. */
  | 'SLOT_ALREADY_BOUND'
  /** A task-scoped instance was bound to a task other than the one that owns it. */
  | 'SCOPE_MISMATCH'
  /** Single-writer rule: the instance is held in a conflicting mode and the policy is `refuse` (or waiting would deadlock the task on itself). */
  | 'BINDING_CONFLICT'
  /** A bind (or readiness wait) did not complete within its timeout: the task stayed PENDING too long. */
  | 'PENDING_TIMEOUT'
  /** A waiting bind was cancelled through its `AbortSignal`. */
  | 'CANCELLED'
  /** The instance is bound (or being exported) and cannot be deleted / exported right now. */
  | 'INSTANCE_IN_USE'
  /** A seed is larger than the instance's byte or entry quota. */
  | 'QUOTA_EXCEEDED'
  /** A seed holds an entry that could reach outside the instance: `..`, an absolute path, a device/FIFO/socket, a link leading outside. */
  | 'UNSAFE_SEED_ENTRY'
  /** A malformed argument: bad id, slot declaration, path, quota or TTL. */
  | 'INVALID_ARGUMENT'
  /** Another live process holds the data directory. */
  | 'DATA_DIR_LOCKED'
  /** The kernel was closed. */
  | 'CLOSED'
  /** A filesystem or registry operation failed; `cause` holds the underlying error. */
  | 'IO_ERROR';

/**
 * The one error class of `@vyr/state`. `code` is stable and machine-readable; `message` names the offending value
 * and says what to do.
 *
 * @example
 * ```ts
 * try { await kernel.bind(req) } catch (err) {
 *   if (err instanceof StateError && err.code === 'BINDING_CONFLICT') …
 * }
 * ```
 */
export class StateError extends Error {
  /** Machine-readable reason. */
  readonly code: StateErrorCode;

  constructor(code: StateErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateError';
    this.code = code;
  }
}

/** Wraps a non-StateError failure of a filesystem/registry call as `IO_ERROR`, keeping StateErrors unchanged. */
export function asStateError(err: unknown, what: string): StateError {
  if (err instanceof StateError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new StateError('IO_ERROR', `${what}: ${detail}`, { cause: err });
}
