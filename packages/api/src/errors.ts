import { create } from '@bufbuild/protobuf';
import { Code, ConnectError } from '@connectrpc/connect';
import { type ErrorInfo, ErrorInfoSchema } from '@vyr/proto';
import type { RuntimeErrorCode } from '@vyr/runtime';
import type { StateErrorCode } from '@vyr/state';

/**
 * Ways the API layer itself refuses a request, before any other layer sees it. Stable strings, listed in
 * docs/api.md; other layers' codes (ArtifactError, RuntimeError, StateError) pass through unchanged in
 * {@link ErrorInfo} details.
 */
export type ApiErrorCode =
  /** A field is malformed: a digest that is not `sha256:<64 hex>`, an id of the wrong shape, a bad enum. */
  | 'INVALID_ARGUMENT'
  /** A payload is over the node's limit (artifact upload, stdin, state seed, args, env). */
  | 'TOO_LARGE'
  /** An upload does not follow the header-then-chunks protocol, or its size differs from the header. */
  | 'BAD_UPLOAD'
  /** No task, state instance or artifact with that id. */
  | 'NOT_FOUND'
  /** An idempotency key was reused with a different request. */
  | 'IDEMPOTENCY_MISMATCH'
  /** The request carried no bearer token, or the wrong one. */
  | 'UNAUTHENTICATED'
  /** The node is shutting down. */
  | 'SHUTTING_DOWN'
  /** GetTaskReceipt of a task that has not ended: its receipt is signed when it ends. */
  | 'RECEIPT_NOT_READY'
  /** The node does not implement this RPC (e.g. a node without receipts). */
  | 'UNIMPLEMENTED'
  /** An unexpected failure; the message says what happened. */
  | 'INTERNAL';

/**
 * The one error class of `@vyr/api`, thrown by handlers for refusals of their own. Mapped to a Connect code by
 * {@link toConnectError} like every other layer's error.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  /** Stable code, see {@link ApiErrorCode}. */
  readonly code: ApiErrorCode;
  /** Extra structured context sent in {@link ErrorInfo.metadata}. */
  readonly metadata: Readonly<Record<string, string>>;

  constructor(code: ApiErrorCode, message: string, options?: { cause?: unknown; metadata?: Record<string, string> }) {
    super(message, options);
    this.code = code;
    this.metadata = options?.metadata ?? {};
  }
}

/** Response header carrying the package error code, for clients that do not decode error details (curl). */
export const ERROR_CODE_HEADER = 'vyr-error-code';

type Domain = 'api' | 'artifact' | 'runtime' | 'state';

const API_CODES: Record<ApiErrorCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  TOO_LARGE: Code.InvalidArgument,
  BAD_UPLOAD: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  IDEMPOTENCY_MISMATCH: Code.FailedPrecondition,
  UNAUTHENTICATED: Code.Unauthenticated,
  SHUTTING_DOWN: Code.Unavailable,
  RECEIPT_NOT_READY: Code.FailedPrecondition,
  UNIMPLEMENTED: Code.Unimplemented,
  INTERNAL: Code.Internal,
};

// ArtifactErrorCode (packages/artifact/src/errors.ts). Verification refusals of the trust policy are
// permission_denied; bytes that do not match their digests are a malformed upload (invalid_argument).
const ARTIFACT_CODES: Record<string, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  NOT_WASM: Code.InvalidArgument,
  CONTAINER_IMAGE: Code.InvalidArgument,
  INVALID_WASM: Code.InvalidArgument,
  UNSUPPORTED_IMPORTS: Code.InvalidArgument,
  UNSUPPORTED_WORLD: Code.InvalidArgument,
  INVALID_MANIFEST: Code.InvalidArgument,
  MALFORMED_LAYOUT: Code.InvalidArgument,
  UNSUPPORTED_MEDIA_TYPE: Code.InvalidArgument,
  BLOB_MISSING: Code.InvalidArgument,
  BLOB_DIGEST_MISMATCH: Code.InvalidArgument,
  MANIFEST_TAMPERED: Code.InvalidArgument,
  CONFIG_TAMPERED: Code.InvalidArgument,
  MALFORMED_BUNDLE: Code.InvalidArgument,
  SIGNATURE_INVALID: Code.PermissionDenied,
  MESSAGE_DIGEST_MISMATCH: Code.PermissionDenied,
  UNTRUSTED_KEY: Code.PermissionDenied,
  UNSIGNED: Code.PermissionDenied,
  MALFORMED_KEY: Code.InvalidArgument,
  ALREADY_EXISTS: Code.AlreadyExists,
  NOT_FOUND: Code.NotFound,
  IO_ERROR: Code.Internal,
};

// RuntimeErrorCode (packages/runtime/src/errors.ts). Typed by the code union, so a new runtime code does not compile
// until it is mapped here.
const RUNTIME_CODES: Record<RuntimeErrorCode, Code> = {
  INVALID_ARGUMENT: Code.InvalidArgument,
  NOT_FOUND: Code.NotFound,
  UNTRUSTED: Code.PermissionDenied,
  UNSUPPORTED_ARTIFACT: Code.InvalidArgument,
  RESOURCE_EXHAUSTED: Code.ResourceExhausted,
  CLOSED: Code.Unavailable,
  // Workers keep dying at start-up: the node cannot run tasks now; retrying later may succeed.
  UNAVAILABLE: Code.Unavailable,
  FAILED_PRECONDITION: Code.FailedPrecondition,
  INTERNAL: Code.Internal,
};

