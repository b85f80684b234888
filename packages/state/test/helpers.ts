import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Header } from 'tar';
import { afterEach } from 'vitest';
import { createStateKernel, type StateKernel, type StateKernelOptions, type StateSlot } from '../src/index.js';

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A fresh temporary directory, removed after the test. */
export async function tempDir(prefix = 'vyr-state-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A kernel over a fresh data directory (no background sweep), recovered and closed after the test. */
export async function openKernel(options: Partial<StateKernelOptions> = {}): Promise<StateKernel> {
  const dataDir = options.dataDir ?? (await tempDir('vyr-state-data-'));
  const kernel = createStateKernel({ sweepIntervalMs: 0, ...options, dataDir });
  cleanups.push(() => kernel.close());
  await kernel.recover();
  return kernel;
}

/** Registers a cleanup to run after the current test. */
export function onCleanup(fn: () => Promise<void>): void {
  cleanups.push(fn);
}

/** Writes `files` (relative path -> content) under `root`, creating parents. */
export async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, rel)), { recursive: true });
    await writeFile(join(root, rel), content);
  }
}

/** Declared slots of a typical artifact: `data` rw at /data, `config` ro at /etc/app. */
export const SLOTS: StateSlot[] = [
  { name: 'data', mount: '/data', access: 'rw' },
  { name: 'config', mount: '/etc/app', access: 'ro' },
];

/** One raw tar entry for {@link craftTar}. */
export interface RawTarEntry {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  body?: string;
  linkpath?: string;
  mode?: number;
  /** Declared size when it should differ from the body (e.g. to claim a huge file). */
  size?: number;
}

/**
 * Writes a tar with exactly these headers, bypassing any sanitising a tar library does on creation: the way an
 * attacker would craft one.
 */
export async function craftTar(file: string, entries: RawTarEntry[]): Promise<void> {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const header = new Header({
      path: e.path,
      type: e.type,
      mode: e.mode ?? (e.type === 'Directory' ? 0o755 : 0o644),
      size: e.size ?? body.length,
      linkpath: e.linkpath ?? '',
      mtime: new Date(0),
      uid: 0,
      gid: 0,
    });
    header.encode();
    blocks.push(header.block!);
    if (body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  await writeFile(file, Buffer.concat(blocks));
}
