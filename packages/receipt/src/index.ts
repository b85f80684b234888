/**
 * `@vyr/receipt`: signed execution receipts. A receipt is an in-toto Statement v1 of what one task run did (artifact,
 * invocation digests, outcome, output and state digests, limits, times, trace id), in a DSSE envelope inside a
 * Sigstore bundle v0.3, signed with the node's own key and verified offline. Format: docs/receipts.md.
 *
 * @packageDocumentation
 */

export {
  CONTEXT_FIELDS,
  type ComparedField,
  compareReceipts,
  type ReceiptComparison,
  RUN_FIELDS,
} from './compare.js';
export { isReceiptError, ReceiptError, type ReceiptErrorCode } from './errors.js';
export { signReceipt } from './sign.js';
export {
  buildStatement,
  digestArgs,
  digestEnv,
  digestStream,
  type ReceiptFacts,
  StreamHasher,
  sha256Of,
} from './statement.js';
export {
  openReceiptStore,
  type ReceiptDraft,
  type ReceiptRow,
  type ReceiptStore,
  type ReceiptStoreOptions,
} from './store.js';
export {
  BUNDLE_MEDIA_TYPE,
  type ExecutionPredicate,
  PAYLOAD_TYPE,
  PREDICATE_TYPE,
  type ReceiptState,
  type ReceiptStatement,
  type ReceiptStatus,
  type Sha256Digest,
  STATEMENT_TYPE,
  type StreamDigest,
} from './types.js';
export {
  type BytesOrFile,
  type ParsedReceipt,
  parseReceipt,
  type StateExportCheck,
  type VerifiedReceipt,
  type VerifyReceiptOptions,
  verifyReceipt,
} from './verify.js';
