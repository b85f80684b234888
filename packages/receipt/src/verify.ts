import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleFromJSON } from '@sigstore/bundle';
import { type TrustMaterial, toSignedEntity, Verifier } from '@sigstore/verify';
import { keyIdOf, parsePublicKeyPem, readArtifact } from '@vyr/artifact';
import { digestTree } from '@vyr/state';
import { extract as extractTar } from 'tar';
import { ReceiptError, type ReceiptErrorCode } from './errors.js';
import {
  BUNDLE_MEDIA_TYPE,
  type ExecutionPredicate,
  PAYLOAD_TYPE,
  PREDICATE_TYPE,
  type ReceiptState,
  type ReceiptStatement,
  STATEMENT_TYPE,
  type StreamDigest,
} from './types.js';

const KEY_ID = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const STATUSES = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'DEADLINE_EXCEEDED']);

/** A receipt after the strict shape check, before (or without) its signature check. */
export interface ParsedReceipt {
  /** The bundle JSON value, for `@sigstore/bundle`. */
  bundle: Record<string, unknown>;
  /** Key id named by `verificationMaterial.publicKey.hint` (and the DSSE signature's `keyid`). */
  keyId: string;
  /** The DSSE payload: the statement's JSON bytes. */
  payload: Buffer;
  /** The statement, parsed from the payload and shape-checked. */
  statement: ReceiptStatement;
}

type Obj = Record<string, unknown>;

function fail(code: ReceiptErrorCode, message: string, cause?: unknown): never {
  throw new ReceiptError(code, message, cause === undefined ? undefined : { cause });
}

/** An object with exactly these keys (every one required), so no byte of a receipt goes unchecked. */
function exact(value: unknown, keys: readonly string[], path: string, code: ReceiptErrorCode): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(code, `${path} must be an object`);
  const obj = value as Obj;
  for (const key of keys) if (!(key in obj)) fail(code, `${path}.${key} is missing`);
  for (const key of Object.keys(obj)) if (!keys.includes(key)) fail(code, `${path} has unknown field "${key}"`);
  return obj;
}

/** Base64 that decodes and re-encodes to itself (no ignored bits or characters a lenient decoder skips). */
function canonicalBase64(value: unknown, path: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    fail('MALFORMED_RECEIPT', `${path} is not base64`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) fail('MALFORMED_RECEIPT', `${path} is not canonical base64`);
  return bytes;
}

const S = 'MALFORMED_STATEMENT' as const;
const str = (v: unknown, path: string): string => (typeof v === 'string' ? v : fail(S, `${path} must be a string`));
const count = (v: unknown, path: string): number =>
  Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : fail(S, `${path} must be a non-negative integer`);
const digest = (v: unknown, path: string): `sha256:${string}` =>
  typeof v === 'string' && DIGEST.test(v) ? (v as `sha256:${string}`) : fail(S, `${path} must be sha256:<64 hex>`);
const nullable = <T>(v: unknown, f: (v: unknown, p: string) => T, path: string): T | null =>
  v === null ? null : f(v, path);
const time = (v: unknown, path: string): string =>
  typeof v === 'string' && ISO.test(v) && !Number.isNaN(Date.parse(v))
    ? v
    : fail(S, `${path} must be an RFC 3339 UTC time`);
const stream = (v: unknown, path: string): StreamDigest => {
  const o = exact(v, ['digest', 'bytes'], path, S);
  return { digest: digest(o.digest, `${path}.digest`), bytes: count(o.bytes, `${path}.bytes`) };
};

