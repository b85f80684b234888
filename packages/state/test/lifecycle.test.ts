import { execFileSync, spawn } from 'node:child_process';
import { access, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '@vyr/telemetry';
import { describe, expect, it } from 'vitest';
import { createStateKernel, digestTree, type StateSlot } from '../src/index.js';
import { expectCode, expectThrowsCode, settled } from './expect.js';
import { onCleanup, openKernel, tempDir, writeTree } from './helpers.js';

const RW: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw' }];
/** Preload that makes a child process run src/*.ts, and a child that exports one instance to a tar. */
const RUN_SOURCE = new URL('./fixtures/run-source.mjs', import.meta.url).pathname;
const EXPORT_CHILD = new URL('./fixtures/export-child.mjs', import.meta.url).pathname;

/** Whether strace is installed and allowed to trace here (ptrace can be forbidden in containers). */
function straceWorks(): boolean {
  try {
    execFileSync('strace', ['-qq', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const RO: StateSlot[] = [{ name: 'data', mount: '/data', access: 'ro' }];

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

describe('release at task end', () => {
  it('reports digest, bytes and entries per binding and records them on the instance', async () => {
    const kernel = await openKernel();
    const id = (await kernel.create({ scope: 'named' })).id;
    const mount = await kernel.bind({ instanceId: id, taskId: 't', slot: 'data', declaredSlots: RW });
    expect(kernel.get(id).digest).toBeUndefined(); // a writer holds it
    await writeTree(mount.hostPath, { 'out/result.json': '{"ok":true}', count: '3' });
    const report = await kernel.releaseTask('t', { reason: 'SUCCEEDED' });
    const expected = await digestTree(mount.hostPath);
    expect(report).toEqual({
      taskId: 't',
      alreadyReleased: false,
      releases: [
        {
          instanceId: id,
          slot: 'data',
          access: 'rw',
          scope: 'named',
          digest: expected.digest,
          bytes: 12,
          entries: 3,
          quotaExceeded: false,
          destroyed: false,
        },
      ],
    });
    expect(kernel.get(id)).toMatchObject({ digest: expected.digest, bytes: 12, entries: 3, bindings: [] });
  });

  it('destroys task-scoped instances after recording their digest, bound or not', async () => {
    const kernel = await openKernel();
    const slots: StateSlot[] = [{ name: 'scratch', mount: '/tmp', access: 'rw' }];
    const bound = await kernel.create({ scope: 'task', taskId: 't' });
    const unbound = await kernel.create({ scope: 'task', taskId: 't' });
    const mount = await kernel.bind({ instanceId: bound.id, taskId: 't', slot: 'scratch', declaredSlots: slots });
    await writeFile(join(mount.hostPath, 'x'), 'scratch data');
    const report = await kernel.releaseTask('t', { reason: 'FAILED' });
    expect(report.releases).toHaveLength(2);
    const byId = new Map(report.releases.map((r) => [r.instanceId, r]));
    expect(byId.get(bound.id)).toMatchObject({ slot: 'scratch', destroyed: true, bytes: 12, entries: 1 });
    expect(byId.get(unbound.id)).toMatchObject({ destroyed: true, bytes: 0, digest: unbound.digest });
    expect(byId.get(unbound.id)?.slot).toBeUndefined();
    expectThrowsCode(() => kernel.get(bound.id), 'NOT_FOUND');
    expect(await exists(bound.hostPath)).toBe(false);
    expect(await exists(unbound.hostPath)).toBe(false);
  });

  it('records a quota overrun it measures at release (quotaExceeded), on the report and the instance', async () => {
    const kernel = await openKernel();
    const id = (await kernel.create({ scope: 'named', quotaBytes: 1000, quotaEntries: 3 })).id;
    const slots: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw', quotaBytes: 500 }];
    const mount = await kernel.bind({ instanceId: id, taskId: 't1', slot: 'data', declaredSlots: slots });
    expect(mount.quotaBytes).toBe(500);
    // A WASI host that failed to enforce the quota: 600 bytes under a 500-byte slot.
    await writeFile(join(mount.hostPath, 'big'), Buffer.alloc(600));
    const [release] = (await kernel.releaseTask('t1')).releases;
    expect(release).toMatchObject({ bytes: 600, quotaExceeded: true });
    expect(kernel.get(id).quotaExceeded).toBe(true);
    // Entries count too.
    const m2 = await kernel.bind({ instanceId: id, taskId: 't2', slot: 'data', declaredSlots: RW });
    await writeTree(m2.hostPath, { big: '', a: '', b: '', c: '' });
    expect((await kernel.releaseTask('t2')).releases[0]).toMatchObject({ entries: 4, quotaExceeded: true });
    const m3 = await kernel.bind({ instanceId: id, taskId: 't3', slot: 'data', declaredSlots: RW });
    await rm(join(m3.hostPath, 'a'));
    await rm(join(m3.hostPath, 'b'));
    expect((await kernel.releaseTask('t3')).releases[0]).toMatchObject({ entries: 2, quotaExceeded: false });
    expect(kernel.get(id).quotaExceeded).toBe(false);
  });

  it('records a quota the WASI host enforced (quotaRefusedSlots) although the content stays within it', async () => {
    const kernel = await openKernel();
    const id = (await kernel.create({ scope: 'named', quotaEntries: 2 })).id;
    const other = (await kernel.create({ scope: 'named' })).id;
    const slots: StateSlot[] = [
      { name: 'data', mount: '/data', access: 'rw' },
      { name: 'more', mount: '/more', access: 'rw' },
    ];
    const mount = await kernel.bind({ instanceId: id, taskId: 't1', slot: 'data', declaredSlots: slots });
    await kernel.bind({ instanceId: other, taskId: 't1', slot: 'more' });
    // The guest made two entries; its third create was refused with ENOSPC by the runtime.
    await writeTree(mount.hostPath, { a: '', b: '' });
    const { releases } = await kernel.releaseTask('t1', { reason: 'EXIT_CODE', quotaRefusedSlots: ['data'] });
    expect(releases.map((r) => [r.slot, r.entries, r.quotaExceeded])).toEqual([
      ['data', 2, true],
      ['more', 0, false],
    ]);
    expect(kernel.get(id).quotaExceeded).toBe(true);
    expect(kernel.get(other).quotaExceeded).toBe(false);
  });

  it('is idempotent, and records an unknown task as ended', async () => {
    const kernel = await openKernel();
    await kernel.bind({
      instanceId: (await kernel.create({ scope: 'named' })).id,
      taskId: 't',
      slot: 'data',
      declaredSlots: RW,
    });
    const [a, b] = await Promise.all([kernel.releaseTask('t'), kernel.releaseTask('t')]);
    expect(a).toBe(b);
    expect(await kernel.releaseTask('t')).toEqual({ taskId: 't', releases: [], alreadyReleased: true });
    expect(await kernel.releaseTask('never-seen')).toMatchObject({ releases: [], alreadyReleased: false });
    await expectCode(kernel.create({ scope: 'task', taskId: 'never-seen' }), 'TASK_TERMINATED');
  });
});

describe('create, get, list, usage, delete', () => {
  it('does not leave a task-scoped instance behind when its task ends while the seed is copied', async () => {
    const kernel = await openKernel();
    const seed = await tempDir();
    await writeTree(seed, { a: 'x', 'b/c': 'y' });
    kernel.registerTask('t', []);
    const creating = kernel.create({ scope: 'task', taskId: 't', seed: { dir: seed } });
    await kernel.releaseTask('t');
    await expectCode(creating, 'TASK_TERMINATED');
    expect(kernel.list()).toEqual([]);
    expect(await readdir(join(kernel.dataDir, 'instances'))).toEqual([]);
  });

  it('creates empty ephemeral instances with ids, quotas and a TTL, and lists them with sizes', async () => {
    let now = 1_000_000;
    const kernel = await openKernel({ now: () => now, defaultTtlMs: 60_000, defaultQuotaBytes: 1 << 20 });
    const a = await kernel.create({ scope: 'named', name: 'cache' });
    now += 1;
    const b = await kernel.create({ scope: 'task', taskId: 't', quotaBytes: 100, quotaEntries: 5 });
    expect(a).toMatchObject({
      class: 'ephemeral',
      scope: 'named',
      name: 'cache',
      createdAtMs: 1_000_000,
      expiresAtMs: 1_060_000,
      quotaBytes: 1 << 20,
      quotaEntries: 100_000,
      bytes: 0,
      entries: 0,
      bindings: [],
    });
    expect(a.id).toMatch(/^st_[a-z2-7]{26}$/);
    expect(b).toMatchObject({ scope: 'task', taskId: 't', quotaBytes: 100, quotaEntries: 5 });
    expect(b.expiresAtMs).toBeUndefined();
    expect(kernel.list().map((i) => i.id)).toEqual([a.id, b.id]);
    expect(kernel.list({ scope: 'task' }).map((i) => i.id)).toEqual([b.id]);
    expect(kernel.list({ taskId: 't' }).map((i) => i.id)).toEqual([b.id]);
    await writeTree(a.hostPath, { f: 'x'.repeat(42) });
    expect(await kernel.usage(a.id)).toEqual({ bytes: 42, entries: 1, quotaBytes: 1 << 20, quotaEntries: 100_000 });
    const forever = await kernel.create({ scope: 'named', ttlMs: Number.POSITIVE_INFINITY });
    expect(forever.expiresAtMs).toBeUndefined();
  });

  it.each<[string, object]>([
    ['no scope', {}],
    ['task scope without a task id', { scope: 'task' }],
    ['task scope with a TTL', { scope: 'task', taskId: 't', ttlMs: 1000 }],
    ['task scope with a name', { scope: 'task', taskId: 't', name: 'x' }],
    ['named scope with a task id', { scope: 'named', taskId: 't' }],
    ['a negative TTL', { scope: 'named', ttlMs: -1 }],
    ['a fractional quota', { scope: 'named', quotaBytes: 1.5 }],
    ['a bad name', { scope: 'named', name: '../x' }],
    ['both seed kinds', { scope: 'named', seed: { dir: '/tmp', tar: '/x.tar' } }],
  ])('refuses %s with INVALID_ARGUMENT', async (_what, request) => {
    const kernel = await openKernel();
    await expectCode(kernel.create(request as never), 'INVALID_ARGUMENT');
    expect(kernel.list()).toEqual([]);
  });

  it('refuses a duplicate name with ALREADY_EXISTS, also between concurrent creates', async () => {
    const kernel = await openKernel();
    const results = await Promise.allSettled([
      kernel.create({ scope: 'named', name: 'db' }),
      kernel.create({ scope: 'named', name: 'db' }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    await expectCode(kernel.create({ scope: 'named', name: 'db' }), 'ALREADY_EXISTS');
  });

  it('deletes an unbound instance and refuses a bound one with INSTANCE_IN_USE', async () => {
    const kernel = await openKernel();
    const info = await kernel.create({ scope: 'named' });
    await kernel.bind({ instanceId: info.id, taskId: 't', slot: 'data', declaredSlots: RO });
    await expectCode(kernel.delete(info.id), 'INSTANCE_IN_USE', /t\/data/);
    await kernel.releaseTask('t');
    await kernel.delete(info.id);
    expect(await exists(info.hostPath)).toBe(false);
    expectThrowsCode(() => kernel.get(info.id), 'NOT_FOUND');
    await expectCode(kernel.delete(info.id), 'NOT_FOUND');
  });
});

describe('TTL expiry of named instances', () => {
  it('treats an expired instance as gone and deletes it at the next sweep, but never while bound', async () => {
    let now = 0;
    const kernel = await openKernel({ now: () => now });
    const short = await kernel.create({ scope: 'named', ttlMs: 1_000 });
    const held = await kernel.create({ scope: 'named', ttlMs: 1_000 });
    const long = await kernel.create({ scope: 'named', ttlMs: 10_000 });
    await kernel.bind({ instanceId: held.id, taskId: 't', slot: 'data', declaredSlots: RW });
    now = 1_000;
    expectThrowsCode(() => kernel.get(short.id), 'NOT_FOUND');
    await expectCode(
      kernel.bind({ instanceId: short.id, taskId: 'u', slot: 'data', declaredSlots: RW }),
      'NOT_FOUND',
      /expired/,
    );
    expect(
      kernel
        .list()
        .map((i) => i.id)
        .sort(),
    ).toEqual([held.id, long.id].sort());
    expect(await kernel.sweep()).toEqual({ expiredInstanceIds: [short.id], orphanedInstanceIds: [] });
    expect(await exists(short.hostPath)).toBe(false);
    await kernel.releaseTask('t');
    expect(await kernel.sweep()).toEqual({ expiredInstanceIds: [held.id], orphanedInstanceIds: [] });
    expect(kernel.list().map((i) => i.id)).toEqual([long.id]);
  });
});

describe('orphaned task-scoped instances', () => {
  /** A logger that keeps what it is given. */
  function recordingLogger(): { logger: Logger; lines: Array<{ level: string; message: string; fields?: object }> } {
    const lines: Array<{ level: string; message: string; fields?: object }> = [];
    const at =
      (level: string) =>
      (message: string, fields?: object): void => {
        lines.push({ level, message, fields });
      };
    return { logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
  }

  it('destroys, after orphanGraceMs, the instances of a task that was never submitted, counted and logged', async () => {
    let now = 0;
    const { logger, lines } = recordingLogger();
    const kernel = await openKernel({ now: () => now, orphanGraceMs: 60_000, logger });
    const a = await kernel.create({ scope: 'task', taskId: 'never-submitted' });
    const b = await kernel.create({ scope: 'task', taskId: 'never-submitted' });
    now = 59_999;
    expect(await kernel.sweep()).toEqual({ expiredInstanceIds: [], orphanedInstanceIds: [] });
    expect(kernel.list({ taskId: 'never-submitted' })).toHaveLength(2);

    now = 60_000;
    expect(await kernel.sweep()).toEqual({ expiredInstanceIds: [], orphanedInstanceIds: [a.id, b.id].sort() });
    expectThrowsCode(() => kernel.get(a.id), 'NOT_FOUND');
    expect(await exists(a.hostPath)).toBe(false);
    expect(await exists(b.hostPath)).toBe(false);
    const warned = lines.find((l) => l.level === 'warn' && /orphaned/.test(l.message));
    expect(warned?.fields).toMatchObject({ count: 2, taskIds: ['never-submitted'] });
    // The task is over: it cannot come back and pick up state.
    await expectCode(kernel.create({ scope: 'task', taskId: 'never-submitted' }), 'TASK_TERMINATED', /state_orphaned/);
    expectThrowsCode(() => kernel.registerTask('never-submitted', RW), 'TASK_TERMINATED');
  });

  it('keeps the instances of a registered task however long it stays pending', async () => {
    let now = 0;
    const kernel = await openKernel({ now: () => now, orphanGraceMs: 1_000 });
    kernel.registerTask('pending', RW);
    const scratch = await kernel.create({ scope: 'task', taskId: 'pending' });
    const unregistered = await kernel.create({ scope: 'task', taskId: 'later' });
    now = 10_000;
    // 'later' is orphaned only once every instance of it is past the grace period.
    const fresh = await kernel.create({ scope: 'task', taskId: 'later' });
    expect(await kernel.sweep()).toEqual({ expiredInstanceIds: [], orphanedInstanceIds: [] });
    expect(kernel.get(scratch.id).taskId).toBe('pending');
    expect(kernel.get(unregistered.id).taskId).toBe('later');
    now = 11_000;
    expect((await kernel.sweep()).orphanedInstanceIds).toEqual([unregistered.id, fresh.id].sort());
    expect(kernel.get(scratch.id).taskId).toBe('pending');
    // Released normally, the task's instance is destroyed by the release, not by the sweep.
    expect((await kernel.releaseTask('pending')).releases[0]).toMatchObject({ destroyed: true });
  });

  it('refuses an orphanGraceMs that is not positive; Infinity turns the sweep of orphans off', async () => {
    const dataDir = await tempDir();
    expectThrowsCode(() => createStateKernel({ dataDir, orphanGraceMs: 0 }), 'INVALID_ARGUMENT');
    expectThrowsCode(() => createStateKernel({ dataDir, orphanGraceMs: -5 }), 'INVALID_ARGUMENT');
    let now = 0;
    const kernel = await openKernel({ dataDir, now: () => now, orphanGraceMs: Number.POSITIVE_INFINITY });
    const kept = await kernel.create({ scope: 'task', taskId: 'never-submitted' });
    now = 365 * 24 * 3600_000;
    expect((await kernel.sweep()).orphanedInstanceIds).toEqual([]);
    expect(kernel.get(kept.id).scope).toBe('task');
  });
});

describe('export', () => {
  async function populate(root: string, reverse: boolean): Promise<void> {
    const files: Array<[string, string]> = [
      ['a/1.txt', 'one'],
      ['a/2.txt', 'two'],
      ['b', 'bee'],
      [`${'long-name-'.repeat(12)}/x`, 'needs a pax header'],
    ];
    for (const [path, content] of reverse ? [...files].reverse() : files) await writeTree(root, { [path]: content });
    await mkdir(join(root, 'empty'));
    await symlink('b', join(root, 'to-b'));
  }

  it('writes a deterministic tar: same content in any creation order gives identical bytes', async () => {
    const kernel = await openKernel();
    const one = await kernel.create({ scope: 'named' });
    const two = await kernel.create({ scope: 'named' });
    await populate(one.hostPath, false);
    await populate(two.hostPath, true);
    execFileSync('chmod', ['0600', join(two.hostPath, 'b')]);
    const out = await tempDir();
    const r1 = await kernel.export({ instanceId: one.id, out: join(out, 'one.tar') });
    const r2 = await kernel.export({ instanceId: two.id, out: join(out, 'two.tar') });
    expect(r1.format).toBe('tar');
    expect(r1.digest).toBe(r2.digest);
    expect(await readFile(join(out, 'one.tar'))).toEqual(await readFile(join(out, 'two.tar')));
    // GNU tar reads it; the listing is in canonical order with uid/gid 0 and mtime 0.
    const listing = execFileSync('tar', ['-tvf', join(out, 'one.tar'), '--numeric-owner'], { encoding: 'utf8' });
    expect(listing).toMatch(/^drwxr-xr-x 0\/0 +0 1970-01-01 00:00 a\/$/m);
    expect(listing).toMatch(/to-b -> b$/m);
    // Round trip: seeding from the export reproduces the digest.
    const again = await kernel.create({ scope: 'named', seed: { tar: join(out, 'one.tar') } });
    expect(again.digest).toBe(r1.digest);
  });

  it.skipIf(!straceWorks())(
    'fsyncs the tar before renaming it into place, and its directory after (seen with strace)',
    async () => {
      const dataDir = await tempDir();
      const outDir = await tempDir();
      const out = join(outDir, 'snap.tar');
      const log = join(await tempDir(), 'strace.log');
      // -f: libuv runs fs calls on its thread pool; -y: print the path behind each fd.
      execFileSync('strace', [
        '-f',
        '-y',
        '-qq',
        '-o',
        log,
        '-e',
        'trace=fsync,fdatasync,rename,renameat,renameat2',
        process.execPath,
        '--import',
        RUN_SOURCE,
        EXPORT_CHILD,
        dataDir,
        out,
      ]);
      const calls = (await readFile(log, 'utf8')).split('\n');
      const at = (re: RegExp) => calls.findIndex((line) => re.test(line));
      const partial = `${out.replace(/[.]/g, '[.]')}[.]partial-[^>"]*`;
      const fileSynced = at(new RegExp(`f(data)?sync\\(\\d+<${partial}>`));
      const renamed = at(new RegExp(`rename(at2?)?\\(.*"${partial}".*"${out.replace(/[.]/g, '[.]')}"`));
      const dirSynced = calls.findIndex(
        (line, i) => i > renamed && line.includes(`fsync(`) && line.includes(`<${outDir}>`),
      );
      expect(fileSynced, calls.join('\n')).toBeGreaterThanOrEqual(0);
      expect(renamed, calls.join('\n')).toBeGreaterThan(fileSynced);
      expect(dirSynced, calls.join('\n')).toBeGreaterThan(renamed);
      expect(execFileSync('tar', ['-tf', out], { encoding: 'utf8' })).toBe('a.txt\n');
    },
  );

  it('exports to a directory with the same digest, refusing a non-empty destination', async () => {
    const kernel = await openKernel();
    const info = await kernel.create({ scope: 'named' });
    await populate(info.hostPath, false);
    const out = join(await tempDir(), 'export');
    const result = await kernel.export({ instanceId: info.id, out });
    expect(result).toMatchObject({ format: 'dir', digest: (await digestTree(out)).digest });
    await expectCode(kernel.export({ instanceId: info.id, out }), 'INVALID_ARGUMENT', /not an empty directory/);
    await expectCode(kernel.export({ instanceId: info.id, out, format: 'tar' }), 'INVALID_ARGUMENT');
  });

  it('refuses while a writer holds the instance (INSTANCE_IN_USE), allows it with readers', async () => {
    const kernel = await openKernel();
    const info = await kernel.create({ scope: 'named' });
    const out = await tempDir();
    await kernel.bind({ instanceId: info.id, taskId: 'w', slot: 'data', declaredSlots: RW });
    await expectCode(kernel.export({ instanceId: info.id, out: join(out, 'x.tar') }), 'INSTANCE_IN_USE');
    await kernel.releaseTask('w');
    await kernel.bind({ instanceId: info.id, taskId: 'r', slot: 'data', declaredSlots: RO });
    await kernel.export({ instanceId: info.id, out: join(out, 'x.tar') });
    expect(await exists(join(out, 'x.tar'))).toBe(true);
  });

  it('holds off a writer while an export runs', async () => {
    const kernel = await openKernel();
    const info = await kernel.create({ scope: 'named' });
    await writeFile(join(info.hostPath, 'big'), Buffer.alloc(4 << 20));
    const exporting = kernel.export({ instanceId: info.id, out: join(await tempDir(), 'x.tar') });
    const writer = kernel.bind({ instanceId: info.id, taskId: 'w', slot: 'data', declaredSlots: RW });
    expect(await settled(writer)).toBe(false);
    await exporting;
    expect((await writer).access).toBe('rw');
  });
});

describe('kernel lifetime', () => {
  it('keeps named instances, digests and ended tasks across a clean restart', async () => {
    const dataDir = await tempDir();
    const first = createStateKernel({ dataDir, sweepIntervalMs: 0 });
    const info = await first.create({ scope: 'named', name: 'keep' });
    const m = await first.bind({ instanceId: info.id, taskId: 't', slot: 'data', declaredSlots: RW });
    await writeFile(join(m.hostPath, 'f'), 'kept');
    const { releases } = await first.releaseTask('t');
    await first.close();
    const second = await openKernel({ dataDir });
    expect(second.get(info.id)).toMatchObject({ name: 'keep', digest: releases[0]!.digest, bytes: 4 });
    await expectCode(second.bind({ instanceId: info.id, taskId: 't', slot: 'data' }), 'TASK_TERMINATED');
    expect(await second.recover()).toEqual({
      failedTaskIds: [],
      failedTasks: [],
      deletedInstanceIds: [],
      interruptedInstanceIds: [],
      removedOrphans: 0,
    });
  });

  it('refuses a second kernel on the same data directory (DATA_DIR_LOCKED), and everything after close (CLOSED)', async () => {
    const kernel = await openKernel();
    expectThrowsCode(() => createStateKernel({ dataDir: kernel.dataDir }), 'DATA_DIR_LOCKED');
    const id = (await kernel.create({ scope: 'named' })).id;
    await kernel.bind({ instanceId: id, taskId: 'holder', slot: 'data', declaredSlots: RW });
    const waiting = kernel.bind({ instanceId: id, taskId: 'w', slot: 'data', declaredSlots: RW });
    await kernel.close();
    await expectCode(waiting, 'CLOSED');
    await expectCode(kernel.create({ scope: 'named' }), 'CLOSED');
    expectThrowsCode(() => kernel.list(), 'CLOSED');
    // The directory is free again.
    const again = createStateKernel({ dataDir: kernel.dataDir, sweepIntervalMs: 0 });
    expect(again.get(id).bindings).toEqual([]);
    await again.close();
  });

  describe('the data directory lock (kernel.lock: PID and process start time)', () => {
    /** A live process that is not a state kernel: what a recycled pid points at. */
    function unrelatedProcess(): number {
      const child = spawn('sleep', ['60'], { stdio: 'ignore' });
      onCleanup(async () => {
        child.kill('SIGKILL');
      });
      return child.pid!;
    }
    /** Field 22 of /proc/PID/stat (start time in clock ticks since boot). */
    async function startTime(pid: number): Promise<string> {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    }

    it('records our pid and start time in the lock', async () => {
      const kernel = await openKernel();
      const lock = await readFile(join(kernel.dataDir, 'kernel.lock'), 'utf8');
      expect(lock).toBe(`${process.pid} ${await startTime(process.pid)}\n`);
    });

    it('takes over a lock whose pid now belongs to an unrelated process (start time differs)', async () => {
      const dataDir = await tempDir();
      const pid = unrelatedProcess();
      const start = await startTime(pid);
      // The node that wrote this lock died; the pid was then reused by the `sleep` process.
      await writeFile(join(dataDir, 'kernel.lock'), `${pid} ${BigInt(start) - 1000n}\n`);
      const kernel = await openKernel({ dataDir });
      expect(kernel.list()).toEqual([]);
      expect(await readFile(join(dataDir, 'kernel.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid} `));
    });

    it('refuses while the process that wrote the lock lives (same pid and start time), or with a pid-only lock', async () => {
      const dataDir = await tempDir();
      const pid = unrelatedProcess();
      await writeFile(join(dataDir, 'kernel.lock'), `${pid} ${await startTime(pid)}\n`);
      expectThrowsCode(() => createStateKernel({ dataDir }), 'DATA_DIR_LOCKED');
      // A lock written where /proc was unavailable holds only the pid: the pid alone decides.
      await writeFile(join(dataDir, 'kernel.lock'), `${pid}`);
      expectThrowsCode(() => createStateKernel({ dataDir }), 'DATA_DIR_LOCKED');
    });
  });

  it('keeps the artifact digest a task was registered with, and reports it for tasks a restart ended', async () => {
    const dataDir = await tempDir();
    const digest = `sha256:${'c'.repeat(64)}`;
    const first = createStateKernel({ dataDir, sweepIntervalMs: 0 });
    first.registerTask('with-digest', RW, { artifactDigest: digest });
    first.registerTask('with-digest', RW); // idempotent without it
    first.registerTask('late-digest', RW);
    first.registerTask('late-digest', RW, { artifactDigest: digest }); // given on a later call
    first.registerTask('no-digest', []);
    expectThrowsCode(
      () => first.registerTask('with-digest', RW, { artifactDigest: `sha256:${'d'.repeat(64)}` }),
      'INVALID_ARGUMENT',
    );
    expectThrowsCode(() => first.registerTask('bad', RW, { artifactDigest: 'sha256:XYZ' }), 'INVALID_ARGUMENT');
    // Closed without releasing them: as after a crash, the next kernel ends them with node_restart.
    await first.close();
    const second = await openKernel({ dataDir });
    expect((await second.recover()).failedTasks).toEqual([
      { taskId: 'late-digest', artifactDigest: digest, createdAtMs: expect.any(Number) },
      { taskId: 'no-digest', createdAtMs: expect.any(Number) },
      { taskId: 'with-digest', artifactDigest: digest, createdAtMs: expect.any(Number) },
    ]);
  });

  it('opens a registry written before tasks had an artifact digest (the column is added)', async () => {
    const dataDir = await tempDir();
    const { DatabaseSync } = await import('node:sqlite');
    const db = new DatabaseSync(join(dataDir, 'state.db'));
    db.exec(`CREATE TABLE tasks (task_id TEXT PRIMARY KEY, state TEXT NOT NULL, slots TEXT, created_at INTEGER NOT NULL,
      ended_at INTEGER, reason TEXT) STRICT;
      INSERT INTO tasks (task_id, state, slots, created_at) VALUES ('old-task', 'active', '[]', 1000);`);
    db.close();
    const kernel = await openKernel({ dataDir });
    expect((await kernel.recover()).failedTasks).toEqual([{ taskId: 'old-task', createdAtMs: 1000 }]);
    kernel.registerTask('new-task', RW, { artifactDigest: `sha256:${'e'.repeat(64)}` });
  });

  it('refuses a corrupt registry with IO_ERROR and frees the directory lock', async () => {
    const dataDir = await tempDir();
    await writeFile(join(dataDir, 'state.db'), 'this is not an SQLite database'.repeat(100));
    expectThrowsCode(() => createStateKernel({ dataDir, sweepIntervalMs: 0 }), 'IO_ERROR');
    expect(await exists(join(dataDir, 'kernel.lock'))).toBe(false);
  });

  it('removes leftovers of interrupted creates and deletes at recovery', async () => {
    const dataDir = await tempDir();
    await mkdir(join(dataDir, 'instances', 'st_orphanorphanorphanorphanor'), { recursive: true });
    await mkdir(join(dataDir, 'tmp', 'st_stagingstagingstagingstag'), { recursive: true });
    const kernel = await openKernel({ dataDir });
    expect((await kernel.recover()).removedOrphans).toBe(2);
    expect(await readdir(join(dataDir, 'instances'))).toEqual([]);
  });
});
