import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFixtures, type Fixtures, type NodeProcess, startNode, uploadOf, waitForStatus } from './helpers.js';

/** More than 8 MB (decimal) of stdin, under the node's 8 MiB stdin limit: `cat` echoes it to stdout. */
const TOTAL = 8_300_000;

interface Watched {
  stdout: Buffer;
  /** Bytes of every `dropped` event, in order. */
  dropped: number[];
  /** Event kinds in order (`task:STATUS`, `stdout`, `dropped`, …). */
  order: string[];
  last?: { status: TaskStatus; droppedOutputBytes: bigint };
}

/** Follows a task with WatchTask, pausing `delayMs` after every output message (a slow reader). */
async function watch(client: NodeClient, taskId: string, delayMs = 0): Promise<Watched> {
  const chunks: Buffer[] = [];
  const out: Watched = { stdout: Buffer.alloc(0), dropped: [], order: [] };
  for await (const ev of client.watchTask({ taskId })) {
    const e = ev.event;
    if (e.case === 'task') {
      out.order.push(`task:${TaskStatus[e.value.status]}`);
      out.last = { status: e.value.status, droppedOutputBytes: e.value.droppedOutputBytes };
    } else if (e.case === 'stdout') {
      out.order.push('stdout');
      chunks.push(Buffer.from(e.value));
      if (delayMs > 0) await sleep(delayMs);
    } else if (e.case === 'dropped') {
      out.order.push('dropped');
      out.dropped.push(Number(e.value));
    }
  }
  out.stdout = Buffer.concat(chunks);
  return out;
}

describe('WatchTask delivers all of a task output, or says exactly how much a watcher missed', () => {
  let fx: Fixtures;
  let node: NodeProcess;
  let client: NodeClient;
  let cat: string;
  const input = randomBytes(TOTAL);

  beforeAll(async () => {
    const dir = await tempDir('vyr-node-output-');
    fx = await buildFixtures(dir);
    node = await startNode(['--data-dir', `${dir}/data`, '--trust', fx.trustedPub]);
    client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
    cat = fx.signed.cat?.digest as string;
    await client.importArtifact(uploadOf(await readFile(fx.signed.cat?.path as string)));
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('hold_output: an 8.3 MB output reaches a watcher that attaches late and reads slowly, byte for byte', async () => {
    const { task } = await client.submitTask({ artifactDigest: cat, stdin: input, holdOutput: true });
    const id = task?.id as string;
    expect(id).toMatch(/^tk_[0-9a-f]{32}$/);
    await waitForStatus(client, id, TaskStatus.RUNNING);
    await sleep(500);
    // Nobody watches yet: the guest is blocked writing, not finished, and has lost nothing.
    const held = (await client.getTask({ taskId: id })).task;
    expect(held?.status).toBe(TaskStatus.RUNNING);
    expect(held?.droppedOutputBytes).toBe(0n);

    const got = await watch(client, id, 2);
    expect(got.dropped).toEqual([]);
    expect(got.stdout.byteLength).toBe(TOTAL);
    expect(got.stdout.equals(input)).toBe(true);
    expect(got.last).toEqual({ status: TaskStatus.SUCCEEDED, droppedOutputBytes: 0n });
  });

  it('without hold_output a watcher that attaches after the end gets a dropped event for exactly the bytes it missed', async () => {
    const { task } = await client.submitTask({ artifactDigest: cat, stdin: input });
    const id = task?.id as string;
    await waitForStatus(client, id, TaskStatus.SUCCEEDED);
    const got = await watch(client, id);
    expect(got.order[0]).toBe('dropped');
    expect(got.order.at(-1)).toBe('task:SUCCEEDED');
    const missed = got.dropped.reduce((a, b) => a + b, 0);
    expect(missed).toBeGreaterThan(0);
    expect(got.stdout.byteLength + missed).toBe(TOTAL);
    // What arrived is the tail of the output, after the gap.
    expect(got.stdout.equals(input.subarray(missed))).toBe(true);
    // The task counts what its watchers missed.
    expect(got.last?.droppedOutputBytes).toBe(BigInt(missed));
    expect((await client.getTask({ taskId: id })).task?.droppedOutputBytes).toBe(BigInt(missed));
  });

  it('GetNodeInfo tells clients how long output is held and the request size limits', async () => {
    const info = await client.getNodeInfo({});
    expect(info.outputHoldMs).toBe(60_000n);
    expect(info.limits?.maxStdinBytes).toBe(8n * 1024n * 1024n);
    expect(info.limits?.maxArtifactBytes).toBe(256n * 1024n * 1024n);
    expect(info.limits?.maxSeedBytes).toBe(32n * 1024n * 1024n);
    expect(info.limits?.maxMessageBytes).toBe(33n * 1024n * 1024n);
    expect(info.stateConflictPolicy).toBe('refuse');
    expect(info.pendingTimeoutMs).toBe(300_000n);
  });
});