/** Checks a statement's shape field by field (predicate version 1, docs/receipts.md). */
function checkStatement(value: unknown): ReceiptStatement {
  const top = exact(value, ['_type', 'subject', 'predicateType', 'predicate'], '$', S);
  if (top._type !== STATEMENT_TYPE) fail(S, `$._type ${JSON.stringify(top._type)} is not ${STATEMENT_TYPE}`);
  if (top.predicateType !== PREDICATE_TYPE) {
    fail('UNSUPPORTED_PREDICATE', `predicate type ${JSON.stringify(top.predicateType)} is not ${PREDICATE_TYPE}`);
  }
  if (!Array.isArray(top.subject) || top.subject.length !== 1) fail(S, '$.subject must hold exactly one subject');
  const subject = exact(top.subject[0], ['name', 'digest'], '$.subject[0]', S);
  str(subject.name, '$.subject[0].name');
  const set = exact(subject.digest, ['sha256'], '$.subject[0].digest', S);
  if (typeof set.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(set.sha256))
    fail(S, '$.subject[0].digest.sha256 must be 64 hex');
  const p = exact(
    top.predicate,
    ['task', 'node', 'artifact', 'invocation', 'limits', 'outcome', 'output', 'state', 'time'],
    '$.predicate',
    S,
  );
  const task = exact(p.task, ['id', 'traceId'], '$.predicate.task', S);
  str(task.id, '$.predicate.task.id');
  nullable(task.traceId, str, '$.predicate.task.traceId');
  const node = exact(p.node, ['id', 'tier', 'keyId', 'version'], '$.predicate.node', S);
  for (const k of ['id', 'tier', 'version']) str(node[k], `$.predicate.node.${k}`);
  if (typeof node.keyId !== 'string' || !KEY_ID.test(node.keyId)) fail(S, '$.predicate.node.keyId must be 64 hex');
  const artifact = exact(p.artifact, ['digest', 'name', 'version'], '$.predicate.artifact', S);
  if (digest(artifact.digest, '$.predicate.artifact.digest') !== `sha256:${set.sha256}`) {
    fail(S, '$.predicate.artifact.digest is not the subject digest');
  }
  str(artifact.name, '$.predicate.artifact.name');
  str(artifact.version, '$.predicate.artifact.version');
  const inv = exact(p.invocation, ['args', 'env', 'stdin'], '$.predicate.invocation', S);
  const args = exact(inv.args, ['digest', 'count'], '$.predicate.invocation.args', S);
  digest(args.digest, '$.predicate.invocation.args.digest');
  count(args.count, '$.predicate.invocation.args.count');
  const env = exact(inv.env, ['digest', 'keys'], '$.predicate.invocation.env', S);
  digest(env.digest, '$.predicate.invocation.env.digest');
  if (!Array.isArray(env.keys)) fail(S, '$.predicate.invocation.env.keys must be an array');
  for (const [i, k] of env.keys.entries()) str(k, `$.predicate.invocation.env.keys[${i}]`);
  stream(inv.stdin, '$.predicate.invocation.stdin');
  const limits = exact(p.limits, ['memoryBytes', 'deadlineMs'], '$.predicate.limits', S);
  count(limits.memoryBytes, '$.predicate.limits.memoryBytes');
  nullable(limits.deadlineMs, count, '$.predicate.limits.deadlineMs');
  const outcome = exact(p.outcome, ['status', 'reason', 'exitCode'], '$.predicate.outcome', S);
  if (typeof outcome.status !== 'string' || !STATUSES.has(outcome.status))
    fail(S, '$.predicate.outcome.status is not a terminal status');
  nullable(outcome.reason, str, '$.predicate.outcome.reason');
  if (outcome.exitCode !== null && !Number.isSafeInteger(outcome.exitCode))
    fail(S, '$.predicate.outcome.exitCode must be an integer or null');
  const output = exact(p.output, ['stdout', 'stderr'], '$.predicate.output', S);
  nullable(output.stdout, stream, '$.predicate.output.stdout');
  nullable(output.stderr, stream, '$.predicate.output.stderr');
  if (!Array.isArray(p.state)) fail(S, '$.predicate.state must be an array');
  p.state.forEach((s, i) => {
    const path = `$.predicate.state[${i}]`;
    const o = exact(s, ['slot', 'stateId', 'access', 'before', 'after', 'bytes', 'entries', 'quotaExceeded'], path, S);
    str(o.slot, `${path}.slot`);
    str(o.stateId, `${path}.stateId`);
    if (o.access !== 'ro' && o.access !== 'rw') fail(S, `${path}.access must be ro or rw`);
    nullable(o.before, digest, `${path}.before`);
    nullable(o.after, digest, `${path}.after`);
    count(o.bytes, `${path}.bytes`);
    count(o.entries, `${path}.entries`);
    if (typeof o.quotaExceeded !== 'boolean') fail(S, `${path}.quotaExceeded must be a boolean`);
  });
  const t = exact(p.time, ['createdAt', 'startedAt', 'endedAt'], '$.predicate.time', S);
  time(t.createdAt, '$.predicate.time.createdAt');
  nullable(t.startedAt, time, '$.predicate.time.startedAt');
  time(t.endedAt, '$.predicate.time.endedAt');
  return value as ReceiptStatement;
}

