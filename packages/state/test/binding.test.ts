import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StateKernel, StateMount, StateSlot } from '../src/index.js';
import { expectCode, expectThrowsCode, settled } from './expect.js';
import { openKernel, SLOTS } from './helpers.js';

const RW: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw' }];
const RO: StateSlot[] = [{ name: 'data', mount: '/data', access: 'ro' }];

async function named(kernel: StateKernel): Promise<string> {
  return (await kernel.create({ scope: 'named' })).id;
}

describe('bind: declared slots and coded refusals', () => {
  it('returns the mount at the declared guest path, with the declared access by default', async () => {
    const kernel = await openKernel();
    const data = await named(kernel);
    const config = await named(kernel);
    const m1 = await kernel.bind({ instanceId: data, taskId: 't1', slot: 'data', declaredSlots: SLOTS });
    const m2 = await kernel.bind({ instanceId: config, taskId: 't1', slot: 'config' });
    expect(m1).toMatchObject({ guestPath: '/data', readOnly: false, access: 'rw', instanceId: data, slot: 'data' });
    expect(m1.hostPath).toBe(kernel.get(data).hostPath);
    expect(m2).toMatchObject({ guestPath: '/etc/app', readOnly: true, access: 'ro' });
    expect(kernel.mounts('t1').map((m) => m.slot)).toEqual(['config', 'data']);
    expect(kernel.get(data).bindings).toEqual([{ taskId: 't1', slot: 'data', access: 'rw' }]);
  });

  it('binds ro a slot declared rw, and mounts at / when declared there', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    const slots: StateSlot[] = [{ name: 'root', mount: '/', access: 'rw' }];
    const mount = await kernel.bind({ instanceId: id, taskId: 't1', slot: 'root', access: 'ro', declaredSlots: slots });
    expect(mount).toMatchObject({ guestPath: '/', readOnly: true });
  });

  it('refuses an unknown or malformed instance id with NOT_FOUND', async () => {
    const kernel = await openKernel();
    await expectCode(
      kernel.bind({ instanceId: 'st_aaaaaaaaaaaaaaaaaaaaaaaaaa', taskId: 't', slot: 'data', declaredSlots: RW }),
      'NOT_FOUND',
    );
    await expectCode(kernel.bind({ instanceId: '../../etc', taskId: 't', slot: 'data' }), 'NOT_FOUND');
  });

  it('refuses an undeclared slot with UNDECLARED_SLOT, naming the declared ones', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 't', slot: 'secrets', declaredSlots: SLOTS }),
      'UNDECLARED_SLOT',
      /declared: config, data/,
    );
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 't0', slot: 'data', declaredSlots: [] }),
      'UNDECLARED_SLOT',
      /declared: none/,
    );
  });

  it('refuses rw on a slot declared ro with ACCESS_WIDER_THAN_DECLARED', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 't', slot: 'data', access: 'rw', declaredSlots: RO }),
      'ACCESS_WIDER_THAN_DECLARED',
    );
    expect(kernel.get(id).bindings).toEqual([]);
  });

  it('refuses a terminated task with TASK_TERMINATED, for binds and task-scoped creates', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    kernel.registerTask('t', RW);
    await kernel.releaseTask('t', { reason: 'SUCCEEDED' });
    await expectCode(kernel.bind({ instanceId: id, taskId: 't', slot: 'data' }), 'TASK_TERMINATED');
    await expectCode(kernel.bind({ instanceId: id, taskId: 't', slot: 'data', declaredSlots: RW }), 'TASK_TERMINATED');
    await expectCode(kernel.create({ scope: 'task', taskId: 't' }), 'TASK_TERMINATED');
    expectThrowsCode(() => kernel.registerTask('t', RW), 'TASK_TERMINATED');
  });

  it("refuses binding another task's task-scoped instance with SCOPE_MISMATCH", async () => {
    const kernel = await openKernel();
    const mine = await kernel.create({ scope: 'task', taskId: 'owner' });
    await expectCode(
      kernel.bind({ instanceId: mine.id, taskId: 'intruder', slot: 'data', declaredSlots: RW }),
      'SCOPE_MISMATCH',
    );
  });

  it('refuses a second binding of the same slot with SLOT_ALREADY_BOUND', async () => {
    const kernel = await openKernel();
    await kernel.bind({ instanceId: await named(kernel), taskId: 't', slot: 'data', declaredSlots: RW });
    await expectCode(kernel.bind({ instanceId: await named(kernel), taskId: 't', slot: 'data' }), 'SLOT_ALREADY_BOUND');
  });

  it('needs the declared slots the first time it hears of a task, and refuses different ones later', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await expectCode(kernel.bind({ instanceId: id, taskId: 'new', slot: 'data' }), 'NOT_FOUND', /declaredSlots/);
    kernel.registerTask('t', RW);
    kernel.registerTask('t', RW); // idempotent
    expectThrowsCode(() => kernel.registerTask('t', RO), 'INVALID_ARGUMENT');
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 't', slot: 'data', declaredSlots: SLOTS }),
      'INVALID_ARGUMENT',
    );
  });

  it.each<[string, unknown]>([
    ['a relative mount', [{ name: 'data', mount: 'data', access: 'rw' }]],
    ['a mount with ..', [{ name: 'data', mount: '/data/../etc', access: 'rw' }]],
    ['a mount with a trailing slash', [{ name: 'data', mount: '/data/', access: 'rw' }]],
    ['a bad slot name', [{ name: 'Data!', mount: '/data', access: 'rw' }]],
    ['a bad access', [{ name: 'data', mount: '/data', access: 'rwx' }]],
    ['a zero quota', [{ name: 'data', mount: '/data', access: 'rw', quotaBytes: 0 }]],
    [
      'two slots with one name',
      [
        { name: 'a', mount: '/a', access: 'rw' },
        { name: 'a', mount: '/b', access: 'rw' },
      ],
    ],
    [
      'two slots at one mount',
      [
        { name: 'a', mount: '/a', access: 'rw' },
        { name: 'b', mount: '/a', access: 'ro' },
      ],
    ],
    ['not an array', { name: 'data' }],
  ])('refuses declared slots with %s (INVALID_ARGUMENT)', async (_what, slots) => {
    const kernel = await openKernel();
    expectThrowsCode(() => kernel.registerTask('t', slots as StateSlot[]), 'INVALID_ARGUMENT');
  });

  it('refuses bad task ids with INVALID_ARGUMENT', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    for (const taskId of ['', 'a\nb', 'x'.repeat(257), 42]) {
      await expectCode(
        kernel.bind({ instanceId: id, taskId: taskId as string, slot: 'data', declaredSlots: RW }),
        'INVALID_ARGUMENT',
      );
    }
  });

  it('carries the quota into the mount: the smaller of the instance and the slot quota', async () => {
    const kernel = await openKernel();
    const id = (await kernel.create({ scope: 'named', quotaBytes: 10_000, quotaEntries: 50 })).id;
    const slots: StateSlot[] = [
      { name: 'small', mount: '/s', access: 'rw', quotaBytes: 4096 },
      { name: 'big', mount: '/b', access: 'ro', quotaBytes: 1 << 30 },
    ];
    const m1 = await kernel.bind({ instanceId: id, taskId: 't1', slot: 'small', declaredSlots: slots });
    expect(m1).toMatchObject({ quotaBytes: 4096, quotaEntries: 50, usedBytes: 0, usedEntries: 0 });
    await kernel.releaseTask('t1');
    const m2 = await kernel.bind({ instanceId: id, taskId: 't2', slot: 'big', declaredSlots: slots });
    expect(m2.quotaBytes).toBe(10_000);
  });
});

