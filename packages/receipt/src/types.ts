/**
 * The receipt format: an in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
 * whose one subject is the artifact and whose predicate is VYR's execution record. The schema is versioned by
 * `predicateType`; docs/receipts.md describes every field. Digests are `sha256:<64 lowercase hex>` strings, as
 * everywhere in VYR, except in the statement's `subject` (an in-toto DigestSet, `{ "sha256": "<hex>" }`).
 */

/** `_type` of an in-toto Statement v1. */
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
/** DSSE `payloadType` of an in-toto statement. */
export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** `predicateType` of a VYR execution receipt, version 1. */
export const PREDICATE_TYPE = 'https://vyr.dev/receipt/execution/v1';
/** Media type of the Sigstore bundle that carries a receipt (protobuf-specs bundle v0.3). */
export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

/** `sha256:<64 lowercase hex>`. */
export type Sha256Digest = `sha256:${string}`;

/** Terminal statuses a receipt records. */
export type ReceiptStatus = 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'DEADLINE_EXCEEDED';

/** A stream's digest and length. */
export interface StreamDigest {
  digest: Sha256Digest;
  bytes: number;
}

/** One bound state instance, before and after the task. */
export interface ReceiptState {
  /** Declared slot name. */
  slot: string;
  /** State instance id on the node (`st_…`); differs between nodes. */
  stateId: string;
  /** Access of the binding. */
  access: 'ro' | 'rw';
  /** Content digest when the binding was granted; `null` when the node had no measurement. */
  before: Sha256Digest | null;
  /** Content digest at release (for a node restart: measured at recovery); `null` when it could not be measured. */
  after: Sha256Digest | null;
  /** Bytes of file content at release. */
  bytes: number;
  /** Entries at release. */
  entries: number;
  /** The slot's byte or entry quota was hit. */
  quotaExceeded: boolean;
}

/** The VYR execution predicate, version 1 (docs/receipts.md). */
export interface ExecutionPredicate {
  task: {
    /** Task id (`tk_…`). */
    id: string;
    /** Trace id (32 hex) of the task's trace; `null` when none was recorded. */
    traceId: string | null;
  };
  node: {
    /** Node id (`nd_…`). */
    id: string;
    /** Tier profile: laptop, edge or cloud. */
    tier: string;
    /** Key id (hex SHA-256 of the SPKI DER) of the node key that signs the receipt. */
    keyId: string;
    /** Node software version. */
    version: string;
  };
  artifact: {
    /** `sha256:` digest of the OCI manifest (also the statement's subject). */
    digest: Sha256Digest;
    /** Declared name. */
    name: string;
    /** Declared version. */
    version: string;
  };
  invocation: {
    /** sha256 of the UTF-8 JSON array of the arguments after argv[0] (`JSON.stringify(args)`). */
    args: { digest: Sha256Digest; count: number };
    /** sha256 of the UTF-8 JSON array of `[key, value]` pairs, sorted by key (code unit order); keys in clear. */
    env: { digest: Sha256Digest; keys: string[] };
    /** sha256 of the stdin bytes. */
    stdin: StreamDigest;
  };
  /** Limits in force. */
  limits: { memoryBytes: number; deadlineMs: number | null };
  outcome: {
    status: ReceiptStatus;
    /** Reason code of a non-success end (EXIT_CODE, TRAP, NODE_RESTART, …); `null` on success. */
    reason: string | null;
    /** The guest's exit code; `null` when it did not exit. */
    exitCode: number | null;
  };
  /** Everything the guest wrote; `null` when the node cannot know (the task was live when the node died). */
  output: { stdout: StreamDigest | null; stderr: StreamDigest | null };
  /** Bound state, by slot name. */
  state: ReceiptState[];
  /** RFC 3339 UTC timestamps with milliseconds; `startedAt` is `null` for a task that never ran. */
  time: { createdAt: string; startedAt: string | null; endedAt: string };
}

/** An in-toto Statement v1 with the VYR execution predicate. */
export interface ReceiptStatement {
  _type: typeof STATEMENT_TYPE;
  subject: [{ name: string; digest: { sha256: string } }];
  predicateType: typeof PREDICATE_TYPE;
  predicate: ExecutionPredicate;
}
