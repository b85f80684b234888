/**
 * The node's execution receipts (docs/receipts.md): a draft at submit, the signed receipt when the task ends, kept
 * in `DATA_DIR/receipts.db` with the task record, and the drafts a crash left open completed as
 * `FAILED(NODE_RESTART)` when the node starts again.
 */
import { ApiError, type StateResultView } from '@vyr/api';
import {
  buildStatement,
  digestArgs,
  digestEnv,
  digestStream,
  type ReceiptDraft,
  type ReceiptFacts,
  type ReceiptState,
  type ReceiptStore,
  type Sha256Digest,
  signReceipt,
} from '@vyr/receipt';
import type { TaskStatus } from '@vyr/runtime';
import type { StateMount } from '@vyr/state';
import type { Logger } from '@vyr/telemetry';
import type { NodeKey } from './node-key.js';

/** Who signs: the node's identity as its receipts name it. */
export interface ReceiptSigner {
  key: NodeKey;
  nodeId: string;
  tier: string;
  version: string;
}

/** What the node records per task; see the module comment. */
export interface ReceiptRecorder {
  /** Records the draft of an admitted task (before it can run, so a crash leaves the draft behind). */
  draft(input: {
    status: TaskStatus;
    artifact: { name: string; version: string };
    args: readonly string[];
    env: Readonly<Record<string, string>>;
    stdin: Uint8Array;
    bindings: ReceiptDraft['bindings'];
  }): void;
  /** Adds a binding granted with BindState to the task's draft (for a receipt written at recovery). */
  noteBinding(taskId: string, binding: ReceiptDraft['bindings'][number]): void;
  /** Remembers the bound state's digests before the task (from the release hook, before the kernel releases). */
  noteBefore(taskId: string, mounts: readonly StateMount[]): void;
  /** Signs and stores the receipt once `ended` resolves with the terminal status. */
  track(taskId: string, ended: Promise<TaskStatus>, results: () => readonly StateResultView[]): void;
  /** The receipt of an ended task; `undefined` when the node has no receipt for it. */
  receipt(taskId: string): Promise<string | undefined>;
  /** Resolves when every receipt being signed is stored. */
  flush(): Promise<void>;
  readonly keyId: string;
  readonly publicKeyPem: string;
}

