import { chmod, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { digestTree } from '../src/index.js';
import { tempDir, writeTree } from './helpers.js';

/** The worked example of docs/state.md ("Test vector"); also reproduced by an independent Python script. */
async function buildGoldenTree(root: string): Promise<void> {
  await mkdir(join(root, 'a'));
  await mkdir(join(root, 'bin'));
  await mkdir(join(root, 'empty'));
  await writeFile(join(root, 'hello.txt'), 'hello\n');
  await writeFile(join(root, 'a/z'), 'z');
  await writeFile(join(root, 'a-b'), 'ab');
  await writeFile(join(root, 'bin/run.sh'), '#!/bin/sh\necho hi\n');
  await chmod(join(root, 'bin/run.sh'), 0o755);
  await symlink('hello.txt', join(root, 'link'));
}

describe('content digest (docs/state.md)', () => {
  it('reproduces the documented test vector', async () => {
    const root = await tempDir();
    await buildGoldenTree(root);
    const summary = await digestTree(root);
    expect(summary.digest).toBe('sha256:d05351b72c6d6faac21821ad7b35bd89a1e5be2119bc2064d73e695073767587');
    expect(summary.bytes).toBe(27);
    expect(summary.entries).toBe(8);
  });

  it('gives the documented digest for an empty tree', async () => {
    const summary = await digestTree(await tempDir());
    expect(summary).toMatchObject({
      digest: 'sha256:9431e04115a158bcb0ea52b47ff96fcc51fb46aab58e2c09f14d49dbc371ee54',
      bytes: 0,
      entries: 0,
    });
  });

  it('does not depend on creation order, mtimes or permission bits other than owner-execute', async () => {
    const a = await tempDir();
    const b = await tempDir();
    await writeTree(a, { 'x/1.txt': 'one', 'x/2.txt': 'two', 'y.bin': Buffer.from([0, 1, 2]) });
    // Same content, reverse order, odd modes, old mtimes.
    await writeTree(b, { 'y.bin': Buffer.from([0, 1, 2]) });
    await mkdir(join(b, 'x'), { mode: 0o700 });
    await writeFile(join(b, 'x/2.txt'), 'two', { mode: 0o600 });
    await writeFile(join(b, 'x/1.txt'), 'one', { mode: 0o664 });
    await utimes(join(b, 'x/1.txt'), 1, 1);
    await utimes(join(b, 'x'), 2, 2);
    expect((await digestTree(a)).digest).toBe((await digestTree(b)).digest);
  });

  it.each([
    ['a byte of content', async (r: string) => writeFile(join(r, 'f'), 'hellO')],
    ['a file name', async (r: string) => writeTree(r, { g: 'hello' })],
    ['the owner-execute bit', async (r: string) => chmod(join(r, 'f'), 0o744)],
    ['an added empty directory', async (r: string) => mkdir(join(r, 'd'))],
    ['an added symlink', async (r: string) => symlink('f', join(r, 'l'))],
  ])('changes when %s changes', async (_what, mutate) => {
    const base = await tempDir();
    const changed = await tempDir();
    await writeTree(base, { f: 'hello' });
    if (_what === 'a file name') {
      await mutate(changed);
    } else {
      await writeTree(changed, { f: 'hello' });
      await mutate(changed);
    }
    expect((await digestTree(changed)).digest).not.toBe((await digestTree(base)).digest);
  });

  it('distinguishes a file from a symlink with the same bytes', async () => {
    const file = await tempDir();
    const link = await tempDir();
    await writeTree(file, { x: 'target' });
    await symlink('target', join(link, 'x'));
    expect((await digestTree(file)).digest).not.toBe((await digestTree(link)).digest);
  });
});
