import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Mount, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { Errno, makeArtifact, tempDir, text, watComponent } from './helpers.js';

/** WASI errno values these tests assert besides {@link Errno}. */
const EXIST = 20;
const XDEV = 75;

/** One filesystem call of {@link stepsWat}; `fd` is the preopen (3 = the first mount, 4 = the second). */
type Step =
  | { op: 'file'; name: string; fd?: number; exclusive?: boolean }
  | { op: 'dir'; name: string; fd?: number }
  | { op: 'symlink'; name: string; target: string; fd?: number }
  | { op: 'link'; name: string; existing: string; fd?: number; toFd?: number }
  | { op: 'unlink'; name: string; fd?: number }
  | { op: 'rmdir'; name: string; fd?: number }
  | { op: 'rename'; from: string; to: string; fd?: number; toFd?: number };

/**
 * A WASI P1 program that makes `steps` in order. It prints `+` for each step that succeeded and, at the first that
 * fails, exits with the WASI errno it got (0 after the last step), so a test reads how far it got and why it stopped.
 */
function stepsWat(steps: readonly Step[]): string {
  const data: string[] = [];
  let offset = 256;
  const str = (s: string): [number, number] => {
    const at = offset;
    data.push(`(data (i32.const ${at}) "${s}")`);
    offset += s.length + 1;
    return [at, s.length];
  };
  const check = (call: string) => `
    (local.set $e ${call})
    (if (local.get $e) (then (call $exit (local.get $e))))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))`;
  const body = steps
    .map((s) => {
      const fd = s.fd ?? 3;
      switch (s.op) {
        case 'file': {
          const [p, n] = str(s.name);
          // oflags CREAT (1), plus EXCL (4) unless told otherwise; rights fd_write (64).
          const oflags = s.exclusive === false ? 1 : 5;
          return `${check(`(call $path_open (i32.const ${fd}) (i32.const 0) (i32.const ${p}) (i32.const ${n}) (i32.const ${oflags})
            (i64.const 64) (i64.const 64) (i32.const 0) (i32.const 32))`)}
            (drop (call $fd_close (i32.load (i32.const 32))))`;
        }
        case 'dir': {
          const [p, n] = str(s.name);
          return check(`(call $mkdir (i32.const ${fd}) (i32.const ${p}) (i32.const ${n}))`);
        }
        case 'symlink': {
          const [t, tn] = str(s.target);
          const [p, n] = str(s.name);
          return check(
            `(call $symlink (i32.const ${t}) (i32.const ${tn}) (i32.const ${fd}) (i32.const ${p}) (i32.const ${n}))`,
          );
        }
        case 'link': {
          const [o, on] = str(s.existing);
          const [p, n] = str(s.name);
          return check(
            `(call $link (i32.const ${fd}) (i32.const 0) (i32.const ${o}) (i32.const ${on}) (i32.const ${s.toFd ?? fd}) (i32.const ${p}) (i32.const ${n}))`,
          );
        }
        case 'unlink': {
          const [p, n] = str(s.name);
          return check(`(call $unlink (i32.const ${fd}) (i32.const ${p}) (i32.const ${n}))`);
        }
        case 'rmdir': {
          const [p, n] = str(s.name);
          return check(`(call $rmdir (i32.const ${fd}) (i32.const ${p}) (i32.const ${n}))`);
        }
        case 'rename': {
          const [o, on] = str(s.from);
          const [p, n] = str(s.to);
          return check(
            `(call $rename (i32.const ${fd}) (i32.const ${o}) (i32.const ${on}) (i32.const ${s.toFd ?? fd}) (i32.const ${p}) (i32.const ${n}))`,
          );
        }
        default:
          throw new Error('unknown step');
      }
    })
    .join('\n');
  return `(module
    (import "wasi_snapshot_preview1" "path_open"
      (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_remove_directory" (func $rmdir (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_link" (func $link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 100) "+")
    (func (export "_start") (local $e i32)
      ;; iovec at 16 -> "+" (1 byte); written count at 24
      (i32.store (i32.const 16) (i32.const 100))
      (i32.store (i32.const 20) (i32.const 1))
      ${body}
      (call $exit (i32.const 0)))
    ${data.join('\n    ')})`;
}

