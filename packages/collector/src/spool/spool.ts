import { open, readdir, readFile, realpath, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@vyr/telemetry';
import { CollectorError } from '../errors.js';
import { dirError, ensureDir, parseSegmentName } from './fsutil.js';
import { type DropCount, type SpoolQueue as Queue, type RecoveryReport, SpoolQueue, scanSegment } from './queue.js';
import { decodeLastCursor, type Encoding, HEADER_BYTES, SIGNALS, type Signal } from './record.js';

/** What the spool does when an append does not fit in `maxSpoolBytes`. */
export type FullPolicy = 'drop-oldest' | 'refuse';

/** Options of {@link Spool}. */
export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  fullPolicy: FullPolicy;
  segmentBytes: number;
  logger: Logger;
  /** Called whenever records leave the spool without being forwarded. */
  onDrop(signal: Signal, reason: 'spool_full' | 'corrupt', items: number, records: number): void;
}

/** Per-signal and total occupancy of a spool. */
export interface SpoolStats {
  /** Unacknowledged requests (records). */
  records: number;
  /** Unacknowledged telemetry items: spans, metric data points, log records. */
  items: number;
  /** Bytes of segment files on disk (the quantity bounded by `maxSpoolBytes`). */
  bytes: number;
  segments: number;
  /** When the oldest unacknowledged record arrived (ms since the epoch). */
  oldestReceivedAt: number | undefined;
}

const LOCK_FILE = 'LOCK';

function emptyStats(): SpoolStats {
  return { records: 0, items: 0, bytes: 0, segments: 0, oldestReceivedAt: undefined };
}

/** Adds one signal's occupancy to `total`; the oldest record of all is the total's oldest. */
function addStats(total: SpoolStats, st: SpoolStats): void {
  total.records += st.records;
  total.items += st.items;
  total.bytes += st.bytes;
  total.segments += st.segments;
  if (st.oldestReceivedAt !== undefined && (total.oldestReceivedAt ?? Infinity) > st.oldestReceivedAt) {
    total.oldestReceivedAt = st.oldestReceivedAt;
  }
}

/**
 * Spool directories (real paths) this process has open. A lock file carrying this process's own pid is stale
 * unless its directory is in here: after a container restart the collector is often PID 1 again, and the lock of
 * the killed PID 1 must not keep it out of its own spool.
 */
const OPEN_SPOOLS = new Set<string>();

/**
 * The collector's durable store: one {@link SpoolQueue} per signal under `dir/<signal>/`, one byte budget across
 * them, the full policy, and a lock file so that two live collectors never share a directory.
 */
export class Spool {
  readonly queues: Record<Signal, Queue>;
  private readonly opts: SpoolOptions;
  private recovery: RecoveryReport | undefined;
  private locked = false;
  /** Real path of the directory while this spool holds it (a key of {@link OPEN_SPOOLS}). */
  private key: string | undefined;
  /** Serialises space making, so concurrent appends don't all drop for the same free bytes. */
  private spaceChain: Promise<void> = Promise.resolve();
  /** Appends waiting in {@link spaceChain}; while any wait, new appends queue behind them. */
  private waitingForRoom = 0;

  constructor(opts: SpoolOptions) {
    this.opts = opts;
    const make = (signal: Signal): Queue =>
      new SpoolQueue({
        dir: join(opts.dir, signal),
        signal,
        segmentBytes: opts.segmentBytes,
        logger: opts.logger,
        onCorrupt: (items, records) => opts.onDrop(signal, 'corrupt', items, records),
      });
    this.queues = { traces: make('traces'), metrics: make('metrics'), logs: make('logs') };
  }

  /** Takes the lock and recovers every queue. Throws `SPOOL_LOCKED` if a live process holds the directory. */
  async open(): Promise<RecoveryReport> {
    await ensureDir(this.opts.dir);
    await this.lock();
    const total: RecoveryReport = { segments: 0, records: 0, items: 0, truncatedBytes: 0, truncatedSegments: [] };
    try {
      for (const signal of SIGNALS) {
        const r = await this.queues[signal].open();
        total.segments += r.segments;
        total.records += r.records;
        total.items += r.items;
        total.truncatedBytes += r.truncatedBytes;
        total.truncatedSegments.push(...r.truncatedSegments.map((n) => `${signal}/${n}`));
      }
    } catch (err) {
      await this.unlock();
      throw err;
    }
    this.recovery = total;
    return total;
  }

