import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact, type TaskEvent } from '../dist/index.js';
import { makeArtifact, memorySource, tempDir, watComponent } from './helpers.js';

const KiB = 1024;
const TOTAL = 8 * 1024 * KiB;

/**
 * Writes TOTAL bytes to stdout, 64 KiB per fd_write, and after every fd_write records the running total it has
 * written in `/out/progress` (4 bytes, little-endian, pwrite at offset 0). The file is written by the worker thread
 * itself, so the test can read the guest's progress while the runtime's thread is blocked.
 */
const WRITER = `(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "progress")
  (func (export "_start") (local $e i32) (local $fd i32) (local $total i32)
    (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 9)
      (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 32)))
    (if (local.get $e) (then (call $exit (i32.const 100))))
    (local.set $fd (i32.load (i32.const 32)))
    (block $done (loop $w
      (br_if $done (i32.ge_u (local.get $total) (i32.const ${TOTAL})))
      (i32.store (i32.const 0) (i32.const 65536))
      (i32.store (i32.const 4) (i32.const 65536))
      (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (then (call $exit (i32.const 101))))
      (local.set $total (i32.add (local.get $total) (i32.load (i32.const 8))))
      (i32.store (i32.const 200) (local.get $total))
      (i32.store (i32.const 16) (i32.const 200))
      (i32.store (i32.const 20) (i32.const 4))
      (if (call $fd_pwrite (local.get $fd) (i32.const 16) (i32.const 1) (i64.const 0) (i32.const 24))
        (then (call $exit (i32.const 102))))
      (br $w)))
    (call $exit (i32.const 0))))`;

describe('guest output flow control', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let writer: RuntimeArtifact;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    writer = makeArtifact(await watComponent(WRITER), { name: 'writer' });
  });
  afterAll(() => cleanup());

  it('blocks a guest that writes faster than the runtime takes output, at outputBufferBytes in flight', async () => {
    const outputBufferBytes = 64 * KiB;
    const runtime = createRuntime({
      artifacts: memorySource([writer]),
      cacheDir: join(dir, 'cache'),
      poolSize: 1,
      outputBufferBytes,
    });
    const host = join(dir, 'out');
    await mkdir(host);
    try {
      const task = await runtime.submit({ digest: writer.digest, mounts: [{ guestPath: '/out', hostPath: host }] });
      await vi.waitFor(() => expect(runtime.get(task.id).stdoutBytes).toBeGreaterThan(0), {
        interval: 1,
        timeout: 30_000,
      });
      const taken = runtime.get(task.id).stdoutBytes;
      // Hold the runtime's thread for a second: no output is taken meanwhile, while the guest keeps running.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
      const progress = readFileSync(join(host, 'progress')).readUInt32LE(0);
      // The guest got no further than what was taken plus one buffer (plus the fd_write it was blocked in).
      expect(progress).toBeLessThanOrEqual(taken + outputBufferBytes + 64 * KiB);
      expect(progress).toBeLessThan(TOTAL);

      const status = await runtime.wait(task.id);
      expect(status).toMatchObject({ state: 'SUCCEEDED', stdoutBytes: TOTAL });
      expect((await readFile(join(host, 'progress'))).readUInt32LE(0)).toBe(TOTAL);
    } finally {
      await runtime.close();
    }
    expect(() => createRuntime({ artifacts: memorySource([]), cacheDir: dir, outputBufferBytes: 100 })).toThrow(
      /outputBufferBytes/,
    );
  });
});

/** Reads a watch to its end, sleeping `delayMs` after every output chunk; returns bytes received and drop events. */
async function readAll(
  events: AsyncIterable<TaskEvent>,
  delayMs = 0,
): Promise<{ bytes: number; dropped: number[]; order: string[]; last?: TaskEvent }> {
  let bytes = 0;
  const dropped: number[] = [];
  const order: string[] = [];
  let last: TaskEvent | undefined;
  for await (const ev of events) {
    last = ev;
    order.push(ev.type === 'status' ? `status:${ev.status.state}` : ev.type);
    if (ev.type === 'stdout' || ev.type === 'stderr') {
      bytes += ev.data.byteLength;
      if (delayMs > 0) await sleep(delayMs);
    } else if (ev.type === 'dropped') dropped.push(ev.bytes);
  }
  return { bytes, dropped, order, ...(last ? { last } : {}) };
}

