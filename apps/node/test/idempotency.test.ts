import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
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
} from './helpers.js';

/**
 * Idempotency keys outlive the node process: a client retrying SubmitTask after the node was killed and restarted
 * gets the task its key started, never a second run.
 */
describe('idempotency keys survive a restart (kill -9)', () => {
  let fx: Fixtures;
  let data: string;
  let node: NodeProcess | undefined;
  let client: NodeClient;
  const start = async () => {
    node = await startNode(['--data-dir', data, '--trust', fx.trustedPub]);
    client = createNodeClient({ baseUrl: node.url });
  };

  beforeAll(async () => {
    const dir = await tempDir('vyr-node-idempotency-');
    fx = await buildFixtures(dir);
    data = join(dir, 'data');
    await start();
    for (const name of ['hello', 'loop']) {
      await client.importArtifact(uploadOf(await readFile(fx.signed[name]?.path as string)));
    }
  });
  afterAll(async () => {
    await node?.stop();
    await cleanupTempDirs();
  });

  it('a retry after kill -9 gets the task its key started (FAILED NODE_RESTART), not a second run', async () => {
    const request = {
      artifactDigest: fx.signed.loop?.digest as string,
      idempotencyKey: 'retry-after-crash',
      deadlineMs: 600_000n,
    };
    const { task } = await client.submitTask(request);
    await waitForStatus(client, task!.id, TaskStatus.RUNNING);
    // A finished task with its own key, to ask about after the restart.
    const { task: done } = await client.submitTask({
      artifactDigest: fx.signed.hello?.digest as string,
      idempotencyKey: 'finished-before',
    });
    await watchToEnd(client, done!.id);

    await node!.stop('SIGKILL');
    await start();

    const retried = await client.submitTask(request);
    expect(retried.task?.id).toBe(task!.id);
    expect(retried.task?.status).toBe(TaskStatus.FAILED);
    expect(retried.task?.reason).toBe('NODE_RESTART');
    // The same key for another request is still refused.
    await expectRefused(
      client.submitTask({ ...request, args: ['other'] }),
      'failed_precondition',
      'IDEMPOTENCY_MISMATCH',
    );
    // A key whose task ended before the restart is not run again either: its record is gone, the key is not.
    const gone = await expectRefused(
      client.submitTask({ artifactDigest: fx.signed.hello?.digest as string, idempotencyKey: 'finished-before' }),
      'not_found',
      'NOT_FOUND',
    );
    expect(gone.message).toContain(`started task ${done!.id}`);
    // A new key still runs.
    const fresh = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string, idempotencyKey: 'new' });
    expect(fresh.task?.id).not.toBe(done!.id);
  });
});
