import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { keyIdOf, readPublicKey, writeKeyPair } from '@vyr/artifact';
import { TaskStatus } from '@vyr/proto';
import {
  compareReceipts,
  type ExecutionPredicate,
  parseReceipt,
  type ReceiptErrorCode,
  verifyReceipt,
} from '@vyr/receipt';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { extract as extractTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  expectRefused,
  type NodeProcess,
  packSigned,
  STATE_PROBE_WASM,
  startNode,
  startNodeExpectingFailure,
  uploadOf,
  waitForStatus,
} from './helpers.js';

afterAll(cleanupTempDirs);

/** What one run left: its receipt (from WatchTask's last message), its captured output and its exported state. */
interface Run {
  taskId: string;
  status: TaskStatus;
  receipt: string;
  stdout: Buffer;
  stateDir: string;
  /** The same export as the tar ExportState sent. */
  stateTar: string;
  /** Digest of the fresh instance as CreateState reported it. */
  createdDigest: string;
  predicate: ExecutionPredicate;
}

const STDIN = Buffer.from('{"device":"d1","temp":21.5}\n');
const ARGS = [
  'mkdir',
  '/data/out',
  'write',
  '/data/out/summary.txt',
  'window=60 count=1',
  'cat',
  '/data/out/summary.txt',
  'ls',
  '/data',
];

async function codeOf(fn: () => Promise<unknown>): Promise<ReceiptErrorCode | 'ACCEPTED'> {
  try {
    await fn();
    return 'ACCEPTED';
  } catch (err) {
    if ((err as Error).name !== 'ReceiptError') throw err;
    return (err as { code: ReceiptErrorCode }).code;
  }
}

function flipped(bytes: Buffer, i: number): Buffer {
  const copy = Buffer.from(bytes);
  copy[i] = copy[i]! ^ 0x01;
  return copy;
}

/** Runs the probe once on `client` with a fresh named instance bound to `data`, and exports that instance. */
async function run(client: NodeClient, digest: string, dir: string): Promise<Run> {
  const { state } = await client.createState({});
  const { task } = await client.submitTask({
    artifactDigest: digest,
    args: ARGS,
    stdin: STDIN,
    bindings: [{ slot: 'data', stateId: state?.id as string }],
    holdOutput: true,
  });
  const chunks: Buffer[] = [];
  let receipt = '';
  let status = TaskStatus.UNSPECIFIED;
  let messages = 0;
  let receiptAt = -1;
  for await (const ev of client.watchTask({ taskId: task?.id as string, includeReceipt: true })) {
    if (ev.receiptJson) {
      receipt = ev.receiptJson;
      receiptAt = messages;
    }
    messages++;
    if (ev.event.case === 'task') status = ev.event.value.status;
    else if (ev.event.case === 'stdout') chunks.push(Buffer.from(ev.event.value));
  }
  // Only the last message (the terminal status) carries it.
  expect(receiptAt).toBe(messages - 1);
  await mkdir(dir, { recursive: true });
  const tarPath = join(dir, `${state?.id}.tar`);
  const parts: Uint8Array[] = [];
  for await (const c of client.exportState({ stateId: state?.id as string })) parts.push(c.chunk);
  await writeFile(tarPath, Buffer.concat(parts));
  const stateDir = join(dir, `${state?.id}.export`);
  await mkdir(stateDir);
  await extractTar({ file: tarPath, cwd: stateDir });
  return {
    taskId: task?.id as string,
    status,
    receipt,
    stdout: Buffer.concat(chunks),
    stateDir,
    stateTar: tarPath,
    createdDigest: state?.lastDigest as string,
    predicate: parseReceipt(receipt).statement.predicate,
  };
}

