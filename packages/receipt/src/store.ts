/**
 * Receipts kept with the task record on the node: one SQLite database (`node:sqlite`) in WAL mode with
 * `synchronous=NORMAL`: a committed row survives SIGKILL of the node (the WAL is in the OS page cache), though not
 * necessarily a power loss. FULL would fsync twice per task on the node's event loop (≈ 4 ms each on a shared disk,
 * measured) — the state registry already pays that once per task; receipts need crash safety against the node
 * process dying, which NORMAL gives (https://www.sqlite.org/pragma.html#pragma_synchronous). A task gets a draft row when it is admitted (what is
 * known at submit: invocation digests, limits, artifact), and the signed receipt when it ends. A draft still open
 * when the node starts again belongs to a task that was live when the node died: the node completes it as
 * `FAILED(NODE_RESTART)` ({@link ReceiptStore.openDrafts}).
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { ReceiptError } from './errors.js';
import type { ReceiptFacts } from './statement.js';

/** What a node knows of a task at submit: the facts of {@link ReceiptFacts} that do not depend on the run. */
export type ReceiptDraft = Pick<ReceiptFacts, 'task' | 'node' | 'artifact' | 'invocation' | 'limits'> & {
  /** Bindings requested at submit (slot, instance, access), for a receipt written at recovery. */
  bindings: { slot: string; stateId: string; access?: 'ro' | 'rw' }[];
  createdAtMs: number;
};

/** Options of {@link openReceiptStore}. */
export interface ReceiptStoreOptions {
  /** Path of the database file. Required. */
  path: string;
  /** Signed receipts kept, oldest dropped first; open drafts are never dropped. Default 100,000. */
  maxReceipts?: number;
}

/** A task's receipt row. */
export interface ReceiptRow {
  taskId: string;
  draft: ReceiptDraft;
  /** The signed receipt (bundle JSON); absent while the task is live. */
  receipt?: string;
}

/** The node's receipt table; see the module comment. */
export interface ReceiptStore {
  /** Records a task's draft at submit. Idempotent per task id (a second call keeps the first draft). */
  putDraft(draft: ReceiptDraft): void;
  /**
   * Adds a binding granted after submit (BindState) to a live task's draft, so a receipt written at recovery names
   * it too. Ignored for an unknown task, one that already has its receipt, or a slot already in the draft.
   */
  addBinding(taskId: string, binding: ReceiptDraft['bindings'][number]): void;
  /** Stores the signed receipt of an ended task. */
  complete(taskId: string, receipt: string, endedAtMs: number): void;
  /** A task's row; `undefined` when the store never heard of it (or dropped it). */
  get(taskId: string): ReceiptRow | undefined;
  /** Drafts without a receipt, oldest first: at start, the tasks that were live when the node died. */
  openDrafts(): ReceiptRow[];
  close(): void;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS receipts (
  task_id TEXT PRIMARY KEY,
  draft TEXT NOT NULL,
  receipt TEXT,
  created_at INTEGER NOT NULL,
  ended_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS receipts_ended ON receipts (ended_at);
`;

type Row = Record<string, unknown>;

/**
 * Opens (creating if needed) a receipt store.
 * @throws ReceiptError `STORE_ERROR` when the database cannot be opened.
 */
export function openReceiptStore(options: ReceiptStoreOptions): ReceiptStore {
  const maxReceipts = options.maxReceipts ?? 100_000;
  let db: DatabaseSync;
  let stmts: Record<'insert' | 'updateDraft' | 'complete' | 'get' | 'open' | 'count' | 'prune', StatementSync>;
  try {
    db = new DatabaseSync(options.path);
    db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;');
    db.exec(SCHEMA);
    stmts = {
      insert: db.prepare('INSERT OR IGNORE INTO receipts (task_id, draft, created_at) VALUES (?, ?, ?)'),
      updateDraft: db.prepare('UPDATE receipts SET draft = ? WHERE task_id = ? AND receipt IS NULL'),
      complete: db.prepare('UPDATE receipts SET receipt = ?, ended_at = ? WHERE task_id = ?'),
      get: db.prepare('SELECT task_id, draft, receipt FROM receipts WHERE task_id = ?'),
      open: db.prepare(
        'SELECT task_id, draft, receipt FROM receipts WHERE receipt IS NULL ORDER BY created_at, task_id',
      ),
      count: db.prepare('SELECT COUNT(*) AS n FROM receipts WHERE receipt IS NOT NULL'),
      prune: db.prepare(
        'DELETE FROM receipts WHERE task_id IN (SELECT task_id FROM receipts WHERE receipt IS NOT NULL ORDER BY ended_at, task_id LIMIT ?)',
      ),
    };
  } catch (cause) {
    throw new ReceiptError(
      'STORE_ERROR',
      `cannot open the receipt store ${options.path}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  const guarded = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (cause) {
      throw new ReceiptError('STORE_ERROR', `cannot ${what}: ${(cause as Error).message}`, { cause });
    }
  };
  const toRow = (r: Row): ReceiptRow => ({
    taskId: r.task_id as string,
    draft: JSON.parse(r.draft as string) as ReceiptDraft,
    ...(typeof r.receipt === 'string' ? { receipt: r.receipt } : {}),
  });
  let completions = 0;
  return {
    putDraft(draft) {
      guarded(`record the draft receipt of ${draft.task.id}`, () =>
        stmts.insert.run(draft.task.id, JSON.stringify(draft), draft.createdAtMs),
      );
    },
    addBinding(taskId, binding) {
      guarded(`record a binding in the draft receipt of ${taskId}`, () => {
        const r = stmts.get.get(taskId) as Row | undefined;
        if (!r || typeof r.receipt === 'string') return;
        const draft = JSON.parse(r.draft as string) as ReceiptDraft;
        if (draft.bindings.some((b) => b.slot === binding.slot)) return;
        draft.bindings.push(binding);
        stmts.updateDraft.run(JSON.stringify(draft), taskId);
      });
    },
    complete(taskId, receipt, endedAtMs) {
      guarded(`store the receipt of ${taskId}`, () => {
        stmts.complete.run(receipt, endedAtMs, taskId);
        // Pruned in batches (every 1,000 receipts), so the common path is one UPDATE.
        if (++completions % 1000 === 0) {
          const n = Number((stmts.count.get() as Row).n);
          if (n > maxReceipts) stmts.prune.run(n - maxReceipts);
        }
      });
    },
    get(taskId) {
      const r = guarded(`read the receipt of ${taskId}`, () => stmts.get.get(taskId) as Row | undefined);
      return r ? toRow(r) : undefined;
    },
    openDrafts() {
      return guarded('read open receipt drafts', () => (stmts.open.all() as Row[]).map(toRow));
    },
    close() {
      if (db.isOpen) db.close();
    },
  };
}