type Envelope = Omit<ParsedReceipt, 'statement'>;

/** The bundle and DSSE envelope of a receipt, shape-checked; the payload is not looked at. */
function parseEnvelope(json: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    fail('MALFORMED_RECEIPT', `the receipt is not valid JSON: ${(cause as Error).message}`, cause);
  }
  const top = exact(value, ['mediaType', 'verificationMaterial', 'dsseEnvelope'], '$', 'MALFORMED_RECEIPT');
  if (top.mediaType !== BUNDLE_MEDIA_TYPE) {
    fail('UNSUPPORTED_MEDIA_TYPE', `bundle media type ${JSON.stringify(top.mediaType)} is not ${BUNDLE_MEDIA_TYPE}`);
  }
  const material = exact(top.verificationMaterial, ['publicKey'], '$.verificationMaterial', 'MALFORMED_RECEIPT');
  const publicKey = exact(material.publicKey, ['hint'], '$.verificationMaterial.publicKey', 'MALFORMED_RECEIPT');
  if (typeof publicKey.hint !== 'string' || !KEY_ID.test(publicKey.hint)) {
    fail(
      'MALFORMED_RECEIPT',
      `$.verificationMaterial.publicKey.hint ${JSON.stringify(publicKey.hint)} is not a key id (64 hex)`,
    );
  }
  const env = exact(top.dsseEnvelope, ['payload', 'payloadType', 'signatures'], '$.dsseEnvelope', 'MALFORMED_RECEIPT');
  if (env.payloadType !== PAYLOAD_TYPE) {
    fail('UNSUPPORTED_PAYLOAD_TYPE', `DSSE payload type ${JSON.stringify(env.payloadType)} is not ${PAYLOAD_TYPE}`);
  }
  const payload = canonicalBase64(env.payload, '$.dsseEnvelope.payload');
  if (!Array.isArray(env.signatures) || env.signatures.length !== 1) {
    fail('MALFORMED_RECEIPT', '$.dsseEnvelope.signatures must hold exactly one signature (the node key)');
  }
  const sig = exact(env.signatures[0], ['sig', 'keyid'], '$.dsseEnvelope.signatures[0]', 'MALFORMED_RECEIPT');
  if (canonicalBase64(sig.sig, '$.dsseEnvelope.signatures[0].sig').length === 0) {
    fail('MALFORMED_RECEIPT', 'the DSSE signature is empty');
  }
  if (sig.keyid !== publicKey.hint) {
    fail(
      'MALFORMED_RECEIPT',
      `the DSSE signature's keyid ${JSON.stringify(sig.keyid)} is not the bundle's key hint ${publicKey.hint}`,
    );
  }
  return { bundle: top, keyId: publicKey.hint, payload };
}

/** The statement of an envelope's payload, shape-checked; its node key must be the envelope's. */
function statementOf(envelope: Envelope): ReceiptStatement {
  let statement: unknown;
  try {
    statement = JSON.parse(envelope.payload.toString('utf8'));
  } catch (cause) {
    fail('MALFORMED_STATEMENT', `the DSSE payload is not JSON: ${(cause as Error).message}`, cause);
  }
  const checked = checkStatement(statement);
  if (checked.predicate.node.keyId !== envelope.keyId) {
    fail(
      'MALFORMED_STATEMENT',
      `the predicate names node key ${checked.predicate.node.keyId}, the bundle ${envelope.keyId}`,
    );
  }
  return checked;
}

/**
 * Parses a receipt strictly, without checking its signature: a Sigstore bundle v0.3 whose only content is a DSSE
 * envelope with exactly one signature (its `keyid` equal to `verificationMaterial.publicKey.hint`), payload type
 * `application/vnd.in-toto+json`, and a payload that is an in-toto Statement v1 with the VYR execution predicate v1.
 * Unknown fields are refused, so no byte of a receipt is unchecked. Use {@link verifyReceipt} to trust it.
 *
 * @throws ReceiptError `MALFORMED_RECEIPT`, `UNSUPPORTED_MEDIA_TYPE`, `UNSUPPORTED_PAYLOAD_TYPE`,
 *   `MALFORMED_STATEMENT`, `UNSUPPORTED_PREDICATE`.
 */
export function parseReceipt(json: string): ParsedReceipt {
  const envelope = parseEnvelope(json);
  return { ...envelope, statement: statementOf(envelope) };
}