describe('entry quota: creating a file, directory, symlink or hard link past it fails in the guest with ENOSPC', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  /** Artifacts built by the tests so far, served by digest. */
  const artifacts = new Map<string, RuntimeArtifact>();
  let n = 0;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    const source = {
      async load(digest: string): Promise<RuntimeArtifact> {
        const found = artifacts.get(digest);
        if (!found) throw Object.assign(new Error(`artifact ${digest} not found`), { code: 'NOT_FOUND' });
        return found;
      },
    };
    runtime = createRuntime({ artifacts: source, cacheDir: join(dir, 'cache'), poolSize: 1 });
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  /** Runs `steps` as a real guest with `mounts`; returns how many steps succeeded, the exit code and the status. */
  async function runSteps(steps: readonly Step[], mounts: Mount[]) {
    const artifact = makeArtifact(await watComponent(stepsWat(steps)), { name: `steps-${n++}` });
    artifacts.set(artifact.digest, artifact);
    const task = await runtime.submit({ digest: artifact.digest, mounts });
    const status = await runtime.wait(task.id);
    return { done: text(runtime.output(task.id).stdout).length, exitCode: status.exitCode, status };
  }

  async function hostDir(name: string, files: Record<string, string> = {}): Promise<string> {
    const host = join(dir, name);
    await mkdir(host, { recursive: true });
    for (const [file, content] of Object.entries(files)) await writeFile(join(host, file), content);
    return host;
  }

  it.each([
    ['files', (i: number): Step => ({ op: 'file', name: `f${i}` })],
    ['directories', (i: number): Step => ({ op: 'dir', name: `d${i}` })],
    ['symlinks', (i: number): Step => ({ op: 'symlink', name: `s${i}`, target: 'seed' })],
    ['hard links', (i: number): Step => ({ op: 'link', name: `h${i}`, existing: 'seed' })],
  ])(
    '%s: the create past the quota gets ENOSPC, nothing past it exists, and the refusal is recorded',
    async (kind, step) => {
      // One entry (`seed`) is there already; the quota leaves room for 3 more.
      const host = await hostDir(`q-${kind.replace(' ', '-')}`, { seed: 'x' });
      const mounts: Mount[] = [{ guestPath: '/data', hostPath: host, quotaEntries: 4 }];
      const { done, exitCode, status } = await runSteps([0, 1, 2, 3, 4].map(step), mounts);
      expect({ done, exitCode }).toEqual({ done: 3, exitCode: Errno.NOSPC });
      expect((await readdir(host)).sort()).toHaveLength(4);
      expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE' });
      expect(status.quotaExceeded).toEqual([
        { guestPath: '/data', kind: 'entries', quotaEntries: 4, attemptedEntries: 5 },
      ]);
    },
  );

  it('starts the count at usedEntries when the state kernel gives it, else at what is on disk', async () => {
    const host = await hostDir('used', { a: '1', b: '2' });
    // On disk: 2 entries, so a quota of 3 leaves one create.
    expect(
      await runSteps(
        [
          { op: 'file', name: 'c' },
          { op: 'file', name: 'd' },
        ],
        [{ guestPath: '/data', hostPath: host, quotaEntries: 3 }],
      ),
    ).toMatchObject({ done: 1, exitCode: Errno.NOSPC });
    // The kernel's count (here: 0) is trusted as the starting point.
    const other = await hostDir('used-given', { a: '1', b: '2' });
    expect(
      await runSteps(
        [
          { op: 'file', name: 'c' },
          { op: 'file', name: 'd' },
        ],
        [{ guestPath: '/data', hostPath: other, quotaEntries: 3, usedEntries: 0 }],
      ),
    ).toMatchObject({ done: 2, exitCode: 0 });
  });

  it('counts only creates: opening an existing file with O_CREAT, or a refused create, takes nothing', async () => {
    const host = await hostDir('existing', { a: '1' });
    const mounts: Mount[] = [{ guestPath: '/data', hostPath: host, quotaEntries: 1 }];
    expect(await runSteps([{ op: 'file', name: 'a', exclusive: false }], mounts)).toMatchObject({
      done: 1,
      exitCode: 0,
    });
    // `a` exists: the exclusive create fails with EEXIST (not ENOSPC), and no quota refusal is recorded.
    const exists = await runSteps([{ op: 'file', name: 'a' }], mounts);
    expect(exists).toMatchObject({ done: 0, exitCode: EXIST });
    expect(exists.status.quotaExceeded).toEqual([]);
  });

  it('gives an entry back on unlink, rmdir and rename over an existing name', async () => {
    const host = await hostDir('churn', { a: '1', b: '2' });
    await mkdir(join(host, 'sub'));
    const mounts: Mount[] = [{ guestPath: '/data', hostPath: host, quotaEntries: 3 }];
    const { done, exitCode } = await runSteps(
      [
        { op: 'unlink', name: 'a' },
        { op: 'file', name: 'c' }, // takes the freed entry
        { op: 'rmdir', name: 'sub' },
        { op: 'dir', name: 'd' }, // takes the freed entry
        { op: 'rename', from: 'c', to: 'b' }, // replaces b: one entry fewer
        { op: 'symlink', name: 'e', target: 'b' }, // takes it
        { op: 'file', name: 'f' }, // full again
      ],
      mounts,
    );
    expect({ done, exitCode }).toEqual({ done: 6, exitCode: Errno.NOSPC });
    expect((await readdir(host)).sort()).toEqual(['b', 'd', 'e']);
  });

  it('keeps the byte quota for hard links: a new name for a file counts its size, as the state kernel does', async () => {
    const host = await hostDir('link-bytes', { big: 'x'.repeat(600) });
    const mounts: Mount[] = [{ guestPath: '/data', hostPath: host, quotaBytes: 1000 }];
    const { done, exitCode, status } = await runSteps([{ op: 'link', name: 'again', existing: 'big' }], mounts);
    expect({ done, exitCode }).toEqual({ done: 0, exitCode: Errno.NOSPC });
    expect(status.quotaExceeded).toEqual([
      { guestPath: '/data', kind: 'bytes', quotaBytes: 1000, attemptedBytes: 1200 },
    ]);
  });

  it('refuses renames and hard links between two mounts with EXDEV: instances never share a file', async () => {
    const a = await hostDir('xdev-a', { shared: 'from a' });
    const b = await hostDir('xdev-b');
    const mounts: Mount[] = [
      { guestPath: '/a', hostPath: a },
      { guestPath: '/b', hostPath: b },
    ];
    expect(await runSteps([{ op: 'rename', from: 'shared', to: 'moved', toFd: 4 }], mounts)).toMatchObject({
      done: 0,
      exitCode: XDEV,
    });
    expect(await runSteps([{ op: 'link', name: 'alias', existing: 'shared', toFd: 4 }], mounts)).toMatchObject({
      done: 0,
      exitCode: XDEV,
    });
    expect(await readdir(b)).toEqual([]);
    expect(await readFile(join(a, 'shared'), 'utf8')).toBe('from a');
    // Within one mount both still work.
    expect(
      await runSteps(
        [
          { op: 'link', name: 'alias', existing: 'shared' },
          { op: 'rename', from: 'alias', to: 'moved' },
        ],
        mounts,
      ),
    ).toMatchObject({ done: 2, exitCode: 0 });
  });

  it('refuses a mount whose entry counts are not non-negative integers (INVALID_ARGUMENT)', async () => {
    const host = await hostDir('bad-counts');
    const digest = `sha256:${'0'.repeat(64)}`;
    for (const bad of [{ quotaEntries: -1 }, { quotaEntries: 1.5 }, { usedEntries: -3 }]) {
      await expect(
        runtime.submit({ digest, mounts: [{ guestPath: '/d', hostPath: host, ...bad }] }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });
});
