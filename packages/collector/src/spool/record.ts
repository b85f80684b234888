import { crc32 } from 'node:zlib';

/**
 * On-disk record framing of a spool segment. Every record is a fixed 40-byte little-endian header followed by the
 * request body exactly as received (after gzip decoding):
 *
 * | offset | size | field                                                        |
 * |-------:|-----:|--------------------------------------------------------------|
 * |      0 |    4 | magic `VYRS` (0x53525956)                                     |
 * |      4 |    4 | payload length in bytes                                       |
 * |      8 |    4 | CRC-32 over bytes 12…40 of the header and the whole payload   |
 * |     12 |    8 | sequence number (u64, strictly increasing per queue)          |
 * |     20 |    8 | received-at, ms since the epoch (f64)                         |
 * |     28 |    4 | telemetry items in the payload (spans, data points, records)  |
 * |     32 |    1 | encoding: 0 = protobuf, 1 = JSON                              |
 * |     33 |    1 | signal: 0 = traces, 1 = metrics, 2 = logs                     |
 * |     34 |    6 | reserved, zero                                                |
 *
 * A record whose magic, length or CRC does not check out marks the end of the valid data of its segment: that is
 * how a torn tail (a write cut short by a crash) is detected.
 */
export const RECORD_MAGIC = 0x53525956;
/** Size of the fixed record header in bytes. */
export const HEADER_BYTES = 40;

/** Body encodings a record can hold. */
export type Encoding = 'protobuf' | 'json';
/** The three OTLP signals. */
export type Signal = 'traces' | 'metrics' | 'logs';

export const SIGNALS: readonly Signal[] = ['traces', 'metrics', 'logs'];

/** A decoded record header. */
export interface RecordHeader {
  payloadBytes: number;
  crc: number;
  seq: number;
  receivedAt: number;
  items: number;
  encoding: Encoding;
  signal: Signal;
}

/** Serialises one record (header + payload) into a single buffer ready to append. */
export function encodeRecord(
  seq: number,
  receivedAt: number,
  items: number,
  encoding: Encoding,
  signal: Signal,
  payload: Uint8Array,
): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  buf.writeUInt32LE(RECORD_MAGIC, 0);
  buf.writeUInt32LE(payload.length, 4);
  buf.writeBigUInt64LE(BigInt(seq), 12);
  buf.writeDoubleLE(receivedAt, 20);
  buf.writeUInt32LE(items, 28);
  buf.writeUInt8(encoding === 'json' ? 1 : 0, 32);
  buf.writeUInt8(SIGNALS.indexOf(signal), 33);
  buf.fill(0, 34, HEADER_BYTES);
  buf.set(payload, HEADER_BYTES);
  buf.writeUInt32LE(crc32(buf.subarray(12)), 8);
  return buf;
}

/** Parses a header; `undefined` when the magic or the enums are wrong (not a record start). */
export function decodeHeader(buf: Uint8Array, offset = 0): RecordHeader | undefined {
  const b = Buffer.from(buf.buffer, buf.byteOffset + offset, HEADER_BYTES);
  if (b.readUInt32LE(0) !== RECORD_MAGIC) return undefined;
  const enc = b.readUInt8(32);
  const sig = b.readUInt8(33);
  if (enc > 1 || sig > 2) return undefined;
  const seq = b.readBigUInt64LE(12);
  if (seq > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return {
    payloadBytes: b.readUInt32LE(4),
    crc: b.readUInt32LE(8),
    seq: Number(seq),
    receivedAt: b.readDoubleLE(20),
    items: b.readUInt32LE(28),
    encoding: enc === 1 ? 'json' : 'protobuf',
    signal: SIGNALS[sig] as Signal,
  };
}

/** True when the CRC stored in `header` matches the header tail and `payload`. */
export function checksumMatches(headerBytes: Uint8Array, payload: Uint8Array, expected: number): boolean {
  const head = crc32(Buffer.from(headerBytes.buffer, headerBytes.byteOffset + 12, HEADER_BYTES - 12));
  return crc32(payload, head) === expected;
}

/** Cursor file records: 16 bytes, `seq` u64 + CRC-32 of those 8 bytes + magic `VYRC`. */
export const CURSOR_MAGIC = 0x43525956;
export const CURSOR_RECORD_BYTES = 16;

/** Serialises one acknowledgement cursor record. */
export function encodeCursor(seq: number): Buffer {
  const buf = Buffer.alloc(CURSOR_RECORD_BYTES);
  buf.writeBigUInt64LE(BigInt(seq), 0);
  buf.writeUInt32LE(crc32(buf.subarray(0, 8)), 8);
  buf.writeUInt32LE(CURSOR_MAGIC, 12);
  return buf;
}

/** Returns the last valid cursor value in a cursor file's bytes (0 when there is none). */
export function decodeLastCursor(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let end = b.length - (b.length % CURSOR_RECORD_BYTES); end >= CURSOR_RECORD_BYTES; end -= CURSOR_RECORD_BYTES) {
    const at = end - CURSOR_RECORD_BYTES;
    if (b.readUInt32LE(at + 12) !== CURSOR_MAGIC) continue;
    if (crc32(b.subarray(at, at + 8)) !== b.readUInt32LE(at + 8)) continue;
    const seq = b.readBigUInt64LE(at);
    if (seq <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(seq);
  }
  return 0;
}
