import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildWatFixture, fixturePath } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact, type TaskStatus } from '../dist/index.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, text } from './helpers.js';

/**
 * WASI P1 behaviour that third-party programs (wasi-testsuite's Rust, C and AssemblyScript programs) exposed as
 * wrong under VYR, each with a guest program written here. Expected answers are wasmtime's for the same program
 * (checked with wasmtime 49): the errno the spec names, never a trap.
 */
describe('WASI P1 regressions found with third-party programs', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  let regressions: RuntimeArtifact;
  let claimMemory: RuntimeArtifact;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    regressions = makeArtifact(await p1ToComponent(await readFile(fixturePath('wasi-regressions'))), {
      name: 'wasi-regressions',
    });
    claimMemory = makeArtifact(await p1ToComponent(await buildWatFixture('claim-memory')), {
      name: 'claim-memory',
      env: ['a', 'b', 'c'],
    });
    runtime = createRuntime({ artifacts: memorySource([regressions, claimMemory]), cacheDir: join(dir, 'cache') });
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  /** One run of the regression program, shared by the checks below. */
  let run: Promise<{ status: TaskStatus; stdout: string; data: string }> | undefined;
  function runRegressions(): Promise<{ status: TaskStatus; stdout: string; data: string }> {
    run ??= runOnce();
    return run;
  }
  async function runOnce(): Promise<{ status: TaskStatus; stdout: string; data: string }> {
    const data = join(dir, `data-${Math.random().toString(36).slice(2)}`);
    await mkdir(data);
    const task = await runtime.submit({ digest: regressions.digest, mounts: [{ guestPath: '/data', hostPath: data }] });
    const status = await runtime.wait(task.id);
    return { status, stdout: text(runtime.output(task.id).stdout), data };
  }

  it('answers a path with a NUL byte with EINVAL (no trap), for open, stat, mkdir and unlink', async () => {
    const { status, stdout } = await runRegressions();
    for (const check of [
      'nul.path_open',
      'nul.path_filestat_get',
      'nul.path_create_directory',
      'nul.path_unlink_file',
    ]) {
      expect(stdout).toContain(`ok ${check}\n`);
    }
    expect(status.reason).not.toBe('TRAP');
  });

  it('never shows the host path of a mount in the task status or output', async () => {
    const { status, stdout, data } = await runRegressions();
    expect(JSON.stringify(status)).not.toContain(data);
    expect(stdout).not.toContain(data);
    expect(stdout).not.toContain(dir);
  });

  it('sets times with fd_filestat_set_times: only mtim (atim kept), both to now, and EINVAL for ATIM|ATIM_NOW', async () => {
    const { stdout } = await runRegressions();
    for (const check of ['times.fd_set_mtim', 'times.fd_atim_kept', 'times.fd_now', 'times.fd_both_flags']) {
      expect(stdout).toContain(`ok ${check}\n`);
    }
  });

  it('stats and sets times on a symlink itself without SYMLINK_FOLLOW and on its target with it', async () => {
    const { stdout } = await runRegressions();
    for (const check of [
      'symlink.stat_nofollow',
      'symlink.stat_follow',
      'symlink.set_times_nofollow',
      'symlink.target_untouched',
      'symlink.set_times_follow',
      'symlink.atim_kept',
      'times.path_missing',
    ]) {
      expect(stdout).toContain(`ok ${check}\n`);
    }
  });

  it('answers fd_write to a descriptor that is not open with EBADF, with and without bytes to write', async () => {
    const { stdout } = await runRegressions();
    for (const check of ['badfd.write_bytes', 'badfd.write_empty', 'badfd.write_closed']) {
      expect(stdout).toContain(`ok ${check}\n`);
    }
  });

  it('passes every regression check and exits 0', async () => {
    const { status, stdout } = await runRegressions();
    expect(stdout).not.toMatch(/^FAIL/m);
    expect(stdout).toMatch(/regressions: 20 passed, 0 failed\n$/);
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
  });

  it('gives several arguments and variables to a program whose allocator claims all of memory (AssemblyScript-like)', async () => {
    const task = await runtime.submit({
      digest: claimMemory.digest,
      args: ['one', 'two words', 'thrée'],
      env: { a: 'text', b: 'escap " ing', c: 'new\nline' },
    });
    const status = await runtime.wait(task.id);
    const out = runtime.output(task.id);
    expect(text(out.stderr)).toBe('');
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    expect(text(out.stdout)).toBe('claim-memory\none\ntwo words\nthrée\na=text\nb=escap " ing\nc=new\nline\n');
  });

  it('gives that program an empty argument list beyond argv[0] and an empty environment', async () => {
    const task = await runtime.submit({ digest: claimMemory.digest });
    const status = await runtime.wait(task.id);
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    expect(text(runtime.output(task.id).stdout)).toBe('claim-memory\n');
  });
});
