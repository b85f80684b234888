import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import type { NodeClient } from '@vyr/api/client';
import { packArtifact, signArtifact, type VyrManifest, writeKeyPair } from '@vyr/artifact';
import { type ImportArtifactRequest, ImportArtifactRequestSchema, type Task, TaskStatus } from '@vyr/proto';
import { type WatFixtureName, watFixtureFile } from '@vyr/testing';

/** The built node daemon (`vyr-node node start …`). */
export const NODE_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Signed and unsigned artifacts built from the @vyr/testing WAT fixtures. */
export interface Fixtures {
  dir: string;
  trustedPub: string;
  untrustedPub: string;
  /** name → path of a `.tar` signed by the trusted key. */
  signed: Record<string, { path: string; digest: string }>;
  /** `hello` signed by a key the node does not trust. */
  untrusted: { path: string; digest: string };
  /** `hello` with no signature. */
  unsigned: { path: string; digest: string };
}

const STATEFUL: Partial<VyrManifest> = { state: [{ name: 'data', mount: '/data', access: 'rw' }] };

/** Packs and signs the fixtures the suites use, in `dir`. */
export async function buildFixtures(dir: string): Promise<Fixtures> {
  const trusted = await writeKeyPair(join(dir, 'trusted'));
  const other = await writeKeyPair(join(dir, 'other'));
  const signed: Fixtures['signed'] = {};
  const make = async (name: WatFixtureName, extra: Partial<VyrManifest>, key: string | undefined, file: string) => {
    const wasm = await watFixtureFile(name, dir);
    const manifest: VyrManifest = { name, version: '0.1.0', env: [], state: [], limits: {}, ...extra };
    const path = join(dir, file);
    const packed = await packArtifact(wasm, path, { manifest });
    if (key) await signArtifact(path, { path: key });
    return { path, digest: packed.digest };
  };
  signed.hello = await make('hello', {}, trusted.privateKeyPath, 'hello.tar');
  signed.fs = await make('fs', STATEFUL, trusted.privateKeyPath, 'fs.tar');
  signed.loop = await make('loop', {}, trusted.privateKeyPath, 'loop.tar');
  signed.loopState = await make('loop', { name: 'loop-state', ...STATEFUL }, trusted.privateKeyPath, 'loop-state.tar');
  signed.cat = await make('cat', {}, trusted.privateKeyPath, 'cat.tar');
  signed.env = await make('env', { env: ['GREETING'] }, trusted.privateKeyPath, 'env.tar');
  signed.exit33 = await make('exit-33', {}, trusted.privateKeyPath, 'exit-33.tar');
  await mkdir(join(dir, 'u'), { recursive: true });
  const untrusted = await make('hello', { name: 'hello-untrusted' }, other.privateKeyPath, 'u/untrusted.tar');
  const unsigned = await make('hello', { name: 'hello-unsigned' }, undefined, 'u/unsigned.tar');
  return { dir, trustedPub: trusted.publicKeyPath, untrustedPub: other.publicKeyPath, signed, untrusted, unsigned };
}

/** A node started as a child process. */
export interface NodeProcess {
  url: string;
  nodeId: string;
  child: ChildProcess;
  stderr: () => string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `vyr-node node start … --listen 127.0.0.1:0` and waits for its first JSON line. */
export async function startNode(args: readonly string[]): Promise<NodeProcess> {
  const child = spawn(process.execPath, [NODE_MAIN, 'node', 'start', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once('line', resolve)),
    exited.then((code) => {
      throw new Error(`node exited with ${code} before listening: ${stderr}`);
    }),
  ]);
  const ready = JSON.parse(first) as { url: string; nodeId: string };
  return {
    url: ready.url,
    nodeId: ready.nodeId,
    child,
    stderr: () => stderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
}

/** Runs `vyr-node node start …` expecting it to refuse; resolves with exit code and stderr. */
export async function startNodeExpectingFailure(
  args: readonly string[],
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [NODE_MAIN, 'node', 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  return { code, stderr };
}

/** ImportArtifact request stream for `bytes`: header, then chunks. */
export async function* uploadOf(
  bytes: Uint8Array,
  chunk = 64 * 1024,
  declared = bytes.byteLength,
): AsyncGenerator<ImportArtifactRequest> {
  yield create(ImportArtifactRequestSchema, { part: { case: 'header', value: { sizeBytes: BigInt(declared) } } });
  for (let i = 0; i < bytes.byteLength; i += chunk) {
    yield create(ImportArtifactRequestSchema, { part: { case: 'chunk', value: bytes.subarray(i, i + chunk) } });
  }
}

/** Follows a task to its end with WatchTask; returns the final task and its output. */
export async function watchToEnd(
  client: NodeClient,
  taskId: string,
): Promise<{ task: Task; stdout: string; stderr: string; statuses: TaskStatus[] }> {
  let task: Task | undefined;
  let stdout = '';
  let stderr = '';
  const statuses: TaskStatus[] = [];
  for await (const ev of client.watchTask({ taskId })) {
    if (ev.event.case === 'task') {
      task = ev.event.value;
      statuses.push(task.status);
    } else if (ev.event.case === 'stdout') stdout += Buffer.from(ev.event.value).toString();
    else if (ev.event.case === 'stderr') stderr += Buffer.from(ev.event.value).toString();
  }
  if (!task) throw new Error(`WatchTask of ${taskId} sent no status`);
  return { task, stdout, stderr, statuses };
}

/** Waits until `predicate` holds for GetTask, polling. */
export async function waitForStatus(client: NodeClient, taskId: string, status: TaskStatus): Promise<Task> {
  for (let i = 0; i < 600; i++) {
    const { task } = await client.getTask({ taskId });
    if (task?.status === status) return task;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`task ${taskId} never reached status ${TaskStatus[status]}`);
}

/** Writes `text` to `dir/name` and returns the path. */
export async function writeText(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}
