/**
 * Seeding a new instance from a directory or a tar. Everything is materialised in a staging directory, then checked
 * again and normalised there, so the instance directory only ever holds a tree that passed every check. Refused
 * (UNSAFE_SEED_ENTRY): `..` components, absolute paths, devices, FIFOs, sockets, symlinks that lead outside the
 * tree, hard links whose other names are outside it, files swapped between the walk and the copy. Refused
 * (QUOTA_EXCEEDED): more bytes or entries than the quota, found before copying.
 */
import { constants, createWriteStream } from 'node:fs';
import { chmod, lstat, mkdir, open, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { StateError } from './errors.js';
import { mapLimit, symlinkStaysInside, type TreeEntry, type TreeWalk, walkTree } from './tree.js';

const COPY_CONCURRENCY = 8;
/** Files up to this size are copied with one read and one write instead of streams. */
const SMALL_FILE_BYTES = 4 * 1024 * 1024;

/** Limits a seed must fit in. */
export interface SeedLimits {
  quotaBytes: number;
  quotaEntries: number;
}

function checkQuota(bytes: number, entries: number, limits: SeedLimits, source: string): void {
  if (bytes > limits.quotaBytes) {
    throw new StateError(
      'QUOTA_EXCEEDED',
      `seed ${source} holds ${bytes} bytes, over the quota of ${limits.quotaBytes}; raise quotaBytes or shrink the seed`,
    );
  }
  if (entries > limits.quotaEntries) {
    throw new StateError(
      'QUOTA_EXCEEDED',
      `seed ${source} holds ${entries} entries, over the quota of ${limits.quotaEntries}; raise quotaEntries or shrink the seed`,
    );
  }
}

function unsafe(source: string, path: string, why: string): StateError {
  return new StateError('UNSAFE_SEED_ENTRY', `seed ${source}: entry '${path}' ${why}; remove it from the seed`);
}

/**
 * Checks a materialised tree (types, symlink containment, quota) and normalises modes to the canonical ones
 * (files 0644/0755, directories 0755), so that what is on disk matches what the digest records.
 */
export async function verifyAndNormalize(root: string, limits: SeedLimits, source: string): Promise<void> {
  const walk = await walkTree(root);
  const bytes = await refuseUnsafeEntries(root, walk, source, 'state');
  checkQuota(bytes, walk.entries.length, limits, source);
  const wrong = walk.entries.filter((e) => e.type !== 'l' && e.rawMode !== e.mode);
  await mapLimit(wrong, COPY_CONCURRENCY, (e) => chmod(join(root, e.path), e.mode));
}

/**
 * Refuses entries a walked tree may not hold: devices, FIFOs and sockets, and symlinks that lead outside `root`
 * (`within` names it in the message). Returns the sum of regular-file sizes, for the quota check.
 */
async function refuseUnsafeEntries(
  root: string,
  walk: TreeWalk,
  source: string,
  within: 'seed' | 'state',
): Promise<number> {
  if (walk.others.length > 0) throw unsafe(source, walk.others[0]!, 'is a device, FIFO or socket');
  let bytes = 0;
  for (const entry of walk.entries) {
    if (entry.type === 'l' && !(await symlinkStaysInside(root, entry.path))) {
      throw unsafe(source, entry.path, `is a symlink to '${entry.linkTarget}', which leads outside the ${within}`);
    }
    if (entry.type === 'f') bytes += entry.size;
  }
  return bytes;
}

/**
 * Copies the regular file `entry` of `src` to `to`, refusing anything but the file the walk recorded. O_NOFOLLOW
 * only covers the last component: a parent directory swapped for a symlink after the walk would make `open` reach
 * another file, so the opened file's device and inode must equal the walk's.
 */
async function copyRegularFile(src: string, entry: TreeEntry, to: string, source: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(join(src, entry.path), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENOENT') {
      throw new StateError('UNSAFE_SEED_ENTRY', `seed ${source}: entry '${entry.path}' changed while copying`, {
        cause: err,
      });
    }
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.dev !== entry.dev || st.ino !== entry.ino) {
      throw unsafe(source, entry.path, 'was replaced (or reached through a swapped-in symlink) while copying');
    }
    const mode = entry.mode;
    if (st.size <= SMALL_FILE_BYTES) {
      await writeFile(to, await handle.readFile(), { flag: 'wx', mode });
    } else {
      await pipeline(handle.createReadStream({ autoClose: false }), createWriteStream(to, { flags: 'wx', mode }));
    }
  } finally {
    await handle.close();
  }
}

