import { readFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { createNodeClient, describeCallError } from '@vyr/api/client';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { startOtlpReceiver } from '@vyr/testing/otlp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFixtures,
  type Fixtures,
  selfSignedCert,
  startNode,
  startNodeExpectingFailure,
  uploadOf,
  waitForStatus,
  watchToEnd,
  writeText,
} from './helpers.js';

let fx: Fixtures;

beforeAll(async () => {
  fx = await buildFixtures(await tempDir('vyr-node-life-'));
});

afterAll(async () => {
  await cleanupTempDirs();
});

describe('node security: loopback by default, bearer token elsewhere', () => {
  it('refuses to listen on a non-loopback address without a token', async () => {
    const dir = await tempDir();
    const { code, stderr } = await startNodeExpectingFailure(['--data-dir', dir, '--listen', '0.0.0.0:0']);
    expect(code).toBe(2); // usage: the command line lacks --token-file
    expect(stderr).toContain('INSECURE_LISTEN');
  });

  it('refuses --allow-unsigned outside the laptop tier', async () => {
    const dir = await tempDir();
    const { code, stderr } = await startNodeExpectingFailure(['--data-dir', dir, '--tier', 'edge', '--allow-unsigned']);
    expect(code).toBe(2);
    expect(stderr).toContain('UNSIGNED_NOT_ALLOWED');
  });

  it('answers unauthenticated without the right bearer token, and normally with it', async () => {
    const dir = await tempDir();
    const tokenFile = await writeText(dir, 'token', 's3cret-token\n');
    const node = await startNode(['--data-dir', `${dir}/data`, '--token-file', tokenFile, '--trust', fx.trustedPub]);
    try {
      for (const token of [undefined, 'wrong-token']) {
        const c = createNodeClient({ baseUrl: node.url, ...(token ? { token } : {}) });
        const err = await c.getNodeInfo({}).then(
          () => undefined,
          (e: unknown) => describeCallError(e),
        );
        expect(err).toMatchObject({ connectCode: 'unauthenticated', errorCode: 'UNAUTHENTICATED' });
        const raw = await fetch(`${node.url}/vyr.v1.NodeService/ListStates`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
          body: '{}',
        });
        expect(raw.status).toBe(401);
      }
      const ok = createNodeClient({ baseUrl: node.url, token: 's3cret-token', httpVersion: '2' });
      expect((await ok.getNodeInfo({})).nodeId).toBe(node.nodeId);
      const imported = await ok.importArtifact(uploadOf(await readFile(fx.signed.hello?.path as string)));
      expect(imported.artifact?.digest).toBe(fx.signed.hello?.digest);
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });
});