/** Content digest (docs/state.md) of an exported state: a directory, or a tar unpacked into a temp directory first. */
async function exportDigest(path: string): Promise<string> {
  if (!(await stat(path)).isFile()) return (await digestTree(path)).digest;
  const scratch = await mkdtemp(join(tmpdir(), 'vyr-receipt-state-'));
  try {
    await extractTar({ file: path, cwd: scratch, strict: true });
    return (await digestTree(scratch)).digest;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** One exported state directory to compare with a receipt. */
export interface StateExportCheck {
  /** A directory as `vyr state export --out DIR` writes it, or the `.tar` of `vyr state export --out FILE.tar`. */
  dir: string;
  /** The slot it must match; default: any slot of the receipt. */
  slot?: string;
}

/** Bytes, or a file to hash as a stream. */
export type BytesOrFile = Uint8Array | { path: string };

/** Options of {@link verifyReceipt}: what to compare with the digests of a receipt, besides its signature. */
export interface VerifyReceiptOptions {
  /** The artifact: a path (OCI image-layout directory or `.tar`, re-hashed) or a `sha256:` digest. Default: not checked. */
  artifact?: string;
  /** The task's captured stdout. Default: not checked. */
  stdout?: BytesOrFile;
  /** The task's captured stderr. Default: not checked. */
  stderr?: BytesOrFile;
  /** The bytes given on stdin. Default: not checked. */
  stdin?: BytesOrFile;
  /** Exported state directories; each must equal a slot's `after` digest. Default: none. */
  stateExports?: readonly StateExportCheck[];
}

/** A receipt whose signature verified, and what else was checked. */
export interface VerifiedReceipt {
  statement: ReceiptStatement;
  predicate: ExecutionPredicate;
  /** Key id of the node key that signed it. */
  keyId: string;
  /** What was compared besides the signature, e.g. `artifact`, `stdout`, `state:data`. */
  checked: string[];
}

function trustOnly(keyId: string, publicKey: KeyObject): TrustMaterial {
  return {
    certificateAuthorities: [],
    timestampAuthorities: [],
    tlogs: [],
    ctlogs: [],
    publicKey: (hint: string) => {
      if (hint !== keyId) throw new Error(`key ${hint} is not the node key ${keyId}`);
      return { publicKey, validFor: () => true };
    },
  };
}

async function streamDigest(source: BytesOrFile, what: string): Promise<StreamDigest> {
  if (source instanceof Uint8Array) {
    return { digest: `sha256:${createHash('sha256').update(source).digest('hex')}`, bytes: source.byteLength };
  }
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(source.path)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).byteLength;
    }
  } catch (cause) {
    fail('IO_ERROR', `cannot read ${what} ${source.path}: ${(cause as Error).message}`, cause);
  }
  return { digest: `sha256:${hash.digest('hex')}`, bytes };
}

function sameStream(
  recorded: StreamDigest | null,
  actual: StreamDigest,
  what: 'stdout' | 'stderr' | 'stdin',
  code: ReceiptErrorCode,
): void {
  if (recorded === null)
    fail(code, `the receipt records no ${what} (the node could not know it: the task was live when the node stopped)`);
  if (recorded.digest !== actual.digest) {
    fail(
      code,
      `the ${what} given (${actual.bytes} bytes, ${actual.digest}) is not the ${what} the receipt records (${recorded.bytes} bytes, ${recorded.digest})`,
    );
  }
}

/**
 * Verifies a receipt offline against a node's public key, then compares whatever is given (artifact, output, stdin,
 * exported state) with the digests it records. Nothing touches the network.
 *
 * 1. strict shape ({@link parseReceipt});
 * 2. the receipt's key hint must be the key id of `nodeKey`;
 * 3. the DSSE signature must verify with `@sigstore/verify` (trust material holding only `nodeKey`, all thresholds 0);
 * 4. each given part must match its digest.
 *
 * @param nodeKey - the node's public key: a `KeyObject` or SPKI PEM text (GetNodeInfo `node_public_key`).
 * @throws ReceiptError with the code of the first mismatch: every code of {@link parseReceipt}, `MALFORMED_KEY`,
 *   `KEY_MISMATCH`, `SIGNATURE_INVALID`, `ARTIFACT_MISMATCH`, `STDOUT_MISMATCH`, `STDERR_MISMATCH`,
 *   `STDIN_MISMATCH`, `STATE_MISMATCH`, `INVALID_ARGUMENT`, `IO_ERROR`.
 */
