import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNodeClient } from '@vyr/api/client';
import { ExitCode } from '@vyr/cli';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { list as listTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliFixtures, type CliFixtures, type NodeChild, startNodeChild, vyr, vyrLive } from './api-helpers.js';

describe('vyr state create / bind / ls / export / rm and vyr run --state', () => {
  let fx: CliFixtures;
  let node: NodeChild;
  let env: Record<string, string>;
  const run = (...args: string[]) => vyr(args, env, fx.dir);

  beforeAll(async () => {
    fx = await buildCliFixtures(await tempDir('vyr-cli-state-'));
    node = await startNodeChild(['--data-dir', join(fx.dir, 'data'), '--trust', fx.pub]);
    env = { VYR_NODE: node.url };
    expect((await run('import', fx.tars.fs?.path as string)).code).toBe(0);
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('creates an instance seeded from a directory, runs a task on it, and prints the state digest', async () => {
    const seed = join(fx.dir, 'seed');
    await mkdir(join(seed, 'sub'), { recursive: true });
    await writeFile(join(seed, 'sub', 'a.txt'), 'seeded\n');
    const created = await run('state', 'create', '--from', seed, '--quota', '1MiB', '--ttl', '1h', '--name', 'work');
    expect(created.code).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^st_[a-z0-9]+$/);

    const ran = await run('run', fx.tars.fs?.digest as string, '--state', `data=${id}`);
    expect(ran.code).toBe(0);
    expect(ran.stdout).toBe('vyr state\nescape refused\n');
    expect(ran.stderr).toMatch(new RegExp(`^vyr: state data ${id} sha256:[0-9a-f]{64} \\(`, 'm'));

    const ls = JSON.parse((await run('--json', 'state', 'ls')).stdout) as {
      states: { id: string; name: string; quotaBytes: number; lastDigest: string; entries: number }[];
    };
    const listed = ls.states.find((s) => s.id === id);
    expect(listed).toMatchObject({ name: 'work', quotaBytes: 1024 * 1024 });
    expect(ran.stderr).toContain(listed?.lastDigest as string);
    expect((await run('state', 'ls')).stdout).toMatch(/^ID\s+NAME\s+SCOPE/);

    const outDir = join(fx.dir, 'exported');
    expect((await run('state', 'export', id, '--out', outDir)).code).toBe(0);
    expect((await readdir(outDir)).sort()).toEqual(['note.txt', 'sub']);
    expect(await readFile(join(outDir, 'sub', 'a.txt'), 'utf8')).toBe('seeded\n');
    const outTar = join(fx.dir, 'exported.tar');
    expect((await run('state', 'export', id, '--out', outTar)).code).toBe(0);
    const names: string[] = [];
    await listTar({ file: outTar, onReadEntry: (e) => names.push(e.path.replace(/^\.\//, '').replace(/\/$/, '')) });
    expect(names.filter(Boolean).sort()).toEqual(['note.txt', 'sub', 'sub/a.txt']);
    expect((await run('state', 'export', id, '--out', outTar)).code).toBe(ExitCode.ALREADY_EXISTS);

    expect(await run('state', 'rm', id)).toMatchObject({ code: 0, stdout: `deleted ${id}\n` });
    expect((await run('state', 'rm', id)).code).toBe(ExitCode.NOT_FOUND);
  });

  it('vyr run of a task that waits for state tells its id at once, so it can be bound (human and --json)', async () => {
    const id = (await run('state', 'create')).stdout.trim();
    // --json: the accepted task is the first JSON line, before the task runs.
    const json = vyrLive(['--json', 'run', fx.tars.fs?.digest as string], env, fx.dir);
    const accepted = JSON.parse(await json.line(/^\{"event":"accepted"/)) as {
      task: { id: string; status: string; unboundSlots: string[] };
    };
    expect(accepted.task).toMatchObject({ status: 'PENDING', unboundSlots: ['data'] });
    expect((await run('state', 'bind', id, accepted.task.id, '--slot', 'data')).code).toBe(0);
    const ended = await json.done;
    expect(ended.code).toBe(0);
    const lines = ended.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[1] as string)).toMatchObject({
      task: { id: accepted.task.id, status: 'SUCCEEDED', stateResults: [{ slot: 'data', stateId: id }] },
      stdout: 'vyr state\nescape refused\n',
    });

    // Human: the task id on stderr, then how to bind.
    const human = vyrLive(['run', fx.tars.fs?.digest as string], env, fx.dir);
    const waits = await human.line(/waits for state/, 'stderr');
    const taskId =
      /^vyr: task (\S+) waits for state in slot\(s\) data: bind with `vyr state bind ID \1 --slot NAME`$/.exec(
        waits,
      )?.[1] as string;
    expect(taskId).toBeDefined();
    expect(await human.line(/^vyr: task \S+$/, 'stderr')).toBe(`vyr: task ${taskId}`);
    expect((await run('state', 'bind', id, taskId, '--slot', 'data')).code).toBe(0);
    expect((await human.done).code).toBe(0);
  });

  it('binds an instance to a PENDING task with vyr state bind, and refuses a second writer with exit 77', async () => {
    const id = (await run('state', 'create')).stdout.trim();
    const client = createNodeClient({ baseUrl: node.url });
    const { task } = await client.submitTask({ artifactDigest: fx.tars.fs?.digest as string });
    expect(task?.status).toBe(TaskStatus.PENDING);
    const undeclared = await run('state', 'bind', id, task?.id as string, '--slot', 'nope');
    expect(undeclared.code).toBe(ExitCode.INVALID_INPUT);
    expect(undeclared.stderr).toMatch(/^vyr: UNDECLARED_SLOT: /);
    const bound = await run('--json', 'state', 'bind', id, task?.id as string, '--slot', 'data');
    expect(bound.code).toBe(0);
    for (let i = 0; i < 200; i++) {
      const { task: t } = await client.getTask({ taskId: task?.id as string });
      if (t?.status === TaskStatus.SUCCEEDED) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const got = JSON.parse((await run('--json', 'task', 'get', task?.id as string)).stdout);
    expect(got.task).toMatchObject({ status: 'SUCCEEDED', stateResults: [{ slot: 'data', stateId: id }] });

    const ended = await run('state', 'bind', id, task?.id as string, '--slot', 'data');
    expect(ended.code).toBe(ExitCode.PERMISSION_DENIED);
    expect(ended.stderr).toMatch(/^vyr: TASK_TERMINATED: /);
    expect((await run('state', 'create', '--quota', 'big')).code).toBe(ExitCode.USAGE);
    expect((await run('state', 'create', '--from', join(fx.dir, 'missing'))).code).toBe(ExitCode.NOT_FOUND);
    expect((await run('run', fx.tars.fs?.digest as string, '--state', 'data')).code).toBe(ExitCode.USAGE);
  });
});
