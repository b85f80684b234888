import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { makeArtifact, memorySource, tempDir, watComponent } from './helpers.js';

const CHUNK = 65536;
const CHUNKS = 16;

/** Writes CHUNKS × 64 KiB of zero bytes to stdout and `err\n` to stderr, then exits 3. */
const WRITER = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 100) "err\\n")
  (func (export "_start") (local $i i32)
    (block $done (loop $w
      (br_if $done (i32.ge_u (local.get $i) (i32.const ${CHUNKS})))
      (i32.store (i32.const 0) (i32.const 65536))
      (i32.store (i32.const 4) (i32.const ${CHUNK}))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $w)))
    (i32.store (i32.const 16) (i32.const 100))
    (i32.store (i32.const 20) (i32.const 4))
    (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 3))))`;

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

describe('output digests for execution receipts', () => {
  let runtime: Runtime;
  let writer: RuntimeArtifact;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const t = await tempDir();
    cleanup = t.cleanup;
    writer = makeArtifact(await watComponent(WRITER), { name: 'writer' });
    // A retention window far smaller than the output: the digest must still cover every byte.
    runtime = createRuntime({ artifacts: memorySource([writer]), cacheDir: t.dir, maxRetainedOutputBytes: 4096 });
  });

  afterAll(async () => {
    await runtime?.close();
    await cleanup?.();
  });

  it('records the sha256 of everything written to stdout and stderr, also what was not retained', async () => {
    const { id } = await runtime.submit({ digest: writer.digest });
    const end = await runtime.wait(id);
    expect(end).toMatchObject({ state: 'FAILED', exitCode: 3, stdoutBytes: CHUNK * CHUNKS, stderrBytes: 4 });
    expect(end.droppedOutputBytes).toBeGreaterThan(0);
    expect(end.stdoutDigest).toBe(sha256(new Uint8Array(CHUNK * CHUNKS)));
    expect(end.stderrDigest).toBe(sha256(Buffer.from('err\n')));
    expect(runtime.get(id).stdoutDigest).toBe(end.stdoutDigest);
  });

  it('records the digests of a task that wrote nothing, and none before a task ends', async () => {
    const cancelled = await runtime.submit({ digest: writer.digest });
    expect(cancelled.stdoutDigest).toBeUndefined();
    const end = await runtime.cancel(cancelled.id);
    expect(end.state).toBe('CANCELLED');
    expect(end.stdoutDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(end.stderrDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});