// StateErrorCode (packages/state/src/errors.ts), typed like the runtime's.
const STATE_CODES: Record<StateErrorCode, Code> = {
  NOT_FOUND: Code.NotFound,
  ALREADY_EXISTS: Code.AlreadyExists,
  UNDECLARED_SLOT: Code.InvalidArgument,
  ACCESS_WIDER_THAN_DECLARED: Code.PermissionDenied,
  TASK_TERMINATED: Code.FailedPrecondition,
  SLOT_ALREADY_BOUND: Code.FailedPrecondition,
  SCOPE_MISMATCH: Code.FailedPrecondition,
  BINDING_CONFLICT: Code.FailedPrecondition,
  PENDING_TIMEOUT: Code.DeadlineExceeded,
  CANCELLED: Code.Canceled,
  INSTANCE_IN_USE: Code.FailedPrecondition,
  QUOTA_EXCEEDED: Code.ResourceExhausted,
  UNSAFE_SEED_ENTRY: Code.InvalidArgument,
  INVALID_ARGUMENT: Code.InvalidArgument,
  DATA_DIR_LOCKED: Code.Unavailable,
  CLOSED: Code.Unavailable,
  IO_ERROR: Code.Internal,
};

const TABLES: Record<Domain, Record<string, Code>> = {
  api: API_CODES,
  artifact: ARTIFACT_CODES,
  runtime: RUNTIME_CODES,
  state: STATE_CODES,
};

function domainOf(err: Error): Domain | undefined {
  switch (err.name) {
    case 'ApiError':
      return 'api';
    case 'ArtifactError':
      return 'artifact';
    case 'RuntimeError':
      return 'runtime';
    case 'StateError':
      return 'state';
    default:
      return undefined;
  }
}

/**
 * The Connect code for a package error code, or `undefined` when the pair is unknown. Exposed so docs and tests can
 * list the mapping.
 */
export function connectCodeFor(domain: Domain, code: string): Code | undefined {
  return TABLES[domain][code];
}

/**
 * Maps any error thrown below the API to a ConnectError, once, at the edge (STYLE.md "Errors"). Package errors keep
 * their code in an {@link ErrorInfo} detail and in the `vyr-error-code` header; a runtime error caused by an artifact
 * or state error reports the underlying, more precise code. Anything else becomes `internal` with code INTERNAL.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return malformedAsInvalid(err);
  if (!(err instanceof Error)) return build('INTERNAL', 'api', String(err), Code.Internal, {}, err);
  // The runtime wraps verification failures; the artifact code says more (UNTRUSTED_KEY vs UNSIGNED).
  let source: Error = err;
  const cause = (err as { cause?: unknown }).cause;
  if (err.name === 'RuntimeError' && cause instanceof Error && domainOf(cause) !== undefined) {
    const mapped = connectCodeFor(domainOf(cause) as Domain, (cause as { code?: string }).code ?? '');
    if (mapped !== undefined && mapped !== Code.Internal) source = cause;
  }
  const domain = domainOf(source);
  const code = (source as { code?: unknown }).code;
  if (domain === undefined || typeof code !== 'string') {
    return build('INTERNAL', 'api', err.message, Code.Internal, {}, err);
  }
  const connectCode = connectCodeFor(domain, code) ?? Code.Internal;
  const metadata = source instanceof ApiError ? { ...source.metadata } : {};
  // Keep the outer message when we switched to the cause: it usually names the task or artifact.
  return build(code, domain, err.message, connectCode, metadata, err);
}

/**
 * connect-es reports a request message that is not valid protobuf as `internal` ("parse binary: …", its
 * serialization treats both directions alike), and so a stream envelope flagged compressed when no compression was
 * negotiated, while a malformed JSON message is `invalid_argument`. A client's bad bytes are not a server failure:
 * they become `invalid_argument` here too.
 */
export function malformedAsInvalid(err: ConnectError): ConnectError {
  if (err.code !== Code.Internal) return err;
  const m = err.rawMessage;
  let message: string;
  if (m.startsWith('parse binary: ')) {
    message = `the request message is not valid protobuf (${m.slice('parse binary: '.length)})`;
  } else if (m.startsWith('received compressed envelope')) {
    message = `a request envelope is flagged compressed but no compression was negotiated (${m})`;
  } else {
    return err;
  }
  return build('MALFORMED_MESSAGE', 'api', message, Code.InvalidArgument, {}, err);
}

function build(
  code: string,
  domain: Domain,
  message: string,
  connectCode: Code,
  metadata: Record<string, string>,
  cause: unknown,
): ConnectError {
  const info: ErrorInfo = create(ErrorInfoSchema, { code, domain, metadata });
  return new ConnectError(
    message,
    connectCode,
    { [ERROR_CODE_HEADER]: code },
    [{ desc: ErrorInfoSchema, value: info }],
    cause,
  );
}
