import { execFileSync } from 'node:child_process';
import { copyFile, lstat, mkdtemp, readdir, readFile, readlink, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixturePath } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  killLeftovers,
  type NodeProc,
  type Ran,
  runProc,
  type SpawnOptions,
  startNode,
  type VyrCommand,
} from './helpers.js';

// The source tree: the installed CLI must never touch anything under it.
const REPO = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const DIST_SCRIPT = join(REPO, 'apps/cli/scripts/dist.sh');

/** strace is installed and may trace here (containers without CAP_SYS_PTRACE may not). */
function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-f', '-qq', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Every file under `dir`, symlinks resolved, that lies outside it. */
async function escapingLinks(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isSymbolicLink()) {
        const target = await realpath(p).catch(() => `${p} -> ${'(dangling)'}`);
        if (!target.startsWith(`${dir}/`)) out.push(`${p} -> ${await readlink(p)}`);
      } else if (entry.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

describe('exit criterion: a new user completes the full cycle (key → pack → sign → node → import → run → traces) with the installed CLI alone, without the source tree', () => {
  const strace = hasStrace();
  let root: string;
  let install: string;
  let home: string;
  let installed: VyrCommand;
  let env: NodeJS.ProcessEnv;
  let node: NodeProc | undefined;
  let traceSeq = 0;
  const traceFiles: string[] = [];

  /**
   * Runs the installed `vyr` from the user's directory with a minimal environment. Under strace (when the machine
   * has it) every file the process and its threads name is recorded, to prove none is in the source tree.
   */
  const traced = (): VyrCommand => {
    if (!strace) return installed;
    const log = join(root, `strace-${traceSeq++}.log`);
    traceFiles.push(log);
    return { file: 'strace', prefix: ['-f', '-qq', '-e', 'trace=%file,execve', '-o', log, installed.file] };
  };
  const opts = (stdin?: string): SpawnOptions => ({ cwd: home, env, ...(stdin === undefined ? {} : { stdin }) });
  const vyr = (args: readonly string[], stdin?: string): Promise<Ran> => {
    const cmd = traced();
    return runProc(cmd.file, [...cmd.prefix, ...args], opts(stdin));
  };

  beforeAll(async () => {
    root = await realpath(await mkdtemp(join(tmpdir(), 'vyr-installed-')));
    install = join(root, 'opt', 'vyr');
    home = join(root, 'home');
    // Installing: the only step that uses the checkout (and pnpm), as `make dist DIST_DIR=…` does.
    const built = await runProc('bash', [DIST_SCRIPT, install], {
      cwd: REPO,
      env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` },
    });
    expect(built.stderr).toContain('dist: installed');
    expect(built.code).toBe(0);
    installed = { file: join(install, 'bin', 'vyr'), prefix: [] };
    // What a new user has: the installation, a .wasm and its vyr.json in an otherwise empty directory.
    await runProc('mkdir', ['-p', home], { cwd: root, env: process.env });
    await copyFile(fixturePath('event-transform'), join(home, 'event-transform.wasm'));
    await copyFile(join(REPO, 'packages/testing/fixtures/c/event-transform.vyr.json'), join(home, 'vyr.json'));
    // No PATH entry, no node, nothing of the checkout: the launcher brings its own Node.js.
    env = { HOME: home, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' };
  }, 300_000);

  afterAll(async () => {
    if (node && node.proc.child.exitCode === null) {
      try {
        process.kill(node.pid, 'SIGKILL');
      } catch {}
    }
    killLeftovers();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('installs as one self-contained directory: bin/vyr, its own Node.js, no link into the source tree', async () => {
    expect((await stat(installed.file)).mode & 0o111).not.toBe(0);
    expect((await lstat(join(install, 'lib', 'node', 'bin', 'node'))).isFile()).toBe(true);
    expect(await escapingLinks(install)).toEqual([]);
    const launcher = await readFile(installed.file, 'utf8');
    expect(launcher).not.toContain(REPO);
    const version = await vyr(['--version']);
    expect(version).toMatchObject({ code: 0, stdout: '0.1.0\n' });
  });

  it('runs key → pack → sign → verify → node → import → state → run → traces → stop from the user directory', async () => {
    const key = await vyr(['key', 'generate', '--out', 'keys']);
    expect(key.code).toBe(0);
    expect(key.stdout).toContain(join(home, 'keys', 'vyr.key'));
    expect((await stat(join(home, 'keys', 'vyr.key'))).mode & 0o777).toBe(0o600);

    const pack = await vyr(['pack', 'event-transform.wasm', '--manifest', 'vyr.json', '--out', 'et.tar']);
    expect(pack.code).toBe(0);
    const digest = pack.stdout.trim();
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(pack.stderr).toContain('packed event-transform@0.1.0 (wasip1 module, adapted');

    const sign = await vyr(['sign', 'et.tar', '--key', 'keys/vyr.key']);
    expect(sign.code).toBe(0);
    expect(sign.stdout).toContain(`signed ${digest}`);
    expect((await stat(join(home, 'et.tar.sigstore.json'))).isFile()).toBe(true);

    const verify = await vyr(['verify', 'et.tar', '--trust', 'keys/vyr.pub']);
    expect(verify).toMatchObject({ code: 0 });
    expect(verify.stdout).toContain(`verified ${digest} event-transform@0.1.0: signed by trusted key`);

    node = await startNode(traced(), ['--data-dir', 'node-data', '--trust', 'keys/vyr.pub'], opts());
    expect(node.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const at = ['--node', node.url];

    const imported = await vyr(['import', 'et.tar', ...at]);
    expect(imported).toMatchObject({ code: 0, stdout: `${digest}  event-transform@0.1.0  imported\n` });

    const created = await vyr(['state', 'create', '--name', 'data', ...at]);
    expect(created.code).toBe(0);
    const stateId = created.stdout.trim();
    expect(stateId).toMatch(/^st_[a-z0-9]+$/);

    const events = '{"sensor":"t-1","celsius":21.5}\n{"sensor":"t-2","celsius":19}\n';
    const ran = await vyr(['run', 'et.tar', '--stdin', '-', '--state', `data=${stateId}`, ...at], events);
    expect(ran.code).toBe(0);
    expect(ran.stdout).toBe(
      '{"sensor":"t-1","celsius":21.5,"processed":true,"seq":1}\n{"sensor":"t-2","celsius":19,"processed":true,"seq":2}\n',
    );
    const taskId = /^vyr: task (\S+)$/m.exec(ran.stderr)?.[1] as string;
    expect(taskId).toBeDefined();
    expect(ran.stderr).toContain('event-transform: 2 events, 0 invalid\n');
    expect(ran.stderr).toMatch(new RegExp(`^vyr: state data ${stateId} sha256:[0-9a-f]{64} \\(`, 'm'));

    // Spans reach the node's stream when the task's trace ends: poll briefly.
    type Span = {
      name: string;
      traceId: string;
      spanId: string;
      parentSpanId: string;
      attributes: Record<string, unknown>;
    };
    let spans: Span[] = [];
    for (let i = 0; i < 40 && !spans.some((s) => s.name === 'vyr.task'); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      const traces = await vyr(['--json', 'traces', '--task', taskId, ...at]);
      expect(traces.code).toBe(0);
      spans = (JSON.parse(traces.stdout) as { spans: Span[] }).spans;
    }
    const rootSpan = spans.find((s) => s.name === 'vyr.task') as Span;
    expect(rootSpan.attributes).toMatchObject({
      'vyr.task.id': taskId,
      'vyr.artifact.digest': digest,
      'vyr.task.outcome': 'SUCCEEDED',
    });
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([rootSpan.traceId]));
    const children = spans.filter((s) => s.parentSpanId === rootSpan.spanId).map((s) => s.name);
    expect(children).toEqual(
      expect.arrayContaining([
        'vyr.verify',
        'vyr.prepare',
        'vyr.state.bind',
        'vyr.instantiate',
        'vyr.run',
        'vyr.state.release',
      ]),
    );
    const tree = await vyr(['traces', '--task', taskId, ...at]);
    expect(tree.stdout.split('\n')[0]).toBe(`trace ${rootSpan.traceId}`);
    expect(tree.stdout).toMatch(/^ {2}vyr\.task\s+\d+\.\d{3} ms/m);

    const stopped = await node.stop();
    expect(stopped.code).toBe(0);
    expect(node.proc.stdout()).toContain('"event":"stopped"');
  });

  it.runIf(strace)(
    'never opened, stat-ed or executed a file of the source tree (strace of every process)',
    async () => {
      expect(traceFiles.length).toBeGreaterThan(10);
      const touched: string[] = [];
      for (const file of traceFiles) {
        for (const line of (await readFile(file, 'utf8')).split('\n')) {
          if (line.includes(`"${REPO}/`) || line.includes(`"${REPO}"`)) touched.push(line);
        }
      }
      expect(touched).toEqual([]);
    },
  );
});
