import { type FileHandle, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CollectorError } from '../errors.js';

/**
 * Makes a directory's entries durable (a created, renamed or removed file). POSIX requires an fsync of the
 * directory itself for that; a file's own fsync covers only its contents.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } finally {
    await fh?.close();
  }
}

/** Zero-padded segment file name for a first sequence number, so names sort in sequence order. */
export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.seg`;
}

/** The first sequence number encoded in a segment file name, or `undefined` for other files. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^(\d{16})\.seg$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * Creates `dir` (and missing parents) and makes the new entries durable: the parent of every directory created is
 * fsynced, so a crash right after the first acknowledged write cannot lose the directory holding it.
 * @throws CollectorError `SPOOL_IO` naming the path and what to do.
 */
export async function ensureDir(dir: string): Promise<void> {
  let first: string | undefined;
  try {
    first = await mkdir(dir, { recursive: true });
  } catch (err) {
    throw dirError(dir, err);
  }
  if (first === undefined) return;
  const parents: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    parents.push(dirname(d));
    if (d === first || dirname(d) === d) break;
  }
  try {
    for (const p of parents) await fsyncDir(p);
  } catch (err) {
    throw dirError(dir, err);
  }
}

/** A `SPOOL_IO` error for a directory that cannot be created or read, with advice that fits the errno. */
export function dirError(path: string, cause: unknown): CollectorError {
  const code = (cause as NodeJS.ErrnoException)?.code;
  const advice =
    code === 'EEXIST' || code === 'ENOTDIR'
      ? 'a file that is not a directory is in the way; move it or choose another --spool'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
        ? 'this process may not create or write it; choose a writable --spool or fix its permissions'
        : 'check the disk holding the spool';
  return new CollectorError(
    'SPOOL_IO',
    `cannot use the spool directory ${path}${code ? ` (${code})` : ''}: ${advice}`,
    { cause },
  );
}
