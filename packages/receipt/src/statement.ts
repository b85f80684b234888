import { createHash, type Hash } from 'node:crypto';
import { ReceiptError } from './errors.js';
import {
  type ExecutionPredicate,
  PREDICATE_TYPE,
  type ReceiptStatement,
  type Sha256Digest,
  STATEMENT_TYPE,
  type StreamDigest,
} from './types.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of some bytes. */
export function sha256Of(bytes: Uint8Array | string): Sha256Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Digest of a task's arguments: sha256 of the UTF-8 JSON array (`JSON.stringify(args)`). */
export function digestArgs(args: readonly string[]): { digest: Sha256Digest; count: number } {
  return { digest: sha256Of(JSON.stringify(args)), count: args.length };
}

/**
 * Digest of a task's environment values: sha256 of the UTF-8 JSON array of `[key, value]` pairs sorted by key (UTF-16
 * code unit order, as `Array.prototype.sort` compares). The keys are also returned in that order, in clear.
 */
export function digestEnv(env: Readonly<Record<string, string>>): { digest: Sha256Digest; keys: string[] } {
  const pairs = Object.entries(env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { digest: sha256Of(JSON.stringify(pairs)), keys: pairs.map(([k]) => k) };
}

/** Digest and length of a whole stream. */
export function digestStream(bytes: Uint8Array): StreamDigest {
  return { digest: sha256Of(bytes), bytes: bytes.byteLength };
}

/** Hashes a stream as it passes (stdout, stderr) without keeping it. */
export class StreamHasher {
  readonly #hash: Hash = createHash('sha256');
  #bytes = 0;
  #result: StreamDigest | undefined;

  /** Adds the next chunk. Ignored once {@link StreamHasher.digest} was called. */
  update(chunk: Uint8Array): void {
    if (this.#result) return;
    this.#hash.update(chunk);
    this.#bytes += chunk.byteLength;
  }

  /** The digest of everything added so far; later calls return the same value. */
  digest(): StreamDigest {
    this.#result ??= { digest: `sha256:${this.#hash.digest('hex')}`, bytes: this.#bytes };
    return this.#result;
  }
}

/** What a receipt records, with times as epoch milliseconds; see {@link ExecutionPredicate}. */
export interface ReceiptFacts extends Omit<ExecutionPredicate, 'time'> {
  time: { createdAtMs: number; startedAtMs?: number; endedAtMs: number };
}

function iso(ms: number, what: string): string {
  if (!Number.isFinite(ms)) throw new ReceiptError('INVALID_ARGUMENT', `${what} ${ms} is not a time`);
  return new Date(ms).toISOString();
}

/**
 * Builds the in-toto Statement v1 of one task run: subject = the artifact (name `NAME@VERSION`, digest its manifest
 * sha256), predicate = {@link ExecutionPredicate}. Field order is fixed, so the same facts give the same bytes.
 * @throws ReceiptError `INVALID_ARGUMENT` for an artifact digest that is not `sha256:<64 hex>` or a time that is not one.
 */
export function buildStatement(facts: ReceiptFacts): ReceiptStatement {
  if (!DIGEST.test(facts.artifact.digest)) {
    throw new ReceiptError(
      'INVALID_ARGUMENT',
      `artifact digest ${JSON.stringify(facts.artifact.digest)} is not sha256:<64 hex>`,
    );
  }
  const predicate: ExecutionPredicate = {
    task: { id: facts.task.id, traceId: facts.task.traceId },
    node: { id: facts.node.id, tier: facts.node.tier, keyId: facts.node.keyId, version: facts.node.version },
    artifact: { digest: facts.artifact.digest, name: facts.artifact.name, version: facts.artifact.version },
    invocation: {
      args: { digest: facts.invocation.args.digest, count: facts.invocation.args.count },
      env: { digest: facts.invocation.env.digest, keys: [...facts.invocation.env.keys] },
      stdin: { digest: facts.invocation.stdin.digest, bytes: facts.invocation.stdin.bytes },
    },
    limits: { memoryBytes: facts.limits.memoryBytes, deadlineMs: facts.limits.deadlineMs },
    outcome: { status: facts.outcome.status, reason: facts.outcome.reason, exitCode: facts.outcome.exitCode },
    output: {
      stdout: facts.output.stdout ? { digest: facts.output.stdout.digest, bytes: facts.output.stdout.bytes } : null,
      stderr: facts.output.stderr ? { digest: facts.output.stderr.digest, bytes: facts.output.stderr.bytes } : null,
    },
    state: [...facts.state]
      .sort((a, b) => (a.slot < b.slot ? -1 : a.slot > b.slot ? 1 : 0))
      .map((s) => ({
        slot: s.slot,
        stateId: s.stateId,
        access: s.access,
        before: s.before,
        after: s.after,
        bytes: s.bytes,
        entries: s.entries,
        quotaExceeded: s.quotaExceeded,
      })),
    time: {
      createdAt: iso(facts.time.createdAtMs, 'createdAtMs'),
      startedAt: facts.time.startedAtMs === undefined ? null : iso(facts.time.startedAtMs, 'startedAtMs'),
      endedAt: iso(facts.time.endedAtMs, 'endedAtMs'),
    },
  };
  const name = facts.artifact.name ? `${facts.artifact.name}@${facts.artifact.version}` : facts.artifact.digest;
  return {
    _type: STATEMENT_TYPE,
    subject: [{ name, digest: { sha256: facts.artifact.digest.slice('sha256:'.length) } }],
    predicateType: PREDICATE_TYPE,
    predicate,
  };
}
