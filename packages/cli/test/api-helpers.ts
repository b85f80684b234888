// Helpers for the CLI tests that drive a real node (started as a child process) through `runCli`.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { packArtifact, signArtifact, type VyrManifest, writeKeyPair } from '@vyr/artifact';
import { type WatFixtureName, watFixtureFile } from '@vyr/testing';
import { runCli } from '../src/index.js';

/** The node daemon built by apps/node (a sibling workspace app; spawned, never imported). */
const NODE_MAIN = fileURLToPath(new URL('../../../apps/node/dist/main.js', import.meta.url));

/** Output and exit code of one `vyr …` invocation. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vyr ARGS` in-process with captured stdio and the given environment. */
export async function vyr(
  args: readonly string[],
  env: Record<string, string | undefined>,
  cwd: string,
  stdin = '',
): Promise<CliRun> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d) => {
    stdout += d;
  });
  err.on('data', (d) => {
    stderr += d;
  });
  const input = new PassThrough();
  input.end(stdin);
  const code = await runCli(args, {
    context: { stdout: out, stderr: err, stdin: input, env, cwd, setExitCode: () => {} },
  });
  return { code, stdout, stderr };
}

/** A `vyr …` invocation in progress: its output so far, a wait for a line, and its end. */
export interface LiveCliRun {
  /** Resolves with the first complete line of `stream` matching `re`. */
  line(re: RegExp, stream?: 'stdout' | 'stderr'): Promise<string>;
  done: Promise<CliRun>;
}

/** Runs `vyr ARGS` in-process like {@link vyr}, but lets the test react to output while the command runs. */
export function vyrLive(args: readonly string[], env: Record<string, string | undefined>, cwd: string): LiveCliRun {
  const out = new PassThrough();
  const err = new PassThrough();
  const text = { stdout: '', stderr: '' };
  const waiters: (() => void)[] = [];
  out.on('data', (d) => {
    text.stdout += d;
    for (const w of [...waiters]) w();
  });
  err.on('data', (d) => {
    text.stderr += d;
    for (const w of [...waiters]) w();
  });
  const input = new PassThrough();
  input.end('');
  const done = runCli(args, {
    context: { stdout: out, stderr: err, stdin: input, env, cwd, setExitCode: () => {} },
  }).then((code) => ({ code, stdout: text.stdout, stderr: text.stderr }));
  return {
    done,
    line(re, stream = 'stdout') {
      return new Promise((resolve) => {
        const check = (): boolean => {
          const found = text[stream]
            .split('\n')
            .slice(0, -1)
            .find((l) => re.test(l));
          if (found === undefined) return false;
          resolve(found);
          return true;
        };
        if (check()) return;
        const waiter = (): void => {
          if (check()) waiters.splice(waiters.indexOf(waiter), 1);
        };
        waiters.push(waiter);
      });
    },
  };
}

/** Packed artifacts for the CLI tests. */
export interface CliFixtures {
  dir: string;
  pub: string;
  /** name → `.tar` path (signed by the trusted key) and digest. */
  tars: Record<string, { path: string; digest: string }>;
  /** `hello` as a signed layout directory. */
  helloDir: { path: string; digest: string };
  /** `hello` signed by a key the node does not trust. */
  untrusted: string;
}

/** Packs and signs fixtures into `dir`. */
export async function buildCliFixtures(dir: string): Promise<CliFixtures> {
  const trusted = await writeKeyPair(join(dir, 'keys'));
  const other = await writeKeyPair(join(dir, 'other'));
  const tars: CliFixtures['tars'] = {};
  const make = async (
    name: WatFixtureName,
    extra: Partial<VyrManifest>,
    file: string,
    key = trusted.privateKeyPath,
  ) => {
    const manifest: VyrManifest = { name, version: '1.0.0', env: [], state: [], limits: {}, ...extra };
    const path = join(dir, file);
    const packed = await packArtifact(await watFixtureFile(name, dir), path, { manifest });
    await signArtifact(path, { path: key });
    return { path, digest: packed.digest };
  };
  tars.hello = await make('hello', {}, 'hello.tar');
  tars.exit33 = await make('exit-33', {}, 'exit-33.tar');
  tars.loop = await make('loop', {}, 'loop.tar');
  tars.cat = await make('cat', {}, 'cat.tar');
  tars.env = await make('env', { env: ['GREETING'] }, 'env.tar');
  tars.fs = await make('fs', { state: [{ name: 'data', mount: '/data', access: 'rw' }] }, 'fs.tar');
  tars.trap = await make('trap', {}, 'trap.tar');
  tars.args = await make('args', {}, 'args.tar');
  await mkdir(join(dir, 'layout'), { recursive: true });
  const helloDir = await make('hello', { name: 'hello-dir' }, 'layout/hello-dir');
  const untrusted = (await make('hello', { name: 'evil' }, 'evil.tar', other.privateKeyPath)).path;
  return { dir, pub: trusted.publicKeyPath, tars, helloDir, untrusted };
}

/** A node child process. */
export interface NodeChild {
  url: string;
  child: ChildProcess;
  stop(): Promise<number | null>;
}

/** Starts a node on an ephemeral loopback port. */
export async function startNodeChild(args: readonly string[]): Promise<NodeChild> {
  const child = spawn(process.execPath, [NODE_MAIN, 'node', 'start', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const line = await Promise.race([
    new Promise<string>((resolve) =>
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', resolve),
    ),
    exited.then((c) => {
      throw new Error(`node exited ${c}: ${stderr}`);
    }),
  ]);
  return {
    url: (JSON.parse(line) as { url: string }).url,
    child,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      return exited;
    },
  };
}
