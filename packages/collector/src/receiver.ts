import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';
import { CollectorError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import {
  CONTENT_TYPE,
  encodingOf,
  ingest,
  MalformedRequest,
  RpcCode,
  SIGNAL_PATHS,
  statusBody,
  successBody,
} from './otlp.js';
import type { Encoding, Signal } from './spool/record.js';
import type { Spool } from './spool/spool.js';
import type { CollectorTelemetry, RequestOutcome } from './telemetry.js';

const ROUTES = new Map<string, Signal>(
  (Object.entries(SIGNAL_PATHS) as [Signal, string][]).map(([signal, path]) => [path, signal]),
);

/** What the receiver needs from the collector it belongs to. */
export interface ReceiverDeps {
  opts: ResolvedOptions;
  spool: Spool;
  telemetry: CollectorTelemetry;
  /** JSON document served on `GET /status`. */
  status(): unknown;
  /** True once the collector is stopping: new exports get 503. */
  stopping(): boolean;
  /** Bytes of requests being processed now, across connections (bounded by `maxInflightBytes`). */
  inflight: { bytes: number };
}

/**
 * The OTLP/HTTP receiver (OTLP specification, "OTLP/HTTP"): `POST /v1/{traces,metrics,logs}` with
 * `application/x-protobuf` or `application/json` bodies, optionally gzip-compressed. A 200 is sent only after the
 * request is durable in the spool. Failures carry a `google.rpc.Status` body in the request's encoding.
 */
export function createHandler(deps: ReceiverDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(deps, req, res).catch((err: unknown) => {
      deps.opts.logger.error('receiver: unexpected failure', { error: String(err) });
      if (!res.headersSent) reply(res, 500, 'protobuf', statusBody('protobuf', RpcCode.INTERNAL, 'internal error'));
      else res.destroy();
    });
  };
}

/** Whether the header is `Bearer <token>` with the collector's token, compared in constant time. */
function authorized(header: string | undefined, token: string): boolean {
  const match = /^Bearer ([^\s]+)$/i.exec((header ?? '').trim());
  const given = createHash('sha256')
    .update(match?.[1] ?? '')
    .digest();
  return match !== null && timingSafeEqual(given, createHash('sha256').update(token).digest());
}

