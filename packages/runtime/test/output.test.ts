import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRuntime, type RuntimeArtifact } from '../dist/index.js';
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
