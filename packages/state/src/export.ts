/**
 * Export of an instance to a directory or to a deterministic tar. The tar holds the canonical walk in bytewise path
 * order with canonical modes, uid/gid 0, empty user/group names and mtime 0, so the same content gives the same
 * bytes on every machine (ustar headers, PAX extended headers only for names over 100 bytes).
 */
import { randomBytes } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import { mkdir, open, readlink, rename, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Header, Pax } from 'tar';
import { StateError } from './errors.js';
import type { TreeEntry } from './tree.js';

const BLOCK = 512;
const EPOCH = new Date(0);

function headerBlocks(entry: TreeEntry): Buffer[] {
  const path = entry.type === 'd' ? `${entry.path}/` : entry.path;
  const header = new Header({
    path,
    mode: entry.mode,
    uid: 0,
    gid: 0,
    size: entry.type === 'f' ? entry.size : 0,
    mtime: EPOCH,
    type: entry.type === 'f' ? 'File' : entry.type === 'd' ? 'Directory' : 'SymbolicLink',
    linkpath: entry.type === 'l' ? entry.linkTarget! : '',
    uname: '',
    gname: '',
  });
  const blocks: Buffer[] = [];
  // encode() returns true when a field does not fit ustar: prepend a PAX header with just those fields.
  if (header.encode()) {
    const pax = new Pax({ path, linkpath: entry.type === 'l' ? entry.linkTarget : undefined, mtime: EPOCH });
    blocks.push(pax.encode());
  }
  blocks.push(header.block!);
  return blocks;
}

async function* tarStream(root: string, entries: readonly TreeEntry[]): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    yield* headerBlocks(entry);
    if (entry.type !== 'f') continue;
    let written = 0;
    const handle = await open(join(root, entry.path), constants.O_RDONLY | constants.O_NOFOLLOW);
    for await (const chunk of handle.createReadStream()) {
      const buf = chunk as Buffer;
      // Never write more than the header announced, even if the file grew.
      const take = Math.min(buf.length, entry.size - written);
      if (take > 0) yield buf.subarray(0, take);
      written += take;
    }
    if (written !== entry.size) {
      throw new StateError('IO_ERROR', `file '${entry.path}' changed size during export; export again`);
    }
    const pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK * 2);
}

/**
 * Writes `entries` of `root` as a deterministic tar to `out`, atomically and durably: a temp file next to `out`,
 * fsynced, renamed over `out`, then the directory fsynced so the rename itself survives a power loss (rename(2)
 * only orders the name change, it does not persist it).
 */
export async function exportTar(root: string, entries: readonly TreeEntry[], out: string): Promise<void> {
  const tmp = `${out}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    // `flush`: the stream fsyncs the file before closing it, and the pipeline settles only after that close.
    await pipeline(tarStream(root, entries), createWriteStream(tmp, { flags: 'wx', mode: 0o644, flush: true }));
    await rename(tmp, out);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDirectory(dirname(out));
}

/** fsync(2) on a directory, persisting the names created or renamed in it. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Copies `entries` of `root` into the (existing, empty) directory `out`, with canonical modes. */
export async function exportDir(root: string, entries: readonly TreeEntry[], out: string): Promise<void> {
  for (const entry of entries) {
    const from = join(root, entry.path);
    const to = join(out, entry.path);
    if (entry.type === 'd') await mkdir(to, { mode: entry.mode });
    else if (entry.type === 'l') await symlink(await readlink(from), to);
    else {
      const handle = await open(from, constants.O_RDONLY | constants.O_NOFOLLOW);
      await pipeline(handle.createReadStream(), createWriteStream(to, { flags: 'wx', mode: entry.mode }));
    }
  }
}