async function handle(deps: ReceiverDeps, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { opts, telemetry } = deps;
  const path = (req.url ?? '/').split('?')[0] as string;
  const signal = ROUTES.get(path);
  const encoding = encodingOf(req.headers['content-type']);
  const replyEnc: Encoding = encoding ?? 'protobuf';
  const fail = (status: number, outcome: RequestOutcome, code: number, message: string, extra?: object): void => {
    telemetry.addRequest(outcome, signal);
    reply(res, status, replyEnc, statusBody(replyEnc, code, message), extra);
  };
  if (opts.token !== undefined && !authorized(req.headers.authorization, opts.token)) {
    // Before anything of the body is read (RFC 6750 §3: 401 with a Bearer challenge).
    req.resume();
    return fail(
      401,
      'unauthenticated',
      RpcCode.UNAUTHENTICATED,
      req.headers.authorization === undefined
        ? 'this collector requires a bearer token: send Authorization: Bearer <token>'
        : 'the bearer token is wrong',
      { 'www-authenticate': 'Bearer realm="vyr-collector"', connection: 'close' },
    );
  }
  if (path === '/status' && (req.method === 'GET' || req.method === 'HEAD')) {
    const body = Buffer.from(`${JSON.stringify(deps.status())}\n`);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  if (!signal) {
    req.resume();
    return fail(
      404,
      'not_found',
      RpcCode.NOT_FOUND,
      `no OTLP endpoint at ${path}; use /v1/traces, /v1/metrics or /v1/logs`,
    );
  }
  if (req.method !== 'POST') {
    req.resume();
    return fail(405, 'not_found', RpcCode.UNIMPLEMENTED, `${req.method} is not supported on ${path}; use POST`, {
      allow: 'POST',
    });
  }
  if (!encoding) {
    req.resume();
    return fail(
      415,
      'unsupported_media_type',
      RpcCode.INVALID_ARGUMENT,
      `unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}; send application/x-protobuf or application/json`,
    );
  }
  const contentEncoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (contentEncoding !== 'identity' && contentEncoding !== 'gzip') {
    req.resume();
    return fail(
      415,
      'unsupported_media_type',
      RpcCode.INVALID_ARGUMENT,
      `unsupported Content-Encoding ${JSON.stringify(contentEncoding)}; send gzip or no encoding`,
    );
  }
  if (deps.stopping()) {
    req.resume();
    return fail(503, 'unavailable', RpcCode.UNAVAILABLE, 'the collector is shutting down; retry', {
      'retry-after': String(opts.retryAfterSeconds),
    });
  }
  const tooLarge = (size: string): void => {
    // Stop reading: answer at once and close the connection instead of draining a huge body.
    fail(
      413,
      'too_large',
      RpcCode.INVALID_ARGUMENT,
      `request body of ${size} exceeds the limit of ${opts.maxRequestBytes} bytes (maxRequestBytes); send smaller batches`,
      { connection: 'close' },
    );
  };
  const declared = Number(req.headers['content-length'] ?? Number.NaN);
  if (declared > opts.maxRequestBytes) return tooLarge(`${declared} bytes`);

  // Memory bound: the bytes of every request being read, decoded and stored count against maxInflightBytes,
  // reserved before they are read; the reservation ends when the response is done.
  let reserved = 0;
  res.once('close', () => {
    deps.inflight.bytes -= reserved;
    reserved = 0;
  });
  const reserve = (n: number): boolean => {
    if (deps.inflight.bytes + n > opts.maxInflightBytes) return false;
    deps.inflight.bytes += n;
    reserved += n;
    return true;
  };
  const busy = (): void => {
    // The body is discarded as it arrives (it is at most maxRequestBytes), so the client reads a clean 503 rather
    // than a reset connection; nothing of it is kept.
    req.resume();
    fail(
      503,
      'busy',
      RpcCode.UNAVAILABLE,
      `the collector is already processing ${deps.inflight.bytes} bytes of requests (maxInflightBytes ${opts.maxInflightBytes}); retry later`,
      { 'retry-after': String(opts.retryAfterSeconds) },
    );
  };
  if (Number.isSafeInteger(declared) && declared >= 0 && !reserve(declared)) return busy();
  // Without a Content-Length (chunked), bytes are reserved as they arrive.
  const read = await readBody(req, opts.maxRequestBytes, Number.isSafeInteger(declared) ? undefined : reserve);
  if (read === 'too_large') return tooLarge(`more than ${opts.maxRequestBytes} bytes`);
  if (read === 'busy') return busy();
  // One variable for the body in its current form, so the compressed bytes can go once decoded.
  let body = read;
  if (contentEncoding === 'gzip') {
    try {
      body = await gunzipAsync(body, opts.maxRequestBytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        return tooLarge(`more than ${opts.maxRequestBytes} bytes after gzip decoding`);
      }
      return fail(400, 'malformed', RpcCode.INVALID_ARGUMENT, `body is not valid gzip: ${(err as Error).message}`);
    }
    if (!reserve(body.length)) return busy();
  }
  let result: ReturnType<typeof ingest>;
  try {
    result = ingest(signal, encoding, body);
  } catch (err) {
    if (err instanceof MalformedRequest) return fail(400, 'malformed', RpcCode.INVALID_ARGUMENT, err.message);
    throw err;
  }
  if (result.rejected > 0) telemetry.addDropped(signal, 'invalid', result.rejected);
  if (result.accepted > 0) {
    try {
      await deps.spool.append(signal, result.payload, result.accepted, encoding);
    } catch (err) {
      const code = err instanceof CollectorError ? err.code : 'SPOOL_IO';
      opts.logger.warn('receiver: request not stored', { signal, code, error: String(err) });
      // Spool full (refuse policy) and spool I/O errors are both transient from the client's side: 503 + Retry-After
      // lets an OTLP exporter retry (OTLP spec, "OTLP/HTTP Throttling").
      return fail(
        503,
        code === 'SPOOL_FULL' ? 'spool_full' : 'unavailable',
        code === 'SPOOL_FULL' ? RpcCode.RESOURCE_EXHAUSTED : RpcCode.UNAVAILABLE,
        err instanceof Error ? err.message : String(err),
        { 'retry-after': String(opts.retryAfterSeconds) },
      );
    }
    telemetry.addReceived(signal, result.accepted);
  }
  telemetry.addRequest('accepted', signal);
  reply(res, 200, encoding, successBody(signal, encoding, result.rejected, result.rejectReason));
}

function reply(res: ServerResponse, status: number, encoding: Encoding, body: Uint8Array, extra?: object): void {
  res.writeHead(status, {
    'content-type': CONTENT_TYPE[encoding],
    'content-length': body.length,
    ...extra,
  });
  res.end(body);
}

/**
 * Reads the whole body. Stops reading (the socket is closed after the reply) with `'too_large'` once it grows
 * beyond `limit`, or with `'busy'` when `reserve` refuses a chunk.
 */
function readBody(
  req: IncomingMessage,
  limit: number,
  reserve: ((n: number) => boolean) | undefined,
): Promise<Buffer | 'too_large' | 'busy'> {
  return new Promise<Buffer | 'too_large' | 'busy'>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const stop = (why: 'too_large' | 'busy'): void => {
      req.off('data', onData);
      req.pause();
      resolve(why);
    };
    const onData = (c: Buffer): void => {
      n += c.length;
      if (n > limit) stop('too_large');
      else if (reserve && !reserve(c.length)) stop('busy');
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks, n)));
    req.on('error', reject);
  });
}

function gunzipAsync(buf: Buffer, maxOutputLength: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    gunzip(buf, { maxOutputLength }, (err, out) => (err ? reject(err) : resolve(out)));
  });
}
