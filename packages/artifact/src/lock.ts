import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ArtifactError } from './errors.js';

/**
 * The store's lock file. It is a SQLite database used only for its lock: `BEGIN EXCLUSIVE` takes a POSIX
 * (fcntl) write lock on the file through a descriptor the process holds, and the kernel drops that lock when the
 * descriptor is closed or the process dies, however it dies. The file itself is never removed or replaced, so
 * every process always locks the same inode.
 *
 * Why not a pid file: taking over a pid lock whose owner died needs a compare-and-swap on the file that POSIX
 * does not offer (two waiters that both read the dead pid can each remove the other's fresh lock), and a crash
 * between creating the file and writing the pid leaves a lock nobody can judge. A kernel-held lock has no stale
 * state at all.
 */
export const STORE_LOCK_FILE = '.vyr-store.lockdb';

/** Who holds the lock, for messages only (never used to decide anything). Written by the holder, atomically. */
const OWNER_FILE = '.vyr-store.owner';

/** SQLite result codes meaning "someone else holds the lock". */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/** Releases a held store lock. Idempotent. */
export type ReleaseLock = () => Promise<void>;

/**
 * Takes the exclusive lock of the store in `dir` (which must exist), polling with backoff up to `timeoutMs`.
 * Polling never blocks the event loop (SQLite's own busy wait would).
 *
 * @throws ArtifactError `IO_ERROR` when the lock cannot be opened, or is still held after `timeoutMs`.
 */
export async function acquireStoreLock(dir: string, timeoutMs: number): Promise<ReleaseLock> {
  const path = join(dir, STORE_LOCK_FILE);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: 0 });
  } catch (cause) {
    throw new ArtifactError('IO_ERROR', `cannot open the store lock ${path}: ${(cause as Error).message}`, { cause });
  }
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  for (;;) {
    try {
      db.exec('BEGIN EXCLUSIVE');
      break;
    } catch (cause) {
      const errcode = (cause as { errcode?: number }).errcode;
      if (errcode !== SQLITE_BUSY && errcode !== SQLITE_LOCKED) {
        db.close();
        throw new ArtifactError('IO_ERROR', `cannot take the store lock ${path}: ${(cause as Error).message}`, {
          cause,
        });
      }
    }
    if (Date.now() >= deadline) {
      db.close();
      const owner = await readOwner(dir);
      throw new ArtifactError(
        'IO_ERROR',
        `the artifact store ${dir} is locked by ${owner ?? 'another process'} for longer than ${timeoutMs} ms; retry when it is done (the lock ends with that process, there is no file to remove)`,
      );
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 50);
  }
  await writeOwner(dir);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    try {
      // Still holding the lock: the next holder writes its own record only after taking it.
      await rm(join(dir, OWNER_FILE), { force: true }).catch(() => undefined);
      db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  };
}

async function writeOwner(dir: string): Promise<void> {
  const temp = join(dir, `.tmp-owner-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await writeFile(temp, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }));
    await rename(temp, join(dir, OWNER_FILE));
  } catch {
    // Informational only: the lock is held either way. The temp file, if any, is removed by gc.
    await rm(temp, { force: true }).catch(() => undefined);
  }
}

async function readOwner(dir: string): Promise<string | undefined> {
  try {
    const owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as { pid?: unknown; since?: unknown };
    return typeof owner.pid === 'number' ? `process ${owner.pid} (since ${String(owner.since)})` : undefined;
  } catch {
    return undefined;
  }
}
