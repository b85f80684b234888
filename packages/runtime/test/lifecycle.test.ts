import { join } from 'node:path';
import { buildWatFixture } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRuntime, type RuntimeArtifact, type RuntimeHooks, type StateReleaseContext } from '../dist/index.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir } from './helpers.js';

const fixture = async (name: Parameters<typeof buildWatFixture>[0]) =>
  makeArtifact(await p1ToComponent(await buildWatFixture(name)), { name });

describe('state hooks see the outcome and never leak a binding', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  const a: Record<string, RuntimeArtifact> = {};

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    for (const name of ['hello', 'exit-33', 'loop'] as const) a[name] = await fixture(name);
  });
  afterAll(() => cleanup());

  const withHooks = (hooks: RuntimeHooks, cache: string) =>
    createRuntime({ artifacts: memorySource(Object.values(a)), cacheDir: join(dir, cache), poolSize: 1, hooks });

  it('release receives the terminal state, reason, message and exit code the task ends with', async () => {
    const seen = new Map<string, StateReleaseContext>();
    const runtime = withHooks({ release: (ctx) => void seen.set(ctx.taskId, ctx) }, 'c1');
    try {
      const late = await runtime.submit({ digest: a.loop!.digest, limits: { deadlineMs: 300 } });
      const exited = await runtime.submit({ digest: a['exit-33']!.digest });
      const ok = await runtime.submit({ digest: a.hello!.digest });
      const ended = await Promise.all([late, exited, ok].map((t) => runtime.wait(t.id)));
      expect(ended.map((s) => s.state)).toEqual(['DEADLINE_EXCEEDED', 'FAILED', 'SUCCEEDED']);

      const deadline = seen.get(late.id)!;
      expect(deadline.outcome).toEqual({
        state: 'DEADLINE_EXCEEDED',
        reason: 'DEADLINE_EXCEEDED',
        message: 'deadline of 300 ms exceeded',
      });
      expect(deadline.status).toMatchObject({ state: 'DEADLINE_EXCEEDED', reason: 'DEADLINE_EXCEEDED' });
      expect(deadline.status.endedAt).toBeTypeOf('number');

      expect(seen.get(exited.id)!.outcome).toEqual({
        state: 'FAILED',
        reason: 'EXIT_CODE',
        message: 'exit code 33',
        exitCode: 33,
      });
      expect(seen.get(exited.id)!.status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 33 });
      expect(seen.get(ok.id)!.outcome).toEqual({ state: 'SUCCEEDED', exitCode: 0 });
      // What release saw is what get() publishes afterwards.
      expect(runtime.get(late.id)).toMatchObject({ state: 'DEADLINE_EXCEEDED', endedAt: deadline.status.endedAt });
    } finally {
      await runtime.close();
    }
  });

  it('a release hook that throws turns SUCCEEDED into FAILED(STATE_RELEASE_FAILED) but keeps other outcomes', async () => {
    const runtime = withHooks(
      {
        release: () => {
          throw new Error('kernel could not snapshot the slot');
        },
      },
      'c2',
    );
    try {
      const ok = await runtime.wait((await runtime.submit({ digest: a.hello!.digest })).id);
      expect(ok).toMatchObject({
        state: 'FAILED',
        reason: 'STATE_RELEASE_FAILED',
        message: 'kernel could not snapshot the slot',
        exitCode: 0,
      });
      const exited = await runtime.wait((await runtime.submit({ digest: a['exit-33']!.digest })).id);
      expect(exited).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 33 });
    } finally {
      await runtime.close();
    }
  });

  it('cancel while bind is pending waits for bind to settle, then releases what it acquired', async () => {
    const log: string[] = [];
    let finishBind!: () => void;
    const runtime = withHooks(
      {
        // A kernel that does not watch the signal: it completes the binding after the cancel.
        bind: async ({ taskId }) => {
          log.push(`bind ${taskId}`);
          await new Promise<void>((resolve) => {
            finishBind = resolve;
          });
          log.push(`acquired ${taskId}`);
          return [];
        },
        release: ({ taskId, outcome }) => void log.push(`release ${taskId} ${outcome.state}`),
      },
      'c3',
    );
    try {
      const task = await runtime.submit({ digest: a.hello!.digest });
      await vi.waitFor(() => expect(log).toEqual([`bind ${task.id}`]), { interval: 5 });
      const cancelled = runtime.cancel(task.id);
      await new Promise((r) => setTimeout(r, 50));
      // Release must not run while the binding is still being acquired.
      expect(log).toEqual([`bind ${task.id}`]);
      expect(runtime.get(task.id).state).toBe('PENDING');
      finishBind();
      expect(await cancelled).toMatchObject({ state: 'CANCELLED', reason: 'CANCELLED' });
      expect(log).toEqual([`bind ${task.id}`, `acquired ${task.id}`, `release ${task.id} CANCELLED`]);
      // The task never ran.
      expect((await cancelled).startedAt).toBeUndefined();
    } finally {
      await runtime.close();
    }
  });

  it('cancel while PENDING aborts the bind hook through ctx.signal; the abort is not a bind failure', async () => {
    const signals: AbortSignal[] = [];
    const released: string[] = [];
    const runtime = withHooks(
      {
        bind: ({ signal }) => {
          signals.push(signal);
          return new Promise((_, reject) => {
            signal.addEventListener('abort', () => reject(new Error('bind aborted')), { once: true });
          });
        },
        release: ({ taskId }) => void released.push(taskId),
      },
      'c4',
    );
    try {
      const task = await runtime.submit({ digest: a.hello!.digest });
      await vi.waitFor(() => expect(signals).toHaveLength(1), { interval: 5 });
      expect(signals[0]!.aborted).toBe(false);
      const status = await runtime.cancel(task.id);
      expect(status).toMatchObject({ state: 'CANCELLED', reason: 'CANCELLED' });
      expect(signals[0]!.aborted).toBe(true);
      expect(released).toEqual([task.id]);

      // A deadline during bind aborts it the same way.
      const timed = await runtime.submit({ digest: a.hello!.digest, limits: { deadlineMs: 100 } });
      expect(await runtime.wait(timed.id)).toMatchObject({ state: 'DEADLINE_EXCEEDED' });
      expect(signals[1]!.aborted).toBe(true);
      expect(released).toEqual([task.id, timed.id]);
      expect(runtime.stats()).toMatchObject({ pending: 0, queued: 0, running: 0 });
    } finally {
      await runtime.close();
    }
  });

  it("hands the submit's stateBindings to the bind hook unchanged and refuses malformed ones (INVALID_ARGUMENT)", async () => {
    const seen: unknown[] = [];
    const runtime = withHooks({ bind: ({ request }) => void seen.push(request.stateBindings) }, 'c5');
    try {
      const stateBindings = [
        { slot: 'data', instanceId: 'st_a' },
        { slot: 'cfg', instanceId: 'st_b', access: 'ro' as const },
      ];
      const task = await runtime.submit({ digest: a.hello!.digest, stateBindings });
      expect(await runtime.wait(task.id)).toMatchObject({ state: 'SUCCEEDED' });
      expect(seen).toEqual([stateBindings]);
      for (const bad of [[{ slot: 'data' }], [{ slot: 'd', instanceId: 's', access: 'rx' }], 'data=st_a']) {
        await expect(runtime.submit({ digest: a.hello!.digest, stateBindings: bad as never })).rejects.toMatchObject({
          code: 'INVALID_ARGUMENT',
        });
      }
    } finally {
      await runtime.close();
    }
  });

  it('ends a task whose bind hook gave up waiting (code PENDING_TIMEOUT) FAILED(PENDING_TIMEOUT); other errors STATE_BIND_FAILED', async () => {
    const released: string[] = [];
    const runtime = withHooks(
      {
        bind: ({ request }) => {
          if (request.args?.[0] === 'timeout') {
            throw Object.assign(new Error('task stayed pending 50 ms; unbound slots: data'), {
              code: 'PENDING_TIMEOUT',
            });
          }
          throw Object.assign(new Error('state instance st_x is held by another task'), { code: 'BINDING_CONFLICT' });
        },
        release: ({ taskId }) => void released.push(taskId),
      },
      'c6',
    );
    try {
      const timedOut = await runtime.wait((await runtime.submit({ digest: a.hello!.digest, args: ['timeout'] })).id);
      expect(timedOut).toMatchObject({
        state: 'FAILED',
        reason: 'PENDING_TIMEOUT',
        message: 'task stayed pending 50 ms; unbound slots: data',
      });
      expect(timedOut.startedAt).toBeUndefined();
      const refused = await runtime.wait((await runtime.submit({ digest: a.hello!.digest })).id);
      expect(refused).toMatchObject({ state: 'FAILED', reason: 'STATE_BIND_FAILED' });
      expect(released).toEqual([timedOut.id, refused.id]);
    } finally {
      await runtime.close();
    }
  });
});

