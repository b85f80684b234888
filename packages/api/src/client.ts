/**
 * `@vyr/api/client`: a NodeService client for other processes (the CLI, tests, benchmarks). Imports only the
 * generated service and connect-node, never the runtime.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import { type Client, Code, ConnectError, createClient, type Interceptor, type Transport } from '@connectrpc/connect';
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
  type Http2SessionManager,
} from '@connectrpc/connect-node';
import { type ErrorInfo, ErrorInfoSchema, NodeService } from '@vyr/proto';

/** The generated NodeService client. */
export type NodeClient = Client<typeof NodeService>;

/** Options of {@link createNodeClient}. */
export interface NodeClientOptions {
  /** The node's URL, e.g. `http://127.0.0.1:7070`. */
  baseUrl: string;
  /** Bearer token; default none. */
  token?: string;
  /** `1.1` or `2`; default `1.1`. gRPC always uses HTTP/2. */
  httpVersion?: '1.1' | '2';
  /** Wire protocol; default `connect`. */
  protocol?: 'connect' | 'grpc' | 'grpc-web';
  /** Protobuf binary (default) or JSON; gRPC is always binary. */
  useBinaryFormat?: boolean;
  /** Extra interceptors (e.g. to add a traceparent). */
  interceptors?: Interceptor[];
  /** Largest message accepted from the node in bytes; default 64 MiB. */
  readMaxBytes?: number;
  /** PEM CA certificate(s) to trust for an `https://` node (e.g. a self-signed node certificate); default: system CAs. */
  ca?: string | Buffer;
  /**
   * HTTP/2 sessions to use instead of ones the transport makes itself, so the caller can close them
   * (`abort()`); they carry their own TLS options. Default: the transport's own.
   */
  sessionManager?: Http2SessionManager;
  /** HTTP/1.1 agent to use, so the caller can close its sockets (`destroy()`). Default: Node's global agent. */
  agent?: HttpAgent | HttpsAgent;
}

/** Creates the transport {@link createNodeClient} uses; exposed for callers that build their own clients. */
export function createNodeTransport(options: NodeClientOptions): Transport {
  const interceptors: Interceptor[] = [...(options.interceptors ?? [])];
  const token = options.token;
  if (token !== undefined && token.length > 0) {
    interceptors.unshift((next) => async (req) => {
      req.header.set('authorization', `Bearer ${token}`);
      return next(req);
    });
  }
  const readMaxBytes = options.readMaxBytes ?? 64 * 1024 * 1024;
  const protocol = options.protocol ?? 'connect';
  const nodeOptions =
    options.ca !== undefined || options.agent !== undefined
      ? {
          nodeOptions: {
            ...(options.ca !== undefined ? { ca: options.ca } : {}),
            ...(options.agent !== undefined ? { agent: options.agent } : {}),
          },
        }
      : {};
  const sessionManager = options.sessionManager !== undefined ? { sessionManager: options.sessionManager } : {};
  if (protocol === 'grpc') {
    return createGrpcTransport({
      baseUrl: options.baseUrl,
      interceptors,
      readMaxBytes,
      ...nodeOptions,
      ...sessionManager,
    });
  }
  const httpVersion = options.httpVersion ?? '1.1';
  const common = {
    baseUrl: options.baseUrl,
    httpVersion,
    interceptors,
    readMaxBytes,
    useBinaryFormat: options.useBinaryFormat ?? true,
    ...nodeOptions,
    ...sessionManager,
  } as const;
  return protocol === 'grpc-web' ? createGrpcWebTransport(common) : createConnectTransport(common);
}

/** Creates a NodeService client for the node at `options.baseUrl`. */
export function createNodeClient(options: NodeClientOptions): NodeClient {
  return createClient(NodeService, createNodeTransport(options));
}

/** What a failed call said, decoded for display and exit codes. */
export interface NodeCallError {
  /** Connect code name, e.g. `not_found`. */
  connectCode: string;
  /** The numeric Connect code. */
  code: Code;
  /** Package error code from the node's ErrorInfo detail (e.g. UNTRUSTED_KEY), or the Connect code in capitals. */
  errorCode: string;
  /** Layer that refused: api, artifact, runtime, state; `transport` when the node was not reached. */
  domain: string;
  /** The node's message. */
  message: string;
  metadata: Record<string, string>;
}

const CODE_NAMES: Record<number, string> = {
  [Code.Canceled]: 'canceled',
  [Code.Unknown]: 'unknown',
  [Code.InvalidArgument]: 'invalid_argument',
  [Code.DeadlineExceeded]: 'deadline_exceeded',
  [Code.NotFound]: 'not_found',
  [Code.AlreadyExists]: 'already_exists',
  [Code.PermissionDenied]: 'permission_denied',
  [Code.ResourceExhausted]: 'resource_exhausted',
  [Code.FailedPrecondition]: 'failed_precondition',
  [Code.Aborted]: 'aborted',
  [Code.OutOfRange]: 'out_of_range',
  [Code.Unimplemented]: 'unimplemented',
  [Code.Internal]: 'internal',
  [Code.Unavailable]: 'unavailable',
  [Code.DataLoss]: 'data_loss',
  [Code.Unauthenticated]: 'unauthenticated',
};

/** Decodes any error of a NodeService call into a {@link NodeCallError}. */
export function describeCallError(err: unknown): NodeCallError {
  const ce = ConnectError.from(err);
  let info: ErrorInfo | undefined;
  try {
    info = ce.findDetails(ErrorInfoSchema)[0];
  } catch {
    info = undefined;
  }
  const connectCode = CODE_NAMES[ce.code] ?? 'unknown';
  return {
    connectCode,
    code: ce.code,
    errorCode: info?.code || ce.metadata.get('vyr-error-code') || connectCode.toUpperCase(),
    domain: info?.domain || (info === undefined && ce.code === Code.Unavailable ? 'transport' : 'api'),
    message: ce.rawMessage,
    metadata: { ...(info?.metadata ?? {}) },
  };
}

export { Code, ConnectError };
