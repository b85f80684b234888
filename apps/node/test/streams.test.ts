import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFixtures,
  expectRefused,
  type Fixtures,
  type NodeProcess,
  type StreamedSpan,
  startNode,
  streamedSpans,
  uploadOf,
  watchToEnd,
} from './helpers.js';

const CALLER_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CALLER_SPAN = 'b7ad6b7169203331';

const nowNanos = (): bigint => BigInt(Date.now()) * 1_000_000n;

describe('StreamTraces and StreamMetrics filters', () => {
  let fx: Fixtures;
  let node: NodeProcess;
  let client: NodeClient;

  beforeAll(async () => {
    const dir = await tempDir('vyr-node-streams-');
    fx = await buildFixtures(dir);
    node = await startNode(['--data-dir', `${dir}/data`, '--trust', fx.trustedPub, '--metric-interval-ms', '200']);
    client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
    for (const name of ['hello', 'fs']) {
      await client.importArtifact(uploadOf(await readFile(fx.signed[name]?.path as string)));
    }
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('task_id keeps exactly one task when three tasks share the caller traceparent: its vyr.task and every descendant', async () => {
    const traceparent = `00-${CALLER_TRACE}-${CALLER_SPAN}-01`;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const state = (await client.createState({})).state!;
      const { task } = await client.submitTask({
        artifactDigest: fx.signed.fs?.digest as string,
        traceparent,
        bindings: [{ slot: 'data', stateId: state.id }],
      });
      ids.push(task!.id);
    }
    for (const id of ids) expect((await watchToEnd(client, id)).task.status).toBe(TaskStatus.SUCCEEDED);

    const complete = (spans: StreamedSpan[]) =>
      spans.some((s) => s.name === 'vyr.task') && spans.filter((s) => s.name === 'vyr.state.release').length === 2;
    const perTask = await Promise.all(ids.map((id) => streamedSpans(client, id, complete)));
    const seen = new Set<string>();
    perTask.forEach((spans, i) => {
      const id = ids[i] as string;
      // All in the caller's trace, and every one carries this task's id.
      expect(spans.every((s) => s.traceId === CALLER_TRACE)).toBe(true);
      expect(spans.map((s) => s.attributes['vyr.task.id'])).toEqual(spans.map(() => id));
      const roots = spans.filter((s) => s.name === 'vyr.task');
      expect(roots).toHaveLength(1);
      expect(roots[0]?.parentSpanId).toBe(CALLER_SPAN);
      // A tree under that root: every other span's parent is one of this task's spans.
      const spanIds = new Set(spans.map((s) => s.spanId));
      for (const s of spans) if (s !== roots[0]) expect(spanIds.has(s.parentSpanId)).toBe(true);
      expect(new Set(spans.map((s) => s.name))).toEqual(
        new Set([
          'vyr.task',
          'vyr.verify',
          'vyr.prepare',
          'vyr.state.bind',
          'vyr.instantiate',
          'vyr.run',
          'vyr.state.release',
          'vyr.terminate',
        ]),
      );
      // The kernel's spans (grandchildren of vyr.task) are there too: two binds, two releases.
      expect(spans.filter((s) => s.name === 'vyr.state.bind')).toHaveLength(2);
      for (const s of spans) {
        expect(seen.has(s.spanId)).toBe(false); // no span is another task's too
        seen.add(s.spanId);
      }
    });
  });

  it('since_unix_nano keeps only spans that started at or after it', async () => {
    const first = (await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string })).task!;
    await watchToEnd(client, first.id);
    await streamedSpans(client, first.id, (spans) => spans.some((s) => s.name === 'vyr.task'));
    await sleep(5);
    const since = nowNanos();
    const second = (await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string })).task!;
    await watchToEnd(client, second.id);
    await streamedSpans(client, second.id, (spans) => spans.some((s) => s.name === 'vyr.task'));
    const taskIds = new Set<unknown>();
    let spans = 0;
    for await (const batch of client.streamTraces({ sinceUnixNano: since })) {
      for (const ss of batch.resourceSpans?.scopeSpans ?? []) {
        for (const s of ss.spans) {
          spans++;
          expect(s.startTimeUnixNano).toBeGreaterThanOrEqual(since);
          const attr = s.attributes.find((a) => a.key === 'vyr.task.id');
          if (attr?.value?.value.case === 'stringValue') taskIds.add(attr.value.value.value);
        }
      }
    }
    expect(spans).toBeGreaterThan(0);
    expect(taskIds.has(second.id)).toBe(true);
    expect(taskIds.has(first.id)).toBe(false);
  });

  it('StreamMetrics: since_unix_nano keeps only later data points; a task filter is refused (metrics are node-wide)', async () => {
    const points = async (sinceUnixNano: bigint) => {
      const times: bigint[] = [];
      for await (const batch of client.streamMetrics({ sinceUnixNano })) {
        for (const sm of batch.resourceMetrics?.scopeMetrics ?? []) {
          for (const m of sm.metrics) {
            const data = m.data.value as { dataPoints: { timeUnixNano: bigint }[] } | undefined;
            for (const p of data?.dataPoints ?? []) times.push(p.timeUnixNano);
          }
        }
      }
      return times;
    };
    // Wait for a few collections (every 200 ms), then ask for the recent ones only.
    let all: bigint[] = [];
    for (let i = 0; i < 100 && new Set(all).size < 3; i++) {
      await sleep(100);
      all = await points(0n);
    }
    const distinct = [...new Set(all)].sort();
    expect(distinct.length).toBeGreaterThanOrEqual(3);
    const since = distinct.at(-2) as bigint;
    const recent = await points(since);
    expect(recent.length).toBeGreaterThan(0);
    expect(recent.every((t) => t >= since)).toBe(true);
    // Earlier points existed and were left out. (Comparing counts with `all` races the next collection, which
    // the node may take between the two reads.)
    expect(all.some((t) => t < since)).toBe(true);
    expect(recent).not.toContain(distinct[0]);

    const { task } = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string });
    await expectRefused(client.streamMetrics({ taskId: task!.id }), 'invalid_argument', 'INVALID_ARGUMENT');
  });
});
