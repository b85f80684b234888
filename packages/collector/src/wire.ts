import { isUtf8 } from 'node:buffer';
import { type DescField, type DescMessage, ScalarType } from '@bufbuild/protobuf';
import {
  ExponentialHistogramSchema,
  GaugeSchema,
  HistogramSchema,
  LogRecordSchema,
  MetricSchema,
  SpanSchema,
  SummarySchema,
  SumSchema,
} from '@vyr/proto/otlp';

/** What {@link scanRequest} found: items that pass the receiver's checks and items that do not. */
export interface WireCount {
  accepted: number;
  rejected: number;
}

/** A protobuf body that does not parse; `message` says where. */
export class WireError extends Error {
  override readonly name = 'WireError';
}

/**
 * Validates a binary Export*ServiceRequest and counts its items without building message objects: one pass over
 * the wire format, guided by the schema. Every field of a known message type is descended into (so a length or
 * tag that does not add up anywhere in the tree is found, as a full decode would find it); other fields are
 * skipped by wire type. Counts spans, metric data points or log records, and how many of them fail the checks of
 * `ingest` (span ids, log record ids, metric names). A full decode of a large request allocates several times its
 * size in short-lived objects; this allocates nothing per item, which keeps the receiver's memory near the bytes
 * it holds.
 *
 * @throws WireError when the body is not valid protobuf for `schema`.
 */
export function scanRequest(schema: DescMessage, body: Uint8Array): WireCount {
  const s: Scan = { buf: body, pos: 0, count: { accepted: 0, rejected: 0 }, points: 0 };
  walk(s, schema, body.length, 0);
  return s.count;
}

interface Scan {
  buf: Uint8Array;
  pos: number;
  count: WireCount;
  /** Data points of the metric being walked (the last `data` oneof member wins, as in a decode). */
  points: number;
}

/** protobuf-es and other runtimes limit nesting; OTLP messages nest far less deep than this. */
const MAX_DEPTH = 100;

const POINT_CONTAINERS = new Set<DescMessage>([
  GaugeSchema,
  SumSchema,
  HistogramSchema,
  ExponentialHistogramSchema,
  SummarySchema,
]);

/** What the scan needs to know of a known field: its wire type, and its message type or that it is a string. */
interface FieldInfo {
  /** Wire type the field is encoded with (2 for messages, strings and bytes). */
  wire: number;
  /** Repeated scalars may also come packed (wire type 2). */
  packable: boolean;
  message: DescMessage | undefined;
  string: boolean;
}

const fieldsCache = new WeakMap<DescMessage, Map<number, FieldInfo>>();

/** Field number → what the scan checks of it. Fields not in here are unknown and skipped by wire type. */
function messageFields(desc: DescMessage): Map<number, FieldInfo> {
  let m = fieldsCache.get(desc);
  if (!m) {
    m = new Map();
    for (const f of desc.fields) m.set(f.number, fieldInfo(f));
    fieldsCache.set(desc, m);
  }
  return m;
}

function fieldInfo(f: DescField): FieldInfo {
  if (f.fieldKind === 'map') return { wire: 2, packable: false, message: undefined, string: false };
  if (f.fieldKind === 'message' || (f.fieldKind === 'list' && f.listKind === 'message')) {
    return { wire: 2, packable: false, message: f.message, string: false };
  }
  const list = f.fieldKind === 'list';
  if (f.fieldKind === 'enum' || (list && f.listKind === 'enum')) {
    return { wire: 0, packable: list, message: undefined, string: false };
  }
  const scalar = f.scalar as ScalarType;
  switch (scalar) {
    case ScalarType.STRING:
      return { wire: 2, packable: false, message: undefined, string: true };
    case ScalarType.BYTES:
      return { wire: 2, packable: false, message: undefined, string: false };
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return { wire: 1, packable: list, message: undefined, string: false };
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return { wire: 5, packable: list, message: undefined, string: false };
    default:
      return { wire: 0, packable: list, message: undefined, string: false };
  }
}

