/**
 * The canonical walk over an instance directory, the content digest built on it, and the containment check for
 * symlinks. The digest algorithm is specified byte for byte in docs/state.md; change both together.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { StateDigest } from './types.js';

/** Entry types that take part in the digest: regular file, directory, symbolic link. */
export type TreeEntryType = 'f' | 'd' | 'l';

/** One entry of the canonical walk. */
export interface TreeEntry {
  /** Relative path, `/`-separated, no leading `./`, no trailing `/`. */
  path: string;
  /** UTF-8 bytes of `path`, the sort key. */
  key: Buffer;
  type: TreeEntryType;
  /** Normalised mode (see {@link canonicalMode}). */
  mode: number;
  /** Permission bits as found on disk. */
  rawMode: number;
  /** File: byte length. Directory: 0. Symlink: byte length of the target. */
  size: number;
  /** Symlink target as stored. */
  linkTarget?: string;
  /** Device, inode and link count as the walk saw them (lstat), to detect swaps and hard links. */
  dev: number;
  ino: number;
  nlink: number;
}

/** Result of walking a tree: entries sorted by bytewise path, and entries of other types (FIFOs, sockets, …). */
export interface TreeWalk {
  entries: TreeEntry[];
  /** Relative paths of entries that are not file/directory/symlink; never part of the digest. */
  others: string[];
}

/** Summary of a tree: its digest, byte and entry counts. */
export interface TreeSummary {
  digest: StateDigest;
  /** Sum of regular-file sizes. */
  bytes: number;
  /** Number of digest records (files + directories + symlinks). */
  entries: number;
}

/** Version tag that starts the digest stream. */
export const DIGEST_HEADER = 'vyr-state-digest/v1\n';

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/**
 * The mode recorded for an entry. WASI guests cannot set permissions and hosts differ in umask, so only what git
 * also keeps survives: a file is `0755` if its owner-execute bit is set, else `0644`; directories are `0755`;
 * symlinks `0777`.
 */
export function canonicalMode(type: TreeEntryType, rawMode: number): number {
  if (type === 'd') return 0o755;
  if (type === 'l') return 0o777;
  return rawMode & 0o100 ? 0o755 : 0o644;
}

function typeOf(st: Stats): TreeEntryType | undefined {
  if (st.isFile()) return 'f';
  if (st.isDirectory()) return 'd';
  if (st.isSymbolicLink()) return 'l';
  return undefined;
}

/**
 * Walks `root` (not following symlinks) and returns every entry below it, sorted by the bytewise order of the UTF-8
 * relative path. `root` itself is not an entry.
 */
export async function walkTree(root: string): Promise<TreeWalk> {
  const entries: TreeEntry[] = [];
  const others: string[] = [];
  // Breadth-first, one directory level at a time, with the lstat calls of a level in parallel: a sequential walk
  // of 1,000 files spends most of its time waiting on the thread pool.
  let level: string[] = [''];
  while (level.length > 0) {
    const listed = await Promise.all(
      level.map(async (rel) => {
        const names = await readdir(rel === '' ? root : join(root, rel));
        return names.map((name) => (rel === '' ? name : `${rel}/${name}`));
      }),
    );
    const paths = listed.flat();
    const found = await mapLimit(paths, STAT_CONCURRENCY, async (path) => {
      const st = await lstat(join(root, path));
      const type = typeOf(st);
      if (type === undefined) return { path, entry: undefined };
      const entry: TreeEntry = {
        path,
        key: Buffer.from(path, 'utf8'),
        type,
        mode: canonicalMode(type, st.mode),
        rawMode: st.mode & 0o7777,
        size: type === 'f' ? st.size : 0,
        dev: st.dev,
        ino: st.ino,
        nlink: st.nlink,
      };
      if (type === 'l') {
        entry.linkTarget = await readlink(join(root, path));
        entry.size = Buffer.byteLength(entry.linkTarget, 'utf8');
      }
      return { path, entry };
    });
    level = [];
    for (const { path, entry } of found) {
      if (!entry) {
        others.push(path);
        continue;
      }
      if (entry.type === 'd') level.push(path);
      entries.push(entry);
    }
  }
  entries.sort((a, b) => Buffer.compare(a.key, b.key));
  others.sort();
  return { entries, others };
}