describe('exit criterion: a run leaves a signed receipt that verifies offline against the node key, the artifact, its output and its exported state; any flipped byte is refused with its code', () => {
  let dir: string;
  let artifact: { path: string; digest: string };
  let artifactDir: string;
  let laptop: NodeProcess;
  let edge: NodeProcess;
  let laptopClient: NodeClient;
  let edgeClient: NodeClient;
  let laptopKey: string;
  let edgeKey: string;
  let onLaptop: Run;
  let onEdge: Run;

  beforeAll(async () => {
    dir = await tempDir('vyr-receipts-');
    const key = await writeKeyPair(join(dir, 'publisher'));
    const manifest = { name: 'probe', state: [{ name: 'data', mount: '/data', access: 'rw' as const }] };
    artifact = await packSigned(STATE_PROBE_WASM, join(dir, 'probe.tar'), manifest, key.privateKeyPath);
    // The same artifact as an OCI layout directory, for byte flips inside its blobs.
    artifactDir = (await packSigned(STATE_PROBE_WASM, join(dir, 'probe.oci'), manifest, key.privateKeyPath)).path;
    laptop = await startNode(['--data-dir', join(dir, 'laptop'), '--trust', key.publicKeyPath]);
    edge = await startNode([
      '--tier',
      'edge',
      '--otlp',
      'none',
      '--data-dir',
      join(dir, 'edge'),
      '--trust',
      key.publicKeyPath,
    ]);
    laptopClient = createNodeClient({ baseUrl: laptop.url });
    edgeClient = createNodeClient({ baseUrl: edge.url });
    for (const [client, name] of [
      [laptopClient, 'laptop'],
      [edgeClient, 'edge'],
    ] as const) {
      await client.importArtifact(uploadOf(await readFile(artifact.path)));
      const info = await client.getNodeInfo({});
      expect(info.nodeKeyId).toMatch(/^[0-9a-f]{64}$/);
      await writeFile(join(dir, `${name}.pub`), info.nodePublicKey);
    }
    laptopKey = (await readFile(join(dir, 'laptop.pub'))).toString();
    edgeKey = (await readFile(join(dir, 'edge.pub'))).toString();
    onLaptop = await run(laptopClient, artifact.digest, join(dir, 'laptop-run'));
    onEdge = await run(edgeClient, artifact.digest, join(dir, 'edge-run'));
  }, 120_000);

  afterAll(async () => {
    await laptop?.stop();
    await edge?.stop();
  });

  it('verifies against the node key, the artifact, the captured stdout, the stdin and the exported state', async () => {
    expect(onLaptop.status).toBe(TaskStatus.SUCCEEDED);
    expect(onLaptop.stdout.toString()).toContain('window=60 count=1');
    const verified = await verifyReceipt(onLaptop.receipt, laptopKey, {
      artifact: artifact.path,
      stdout: onLaptop.stdout,
      stdin: STDIN,
      stateExports: [{ dir: onLaptop.stateDir, slot: 'data' }],
    });
    expect(verified.checked).toEqual(['artifact', 'stdin', 'stdout', 'state:data']);
    // The export as a tar (vyr state export --out FILE.tar) checks the same way.
    const fromTar = await verifyReceipt(onLaptop.receipt, laptopKey, { stateExports: [{ dir: onLaptop.stateTar }] });
    expect(fromTar.checked).toEqual(['state:data']);
    const p = verified.predicate;
    expect(p).toMatchObject({
      task: { id: onLaptop.taskId },
      node: { id: laptop.nodeId, tier: 'laptop' },
      artifact: { digest: artifact.digest, name: 'probe', version: '0.1.0' },
      outcome: { status: 'SUCCEEDED', reason: null, exitCode: 0 },
      invocation: { args: { count: ARGS.length }, stdin: { bytes: STDIN.byteLength } },
    });
    expect(p.output.stdout?.bytes).toBe(onLaptop.stdout.byteLength);
    expect(p.task.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(p.state).toHaveLength(1);
    // A fresh instance: empty before, the written file after.
    expect(p.state[0]).toMatchObject({ slot: 'data', access: 'rw', entries: 2, bytes: 17 });
    expect(p.state[0]?.before).toBe(onLaptop.createdDigest);
    expect(p.state[0]?.before).not.toBe(p.state[0]?.after);
    expect(p.time.startedAt).not.toBeNull();
  });

  it('GetTaskReceipt returns the same bytes as WatchTask, and refuses unknown and unfinished tasks with codes', async () => {
    const got = await laptopClient.getTaskReceipt({ taskId: onLaptop.taskId });
    expect(got.receiptJson).toBe(onLaptop.receipt);
    expect(got.nodeKeyId).toBe(parseReceipt(onLaptop.receipt).keyId);
    await expectRefused(laptopClient.getTaskReceipt({ taskId: 'tk_doesnotexist0000' }), 'not_found', 'NOT_FOUND');
    await expectRefused(laptopClient.getTaskReceipt({ taskId: '../x' }), 'invalid_argument', 'INVALID_ARGUMENT');
    // Plain JSON over HTTP (Connect protocol, curl-compatible) gives the same bytes.
    const viaJson = await fetch(`${laptop.url}/vyr.v1.NodeService/GetTaskReceipt`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ taskId: onLaptop.taskId }),
    });
    expect(((await viaJson.json()) as { receiptJson: string }).receiptJson).toBe(onLaptop.receipt);
    const { state } = await laptopClient.createState({});
    const { task } = await laptopClient.submitTask({
      artifactDigest: artifact.digest,
      args: ['spin'],
      bindings: [{ slot: 'data', stateId: state?.id as string }],
    });
    await waitForStatus(laptopClient, task?.id as string, TaskStatus.RUNNING);
    await expectRefused(
      laptopClient.getTaskReceipt({ taskId: task?.id as string }),
      'failed_precondition',
      'RECEIPT_NOT_READY',
    );
    await laptopClient.cancelTask({ taskId: task?.id as string });
    const cancelled = parseReceipt((await laptopClient.getTaskReceipt({ taskId: task?.id as string })).receiptJson);
    expect(cancelled.statement.predicate.outcome).toMatchObject({ status: 'CANCELLED', reason: 'CANCELLED' });
  });

  it('refuses every flipped byte of the receipt and of the node key, each with its code', async () => {
    const receipt = Buffer.from(onLaptop.receipt);
    const seen = new Set<string>();
    for (let i = 0; i < receipt.length; i++) {
      seen.add(await codeOf(() => verifyReceipt(flipped(receipt, i).toString('latin1'), laptopKey)));
    }
    expect(seen.has('ACCEPTED')).toBe(false);
    expect(
      [...seen].every((c) =>
        [
          'MALFORMED_RECEIPT',
          'UNSUPPORTED_MEDIA_TYPE',
          'UNSUPPORTED_PAYLOAD_TYPE',
          'KEY_MISMATCH',
          'SIGNATURE_INVALID',
        ].includes(c),
      ),
    ).toBe(true);
    const key = Buffer.from(laptopKey);
    for (let i = 0; i < key.length; i++) {
      expect(['MALFORMED_KEY', 'KEY_MISMATCH']).toContain(
        await codeOf(() => verifyReceipt(onLaptop.receipt, flipped(key, i).toString('latin1'))),
      );
    }
  });

  it('refuses every flipped byte of the output, of the exported state and of the artifact, each with its code', async () => {
    for (let i = 0; i < onLaptop.stdout.length; i++) {
      expect(
        await codeOf(() => verifyReceipt(onLaptop.receipt, laptopKey, { stdout: flipped(onLaptop.stdout, i) })),
      ).toBe('STDOUT_MISMATCH');
    }
    const file = join(onLaptop.stateDir, 'out', 'summary.txt');
    const content = await readFile(file);
    try {
      for (let i = 0; i < content.length; i++) {
        await writeFile(file, flipped(content, i));
        expect(
          await codeOf(() =>
            verifyReceipt(onLaptop.receipt, laptopKey, { stateExports: [{ dir: onLaptop.stateDir }] }),
          ),
        ).toBe('STATE_MISMATCH');
      }
    } finally {
      await writeFile(file, content);
    }
    const manifestBlob = join(artifactDir, 'blobs', 'sha256', artifact.digest.slice('sha256:'.length));
    const manifest = await readFile(manifestBlob);
    try {
      for (let i = 0; i < manifest.length; i += 7) {
        await writeFile(manifestBlob, flipped(manifest, i));
        expect(await codeOf(() => verifyReceipt(onLaptop.receipt, laptopKey, { artifact: artifactDir }))).toBe(
          'ARTIFACT_MISMATCH',
        );
      }
    } finally {
      await writeFile(manifestBlob, manifest);
    }
    // Unchanged, each passes again.
    await verifyReceipt(onLaptop.receipt, laptopKey, {
      artifact: artifactDir,
      stdout: onLaptop.stdout,
      stateExports: [{ dir: onLaptop.stateDir }],
    });
  });

  it('a laptop and an edge node give receipts with equal output and state digests and different node ids and keys', async () => {
    expect(onEdge.status).toBe(TaskStatus.SUCCEEDED);
    const l = onLaptop.predicate;
    const e = onEdge.predicate;
    await verifyReceipt(onEdge.receipt, edgeKey, { stdout: onEdge.stdout, stateExports: [{ dir: onEdge.stateDir }] });
    expect(e.node.tier).toBe('edge');
    expect(e.node.id).not.toBe(l.node.id);
    expect(e.node.keyId).not.toBe(l.node.keyId);
    expect(e.artifact).toEqual(l.artifact);
    expect(e.invocation).toEqual(l.invocation);
    expect(e.outcome).toEqual(l.outcome);
    expect(e.output).toEqual(l.output);
    const digests = (p: ExecutionPredicate) => p.state.map((s) => ({ slot: s.slot, before: s.before, after: s.after }));
    expect(digests(e)).toEqual(digests(l));
    // compareReceipts says the same: one run, two places; the tiers' default limits differ (the probe declares none).
    const compared = compareReceipts([l, e]);
    expect(compared.sameRun).toBe(true);
    expect(compared.context.filter((f) => !f.equal).map((f) => f.field)).toEqual([
      'node.id',
      'node.tier',
      'node.keyId',
      'task.id',
      'limits',
    ]);
    // Each receipt binds its own node: the other node's key refuses it.
    expect(await codeOf(() => verifyReceipt(onEdge.receipt, laptopKey))).toBe('KEY_MISMATCH');
    expect(await codeOf(() => verifyReceipt(onLaptop.receipt, edgeKey))).toBe('KEY_MISMATCH');
  });
});