/** Seeds `dest` (an empty staging directory) from the directory `src`. */
export async function seedFromDir(src: string, dest: string, limits: SeedLimits): Promise<void> {
  const source = `directory '${src}'`;
  let rootStat: Awaited<ReturnType<typeof lstat>>;
  try {
    rootStat = await lstat(src);
  } catch (err) {
    throw new StateError('INVALID_ARGUMENT', `${source} cannot be read; pass an existing directory`, { cause: err });
  }
  if (!rootStat.isDirectory()) throw new StateError('INVALID_ARGUMENT', `${source} is not a directory`);
  // Pre-pass over the source: refuse early, before copying anything.
  const walk = await walkTree(src);
  const bytes = await refuseUnsafeEntries(src, walk, source, 'seed');
  refuseOutsideHardLinks(walk.entries, source);
  checkQuota(bytes, walk.entries.length, limits, source);
  await copySeedEntries(src, dest, walk.entries, source);
  await verifyAndNormalize(dest, limits, source);
}

/**
 * Refuses a regular file with more links than the walk found inside the seed: its other names are outside, so it
 * is (or could be) a file of someone else's, e.g. `ln /etc/shadow seed/x`. Links that are all inside the seed are
 * fine; each name is copied as its own file.
 */
function refuseOutsideHardLinks(entries: readonly TreeEntry[], source: string): void {
  const seen = new Map<string, number>();
  const key = (e: TreeEntry) => `${e.dev}:${e.ino}`;
  for (const e of entries) if (e.type === 'f' && e.nlink > 1) seen.set(key(e), (seen.get(key(e)) ?? 0) + 1);
  for (const e of entries) {
    if (e.type === 'f' && e.nlink > 1 && (seen.get(key(e)) ?? 0) < e.nlink) {
      throw unsafe(
        source,
        e.path,
        `is a hard link with ${e.nlink} names, ${seen.get(key(e))} of them inside the seed; copy the file instead of linking it`,
      );
    }
  }
}

/**
 * Copies walked `entries` of `src` into `dest`: directories first (parents sort before children), then files and
 * links in parallel. A file that is no longer the one the walk recorded (same device and inode) is refused with
 * `UNSAFE_SEED_ENTRY`. Exported for tests that swap the source between the walk and the copy.
 */
export async function copySeedEntries(
  src: string,
  dest: string,
  entries: readonly TreeEntry[],
  source: string,
): Promise<void> {
  for (const entry of entries) if (entry.type === 'd') await mkdir(join(dest, entry.path), { mode: 0o755 });
  await mapLimit(
    entries.filter((e) => e.type !== 'd'),
    COPY_CONCURRENCY,
    async (entry) => {
      const to = join(dest, entry.path);
      if (entry.type === 'l') await symlink(await readlink(join(src, entry.path)), to);
      else await copyRegularFile(src, entry, to, source);
    },
  );
}

/** Tar entry types a seed may hold. */
const ALLOWED_TAR_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/** Normalises a tar entry path, refusing absolute paths and `..` components. Returns '' for the root entry. */
function checkTarPath(source: string, raw: string, what: string): string {
  if (raw.includes('\0')) throw unsafe(source, raw, `has a NUL byte in its ${what}`);
  if (raw.startsWith('/') || raw.startsWith('\\') || /^[A-Za-z]:/.test(raw)) {
    throw unsafe(source, raw, `has an absolute ${what}`);
  }
  const parts = raw.split(/[/\\]/).filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(source, raw, `has a '..' component in its ${what}`);
  return parts.join('/');
}

