import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keyIdOf, packArtifact } from '@vyr/artifact';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildStatement,
  digestArgs,
  digestEnv,
  digestStream,
  openReceiptStore,
  PREDICATE_TYPE,
  parseReceipt,
  type ReceiptErrorCode,
  type ReceiptFacts,
  signReceipt,
  verifyReceipt,
} from '../src/index.js';

afterAll(cleanupTempDirs);

function p256(): { privateKey: KeyObject; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

async function codeOf(fn: () => Promise<unknown>): Promise<ReceiptErrorCode | 'ACCEPTED'> {
  try {
    await fn();
    return 'ACCEPTED';
  } catch (err) {
    if ((err as Error).name !== 'ReceiptError') throw err;
    return (err as { code: ReceiptErrorCode }).code;
  }
}

describe('exit criterion: a receipt signed with a node key verifies offline with that public key alone, against the artifact, output, stdin and exported state; any changed byte of receipt, key, output, artifact or state is refused with a coded error', () => {
  let dir: string;
  let artifactPath: string;
  let artifactDigest: `sha256:${string}`;
  let stateDir: string;
  let facts: ReceiptFacts;
  const key = p256();
  const stdout = Buffer.from('{"device":"a","count":2}\n');
  const stderr = Buffer.from('');
  let receipt: string;

  beforeAll(async () => {
    dir = await tempDir('vyr-receipt-');
    artifactPath = join(dir, 'cat.oci');
    artifactDigest = (await packArtifact(await watFixtureFile('cat', dir), artifactPath)).digest as `sha256:${string}`;
    stateDir = join(dir, 'state');
    await mkdir(join(stateDir, 'out'), { recursive: true });
    await writeFile(join(stateDir, 'out', 'summary.json'), '{"a":2}\n');
    const { digestTree } = await import('@vyr/state');
    const after = (await digestTree(stateDir)).digest;
    facts = {
      task: { id: 'tk_0123456789abcdef', traceId: '0af7651916cd43dd8448eb211c80319c' },
      node: {
        id: 'nd_laptop0123456789abcdef',
        tier: 'laptop',
        keyId: keyIdOf(createPublicKey(key.privateKey)),
        version: '0.1.0',
      },
      artifact: { digest: artifactDigest, name: 'cat', version: '0.1.0' },
      invocation: {
        args: digestArgs(['--window', '60']),
        env: digestEnv({ LOG_LEVEL: 'info' }),
        stdin: digestStream(Buffer.from('{"device":"a"}\n{"device":"a"}\n')),
      },
      limits: { memoryBytes: 64 * 1024 * 1024, deadlineMs: 30_000 },
      outcome: { status: 'SUCCEEDED', reason: null, exitCode: 0 },
      output: { stdout: digestStream(stdout), stderr: digestStream(stderr) },
      state: [
        {
          slot: 'data',
          stateId: 'st_0123456789abcdef',
          access: 'rw',
          before: 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
          after,
          bytes: 8,
          entries: 2,
          quotaExceeded: false,
        },
      ],
      time: { createdAtMs: 1_765_000_000_000, startedAtMs: 1_765_000_000_010, endedAtMs: 1_765_000_000_020 },
    };
    receipt = await signReceipt(buildStatement(facts), key.privateKey);
  });

  it('is an in-toto Statement v1 about the artifact in a DSSE envelope of a Sigstore bundle v0.3', () => {
    const bundle = JSON.parse(receipt);
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.dsseEnvelope.payloadType).toBe('application/vnd.in-toto+json');
    expect(bundle.verificationMaterial.publicKey.hint).toBe(keyIdOf(createPublicKey(key.privateKey)));
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString());
    expect(statement._type).toBe('https://in-toto.io/Statement/v1');
    expect(statement.subject).toEqual([{ name: 'cat@0.1.0', digest: { sha256: artifactDigest.slice(7) } }]);
    expect(statement.predicateType).toBe(PREDICATE_TYPE);
    expect(statement.predicate.outcome).toEqual({ status: 'SUCCEEDED', reason: null, exitCode: 0 });
    expect(statement.predicate.time.startedAt).toBe('2025-12-06T05:46:40.010Z');
  });

  it('verifies against the node key, the artifact, stdout, stderr, stdin and the exported state', async () => {
    const verified = await verifyReceipt(receipt, key.publicKeyPem, {
      artifact: artifactPath,
      stdout,
      stderr,
      stdin: Buffer.from('{"device":"a"}\n{"device":"a"}\n'),
      stateExports: [{ dir: stateDir }],
    });
    expect(verified.keyId).toBe(keyIdOf(createPublicKey(key.privateKey)));
    expect(verified.checked).toEqual(['artifact', 'stdin', 'stdout', 'stderr', 'state:data']);
    expect(verified.predicate.task.id).toBe('tk_0123456789abcdef');
  });

  it('refuses every flipped byte of the receipt with a code', async () => {
    const bytes = Buffer.from(receipt);
    const codes = new Map<ReceiptErrorCode | 'ACCEPTED', number>();
    for (let i = 0; i < bytes.length; i++) {
      const copy = Buffer.from(bytes);
      copy[i] = copy[i]! ^ 0x01;
      const code = await codeOf(() => verifyReceipt(copy.toString('latin1'), key.publicKeyPem));
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    expect(codes.has('ACCEPTED')).toBe(false);
    for (const code of codes.keys()) {
      expect([
        'MALFORMED_RECEIPT',
        'UNSUPPORTED_MEDIA_TYPE',
        'UNSUPPORTED_PAYLOAD_TYPE',
        'KEY_MISMATCH',
        'SIGNATURE_INVALID',
      ]).toContain(code);
    }
    // A flipped payload or signature character is an altered signature, not just a broken file.
    expect(codes.get('SIGNATURE_INVALID')).toBeGreaterThan(100);
  });

  it('refuses every flipped byte of the node key, and another node key', async () => {
    const pem = Buffer.from(key.publicKeyPem);
    for (let i = 0; i < pem.length; i++) {
      const copy = Buffer.from(pem);
      copy[i] = copy[i]! ^ 0x01;
      expect(['MALFORMED_KEY', 'KEY_MISMATCH']).toContain(
        await codeOf(() => verifyReceipt(receipt, copy.toString('latin1'))),
      );
    }
    expect(await codeOf(() => verifyReceipt(receipt, p256().publicKeyPem))).toBe('KEY_MISMATCH');
  });

  it('refuses a receipt whose key hint was rewritten to another key, even with that key', async () => {
    const other = p256();
    const forged = receipt
      .split(keyIdOf(createPublicKey(key.privateKey)))
      .join(keyIdOf(createPublicKey(other.privateKey)));
    expect(await codeOf(() => verifyReceipt(forged, other.publicKeyPem))).toBe('SIGNATURE_INVALID');
  });

  it('refuses a flipped byte of stdout, stdin, the artifact or the exported state with its code', async () => {
    const flipped = (b: Buffer, i: number) => {
      const c = Buffer.from(b);
      c[i] = c[i]! ^ 0x01;
      return c;
    };
    for (let i = 0; i < stdout.length; i++) {
      expect(await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { stdout: flipped(stdout, i) }))).toBe(
        'STDOUT_MISMATCH',
      );
    }
    expect(await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { stderr: Buffer.from('x') }))).toBe(
      'STDERR_MISMATCH',
    );
    expect(await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { stdin: Buffer.from('{}') }))).toBe(
      'STDIN_MISMATCH',
    );
    const file = join(stateDir, 'out', 'summary.json');
    const original = await readFile(file);
    try {
      for (let i = 0; i < original.length; i++) {
        await writeFile(file, flipped(original, i));
        expect(
          await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { stateExports: [{ dir: stateDir }] })),
        ).toBe('STATE_MISMATCH');
      }
    } finally {
      await writeFile(file, original);
    }
    expect(
      await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { stateExports: [{ dir: stateDir, slot: 'nope' }] })),
    ).toBe('INVALID_ARGUMENT');
    const other = join(dir, 'other.oci');
    await packArtifact(await watFixtureFile('exit-33', dir), other);
    expect(await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { artifact: other }))).toBe('ARTIFACT_MISMATCH');
    const manifestBlob = join(artifactPath, 'blobs', 'sha256', artifactDigest.slice(7));
    const manifest = await readFile(manifestBlob);
    try {
      await writeFile(manifestBlob, flipped(manifest, 10));
      expect(await codeOf(() => verifyReceipt(receipt, key.publicKeyPem, { artifact: artifactPath }))).toBe(
        'ARTIFACT_MISMATCH',
      );
    } finally {
      await writeFile(manifestBlob, manifest);
    }
  });

  it('refuses a receipt whose signed payload is not the VYR predicate it claims', async () => {
    const statement = { ...buildStatement(facts), predicateType: 'https://slsa.dev/provenance/v1' };
    const other = await signReceipt(statement as never, key.privateKey);
    expect(await codeOf(() => verifyReceipt(other, key.publicKeyPem))).toBe('UNSUPPORTED_PREDICATE');
    const extra = buildStatement(facts) as unknown as { predicate: Record<string, unknown> };
    extra.predicate.note = 'unchecked';
    expect(await codeOf(async () => parseReceipt(await signReceipt(extra as never, key.privateKey)))).toBe(
      'MALFORMED_STATEMENT',
    );
  });

  it('says that a receipt without recorded output cannot confirm any stdout', async () => {
    const restarted = await signReceipt(
      buildStatement({
        ...facts,
        outcome: { status: 'FAILED', reason: 'NODE_RESTART', exitCode: null },
        output: { stdout: null, stderr: null },
      }),
      key.privateKey,
    );
    expect(await codeOf(() => verifyReceipt(restarted, key.publicKeyPem, { stdout: Buffer.alloc(0) }))).toBe(
      'STDOUT_MISMATCH',
    );
  });
});

