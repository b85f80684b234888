/**
 * Every way a receipt is refused. Stable strings: the CLI prints them (`vyr receipt verify`), docs/receipts.md
 * lists them.
 */
export type ReceiptErrorCode =
  /** A caller-supplied argument is unusable (not a receipt fact, an unknown slot). */
  | 'INVALID_ARGUMENT'
  /** The receipt is not JSON, or not a Sigstore bundle v0.3 with exactly one DSSE signature and nothing else. */
  | 'MALFORMED_RECEIPT'
  /** The bundle's media type is not `application/vnd.dev.sigstore.bundle.v0.3+json`. */
  | 'UNSUPPORTED_MEDIA_TYPE'
  /** The DSSE payload type is not `application/vnd.in-toto+json`. */
  | 'UNSUPPORTED_PAYLOAD_TYPE'
  /** The node key given to verify with is not a PEM ECDSA P-256 public key. */
  | 'MALFORMED_KEY'
  /** The receipt names another signing key than the one given: it was made by another node (or its hint altered). */
  | 'KEY_MISMATCH'
  /** The DSSE signature does not verify with the node key: the receipt (payload, type or signature) was altered. */
  | 'SIGNATURE_INVALID'
  /** The signed payload is not an in-toto Statement v1 with one subject and a VYR execution predicate of this version. */
  | 'MALFORMED_STATEMENT'
  /** The predicate type is not one this verifier knows (`https://vyr.dev/receipt/execution/v1`). */
  | 'UNSUPPORTED_PREDICATE'
  /** The artifact given is not the receipt's subject (or could not be read as an artifact: the cause says why). */
  | 'ARTIFACT_MISMATCH'
  /** The stdout given does not hash to the receipt's stdout digest (or the receipt recorded no stdout). */
  | 'STDOUT_MISMATCH'
  /** The stderr given does not hash to the receipt's stderr digest (or the receipt recorded no stderr). */
  | 'STDERR_MISMATCH'
  /** The stdin given does not hash to the receipt's stdin digest. */
  | 'STDIN_MISMATCH'
  /** An exported state directory does not have the digest the receipt recorded at release. */
  | 'STATE_MISMATCH'
  /** The receipt store could not be read or written. */
  | 'STORE_ERROR'
  /** A file could not be read. */
  | 'IO_ERROR';

/** The one error class of `@vyr/receipt`. */
export class ReceiptError extends Error {
  override readonly name = 'ReceiptError';
  /** Stable code, see {@link ReceiptErrorCode}. */
  readonly code: ReceiptErrorCode;

  constructor(code: ReceiptErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True for a {@link ReceiptError} (also across package copies: compares the name). */
export function isReceiptError(err: unknown): err is ReceiptError {
  return err instanceof Error && err.name === 'ReceiptError' && typeof (err as { code?: unknown }).code === 'string';
}