const STAT_CONCURRENCY = 16;

/** `Promise.all(items.map(fn))` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** SHA-256 (hex) of a file's content, read through `buffer`. Also returns the number of bytes read. */
async function hashFile(path: string, buffer: Buffer): Promise<{ hex: string; size: number }> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return { hex: hash.digest('hex'), size };
}

/** Files hashed in parallel; small trees are dominated by open/close latency, not by SHA-256. */
const HASH_CONCURRENCY = 8;
const READ_BUFFER_BYTES = 256 * 1024;

/**
 * Computes the content digest of the tree at `root` (docs/state.md, "Content digest"): one record per entry in
 * bytewise path order, `TYPE SP MODE SP SIZE SP SHA256 SP PATH NUL`, after the header `vyr-state-digest/v1\n`,
 * hashed with SHA-256. Sizes are the bytes actually read, so a file growing during the walk cannot produce a record
 * whose size and hash disagree.
 */
export async function digestTree(root: string, walk?: TreeWalk): Promise<TreeSummary & { others: string[] }> {
  const { entries, others } = walk ?? (await walkTree(root));
  const hashes = new Array<string>(entries.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    for (let i = next++; i < entries.length; i = next++) {
      const entry = entries[i]!;
      if (entry.type === 'f') {
        const { hex, size } = await hashFile(join(root, entry.path), buffer);
        hashes[i] = hex;
        entry.size = size;
      } else if (entry.type === 'l') {
        hashes[i] = createHash('sha256').update(entry.linkTarget!, 'utf8').digest('hex');
      } else {
        hashes[i] = EMPTY_SHA256;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, entries.length) }, worker));
  const outer = createHash('sha256').update(DIGEST_HEADER, 'utf8');
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (e.type === 'f') bytes += e.size;
    outer.update(`${e.type} ${e.mode.toString(8).padStart(4, '0')} ${e.size} ${hashes[i]} `, 'utf8');
    outer.update(e.key);
    outer.update(NUL);
  }
  return { digest: `sha256:${outer.digest('hex')}`, bytes, entries: entries.length, others };
}

const NUL = Buffer.from([0]);

/** Maximum symlinks followed while resolving one path (Linux's MAXSYMLINKS). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Whether following the symlink at `linkPath` (relative to `root`) stays inside `root`. The target is resolved
 * component by component against the real tree, following symlinks it meets (so `d -> .` followed by `d/../x` is
 * caught, which a purely lexical check misses). Components that do not exist are taken lexically. An absolute
 * target, a `..` above the root, or more than 40 hops is outside.
 */
export async function symlinkStaysInside(root: string, linkPath: string): Promise<boolean> {
  const stack = linkPath.split('/').slice(0, -1);
  let pending = (await readlink(join(root, linkPath))).split('/');
  if (pending[0] === '') return false; // absolute target
  let hops = 0;
  while (pending.length > 0) {
    const component = pending.shift()!;
    if (component === '' || component === '.') continue;
    if (component === '..') {
      if (stack.length === 0) return false;
      stack.pop();
      continue;
    }
    const candidate = [...stack, component].join('/');
    let st: Stats | undefined;
    try {
      st = await lstat(join(root, candidate));
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink()) {
      if (++hops > MAX_SYMLINK_HOPS) return false;
      const target = await readlink(join(root, candidate));
      if (target.startsWith('/')) return false;
      pending = [...target.split('/'), ...pending];
      continue;
    }
    stack.push(component);
  }
  return true;
}
