import {
  clone,
  create,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJson,
} from '@bufbuild/protobuf';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import {
  type ExportLogsServiceRequest,
  ExportLogsServiceRequestSchema,
  ExportLogsServiceResponseSchema,
  type ExportMetricsServiceRequest,
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  type ExportTraceServiceRequest,
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
  type Metric,
  type Span,
} from '@vyr/proto/otlp';
import type { Encoding, Signal } from './spool/record.js';
import { scanRequest, type WireCount } from './wire.js';

/** Media types of OTLP/HTTP (OTLP specification, "OTLP/HTTP Request"). */
export const CONTENT_TYPE: Record<Encoding, string> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

/** URL paths of the three signals (OTLP specification, default paths). */
export const SIGNAL_PATHS: Record<Signal, string> = {
  traces: '/v1/traces',
  metrics: '/v1/metrics',
  logs: '/v1/logs',
};

/** The encoding a Content-Type header selects, or `undefined` for an unsupported one. */
export function encodingOf(contentType: string | undefined): Encoding | undefined {
  const media = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (media === 'application/x-protobuf') return 'protobuf';
  if (media === 'application/json') return 'json';
  return undefined;
}

/** A request body that is not a valid Export*ServiceRequest in its declared encoding. */
export class MalformedRequest extends Error {
  override readonly name = 'MalformedRequest';
}

/** Result of validating one export request. */
export interface IngestResult {
  /** Items accepted (spans, metric data points, log records). */
  accepted: number;
  /** Items rejected as invalid (reported back as partial success). */
  rejected: number;
  /** Why items were rejected, for `partial_success.error_message`. */
  rejectReason: string | undefined;
  /** The body to store: the received bytes, or a re-encoding without the rejected items. */
  payload: Uint8Array;
}

type AnyRequest = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest;

const REQUEST: Record<Signal, DescMessage> = {
  traces: ExportTraceServiceRequestSchema,
  metrics: ExportMetricsServiceRequestSchema,
  logs: ExportLogsServiceRequestSchema,
};
const RESPONSE: Record<Signal, DescMessage> = {
  traces: ExportTraceServiceResponseSchema,
  metrics: ExportMetricsServiceResponseSchema,
  logs: ExportLogsServiceResponseSchema,
};
const REJECTED_FIELD: Record<Signal, string> = {
  traces: 'rejectedSpans',
  metrics: 'rejectedDataPoints',
  logs: 'rejectedLogRecords',
};

/**
 * Decodes and validates an export request once, counts its items and removes invalid ones. The body is kept
 * byte for byte unless items had to be removed (then it is re-encoded in the same encoding).
 *
 * Invalid items, per the OTLP data model: a span whose trace id is not 16 bytes or whose span id is not 8 bytes
 * (or either is all zero); a log record whose trace or span id is present with the wrong length; a metric
 * without a name (all its data points are rejected).
 *
 * @throws MalformedRequest when the body does not decode.
 */
