import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CollectorError, createCollector, inspectSpool } from '@vyr/collector';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deadUpstream, decodeTraceId, fakeUpstream, post, spanIdsOf, tempDir, traceBody, until } from './helpers.js';

const fastBackoff = { initialDelayMs: 10, maxDelayMs: 50 };
const CHILD = fileURLToPath(new URL('./fixtures/collector-process.ts', import.meta.url));
/** Whether this process may mount a size-limited tmpfs (root on Linux): a real full disk for the ENOSPC test. */
const canMountTmpfs = ((): boolean => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'vyr-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
const hasStrace = ((): boolean => {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** Batch numbers of the trace requests an upstream saw, in arrival order. */
function batchesSeen(up: Awaited<ReturnType<typeof fakeUpstream>>): number[] {
  return up.seen.map((s) => decodeTraceId(spanIdsOf(s.body)[0] as Uint8Array).batch);
}

async function segmentsOf(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'traces'))).filter((n) => n.endsWith('.seg')).sort();
}

describe('spool', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let port: number;
  let dead: Awaited<ReturnType<typeof deadUpstream>>;
  beforeEach(async () => {
    tmp = await tempDir();
    dead = await deadUpstream();
    port = dead.port;
  });
  afterEach(async () => {
    await dead.close();
    await tmp.cleanup();
  });

  it('full policy refuse: answers 503 with Retry-After and a Status once the byte bound is reached', async () => {
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: `http://127.0.0.1:${port}`,
      maxSpoolBytes: 64 * 1024,
      fullPolicy: 'refuse',
      retryAfterSeconds: 7,
      backoff: fastBackoff,
    });
    const { url } = await c.start();
    try {
      let accepted = 0;
      let refused: Awaited<ReturnType<typeof post>> | undefined;
      for (let b = 1; b <= 20 && !refused; b++) {
        const res = await post(`${url}/v1/traces`, traceBody(1, b, 100));
        if (res.status === 200) accepted++;
        else refused = res;
      }
      expect(refused?.status).toBe(503);
      expect(refused?.headers.get('retry-after')).toBe('7');
      expect(Buffer.from(refused?.body ?? []).toString()).toMatch(/full .*refuse/);
      const st = c.status();
      expect(st.counters.requests.spool_full).toBe(1);
      expect(st.spool.bytes).toBeLessThanOrEqual(64 * 1024);
      expect(st.spool.items).toBe(accepted * 100);
      expect(st.counters.dropped.spool_full).toBe(0);
    } finally {
      await c.stop();
    }
  });

  it('full policy drop-oldest: accepts everything, drops whole oldest segments, counts every dropped item', async () => {
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: `http://127.0.0.1:${port}`,
      maxSpoolBytes: 64 * 1024,
      backoff: fastBackoff,
    });
    const { url } = await c.start();
    let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      for (let b = 1; b <= 40; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 100))).status).toBe(200);
      const st = c.status();
      expect(st.spool.bytes).toBeLessThanOrEqual(64 * 1024);
      expect(st.counters.received.traces).toBe(4000);
      expect(st.counters.dropped.spool_full).toBeGreaterThan(0);
      await dead.close();
      up = await fakeUpstream([], port);
      await until(() => c.status().spool.records === 0, 10_000, 'drained');
      const end = c.status();
      // Nothing unaccounted for: every received item was either forwarded or counted as dropped.
      expect(end.counters.forwarded.traces + end.counters.dropped.spool_full).toBe(4000);
      const seen = batchesSeen(up);
      // What survives is the newest data, in order, ending with the last batch.
      expect(seen.at(-1)).toBe(40);
      const tail = seen.slice(seen.indexOf(seen.find((b) => b > 1) ?? 0));
      expect(tail).toEqual([...tail].sort((a, b) => a - b));
    } finally {
      await c.stop();
      await up?.close();
    }
  });

  it('full policy drop-oldest: concurrent requests larger than a segment all get 200, with the oldest data dropped and counted', async () => {
    // Scaled down from a 64 MiB spool with twelve concurrent 13.8 MB requests: 1 MiB spool (64 KiB segments),
    // twelve concurrent ~200 KB requests. Group commits must not pile them into one unbounded active segment.
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      maxSpoolBytes: 1024 * 1024,
      backoff: fastBackoff,
    });
    const { url } = await c.start();
    try {
      const bodies = Array.from({ length: 12 }, (_, i) => traceBody(9, i + 1, 1600));
      expect(bodies[0]?.length).toBeGreaterThan(150_000);
      const results = await Promise.all(bodies.map((b) => post(`${url}/v1/traces`, b)));
      expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
      const st = c.status();
      expect(st.counters.requests.spool_full).toBe(0);
      expect(st.counters.received.traces).toBe(12 * 1600);
      expect(st.counters.dropped.spool_full).toBeGreaterThan(0);
      expect(st.spool.bytes).toBeLessThanOrEqual(1024 * 1024);
      // Nothing unaccounted for (a dropped record the forwarder was holding is counted when it next looks).
      await until(
        () => c.status().spool.items + c.status().counters.dropped.spool_full === 12 * 1600,
        5000,
        'every item stored or counted as dropped',
      );
      // Segments stay near their size: none holds more than one of these requests.
      const sizes = await Promise.all((await segmentsOf(tmp.dir)).map((n) => stat(join(tmp.dir, 'traces', n))));
      for (const f of sizes) expect(f.size).toBeLessThan(2 * (bodies[0]?.length ?? 0));
    } finally {
      await c.stop();
    }
  });

  it('full policy drop-oldest: drops an active segment when no queue has a sealed one', async () => {
    // Each signal's data sits in its active segment (below segmentBytes); a new request does not fit.
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      maxSpoolBytes: 128 * 1024,
      segmentBytes: 32 * 1024,
      maxRequestBytes: 64 * 1024,
      backoff: fastBackoff,
    });
    const { url } = await c.start();
    const json = { 'content-type': 'application/json' };
    const logs = JSON.stringify({
      resourceLogs: [
        {
          scopeLogs: [{ logRecords: Array.from({ length: 240 }, () => ({ body: { stringValue: 'x'.repeat(100) } })) }],
        },
      ],
    });
    const metrics = JSON.stringify({
      resourceMetrics: [
        {
          scopeMetrics: [
            {
              metrics: [
                {
                  name: 'm',
                  gauge: { dataPoints: Array.from({ length: 850 }, (_, i) => ({ asDouble: i, timeUnixNano: '1' })) },
                },
              ],
            },
          ],
        },
      ],
    });
    try {
      expect((await post(`${url}/v1/traces`, traceBody(10, 1, 320))).status).toBe(200);
      expect((await post(`${url}/v1/logs`, logs, json)).status).toBe(200);
      expect((await post(`${url}/v1/metrics`, metrics, json)).status).toBe(200);
      const before = c.status().spool;
      expect(before.segments).toBe(3);
      const big = traceBody(10, 2, 480);
      expect(before.bytes + big.length).toBeGreaterThan(128 * 1024);
      expect((await post(`${url}/v1/traces`, big)).status).toBe(200);
      const st = c.status();
      // The oldest data (the first traces request) went; the newest request is stored.
      await until(() => c.status().counters.dropped.spool_full === 320, 5000, 'the first request counted');
      expect(st.spool.signals.traces.items).toBe(480);
      expect(st.spool.signals.logs.items).toBe(240);
      expect(st.spool.signals.metrics.items).toBe(850);
      expect(st.spool.bytes).toBeLessThanOrEqual(128 * 1024);
      expect(st.counters.requests.spool_full).toBe(0);
    } finally {
      await c.stop();
    }
  });

  it('stores concurrent requests with group commit, each exactly once', async () => {
    const c = createCollector({ port: 0, spoolDir: tmp.dir, upstream: dead.url, backoff: fastBackoff });
    const { url } = await c.start();
    let up2: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => post(`${url}/v1/traces`, traceBody(2, i + 1, 20))),
      );
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(c.status().spool.records).toBe(50);
      await dead.close();
      up2 = await fakeUpstream([], port);
      await until(() => c.status().spool.records === 0, 10_000, 'drained');
      expect(batchesSeen(up2).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    } finally {
      await c.stop();
      await up2?.close();
    }
  });

  it('resumes its backlog after a restart and truncates a torn tail (a partial record after the last good one)', async () => {
    const opts = { port: 0, spoolDir: tmp.dir, upstream: `http://127.0.0.1:${port}`, backoff: fastBackoff };
    const first = createCollector(opts);
    const { url } = await first.start();
    for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(4, b, 25))).status).toBe(200);
    await first.stop();

    // Simulate a crash in the middle of a group-commit write: half of a record lands after the acknowledged ones.
    const [seg] = await segmentsOf(tmp.dir);
    const segPath = join(tmp.dir, 'traces', seg as string);
    const good = (await stat(segPath)).size;
    const bytes = await readFile(segPath);
    await appendFile(segPath, bytes.subarray(0, 57));
    const offline = await inspectSpool(tmp.dir);
    expect(offline.tornTailBytes).toBe(57);
    expect(offline.total.items).toBe(75);

    const second = createCollector(opts);
    await second.start();
    let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      const rec = second.status().spool.recovered;
      expect(rec?.truncatedBytes).toBe(57);
      expect(rec?.items).toBe(75);
      expect((await stat(segPath)).size).toBe(good);
      await dead.close();
      up = await fakeUpstream([], port);
      await until(() => second.status().spool.records === 0, 10_000, 'drained');
      expect(batchesSeen(up)).toEqual([1, 2, 3]);
    } finally {
      await second.stop();
      await up?.close();
    }
  });

  it('detects a corrupted last record by its checksum and cuts the spool there, keeping the records before it', async () => {
    const opts = { port: 0, spoolDir: tmp.dir, upstream: `http://127.0.0.1:${port}`, backoff: fastBackoff };
    const first = createCollector(opts);
    const { url } = await first.start();
    for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(5, b, 25))).status).toBe(200);
    await first.stop();
    const [seg] = await segmentsOf(tmp.dir);
    const segPath = join(tmp.dir, 'traces', seg as string);
    const bytes = await readFile(segPath);
    const recordSize = bytes.length / 3;
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] as number) ^ 0xff;
    await writeFile(segPath, bytes);

    const second = createCollector(opts);
    await second.start();
    let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      expect(second.status().spool.recovered?.truncatedBytes).toBe(recordSize);
      expect(second.status().spool.items).toBe(50);
      await dead.close();
      up = await fakeUpstream([], port);
      await until(() => second.status().spool.records === 0, 10_000, 'drained');
      expect(batchesSeen(up)).toEqual([1, 2]);
    } finally {
      await second.stop();
      await up?.close();
    }
  });

  it('detects a segment cut short inside its last record and truncates to the last complete record', async () => {
    const opts = { port: 0, spoolDir: tmp.dir, upstream: `http://127.0.0.1:${port}`, backoff: fastBackoff };
    const first = createCollector(opts);
    const { url } = await first.start();
    for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(8, b, 25))).status).toBe(200);
    await first.stop();
    const [seg] = await segmentsOf(tmp.dir);
    const segPath = join(tmp.dir, 'traces', seg as string);
    const bytes = await readFile(segPath);
    const recordSize = bytes.length / 3;
    await writeFile(segPath, bytes.subarray(0, bytes.length - 10));
    expect((await inspectSpool(tmp.dir)).tornTailBytes).toBe(recordSize - 10);

    const second = createCollector(opts);
    await second.start();
    try {
      expect(second.status().spool.recovered?.truncatedBytes).toBe(recordSize - 10);
      expect(second.status().spool.items).toBe(50);
      expect((await stat(segPath)).size).toBe(2 * recordSize);
    } finally {
      await second.stop();
    }
  });

  it('never forwards a record twice across clean restarts: the cursor survives', async () => {
    await dead.close();
    const up = await fakeUpstream([], port);
    const opts = { port: 0, spoolDir: tmp.dir, upstream: up.url, backoff: fastBackoff };
    try {
      for (let round = 1; round <= 3; round++) {
        const c = createCollector(opts);
        const { url } = await c.start();
        expect((await post(`${url}/v1/traces`, traceBody(6, round, 10))).status).toBe(200);
        await until(() => c.status().spool.records === 0, 10_000, 'drained');
        await c.stop();
      }
      expect(batchesSeen(up)).toEqual([1, 2, 3]);
      expect(await segmentsOf(tmp.dir)).toEqual([]);
    } finally {
      await up.close();
    }
  });

  it('refuses a second live collector on the same spool directory', async () => {
    const opts = { port: 0, spoolDir: tmp.dir, upstream: `http://127.0.0.1:${port}` };
    const a = createCollector(opts);
    await a.start();
    try {
      const b = createCollector(opts);
      await expect(b.start()).rejects.toMatchObject({ code: 'SPOOL_LOCKED' });
    } finally {
      await a.stop();
    }
    const c = createCollector(opts);
    await c.start();
    await c.stop();
  });

  it('takes over a stale lock left by a dead process', async () => {
    await writeFile(join(tmp.dir, 'LOCK'), '999999999\n');
    const c = createCollector({ port: 0, spoolDir: tmp.dir, upstream: `http://127.0.0.1:${port}` });
    await c.start();
    await c.stop();
  });

  it('takes over a stale lock that carries this very process id (a restarted container whose collector is PID 1 again)', async () => {
    await writeFile(join(tmp.dir, 'LOCK'), `${process.pid}\n`);
    expect((await inspectSpool(tmp.dir)).lock).toEqual({ pid: process.pid, alive: false });
    const c = createCollector({ port: 0, spoolDir: tmp.dir, upstream: dead.url });
    await c.start();
    try {
      expect((await inspectSpool(tmp.dir)).lock).toEqual({ pid: process.pid, alive: true });
      // The directory is held now: a second collector in this process is still refused.
      const again = createCollector({ port: 0, spoolDir: join(tmp.dir, '.'), upstream: dead.url });
      await expect(again.start()).rejects.toMatchObject({ code: 'SPOOL_LOCKED' });
    } finally {
      await c.stop();
    }
  });

  it('reports a spool directory it cannot create or use as SPOOL_IO, naming the path and what to do', async () => {
    const file = join(tmp.dir, 'plain-file');
    await writeFile(file, 'x');
    const under = createCollector({ port: 0, spoolDir: join(file, 'spool'), upstream: dead.url });
    await expect(under.start()).rejects.toMatchObject({
      code: 'SPOOL_IO',
      message: expect.stringMatching(
        /plain-file\/spool \((ENOTDIR|EEXIST)\): a file that is not a directory is in the way/,
      ),
    });
    // A file where a queue directory belongs.
    const spool = join(tmp.dir, 'spool');
    await mkdir(spool);
    await writeFile(join(spool, 'traces'), 'not a directory');
    const blocked = createCollector({ port: 0, spoolDir: spool, upstream: dead.url });
    await expect(blocked.start()).rejects.toMatchObject({
      code: 'SPOOL_IO',
      message: expect.stringMatching(/spool\/traces \(EEXIST\): a file that is not a directory is in the way/),
    });
    // The failed start released its lock: once the file is gone the spool opens.
    await rm(join(spool, 'traces'));
    const fixed = createCollector({ port: 0, spoolDir: spool, upstream: dead.url });
    await fixed.start();
    await fixed.stop();
  });

  it.skipIf(!hasStrace)(
    'fsyncs the parent of every directory it creates for the spool (checked with strace on a real process)',
    async () => {
      const spool = join(tmp.dir, 'a', 'b', 'spool');
      const log = join(tmp.dir, 'strace.log');
      const child = spawn(
        'strace',
        ['-f', '-qq', '-e', 'trace=openat,fsync,close', '-o', log, process.execPath, CHILD, spool, '0', dead.url],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      await new Promise<void>((resolve, reject) => {
        child.stdout.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`collector exited ${code}: ${stderr}`)));
      });
      // Stop the collector itself (its pid is in its log lines); strace exits with it.
      const pid = Number(/"pid":(\d+)/.exec(stderr)?.[1]);
      process.kill(pid, 'SIGTERM');
      await once(child, 'exit');
      const lines = (await readFile(log, 'utf8')).split('\n');
      // A directory counts as fsynced when the next call on the descriptor it was opened as is an fsync.
      const fsynced = (dir: string): boolean =>
        lines.some((line, i) => {
          const fd = new RegExp(`openat\\(AT_FDCWD, "${dir}", O_RDONLY[^)]*\\) = (\\d+)`).exec(line)?.[1];
          if (fd === undefined) return false;
          const next = lines.slice(i + 1).find((l) => l.includes(`fsync(${fd})`) || l.includes(`close(${fd})`));
          return next?.includes(`fsync(${fd})`) ?? false;
        });
      for (const dir of [tmp.dir, join(tmp.dir, 'a'), join(tmp.dir, 'a', 'b'), spool]) {
        expect(fsynced(dir), dir).toBe(true);
      }
    },
    30_000,
  );

  it.skipIf(!canMountTmpfs)(
    'on a full file system (ENOSPC) answers 503 with Retry-After naming ENOSPC, and leaves no partial record behind',
    async () => {
      const mnt = join(tmp.dir, 'small-fs');
      await mkdir(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
      try {
        // The bound (1 MiB) is larger than the file system (256 KiB): the disk fills first.
        const opts = {
          port: 0,
          spoolDir: join(mnt, 'spool'),
          upstream: dead.url,
          maxSpoolBytes: 1024 * 1024,
          retryAfterSeconds: 4,
        };
        const c = createCollector(opts);
        const { url } = await c.start();
        let accepted = 0;
        let refused: Awaited<ReturnType<typeof post>> | undefined;
        try {
          for (let b = 1; b <= 20 && !refused; b++) {
            const res = await post(`${url}/v1/traces`, traceBody(11, b, 300));
            if (res.status === 200) accepted++;
            else refused = res;
          }
          expect(accepted).toBeGreaterThan(0);
          expect(refused?.status).toBe(503);
          expect(refused?.headers.get('retry-after')).toBe('4');
          const message = Buffer.from(refused?.body ?? []).toString();
          expect(message).toMatch(/\(ENOSPC\).*file system holding the spool is full/);
          expect(message).not.toMatch(/short write/);
          expect(c.status().counters.requests.unavailable).toBe(1);
        } finally {
          await c.stop();
        }
        // Every segment ends on a record boundary: a restart (on the still full disk) finds nothing to truncate
        // and every accepted request, and forwards them once the upstream is back.
        const again = createCollector({ ...opts, backoff: fastBackoff });
        await again.start();
        let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
        try {
          expect(again.status().spool.recovered?.truncatedBytes).toBe(0);
          expect(again.status().spool.items).toBe(accepted * 300);
          await dead.close();
          up = await fakeUpstream([], port);
          await until(() => again.status().spool.records === 0, 10_000, 'drained');
          expect(batchesSeen(up)).toEqual(Array.from({ length: accepted }, (_, i) => i + 1));
        } finally {
          await again.stop();
          await up?.close();
        }
      } finally {
        execFileSync('umount', [mnt]);
      }
    },
    30_000,
  );

  it('validates options with coded errors before touching the disk', () => {
    const base = { spoolDir: tmp.dir, upstream: 'http://127.0.0.1:4318' };
    const bad = [
      { ...base, upstream: 'not a url' },
      { ...base, upstream: 'ftp://x' },
      { ...base, spoolDir: '' },
      { ...base, maxSpoolBytes: 10 },
      { ...base, fullPolicy: 'drop-newest' as never },
      { ...base, maxSpoolBytes: 1024 * 1024, maxRequestBytes: 1024 * 1024 },
      { ...base, port: 70000 },
      { ...base, backoff: { jitter: 2 } },
    ];
    for (const o of bad) {
      let err: unknown;
      try {
        createCollector(o);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(CollectorError);
      expect((err as CollectorError).code).toBe('INVALID_OPTIONS');
    }
  });

  it('inspectSpool reports a missing directory with a coded error', async () => {
    await expect(inspectSpool(join(tmp.dir, 'nope'))).rejects.toMatchObject({ code: 'INVALID_OPTIONS' });
  });
});