  /** What recovery found when the spool was opened. */
  recovered(): RecoveryReport | undefined {
    return this.recovery;
  }

  private async lock(): Promise<void> {
    let key: string;
    try {
      key = await realpath(this.opts.dir);
    } catch (err) {
      throw dirError(this.opts.dir, err);
    }
    // Checked and claimed in one synchronous step: two opens in this process cannot both pass.
    if (OPEN_SPOOLS.has(key)) {
      throw new CollectorError(
        'SPOOL_LOCKED',
        `spool ${this.opts.dir} is already open in this process; stop that collector or choose another spool`,
      );
    }
    OPEN_SPOOLS.add(key);
    try {
      await this.takeLockFile();
    } catch (err) {
      OPEN_SPOOLS.delete(key);
      throw err;
    }
    this.key = key;
  }

  private async takeLockFile(): Promise<void> {
    const path = join(this.opts.dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, 'wx');
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
        await fh.close();
        this.locked = true;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new CollectorError(
            'SPOOL_IO',
            `could not create the lock file ${path}: ${String(err)}; choose a writable --spool or fix its permissions`,
            { cause: err },
          );
        }
      }
      const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      // Our own pid here is stale: this process does not hold the directory (checked by the caller).
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new CollectorError(
          'SPOOL_LOCKED',
          `spool ${this.opts.dir} is in use by process ${pid}; stop that collector or choose another --spool`,
        );
      }
      // A stale lock left by a killed process (or by an earlier life of this pid): take it over.
      this.opts.logger.info('spool: removing stale lock', { path, pid });
      await unlink(path).catch(() => {});
    }
    throw new CollectorError('SPOOL_LOCKED', `could not take the lock ${path}; another collector is starting`);
  }

  private async unlock(): Promise<void> {
    if (this.key !== undefined) OPEN_SPOOLS.delete(this.key);
    this.key = undefined;
    if (!this.locked) return;
    this.locked = false;
    await unlink(join(this.opts.dir, LOCK_FILE)).catch(() => {});
  }

  /** Bytes on disk plus bytes accepted and not yet written, across all queues. */
  usedBytes(): number {
    let n = 0;
    for (const s of SIGNALS) n += this.queues[s].usedBytes();
    return n;
  }

  /**
   * Appends a request body to the signal's queue and resolves once it is durable. When it does not fit:
   * `refuse` rejects with `SPOOL_FULL`; `drop-oldest` removes the oldest sealed segments (across signals, by
   * arrival time of their first record), reporting each through `onDrop`, and rejects with `SPOOL_FULL` only if
   * nothing more can be dropped.
   */
  append(signal: Signal, payload: Uint8Array, items: number, encoding: Encoding): Promise<void> {
    const need = payload.length + HEADER_BYTES;
    const queue = this.queues[signal];
    if (this.waitingForRoom === 0 && this.usedBytes() + need <= this.opts.maxBytes) {
      return queue.append(payload, items, encoding, Date.now());
    }
    // Make room and reserve it (queue.append counts the bytes synchronously) in one step of a serial chain, so
    // concurrent appends neither overshoot the bound nor overtake each other.
    this.waitingForRoom++;
    const reserved = this.spaceChain
      .then(() => this.makeRoom(need))
      .then(() => ({ durable: queue.append(payload, items, encoding, Date.now()) }))
      .finally(() => this.waitingForRoom--);
    this.spaceChain = reserved.then(
      () => {},
      () => {},
    );
    return reserved.then((r) => r.durable);
  }

  private async makeRoom(need: number): Promise<void> {
    while (this.usedBytes() + need > this.opts.maxBytes) {
      if (this.opts.fullPolicy === 'refuse') throw spoolFull(this.opts, need);
      // The oldest data across the queues, by arrival time of the first record of each queue's oldest segment.
      let victim: Queue | undefined;
      let victimAt = Number.POSITIVE_INFINITY;
      for (const s of SIGNALS) {
        const seg = this.queues[s].oldestSegment();
        if (seg && seg.firstReceivedAt < victimAt) {
          victim = this.queues[s];
          victimAt = seg.firstReceivedAt;
        }
      }
      if (!victim) {
        // Nothing on disk yet: what fills the spool is still being written. Once written it can be dropped.
        const writes = SIGNALS.map((s) => this.queues[s].writeInFlight()).filter((w) => w !== undefined);
        if (writes.length === 0) throw spoolFull(this.opts, need);
        await Promise.race(writes);
        continue;
      }
      const dropped: DropCount | undefined = await victim.dropOldest();
      if (!dropped) continue;
      if (dropped.items > 0) {
        this.opts.logger.warn('spool: full, dropped the oldest segment', {
          signal: victim.signal,
          records: dropped.records,
          items: dropped.items,
          bytes: dropped.bytes,
        });
      }
      this.opts.onDrop(victim.signal, 'spool_full', dropped.items, dropped.records);
    }
  }

  /** Occupancy per signal and in total. */
  stats(): { total: SpoolStats; signals: Record<Signal, SpoolStats> } {
    const signals = {} as Record<Signal, SpoolStats>;
    const total = emptyStats();
    for (const s of SIGNALS) {
      const st = this.queues[s].stats();
      signals[s] = st;
      addStats(total, st);
    }
    return { total, signals };
  }

  /** Closes every queue (waiting for pending appends) and releases the lock. */
  async close(): Promise<void> {
    for (const s of SIGNALS) await this.queues[s].close();
    await this.unlock();
  }
}