/** The entry a node-tar warning is about: its `entry` (a ReadEntry), else the `path` of the error. */
function warnedPath(data: Record<string, unknown>): string {
  const entryPath = (data.entry as { path?: unknown } | undefined)?.path;
  if (typeof entryPath === 'string') return entryPath;
  return typeof data.path === 'string' ? data.path : '(unknown entry)';
}

/** Seeds `dest` (an empty staging directory) from the tar file `file` (plain or gzip). */
export async function seedFromTar(file: string, dest: string, limits: SeedLimits): Promise<void> {
  const source = `tar '${file}'`;
  try {
    const st = await lstat(file);
    if (!st.isFile()) throw new Error('not a regular file');
  } catch (err) {
    throw new StateError('INVALID_ARGUMENT', `${source} cannot be read; pass an existing .tar file`, { cause: err });
  }
  // Pass 1: list and refuse, without writing anything.
  let bytes = 0;
  let entries = 0;
  let refusal: StateError | undefined;
  try {
    await tar.t({
      file,
      strict: true,
      onReadEntry: (entry) => {
        if (refusal) return;
        try {
          const path = checkTarPath(source, entry.path, 'path');
          if (!ALLOWED_TAR_TYPES.has(entry.type)) {
            throw unsafe(source, entry.path, `has type ${entry.type}, which a state seed cannot hold`);
          }
          if (entry.type === 'SymbolicLink') {
            const target = entry.linkpath ?? '';
            if (target.startsWith('/'))
              throw unsafe(source, entry.path, `is a symlink to the absolute path '${target}'`);
            // Lexical pre-check; the tree-aware check runs after extraction.
            const depth = path.split('/').length - 1;
            let level = depth;
            for (const part of target.split('/')) {
              if (part === '..') level--;
              else if (part !== '' && part !== '.') level++;
              if (level < 0)
                throw unsafe(source, entry.path, `is a symlink to '${target}', which leads outside the state`);
            }
          }
          if (entry.type === 'Link') checkTarPath(source, entry.linkpath ?? '', 'hard-link target');
          if (path !== '') entries++;
          if (entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') {
            bytes += entry.size ?? 0;
          }
          checkQuota(bytes, entries, limits, source);
        } catch (err) {
          refusal = err as StateError;
        }
      },
    });
  } catch (err) {
    throw new StateError('INVALID_ARGUMENT', `${source} is not a readable tar archive: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (refusal) throw refusal;
  // Pass 2: extract into staging. node-tar also refuses to write through symlinks; ownership is never restored.
  // Not `strict`: in strict mode node-tar rejects on the first refused entry while its writes of later entries are
  // still in flight, so the caller's cleanup races them. Non-strict, every refusal arrives as a warning and the
  // promise settles only once extraction has ended; any warning then refuses the whole seed, naming its entry.
  let firstWarning: { path: string; why: string; cause: unknown } | undefined;
  try {
    await tar.x({
      file,
      cwd: dest,
      strict: false,
      preserveOwner: false,
      noMtime: true,
      // Once one entry is refused, skip (read past) the rest instead of writing them.
      filter: () => firstWarning === undefined,
      onwarn: (code, message, data) => {
        const tarCode = data.code ?? code;
        const text = message.startsWith(`${tarCode}:`) ? message : `${tarCode}: ${message}`;
        firstWarning ??= { path: warnedPath(data), why: `could not be extracted safely (${text})`, cause: data };
      },
    });
  } catch (err) {
    throw new StateError('UNSAFE_SEED_ENTRY', `${source} could not be extracted safely: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (firstWarning) {
    throw new StateError(
      'UNSAFE_SEED_ENTRY',
      `seed ${source}: entry '${firstWarning.path}' ${firstWarning.why}; remove it from the seed`,
      { cause: firstWarning.cause },
    );
  }
  await verifyAndNormalize(dest, limits, source);
}
