import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixturePath } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, text, watComponent } from './helpers.js';

/**
 * Third-party-like WASI programs, unmodified: a C program built with wasi-libc (clang-19, wasm32-wasi, P1) and
 * adapted to a component exactly as `pack` does. Expected results are what wasmtime gives for the same program
 * and the same set-up (args, env, one read-write preopen).
 */
describe('WASI conformance of unmodified programs', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  let conformance: RuntimeArtifact;
  let poll: RuntimeArtifact;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    conformance = makeArtifact(await p1ToComponent(await readFile(fixturePath('wasi-conformance'))), {
      name: 'wasi-conformance',
      env: ['VYR_TEST', 'HOME', 'PATH'],
    });
    // poll_oneoff with a 20 ms relative clock subscription, then exit with the event count (1) on success.
    poll = makeArtifact(
      await watComponent(`(module
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (func (export "_start") (local $e i32)
          ;; subscription at 0: userdata 7, tag clock (0), clock id monotonic (1), timeout 20 ms, precision 0, flags 0
          (i64.store (i32.const 0) (i64.const 7))
          (i32.store8 (i32.const 8) (i32.const 0))
          (i32.store (i32.const 16) (i32.const 1))
          (i64.store (i32.const 24) (i64.const 20000000))
          (i64.store (i32.const 32) (i64.const 0))
          (i32.store16 (i32.const 40) (i32.const 0))
          (local.set $e (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
          (if (local.get $e) (then (call $exit (i32.add (i32.const 100) (local.get $e)))))
          ;; one event, userdata 7, error 0, type clock
          (if (i64.ne (i64.load (i32.const 64)) (i64.const 7)) (then (call $exit (i32.const 90))))
          (call $exit (i32.load (i32.const 128)))))`),
      { name: 'poll' },
    );
    runtime = createRuntime({ artifacts: memorySource([conformance, poll]), cacheDir: join(dir, 'cache') });
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  it('passes every check of the C wasi-conformance program (args, env, clocks, random, stdio, files, escapes)', async () => {
    const data = join(dir, 'data');
    await mkdir(data);
    await writeFile(join(dir, 'outside.txt'), 'must stay invisible');
    process.env.HOME = process.env.HOME ?? '/root';
    const task = await runtime.submit({
      digest: conformance.digest,
      args: ['a1', 'a 2'],
      env: { VYR_TEST: 'hello' },
      stdin: 'twelve bytes',
      mounts: [{ guestPath: '/data', hostPath: data }],
    });
    const status = await runtime.wait(task.id);
    const out = runtime.output(task.id);
    const stdout = text(out.stdout);
    expect(stdout).not.toMatch(/^FAIL/m);
    expect(stdout).toContain('stdin 12 bytes\n');
    expect(stdout).toMatch(/conformance: \d+ passed, 0 failed\n$/);
    for (const check of [
      'args',
      'env.given',
      'env.isolated',
      'clock.realtime',
      'clock.monotonic',
      'random',
      'fs.mkdir',
      'fs.write',
      'fs.seek',
      'fs.read',
      'fs.stat',
      'fs.rename',
      'fs.readdir',
      'fs.symlink',
      'escape.dotdot',
      'escape.absolute',
      'escape.symlink-absolute',
      'escape.symlink-relative',
      'fs.unlink',
      'fs.rmdir',
    ]) {
      expect(stdout).toContain(`ok ${check}\n`);
    }
    expect(text(out.stderr)).toBe('wasi-conformance: stderr works\n');
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    // The program cleaned up after itself; nothing leaked outside the mount.
    expect(await readdir(data)).toEqual([]);
  });

  it('fails the isolation checks visibly when the host passes HOME and PATH (the checks can fail)', async () => {
    const data = join(dir, 'data2');
    await mkdir(data);
    const task = await runtime.submit({
      digest: conformance.digest,
      args: ['a1', 'a 2'],
      env: { VYR_TEST: 'hello', HOME: '/home/x', PATH: '/bin' },
      mounts: [{ guestPath: '/data', hostPath: data }],
    });
    const status = await runtime.wait(task.id);
    expect(text(runtime.output(task.id).stdout)).toMatch(/^FAIL env\.isolated/m);
    expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 1 });
  });

  it('poll_oneoff waits on a monotonic clock subscription and reports the event', async () => {
    const task = await runtime.submit({ digest: poll.digest });
    const status = await runtime.wait(task.id);
    expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 1 });
  });
});
