import { execFileSync } from 'node:child_process';
import {
  link,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import { describe, expect, it } from 'vitest';
import { digestTree } from '../src/index.js';
import { copySeedEntries } from '../src/seed.js';
import { walkTree } from '../src/tree.js';
import { expectCode } from './expect.js';
import { craftTar, openKernel, type RawTarEntry, tempDir, writeTree } from './helpers.js';

/** The kernel leaves nothing behind after a refused seed: no instance, no staging directory. */
async function expectNothingLeft(kernel: Awaited<ReturnType<typeof openKernel>>): Promise<void> {
  expect(kernel.list()).toEqual([]);
  expect(await readdir(join(kernel.dataDir, 'instances'))).toEqual([]);
  expect(await readdir(join(kernel.dataDir, 'tmp'))).toEqual([]);
}

describe('seeding from a directory', () => {
  it('copies files, directories and inside symlinks, with canonical modes and the same digest as the source', async () => {
    const kernel = await openKernel();
    const src = await tempDir();
    await writeTree(src, { 'conf/app.toml': 'port = 8080\n', 'bin/tool': '#!/bin/sh\n', 'deep/a/b/c.txt': 'c' });
    execFileSync('chmod', ['0775', join(src, 'bin/tool')]);
    await symlink('../conf/app.toml', join(src, 'bin/config-link'));
    const info = await kernel.create({ scope: 'named', seed: { dir: src } });
    const root = info.hostPath;
    expect(await readFile(join(root, 'conf/app.toml'), 'utf8')).toBe('port = 8080\n');
    expect(await readlink(join(root, 'bin/config-link'))).toBe('../conf/app.toml');
    expect((await stat(join(root, 'bin/tool'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(root, 'conf/app.toml'))).mode & 0o777).toBe(0o644);
    expect(info.digest).toBe((await digestTree(src)).digest);
    expect(info).toMatchObject({ bytes: 'port = 8080\n'.length + '#!/bin/sh\n'.length + 1, entries: 9 });
  });

  it.each([
    ['a symlink to an absolute path', (src: string) => symlink('/etc/passwd', join(src, 'pw'))],
    ['a symlink climbing out with ..', (src: string) => symlink('../../../etc/passwd', join(src, 'pw'))],
    [
      'a symlink that escapes through another symlink (d -> ., x -> d/../outside)',
      async (src: string) => {
        await symlink('.', join(src, 'd'));
        await symlink('d/../outside', join(src, 'x'));
      },
    ],
    ['a FIFO', (src: string) => execFileSync('mkfifo', [join(src, 'pipe')])],
    ['a character device', (src: string) => execFileSync('mknod', [join(src, 'null'), 'c', '1', '3'])],
  ])('refuses %s with UNSAFE_SEED_ENTRY', async (_what, plant) => {
    const kernel = await openKernel();
    const src = await tempDir();
    await writeTree(src, { 'ok.txt': 'fine' });
    await plant(src);
    await expectCode(kernel.create({ scope: 'named', seed: { dir: src } }), 'UNSAFE_SEED_ENTRY');
    await expectNothingLeft(kernel);
  });

  it('refuses a hard link to a file outside the seed (UNSAFE_SEED_ENTRY naming it), writing nothing', async () => {
    const kernel = await openKernel();
    const outside = await tempDir();
    await writeFile(join(outside, 'secret'), 'not yours');
    const src = await tempDir();
    await writeTree(src, { 'ok.txt': 'fine' });
    await mkdir(join(src, 'etc'));
    await link(join(outside, 'secret'), join(src, 'etc/host'));
    await expectCode(
      kernel.create({ scope: 'named', seed: { dir: src } }),
      'UNSAFE_SEED_ENTRY',
      /'etc\/host'.*hard link/,
    );
    await expectNothingLeft(kernel);
  });

  it('accepts hard links whose every name is inside the seed, copying each name', async () => {
    const kernel = await openKernel();
    const src = await tempDir();
    await writeTree(src, { 'a.txt': 'shared' });
    await mkdir(join(src, 'sub'));
    await link(join(src, 'a.txt'), join(src, 'sub/b.txt'));
    const info = await kernel.create({ scope: 'named', seed: { dir: src } });
    expect(await readFile(join(info.hostPath, 'sub/b.txt'), 'utf8')).toBe('shared');
    expect(info.digest).toBe((await digestTree(src)).digest);
  });

  it('refuses a file reached through a parent directory swapped for a symlink after the walk', async () => {
    // O_NOFOLLOW guards only the last component; the copy compares the opened file's device/inode with the walk's.
    const src = await tempDir();
    await writeTree(src, { 'conf/app.toml': 'port = 1\n' });
    const walk = await walkTree(src);
    const outside = await tempDir();
    await writeTree(outside, { 'app.toml': 'secret = "outside"\n' });
    await rename(join(src, 'conf'), join(src, 'conf-old'));
    await symlink(outside, join(src, 'conf'));
    const dest = await tempDir();
    await expectCode(copySeedEntries(src, dest, walk.entries, 'test'), 'UNSAFE_SEED_ENTRY', /'conf\/app.toml'/);
    await expect(readFile(join(dest, 'conf/app.toml'), 'utf8')).rejects.toThrow(/ENOENT/);
  });

  it('refuses a file replaced by another after the walk', async () => {
    const src = await tempDir();
    await writeTree(src, { 'data.bin': 'original' });
    const walk = await walkTree(src);
    const outside = await tempDir();
    await writeTree(outside, { other: 'other content' });
    await rm(join(src, 'data.bin'));
    await link(join(outside, 'other'), join(src, 'data.bin'));
    await expectCode(copySeedEntries(src, await tempDir(), walk.entries, 'test'), 'UNSAFE_SEED_ENTRY', /data\.bin/);
  });

  it('refuses seeds over the byte or the entry quota before copying', async () => {
    const kernel = await openKernel();
    const src = await tempDir();
    await writeTree(src, { a: 'x'.repeat(600), b: 'y'.repeat(600) });
    await expectCode(
      kernel.create({ scope: 'named', quotaBytes: 1000, seed: { dir: src } }),
      'QUOTA_EXCEEDED',
      /1200 bytes/,
    );
    await expectCode(
      kernel.create({ scope: 'named', quotaEntries: 1, seed: { dir: src } }),
      'QUOTA_EXCEEDED',
      /2 entries/,
    );
    await expectNothingLeft(kernel);
    // Exactly at the quota is fine.
    const ok = await kernel.create({ scope: 'named', quotaBytes: 1200, quotaEntries: 2, seed: { dir: src } });
    expect(ok).toMatchObject({ bytes: 1200, entries: 2 });
  });

  it('refuses a seed directory that does not exist, or is a file', async () => {
    const kernel = await openKernel();
    const dir = await tempDir();
    await writeFile(join(dir, 'file'), 'x');
    await expectCode(kernel.create({ scope: 'named', seed: { dir: join(dir, 'missing') } }), 'INVALID_ARGUMENT');
    await expectCode(kernel.create({ scope: 'named', seed: { dir: join(dir, 'file') } }), 'INVALID_ARGUMENT');
  });
});

describe('seeding from a tar', () => {
  it('extracts a tar made by the tar tool, with the same digest as the directory it came from', async () => {
    const kernel = await openKernel();
    const src = await tempDir();
    await writeTree(src, { 'models/weights.bin': Buffer.alloc(70_000, 7), README: 'hi' });
    await symlink('models/weights.bin', join(src, 'latest'));
    const file = join(await tempDir(), 'seed.tar.gz');
    await tar.c({ file, cwd: src, gzip: true }, ['.']);
    const info = await kernel.create({ scope: 'named', seed: { tar: file } });
    expect(info.digest).toBe((await digestTree(src)).digest);
    expect((await lstat(join(info.hostPath, 'latest'))).isSymbolicLink()).toBe(true);
  });

  const unsafeTars: Array<[string, RawTarEntry[]]> = [
    ['an entry with ..', [{ path: '../escape.txt', type: 'File', body: 'x' }]],
    ['an entry with .. in the middle', [{ path: 'a/../../escape.txt', type: 'File', body: 'x' }]],
    ['an absolute entry', [{ path: '/etc/cron.d/evil', type: 'File', body: 'x' }]],
    ['a character device', [{ path: 'dev-null', type: 'CharacterDevice' }]],
    ['a block device', [{ path: 'sda', type: 'BlockDevice' }]],
    ['a FIFO', [{ path: 'fifo', type: 'FIFO' }]],
    ['a symlink to an absolute path', [{ path: 'pw', type: 'SymbolicLink', linkpath: '/etc/passwd' }]],
    ['a symlink climbing out', [{ path: 'sub/pw', type: 'SymbolicLink', linkpath: '../../etc/passwd' }]],
    [
      'a symlink escaping through another symlink',
      [
        { path: 'd', type: 'SymbolicLink', linkpath: '.' },
        { path: 'x', type: 'SymbolicLink', linkpath: 'd/../outside' },
      ],
    ],
    [
      'a file written through a symlinked directory',
      [
        { path: 'out', type: 'SymbolicLink', linkpath: '/tmp' },
        { path: 'out/evil.txt', type: 'File', body: 'x' },
      ],
    ],
    ['a hard link to a path outside', [{ path: 'h', type: 'Link', linkpath: '../../etc/passwd' }]],
    ['a hard link to an absolute path', [{ path: 'h', type: 'Link', linkpath: '/etc/passwd' }]],
  ];

  it.each(unsafeTars)('refuses a crafted tar with %s (UNSAFE_SEED_ENTRY), writing nothing', async (_what, entries) => {
    const kernel = await openKernel();
    const file = join(await tempDir(), 'evil.tar');
    await craftTar(file, [{ path: 'fine.txt', type: 'File', body: 'ok' }, ...entries]);
    await expectCode(kernel.create({ scope: 'named', seed: { tar: file } }), 'UNSAFE_SEED_ENTRY');
    await expectNothingLeft(kernel);
  });

  it('refuses a hard link written through a symlinked directory, naming the entry, and leaves no staging behind', async () => {
    // node-tar refuses `d/h` (TAR_SYMLINK_ERROR: `d` is a symlink) but keeps extracting the later entries; the
    // refusal must still come out as UNSAFE_SEED_ENTRY naming the entry, after extraction stopped writing.
    const kernel = await openKernel();
    const file = join(await tempDir(), 'link-through-symlink.tar');
    const many: RawTarEntry[] = Array.from({ length: 200 }, (_, i) => ({
      path: `sub/later-${i}.txt`,
      type: 'File',
      body: 'x'.repeat(2000),
    }));
    await craftTar(file, [
      { path: 'sub/', type: 'Directory' },
      { path: 'f', type: 'File', body: 'target' },
      { path: 'd', type: 'SymbolicLink', linkpath: 'sub' },
      { path: 'd/h', type: 'Link', linkpath: 'f' },
      ...many,
    ]);
    await expectCode(kernel.create({ scope: 'named', seed: { tar: file } }), 'UNSAFE_SEED_ENTRY', /'d\/h'/);
    await expectNothingLeft(kernel);
  });

  it('refuses a tar over the quota from its headers, before extracting', async () => {
    const kernel = await openKernel();
    const file = join(await tempDir(), 'big.tar');
    await craftTar(file, [
      { path: 'a', type: 'File', body: 'x'.repeat(800) },
      { path: 'b', type: 'File', body: 'y'.repeat(800) },
    ]);
    await expectCode(kernel.create({ scope: 'named', quotaBytes: 1000, seed: { tar: file } }), 'QUOTA_EXCEEDED');
    await expectCode(kernel.create({ scope: 'named', quotaEntries: 1, seed: { tar: file } }), 'QUOTA_EXCEEDED');
    await expectNothingLeft(kernel);
  });

  it('refuses a file that is not a tar, and a missing file, with INVALID_ARGUMENT', async () => {
    const kernel = await openKernel();
    const dir = await tempDir();
    await writeFile(join(dir, 'not.tar'), 'this is not a tar archive at all'.repeat(40));
    await expectCode(kernel.create({ scope: 'named', seed: { tar: join(dir, 'not.tar') } }), 'INVALID_ARGUMENT');
    await expectCode(kernel.create({ scope: 'named', seed: { tar: join(dir, 'missing.tar') } }), 'INVALID_ARGUMENT');
    await mkdir(join(dir, 'sub'));
    await expectCode(kernel.create({ scope: 'named', seed: { tar: join(dir, 'sub') } }), 'INVALID_ARGUMENT');
    await expectNothingLeft(kernel);
  });

  it('accepts a hard link to an earlier entry inside the archive', async () => {
    const kernel = await openKernel();
    const file = join(await tempDir(), 'links.tar');
    await craftTar(file, [
      { path: 'a.txt', type: 'File', body: 'shared' },
      { path: 'b.txt', type: 'Link', linkpath: 'a.txt' },
    ]);
    const info = await kernel.create({ scope: 'named', seed: { tar: file } });
    expect(await readFile(join(info.hostPath, 'b.txt'), 'utf8')).toBe('shared');
  });
});
