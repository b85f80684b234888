/** Every reason a collector operation can fail; stable, printed by the CLI as `vyr: CODE: message`. */
export type CollectorErrorCode =
  /** An option is missing or out of range (e.g. an upstream that is not an http(s) URL). */
  | 'INVALID_OPTIONS'
  /** Another live collector process holds the spool directory. */
  | 'SPOOL_LOCKED'
  /** The spool has no room for a request and the full policy is `refuse` (or nothing can be dropped). */
  | 'SPOOL_FULL'
  /** Writing or syncing the spool failed (disk full, I/O error). */
  | 'SPOOL_IO'
  /** The spool directory holds data this version cannot read. */
  | 'SPOOL_CORRUPT'
  /** The collector is stopping or stopped and takes no more requests. */
  | 'STOPPED'
  /** The listen address is in use or cannot be bound. */
  | 'LISTEN_FAILED';

/**
 * The one error class of `@vyr/collector`: a literal-union {@link CollectorErrorCode}, a message that names the
 * offending value and what to do, and the underlying `cause` when there is one.
 */
export class CollectorError extends Error {
  override readonly name = 'CollectorError';
  readonly code: CollectorErrorCode;

  constructor(code: CollectorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
