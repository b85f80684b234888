import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildWatFixture } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type TaskEvent } from '../dist/index.js';
import {
  Errno,
  fsOpWat,
  makeArtifact,
  memorySource,
  p1ToComponent,
  type StoreArtifactSpec,
  signedStoreSource,
  tempDir,
  text,
  watToWasm,
} from './helpers.js';

const MiB = 1024 * 1024;

const fixture = async (name: Parameters<typeof buildWatFixture>[0], manifest?: Parameters<typeof makeArtifact>[1]) =>
  makeArtifact(await p1ToComponent(await buildWatFixture(name)), { name, ...manifest });

describe('exit criterion: a verified artifact runs as an isolated task with captured stdio and exact exit code; cancel and deadline stop even a tight loop', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  /** Digests of packed, signed artifacts imported into a real store (see signedStoreSource). */
  const a: Record<string, { digest: string }> = {};
  // Values in the node's environment that a guest must never see. Set before the runtime (and its workers) exist,
  // so a worker that copied the host environment at spawn would leak them.
  const hostEnv = { VYR_SECRET_PROBE: 'host-secret-value', GREETING: 'from-host' };
  const savedEnv: Record<string, string | undefined> = {};

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    for (const [k, v] of Object.entries(hostEnv)) {
      savedEnv[k] = process.env[k];
      process.env[k] = v;
    }
    const specs: StoreArtifactSpec[] = [];
    for (const name of ['hello', 'exit-33', 'loop', 'trap', 'args', 'cat', 'stdio', 'fs'] as const) {
      specs.push({ name, core: await buildWatFixture(name) });
    }
    specs.push({ name: 'memory-grow', core: await buildWatFixture('memory-grow'), limits: { memoryBytes: 8 * MiB } });
    specs.push({ name: 'env', core: await buildWatFixture('env'), env: ['GREETING', 'VYR_SECRET_PROBE'] });
    for (const op of ['create', 'mkdir', 'unlink', 'read'] as const) {
      specs.push({ name: `fs-${op}`, core: await watToWasm(fsOpWat(op, 64 * 1024)) });
    }
    const store = await signedStoreSource(dir, specs);
    for (const [name, digest] of Object.entries(store.digests)) a[name] = { digest };
    a.exit33 = a['exit-33']!;
    a.grow = a['memory-grow']!;
    runtime = createRuntime({ artifacts: store.source, cacheDir: join(dir, 'cache'), poolSize: 2 });
    await runtime.warmUp();
  });
  afterAll(async () => {
    await runtime?.close();
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await cleanup();
  });

  const run = async (artifact: { digest: string }, request: Omit<Parameters<Runtime['submit']>[0], 'digest'> = {}) => {
    const task = await runtime.submit({ digest: artifact.digest, ...request });
    const status = await runtime.wait(task.id);
    const out = runtime.output(task.id);
    return { status, stdout: text(out.stdout), stderr: text(out.stderr) };
  };

  it('runs a component to success and captures its stdout', async () => {
    const { status, stdout } = await run(a.hello!);
    expect(stdout).toBe('hello from vyr\n');
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0, stdoutBytes: 15 });
    expect(status.reason).toBeUndefined();
  });

  it('keeps the exact exit code of proc_exit(33) and captures stderr', async () => {
    const { status, stderr } = await run(a.exit33!);
    expect(stderr).toBe('exiting with 33\n');
    expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 33 });
  });

  it('reports a trap as FAILED with reason TRAP and the engine message', async () => {
    const { status, stdout } = await run(a.trap!);
    expect(stdout).toBe('about to trap\n');
    expect(status.state).toBe('FAILED');
    expect(status.reason).toBe('TRAP');
    expect(status.message).toMatch(/unreachable/);
    expect(status.exitCode).toBeUndefined();
  });

  it('passes args after the program name', async () => {
    const { stdout } = await run(a.args!, { args: ['one', 'two words'] });
    expect(stdout).toBe('args\none\ntwo words\n');
  });

  it('shows the guest only declared env keys with submitted values, never the host environment', async () => {
    expect(process.env.VYR_SECRET_PROBE).toBe('host-secret-value'); // in the node's environment since before start
    const { stdout, status } = await run(a.env!, { env: { GREETING: 'hi' } });
    expect(status.state).toBe('SUCCEEDED');
    expect(stdout).toBe('GREETING=hi\n');
    expect(stdout).not.toContain('host-secret-value');
    // Declared but not submitted: absent, not the host's value.
    const none = await run(a.env!);
    expect(none.stdout).toBe('');
  });

  it('refuses env keys the artifact does not declare', async () => {
    await expect(runtime.submit({ digest: a.env!.digest, env: { PATH: '/bin' } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('pipes stdin bytes, strings and async streams to the guest', async () => {
    expect((await run(a.cat!, { stdin: 'line one\nline two\n' })).stdout).toBe('line one\nline two\n');
    const big = new Uint8Array(300_000).map((_, i) => 97 + (i % 26));
    const fromBytes = await run(a.cat!, { stdin: big });
    expect(fromBytes.stdout.length).toBe(big.length);
    expect(fromBytes.stdout).toBe(text(big));
    async function* chunks() {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setTimeout(r, 5));
        yield new TextEncoder().encode(`chunk ${i}\n`);
      }
    }
    expect((await run(a.cat!, { stdin: chunks() })).stdout).toBe('chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n');
    expect((await run(a.cat!)).stdout).toBe('');
  });

  it('watch streams status changes and output, ending with the terminal status', async () => {
    const task = await runtime.submit({ digest: a.stdio!.digest });
    const events: TaskEvent[] = [];
    for await (const e of runtime.watch(task.id)) events.push(e);
    const states = events.flatMap((e) => (e.type === 'status' ? [e.status.state] : []));
    expect(states.at(-1)).toBe('SUCCEEDED');
    expect(states).toContain('SUCCEEDED');
    const out = events.flatMap((e) => (e.type === 'stdout' ? [text(e.data)] : [])).join('');
    const err = events.flatMap((e) => (e.type === 'stderr' ? [text(e.data)] : [])).join('');
    expect(out).toBe('to stdout\n');
    expect(err).toBe('to stderr\n');
  });

  it('cancels a tight `loop br 0`, replaces the worker, and keeps running other tasks', async () => {
    const before = runtime.stats().workersReplaced;
    const task = await runtime.submit({ digest: a.loop!.digest });
    for await (const e of runtime.watch(task.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    const status = await runtime.cancel(task.id);
    expect(status).toMatchObject({ state: 'CANCELLED', reason: 'CANCELLED' });
    expect(runtime.stats().workersReplaced).toBe(before + 1);
    expect((await run(a.hello!)).stdout).toBe('hello from vyr\n');
  });

  it('ends a tight loop at its deadline with DEADLINE_EXCEEDED', async () => {
    const { status } = await run(a.loop!, { limits: { deadlineMs: 200 } });
    expect(status).toMatchObject({ state: 'DEADLINE_EXCEEDED', reason: 'DEADLINE_EXCEEDED' });
    expect((await run(a.hello!)).status.state).toBe('SUCCEEDED');
  });

  it('cancels a task blocked reading stdin that never ends', async () => {
    const never: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<Uint8Array>>(() => {}) }),
    };
    const task = await runtime.submit({ digest: a.cat!.digest, stdin: never });
    for await (const e of runtime.watch(task.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    const status = await runtime.cancel(task.id);
    expect(status.state).toBe('CANCELLED');
  });

  it('fails a task whose linear memory grows past its limit with MEMORY_LIMIT, and others are unaffected', async () => {
    const grow = await run(a.grow!);
    // The guest saw memory.grow return -1, printed so and exited 1: the limit's doing, exit code kept.
    expect(grow.status).toMatchObject({ state: 'FAILED', reason: 'MEMORY_LIMIT', exitCode: 1 });
    expect(grow.status.limits.memoryBytes).toBe(8 * 1024 * 1024);
    expect(grow.status.memoryBytes).toBeLessThanOrEqual(8 * 1024 * 1024 + 2 * 65536);
    // A submit override takes precedence over the artifact's declared limit.
    const tighter = await run(a.grow!, { limits: { memoryBytes: 2 * 1024 * 1024 } });
    expect(tighter.status).toMatchObject({ state: 'FAILED', reason: 'MEMORY_LIMIT' });
    expect(tighter.status.limits.memoryBytes).toBe(2 * 1024 * 1024);
    expect(tighter.stdout).toBe('memory.grow failed\n');
    expect((await run(a.hello!)).status.state).toBe('SUCCEEDED');
  });

  it('gives the guest exactly the mounted directories, with escapes refused', async () => {
    const host = join(dir, 'state-fs');
    await mkdir(host, { recursive: true });
    await writeFile(join(dir, 'escape.txt'), 'outside');
    const { status, stdout } = await run(a.fs!, { mounts: [{ guestPath: '/data', hostPath: host }] });
    expect(stdout).toBe('vyr state\nescape refused\n');
    expect(status.state).toBe('SUCCEEDED');
    expect(await readFile(join(host, 'note.txt'), 'utf8')).toBe('vyr state\n');
    // Without a mount the guest has no preopen at all.
    expect((await run(a.fs!)).status).toMatchObject({ state: 'FAILED', exitCode: 2 });
  });

  it('mounts at the guest root `/`', async () => {
    const host = join(dir, 'root-fs');
    await mkdir(host, { recursive: true });
    await writeFile(join(host, 'note.txt'), 'at the root\n');
    const { stdout, status } = await run(a['fs-read']!, { mounts: [{ guestPath: '/', hostPath: host }] });
    expect(status.state).toBe('SUCCEEDED');
    expect(stdout).toBe('at the root\n');
  });

  it('refuses every write through a read-only mount (not-permitted) but allows reads', async () => {
    const host = join(dir, 'ro');
    await mkdir(host, { recursive: true });
    await writeFile(join(host, 'note.txt'), 'read me\n');
    const mounts = [{ guestPath: '/ro', hostPath: host, readOnly: true }];
    expect((await run(a['fs-create']!, { mounts })).status.exitCode).toBe(Errno.PERM);
    expect((await run(a['fs-mkdir']!, { mounts })).status.exitCode).toBe(Errno.PERM);
    expect((await run(a['fs-unlink']!, { mounts })).status.exitCode).toBe(Errno.PERM);
    expect(await readFile(join(host, 'note.txt'), 'utf8')).toBe('read me\n');
    const read = await run(a['fs-read']!, { mounts });
    expect(read.stdout).toBe('read me\n');
  });

  it('fails a write past a mount quota inside the guest with ENOSPC and records it', async () => {
    const host = join(dir, 'quota');
    await mkdir(host, { recursive: true });
    const { status } = await run(a['fs-create']!, {
      mounts: [{ guestPath: '/q', hostPath: host, quotaBytes: 10_000 }],
    });
    expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: Errno.NOSPC });
    expect(status.quotaExceeded).toHaveLength(1);
    expect(status.quotaExceeded[0]).toMatchObject({ guestPath: '/q', quotaBytes: 10_000 });
    const written = (await readFile(join(host, 'note.txt'))).length;
    expect(written).toBeLessThanOrEqual(10_000);
    // Under the quota the same program succeeds.
    const roomy = join(dir, 'roomy');
    await mkdir(roomy, { recursive: true });
    const ok = await run(a['fs-create']!, { mounts: [{ guestPath: '/q', hostPath: roomy, quotaBytes: 1_000_000 }] });
    expect(ok.status.state).toBe('SUCCEEDED');
    expect((await readFile(join(roomy, 'note.txt'))).length).toBe(64 * 1024);
  });
});

