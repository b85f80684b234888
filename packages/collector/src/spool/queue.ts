import { type FileHandle, open, readdir, readFile, rename, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@vyr/telemetry';
import { CollectorError } from '../errors.js';
import { dirError, ensureDir, fsyncDir, parseSegmentName, segmentName } from './fsutil.js';
import {
  CURSOR_RECORD_BYTES,
  checksumMatches,
  decodeHeader,
  decodeLastCursor,
  type Encoding,
  encodeCursor,
  encodeRecord,
  HEADER_BYTES,
  type Signal,
} from './record.js';

/** One segment file of a queue, as the queue tracks it in memory (O(segments), never O(records)). */
export interface Segment {
  readonly firstSeq: number;
  readonly path: string;
  /** Bytes written and fsynced: readers never look past this. */
  bytes: number;
  records: number;
  items: number;
  lastSeq: number;
  firstReceivedAt: number;
  /** Records and items of the acknowledged prefix (forwarded, or acknowledged before a restart). */
  ackedRecords: number;
  ackedItems: number;
  /** No more appends go here. */
  sealed: boolean;
  /** Removed by the full policy while a reader may still hold it. */
  dropped: boolean;
}

/** A record handed to the forwarder. */
export interface SpoolRecord {
  readonly signal: Signal;
  readonly seq: number;
  readonly receivedAt: number;
  readonly items: number;
  readonly encoding: Encoding;
  /** The request body as received (gzip removed), byte for byte. */
  readonly payload: Buffer;
  readonly segment: Segment;
}

/** What recovery found in one queue directory. */
export interface RecoveryReport {
  segments: number;
  records: number;
  items: number;
  /** Bytes cut off the end of segments because a record's framing or checksum did not check out. */
  truncatedBytes: number;
  /** Segments in which such a cut happened. */
  truncatedSegments: string[];
}

/** Counts of what a drop removed. */
export interface DropCount {
  records: number;
  items: number;
  bytes: number;
}

interface Pending {
  buf: Buffer;
  seq: number;
  items: number;
  receivedAt: number;
  resolve(): void;
  reject(err: unknown): void;
}

interface ScanResult {
  records: number;
  items: number;
  lastSeq: number;
  firstReceivedAt: number;
  validBytes: number;
  fileBytes: number;
  ackedRecords: number;
  ackedItems: number;
  firstUnackedAt: number | undefined;
}

/**
 * Reads a segment and validates every record (magic, length, CRC, increasing sequence). Stops at the first record
 * that does not check out: everything from there on is a torn or corrupt tail.
 */
export async function scanSegment(path: string, prevSeq: number, ackedSeq: number): Promise<ScanResult> {
  const buf = await readFile(path);
  const r: ScanResult = {
    records: 0,
    items: 0,
    lastSeq: prevSeq,
    firstReceivedAt: 0,
    validBytes: 0,
    fileBytes: buf.length,
    ackedRecords: 0,
    ackedItems: 0,
    firstUnackedAt: undefined,
  };
  let off = 0;
  while (off + HEADER_BYTES <= buf.length) {
    const h = decodeHeader(buf, off);
    if (!h) break;
    const end = off + HEADER_BYTES + h.payloadBytes;
    if (end > buf.length) break;
    if (!checksumMatches(buf.subarray(off, off + HEADER_BYTES), buf.subarray(off + HEADER_BYTES, end), h.crc)) break;
    if (h.seq <= r.lastSeq) break;
    if (r.records === 0) r.firstReceivedAt = h.receivedAt;
    r.records++;
    r.items += h.items;
    r.lastSeq = h.seq;
    if (h.seq <= ackedSeq) {
      r.ackedRecords++;
      r.ackedItems += h.items;
    } else if (r.firstUnackedAt === undefined) {
      r.firstUnackedAt = h.receivedAt;
    }
    off = end;
  }
  r.validBytes = off;
  return r;
}

/** Options of {@link SpoolQueue}. */
export interface SpoolQueueOptions {
  dir: string;
  signal: Signal;
  /** A segment is sealed and a new one started once it holds this many bytes. */
  segmentBytes: number;
  logger: Logger;
  /** Called for records lost to corruption found while reading (never for acknowledged-and-forwarded ones). */
  onCorrupt(items: number, records: number): void;
}

const CURSOR_FILE = 'cursor';
const CURSOR_COMPACT_BYTES = 64 * 1024;

/**
 * One durable FIFO (one per signal): append-only checksummed segment files plus an acknowledgement cursor.
 *
 * - `append` resolves only after the record is written and `fdatasync`ed. Appends that arrive while a sync is in
 *   flight are written together and share the next sync (group commit).
 * - `next` hands out records in sequence order, only from fsynced bytes; `ack` durably advances the cursor and
 *   deletes segments whose records are all acknowledged.
 * - On open, every segment is validated; a torn tail is truncated; records at or below the cursor are skipped.
 */
export class SpoolQueue {
  readonly signal: Signal;
  private readonly dir: string;
  private readonly opts: SpoolQueueOptions;
  private segments: Segment[] = [];
  private active: { seg: Segment; fh: FileHandle } | undefined;
  private nextSeq = 1;
  private ackedSeq = 0;
  private droppedThroughSeq = 0;
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private flushing: Promise<void> | undefined;
  /** The group commit being written (set for the whole write, including sealing or creating its segment). */
  private writing: Promise<void> | undefined;
  private waiters: (() => void)[] = [];
  private reader: { seg: Segment | undefined; fh: FileHandle | undefined; offset: number; itemsRead: number } = {
    seg: undefined,
    fh: undefined,
    offset: 0,
    itemsRead: 0,
  };
  private inflight: SpoolRecord | undefined;
  private cursorFh: FileHandle | undefined;
  private cursorPos = 0;
  private ackChain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(opts: SpoolQueueOptions) {
    this.opts = opts;
    this.dir = opts.dir;
    this.signal = opts.signal;
  }

  /** Recovers the queue from disk: validates segments, truncates torn tails, reads the cursor. */
  async open(): Promise<RecoveryReport> {
    try {
      return await this.recover();
    } catch (err) {
      throw err instanceof CollectorError ? err : ioError('recover the spool queue', this.dir, err);
    }
  }

  private async recover(): Promise<RecoveryReport> {
    await ensureDir(this.dir);
    const cursorPath = join(this.dir, CURSOR_FILE);
    let cursorBytes: Buffer = Buffer.alloc(0);
    try {
      cursorBytes = await readFile(cursorPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('read the cursor', cursorPath, err);
    }
    this.ackedSeq = decodeLastCursor(cursorBytes);
    const report: RecoveryReport = { segments: 0, records: 0, items: 0, truncatedBytes: 0, truncatedSegments: [] };
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch (err) {
      throw dirError(this.dir, err);
    }
    const names = entries
      .map((n) => ({ n, seq: parseSegmentName(n) }))
      .filter((x): x is { n: string; seq: number } => x.seq !== undefined)
      .sort((a, b) => a.seq - b.seq);
    let prevSeq = 0;
    for (const { n, seq } of names) {
      const path = join(this.dir, n);
      const scan = await scanSegment(path, prevSeq, this.ackedSeq);
      if (scan.validBytes < scan.fileBytes) {
        // A torn tail: the write of a group commit was cut short. Nothing past the last valid record was ever
        // acknowledged to a client (acks follow the fsync), so it is safe to cut.
        this.opts.logger.warn('spool: truncating torn or corrupt tail', {
          segment: path,
          validBytes: scan.validBytes,
          fileBytes: scan.fileBytes,
        });
        await truncate(path, scan.validBytes);
        const fh = await open(path, 'r+');
        await fh.datasync().finally(() => fh.close());
        report.truncatedBytes += scan.fileBytes - scan.validBytes;
        report.truncatedSegments.push(n);
      }
      if (scan.records === 0 || scan.lastSeq <= this.ackedSeq) {
        await unlink(path);
        continue;
      }
      prevSeq = scan.lastSeq;
      this.segments.push({
        firstSeq: seq,
        path,
        bytes: scan.validBytes,
        records: scan.records,
        items: scan.items,
        lastSeq: scan.lastSeq,
        firstReceivedAt: scan.firstReceivedAt,
        ackedRecords: scan.ackedRecords,
        ackedItems: scan.ackedItems,
        sealed: true,
        dropped: false,
      });
      report.segments++;
      report.records += scan.records - scan.ackedRecords;
      report.items += scan.items - scan.ackedItems;
    }
    this.nextSeq = Math.max(prevSeq, this.ackedSeq) + 1;
    // Rewrite the cursor compactly so every later ack is a plain append. On a full disk, append to it as it is:
    // a collector must be able to restart and forward (which is what frees space).
    try {
      await this.rewriteCursor();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.opts.logger.warn('spool: disk full, appending to the cursor without compacting it', { dir: this.dir });
      this.cursorFh = await open(cursorPath, cursorBytes.length > 0 ? 'r+' : 'w');
      this.cursorPos = cursorBytes.length - (cursorBytes.length % CURSOR_RECORD_BYTES);
    }
    await fsyncDir(this.dir);
    return report;
  }

  /** Bytes on disk in segment files plus bytes accepted but not yet written. */
  usedBytes(): number {
    let n = this.pendingBytes;
    for (const s of this.segments) n += s.bytes;
    return n;
  }

  /** Unacknowledged records and items, and the receive time of the oldest one. */
  stats(): { records: number; items: number; bytes: number; segments: number; oldestReceivedAt: number | undefined } {
    let records = 0;
    let items = 0;
    let bytes = 0;
    let oldest: number | undefined;
    for (const s of this.segments) {
      records += s.records - s.ackedRecords;
      items += s.items - s.ackedItems;
      bytes += s.bytes;
      if (oldest === undefined && s.records > s.ackedRecords) oldest = s.firstReceivedAt;
    }
    if (this.inflight && !this.isDropped(this.inflight.seq)) oldest = this.inflight.receivedAt;
    return { records, items, bytes, segments: this.segments.length, oldestReceivedAt: oldest };
  }

  /**
   * Appends one request body. Resolves once it is on disk and fsynced; rejects with `SPOOL_IO` if the write or
   * the sync failed (the partial write is cut off again) and with `STOPPED` after {@link close}.
   */
  append(payload: Uint8Array, items: number, encoding: Encoding, receivedAt: number): Promise<void> {
    if (this.closed) return Promise.reject(new CollectorError('STOPPED', 'the spool is closed'));
    const seq = this.nextSeq++;
    const buf = encodeRecord(seq, receivedAt, items, encoding, this.signal, payload);
    this.pendingBytes += buf.length;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ buf, seq, items, receivedAt, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const write = this.writeNext();
        this.writing = write;
        await write;
        this.writing = undefined;
        this.notify();
      }
    } finally {
      this.writing = undefined;
      this.flushing = undefined;
    }
  }

  /**
   * Writes the next group commit: the pending records that fit in the active segment (at least one), with one
   * write and one sync. A group never crosses `segmentBytes`, so segments stay bounded and the full policy can
   * drop them one by one; a record larger than `segmentBytes` gets a segment of its own. Never throws: the
   * records of a failed group are rejected.
   */
  private async writeNext(): Promise<void> {
    const segmentBytes = this.opts.segmentBytes;
    let chunk: Pending[] = [];
    let chunkBytes = 0;
    try {
      let cur = this.active;
      const first = this.pending[0] as Pending;
      if (cur && cur.seg.records > 0 && cur.seg.bytes + first.buf.length > segmentBytes) {
        await this.sealActive();
        cur = undefined;
      }
      if (!cur) cur = await this.createSegment((this.pending[0] as Pending).seq);
      let room = segmentBytes - cur.seg.bytes;
      while (this.pending.length > 0) {
        const p = this.pending[0] as Pending;
        if (chunk.length > 0 && p.buf.length > room) break;
        this.pending.shift();
        chunk.push(p);
        chunkBytes += p.buf.length;
        room -= p.buf.length;
      }
      await this.writeChunk(cur, chunk, chunkBytes);
      this.pendingBytes -= chunkBytes;
      chunkBytes = 0;
      for (const p of chunk) p.resolve();
      // A full segment is sealed at once, so that it is a drop candidate for the full policy.
      if (cur.seg.bytes >= segmentBytes && this.active === cur) await this.sealActive();
    } catch (err) {
      if (chunk.length === 0) {
        // Failed before any record was taken (creating or sealing a segment): fail everything pending.
        chunk = this.pending.splice(0);
        chunkBytes = chunk.reduce((n, p) => n + p.buf.length, 0);
      }
      this.pendingBytes -= chunkBytes;
      const e = err instanceof CollectorError ? err : ioError(`append to the ${this.signal} spool`, this.dir, err);
      this.opts.logger.error('spool: write failed', { signal: this.signal, error: String(err) });
      for (const p of chunk) p.reject(e);
    }
  }

  private async writeChunk(cur: { seg: Segment; fh: FileHandle }, chunk: Pending[], chunkBytes: number): Promise<void> {
    const { seg, fh } = cur;
    try {
      await writeFully(
        fh,
        chunk.map((p) => p.buf),
        seg.bytes,
      );
      await fh.datasync();
    } catch (err) {
      // Cut the partial write off so the segment keeps ending on a record boundary.
      await fh.truncate(seg.bytes).catch(() => {});
      throw ioError(`write ${chunkBytes} bytes to segment`, seg.path, err);
    }
    if (seg.records === 0) seg.firstReceivedAt = (chunk[0] as Pending).receivedAt;
    seg.bytes += chunkBytes;
    seg.records += chunk.length;
    for (const p of chunk) seg.items += p.items;
    seg.lastSeq = (chunk[chunk.length - 1] as Pending).seq;
  }

  private async createSegment(firstSeq: number): Promise<{ seg: Segment; fh: FileHandle }> {
    const path = join(this.dir, segmentName(firstSeq));
    let fh: FileHandle;
    try {
      fh = await open(path, 'w');
      // The new directory entry must be durable too, or a crash could lose the whole file.
      await fsyncDir(this.dir);
    } catch (err) {
      throw ioError('create segment', path, err);
    }
    const seg: Segment = {
      firstSeq,
      path,
      bytes: 0,
      records: 0,
      items: 0,
      lastSeq: firstSeq - 1,
      firstReceivedAt: 0,
      ackedRecords: 0,
      ackedItems: 0,
      sealed: false,
      dropped: false,
    };
    this.segments.push(seg);
    this.active = { seg, fh };
    return this.active;
  }

  private async sealActive(): Promise<void> {
    const cur = this.active;
    if (!cur) return;
    this.active = undefined;
    cur.seg.sealed = true;
    await cur.fh.close();
    if (cur.seg.records === 0) {
      this.segments = this.segments.filter((s) => s !== cur.seg);
      await unlink(cur.seg.path).catch(() => {});
    }
    await this.deleteAcknowledged();
  }

  /** True when the record was removed by the full policy before it was acknowledged. */
  isDropped(seq: number): boolean {
    return seq <= this.droppedThroughSeq && seq > this.ackedSeq;
  }

  /**
   * The oldest segment holding data, as a drop candidate for the full policy: the oldest sealed segment, or the
   * active one when it is the only segment and holds records.
   */
  oldestSegment(): Segment | undefined {
    const s = this.segments[0];
    return s && (s.sealed || s.records > 0) ? s : undefined;
  }

  /** Resolves when the group commit in flight (if any) has been written; `undefined` when none is. */
  writeInFlight(): Promise<void> | undefined {
    return this.writing ?? this.flushing;
  }

  /**
   * Removes the oldest segment (full policy `drop-oldest`). When that is the active segment, it is sealed first,
   * after the group commit being written to it (records not yet durable, not yet acknowledged) has landed; those
   * records are never dropped before their write completes. Returns what was lost: records already handed to the
   * forwarder are not counted here (the forwarder counts the one in flight if it never got through).
   */
  async dropOldest(): Promise<DropCount | undefined> {
    while (this.writing) await this.writing;
    // From here to the shift below nothing awaits: no write can start on the segment being dropped.
    const seg = this.oldestSegment();
    if (!seg) return undefined;
    let closing: FileHandle | undefined;
    if (!seg.sealed) {
      closing = this.active?.fh;
      this.active = undefined;
      seg.sealed = true;
    }
    this.segments.shift();
    seg.dropped = true;
    const readItems = this.reader.seg === seg ? this.reader.itemsRead : 0;
    const readRecords = this.reader.seg === seg ? this.readRecordsInSeg : 0;
    const consumedItems = Math.max(readItems, seg.ackedItems);
    const consumedRecords = Math.max(readRecords, seg.ackedRecords);
    this.droppedThroughSeq = Math.max(this.droppedThroughSeq, seg.lastSeq);
    await closing?.close().catch(() => {});
    await unlink(seg.path).catch(() => {});
    this.notify();
    return { records: seg.records - consumedRecords, items: seg.items - consumedItems, bytes: seg.bytes };
  }

  private readRecordsInSeg = 0;

  /**
   * The next unacknowledged record, in sequence order; waits for one to be appended. Returns `undefined` once
   * `abort` fires or the queue closes.
   */
  async next(abort?: AbortSignal): Promise<SpoolRecord | undefined> {
    for (;;) {
      if (this.closed || abort?.aborted) return undefined;
      const r = this.reader;
      if (r.seg?.dropped) await this.resetReader();
      if (!r.seg) {
        const first = this.segments[0];
        if (!first) {
          await this.waitForData(abort);
          continue;
        }
        r.seg = first;
        r.offset = 0;
        r.itemsRead = 0;
        this.readRecordsInSeg = 0;
      }
      const seg = r.seg;
      if (r.offset < seg.bytes) {
        let rec: SpoolRecord | 'corrupt';
        try {
          rec = await this.readAt(seg, r.offset);
        } catch (err) {
          if (seg.dropped) continue;
          throw ioError('read segment', seg.path, err);
        }
        if (seg.dropped) continue;
        if (rec === 'corrupt') {
          // Bit rot in a segment that was valid at recovery: everything after this point in it is unreadable.
          const lostItems = seg.items - Math.max(r.itemsRead, seg.ackedItems);
          const lostRecords = seg.records - Math.max(this.readRecordsInSeg, seg.ackedRecords);
          this.opts.logger.error('spool: corrupt record, skipping the rest of the segment', {
            segment: seg.path,
            offset: r.offset,
          });
          this.opts.onCorrupt(lostItems, lostRecords);
          seg.ackedItems = seg.items;
          seg.ackedRecords = seg.records;
          seg.bytes = r.offset;
          if (!seg.sealed) await this.sealActive();
          continue;
        }
        r.offset += HEADER_BYTES + rec.payload.length;
        r.itemsRead += rec.items;
        this.readRecordsInSeg++;
        if (rec.seq <= this.ackedSeq) continue;
        this.inflight = rec;
        return rec;
      }
      const idx = this.segments.indexOf(seg);
      const following = idx >= 0 ? this.segments[idx + 1] : undefined;
      if (seg.sealed && following) {
        await this.closeReaderFile();
        r.seg = following;
        r.offset = 0;
        r.itemsRead = 0;
        this.readRecordsInSeg = 0;
        continue;
      }
      await this.waitForData(abort);
    }
  }

  private async readAt(seg: Segment, offset: number): Promise<SpoolRecord | 'corrupt'> {
    const r = this.reader;
    if (!r.fh) r.fh = await open(seg.path, 'r');
    const header = Buffer.allocUnsafe(HEADER_BYTES);
    const { bytesRead } = await r.fh.read(header, 0, HEADER_BYTES, offset);
    if (bytesRead !== HEADER_BYTES) return 'corrupt';
    const h = decodeHeader(header);
    if (!h || offset + HEADER_BYTES + h.payloadBytes > seg.bytes) return 'corrupt';
    const payload = Buffer.allocUnsafe(h.payloadBytes);
    const got = await r.fh.read(payload, 0, h.payloadBytes, offset + HEADER_BYTES);
    if (got.bytesRead !== h.payloadBytes || !checksumMatches(header, payload, h.crc)) return 'corrupt';
    return {
      signal: this.signal,
      seq: h.seq,
      receivedAt: h.receivedAt,
      items: h.items,
      encoding: h.encoding,
      payload,
      segment: seg,
    };
  }

  private async resetReader(): Promise<void> {
    await this.closeReaderFile();
    this.reader.seg = undefined;
    this.reader.offset = 0;
    this.reader.itemsRead = 0;
    this.readRecordsInSeg = 0;
  }

  private async closeReaderFile(): Promise<void> {
    const fh = this.reader.fh;
    this.reader.fh = undefined;
    await fh?.close().catch(() => {});
  }

  private waitForData(abort?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        abort?.removeEventListener('abort', done);
        resolve();
      };
      this.waiters.push(done);
      abort?.addEventListener('abort', done, { once: true });
    });
  }

  private notify(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  /**
   * Durably acknowledges `rec` (the upstream answered 2xx, or the record was dropped for good): appends to the
   * cursor file and fsyncs it, then deletes segments that hold only acknowledged records. Acks are serialised.
   */
  ack(rec: SpoolRecord): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.inflight === rec) this.inflight = undefined;
      if (rec.seq <= this.ackedSeq) return;
      this.ackedSeq = rec.seq;
      if (!rec.segment.dropped) {
        rec.segment.ackedRecords++;
        rec.segment.ackedItems += rec.items;
      }
      await this.writeCursor(rec.seq);
      await this.deleteAcknowledged();
    };
    this.ackChain = this.ackChain.then(run, run);
    return this.ackChain;
  }

  private async writeCursor(seq: number): Promise<void> {
    if (this.cursorPos >= CURSOR_COMPACT_BYTES) {
      try {
        await this.rewriteCursor();
        return;
      } catch (err) {
        // Compaction needs a new file; on a full disk keep appending to the old one (it is still open).
        if (!isDiskFull(err) || !this.cursorFh) throw ioError('compact the cursor', join(this.dir, CURSOR_FILE), err);
      }
    }
    const fh = this.cursorFh;
    if (!fh) throw new CollectorError('STOPPED', 'the spool is closed');
    try {
      await fh.write(encodeCursor(seq), 0, CURSOR_RECORD_BYTES, this.cursorPos);
      await fh.datasync();
    } catch (err) {
      throw ioError('write the cursor', join(this.dir, CURSOR_FILE), err);
    }
    this.cursorPos += CURSOR_RECORD_BYTES;
  }

  /** Replaces the cursor file by one holding a single record: write a temp file, fsync, rename, fsync the dir. */
  private async rewriteCursor(): Promise<void> {
    const path = join(this.dir, CURSOR_FILE);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.write(encodeCursor(this.ackedSeq), 0, CURSOR_RECORD_BYTES, 0);
      await fh.datasync();
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    // Only now is the old cursor given up: if the new one could not be written, the old one is still open.
    await this.cursorFh?.close();
    this.cursorFh = undefined;
    await rename(tmp, path);
    await fsyncDir(this.dir);
    this.cursorFh = await open(path, 'r+');
    this.cursorPos = CURSOR_RECORD_BYTES;
  }

  private async deleteAcknowledged(): Promise<void> {
    while (this.segments.length > 0) {
      const s = this.segments[0] as Segment;
      if (!s.sealed || s.lastSeq > this.ackedSeq) break;
      this.segments.shift();
      if (this.reader.seg === s) await this.resetReader();
      // No directory fsync needed: if the unlink is lost in a crash, recovery finds the segment fully below the
      // cursor and deletes it again.
      await unlink(s.path).catch(() => {});
    }
  }

  /** Waits for pending appends, then closes every file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.notify();
    while (this.flushing) await this.flushing;
    await this.ackChain.catch(() => {});
    await this.closeReaderFile();
    if (this.active) {
      const { fh } = this.active;
      this.active.seg.sealed = true;
      this.active = undefined;
      await fh.close();
    }
    // A fully forwarded last segment is not left behind.
    await this.deleteAcknowledged();
    await this.cursorFh?.close();
    this.cursorFh = undefined;
  }
}

/**
 * Writes every byte of `bufs` at `position`. `writev` may write less than asked (a full disk writes what fits);
 * writing the rest then fails with the real error (`ENOSPC`) instead of an anonymous short count.
 */
async function writeFully(fh: FileHandle, bufs: Buffer[], position: number): Promise<void> {
  let rest = bufs;
  let pos = position;
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, pos);
    if (bytesWritten === 0) throw Object.assign(new Error('no bytes written'), { code: 'EIO' });
    pos += bytesWritten;
    let skip = bytesWritten;
    const next: Buffer[] = [];
    for (const b of rest) {
      if (skip >= b.length) {
        skip -= b.length;
        continue;
      }
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
    rest = next;
  }
}

function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function ioError(what: string, path: string, cause: unknown): CollectorError {
  const code = (cause as NodeJS.ErrnoException)?.code;
  const advice =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? 'the file system holding the spool is full; free space there or lower --max-spool-bytes below the free space'
      : 'check the disk holding the spool';
  return new CollectorError(
    'SPOOL_IO',
    `could not ${what} ${path}${code ? ` (${code})` : ''}: ${cause instanceof Error ? cause.message : String(cause)}; ${advice}`,
    { cause },
  );
}