function spoolFull(opts: SpoolOptions, need: number): CollectorError {
  return new CollectorError(
    'SPOOL_FULL',
    `spool ${opts.dir} is full (limit ${opts.maxBytes} bytes, full policy ${opts.fullPolicy}); ${need} more bytes do not fit until the upstream drains it`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Offline view of a spool directory, read without modifying anything (see {@link inspectSpool}). */
export interface SpoolInspection {
  dir: string;
  /** PID in the lock file, if any, and whether that process is alive. */
  lock: { pid: number; alive: boolean } | undefined;
  total: SpoolStats;
  signals: Record<Signal, SpoolStats & { acknowledgedThroughSeq: number }>;
  /** Bytes at segment ends that fail validation and would be truncated on the next start. */
  tornTailBytes: number;
}

/**
 * Reads a spool directory offline (for `vyr collector status --spool DIR`): validates every segment like
 * recovery does, but changes nothing, so it is safe next to a running collector.
 */
export async function inspectSpool(dir: string): Promise<SpoolInspection> {
  try {
    await stat(dir);
  } catch (err) {
    throw new CollectorError('INVALID_OPTIONS', `spool directory ${dir} does not exist`, { cause: err });
  }
  let lock: SpoolInspection['lock'];
  const pid = Number.parseInt(await readFile(join(dir, LOCK_FILE), 'utf8').catch(() => ''), 10);
  if (Number.isInteger(pid) && pid > 0) {
    const own = pid === process.pid;
    const key = own ? await realpath(dir).catch(() => dir) : dir;
    lock = { pid, alive: own ? OPEN_SPOOLS.has(key) : isAlive(pid) };
  }
  const signals = {} as SpoolInspection['signals'];
  const total = emptyStats();
  let tornTailBytes = 0;
  for (const signal of SIGNALS) {
    const qdir = join(dir, signal);
    const acked = decodeLastCursor(await readFile(join(qdir, 'cursor')).catch(() => Buffer.alloc(0)));
    const st: SpoolStats & { acknowledgedThroughSeq: number } = { ...emptyStats(), acknowledgedThroughSeq: acked };
    const names = (await readdir(qdir).catch(() => [] as string[]))
      .map((n) => ({ n, seq: parseSegmentName(n) }))
      .filter((x): x is { n: string; seq: number } => x.seq !== undefined)
      .sort((a, b) => a.seq - b.seq);
    let prev = 0;
    for (const { n } of names) {
      let scan: Awaited<ReturnType<typeof scanSegment>>;
      try {
        scan = await scanSegment(join(qdir, n), prev, acked);
      } catch (err) {
        // The running collector may delete a segment between readdir and read.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      tornTailBytes += scan.fileBytes - scan.validBytes;
      st.bytes += scan.fileBytes;
      if (scan.records === 0) continue;
      prev = scan.lastSeq;
      st.segments++;
      st.records += scan.records - scan.ackedRecords;
      st.items += scan.items - scan.ackedItems;
      if (st.oldestReceivedAt === undefined && scan.firstUnackedAt !== undefined) {
        st.oldestReceivedAt = scan.firstUnackedAt;
      }
    }
    signals[signal] = st;
    addStats(total, st);
  }
  return { dir, lock, total, signals, tornTailBytes };
}
