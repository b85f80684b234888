/**
 * The persistent registry of instances, bindings and tasks: one SQLite database (`node:sqlite`) in WAL mode with
 * `synchronous=FULL`, so every committed change survives SIGKILL and power loss. The kernel keeps the live view in
 * memory and writes through on every change.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { StateAccess, StateDigest, StateInstanceInfo, StateScope, StateSlot } from './types.js';

/** One row of `instances`: what {@link StateInstanceInfo} says, less the live parts (class, bindings, path). */
export type InstanceRow = Omit<StateInstanceInfo, 'class' | 'bindings' | 'hostPath'>;

/** One row of `bindings`: a granted binding. */
export interface BindingRow {
  instanceId: string;
  taskId: string;
  slot: string;
  access: StateAccess;
  guestPath: string;
  quotaBytes: number;
}

/** One row of `tasks`. */
export interface TaskRow {
  taskId: string;
  state: 'active' | 'ended';
  slots?: StateSlot[];
  /** The artifact the task runs (`sha256:…`), when the runtime said so at registration. */
  artifactDigest?: string;
  createdAtMs: number;
  endedAtMs?: number;
  reason?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY,
  scope TEXT NOT NULL,
  task_id TEXT,
  name TEXT UNIQUE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  quota_bytes INTEGER NOT NULL,
  quota_entries INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  digest TEXT,
  quota_exceeded INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS bindings (
  task_id TEXT NOT NULL,
  slot TEXT NOT NULL,
  instance_id TEXT NOT NULL,
  access TEXT NOT NULL,
  guest_path TEXT NOT NULL,
  quota_bytes INTEGER NOT NULL,
  PRIMARY KEY (task_id, slot)
) STRICT;
CREATE TABLE IF NOT EXISTS tasks (
  task_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  slots TEXT,
  created_at INTEGER NOT NULL,
  ended_at INTEGER,
  reason TEXT,
  artifact_digest TEXT
) STRICT;
`;

/** A task that was live when the previous process died, as the registry remembers it. */
export interface RestartedTaskRow {
  taskId: string;
  artifactDigest?: string;
  createdAtMs: number;
}

type Row = Record<string, unknown>;

const opt = <T>(v: unknown): T | undefined => (v === null || v === undefined ? undefined : (v as T));

function toInstance(r: Row): InstanceRow {
  return {
    id: r.id as string,
    scope: r.scope as StateScope,
    taskId: opt<string>(r.task_id),
    name: opt<string>(r.name),
    createdAtMs: Number(r.created_at),
    expiresAtMs: opt<number>(r.expires_at),
    quotaBytes: Number(r.quota_bytes),
    quotaEntries: Number(r.quota_entries),
    bytes: Number(r.bytes),
    entries: Number(r.entries),
    digest: opt<StateDigest>(r.digest),
    quotaExceeded: r.quota_exceeded === 1,
  };
}

/** Thin typed wrapper over the registry database. All calls are synchronous and each is one transaction. */
export class Registry {
  readonly #db: DatabaseSync;
  readonly #stmts: Record<string, StatementSync>;

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;');
    this.#db.exec(SCHEMA);
    // Registries written before `artifact_digest` existed gain the column (NULL for their tasks).
    const columns = (this.#db.prepare('PRAGMA table_info(tasks)').all() as Row[]).map((c) => c.name);
    if (!columns.includes('artifact_digest')) this.#db.exec('ALTER TABLE tasks ADD COLUMN artifact_digest TEXT');
    const p = (sql: string) => this.#db.prepare(sql);
    this.#stmts = {
      insertInstance: p(
        `INSERT INTO instances (id, scope, task_id, name, created_at, expires_at, quota_bytes, quota_entries, bytes, entries, digest, quota_exceeded)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      updateMeasure: p('UPDATE instances SET bytes = ?, entries = ?, digest = ?, quota_exceeded = ? WHERE id = ?'),
      clearDigest: p('UPDATE instances SET digest = NULL WHERE id = ?'),
      deleteInstance: p('DELETE FROM instances WHERE id = ?'),
      allInstances: p('SELECT * FROM instances'),
      insertBinding: p(
        'INSERT INTO bindings (task_id, slot, instance_id, access, guest_path, quota_bytes) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      deleteBinding: p('DELETE FROM bindings WHERE task_id = ? AND slot = ?'),
      deleteAllBindings: p('DELETE FROM bindings'),
      upsertTask: p(
        `INSERT INTO tasks (task_id, state, slots, created_at, ended_at, reason, artifact_digest)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(task_id) DO UPDATE SET state = excluded.state, slots = excluded.slots,
           ended_at = excluded.ended_at, reason = excluded.reason, artifact_digest = excluded.artifact_digest`,
      ),
      allTasks: p('SELECT * FROM tasks'),
      pruneTasks: p("DELETE FROM tasks WHERE state = 'ended' AND ended_at < ?"),
    };
  }

  /** Runs `fn` in one transaction (one fsync at commit); nested calls join the outer transaction. */
  transaction<T>(fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      return result;
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  insertInstance(r: InstanceRow): void {
    this.#stmts.insertInstance!.run(
      r.id,
      r.scope,
      r.taskId ?? null,
      r.name ?? null,
      r.createdAtMs,
      r.expiresAtMs ?? null,
      r.quotaBytes,
      r.quotaEntries,
      r.bytes,
      r.entries,
      r.digest ?? null,
      r.quotaExceeded ? 1 : 0,
    );
  }

  updateMeasure(
    id: string,
    bytes: number,
    entries: number,
    digest: StateDigest | undefined,
    quotaExceeded: boolean,
  ): void {
    this.#stmts.updateMeasure!.run(bytes, entries, digest ?? null, quotaExceeded ? 1 : 0, id);
  }

  clearDigest(id: string): void {
    this.#stmts.clearDigest!.run(id);
  }

  deleteInstance(id: string): void {
    this.#stmts.deleteInstance!.run(id);
  }

  instances(): InstanceRow[] {
    return (this.#stmts.allInstances!.all() as Row[]).map(toInstance);
  }

  insertBinding(b: BindingRow): void {
    this.#stmts.insertBinding!.run(b.taskId, b.slot, b.instanceId, b.access, b.guestPath, b.quotaBytes);
  }

  deleteBinding(taskId: string, slot: string): void {
    this.#stmts.deleteBinding!.run(taskId, slot);
  }

  upsertTask(t: TaskRow): void {
    this.#stmts.upsertTask!.run(
      t.taskId,
      t.state,
      t.slots ? JSON.stringify(t.slots) : null,
      t.createdAtMs,
      t.endedAtMs ?? null,
      t.reason ?? null,
      t.artifactDigest ?? null,
    );
  }

  tasks(): TaskRow[] {
    return (this.#stmts.allTasks!.all() as Row[]).map((r) => ({
      taskId: r.task_id as string,
      state: r.state as 'active' | 'ended',
      slots: r.slots ? (JSON.parse(r.slots as string) as StateSlot[]) : undefined,
      artifactDigest: opt<string>(r.artifact_digest),
      createdAtMs: Number(r.created_at),
      endedAtMs: opt<number>(r.ended_at),
      reason: opt<string>(r.reason),
    }));
  }

  pruneEndedTasks(beforeMs: number): void {
    this.#stmts.pruneTasks!.run(beforeMs);
  }

  /**
   * The restart step, in one transaction: every task still `active` ends with `reason`, every binding is dropped
   * (no task survives a restart), and the task-scoped instances are removed from the registry. Returns what it did
   * so the caller can remove directories and report.
   */
  recoverAfterRestart(
    nowMs: number,
    reason: string,
  ): {
    failedTasks: RestartedTaskRow[];
    droppedTaskScoped: string[];
    interruptedWriters: string[];
  } {
    return this.transaction(() => {
      const failed = (
        this.#db.prepare("SELECT task_id, artifact_digest, created_at FROM tasks WHERE state = 'active'").all() as Row[]
      ).map(
        (r): RestartedTaskRow => ({
          taskId: r.task_id as string,
          artifactDigest: opt<string>(r.artifact_digest),
          createdAtMs: Number(r.created_at),
        }),
      );
      const interrupted = (
        this.#db.prepare("SELECT DISTINCT instance_id FROM bindings WHERE access = 'rw'").all() as Row[]
      ).map((r) => r.instance_id as string);
      const dropped = (this.#db.prepare("SELECT id FROM instances WHERE scope = 'task'").all() as Row[]).map(
        (r) => r.id as string,
      );
      this.#db
        .prepare("UPDATE tasks SET state = 'ended', ended_at = ?, reason = ? WHERE state = 'active'")
        .run(nowMs, reason);
      this.#stmts.deleteAllBindings!.run();
      this.#db.prepare("DELETE FROM instances WHERE scope = 'task'").run();
      return { failedTasks: failed, droppedTaskScoped: dropped, interruptedWriters: interrupted };
    });
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