function walk(s: Scan, desc: DescMessage, end: number, depth: number): void {
  if (depth > MAX_DEPTH) throw new WireError(`messages nested deeper than ${MAX_DEPTH}`);
  const fields = messageFields(desc);
  // Per-item checks, on the last occurrence of each field (a decode keeps the last one too).
  let idA = -1;
  let idB = -1;
  let idANonZero = false;
  let idBNonZero = false;
  let nameLength = 0;
  const isSpan = desc === SpanSchema;
  const isLog = desc === LogRecordSchema;
  const isMetric = desc === MetricSchema;
  const isPoints = POINT_CONTAINERS.has(desc);
  if (isMetric) s.points = 0;
  while (s.pos < end) {
    const tag = varint32(s, end);
    const no = tag >>> 3;
    const wt = tag & 7;
    if (no === 0) throw new WireError(`field number 0 at offset ${s.pos}`);
    const field = fields.get(no);
    if (field && wt !== field.wire && !(field.packable && wt === 2)) {
      throw new WireError(`field ${no} of ${desc.typeName} has wire type ${wt}, expected ${field.wire}`);
    }
    const sub = field?.message;
    if (wt === 2) {
      const len = varint32(s, end);
      const start = s.pos;
      const stop = start + len;
      if (stop > end) throw new WireError(`length ${len} at offset ${start} runs past the end of its message`);
      if (field?.packable) {
        checkPacked(s, field.wire, start, stop);
      } else if (field?.string) {
        // A decode rejects strings that are not UTF-8 (protobuf-es does); so does the scan.
        if (!isUtf8(s.buf.subarray(start, stop))) throw new WireError(`string at offset ${start} is not valid UTF-8`);
      } else if (sub) {
        if (isMetric && POINT_CONTAINERS.has(sub)) s.points = 0;
        if (isPoints && no === 1) s.points++;
        walk(s, sub, stop, depth + 1);
      }
      if ((isSpan && no === 1) || (isLog && no === 9)) {
        idA = len;
        idANonZero = anyNonZero(s.buf, start, stop);
      } else if ((isSpan && no === 2) || (isLog && no === 10)) {
        idB = len;
        idBNonZero = anyNonZero(s.buf, start, stop);
      } else if (isMetric && no === 1) {
        nameLength = len;
      }
      s.pos = stop;
    } else {
      skip(s, wt, end);
    }
  }
  if (s.pos !== end) throw new WireError(`message ends at offset ${s.pos}, past its length`);
  if (isSpan) {
    if (idA === 16 && idANonZero && idB === 8 && idBNonZero) s.count.accepted++;
    else s.count.rejected++;
  } else if (isLog) {
    if ((idA <= 0 || idA === 16) && (idB <= 0 || idB === 8)) s.count.accepted++;
    else s.count.rejected++;
  } else if (isMetric) {
    if (nameLength > 0) s.count.accepted += s.points;
    else s.count.rejected += s.points;
  }
}

/** The elements of a packed repeated scalar must fill its length exactly. */
function checkPacked(s: Scan, wire: number, start: number, stop: number): void {
  const len = stop - start;
  if (wire === 1 || wire === 5) {
    if (len % (wire === 1 ? 8 : 4) !== 0) throw new WireError(`packed field at offset ${start} has a partial element`);
    return;
  }
  s.pos = start;
  while (s.pos < stop) skip(s, 0, stop);
}

function anyNonZero(buf: Uint8Array, start: number, stop: number): boolean {
  for (let i = start; i < stop; i++) if (buf[i] !== 0) return true;
  return false;
}

/** A varint that fits 32 bits (tags, lengths); longer encodings are rejected. */
function varint32(s: Scan, end: number): number {
  let x = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (s.pos >= end) throw new WireError(`truncated varint at offset ${s.pos}`);
    const b = s.buf[s.pos++] as number;
    x += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) {
      if (x > 0xffffffff) throw new WireError(`varint over 32 bits at offset ${s.pos}`);
      return x;
    }
  }
  throw new WireError(`varint too long at offset ${s.pos}`);
}

function skip(s: Scan, wt: number, end: number): void {
  switch (wt) {
    case 0: {
      // varint, up to 10 bytes
      for (let i = 0; ; i++) {
        if (i >= 10) throw new WireError(`varint too long at offset ${s.pos}`);
        if (s.pos >= end) throw new WireError(`truncated varint at offset ${s.pos}`);
        if (((s.buf[s.pos++] as number) & 0x80) === 0) return;
      }
    }
    case 1:
      s.pos += 8;
      break;
    case 5:
      s.pos += 4;
      break;
    default:
      // 3 and 4 (groups) are not used by OTLP; 6 and 7 do not exist.
      throw new WireError(`wire type ${wt} at offset ${s.pos} is not allowed here`);
  }
  if (s.pos > end) throw new WireError(`fixed-width field runs past the end of its message at offset ${end}`);
}