describe('node lifecycle: SIGTERM, restart recovery, stable identity', () => {
  it('on SIGTERM cancels running tasks, flushes their spans to the OTLP endpoint and exits 0', async () => {
    const receiver = await startOtlpReceiver();
    const dir = await tempDir();
    const node = await startNode(['--data-dir', `${dir}/data`, '--trust', fx.trustedPub, '--otlp', receiver.url]);
    const client = createNodeClient({ baseUrl: node.url });
    try {
      await client.importArtifact(uploadOf(await readFile(fx.signed.loop?.path as string)));
      const { task } = await client.submitTask({ artifactDigest: fx.signed.loop?.digest as string });
      await waitForStatus(client, task?.id as string, TaskStatus.RUNNING);
      const watching = watchToEnd(client, task?.id as string).catch((e: unknown) => e);
      expect(await node.stop('SIGTERM')).toBe(0);
      // A watcher open during shutdown still receives the task's terminal status.
      const last = await watching;
      expect(last).not.toBeInstanceOf(Error);
      expect((last as Awaited<ReturnType<typeof watchToEnd>>).task).toMatchObject({
        status: TaskStatus.CANCELLED,
        reason: 'RUNTIME_CLOSED',
      });
      // The task's root span was exported before the process exited.
      const root = receiver.spans().find((s) => s.name === 'vyr.task' && s.attributes['vyr.task.id'] === task?.id);
      expect(root?.attributes['vyr.task.outcome']).toBe('CANCELLED');
      expect(root?.resource['vyr.node.id']).toBe(node.nodeId);
    } finally {
      await node.stop();
      await receiver.close();
    }
  });

  it('after SIGKILL, a restarted node reports the interrupted task FAILED(NODE_RESTART), keeps named state and its id', async () => {
    const dir = await tempDir();
    const args = ['--data-dir', `${dir}/data`, '--trust', fx.trustedPub];
    const first = await startNode(args);
    const c1 = createNodeClient({ baseUrl: first.url });
    await c1.importArtifact(uploadOf(await readFile(fx.signed.loopState?.path as string)));
    await c1.importArtifact(uploadOf(await readFile(fx.signed.fs?.path as string)));
    const { state } = await c1.createState({ name: 'survivor' });
    const { task } = await c1.submitTask({
      artifactDigest: fx.signed.loopState?.digest as string,
      bindings: [{ slot: 'data', stateId: state?.id as string }],
    });
    await waitForStatus(c1, task?.id as string, TaskStatus.RUNNING);
    await first.stop('SIGKILL');

    const second = await startNode(args);
    try {
      expect(second.nodeId).toBe(first.nodeId);
      const c2 = createNodeClient({ baseUrl: second.url });
      const { task: after } = await c2.getTask({ taskId: task?.id as string });
      expect(after?.status).toBe(TaskStatus.FAILED);
      expect(after?.reason).toBe('NODE_RESTART');
      // What it ran and when it was submitted survive the crash (kept with the task in the state registry).
      expect(after?.artifactDigest).toBe(fx.signed.loopState?.digest);
      expect(after?.createdAtUnixMs).toBeGreaterThan(0n);
      expect(Number(after?.createdAtUnixMs)).toBeLessThanOrEqual(Date.now());
      const { states } = await c2.listStates({});
      expect(states.map((s) => s.id)).toContain(state?.id);
      // The named instance is free again: a new task can bind it rw and run.
      const next = await c2.submitTask({
        artifactDigest: fx.signed.fs?.digest as string,
        bindings: [{ slot: 'data', stateId: state?.id as string }],
      });
      const done = await watchToEnd(c2, next.task?.id as string);
      expect(done.task.status).toBe(TaskStatus.SUCCEEDED);
      expect((await c2.getNodeInfo({})).artifacts).toBe(2);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});

describe('live streams: a stalled subscriber never slows tasks', () => {
  it('tasks finish while a StreamTraces subscriber reads nothing; the subscriber is told how many batches it missed', async () => {
    const dir = await tempDir();
    const node = await startNode(['--data-dir', `${dir}/data`, '--trust', fx.trustedPub, '--stream-buffer', '2']);
    try {
      const client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
      await client.importArtifact(uploadOf(await readFile(fx.signed.hello?.path as string)));
      // The slow subscriber is a raw HTTP/2 Connect streaming request on its own connection whose response nobody
      // reads: HTTP/2 flow control carries the backpressure to the node, as from a slow client far away.
      const body = Buffer.from(JSON.stringify({ follow: true }));
      const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
      envelope.writeUInt32BE(body.length, 1);
      const session = http2.connect(node.url);
      const stream = session.request({
        ':method': 'POST',
        ':path': '/vyr.v1.NodeService/StreamTraces',
        'content-type': 'application/connect+json',
        'connect-protocol-version': '1',
      });
      stream.end(envelope);
      stream.pause();
      // 300 tasks, 4 at a time, all finish although nobody drains the stream.
      let next = 0;
      const ended: TaskStatus[] = [];
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < 300) {
            next++;
            const { task } = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string });
            ended.push((await watchToEnd(client, task?.id as string)).task.status);
          }
        }),
      );
      expect(ended).toHaveLength(300);
      expect(ended.every((s) => s === TaskStatus.SUCCEEDED)).toBe(true);
      // Now read: the messages still queued for this subscriber say how many batches it lost.
      let buffered = Buffer.alloc(0);
      let dropped = 0n;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 5000);
        stream.on('data', (chunk: Buffer) => {
          buffered = Buffer.concat([buffered, chunk]);
          while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
            const size = buffered.readUInt32BE(1);
            const message = JSON.parse(buffered.subarray(5, 5 + size).toString()) as { dropped?: string };
            if (message.dropped) dropped = BigInt(message.dropped);
            buffered = buffered.subarray(5 + size);
          }
          if (dropped > 0n) {
            clearTimeout(timer);
            resolve();
          }
        });
        stream.resume();
      });
      stream.close();
      session.close();
      expect(dropped).toBeGreaterThan(0n);
      expect((await client.getNodeInfo({})).telemetry?.streamItemsDropped).toBeGreaterThan(0n);
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });
});

describe('admission and TLS', () => {
  it('answers resource_exhausted when the queue is full, and admits again once it drains', async () => {
    const dir = await tempDir();
    const node = await startNode([
      '--data-dir',
      `${dir}/data`,
      '--trust',
      fx.trustedPub,
      '--pool-size',
      '1',
      '--max-queue',
      '1',
    ]);
    try {
      const client = createNodeClient({ baseUrl: node.url });
      await client.importArtifact(uploadOf(await readFile(fx.signed.loop?.path as string)));
      const loop = fx.signed.loop?.digest as string;
      const running = (await client.submitTask({ artifactDigest: loop })).task?.id as string;
      await waitForStatus(client, running, TaskStatus.RUNNING);
      const queued = (await client.submitTask({ artifactDigest: loop })).task?.id as string;
      const refused = await client.submitTask({ artifactDigest: loop }).then(
        () => undefined,
        (e: unknown) => describeCallError(e),
      );
      expect(refused).toMatchObject({
        connectCode: 'resource_exhausted',
        errorCode: 'RESOURCE_EXHAUSTED',
        domain: 'runtime',
      });
      await client.cancelTask({ taskId: queued });
      await client.cancelTask({ taskId: running });
      const again = (await client.submitTask({ artifactDigest: loop })).task?.id as string;
      expect((await client.cancelTask({ taskId: again })).task?.status).toBe(TaskStatus.CANCELLED);
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });

  it('serves HTTPS with --tls-cert/--tls-key on HTTP/2 and HTTP/1.1', async () => {
    const dir = await tempDir();
    const { key, cert } = selfSignedCert(dir);
    const node = await startNode(['--data-dir', `${dir}/data`, '--tls-cert', cert, '--tls-key', key]);
    try {
      expect(node.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ca = await readFile(cert);
      for (const httpVersion of ['2', '1.1'] as const) {
        const client = createNodeClient({ baseUrl: node.url, httpVersion, ca });
        expect((await client.getNodeInfo({})).nodeId).toBe(node.nodeId);
      }
      const untrusting = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
      expect(
        await untrusting.getNodeInfo({}).then(
          () => 'ok',
          () => 'refused',
        ),
      ).toBe('refused');
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });
});