describe('single writer under concurrent binds, policy "wait"', () => {
  it('grants one rw binding at a time, in FIFO order, each writer seeing the previous writes', async () => {
    const kernel = await openKernel({ conflictPolicy: 'wait' });
    const id = await named(kernel);
    const tasks = ['t1', 't2', 't3', 't4', 't5'];
    const grantOrder: string[] = [];
    const binds = tasks.map((taskId) =>
      kernel.bind({ instanceId: id, taskId, slot: 'data', declaredSlots: RW }).then((m) => {
        grantOrder.push(taskId);
        return m;
      }),
    );
    for (const [i, taskId] of tasks.entries()) {
      const mount: StateMount = await binds[i]!;
      // Exactly one holder, and it is this task.
      expect(kernel.get(id).bindings).toEqual([{ taskId, slot: 'data', access: 'rw' }]);
      for (const later of binds.slice(i + 1)) expect(await settled(later)).toBe(false);
      // The task appends to a log: it sees every earlier writer's line.
      const log = join(mount.hostPath, 'log');
      const before = await readFile(log, 'utf8').catch(() => '');
      expect(before).toBe(
        tasks
          .slice(0, i)
          .map((t) => `${t}\n`)
          .join(''),
      );
      await writeFile(log, `${before}${taskId}\n`);
      await kernel.releaseTask(taskId);
    }
    expect(grantOrder).toEqual(tasks);
  });

  it('admits many readers together; a writer waits for all; a reader after a queued writer does not overtake', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    const r1 = await kernel.bind({ instanceId: id, taskId: 'r1', slot: 'data', declaredSlots: RO });
    const r2 = await kernel.bind({ instanceId: id, taskId: 'r2', slot: 'data', declaredSlots: RO });
    expect(r1.readOnly && r2.readOnly).toBe(true);
    const writer = kernel.bind({ instanceId: id, taskId: 'w', slot: 'data', declaredSlots: RW });
    const lateReader = kernel.bind({ instanceId: id, taskId: 'r3', slot: 'data', declaredSlots: RO });
    expect(kernel.taskStatus('w').waitingSlots).toEqual(['data']);
    await kernel.releaseTask('r1');
    expect(await settled(writer)).toBe(false);
    await kernel.releaseTask('r2');
    expect((await writer).access).toBe('rw');
    expect(await settled(lateReader)).toBe(false);
    await kernel.releaseTask('w');
    expect((await lateReader).readOnly).toBe(true);
  });

  it('fails a wait that lasts too long with PENDING_TIMEOUT and leaves the queue clean', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await kernel.bind({ instanceId: id, taskId: 'holder', slot: 'data', declaredSlots: RW });
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 'slow', slot: 'data', declaredSlots: RW, timeoutMs: 20 }),
      'PENDING_TIMEOUT',
      /did not release/,
    );
    expect(kernel.taskStatus('slow').waitingSlots).toEqual([]);
    await kernel.releaseTask('holder');
    // The timed-out task may try again; a fresh task gets it immediately.
    expect((await kernel.bind({ instanceId: id, taskId: 'slow', slot: 'data' })).access).toBe('rw');
  });

  it('cancels a waiting bind through its AbortSignal (CANCELLED)', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await kernel.bind({ instanceId: id, taskId: 'holder', slot: 'data', declaredSlots: RW });
    const ac = new AbortController();
    const waiting = kernel.bind({ instanceId: id, taskId: 'w', slot: 'data', declaredSlots: RW, signal: ac.signal });
    ac.abort();
    await expectCode(waiting, 'CANCELLED');
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 'w2', slot: 'data', declaredSlots: RW, signal: AbortSignal.abort() }),
      'CANCELLED',
    );
  });

  it('fails the waiting bind of a task that is released meanwhile (TASK_TERMINATED)', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    await kernel.bind({ instanceId: id, taskId: 'holder', slot: 'data', declaredSlots: RW });
    const waiting = kernel.bind({ instanceId: id, taskId: 'cancelled', slot: 'data', declaredSlots: RW });
    await kernel.releaseTask('cancelled', { reason: 'CANCELLED' });
    await expectCode(waiting, 'TASK_TERMINATED');
  });

  it('tells the caller synchronously when a bind is queued (onQueued), never for one granted or refused at once', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    const calls: string[] = [];
    const granted = kernel.bind({
      instanceId: id,
      taskId: 'first',
      slot: 'data',
      declaredSlots: RW,
      onQueued: () => calls.push('first'),
    });
    const queued = kernel.bind({
      instanceId: id,
      taskId: 'second',
      slot: 'data',
      declaredSlots: RW,
      onQueued: () => calls.push('second'),
    });
    // Already queued when bind() returns: a node can answer the submit before the holder releases.
    expect(calls).toEqual(['second']);
    expect(kernel.taskStatus('second').waitingSlots).toEqual(['data']);
    const refused = kernel.bind({
      instanceId: id,
      taskId: 'other',
      slot: 'nope',
      declaredSlots: RW,
      onQueued: () => calls.push('other'),
    });
    await expectCode(refused, 'UNDECLARED_SLOT');
    await granted;
    await kernel.releaseTask('first');
    expect((await queued).taskId).toBe('second');
    expect(calls).toEqual(['second']);
  });

  it('refuses at once a bind that would wait for the same task (BINDING_CONFLICT)', async () => {
    const kernel = await openKernel();
    const id = await named(kernel);
    const slots: StateSlot[] = [
      { name: 'a', mount: '/a', access: 'rw' },
      { name: 'b', mount: '/b', access: 'ro' },
    ];
    await kernel.bind({ instanceId: id, taskId: 't', slot: 'a', declaredSlots: slots });
    await expectCode(kernel.bind({ instanceId: id, taskId: 't', slot: 'b' }), 'BINDING_CONFLICT', /wait for itself/);
  });
});

