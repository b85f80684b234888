/** Ways the node refuses to start or stop. Listed, with their exit codes, in docs/cli.md ("Node daemon"). */
export type NodeErrorCode =
  /** A flag is malformed (tier, listen address, OTLP URL, a number). */
  | 'INVALID_ARGUMENT'
  /** Listening on a non-loopback address without a bearer token. */
  | 'INSECURE_LISTEN'
  /** `--allow-unsigned` outside the laptop tier. */
  | 'UNSIGNED_NOT_ALLOWED'
  /** A file the node needs (token, TLS key or certificate, trusted key) does not exist. */
  | 'FILE_NOT_FOUND'
  /** A file the node needs exists but cannot be read. */
  | 'FILE_UNREADABLE'
  /** A file the node needs holds no usable content: an empty token, a PEM that does not parse, a key not of its certificate. */
  | 'INVALID_FILE'
  /** The data directory cannot be created or written. */
  | 'DATA_DIR_UNUSABLE'
  /** Another live node process uses the data directory. */
  | 'DATA_DIR_LOCKED'
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

/**
 * Exit code of `vyr node start` for each {@link NodeErrorCode}: the values of the `vyr` exit-code table (docs/cli.md,
 * sysexits.h), repeated here because `@vyr/node` must not depend on `@vyr/cli` (ARCHITECTURE.md §1).
 */
export const NODE_EXIT_CODES: Readonly<Record<NodeErrorCode, number>> = {
  INVALID_ARGUMENT: 2, // usage
  INSECURE_LISTEN: 2, // usage: add --token-file or listen on loopback
  UNSIGNED_NOT_ALLOWED: 2, // usage
  FILE_NOT_FOUND: 66, // not found
  INVALID_FILE: 64, // invalid input
  FILE_UNREADABLE: 74, // I/O error
  DATA_DIR_UNUSABLE: 74, // I/O error
  DATA_DIR_LOCKED: 73, // already exists: a node already runs on it
  LISTEN_FAILED: 69, // unavailable
};

/** Exit code for anything `vyr node start` throws: a {@link NodeError}'s documented code, otherwise 1. */
export function nodeExitCode(err: unknown): number {
  return err instanceof NodeError ? NODE_EXIT_CODES[err.code] : 1;
}
