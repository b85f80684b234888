import { readFile } from 'node:fs/promises';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { Access, StateScope, TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { create as createTar, list as listTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFixtures,
  expectRefused,
  type Fixtures,
  type NodeProcess,
  startNode,
  uploadOf,
  waitForStatus,
  watchToEnd,
  writeText,
} from './helpers.js';

/** A tar holding one regular file whose name escapes the archive root: a seed the node must refuse. */
function escapingTar(): Uint8Array {
  const header = Buffer.alloc(512);
  const body = Buffer.from('evil\n');
  header.write('../evil.txt', 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(`${body.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padded = Buffer.alloc(512);
  body.copy(padded);
  return Buffer.concat([header, padded, Buffer.alloc(1024)]);
}

describe('exit criterion: every NodeService RPC works from another process over Connect (binary and JSON), and every bad input gets a coded error while the node stays up', () => {
  let fx: Fixtures;
  let node: NodeProcess;
  let client: NodeClient;
  let client1: NodeClient;

  beforeAll(async () => {
    const dir = await tempDir('vyr-api-exit-');
    fx = await buildFixtures(dir);
    node = await startNode(['--data-dir', `${dir}/data`, '--trust', fx.trustedPub, '--metric-interval-ms', '300']);
    client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
    client1 = createNodeClient({ baseUrl: node.url, httpVersion: '1.1' });
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('ImportArtifact streams a signed artifact in chunks, verifies it, and is idempotent; ListArtifacts lists it', async () => {
    for (const name of Object.keys(fx.signed)) {
      const a = fx.signed[name] as { path: string; digest: string };
      const res = await client.importArtifact(uploadOf(await readFile(a.path), 4096));
      expect(res.artifact?.digest).toBe(a.digest);
      expect(res.artifact?.signerKeyIds).toHaveLength(1);
      expect(res.alreadyPresent).toBe(false);
    }
    const again = await client1.importArtifact(uploadOf(await readFile(fx.signed.hello?.path as string)));
    expect(again.alreadyPresent).toBe(true);
    const { artifacts } = await client.listArtifacts({});
    expect(artifacts.map((a) => a.digest).sort()).toEqual(
      Object.values(fx.signed)
        .map((a) => a.digest)
        .sort(),
    );
    expect(artifacts.find((a) => a.name === 'fs')?.stateSlots).toEqual(['data']);
  });

  it('SubmitTask + WatchTask run a task to its exit with live output; GetTask returns the result', async () => {
    const { task } = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string });
    expect(task?.id).toBeTruthy();
    const watched = await watchToEnd(client, task?.id as string);
    expect(watched.stdout).toBe('hello from vyr\n');
    expect(watched.task.status).toBe(TaskStatus.SUCCEEDED);
    expect(watched.task.exitCode).toBe(0);
    expect(watched.statuses.at(-1)).toBe(TaskStatus.SUCCEEDED);
    const got = await client1.getTask({ taskId: task?.id as string });
    expect(got.task?.status).toBe(TaskStatus.SUCCEEDED);
    expect(got.task?.traceId).toMatch(/^[0-9a-f]{32}$/);

    const exit = await client.submitTask({ artifactDigest: fx.signed.exit33?.digest as string });
    const ended = await watchToEnd(client, exit.task?.id as string);
    expect(ended.task.status).toBe(TaskStatus.FAILED);
    expect(ended.task.exitCode).toBe(33);
    expect(ended.stderr).toBe('exiting with 33\n');
  });

  it('SubmitTask passes env, args and stdin; the same task id comes back for a retried idempotency key', async () => {
    const env = await client.submitTask({ artifactDigest: fx.signed.env?.digest as string, env: { GREETING: 'hi' } });
    expect((await watchToEnd(client, env.task?.id as string)).stdout).toBe('GREETING=hi\n');
    const cat = await client.submitTask({
      artifactDigest: fx.signed.cat?.digest as string,
      stdin: Buffer.from('piped\n'),
    });
    expect((await watchToEnd(client, cat.task?.id as string)).stdout).toBe('piped\n');

    const req = { artifactDigest: fx.signed.hello?.digest as string, idempotencyKey: 'retry-1' };
    const [a, b] = await Promise.all([client.submitTask(req), client1.submitTask(req)]);
    const c = await client.submitTask(req);
    expect(b.task?.id).toBe(a.task?.id);
    expect(c.task?.id).toBe(a.task?.id);
    await expectRefused(
      client.submitTask({ ...req, args: ['different'] }),
      'failed_precondition',
      'IDEMPOTENCY_MISMATCH',
    );
  });

  it('SubmitTask and GetTask work with raw JSON over fetch (Connect protocol, curl-compatible)', async () => {
    const post = (method: string, body: unknown) =>
      fetch(`${node.url}/vyr.v1.NodeService/${method}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    const submitted = await post('SubmitTask', { artifactDigest: fx.signed.hello?.digest });
    expect(submitted.status).toBe(200);
    const { task } = (await submitted.json()) as { task: { id: string; status: string } };
    expect(task.id).toBeTruthy();
    await waitForStatus(client, task.id, TaskStatus.SUCCEEDED);
    const got = await post('GetTask', { taskId: task.id });
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({ task: { id: task.id, status: 'TASK_STATUS_SUCCEEDED', exitCode: 0 } });

    const missing = await post('GetTask', { taskId: 'tk_missing' });
    expect(missing.status).toBe(404);
    expect(missing.headers.get('vyr-error-code')).toBe('NOT_FOUND');
    expect(await missing.json()).toMatchObject({ code: 'not_found' });
    const bad = await post('SubmitTask', { artifactDigest: 'sha256:nothex' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'invalid_argument' });
  });

  it('the same service answers over gRPC, gRPC-Web and Connect JSON', async () => {
    for (const c of [
      createNodeClient({ baseUrl: node.url, protocol: 'grpc' }),
      createNodeClient({ baseUrl: node.url, protocol: 'grpc-web' }),
      createNodeClient({ baseUrl: node.url, useBinaryFormat: false }),
    ]) {
      expect((await c.getNodeInfo({})).nodeId).toBe(node.nodeId);
      await expectRefused(c.getTask({ taskId: 'tk_missing' }), 'not_found', 'NOT_FOUND');
    }
  });

  it('CreateState (seeded), BindState to a PENDING task, ExportState, ListStates and DeleteState', async () => {
    const seedDir = await tempDir('vyr-seed-');
    await writeText(seedDir, 'seed.txt', 'from the seed\n');
    const seedTar = `${seedDir}.tar`;
    await createTar({ cwd: seedDir, file: seedTar, portable: true }, ['seed.txt']);
    const { state } = await client.createState({
      name: 'exit-crit',
      seedTar: await readFile(seedTar),
      ttlMs: 3_600_000n,
    });
    expect(state?.id).toMatch(/^st_/);
    expect(state?.scope).toBe(StateScope.NAMED);
    expect(state?.bytes).toBe(14n);

    const { task } = await client.submitTask({ artifactDigest: fx.signed.fs?.digest as string });
    expect(task?.status).toBe(TaskStatus.PENDING);
    const pending = await waitForStatus(client, task?.id as string, TaskStatus.PENDING);
    expect(pending.unboundSlots).toEqual(['data']);
    const bound = await client.bindState({ stateId: state?.id as string, taskId: task?.id as string, slot: 'data' });
    expect(bound.task?.id).toBe(task?.id);
    const done = await watchToEnd(client, task?.id as string);
    expect(done.stdout).toBe('vyr state\nescape refused\n');
    expect(done.task.status).toBe(TaskStatus.SUCCEEDED);
    expect(done.task.stateResults).toHaveLength(1);
    expect(done.task.stateResults[0]?.digest).toMatch(/^sha256:[0-9a-f]{64}$/);

    const listed = (await client.listStates({})).states.find((s) => s.id === state?.id);
    expect(listed?.lastDigest).toBe(done.task.stateResults[0]?.digest);
    const chunks: Uint8Array[] = [];
    for await (const c of client.exportState({ stateId: state?.id as string })) chunks.push(c.chunk);
    const exported = `${seedDir}-export.tar`;
    await import('node:fs/promises').then((fs) => fs.writeFile(exported, Buffer.concat(chunks)));
    const names: string[] = [];
    await listTar({ file: exported, onReadEntry: (e) => names.push(e.path) });
    expect(
      names
        .map((n) => n.replace(/^\.\//, ''))
        .filter(Boolean)
        .sort(),
    ).toEqual(['note.txt', 'seed.txt']);

    await client.deleteState({ stateId: state?.id as string });
    expect((await client.listStates({})).states.map((s) => s.id)).not.toContain(state?.id);
  });

  it('CancelTask stops a running tight loop', async () => {
    const { task } = await client.submitTask({ artifactDigest: fx.signed.loop?.digest as string });
    await waitForStatus(client, task?.id as string, TaskStatus.RUNNING);
    const cancelled = await client1.cancelTask({ taskId: task?.id as string });
    expect(cancelled.task?.status).toBe(TaskStatus.CANCELLED);
    expect((await client.getTask({ taskId: task?.id as string })).task?.reason).toBe('CANCELLED');
  });

  it('StreamTraces sends the OTLP spans of one task; StreamMetrics sends OTLP metric collections', async () => {
    const { task } = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string });
    const ended = await watchToEnd(client, task?.id as string);
    let names: string[] = [];
    for (let attempt = 0; attempt < 50 && !names.includes('vyr.task'); attempt++) {
      names = [];
      for await (const batch of client.streamTraces({ taskId: task?.id as string })) {
        for (const ss of batch.resourceSpans?.scopeSpans ?? []) {
          for (const span of ss.spans) {
            expect(Buffer.from(span.traceId).toString('hex')).toBe(ended.task.traceId);
            names.push(span.name);
          }
        }
        expect(batch.dropped).toBe(0n);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(names).toEqual(expect.arrayContaining(['vyr.task', 'vyr.verify', 'vyr.prepare', 'vyr.run']));

    const abort = new AbortController();
    let metricNames: string[] = [];
    for await (const batch of client.streamMetrics({ follow: true }, { signal: abort.signal })) {
      metricNames = (batch.resourceMetrics?.scopeMetrics ?? []).flatMap((sm) => sm.metrics.map((m) => m.name));
      if (metricNames.includes('vyr.task.duration')) break;
    }
    abort.abort();
    expect(metricNames).toContain('vyr.task.duration');
  });

  it('GetNodeInfo reports identity, capacity, contents and telemetry health', async () => {
    const info = await client1.getNodeInfo({});
    expect(info).toMatchObject({
      nodeId: node.nodeId,
      tier: 'laptop',
      version: '0.1.0',
      poolSize: 2,
      maxQueueLength: 64,
    });
    expect(info.artifacts).toBe(Object.keys(fx.signed).length);
    expect(info.retainedTasks).toBeGreaterThan(5);
    expect(info.telemetry?.spansDropped).toBe(0n);
  });

  it('every RPC refuses bad input with the expected code, and the node keeps answering', async () => {
    const hello = fx.signed.hello?.digest as string;
    const unknownDigest = `sha256:${'0'.repeat(64)}`;
    // SubmitTask
    await expectRefused(client.submitTask({ artifactDigest: 'sha256:XYZ' }), 'invalid_argument', 'INVALID_ARGUMENT');
    await expectRefused(client.submitTask({ artifactDigest: '' }), 'invalid_argument', 'INVALID_ARGUMENT');
    await expectRefused(client.submitTask({ artifactDigest: unknownDigest }), 'not_found', 'NOT_FOUND');
    await expectRefused(
      client.submitTask({ artifactDigest: hello, stdin: new Uint8Array(8 * 1024 * 1024 + 1) }),
      'invalid_argument',
      'TOO_LARGE',
    );
    // A message over the node's readMaxBytes is refused by connect before it is buffered (over HTTP/2 the stream is
    // reset by the HTTP/2 layer instead; see docs/api.md).
    await expectRefused(
      client1.submitTask({ artifactDigest: hello, stdin: new Uint8Array(48 * 1024 * 1024) }),
      'resource_exhausted',
    );
    await expectRefused(
      client.submitTask({ artifactDigest: hello, env: { SECRET: 'x' } }),
      'invalid_argument',
      'INVALID_ARGUMENT',
    );
    await expectRefused(
      client.submitTask({ artifactDigest: hello, memoryBytes: 1n << 40n }),
      'invalid_argument',
      'INVALID_ARGUMENT',
    );
    await expectRefused(
      client.submitTask({
        artifactDigest: fx.signed.fs?.digest as string,
        bindings: [{ slot: 'nope', stateId: 'st_aaaaaaaaaaaaaaaaaaaaaaaaaa' }],
      }),
      'invalid_argument',
      'UNDECLARED_SLOT',
    );
    await expectRefused(
      client.submitTask({
        artifactDigest: fx.signed.fs?.digest as string,
        bindings: [{ slot: 'data', stateId: 'st_aaaaaaaaaaaaaaaaaaaaaaaaaa' }],
      }),
      'not_found',
      'NOT_FOUND',
    );
    // CancelTask, GetTask, WatchTask
    await expectRefused(client.cancelTask({ taskId: 'tk_unknown' }), 'not_found');
    await expectRefused(client.cancelTask({ taskId: '../etc/passwd' }), 'invalid_argument', 'INVALID_ARGUMENT');
    await expectRefused(client.getTask({ taskId: 'tk_unknown' }), 'not_found', 'NOT_FOUND');
    await expectRefused(client.getTask({ taskId: '' }), 'invalid_argument');
    await expectRefused(client.watchTask({ taskId: 'tk_unknown' }), 'not_found', 'NOT_FOUND');
    // CreateState
    await expectRefused(
      client.createState({ seedTar: new Uint8Array(32 * 1024 * 1024 + 1) }),
      'invalid_argument',
      'TOO_LARGE',
    );
    await expectRefused(client.createState({ scope: StateScope.TASK }), 'invalid_argument', 'INVALID_ARGUMENT');
    const unsafe = await expectRefused(
      client.createState({ seedTar: escapingTar() }),
      'invalid_argument',
      'UNSAFE_SEED_ENTRY',
    );
    // The message names what the client sent, not the node's temp file.
    expect(unsafe.message).toContain('the uploaded seed');
    expect(unsafe.message).not.toMatch(/tmp|\.seed\.tar/);
    // BindState: unknown task / state, undeclared slot, conflicting writer
    const { state } = await client.createState({ name: 'conflict' });
    const sid = state?.id as string;
    const t1 = (await client.submitTask({ artifactDigest: fx.signed.fs?.digest as string })).task?.id as string;
    const t2 = (await client.submitTask({ artifactDigest: fx.signed.fs?.digest as string })).task?.id as string;
    await expectRefused(client.bindState({ stateId: sid, taskId: 'tk_unknown', slot: 'data' }), 'not_found');
    await expectRefused(
      client.bindState({ stateId: 'st_unknownunknownunknown00', taskId: t1, slot: 'data' }),
      'not_found',
      'NOT_FOUND',
    );
    await expectRefused(
      client.bindState({ stateId: sid, taskId: t1, slot: 'other' }),
      'invalid_argument',
      'UNDECLARED_SLOT',
    );
    await expectRefused(
      client.bindState({ stateId: sid, taskId: t1, slot: 'data', access: 7 as Access }),
      'invalid_argument',
    );
    // Single writer: while a running task holds the instance rw, another bind of it is refused.
    const holder = await client.submitTask({
      artifactDigest: fx.signed.loopState?.digest as string,
      bindings: [{ slot: 'data', stateId: sid }],
    });
    await waitForStatus(client, holder.task?.id as string, TaskStatus.RUNNING);
    await expectRefused(
      client.bindState({ stateId: sid, taskId: t2, slot: 'data' }),
      'failed_precondition',
      'BINDING_CONFLICT',
    );
    await expectRefused(
      client.submitTask({
        artifactDigest: fx.signed.fs?.digest as string,
        bindings: [{ slot: 'data', stateId: sid, access: Access.RO }],
      }),
      'failed_precondition',
      'BINDING_CONFLICT',
    );
    await expectRefused(
      client.bindState({ stateId: sid, taskId: holder.task?.id as string, slot: 'data' }),
      'failed_precondition',
    );
    await expectRefused(client.deleteState({ stateId: sid }), 'failed_precondition', 'INSTANCE_IN_USE');
    await client.cancelTask({ taskId: holder.task?.id as string });
    await client.cancelTask({ taskId: t1 });
    await client.cancelTask({ taskId: t2 });
    // DeleteState, ExportState
    await expectRefused(client.deleteState({ stateId: 'st_unknownunknownunknown00' }), 'not_found', 'NOT_FOUND');
    await expectRefused(client.deleteState({ stateId: 'st bad' }), 'invalid_argument');
    await expectRefused(client.exportState({ stateId: 'st_unknownunknownunknown00' }), 'not_found', 'NOT_FOUND');
    // ImportArtifact: untrusted, unsigned, not a layout, protocol errors, oversized
    await expectRefused(
      client.importArtifact(uploadOf(await readFile(fx.untrusted.path))),
      'permission_denied',
      'UNTRUSTED_KEY',
    );
    await expectRefused(
      client.importArtifact(uploadOf(await readFile(fx.unsigned.path))),
      'permission_denied',
      'UNSIGNED',
    );
    await expectRefused(
      client.importArtifact(uploadOf(Buffer.from('not a tar at all'.repeat(64)))),
      'invalid_argument',
    );
    await expectRefused(client.importArtifact(uploadOf(Buffer.from('abc'), 64, 10)), 'invalid_argument', 'BAD_UPLOAD');
    await expectRefused(
      client.importArtifact(uploadOf(new Uint8Array(0), 64, 1024 * 1024 * 1024)),
      'invalid_argument',
      'TOO_LARGE',
    );
    await expectRefused(
      client.importArtifact(
        (async function* () {
          yield* [];
        })(),
      ),
      'invalid_argument',
      'BAD_UPLOAD',
    );
    expect((await client.listArtifacts({})).artifacts.map((a) => a.digest)).not.toContain(fx.untrusted.digest);
    // StreamTraces, StreamMetrics
    await expectRefused(client.streamTraces({ taskId: 'tk_unknown' }), 'not_found', 'NOT_FOUND');
    await expectRefused(client.streamTraces({ taskId: 'bad id!' }), 'invalid_argument');
    // Metrics are node-wide: a task filter is refused, not answered with nothing.
    await expectRefused(client.streamMetrics({ taskId: 'tk_unknown' }), 'invalid_argument', 'INVALID_ARGUMENT');

    // Still up and answering normally.
    const { task } = await client.submitTask({ artifactDigest: hello });
    expect((await watchToEnd(client, task?.id as string)).stdout).toBe('hello from vyr\n');
    expect((await client.getNodeInfo({})).nodeId).toBe(node.nodeId);
  });
});