describe('single writer under concurrent binds, policy "refuse"', () => {
  it('grants exactly one of many concurrent rw binds and refuses the rest with BINDING_CONFLICT', async () => {
    const kernel = await openKernel({ conflictPolicy: 'refuse' });
    const id = await named(kernel);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        kernel.bind({ instanceId: id, taskId: `t${i}`, slot: 'data', declaredSlots: RW }),
      ),
    );
    const granted = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    expect(granted).toHaveLength(1);
    expect(refused.map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(Array(7).fill('BINDING_CONFLICT'));
    expect(kernel.get(id).bindings).toHaveLength(1);
  });

  it('refuses a reader while a writer holds, and a writer while readers hold; frees after release', async () => {
    const kernel = await openKernel({ conflictPolicy: 'refuse' });
    const id = await named(kernel);
    await kernel.bind({ instanceId: id, taskId: 'w', slot: 'data', declaredSlots: RW });
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 'r', slot: 'data', declaredSlots: RO }),
      'BINDING_CONFLICT',
      /w\/data \(rw\)/,
    );
    await kernel.releaseTask('w');
    await kernel.bind({ instanceId: id, taskId: 'r1', slot: 'data', declaredSlots: RO });
    await kernel.bind({ instanceId: id, taskId: 'r2', slot: 'data', declaredSlots: RO });
    await expectCode(
      kernel.bind({ instanceId: id, taskId: 'w2', slot: 'data', declaredSlots: RW }),
      'BINDING_CONFLICT',
    );
    await kernel.releaseTask('r1');
    await kernel.releaseTask('r2');
    expect((await kernel.bind({ instanceId: id, taskId: 'w3', slot: 'data', declaredSlots: RW })).access).toBe('rw');
  });
});

