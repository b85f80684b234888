import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watFixtureFile } from '@vyr/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_VYR, killLeftovers, type NodeProc, spawnProc, startNode, vyr as vyrWith } from './helpers.js';

// `vyr run` and friends as real processes against a real node process: what only a process shows (does it exit,
// what do signals do, what happens when the node dies).

/** Each of these tests fails by timing out if `vyr` hangs again. */
const HANG_TIMEOUT_MS = 30_000;

describe('vyr as a process: exits, signals, a lost node', () => {
  let dir: string;
  let node: NodeProc;
  const env = { ...process.env, VYR_NODE: '' };
  const vyr = (...args: string[]) => vyrWith(BUILT_VYR, args, { cwd: dir, env: { ...env, VYR_NODE: node.url } });
  const spawnVyr = (...args: string[]) =>
    spawnProc(BUILT_VYR.file, [...BUILT_VYR.prefix, ...args], { cwd: dir, env: { ...env, VYR_NODE: node.url } });
  const startOwnNode = () =>
    startNode(BUILT_VYR, ['--data-dir', join(dir, `data-${Math.random()}`), '--trust', join(dir, 'keys/vyr.pub')], {
      cwd: dir,
      env,
    });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vyr-cli-proc-'));
    const at = { cwd: dir, env };
    expect((await vyrWith(BUILT_VYR, ['key', 'generate', '--out', 'keys'], at)).code).toBe(0);
    for (const name of ['hello', 'loop', 'cat'] as const) {
      const wasm = await watFixtureFile(name, dir);
      expect((await vyrWith(BUILT_VYR, ['pack', wasm, '--out', `${name}.tar`], at)).code).toBe(0);
      expect((await vyrWith(BUILT_VYR, ['sign', `${name}.tar`, '--key', 'keys/vyr.key'], at)).code).toBe(0);
    }
    // 40 MB: over the laptop node's largest message (max(stdin, seed) limit + 1 MiB = 33 MiB).
    await writeFile(join(dir, 'big40.bin'), Buffer.alloc(40_000_000, 1));
    // 4 MiB of output: twice what a node retains per task (2 MiB), so a late watcher misses some.
    await writeFile(join(dir, 'out4m.txt'), Buffer.alloc(4 * 1024 * 1024, 'x'));
    node = await startOwnNode();
    expect((await vyr('import', 'hello.tar')).code).toBe(0);
    expect((await vyr('import', 'loop.tar')).code).toBe(0);
  });

  afterEach(() => killLeftovers(node ? [node.proc] : []));

  afterAll(async () => {
    if (node) expect((await node.stop()).code).toBe(0);
    killLeftovers();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const transport of [['--http2'], []]) {
    const name = transport.length > 0 ? 'HTTP/2 (h2c)' : 'HTTP/1.1';
    it(
      `an oversized --stdin over ${name} ends with TOO_LARGE (exit 64) instead of hanging`,
      async () => {
        const ran = await vyr('run', 'hello.tar', ...transport, '--stdin', 'big40.bin');
        expect(ran.code).toBe(64);
        expect(ran.stderr).toMatch(/^vyr: TOO_LARGE: a message is over the limit of 33\.0 MiB per message/m);
        // The node is unharmed and the same CLI works on the same transport.
        expect(await vyr('run', 'hello.tar', ...transport)).toMatchObject({ code: 0, stdout: 'hello from vyr\n' });
      },
      HANG_TIMEOUT_MS,
    );
  }

  it(
    'an oversized state seed over HTTP/2 ends with TOO_LARGE (exit 64) instead of hanging',
    async () => {
      const ran = await vyr('state', 'create', '--http2', '--from', 'big40.bin');
      expect(ran.code).toBe(64);
      expect(ran.stderr).toMatch(/^vyr: TOO_LARGE: /m);
    },
    HANG_TIMEOUT_MS,
  );

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(
      `${signal} during vyr run cancels the task on the node and exits 130`,
      async () => {
        const run = spawnVyr('run', 'loop.tar', ...(signal === 'SIGTERM' ? ['--http2'] : []));
        const [, taskId] = await run.waitFor(/^vyr: task (\S+)$/m);
        run.child.kill(signal);
        const exit = await run.exited;
        expect(exit).toEqual({ code: 130, signal: null });
        expect(run.stderr()).toContain(`vyr: ${signal}: cancelling task ${taskId}\n`);
        const got = await vyr('--json', 'task', 'get', taskId as string);
        expect(JSON.parse(got.stdout)).toMatchObject({ task: { id: taskId, status: 'CANCELLED' } });
      },
      HANG_TIMEOUT_MS,
    );
  }

  it(
    'a retried vyr run that attaches after the node dropped output warns with the byte count and exits 76',
    async () => {
      const args = ['run', 'cat.tar', '--stdin', 'out4m.txt', '--idempotency-key', 'retry-after-kill'];
      // The first vyr run dies once output flows (kill -9, so it cancels nothing): the node's hold on the output ends
      // with its watcher, the task runs on, and the node keeps only the last 2 MiB of its output.
      const first = spawnVyr(...args);
      const [, taskId] = await first.waitFor(/^vyr: task (\S+)$/m);
      await first.waitFor(/x/, 'stdout');
      first.child.kill('SIGKILL');
      await first.exited;
      for (let i = 0; i < 40; i++) {
        const got = JSON.parse((await vyr('--json', 'task', 'get', taskId as string)).stdout);
        if (got.task.status === 'SUCCEEDED') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      // The retry (same key, same request) is the same task; its output is incomplete, and vyr says so.
      const retry = await vyr(...args);
      const dropped = Number(
        /^vyr: warning: the node dropped (\d+) byte\(s\) of task (\S+)'s output/m.exec(retry.stderr)?.[1],
      );
      expect(retry.stderr).toContain(`vyr: task ${taskId}\n`);
      expect(retry.code).toBe(76);
      expect(dropped).toBeGreaterThanOrEqual(2 * 1024 * 1024);
      expect(retry.stdout.length).toBe(4 * 1024 * 1024 - dropped);
      const json = await vyr('--json', ...args);
      expect(json.code).toBe(76);
      // lostOutputBytes: what this invocation missed; the task's droppedOutputBytes sums every watcher's gaps.
      expect(JSON.parse(json.stdout)).toMatchObject({
        task: { id: taskId, status: 'SUCCEEDED' },
        lostOutputBytes: dropped,
      });
      expect(JSON.parse(json.stdout).task.droppedOutputBytes).toBeGreaterThanOrEqual(2 * dropped);
    },
    HANG_TIMEOUT_MS,
  );

  for (const transport of [[], ['--http2']]) {
    it(
      `a node that dies during vyr run${transport.map((t) => ` ${t}`).join('')} is reported as lost: NODE_LOST, exit 69`,
      async () => {
        const own = await startOwnNode();
        const run = spawnProc(
          BUILT_VYR.file,
          [...BUILT_VYR.prefix, 'run', 'loop.tar', '--node', own.url, ...transport],
          { cwd: dir, env },
        );
        const [, taskId] = await run.waitFor(/^vyr: task (\S+)$/m);
        process.kill(own.pid, 'SIGKILL');
        expect(await own.proc.exited).toMatchObject({ signal: 'SIGKILL' });
        const exit = await run.exited;
        expect(exit.code).toBe(69);
        expect(run.stderr()).toMatch(
          new RegExp(
            `^vyr: NODE_LOST: lost the node at ${own.url.replace(/\./g, '\\.')} while task ${taskId} was `,
            'm',
          ),
        );
        expect(run.stderr()).toContain(`\`vyr task get ${taskId}\``);
      },
      HANG_TIMEOUT_MS,
    );
  }
});