describe('receipt store', () => {
  it('keeps drafts and receipts across a reopen, and lists the drafts still open', async () => {
    const dir = await tempDir('vyr-receipt-store-');
    const path = join(dir, 'receipts.db');
    const draft = (id: string, createdAtMs: number) => ({
      task: { id, traceId: null },
      node: { id: 'nd_x', tier: 'laptop', keyId: '0'.repeat(64), version: '0.1.0' },
      artifact: { digest: `sha256:${'1'.repeat(64)}` as const, name: 'a', version: '1' },
      invocation: { args: digestArgs([]), env: digestEnv({}), stdin: digestStream(Buffer.alloc(0)) },
      limits: { memoryBytes: 1, deadlineMs: null },
      bindings: [],
      createdAtMs,
    });
    let store = openReceiptStore({ path });
    store.putDraft(draft('tk_a', 1));
    store.putDraft(draft('tk_b', 2));
    store.putDraft(draft('tk_b', 3)); // idempotent
    store.addBinding('tk_b', { slot: 'data', stateId: 'st_1', access: 'rw' });
    store.addBinding('tk_b', { slot: 'data', stateId: 'st_2', access: 'ro' }); // slot already recorded
    store.complete('tk_a', '{"receipt":1}', 5);
    store.addBinding('tk_a', { slot: 'data', stateId: 'st_3', access: 'rw' }); // already signed: ignored
    store.close();
    store = openReceiptStore({ path });
    expect(store.get('tk_a')?.receipt).toBe('{"receipt":1}');
    expect(store.openDrafts().map((r) => [r.taskId, r.draft.createdAtMs])).toEqual([['tk_b', 2]]);
    expect(store.openDrafts()[0]?.draft.bindings).toEqual([{ slot: 'data', stateId: 'st_1', access: 'rw' }]);
    expect(store.get('tk_a')?.draft.bindings).toEqual([]);
    expect(store.get('tk_c')).toBeUndefined();
    store.close();
  });
});

