/** Ways the node refuses to start or stop. Listed in docs/cli.md. */
export type NodeErrorCode =
  /** A flag is malformed (tier, listen address, URL). */
  | 'INVALID_ARGUMENT'
  /** Listening on a non-loopback address without a bearer token (or with an unreadable token file). */
  | 'INSECURE_LISTEN'
  /** `--allow-unsigned` outside the laptop tier. */
  | 'UNSIGNED_NOT_ALLOWED'
  /** A file the node needs (token, TLS key or certificate, trusted key) cannot be read. */
  | 'FILE_UNREADABLE'
  /** The listen address is in use or not available. */
  | 'LISTEN_FAILED';

/** The one error class of `@vyr/node`. */
export class NodeError extends Error {
  override readonly name = 'NodeError';
  /** Stable code, see {@link NodeErrorCode}. */
  readonly code: NodeErrorCode;
  constructor(code: NodeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}