describe('PENDING: readiness of a task', () => {
  it('is ready only when every declared slot is bound; whenReady resolves with the mounts', async () => {
    const kernel = await openKernel();
    kernel.registerTask('t', SLOTS);
    expect(kernel.isReady('t')).toBe(false);
    expect(kernel.taskStatus('t').missingSlots).toEqual(['config', 'data']);
    const ready = kernel.whenReady('t');
    await kernel.bind({ instanceId: await named(kernel), taskId: 't', slot: 'data' });
    expect(kernel.isReady('t')).toBe(false);
    expect(await settled(ready)).toBe(false);
    await kernel.bind({ instanceId: await named(kernel), taskId: 't', slot: 'config' });
    expect(kernel.isReady('t')).toBe(true);
    expect((await ready).map((m) => m.guestPath)).toEqual(['/etc/app', '/data']);
  });

  it('is ready at once for a task that declares no slots', async () => {
    const kernel = await openKernel();
    expect(kernel.isReady('t', [])).toBe(true);
    expect(await kernel.whenReady('t', { declaredSlots: [] })).toEqual([]);
  });

  it('ends a wait for readiness when its signal aborts (CANCELLED), so a cancelled PENDING task never hangs', async () => {
    const kernel = await openKernel();
    kernel.registerTask('t', SLOTS);
    const ac = new AbortController();
    const ready = kernel.whenReady('t', { signal: ac.signal });
    ac.abort();
    await expectCode(ready, 'CANCELLED');
    await expectCode(kernel.whenReady('t', { signal: AbortSignal.abort() }), 'CANCELLED');
    // Nothing is left waiting: releasing the task completes at once.
    expect((await kernel.releaseTask('t')).releases).toEqual([]);
  });

  it('ends a wait for readiness with PENDING_TIMEOUT naming the unbound slots, or TASK_TERMINATED', async () => {
    const kernel = await openKernel();
    kernel.registerTask('t', SLOTS);
    await expectCode(kernel.whenReady('t', { timeoutMs: 20 }), 'PENDING_TIMEOUT', /unbound slots: config, data/);
    const ready = kernel.whenReady('t');
    await kernel.releaseTask('t', { reason: 'CANCELLED' });
    await expectCode(ready, 'TASK_TERMINATED');
    expect(kernel.isReady('t')).toBe(false);
  });
});
