import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import { describeCallError, type NodeClient } from '@vyr/api/client';
import { packArtifact, signArtifact, type VyrManifest, writeKeyPair } from '@vyr/artifact';
import { type ImportArtifactRequest, ImportArtifactRequestSchema, type Task, TaskStatus } from '@vyr/proto';
import { type WatFixtureName, watFixtureFile } from '@vyr/testing';
import { attributesToObject } from '@vyr/testing/otlp';
import { expect } from 'vitest';

/** The built node daemon (`vyr-node node start …`). */
export const NODE_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/**
 * The `state-probe` guest (fixtures/state-probe.c, built by fixtures/build.sh): runs filesystem commands given as
 * arguments and prints one line per command.
 */
export const STATE_PROBE_WASM = fileURLToPath(new URL('./fixtures/state-probe.wasm', import.meta.url));

/** Packs `wasm` with `manifest` (name required; other fields default empty) into `out`, signed with `key` if given. */
export async function packSigned(
  wasm: string,
  out: string,
  manifest: Partial<VyrManifest> & { name: string },
  key?: string,
): Promise<{ path: string; digest: string }> {
  const full: VyrManifest = { version: '0.1.0', env: [], state: [], limits: {}, ...manifest };
  const packed = await packArtifact(wasm, out, { manifest: full });
  if (key) await signArtifact(out, { path: key });
  return { path: out, digest: packed.digest };
}

/** Signed and unsigned artifacts built from the @vyr/testing WAT fixtures. */
export interface Fixtures {
  dir: string;
  /** Private key the `signed` artifacts are signed with (the node trusts `trustedPub`). */
  trustedKey: string;
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
  const make = async (name: WatFixtureName, extra: Partial<VyrManifest>, key: string | undefined, file: string) =>
    packSigned(await watFixtureFile(name, dir), join(dir, file), { name, ...extra }, key);
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
  return {
    dir,
    trustedKey: trusted.privateKeyPath,
    trustedPub: trusted.publicKeyPath,
    untrustedPub: other.publicKeyPath,
    signed,
    untrusted,
    unsigned,
  };
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

/**
 * Makes a self-signed P-256 certificate for 127.0.0.1 with openssl, as an operator would: writes `dir/node.key` and
 * `dir/node.crt` and returns their paths.
 */
export function selfSignedCert(dir: string): { key: string; cert: string } {
  const key = join(dir, 'node.key');
  const cert = join(dir, 'node.crt');
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
      ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
    ],
    { stdio: 'ignore' },
  );
  return { key, cert };
}

/** Writes `text` to `dir/name` and returns the path. */
export async function writeText(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

/** Asserts that `call` fails with the Connect code and the node's ErrorInfo code; returns the described error. */
export async function expectRefused(
  call: Promise<unknown> | AsyncIterable<unknown>,
  connectCode: string,
  errorCode?: string,
) {
  let error: unknown;
  try {
    if (Symbol.asyncIterator in (call as object)) {
      for await (const _ of call as AsyncIterable<unknown>) {
        // drain
      }
    } else await call;
  } catch (err) {
    error = err;
  }
  expect(error, `expected ${connectCode}${errorCode ? `/${errorCode}` : ''}, but the call succeeded`).toBeDefined();
  const e = describeCallError(error);
  expect({ connectCode: e.connectCode, ...(errorCode ? { errorCode: e.errorCode } : {}) }).toEqual({
    connectCode,
    ...(errorCode ? { errorCode } : {}),
  });
  return e;
}

/** A span of a task's trace as StreamTraces sent it (ids in hex, attributes as a plain object). */
export interface StreamedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
}

/**
 * The retained spans of `taskId`'s trace from StreamTraces (`follow: false`), polled until `until` holds over them
 * (spans are exported in batches, so the last ones may arrive a moment after the task ended).
 */
export async function streamedSpans(
  client: NodeClient,
  taskId: string,
  until: (spans: StreamedSpan[]) => boolean,
): Promise<StreamedSpan[]> {
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  let spans: StreamedSpan[] = [];
  for (let attempt = 0; attempt < 200; attempt++) {
    spans = [];
    for await (const batch of client.streamTraces({ taskId })) {
      for (const ss of batch.resourceSpans?.scopeSpans ?? []) {
        for (const s of ss.spans) {
          spans.push({
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            name: s.name,
            attributes: attributesToObject(s.attributes),
            events: s.events.map((e) => ({ name: e.name, attributes: attributesToObject(e.attributes) })),
          });
        }
      }
    }
    if (until(spans)) return spans;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(
    `StreamTraces of ${taskId} never held the expected spans; got ${spans.map((s) => s.name).join(', ')}`,
  );
}