describe('holdOutput: the submitter that follows its task gets every byte', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let writer: RuntimeArtifact;
  let n = 0;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    writer = makeArtifact(await watComponent(WRITER), { name: 'writer' });
  });
  afterAll(() => cleanup());

  // Small retention and watcher buffers, so a watcher that is late or slow would lose output without the hold.
  const small = { maxRetainedOutputBytes: 256 * KiB, maxWatcherBufferBytes: 256 * KiB, outputBufferBytes: 128 * KiB };
  async function withRuntime(extra: object, fn: (runtime: Runtime, out: string) => Promise<void>): Promise<void> {
    const runtime = createRuntime({
      artifacts: memorySource([writer]),
      cacheDir: join(dir, 'cache'),
      poolSize: 1,
      ...small,
      ...extra,
    });
    const out = join(dir, `out-${n++}`);
    await mkdir(out);
    try {
      await fn(runtime, out);
    } finally {
      await runtime.close();
    }
  }

  it('blocks the guest until the first watcher attaches, then paces it to that slow watcher: 8 MiB arrive complete', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({
        digest: writer.digest,
        mounts: [{ guestPath: '/out', hostPath: out }],
        holdOutput: true,
      });
      await vi.waitFor(() => expect(runtime.get(task.id).stdoutBytes).toBeGreaterThanOrEqual(small.outputBufferBytes), {
        interval: 5,
        timeout: 30_000,
      });
      await sleep(300);
      // No watcher yet: the guest is blocked in a write, far from done, and nothing was dropped.
      const before = runtime.get(task.id);
      expect(before.state).toBe('RUNNING');
      expect(before.stdoutBytes).toBeLessThanOrEqual(small.outputBufferBytes + 64 * KiB);
      expect(before.droppedOutputBytes).toBe(0);

      const got = await readAll(runtime.watch(task.id), 2);
      expect(got.dropped).toEqual([]);
      expect(got.bytes).toBe(TOTAL);
      const end = await runtime.wait(task.id);
      expect(end).toMatchObject({ state: 'SUCCEEDED', stdoutBytes: TOTAL, missedOutputBytes: 0 });
    });
  });

  it('a status-only watcher never takes the hold: the first output watcher after it still gets every byte', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({
        digest: writer.digest,
        mounts: [{ guestPath: '/out', hostPath: out }],
        holdOutput: true,
      });
      expect(task.id).toMatch(/^tk_[0-9a-f]{32}$/);
      const states: string[] = [];
      for await (const ev of runtime.watch(task.id, { statusOnly: true })) {
        expect(ev.type).toBe('status');
        if (ev.type === 'status') states.push(ev.status.state);
        if (ev.type === 'status' && ev.status.state === 'RUNNING') break;
      }
      expect(states.at(-1)).toBe('RUNNING');
      // Not a timing assertion: the first output can take seconds on a loaded machine (worker start, instantiate).
      await vi.waitFor(() => expect(runtime.get(task.id).stdoutBytes).toBeGreaterThan(0), {
        interval: 5,
        timeout: 30_000,
      });
      const got = await readAll(runtime.watch(task.id), 1);
      expect(got.dropped).toEqual([]);
      expect(got.bytes).toBe(TOTAL);
    });
  });

  it('without holdOutput a late, slow watcher is told exactly how many bytes it missed', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({ digest: writer.digest, mounts: [{ guestPath: '/out', hostPath: out }] });
      await vi.waitFor(() => expect(runtime.get(task.id).stdoutBytes).toBeGreaterThan(small.maxRetainedOutputBytes), {
        interval: 5,
        timeout: 30_000,
      });
      const got = await readAll(runtime.watch(task.id), 2);
      expect(got.order[0]).toBe('dropped'); // it attached after older output was no longer retained
      const missed = got.dropped.reduce((a, b) => a + b, 0);
      expect(missed).toBeGreaterThan(0);
      expect(got.bytes + missed).toBe(TOTAL);
      expect(runtime.get(task.id).missedOutputBytes).toBe(missed);
    });
  });

  it('a second watcher of a held task is not primary: it may miss bytes, the first still gets all', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({
        digest: writer.digest,
        mounts: [{ guestPath: '/out', hostPath: out }],
        holdOutput: true,
      });
      const first = readAll(runtime.watch(task.id), 1);
      const second = readAll(runtime.watch(task.id), 4);
      const [a, b] = await Promise.all([first, second]);
      expect(a.bytes).toBe(TOTAL);
      expect(a.dropped).toEqual([]);
      expect(b.bytes + b.dropped.reduce((x, y) => x + y, 0)).toBe(TOTAL);
    });
  });

  it('ends the hold when no watcher attaches within outputHoldMs: the task finishes, older output dropped', async () => {
    await withRuntime({ outputHoldMs: 200 }, async (runtime, out) => {
      const task = await runtime.submit({
        digest: writer.digest,
        mounts: [{ guestPath: '/out', hostPath: out }],
        holdOutput: true,
      });
      const end = await runtime.wait(task.id);
      expect(end).toMatchObject({ state: 'SUCCEEDED', stdoutBytes: TOTAL });
      expect(end.droppedOutputBytes).toBe(TOTAL - runtime.output(task.id).stdout.byteLength);
      expect(end.droppedOutputBytes).toBeGreaterThan(0);
    });
  });

  it('ends the hold when the first watcher stops reading early: the guest is not blocked for ever', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({
        digest: writer.digest,
        mounts: [{ guestPath: '/out', hostPath: out }],
        holdOutput: true,
      });
      let bytes = 0;
      for await (const ev of runtime.watch(task.id)) {
        if (ev.type === 'stdout') bytes += ev.data.byteLength;
        if (bytes >= 512 * KiB) break;
      }
      const end = await runtime.wait(task.id);
      expect(end).toMatchObject({ state: 'SUCCEEDED', stdoutBytes: TOTAL });
    });
  });

  it('a watcher of an ended task gets a dropped count, the retained output, then the terminal status last', async () => {
    await withRuntime({}, async (runtime, out) => {
      const task = await runtime.submit({ digest: writer.digest, mounts: [{ guestPath: '/out', hostPath: out }] });
      const end = await runtime.wait(task.id);
      const got = await readAll(runtime.watch(task.id));
      expect(got.order[0]).toBe('dropped');
      expect(got.order.at(-1)).toBe('status:SUCCEEDED');
      expect(got.order.filter((o) => o.startsWith('status'))).toHaveLength(1);
      expect(got.dropped).toEqual([end.droppedOutputBytes]);
      expect(got.bytes).toBe(TOTAL - end.droppedOutputBytes);
      expect(runtime.get(task.id).missedOutputBytes).toBe(end.droppedOutputBytes);
    });
  });
});
