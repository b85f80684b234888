import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { writeKeyPair } from '@vyr/artifact';
import { Access, type Task, TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { type OtlpReceiver, startOtlpReceiver } from '@vyr/testing/otlp';
import { create as createTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectRefused,
  type NodeProcess,
  packSigned,
  STATE_PROBE_WASM,
  type StreamedSpan,
  startNode,
  streamedSpans,
  uploadOf,
  waitForStatus,
  watchToEnd,
} from './helpers.js';

/** The probe artifacts: the same guest with different state declarations. */
interface Probes {
  /** `data` rw at /data. */
  data: { path: string; digest: string };
  /** `root` rw at `/` and `cfg` ro at /etc/app. */
  root: { path: string; digest: string };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Pending timeout of the main node: a task whose slot is never bound ends after this (ms). */
const PENDING_TIMEOUT_MS = 2500;

/** A tar of `files` (relative path → content), for CreateState's seed. */
async function seedTar(dir: string, name: string, files: Record<string, string>): Promise<Uint8Array> {
  const root = join(dir, `seed-${name}`);
  await mkdir(root, { recursive: true });
  for (const [rel, content] of Object.entries(files)) await writeFile(join(root, rel), content);
  const file = `${root}.tar`;
  await createTar({ cwd: root, file, portable: true }, Object.keys(files));
  return readFile(file);
}

/** Submits the probe with `args` and `bindings`, follows it to the end, returns the task and its stdout lines. */
async function probe(
  client: NodeClient,
  digest: string,
  args: string[],
  bindings: { slot: string; stateId: string; access?: Access }[],
): Promise<{ task: Task; lines: string[] }> {
  const { task } = await client.submitTask({ artifactDigest: digest, args, bindings });
  const ended = await watchToEnd(client, task?.id as string);
  return { task: ended.task, lines: ended.stdout.split('\n').filter(Boolean) };
}

/** The spans of one trace as a parent → children map, by span id. */
function childrenOf(spans: StreamedSpan[], parent: StreamedSpan): StreamedSpan[] {
  return spans.filter((s) => s.parentSpanId === parent.spanId);
}

describe('exit criterion: a task sees only state bound to it, at the path its artifact declared; the single consistency class holds under concurrent tasks; each release reports a content digest; quotas hold', () => {
  let dir: string;
  let key: { privateKeyPath: string; publicKeyPath: string };
  let probes: Probes;
  /** Laptop node, default conflict policy (refuse), short pending timeout. */
  let node: NodeProcess;
  let client: NodeClient;

  beforeAll(async () => {
    dir = await tempDir('vyr-state-exit-');
    key = await writeKeyPair(join(dir, 'key'));
    probes = {
      data: await packSigned(
        STATE_PROBE_WASM,
        join(dir, 'probe-data.tar'),
        { name: 'probe-data', state: [{ name: 'data', mount: '/data', access: 'rw' }] },
        key.privateKeyPath,
      ),
      root: await packSigned(
        STATE_PROBE_WASM,
        join(dir, 'probe-root.tar'),
        {
          name: 'probe-root',
          state: [
            { name: 'root', mount: '/', access: 'rw' },
            { name: 'cfg', mount: '/etc/app', access: 'ro' },
          ],
        },
        key.privateKeyPath,
      ),
    };
    node = await startNode([
      '--data-dir',
      join(dir, 'laptop'),
      '--trust',
      key.publicKeyPath,
      '--pending-timeout-ms',
      String(PENDING_TIMEOUT_MS),
    ]);
    client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
    for (const p of Object.values(probes)) await client.importArtifact(uploadOf(await readFile(p.path)));
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  /** Host directory of an instance on the main node (what a guest must never reach). */
  const hostPathOf = (stateId: string) => join(dir, 'laptop', 'state', 'instances', stateId);

  describe('(a) a task sees only its bound instances, at the declared mount paths', () => {
    it('reads and writes its own instance at /data; another instance, `..` and symlinks pointing out are refused', async () => {
      const mine = (await client.createState({ seedTar: await seedTar(dir, 'mine', { 'hello.txt': 'mine' }) })).state!;
      const theirs = (await client.createState({ seedTar: await seedTar(dir, 'theirs', { 'secret.txt': 'theirs' }) }))
        .state!;
      const { task, lines } = await probe(
        client,
        probes.data.digest,
        [
          ...['ls', '/data'],
          ...['cat', '/data/hello.txt'],
          ...['write', '/data/note.txt', 'written by the task'],
          ...['cat', `/data/../${theirs.id}/secret.txt`],
          ...['cat', `/data/../../instances/${theirs.id}/secret.txt`],
          ...['cat', `${hostPathOf(theirs.id)}/secret.txt`],
          ...['ls', '/'],
          ...['cat', '/etc/hostname'],
          ...['write', '/outside.txt', 'x'],
          ...['symlink', `../${theirs.id}/secret.txt`, '/data/sibling'],
          ...['cat', '/data/sibling'],
          ...['symlink', '../../../../../../../../etc/hostname', '/data/up'],
          ...['cat', '/data/up'],
          ...['symlink', '/etc/hostname', '/data/absolute'],
          ...['ls', '/data'],
        ],
        [{ slot: 'data', stateId: mine.id }],
      );
      expect(lines).toEqual([
        'ls /data: hello.txt',
        'cat /data/hello.txt: mine',
        'write /data/note.txt: ok',
        `cat /data/../${theirs.id}/secret.txt: ERR EPERM`,
        `cat /data/../../instances/${theirs.id}/secret.txt: ERR EPERM`,
        `cat ${hostPathOf(theirs.id)}/secret.txt: ERR ENOTCAPABLE`,
        'ls /: ERR ENOTCAPABLE',
        'cat /etc/hostname: ERR ENOTCAPABLE',
        'write /outside.txt: ERR ENOTCAPABLE',
        'symlink /data/sibling: ok',
        'cat /data/sibling: ERR EPERM',
        'symlink /data/up: ok',
        'cat /data/up: ERR EPERM',
        'symlink /data/absolute: ERR EPERM',
        'ls /data: hello.txt note.txt sibling up',
      ]);
      // Every refusal above is one failed command: the exit code counts them.
      expect(task.exitCode).toBe(lines.filter((l) => l.includes(': ERR ')).length);
      expect(task.stateResults.map((r) => r.stateId)).toEqual([mine.id]);
      // The other instance was not touched: same content and digest as created.
      expect(await readFile(join(hostPathOf(theirs.id), 'secret.txt'), 'utf8')).toBe('theirs');
      const after = (await client.listStates({})).states.find((s) => s.id === theirs.id);
      expect(after?.lastDigest).toBe(theirs.lastDigest);
      expect(after?.boundTaskIds).toEqual([]);
    });

    it('mounts a slot at `/`: the guest sees that instance as its whole filesystem, another slot at /etc/app read-only', async () => {
      const root = (await client.createState({ seedTar: await seedTar(dir, 'root', { 'top.txt': 'at the root' }) }))
        .state!;
      const cfg = (await client.createState({ seedTar: await seedTar(dir, 'cfg', { 'app.conf': 'mode=ro' }) })).state!;
      const { task, lines } = await probe(
        client,
        probes.root.digest,
        [
          ...['ls', '/'],
          ...['cat', '/top.txt'],
          ...['cat', '/etc/app/app.conf'],
          ...['write', '/etc/app/app.conf', 'mode=rw'],
          ...['write', '/made-at-root.txt', 'hello'],
          ...['cat', '/../../etc/hostname'],
          ...['cat', '/etc/hostname'],
          ...['cat', `/../${cfg.id}/app.conf`],
        ],
        [
          { slot: 'root', stateId: root.id },
          { slot: 'cfg', stateId: cfg.id },
        ],
      );
      expect(lines).toEqual([
        'ls /: top.txt',
        'cat /top.txt: at the root',
        'cat /etc/app/app.conf: mode=ro',
        'write /etc/app/app.conf: ERR EPERM',
        'write /made-at-root.txt: ok',
        'cat /../../etc/hostname: ERR EPERM',
        'cat /etc/hostname: ERR ENOENT',
        `cat /../${cfg.id}/app.conf: ERR EPERM`,
      ]);
      expect(task.exitCode).toBe(4);
      expect(await readFile(join(hostPathOf(root.id), 'made-at-root.txt'), 'utf8')).toBe('hello');
      expect(await readFile(join(hostPathOf(cfg.id), 'app.conf'), 'utf8')).toBe('mode=ro');
      expect(task.stateResults.map((r) => [r.slot, r.stateId])).toEqual([
        ['cfg', cfg.id],
        ['root', root.id],
      ]);
    });
  });

  describe('(b) single writer under concurrent submits', () => {
    const N = 4;

    it('refuse (the default): of N concurrent rw submits exactly one holds the instance, the others get BINDING_CONFLICT', async () => {
      const state = (await client.createState({ name: 'contended-refuse' })).state!;
      const bindings = [{ slot: 'data', stateId: state.id }];
      // Each would count and then hold the instance (spin) until cancelled.
      const results = await Promise.allSettled(
        Array.from({ length: N }, () =>
          client.submitTask({
            artifactDigest: probes.data.digest,
            args: ['incr', '/data/n', 'spin'],
            bindings,
          }),
        ),
      );
      const accepted = results.filter((r) => r.status === 'fulfilled');
      const refused = results.filter((r) => r.status === 'rejected');
      expect(accepted).toHaveLength(1);
      expect(refused).toHaveLength(N - 1);
      for (const r of refused) await expectRefused(Promise.reject(r.reason), 'failed_precondition', 'BINDING_CONFLICT');
      const holder = (accepted[0] as PromiseFulfilledResult<{ task?: Task }>).value.task!;
      await waitForStatus(client, holder.id, TaskStatus.RUNNING);
      expect((await client.listStates({})).states.find((s) => s.id === state.id)?.boundTaskIds).toEqual([holder.id]);

      // Readers are refused while the writer holds it.
      await expectRefused(
        client.submitTask({
          artifactDigest: probes.data.digest,
          args: ['cat', '/data/n'],
          bindings: [{ ...bindings[0]!, access: Access.RO }],
        }),
        'failed_precondition',
        'BINDING_CONFLICT',
      );
      await client.cancelTask({ taskId: holder.id });

      // Readers together: N ro binds are all granted at once, and while they hold it a writer is refused.
      const readers = await Promise.all(
        Array.from({ length: N }, () =>
          client.submitTask({
            artifactDigest: probes.data.digest,
            args: ['cat', '/data/n', 'spin'],
            bindings: [{ ...bindings[0]!, access: Access.RO }],
          }),
        ),
      );
      const listed = (await client.listStates({})).states.find((s) => s.id === state.id);
      expect(listed?.boundTaskIds.sort()).toEqual(readers.map((r) => r.task!.id).sort());
      await expectRefused(
        client.submitTask({ artifactDigest: probes.data.digest, args: ['incr', '/data/n'], bindings }),
        'failed_precondition',
        'BINDING_CONFLICT',
      );
      await Promise.all(readers.map((r) => client.cancelTask({ taskId: r.task!.id })));

      // Only the one writer ever ran: the counter is 1, and a new writer gets the instance at once.
      const after = await probe(client, probes.data.digest, ['incr', '/data/n'], bindings);
      expect(after.lines).toEqual(['incr /data/n: 2']);
      expect(after.task.status).toBe(TaskStatus.SUCCEEDED);
    });

    it('wait: N concurrent rw submits all run, one after another, each seeing the previous writes; no update is lost', async () => {
      const waitDir = await tempDir('vyr-state-wait-');
      const waiting = await startNode([
        '--data-dir',
        waitDir,
        '--trust',
        key.publicKeyPath,
        '--state-conflict',
        'wait',
      ]);
      try {
        const c = createNodeClient({ baseUrl: waiting.url, httpVersion: '2' });
        await c.importArtifact(uploadOf(await readFile(probes.data.path)));
        const state = (await c.createState({ name: 'contended-wait' })).state!;
        const bindings = [{ slot: 'data', stateId: state.id }];
        // Every submit is answered at once (PENDING or QUEUED), none is refused.
        const submitted = await Promise.all(
          Array.from({ length: N }, (_, i) =>
            c.submitTask({
              artifactDigest: probes.data.digest,
              args: ['incr', '/data/n', 'append', '/data/log', `task ${i}`],
              bindings,
            }),
          ),
        );
        const ended = await Promise.all(submitted.map((s) => watchToEnd(c, s.task!.id)));
        expect(ended.map((e) => e.task.status)).toEqual(Array(N).fill(TaskStatus.SUCCEEDED));
        // Each task saw the counter its predecessor left: the values are exactly 1..N, none repeated.
        const seen = ended.map((e) => Number(/incr \/data\/n: (\d+)/.exec(e.stdout)?.[1]));
        expect([...seen].sort()).toEqual(Array.from({ length: N }, (_, i) => i + 1));
        // One after another: in counter order, each started after the previous one ended.
        const byCount = ended.map((e, i) => ({ e, n: seen[i]! })).sort((a, b) => a.n - b.n);
        for (let i = 1; i < N; i++) {
          expect(byCount[i]!.e.task.startedAtUnixMs).toBeGreaterThanOrEqual(byCount[i - 1]!.e.task.endedAtUnixMs);
        }
        // The final content holds every task's write, in the order they ran.
        const final = await probe(c, probes.data.digest, ['cat', '/data/n', 'cat', '/data/log'], bindings);
        const order = byCount.map(({ e }) => `task ${submitted.findIndex((s) => s.task!.id === e.task.id)}`);
        expect(final.lines[0]).toBe(`cat /data/n: ${N}`);
        expect(final.lines.slice(1).join('\n')).toBe(`cat /data/log: ${order.join('\n')}`);

        // Under `wait` a reader queues behind a writer (not refused) and sees its writes once it released.
        const writer = await c.submitTask({
          artifactDigest: probes.data.digest,
          args: ['write', '/data/n', 'from the writer', 'spin'],
          bindings,
        });
        await waitForStatus(c, writer.task!.id, TaskStatus.RUNNING);
        const reader = await c.submitTask({
          artifactDigest: probes.data.digest,
          args: ['cat', '/data/n'],
          bindings: [{ ...bindings[0]!, access: Access.RO }],
        });
        expect(reader.task?.status).toBe(TaskStatus.PENDING);
        expect((await c.getTask({ taskId: reader.task!.id })).task?.status).toBe(TaskStatus.PENDING);
        await c.cancelTask({ taskId: writer.task!.id });
        const read = await watchToEnd(c, reader.task!.id);
        expect(read.stdout).toBe('cat /data/n: from the writer\n');
        expect(read.task.status).toBe(TaskStatus.SUCCEEDED);
      } finally {
        expect(await waiting.stop()).toBe(0);
      }
    });
  });

  describe('(c) each release reports a content digest, on the task result and on its trace', () => {
    /** The same workload everywhere: same artifact, same arguments, an empty instance. */
    const WORK = [
      ...['mkdir', '/data/out'],
      ...['write', '/data/out/a.txt', 'alpha'],
      ...['append', '/data/log', 'one'],
      ...['symlink', 'out/a.txt', '/data/latest'],
    ];

    /** The task's spans once its kernel release span (with the digest) has been exported. */
    const traceOf = (c: NodeClient, taskId: string) =>
      streamedSpans(
        c,
        taskId,
        (spans) =>
          spans.some((s) => s.name === 'vyr.task') &&
          spans.some((s) => s.name === 'vyr.state.release' && s.attributes['vyr.state.digest'] !== undefined),
      );

    it('puts the digest on the result and on the vyr.task trace; bind spans nest under the task (inline and BindState)', async () => {
      const inline = (await client.createState({})).state!;
      const { task } = await probe(client, probes.data.digest, WORK, [{ slot: 'data', stateId: inline.id }]);
      expect(task.status).toBe(TaskStatus.SUCCEEDED);
      const [result] = task.stateResults;
      expect(result).toMatchObject({ slot: 'data', stateId: inline.id, quotaExceeded: false, entries: 4n, bytes: 9n });
      expect(result?.digest).toMatch(DIGEST);
      // ListStates keeps it as the instance's last digest.
      expect((await client.listStates({})).states.find((s) => s.id === inline.id)?.lastDigest).toBe(result?.digest);

      const spans = await traceOf(client, task.id);
      const root = spans.find((s) => s.name === 'vyr.task')!;
      expect(root.attributes['vyr.task.id']).toBe(task.id);
      expect(spans.every((s) => s.traceId === task.traceId)).toBe(true);
      // vyr.task → vyr.state.bind (runtime) → vyr.state.bind (kernel, the instance bound).
      const bind = childrenOf(spans, root).filter((s) => s.name === 'vyr.state.bind');
      expect(bind).toHaveLength(1);
      const kernelBind = childrenOf(spans, bind[0]!);
      expect(kernelBind.map((s) => [s.name, s.attributes['vyr.state.id'], s.attributes['vyr.state.slot']])).toEqual([
        ['vyr.state.bind', inline.id, 'data'],
      ]);
      // vyr.task → vyr.state.release (runtime, digest per slot) → vyr.state.release (kernel: digest, bytes).
      const release = childrenOf(spans, root).filter((s) => s.name === 'vyr.state.release');
      expect(release).toHaveLength(1);
      expect(release[0]!.attributes['vyr.state.digest.data']).toBe(result?.digest);
      const kernelRelease = childrenOf(spans, release[0]!);
      expect(kernelRelease).toHaveLength(1);
      expect(kernelRelease[0]!.attributes).toMatchObject({
        'vyr.state.id': inline.id,
        'vyr.state.digest': result?.digest,
        'vyr.state.bytes': 9, // 'alpha' + 'one\n'
      });
      // No state span lives in a trace of its own.
      expect(spans.filter((s) => s.name.startsWith('vyr.state.') && s.parentSpanId === '')).toEqual([]);

      // Bound later with BindState while PENDING: the kernel's bind span still nests under the task's bind span.
      const late = (await client.createState({})).state!;
      const { task: pending } = await client.submitTask({ artifactDigest: probes.data.digest, args: WORK });
      await waitForStatus(client, pending!.id, TaskStatus.PENDING);
      await client.bindState({ stateId: late.id, taskId: pending!.id, slot: 'data' });
      const lateEnd = await watchToEnd(client, pending!.id);
      // Same artifact, same inputs, another instance: the same digest.
      expect(lateEnd.task.stateResults[0]?.digest).toBe(result?.digest);
      const lateSpans = await traceOf(client, pending!.id);
      const lateRoot = lateSpans.find((s) => s.name === 'vyr.task')!;
      const lateBind = childrenOf(lateSpans, lateRoot).find((s) => s.name === 'vyr.state.bind')!;
      expect(childrenOf(lateSpans, lateBind).map((s) => [s.name, s.attributes['vyr.state.id']])).toEqual([
        ['vyr.state.bind', late.id],
      ]);
    });

    it('gives the same digest for the same artifact and inputs on a laptop node and an edge node', async () => {
      const here = (await client.createState({})).state!;
      const laptop = await probe(client, probes.data.digest, WORK, [{ slot: 'data', stateId: here.id }]);
      const receiver: OtlpReceiver = await startOtlpReceiver();
      const edgeDir = await tempDir('vyr-state-edge-');
      const edge = await startNode([
        '--tier',
        'edge',
        '--data-dir',
        edgeDir,
        '--trust',
        key.publicKeyPath,
        '--otlp',
        receiver.url,
      ]);
      try {
        const c = createNodeClient({ baseUrl: edge.url, httpVersion: '1.1' });
        expect((await c.getNodeInfo({})).tier).toBe('edge');
        await c.importArtifact(uploadOf(await readFile(probes.data.path)));
        const there = (await c.createState({})).state!;
        expect(there.id).not.toBe(here.id);
        const onEdge = await probe(c, probes.data.digest, WORK, [{ slot: 'data', stateId: there.id }]);
        expect(onEdge.lines).toEqual(laptop.lines);
        expect(onEdge.task.stateResults[0]?.digest).toMatch(DIGEST);
        expect(onEdge.task.stateResults[0]?.digest).toBe(laptop.task.stateResults[0]?.digest);
        // The edge node's trace, received over OTLP, carries the same digest on its release.
        const ofTask = (name: string) => (s: { name: string; attributes: Record<string, unknown> }) =>
          s.name === name && s.attributes['vyr.task.id'] === onEdge.task.id;
        const received = await receiver.waitForSpans(
          (spans) => spans.some(ofTask('vyr.state.release')) && spans.some(ofTask('vyr.task')),
        );
        const edgeRelease = received.find(ofTask('vyr.state.release'))!;
        expect(edgeRelease.attributes['vyr.state.digest']).toBe(laptop.task.stateResults[0]?.digest);
        expect(edgeRelease.traceId).toBe(onEdge.task.traceId);
        const edgeRoot = received.find(ofTask('vyr.task'));
        expect(edgeRoot?.attributes['vyr.node.tier']).toBe('edge');
      } finally {
        expect(await edge.stop()).toBe(0);
        await receiver.close();
      }
    });
  });

  describe('(d) quotas hold: the guest gets ENOSPC and the task result records it', () => {
    it('byte quota: a write past it fails in the guest with ENOSPC; the result and the trace record it', async () => {
      const state = (await client.createState({ quotaBytes: 4096n })).state!;
      const { task, lines } = await probe(
        client,
        probes.data.digest,
        ['fill', '/data/big', '10000'],
        [{ slot: 'data', stateId: state.id }],
      );
      expect(lines).toEqual(['fill /data/big: ERR ENOSPC after 4096']);
      expect(task).toMatchObject({ status: TaskStatus.FAILED, reason: 'EXIT_CODE', exitCode: 1 });
      expect(task.stateResults[0]).toMatchObject({ stateId: state.id, bytes: 4096n, quotaExceeded: true });
      const spans = await streamedSpans(client, task.id, (all) => all.some((s) => s.name === 'vyr.task'));
      const run = spans.find((s) => s.name === 'vyr.run')!;
      expect(run.events).toContainEqual({
        name: 'vyr.state.quota_exceeded',
        attributes: { 'vyr.state.mount': '/data', 'vyr.state.quota': 'bytes', 'vyr.state.bytes': 4096 + 1024 },
      });
      const release = spans.find((s) => s.name === 'vyr.state.release' && s.attributes['vyr.state.id'] === state.id);
      expect(release?.attributes['vyr.state.quota_exceeded']).toBe(true);
      // Within the quota the same program succeeds and nothing is recorded.
      const roomy = (await client.createState({ quotaBytes: 16384n })).state!;
      const ok = await probe(
        client,
        probes.data.digest,
        ['fill', '/data/big', '10000'],
        [{ slot: 'data', stateId: roomy.id }],
      );
      expect(ok.task.status).toBe(TaskStatus.SUCCEEDED);
      expect(ok.task.stateResults[0]).toMatchObject({ bytes: 10000n, quotaExceeded: false });
    });

    it('entry quota: creating entries past it fails in the guest with ENOSPC; the result records it', async () => {
      const state = (await client.createState({ quotaEntries: 3n })).state!;
      const { task, lines } = await probe(
        client,
        probes.data.digest,
        ['mkfiles', '/data', '5', 'mkdir', '/data/sub', 'symlink', 'f0', '/data/link', 'cat', '/data/f0'],
        [{ slot: 'data', stateId: state.id }],
      );
      expect(lines).toEqual([
        'mkfiles /data: ERR ENOSPC after 3',
        'mkdir /data/sub: ERR ENOSPC',
        'symlink /data/link: ERR ENOSPC',
        'cat /data/f0: ',
      ]);
      expect(task).toMatchObject({ status: TaskStatus.FAILED, reason: 'EXIT_CODE', exitCode: 3 });
      expect(task.stateResults[0]).toMatchObject({ stateId: state.id, entries: 3n, quotaExceeded: true });
      // The next task starts from the kernel's count: still full; deleting is how to make room.
      const next = await probe(
        client,
        probes.data.digest,
        ['mkdir', '/data/sub'],
        [{ slot: 'data', stateId: state.id }],
      );
      expect(next.lines).toEqual(['mkdir /data/sub: ERR ENOSPC']);
      expect((await client.listStates({})).states.find((s) => s.id === state.id)).toMatchObject({
        entries: 3n,
        quotaEntries: 3n,
      });
    });
  });

  describe('(e) a PENDING task whose slot is never bound ends with a clear reason', () => {
    it('ends FAILED(PENDING_TIMEOUT) naming the unbound slot after the pending timeout; it never ran', async () => {
      const { task } = await client.submitTask({ artifactDigest: probes.data.digest, args: ['ls', '/data'] });
      expect(task?.status).toBe(TaskStatus.PENDING);
      const ended = await watchToEnd(client, task!.id);
      expect(ended.task).toMatchObject({ status: TaskStatus.FAILED, reason: 'PENDING_TIMEOUT', startedAtUnixMs: 0n });
      expect(ended.task.message).toMatch(/stayed pending 2500 ms; unbound slots: data/);
      expect(ended.stdout).toBe('');
      // Binding now is too late.
      const state = (await client.createState({})).state!;
      await expectRefused(
        client.bindState({ stateId: state.id, taskId: task!.id, slot: 'data' }),
        'failed_precondition',
        'TASK_TERMINATED',
      );
    });

    it('a deadline that comes first ends it DEADLINE_EXCEEDED (the deadline counts from submit); cancel ends it at once', async () => {
      const { task } = await client.submitTask({
        artifactDigest: probes.data.digest,
        args: ['ls', '/data'],
        deadlineMs: 300n,
      });
      expect((await watchToEnd(client, task!.id)).task).toMatchObject({
        status: TaskStatus.DEADLINE_EXCEEDED,
        reason: 'DEADLINE_EXCEEDED',
        startedAtUnixMs: 0n,
      });
      // Cancelling a task that waits for its slot never hangs (the bind hook's wait ends with the task).
      const { task: waiting } = await client.submitTask({ artifactDigest: probes.data.digest, args: ['ls', '/data'] });
      await waitForStatus(client, waiting!.id, TaskStatus.PENDING);
      const cancelled = await client.cancelTask({ taskId: waiting!.id });
      expect(cancelled.task).toMatchObject({ status: TaskStatus.CANCELLED, reason: 'CANCELLED' });
    });
  });
});