describe('receipts survive a node restart, and a task live when the node was killed gets a FAILED(NODE_RESTART) receipt', () => {
  it('keeps earlier receipts byte for byte and signs the interrupted task with the same node key', async () => {
    const dir = await tempDir('vyr-receipts-restart-');
    const key = await writeKeyPair(join(dir, 'publisher'));
    const artifact = await packSigned(
      STATE_PROBE_WASM,
      join(dir, 'probe.tar'),
      { name: 'probe', state: [{ name: 'data', mount: '/data', access: 'rw' }] },
      key.privateKeyPath,
    );
    const args = ['--data-dir', join(dir, 'data'), '--trust', key.publicKeyPath];
    const first = await startNode(args);
    const c1 = createNodeClient({ baseUrl: first.url });
    await c1.importArtifact(uploadOf(await readFile(artifact.path)));
    const nodeKey = (await c1.getNodeInfo({})).nodePublicKey;
    const finished = await run(c1, artifact.digest, await tempDir('vyr-receipts-run-'));
    const { state } = await c1.createState({ name: 'kept' });
    const { task } = await c1.submitTask({
      artifactDigest: artifact.digest,
      args: ['write', '/data/x', 'before the crash', 'spin'],
      bindings: [{ slot: 'data', stateId: state?.id as string }],
    });
    // A second one gets its state with BindState after submit.
    const { state: late } = await c1.createState({ name: 'late' });
    const { task: bound } = await c1.submitTask({ artifactDigest: artifact.digest, args: ['spin'] });
    await c1.bindState({ stateId: late?.id as string, taskId: bound?.id as string, slot: 'data' });
    await waitForStatus(c1, task?.id as string, TaskStatus.RUNNING);
    await waitForStatus(c1, bound?.id as string, TaskStatus.RUNNING);
    await first.stop('SIGKILL');

    const second = await startNode(args);
    try {
      const c2 = createNodeClient({ baseUrl: second.url });
      expect((await c2.getNodeInfo({})).nodePublicKey).toBe(nodeKey);
      expect((await c2.getTaskReceipt({ taskId: finished.taskId })).receiptJson).toBe(finished.receipt);
      const { receiptJson } = await c2.getTaskReceipt({ taskId: task?.id as string });
      const verified = await verifyReceipt(receiptJson, nodeKey, { artifact: artifact.path });
      expect(verified.predicate.outcome).toEqual({ status: 'FAILED', reason: 'NODE_RESTART', exitCode: null });
      expect(verified.predicate.output).toEqual({ stdout: null, stderr: null });
      expect(verified.predicate.task.id).toBe(task?.id);
      // The named instance keeps its last content; the receipt records it as measured at recovery.
      const { states } = await c2.listStates({});
      const kept = states.find((s) => s.id === state?.id);
      expect(verified.predicate.state).toEqual([
        expect.objectContaining({ slot: 'data', stateId: state?.id, before: null, after: kept?.lastDigest }),
      ]);
      const lateReceipt = await verifyReceipt(
        (await c2.getTaskReceipt({ taskId: bound?.id as string })).receiptJson,
        nodeKey,
      );
      expect(lateReceipt.predicate.outcome.reason).toBe('NODE_RESTART');
      expect(lateReceipt.predicate.state).toEqual([
        expect.objectContaining({ slot: 'data', stateId: late?.id, access: 'rw', before: null }),
      ]);
      // WatchTask of the restarted task carries it too.
      for await (const ev of c2.watchTask({ taskId: task?.id as string, includeReceipt: true })) {
        expect(ev.receiptJson).toBe(receiptJson);
      }
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});

describe('the node key: generated on first start (0600) or given with --node-key', () => {
  it('generates DATA_DIR/node-key/vyr.key with mode 0600 (the restart test shows it is kept); --node-key uses the given key; a bad one is refused', async () => {
    const dir = await tempDir('vyr-receipts-key-');
    const generated = await startNode(['--data-dir', join(dir, 'a')]);
    try {
      const info = await createNodeClient({ baseUrl: generated.url }).getNodeInfo({});
      const file = join(dir, 'a', 'node-key', 'vyr.key');
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(keyIdOf(await readPublicKey(join(dir, 'a', 'node-key', 'vyr.pub')))).toBe(info.nodeKeyId);
    } finally {
      expect(await generated.stop()).toBe(0);
    }
    const own = await writeKeyPair(join(dir, 'own'));
    const given = await startNode(['--data-dir', join(dir, 'b'), '--node-key', own.privateKeyPath]);
    try {
      expect((await createNodeClient({ baseUrl: given.url }).getNodeInfo({})).nodeKeyId).toBe(own.keyId);
    } finally {
      expect(await given.stop()).toBe(0);
    }
    const missing = await startNodeExpectingFailure([
      '--data-dir',
      join(dir, 'c'),
      '--node-key',
      join(dir, 'nope.key'),
    ]);
    expect(missing.code).toBe(66);
    expect(missing.stderr).toContain('FILE_NOT_FOUND');
    const notAKey = await startNodeExpectingFailure(['--data-dir', join(dir, 'd'), '--node-key', own.publicKeyPath]);
    expect(notAKey.code).toBe(64);
    expect(notAKey.stderr).toContain('INVALID_FILE');
  });
});
