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
