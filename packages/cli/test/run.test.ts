import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createNodeClient } from '@vyr/api/client';
import { ExitCode } from '@vyr/cli';
import { TaskStatus } from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliFixtures, type CliFixtures, type NodeChild, startNodeChild, vyr } from './api-helpers.js';

const execFileAsync = promisify(execFile);
const hasSkopeo = await execFileAsync('skopeo', ['--version']).then(
  () => true,
  () => false,
);

describe('vyr import / run / cancel / task get against a node', () => {
  let fx: CliFixtures;
  let node: NodeChild;
  let env: Record<string, string>;
  const run = (...args: string[]) => vyr(args, env, fx.dir);

  beforeAll(async () => {
    fx = await buildCliFixtures(await tempDir('vyr-cli-run-'));
    node = await startNodeChild(['--data-dir', join(fx.dir, 'data'), '--trust', fx.pub]);
    env = { VYR_NODE: node.url };
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('imports a layout directory and a .tar, idempotently, and lists them', async () => {
    const dir = await run('import', fx.helloDir.path);
    expect(dir).toMatchObject({ code: 0 });
    expect(dir.stdout).toContain(`${fx.helloDir.digest}  hello-dir@1.0.0  imported`);
    const again = await run('--json', 'import', fx.tars.hello?.path as string);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ artifact: { digest: fx.tars.hello?.digest, name: 'hello' } });
    expect((await run('import', fx.tars.hello?.path as string)).stdout).toContain('(already present)');
    const ls = await run('--json', 'artifacts', 'ls');
    expect((JSON.parse(ls.stdout) as { artifacts: { digest: string }[] }).artifacts.map((a) => a.digest)).toEqual(
      expect.arrayContaining([fx.helloDir.digest, fx.tars.hello?.digest]),
    );
  });

  it.skipIf(!hasSkopeo)(
    'imports and runs a skopeo copy (directory and oci-archive .tar) with the detached bundle (skipped without skopeo)',
    async () => {
      const hello = fx.helloDir;
      const copy = join(fx.dir, 'skopeo-copy');
      const archive = join(fx.dir, 'skopeo-copy.tar');
      await execFileAsync('skopeo', ['copy', '--quiet', `oci:${hello.path}:hello-dir:1.0.0`, `oci:${copy}:copied`]);
      await execFileAsync('skopeo', ['copy', '--quiet', `oci:${hello.path}:hello-dir:1.0.0`, `oci-archive:${archive}`]);
      const bundle = `${hello.path}.sigstore.json`;
      // skopeo copies the image, not its signature referrer: without the bundle the node has nothing to trust.
      expect((await run('verify', copy, '--trust', fx.pub)).stderr).toContain('vyr: UNSIGNED');
      expect((await run('verify', copy, '--trust', fx.pub, '--bundle', bundle)).code).toBe(0);
      const imported = await run('import', copy, '--bundle', bundle);
      expect(imported).toMatchObject({ code: 0 });
      expect(imported.stdout).toContain(hello.digest);
      expect(await run('run', archive, '--bundle', bundle)).toMatchObject({ code: 0, stdout: 'hello from vyr\n' });
      expect(await run('run', copy, '--ref', 'copied', '--bundle', bundle)).toMatchObject({ code: 0 });
    },
  );

  it('runs an artifact path: imports it, streams its output and exits with its exit code', async () => {
    const hello = await run('run', fx.tars.hello?.path as string);
    expect(hello).toMatchObject({ code: 0, stdout: 'hello from vyr\n' });
    // The task id comes first on stderr, so a user can follow up with `vyr task get` or `vyr traces --task`.
    expect(hello.stderr).toMatch(/^vyr: task \S+\n$/);
    const exit = await run('run', fx.tars.exit33?.path as string);
    expect(exit.code).toBe(33);
    expect(exit.stderr).toMatch(/^vyr: task \S+\nexiting with 33\n$/);
    const trap = await run('run', fx.tars.trap?.path as string);
    expect(trap.code).toBe(ExitCode.TASK_FAILED);
    expect(trap.stderr).toMatch(/FAILED \(TRAP\)/);
  });

  it('passes --env, --stdin FILE, --stdin - and args; --json prints the task and its output', async () => {
    const envRun = await run('run', fx.tars.env?.path as string, '--env', 'GREETING=hello there');
    expect(envRun.stdout).toBe('GREETING=hello there\n');
    const input = join(fx.dir, 'in.txt');
    await writeFile(input, 'from a file\n');
    expect((await run('run', fx.tars.cat?.path as string, '--stdin', input)).stdout).toBe('from a file\n');
    const piped = await vyr(['run', fx.tars.cat?.digest as string, '--stdin', '-'], env, fx.dir, 'from stdin\n');
    expect(piped.stdout).toBe('from stdin\n');
    const args = await run('run', fx.tars.args?.path as string, '--', 'one', '--two');
    expect(args.stdout).toBe('args\none\n--two\n');
    // After --, even --json belongs to the task: human output, the task gets it as an argument.
    const passed = await run('run', fx.tars.args?.digest as string, '--', '--json');
    expect(passed).toMatchObject({ code: 0, stdout: 'args\n--json\n' });
    const json = await run('--json', 'run', fx.tars.hello?.digest as string, '--idempotency-key', 'cli-1');
    const parsed = JSON.parse(json.stdout) as {
      task: { id: string; status: string; exitCode: number; traceId: string };
      stdout: string;
    };
    expect(parsed).toMatchObject({ task: { status: 'SUCCEEDED', exitCode: 0 }, stdout: 'hello from vyr\n' });
    const retried = JSON.parse(
      (await run('--json', 'run', fx.tars.hello?.digest as string, '--idempotency-key', 'cli-1')).stdout,
    );
    expect(retried.task.id).toBe(parsed.task.id);
    const got = await run('--json', 'task', 'get', parsed.task.id);
    expect(JSON.parse(got.stdout)).toMatchObject({ task: { id: parsed.task.id, status: 'SUCCEEDED' } });
    // The same key with a different request is refused, never a second run: exit 77.
    const mismatch = await run('run', fx.tars.hello?.digest as string, '--idempotency-key', 'cli-1', '--', 'x');
    expect(mismatch.code).toBe(ExitCode.PERMISSION_DENIED);
    expect(mismatch.stderr).toMatch(/^vyr: IDEMPOTENCY_MISMATCH: /m);
  });

  it('exits 124 when the deadline passes and 130 when the task is cancelled', async () => {
    const deadline = await run('run', fx.tars.loop?.path as string, '--deadline', '300ms');
    expect(deadline.code).toBe(ExitCode.DEADLINE_EXCEEDED);
    expect(deadline.stderr).toContain('DEADLINE_EXCEEDED');

    const running = run('--json', 'run', fx.tars.loop?.digest as string, '--idempotency-key', 'to-cancel');
    // The same idempotency key answers with the same task: that is how a script finds the task to cancel.
    const client = createNodeClient({ baseUrl: node.url });
    let taskId = '';
    for (let i = 0; i < 400; i++) {
      const found = await client
        .submitTask({ artifactDigest: fx.tars.loop?.digest as string, idempotencyKey: 'to-cancel' })
        .catch(() => undefined);
      if (found?.task?.status === TaskStatus.RUNNING) {
        taskId = found.task.id;
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(taskId).not.toBe('');
    const cancelled = await run('cancel', taskId);
    expect(cancelled).toMatchObject({ code: 0, stdout: `${taskId} CANCELLED\n` });
    const ended = await running;
    expect(ended.code).toBe(ExitCode.CANCELLED);
    expect(JSON.parse(ended.stdout)).toMatchObject({ task: { status: 'CANCELLED', reason: 'CANCELLED' } });
  });

  it('exits with documented codes on refusals: untrusted 65, unknown 66, malformed 64, unreachable 69, usage 2', async () => {
    const untrusted = await run('import', fx.untrusted);
    expect(untrusted.code).toBe(ExitCode.VERIFY_FAILED);
    expect(untrusted.stderr).toMatch(/^vyr: UNTRUSTED_KEY: /);
    const unknown = await run('task', 'get', 'tk_nope');
    expect(unknown).toMatchObject({ code: ExitCode.NOT_FOUND });
    expect(unknown.stderr).toMatch(/^vyr: NOT_FOUND: /);
    expect((await run('run', `sha256:${'a'.repeat(64)}`)).code).toBe(ExitCode.NOT_FOUND);
    expect((await run('run', 'sha256:123')).code).toBe(ExitCode.INVALID_INPUT);
    expect((await run('run', fx.tars.hello?.digest as string, '--memory', 'lots')).code).toBe(ExitCode.USAGE);
    const missing = await run('run', join(fx.dir, 'no-such.tar'));
    expect(missing.code).toBe(ExitCode.NOT_FOUND);
    expect(missing.stderr).toMatch(/^vyr: NOT_FOUND: /);
    const down = await vyr(['artifacts', 'ls', '--node', 'http://127.0.0.1:1'], {}, fx.dir);
    expect(down.code).toBe(ExitCode.UNAVAILABLE);
    expect(down.stderr).toContain('cannot reach the node at http://127.0.0.1:1');
    const json = await run('--json', 'task', 'get', 'tk_nope');
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'NOT_FOUND' } });
  });
});
