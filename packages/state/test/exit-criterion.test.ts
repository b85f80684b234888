import { readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StateSlot } from '../src/index.js';
import { expectCode } from './expect.js';
import { openKernel, tempDir, writeTree } from './helpers.js';

/**
 * ARCHITECTURE.md §1 row 3, at library level: the kernel side of every clause. (The same clauses with real Wasm
 * tasks run once the runtime consumes these mounts.)
 */
describe('exit criterion: a task sees only state bound to it, at the path its artifact declared; the single consistency class holds under concurrent tasks; each release reports a content digest; quotas hold', () => {
  it('a task sees only state bound to it, at the path its artifact declared', async () => {
    const kernel = await openKernel();
    const artifactA: StateSlot[] = [
      { name: 'db', mount: '/var/db', access: 'rw' },
      { name: 'cfg', mount: '/', access: 'ro' },
    ];
    const artifactB: StateSlot[] = [{ name: 'db', mount: '/srv/db', access: 'rw' }];
    const dbA = await kernel.create({ scope: 'task', taskId: 'A' });
    const cfg = await kernel.create({ scope: 'named' });
    const dbB = await kernel.create({ scope: 'task', taskId: 'B' });
    await kernel.bind({ instanceId: dbA.id, taskId: 'A', slot: 'db', declaredSlots: artifactA });
    await kernel.bind({ instanceId: cfg.id, taskId: 'A', slot: 'cfg' });
    await kernel.bind({ instanceId: dbB.id, taskId: 'B', slot: 'db', declaredSlots: artifactB });

    const mountsA = kernel.mounts('A');
    const mountsB = kernel.mounts('B');
    // Exactly the bound instances, at the declared guest paths, with the bound access.
    expect(mountsA.map((m) => [m.slot, m.guestPath, m.instanceId, m.readOnly])).toEqual([
      ['cfg', '/', cfg.id, true],
      ['db', '/var/db', dbA.id, false],
    ]);
    expect(mountsB.map((m) => [m.slot, m.guestPath, m.instanceId])).toEqual([['db', '/srv/db', dbB.id]]);
    // No host directory is shared between the two tasks, and none is outside the instances directory.
    const hostA = new Set(mountsA.map((m) => m.hostPath));
    expect(mountsB.some((m) => hostA.has(m.hostPath))).toBe(false);
    for (const m of [...mountsA, ...mountsB])
      expect(m.hostPath.startsWith(join(kernel.dataDir, 'instances'))).toBe(true);
    // Nothing else can be reached: another task's instance, an undeclared slot, a wider access.
    await expectCode(kernel.bind({ instanceId: dbA.id, taskId: 'B', slot: 'db' }), 'SCOPE_MISMATCH');
    await expectCode(kernel.bind({ instanceId: cfg.id, taskId: 'B', slot: 'cfg' }), 'UNDECLARED_SLOT');
    const other = await kernel.create({ scope: 'named' });
    await expectCode(
      kernel.bind({ instanceId: other.id, taskId: 'C', slot: 'cfg', access: 'rw', declaredSlots: artifactA }),
      'ACCESS_WIDER_THAN_DECLARED',
    );
  });

  it("no task sees another task's writes except through an instance handed over after release", async () => {
    const kernel = await openKernel();
    const slots: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw' }];
    const shared = await kernel.create({ scope: 'named' });
    const writer = await kernel.bind({ instanceId: shared.id, taskId: 'writer', slot: 'data', declaredSlots: slots });
    await writeFile(join(writer.hostPath, 'note'), 'written by writer');
    // The reader cannot get a mount (so it cannot see the in-progress write) while the writer holds the instance.
    let readerMount: Awaited<ReturnType<typeof kernel.bind>> | undefined;
    const reader = kernel
      .bind({ instanceId: shared.id, taskId: 'reader', slot: 'data', access: 'ro', declaredSlots: slots })
      .then((m) => {
        readerMount = m;
        return m;
      });
    await new Promise((r) => setImmediate(r));
    expect(readerMount).toBeUndefined();
    expect(kernel.mounts('reader')).toEqual([]);
    await kernel.releaseTask('writer');
    // Handed over after release: now it sees the writes.
    const m = await reader;
    expect(await readFile(join(m.hostPath, 'note'), 'utf8')).toBe('written by writer');
  });

  it('the single consistency class holds under concurrent tasks: one writer at a time, no lost update', async () => {
    const kernel = await openKernel({ conflictPolicy: 'wait' });
    const slots: StateSlot[] = [{ name: 'counter', mount: '/counter', access: 'rw' }];
    const counter = await kernel.create({ scope: 'named' });
    await writeFile(join(counter.hostPath, 'n'), '0');
    const observedWriters: number[] = [];
    const readersSawWriter: boolean[] = [];
    // 12 writers and 6 readers submitted at once; every writer does a slow read-modify-write.
    const writers = Array.from({ length: 12 }, async (_, i) => {
      const taskId = `w${i}`;
      const mount = await kernel.bind({ instanceId: counter.id, taskId, slot: 'counter', declaredSlots: slots });
      observedWriters.push(kernel.get(counter.id).bindings.length);
      const n = Number(await readFile(join(mount.hostPath, 'n'), 'utf8'));
      await new Promise((r) => setTimeout(r, 1));
      await writeFile(join(mount.hostPath, 'n'), String(n + 1));
      return kernel.releaseTask(taskId);
    });
    const readers = Array.from({ length: 6 }, async (_, i) => {
      const taskId = `r${i}`;
      await kernel.bind({ instanceId: counter.id, taskId, slot: 'counter', access: 'ro', declaredSlots: slots });
      readersSawWriter.push(kernel.get(counter.id).bindings.some((b) => b.access === 'rw'));
      await new Promise((r) => setTimeout(r, 1));
      return kernel.releaseTask(taskId);
    });
    const reports = await Promise.all([...writers, ...readers]);
    expect(await readFile(join(counter.hostPath, 'n'), 'utf8')).toBe('12');
    expect(observedWriters).toEqual(Array(12).fill(1));
    expect(readersSawWriter).toEqual(Array(6).fill(false));
    // Every release reported a digest.
    for (const r of reports) expect(r.releases[0]!.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('each release reports a content digest: same content gives the same digest whatever the order and mtimes', async () => {
    const kernel = await openKernel();
    const slots: StateSlot[] = [{ name: 'out', mount: '/out', access: 'rw' }];
    const run = async (taskId: string, order: string[], mtime: number) => {
      const scratch = await kernel.create({ scope: 'task', taskId });
      const m = await kernel.bind({ instanceId: scratch.id, taskId, slot: 'out', declaredSlots: slots });
      for (const name of order) {
        await writeTree(m.hostPath, { [name]: `content of ${name}` });
        await utimes(join(m.hostPath, name), mtime, mtime);
      }
      const { releases } = await kernel.releaseTask(taskId);
      expect(releases[0]!.destroyed).toBe(true);
      return releases[0]!.digest;
    };
    const d1 = await run('t1', ['a.txt', 'sub/b.txt', 'c.txt'], 1_000);
    const d2 = await run('t2', ['c.txt', 'a.txt', 'sub/b.txt'], 2_000_000);
    const d3 = await run('t3', ['a.txt', 'sub/b.txt'], 1_000);
    expect(d1).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(d2).toBe(d1);
    expect(d3).not.toBe(d1);
  });

  it('quotas hold: over-quota seeds are refused, mounts carry the quota, over-quota content is recorded at release', async () => {
    const kernel = await openKernel();
    const seed = await tempDir();
    await writeTree(seed, { a: Buffer.alloc(2048) });
    await expectCode(kernel.create({ scope: 'named', quotaBytes: 2047, seed: { dir: seed } }), 'QUOTA_EXCEEDED');
    const info = await kernel.create({ scope: 'named', quotaBytes: 4096, quotaEntries: 2, seed: { dir: seed } });
    const slots: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw', quotaBytes: 3000 }];
    const m = await kernel.bind({ instanceId: info.id, taskId: 't', slot: 'data', declaredSlots: slots });
    expect(m).toMatchObject({ quotaBytes: 3000, quotaEntries: 2, usedBytes: 2048, usedEntries: 1 });
    await writeFile(join(m.hostPath, 'b'), Buffer.alloc(1000)); // 3048 > 3000
    const { releases } = await kernel.releaseTask('t');
    expect(releases[0]).toMatchObject({ bytes: 3048, entries: 2, quotaExceeded: true });
    expect(kernel.get(info.id).quotaExceeded).toBe(true);
  });
});