export function ingest(signal: Signal, encoding: Encoding, body: Uint8Array): IngestResult {
  if (encoding === 'protobuf') {
    // Fast path: validate and count on the wire, without materialising the request (its objects would take
    // several times the body's size). Only a request with invalid items is decoded, to remove them.
    let counted: WireCount;
    try {
      counted = scanRequest(REQUEST[signal], body);
    } catch (err) {
      throw new MalformedRequest(
        `body is not a valid ${REQUEST[signal].name} in ${CONTENT_TYPE.protobuf}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    if (counted.rejected === 0) {
      return { accepted: counted.accepted, rejected: 0, rejectReason: undefined, payload: body };
    }
  }
  let msg: AnyRequest | undefined = decodeRequest(signal, encoding, body);
  const counted =
    signal === 'traces'
      ? validateTraces(msg as ExportTraceServiceRequest)
      : signal === 'metrics'
        ? validateMetrics(msg as ExportMetricsServiceRequest)
        : validateLogs(msg as ExportLogsServiceRequest);
  const payload = counted.rejected > 0 ? encodeRequest(signal, encoding, msg) : body;
  // The decoded objects are several times the size of the wire bytes: let them go before the spool write.
  msg = undefined;
  return { accepted: counted.accepted, rejected: counted.rejected, rejectReason: counted.reason, payload };
}

/** Decodes an Export*ServiceRequest in either encoding. @throws MalformedRequest */
function decodeRequest(signal: Signal, encoding: Encoding, body: Uint8Array): AnyRequest {
  const schema = REQUEST[signal];
  try {
    if (encoding === 'protobuf') return fromBinary(schema, body) as AnyRequest;
    const json = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8')) as JsonValue;
    mapIds(json, hexToBase64);
    return fromJson(schema, json, { ignoreUnknownFields: true }) as AnyRequest;
  } catch (err) {
    throw new MalformedRequest(
      `body is not a valid ${schema.name} in ${CONTENT_TYPE[encoding]}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** Encodes a request in the given encoding (OTLP/JSON with hex ids). */
function encodeRequest(signal: Signal, encoding: Encoding, msg: AnyRequest): Uint8Array {
  const schema = REQUEST[signal];
  if (encoding === 'protobuf') return toBinary(schema, msg);
  const json = toJson(schema, msg, { enumAsInteger: true });
  mapIds(json, base64ToHex);
  return Buffer.from(JSON.stringify(json), 'utf8');
}

/** One half of a split request: its body and its item count. */
export interface RequestPart {
  payload: Uint8Array;
  items: number;
}

/**
 * Splits a stored request into two requests of about half its spans, metrics or log records each, keeping their
 * order and their resource and scope envelopes (empty envelopes are left out). Used when the upstream answers
 * `413 Content Too Large` (OTLP specification: the same request must not be retried). Returns `undefined` when the
 * request holds a single span, metric or log record and cannot be split, or does not decode.
 */
export function splitRequest(
  signal: Signal,
  encoding: Encoding,
  body: Uint8Array,
): [RequestPart, RequestPart] | undefined {
  let msg: AnyRequest;
  try {
    msg = decodeRequest(signal, encoding, body);
  } catch {
    return undefined;
  }
  const total = leafLists(signal, msg).reduce((n, l) => n + l.items.length, 0);
  if (total < 2) return undefined;
  const half = Math.floor(total / 2);
  const part = (keep: (index: number) => boolean): RequestPart => {
    const copy = clone(REQUEST[signal], msg) as AnyRequest;
    let index = 0;
    let items = 0;
    for (const l of leafLists(signal, copy)) {
      const kept = l.items.filter(() => keep(index++));
      for (const leaf of kept) items += signal === 'metrics' ? dataPoints(leaf as Metric) : 1;
      l.set(kept);
    }
    pruneEmpty(signal, copy);
    return { payload: encodeRequest(signal, encoding, copy), items };
  };
  return [part((i) => i < half), part((i) => i >= half)];
}

/** The innermost lists of a request (spans, metrics or log records per scope), in order, with a setter each. */
function leafLists(signal: Signal, msg: AnyRequest): { items: unknown[]; set(items: unknown[]): void }[] {
  const out: { items: unknown[]; set(items: unknown[]): void }[] = [];
  if (signal === 'traces') {
    for (const rs of (msg as ExportTraceServiceRequest).resourceSpans) {
      for (const ss of rs.scopeSpans) out.push({ items: ss.spans, set: (v) => (ss.spans = v as Span[]) });
    }
  } else if (signal === 'metrics') {
    for (const rm of (msg as ExportMetricsServiceRequest).resourceMetrics) {
      for (const sm of rm.scopeMetrics) out.push({ items: sm.metrics, set: (v) => (sm.metrics = v as Metric[]) });
    }
  } else {
    for (const rl of (msg as ExportLogsServiceRequest).resourceLogs) {
      for (const sl of rl.scopeLogs) {
        out.push({ items: sl.logRecords, set: (v) => (sl.logRecords = v as typeof sl.logRecords) });
      }
    }
  }
  return out;
}

/** Removes scopes and resources left without items (OTLP specification, "Empty Telemetry Envelopes"). */
function pruneEmpty(signal: Signal, msg: AnyRequest): void {
  if (signal === 'traces') {
    const m = msg as ExportTraceServiceRequest;
    for (const rs of m.resourceSpans) rs.scopeSpans = rs.scopeSpans.filter((ss) => ss.spans.length > 0);
    m.resourceSpans = m.resourceSpans.filter((rs) => rs.scopeSpans.length > 0);
  } else if (signal === 'metrics') {
    const m = msg as ExportMetricsServiceRequest;
    for (const rm of m.resourceMetrics) rm.scopeMetrics = rm.scopeMetrics.filter((sm) => sm.metrics.length > 0);
    m.resourceMetrics = m.resourceMetrics.filter((rm) => rm.scopeMetrics.length > 0);
  } else {
    const m = msg as ExportLogsServiceRequest;
    for (const rl of m.resourceLogs) rl.scopeLogs = rl.scopeLogs.filter((sl) => sl.logRecords.length > 0);
    m.resourceLogs = m.resourceLogs.filter((rl) => rl.scopeLogs.length > 0);
  }
}

interface Counted {
  accepted: number;
  rejected: number;
  reason: string | undefined;
}

function isId(bytes: Uint8Array, length: number): boolean {
  return bytes.length === length && bytes.some((b) => b !== 0);
}

function validSpan(s: Span): boolean {
  return isId(s.traceId, 16) && isId(s.spanId, 8);
}

function validateTraces(req: ExportTraceServiceRequest): Counted {
  let accepted = 0;
  let rejected = 0;
  for (const rs of req.resourceSpans) {
    for (const ss of rs.scopeSpans) {
      const ok = ss.spans.filter(validSpan);
      rejected += ss.spans.length - ok.length;
      accepted += ok.length;
      if (ok.length !== ss.spans.length) ss.spans = ok;
    }
  }
  return {
    accepted,
    rejected,
    reason: rejected > 0 ? `${rejected} span(s) without a 16-byte trace id and an 8-byte span id` : undefined,
  };
}

/** Number of data points a metric carries, whatever its type. */
export function dataPoints(m: Metric): number {
  const d = m.data;
  switch (d.case) {
    case 'gauge':
    case 'sum':
    case 'histogram':
    case 'exponentialHistogram':
    case 'summary':
      return d.value.dataPoints.length;
    default:
      return 0;
  }
}

function validateMetrics(req: ExportMetricsServiceRequest): Counted {
  let accepted = 0;
  let rejected = 0;
  for (const rm of req.resourceMetrics) {
    for (const sm of rm.scopeMetrics) {
      const ok = sm.metrics.filter((m) => m.name !== '');
      for (const m of sm.metrics) {
        if (m.name === '') rejected += dataPoints(m);
        else accepted += dataPoints(m);
      }
      if (ok.length !== sm.metrics.length) sm.metrics = ok;
    }
  }
  return {
    accepted,
    rejected,
    reason: rejected > 0 ? `${rejected} data point(s) of metrics without a name` : undefined,
  };
}

function validateLogs(req: ExportLogsServiceRequest): Counted {
  let accepted = 0;
  let rejected = 0;
  for (const rl of req.resourceLogs) {
    for (const sl of rl.scopeLogs) {
      const ok = sl.logRecords.filter(
        (r) => (r.traceId.length === 0 || r.traceId.length === 16) && (r.spanId.length === 0 || r.spanId.length === 8),
      );
      rejected += sl.logRecords.length - ok.length;
      accepted += ok.length;
      if (ok.length !== sl.logRecords.length) sl.logRecords = ok;
    }
  }
  return {
    accepted,
    rejected,
    reason: rejected > 0 ? `${rejected} log record(s) with a trace id or span id of the wrong length` : undefined,
  };
}

const ID_KEYS = new Set(['traceId', 'spanId', 'parentSpanId', 'trace_id', 'span_id', 'parent_span_id']);

/**
 * OTLP/JSON encodes trace and span ids as hex, not the base64 of the protobuf JSON mapping (OTLP specification,
 * "JSON Protobuf Encoding"). Rewrites every id field in place with `fn`.
 */
function mapIds(value: JsonValue, fn: (s: string) => string): void {
  if (Array.isArray(value)) {
    for (const v of value) if (v !== null && typeof v === 'object') mapIds(v, fn);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') {
      if (ID_KEYS.has(k)) value[k] = fn(v);
    } else if (v !== null && typeof v === 'object') {
      mapIds(v, fn);
    }
  }
}

function hexToBase64(s: string): string {
  return s.length % 2 === 0 && /^[0-9a-fA-F]*$/.test(s) ? Buffer.from(s, 'hex').toString('base64') : s;
}

function base64ToHex(s: string): string {
  return Buffer.from(s, 'base64').toString('hex');
}

/**
 * Encodes a success response: an Export*ServiceResponse in the request's encoding, with `partial_success` set
 * when items were rejected (OTLP specification, "Partial Success").
 */
export function successBody(signal: Signal, encoding: Encoding, rejected: number, message?: string): Uint8Array {
  const schema = RESPONSE[signal];
  const init =
    rejected > 0 ? { partialSuccess: { [REJECTED_FIELD[signal]]: BigInt(rejected), errorMessage: message ?? '' } } : {};
  const msg = create(schema, init as never);
  if (encoding === 'protobuf') return toBinary(schema, msg);
  return Buffer.from(JSON.stringify(toJson(schema, msg)), 'utf8');
}

/** google.rpc.Code values used in failure responses. */
export const RpcCode = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/**
 * Encodes a `google.rpc.Status` (the body of every OTLP/HTTP 4xx and 5xx response) in the given encoding:
 * field 1 `code`, field 2 `message`.
 */
export function statusBody(encoding: Encoding, code: number, message: string): Uint8Array {
  if (encoding === 'json') return Buffer.from(JSON.stringify({ code, message }), 'utf8');
  return new BinaryWriter()
    .tag(1, WireType.Varint)
    .int32(code)
    .tag(2, WireType.LengthDelimited)
    .string(message)
    .finish();
}

/**
 * Parses an upstream's 2xx response body as the signal's Export*ServiceResponse (OTLP specification, "Full
 * Success"). The encoding is the response's Content-Type, or the request's when the response has none. Returns
 * `undefined` when the body is not such a message: a Content-Type other than protobuf or JSON with a non-empty body
 * (an HTML page, say), or bytes that do not decode. An empty body is accepted as an empty message.
 */
export function parseSuccess(
  signal: Signal,
  contentType: string | undefined,
  requestEncoding: Encoding,
  body: Uint8Array,
): { rejected: number; message: string } | undefined {
  if (body.length === 0) return { rejected: 0, message: '' };
  const declared = contentType === undefined || contentType.trim() === '' ? undefined : responseEncodingOf(contentType);
  if (contentType !== undefined && contentType.trim() !== '' && declared === undefined) return undefined;
  const encoding = declared ?? requestEncoding;
  const schema = RESPONSE[signal];
  try {
    let msg: { partialSuccess?: Record<string, unknown> & { errorMessage: string } };
    if (encoding === 'json') {
      const json = JSON.parse(Buffer.from(body).toString('utf8')) as JsonValue;
      if (json === null || typeof json !== 'object' || Array.isArray(json)) return undefined;
      msg = fromJson(schema, json, { ignoreUnknownFields: true }) as typeof msg;
    } else {
      msg = fromBinary(schema, body) as typeof msg;
    }
    const ps = msg.partialSuccess;
    if (!ps) return { rejected: 0, message: '' };
    return { rejected: Number(ps[REJECTED_FIELD[signal]] ?? 0n), message: ps.errorMessage };
  } catch {
    return undefined;
  }
}

/** Encoding of a response Content-Type; also accepts `application/protobuf`, which some receivers send. */
function responseEncodingOf(contentType: string): Encoding | undefined {
  const media = contentType.split(';')[0]?.trim().toLowerCase();
  if (media === 'application/protobuf') return 'protobuf';
  return encodingOf(contentType);
}

/** Decodes a `google.rpc.Status` message from an error response, best effort, for logs. */
export function parseStatusMessage(contentType: string | undefined, body: Uint8Array): string {
  if (body.length === 0) return '';
  const text = Buffer.from(body).toString('utf8');
  if (encodingOf(contentType) === 'json') {
    try {
      const v = JSON.parse(text) as { message?: unknown };
      if (typeof v.message === 'string') return v.message;
    } catch {
      // fall through to the raw text
    }
    return text.slice(0, 200);
  }
  // protobuf Status: field 2 is the message. Scan for it without a schema.
  try {
    const b = Buffer.from(body);
    let i = 0;
    while (i < b.length) {
      const tag = b[i++] as number;
      const field = tag >> 3;
      const wt = tag & 7;
      if (wt === 0) {
        while (i < b.length && ((b[i++] as number) & 0x80) !== 0);
      } else if (wt === 2) {
        let len = 0;
        let shift = 0;
        let byte: number;
        do {
          byte = b[i++] as number;
          len |= (byte & 0x7f) << shift;
          shift += 7;
        } while (byte & 0x80);
        if (field === 2) return b.subarray(i, i + len).toString('utf8');
        i += len;
      } else {
        break;
      }
    }
  } catch {
    // not a Status message
  }
  return text.replace(/[^\x20-\x7e]/g, '').slice(0, 200);
}
