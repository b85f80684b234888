/**
 * Idempotency keys that survive a restart: one SQLite table (`node:sqlite`, WAL) in the data directory, so a client
 * retrying SubmitTask with its key after the node crashed gets the task it started (FAILED(NODE_RESTART) if it was
 * running) instead of a second run. `synchronous=NORMAL`: in WAL mode a commit survives the process dying (what
 * `kill -9` does), losing at most the last commits to an OS crash (https://www.sqlite.org/pragma.html#pragma_synchronous).
 * The key is written right after the task is admitted; a crash in that instant can still forget it.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { IdempotencyRecord, IdempotencyStore } from '@vyr/api';

/** A durable {@link IdempotencyStore} keeping the newest `maxKeys` keys; `close()` when the node stops. */
export function openIdempotencyStore(path: string, maxKeys: number): IdempotencyStore & { close(): void } {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode=WAL');
  db.exec('PRAGMA synchronous=NORMAL');
  db.exec(
    'CREATE TABLE IF NOT EXISTS idempotency (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, fingerprint TEXT NOT NULL, task_id TEXT NOT NULL)',
  );
  const get: StatementSync = db.prepare('SELECT fingerprint, task_id FROM idempotency WHERE key = ?');
  const put: StatementSync = db.prepare(
    'INSERT INTO idempotency (key, fingerprint, task_id) VALUES (?, ?, ?) ON CONFLICT(key) DO NOTHING',
  );
  const trim: StatementSync = db.prepare('DELETE FROM idempotency WHERE seq <= (SELECT MAX(seq) FROM idempotency) - ?');
  return {
    get(key: string): IdempotencyRecord | undefined {
      const row = get.get(key) as { fingerprint: string; task_id: string } | undefined;
      return row ? { fingerprint: row.fingerprint, taskId: row.task_id } : undefined;
    },
    put(key: string, record: IdempotencyRecord): void {
      put.run(key, record.fingerprint, record.taskId);
      trim.run(maxKeys);
    },
    close(): void {
      db.close();
    },
  };
}