describe('comparing receipts', () => {
  it('says two runs are the same run when artifact, inputs, outcome, output and state digests agree, wherever they ran', async () => {
    const { compareReceipts } = await import('../src/index.js');
    const base = {
      task: { id: 'tk_a', traceId: null },
      node: { id: 'nd_laptop', tier: 'laptop', keyId: 'a'.repeat(64), version: '0.1.0' },
      artifact: { digest: `sha256:${'1'.repeat(64)}` as const, name: 'x', version: '1' },
      invocation: { args: digestArgs([]), env: digestEnv({}), stdin: digestStream(Buffer.alloc(0)) },
      limits: { memoryBytes: 1, deadlineMs: null },
      outcome: { status: 'SUCCEEDED' as const, reason: null, exitCode: 0 },
      output: { stdout: digestStream(Buffer.from('out')), stderr: digestStream(Buffer.alloc(0)) },
      state: [
        {
          slot: 'data',
          stateId: 'st_1',
          access: 'rw' as const,
          before: null,
          after: `sha256:${'2'.repeat(64)}` as const,
          bytes: 1,
          entries: 1,
          quotaExceeded: false,
        },
      ],
      time: { createdAt: 'a', startedAt: null, endedAt: 'b' },
    };
    const edge = {
      ...base,
      task: { id: 'tk_b', traceId: null },
      node: { ...base.node, id: 'nd_edge', tier: 'edge' },
      state: [{ ...base.state[0]!, stateId: 'st_2' }],
    };
    const same = compareReceipts([base, edge]);
    expect(same.sameRun).toBe(true);
    expect(same.context.find((f) => f.field === 'node.id')?.equal).toBe(false);
    const differs = compareReceipts([
      base,
      { ...edge, output: { ...edge.output, stdout: digestStream(Buffer.from('0ut')) } },
    ]);
    expect(differs.sameRun).toBe(false);
    expect(differs.run.filter((f) => !f.equal).map((f) => f.field)).toEqual(['output.stdout']);
  });
});