/** Creates the recorder over a store. Failures to sign or store are logged; the task itself is unaffected. */
export function createReceiptRecorder(store: ReceiptStore, signer: ReceiptSigner, logger: Logger): ReceiptRecorder {
  const before = new Map<string, Map<string, { access: 'ro' | 'rw'; digest: string | undefined }>>();
  const signing = new Map<string, Promise<string | undefined>>();
  const node = { id: signer.nodeId, tier: signer.tier, keyId: signer.key.keyId, version: signer.version };

  function putDraft({ status, artifact, args, env, stdin, bindings }: Parameters<ReceiptRecorder['draft']>[0]): void {
    store.putDraft({
      task: { id: status.id, traceId: status.traceId ?? null },
      node,
      artifact: { digest: status.digest as Sha256Digest, name: artifact.name, version: artifact.version },
      invocation: { args: digestArgs(args), env: digestEnv(env), stdin: digestStream(stdin) },
      limits: { memoryBytes: status.limits.memoryBytes, deadlineMs: status.limits.deadlineMs ?? null },
      bindings,
      createdAtMs: status.createdAt,
    });
  }

  async function sign(facts: ReceiptFacts): Promise<string> {
    return signReceipt(buildStatement(facts), signer.key.privateKey);
  }

  return {
    keyId: signer.key.keyId,
    publicKeyPem: signer.key.publicKeyPem,
    draft(input) {
      // Never fails the submit: the task is already admitted. Without a draft it gets no receipt (GetTaskReceipt
      // says so), and the failure is logged.
      try {
        putDraft(input);
      } catch (err) {
        logger.error('cannot record the draft receipt of a task; it will have no receipt', {
          taskId: input.status.id,
          error: (err as Error).message,
        });
      }
    },
    noteBinding(taskId, binding) {
      try {
        store.addBinding(taskId, binding);
      } catch (err) {
        logger.error('cannot record a binding in the draft receipt of a task', {
          taskId,
          error: (err as Error).message,
        });
      }
    },
    noteBefore(taskId, mounts) {
      before.set(taskId, new Map(mounts.map((m) => [m.slot, { access: m.access, digest: m.digestBefore }] as const)));
    },
    track(taskId, ended, results) {
      const done = (async (): Promise<string | undefined> => {
        const status = await ended;
        const row = store.get(taskId);
        if (!row) return undefined;
        const slots = before.get(taskId);
        before.delete(taskId);
        const requested = new Map(row.draft.bindings.map((b) => [b.slot, b]));
        const state: ReceiptState[] = results().map((r) => ({
          slot: r.slot,
          stateId: r.stateId,
          access: slots?.get(r.slot)?.access ?? requested.get(r.slot)?.access ?? 'rw',
          before: (slots?.get(r.slot)?.digest as Sha256Digest | undefined) ?? null,
          after: r.digest ? (r.digest as Sha256Digest) : null,
          bytes: r.bytes,
          entries: r.entries,
          quotaExceeded: r.quotaExceeded ?? false,
        }));
        const endedAtMs = status.endedAt ?? Date.now();
        const receipt = await sign({
          ...row.draft,
          outcome: {
            status: status.state as ReceiptFacts['outcome']['status'],
            reason: status.reason ?? null,
            exitCode: status.exitCode ?? null,
          },
          output: {
            stdout: status.stdoutDigest
              ? { digest: status.stdoutDigest as Sha256Digest, bytes: status.stdoutBytes }
              : null,
            stderr: status.stderrDigest
              ? { digest: status.stderrDigest as Sha256Digest, bytes: status.stderrBytes }
              : null,
          },
          state,
          time: {
            createdAtMs: row.draft.createdAtMs,
            ...(status.startedAt !== undefined ? { startedAtMs: status.startedAt } : {}),
            endedAtMs,
          },
        });
        store.complete(taskId, receipt, endedAtMs);
        return receipt;
      })();
      const kept = done.catch((err: Error) => {
        logger.error('cannot sign or store the receipt of a task', { taskId, error: err.message });
        return undefined;
      });
      signing.set(taskId, kept);
      void kept.finally(() => {
        if (signing.get(taskId) === kept) signing.delete(taskId);
      });
    },
    async receipt(taskId) {
      const pending = signing.get(taskId);
      if (pending) return pending;
      return store.get(taskId)?.receipt;
    },
    async flush() {
      await Promise.all([...signing.values()]);
    },
  };
}

/**
 * Completes the drafts a crash left open: each becomes a signed `FAILED(NODE_RESTART)` receipt with no output
 * (the node cannot know what the guest wrote) and, for each binding requested at submit, the instance's digest as
 * measured at recovery (`after`; `null` for a task-scoped instance the restart deleted). Returns their task ids.
 */
export async function completeRestartedDrafts(
  store: ReceiptStore,
  signer: ReceiptSigner,
  measure: (stateId: string) => { digest?: string; bytes: number; entries: number } | undefined,
  nowMs: number,
): Promise<string[]> {
  const ids: string[] = [];
  for (const row of store.openDrafts()) {
    const facts: ReceiptFacts = {
      ...row.draft,
      outcome: { status: 'FAILED', reason: 'NODE_RESTART', exitCode: null },
      output: { stdout: null, stderr: null },
      state: row.draft.bindings.map((b) => {
        const m = measure(b.stateId);
        return {
          slot: b.slot,
          stateId: b.stateId,
          access: b.access ?? 'rw',
          before: null,
          after: (m?.digest as Sha256Digest | undefined) ?? null,
          bytes: m?.bytes ?? 0,
          entries: m?.entries ?? 0,
          quotaExceeded: false,
        };
      }),
      time: { createdAtMs: row.draft.createdAtMs, endedAtMs: nowMs },
    };
    store.complete(row.taskId, await signReceipt(buildStatement(facts), signer.key.privateKey), nowMs);
    ids.push(row.taskId);
  }
  return ids;
}

/** The API error for a task whose receipt is not signed yet. */
export function receiptNotReady(taskId: string, state: string): ApiError {
  return new ApiError(
    'RECEIPT_NOT_READY',
    `task ${taskId} is ${state}; its receipt is signed when it ends (watch it with WatchTask include_receipt)`,
    { metadata: { taskId } },
  );
}
