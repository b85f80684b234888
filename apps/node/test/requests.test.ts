import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { StateScope, TaskStatus } from '@vyr/proto';
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

describe('task-scoped state, BindState and artifact import', () => {
  let fx: Fixtures;
  let node: NodeProcess;
  let client: NodeClient;
  let data: string;

  beforeAll(async () => {
    const dir = await tempDir('vyr-node-requests-');
    fx = await buildFixtures(dir);
    data = join(dir, 'data');
    node = await startNode(['--data-dir', data, '--trust', fx.trustedPub]);
    client = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
    for (const name of ['hello', 'fs']) {
      await client.importArtifact(uploadOf(await readFile(fx.signed[name]?.path as string)));
    }
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('CreateState(scope TASK) needs a task of this node that has not ended: not_found / failed_precondition, no orphan', async () => {
    const before = (await client.listStates({})).states.length;
    await expectRefused(client.createState({ scope: StateScope.TASK, taskId: 'nope' }), 'not_found', 'NOT_FOUND');
    const { task: ended } = await client.submitTask({ artifactDigest: fx.signed.hello?.digest as string });
    await watchToEnd(client, ended!.id);
    await expectRefused(
      client.createState({ scope: StateScope.TASK, taskId: ended!.id }),
      'failed_precondition',
      'TASK_TERMINATED',
    );
    expect((await client.listStates({})).states).toHaveLength(before);
  });

  it('a task-scoped instance of a PENDING task binds; BindState answers QUEUED or later once every slot is bound', async () => {
    const { task } = await client.submitTask({ artifactDigest: fx.signed.fs?.digest as string });
    await waitForStatus(client, task!.id, TaskStatus.PENDING);
    const state = (await client.createState({ scope: StateScope.TASK, taskId: task!.id })).state!;
    expect(state.taskId).toBe(task!.id);
    const bound = await client.bindState({ stateId: state.id, taskId: task!.id, slot: 'data' });
    expect(bound.task?.status).not.toBe(TaskStatus.PENDING);
    expect(bound.task?.unboundSlots).toEqual([]);
    expect((await watchToEnd(client, task!.id)).task.status).toBe(TaskStatus.SUCCEEDED);
    // Task-scoped: gone with its task.
    expect((await client.listStates({})).states.map((s) => s.id)).not.toContain(state.id);
  });

  it('an untrusted upload is refused and leaves nothing in the store; a trusted re-import is alreadyPresent', async () => {
    const blobs = join(data, 'artifacts', 'blobs', 'sha256');
    const before = (await readdir(blobs)).sort();
    await expectRefused(
      client.importArtifact(uploadOf(await readFile(fx.untrusted.path))),
      'permission_denied',
      'UNTRUSTED_KEY',
    );
    const refused = await expectRefused(
      client.importArtifact(uploadOf(await readFile(fx.unsigned.path))),
      'permission_denied',
      'UNSIGNED',
    );
    expect(refused.message).not.toMatch(/\.artifact\.tar/);
    expect((await client.listArtifacts({})).artifacts.map((a) => a.digest)).not.toContain(fx.untrusted.digest);
    expect((await readdir(blobs)).sort()).toEqual(before);
    const again = await client.importArtifact(uploadOf(await readFile(fx.signed.hello?.path as string)));
    expect(again).toMatchObject({ alreadyPresent: true, artifact: { digest: fx.signed.hello?.digest } });
    expect(again.artifact?.signerKeyIds).toHaveLength(1);
  });
});