describe('admission, verification and bad input', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterAll(() => cleanup());

  it('answers RESOURCE_EXHAUSTED when the queue is full, and runs what it admitted', async () => {
    const loop = await fixture('loop');
    const hello = await fixture('hello');
    const runtime = createRuntime({
      artifacts: memorySource([loop, hello]),
      cacheDir: join(dir, 'cache'),
      poolSize: 1,
      maxQueueLength: 1,
    });
    try {
      const busy = await runtime.submit({ digest: loop.digest });
      for await (const e of runtime.watch(busy.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
      const waiting = await runtime.submit({ digest: hello.digest });
      await expect(runtime.submit({ digest: hello.digest })).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
      await runtime.cancel(busy.id);
      expect((await runtime.wait(waiting.id)).state).toBe('SUCCEEDED');
    } finally {
      await runtime.close();
    }
  });

  it('refuses untrusted and unknown artifacts before anything runs', async () => {
    const hello = await fixture('hello');
    const runtime = createRuntime({ artifacts: memorySource([hello], [hello.digest]), cacheDir: join(dir, 'c2') });
    try {
      await expect(runtime.submit({ digest: hello.digest })).rejects.toMatchObject({ code: 'UNTRUSTED' });
      await expect(runtime.submit({ digest: `sha256:${'0'.repeat(64)}` })).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
      expect(runtime.stats()).toMatchObject({ running: 0, queued: 0, pending: 0 });
    } finally {
      await runtime.close();
    }
  });

  it('rejects malformed requests with INVALID_ARGUMENT naming the field', async () => {
    const hello = await fixture('hello');
    const runtime = createRuntime({ artifacts: memorySource([hello]), cacheDir: join(dir, 'c3') });
    const digest = hello.digest;
    try {
      const bad: [object, RegExp][] = [
        [{ digest: 'sha256:xyz' }, /digest/],
        [{ digest, args: [1] }, /args/],
        [{ digest, mounts: [{ guestPath: 'rel', hostPath: dir }] }, /guestPath/],
        [{ digest, mounts: [{ guestPath: '/a', hostPath: join(dir, 'missing') }] }, /not a directory/],
        [
          {
            digest,
            mounts: [
              { guestPath: '/a', hostPath: dir },
              { guestPath: '/a', hostPath: dir },
            ],
          },
          /twice/,
        ],
        [{ digest, limits: { memoryBytes: -1 } }, /memoryBytes/],
        [{ digest, limits: { memoryBytes: 2 ** 40 } }, /maximum/],
        [{ digest, stdin: 42 }, /stdin/],
      ];
      for (const [request, message] of bad) {
        await expect(runtime.submit(request as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message });
      }
      expect(() => runtime.get('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
      await expect(runtime.cancel('nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await runtime.close();
    }
    await expect(runtime.submit({ digest })).rejects.toMatchObject({ code: 'CLOSED' });
    expect(() => createRuntime({ artifacts: memorySource([]), cacheDir: 'relative' })).toThrow(/cacheDir/);
  });

  it('prepares once per digest: later tasks and new runtimes reuse the cache', async () => {
    const hello = await fixture('hello');
    const cacheDir = join(dir, 'shared-cache');
    const first = createRuntime({ artifacts: memorySource([hello]), cacheDir });
    try {
      for (let i = 0; i < 3; i++) {
        const t = await first.submit({ digest: hello.digest });
        expect((await first.wait(t.id)).state).toBe('SUCCEEDED');
      }
    } finally {
      await first.close();
    }
    // A component that cannot be transpiled would fail PREPARE: a new runtime must not need the bytes at all.
    const again = createRuntime({
      artifacts: memorySource([{ ...hello, component: new Uint8Array([0, 97, 115, 109]) }]),
      cacheDir,
    });
    try {
      const t = await again.submit({ digest: hello.digest });
      expect((await again.wait(t.id)).state).toBe('SUCCEEDED');
    } finally {
      await again.close();
    }
  });

  it('fails a component jco cannot transpile with PREPARE_FAILED', async () => {
    const broken = makeArtifact(new Uint8Array([0, 97, 115, 109, 13, 0, 1, 0, 0xff, 0xff]), { name: 'broken' });
    const runtime = createRuntime({ artifacts: memorySource([broken]), cacheDir: join(dir, 'c4') });
    try {
      const t = await runtime.submit({ digest: broken.digest });
      expect(await runtime.wait(t.id)).toMatchObject({ state: 'FAILED', reason: 'PREPARE_FAILED' });
      // An empty component transpiles but exports no wasi:cli/run: it cannot be instantiated as a command.
      const empty = makeArtifact(new Uint8Array([0, 97, 115, 109, 13, 0, 1, 0]), { name: 'empty' });
      const other = createRuntime({ artifacts: memorySource([empty]), cacheDir: join(dir, 'c5') });
      try {
        const e = await other.submit({ digest: empty.digest });
        expect(await other.wait(e.id)).toMatchObject({ state: 'FAILED', reason: 'INSTANTIATE_FAILED' });
      } finally {
        await other.close();
      }
    } finally {
      await runtime.close();
    }
  });
});