describe('stdin sources are closed when the task ends', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterAll(() => cleanup());

  it('calls return() on a stdin iterator whose next() is still pending when the task ends', async () => {
    const hello = await fixture('hello');
    const runtime = createRuntime({ artifacts: memorySource([hello]), cacheDir: join(dir, 'c') });
    let returned = 0;
    let nexts = 0;
    const stdin: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          nexts++;
          return new Promise<IteratorResult<Uint8Array>>(() => {}); // a source that never delivers
        },
        return: async () => {
          returned++;
          return { done: true, value: undefined };
        },
      }),
    };
    try {
      const task = await runtime.submit({ digest: hello.digest, stdin });
      expect((await runtime.wait(task.id)).state).toBe('SUCCEEDED');
      await vi.waitFor(() => expect(returned).toBe(1), { interval: 5 });
      expect(nexts).toBe(1);
    } finally {
      await runtime.close();
    }
  });

  it('does not call return() on a stdin source that ended by itself', async () => {
    const hello = await fixture('hello');
    const runtime = createRuntime({ artifacts: memorySource([hello]), cacheDir: join(dir, 'c2') });
    let returned = 0;
    const stdin: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => {
        let sent = false;
        return {
          next: async (): Promise<IteratorResult<Uint8Array>> => {
            if (sent) return { done: true, value: undefined };
            sent = true;
            return { done: false, value: new Uint8Array([1]) };
          },
          return: async () => {
            returned++;
            return { done: true, value: undefined };
          },
        };
      },
    };
    try {
      const task = await runtime.submit({ digest: hello.digest, stdin });
      expect((await runtime.wait(task.id)).state).toBe('SUCCEEDED');
      await new Promise((r) => setTimeout(r, 50));
      expect(returned).toBe(0);
    } finally {
      await runtime.close();
    }
  });
});