export async function verifyReceipt(
  json: string,
  nodeKey: KeyObject | string,
  options: VerifyReceiptOptions = {},
): Promise<VerifiedReceipt> {
  let publicKey: KeyObject;
  try {
    publicKey = typeof nodeKey === 'string' ? parsePublicKeyPem(nodeKey, 'node key') : nodeKey;
    if (publicKey.type !== 'public') throw new Error('not a public key');
  } catch (cause) {
    fail('MALFORMED_KEY', `the node key is not a PEM ECDSA P-256 public key: ${(cause as Error).message}`, cause);
  }
  // The payload is read only once its signature verified: an altered payload is SIGNATURE_INVALID, not malformed.
  const parsed = parseEnvelope(json);
  const keyId = keyIdOf(publicKey);
  if (parsed.keyId !== keyId) {
    fail(
      'KEY_MISMATCH',
      `the receipt was signed by node key ${parsed.keyId}, not by the key given (${keyId}); use that node's public key (vyr node status)`,
    );
  }
  let entity: ReturnType<typeof toSignedEntity>;
  try {
    entity = toSignedEntity(bundleFromJSON(parsed.bundle));
  } catch (cause) {
    fail('MALFORMED_RECEIPT', `the receipt is not a valid Sigstore bundle: ${(cause as Error).message}`, cause);
  }
  try {
    new Verifier(trustOnly(keyId, publicKey), { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(
      entity,
    );
  } catch (cause) {
    fail(
      'SIGNATURE_INVALID',
      `the receipt's signature does not verify with node key ${keyId}: the receipt was altered`,
      cause,
    );
  }
  const statement = statementOf(parsed);
  const predicate = statement.predicate;
  const checked: string[] = [];
  if (options.artifact !== undefined) {
    let actual = options.artifact;
    if (!DIGEST.test(actual)) {
      try {
        actual = (await readArtifact(options.artifact)).digest;
      } catch (cause) {
        const code = (cause as { code?: string }).code ?? 'IO_ERROR';
        fail(
          'ARTIFACT_MISMATCH',
          `the artifact ${options.artifact} cannot be the receipt's subject: ${code}: ${(cause as Error).message}`,
          cause,
        );
      }
    }
    if (actual !== predicate.artifact.digest) {
      fail('ARTIFACT_MISMATCH', `the artifact given is ${actual}; the receipt is about ${predicate.artifact.digest}`);
    }
    checked.push('artifact');
  }
  if (options.stdin !== undefined) {
    sameStream(predicate.invocation.stdin, await streamDigest(options.stdin, 'stdin'), 'stdin', 'STDIN_MISMATCH');
    checked.push('stdin');
  }
  if (options.stdout !== undefined) {
    sameStream(predicate.output.stdout, await streamDigest(options.stdout, 'stdout'), 'stdout', 'STDOUT_MISMATCH');
    checked.push('stdout');
  }
  if (options.stderr !== undefined) {
    sameStream(predicate.output.stderr, await streamDigest(options.stderr, 'stderr'), 'stderr', 'STDERR_MISMATCH');
    checked.push('stderr');
  }
  for (const exp of options.stateExports ?? []) {
    const candidates: ReceiptState[] =
      exp.slot === undefined ? predicate.state : predicate.state.filter((s) => s.slot === exp.slot);
    if (exp.slot !== undefined && candidates.length === 0) {
      fail(
        'INVALID_ARGUMENT',
        `the receipt has no state slot ${JSON.stringify(exp.slot)} (slots: ${predicate.state.map((s) => s.slot).join(', ') || 'none'})`,
      );
    }
    let actual: string;
    try {
      actual = await exportDigest(exp.dir);
    } catch (cause) {
      fail('IO_ERROR', `cannot measure the state export ${exp.dir}: ${(cause as Error).message}`, cause);
    }
    const match = candidates.find((s) => s.after === actual);
    if (!match) {
      const recorded = candidates.map((s) => `${s.slot}: ${s.after ?? 'not measured'}`).join(', ') || 'no state';
      fail('STATE_MISMATCH', `the state export ${exp.dir} has digest ${actual}; the receipt records ${recorded}`);
    }
    checked.push(`state:${match.slot}`);
  }
  return { statement, predicate, keyId, checked };
}
