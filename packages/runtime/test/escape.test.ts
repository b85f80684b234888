import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Mount, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { ESCAPES, type Escape } from './escapes.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, text, watToWasm } from './helpers.js';

const WASMTIME_RUNNER = fileURLToPath(new URL('../../testing/scripts/wasmtime-p1.py', import.meta.url));

/** A fresh layout (escapes.ts): `<root>/{data,other,st_other}`, the secrets, `data/own.txt`, planted symlinks. */
async function layout(parent: string, attempt: Escape, tag: string): Promise<string> {
  const root = join(parent, `${attempt.id}-${tag}`);
  await mkdir(join(root, 'data'), { recursive: true });
  await mkdir(join(root, 'other'));
  await mkdir(join(root, 'st_other'));
  await writeFile(join(root, 'secret.txt'), 'secret');
  await writeFile(join(root, 'st_other', 'secret.txt'), 'another task');
  await writeFile(join(root, 'data', 'own.txt'), 'own');
  for (const [path, target] of Object.entries(attempt.symlinks ?? {})) {
    await symlink(target.replace('<root>', root), join(root, path));
  }
  return root;
}

function mountsOf(attempt: Escape, root: string): Mount[] {
  if (attempt.mounts === 'none') return [];
  const data: Mount = {
    guestPath: '/data',
    hostPath: join(root, 'data'),
    ...(attempt.mounts === 'data-ro' ? { readOnly: true } : {}),
    ...(attempt.quota ?? {}),
  };
  return attempt.mounts === 'data+other' ? [data, { guestPath: '/other', hostPath: join(root, 'other') }] : [data];
}

/** Everything under `root` except the mounts the guest may change, as `path → content` (links by target). */
async function outside(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await readdir(root)) {
    if (name === 'data' || name === 'other') continue;
    const path = join(root, name);
    if (name.endsWith('.txt')) out[name] = await readFile(path, 'utf8');
    else for (const inner of await readdir(path)) out[`${name}/${inner}`] = await readFile(join(path, inner), 'utf8');
  }
  return out;
}

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

/**
 * The sandbox-attempt suite (docs/security.md has the same table): every program tries one way out and must end with
 * the documented errno or coded task failure, nothing outside its mounts changes, and the runtime keeps serving.
 */
describe('sandbox escapes: each way out fails with its documented errno or coded failure', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  const artifacts = new Map<string, RuntimeArtifact>();
  const cores = new Map<string, Uint8Array>();
  let hello: RuntimeArtifact;
  let baselineDescriptors: number;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('vyr-attempt-'));
    for (const attempt of ESCAPES) {
      const core = await watToWasm(attempt.wat);
      cores.set(attempt.id, core);
      artifacts.set(
        attempt.id,
        makeArtifact(await p1ToComponent(core), {
          name: attempt.id,
          ...(attempt.limits ? { limits: attempt.limits } : {}),
        }),
      );
    }
    hello = makeArtifact(
      await p1ToComponent(
        await watToWasm(`(module
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "still serving\\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 14))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`),
      ),
      { name: 'hello' },
    );
    runtime = createRuntime({
      artifacts: memorySource([...artifacts.values(), hello]),
      // Prepared components are keyed by digest and jco version: a cache shared across runs saves the transpiles.
      cacheDir: join(tmpdir(), 'vyr-runtime-test-cache', 'attempt-prepare'),
      poolSize: 1,
    });
    // One task first, so the worker and its shim are loaded before the descriptor baseline is taken.
    await runtime.wait((await runtime.submit({ digest: hello.digest })).id);
    baselineDescriptors = openDescriptors();
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  it('has at least 30 distinct programs with distinct ids', () => {
    expect(ESCAPES.length).toBeGreaterThanOrEqual(30);
    expect(new Set(ESCAPES.map((e) => e.id)).size).toBe(ESCAPES.length);
    expect(new Set(ESCAPES.map((e) => e.wat)).size).toBe(ESCAPES.length);
  });

  for (const attempt of ESCAPES) {
    it(`${attempt.id}: ${attempt.tries}`, async () => {
      const root = await layout(dir, attempt, 'vyr');
      const before = await outside(root);
      const artifact = artifacts.get(attempt.id)!;
      const task = await runtime.submit({
        digest: artifact.digest,
        mounts: mountsOf(attempt, root),
        ...(attempt.stdin !== undefined ? { stdin: attempt.stdin } : {}),
      });
      if (attempt.cancelAfterOutput !== undefined) {
        while (runtime.output(task.id).stdout.length < attempt.cancelAfterOutput) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        await runtime.cancel(task.id);
      }
      const status = await runtime.wait(task.id);
      if ('exitCode' in attempt.expect) {
        expect({ exitCode: status.exitCode, reason: status.reason }).toEqual({
          exitCode: attempt.expect.exitCode,
          reason: attempt.expect.exitCode === 0 ? undefined : 'EXIT_CODE',
        });
      } else {
        expect(status.reason).toBe(attempt.expect.reason);
      }
      // Nothing outside the mounts changed, and no message shows where the mounts are on the host.
      expect(await outside(root)).toEqual(before);
      expect(JSON.stringify(status)).not.toContain(root);
      if (attempt.cancelAfterOutput !== undefined) {
        // Output stops with the cancel: what the runtime kept does not grow after the task ended.
        const kept = runtime.output(task.id).stdout.length;
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(runtime.output(task.id).stdout.length).toBe(kept);
      }
    });
  }

  it('still runs a task afterwards, and the tasks left no host file descriptors open', async () => {
    const task = await runtime.submit({ digest: hello.digest });
    expect(await runtime.wait(task.id)).toMatchObject({ state: 'SUCCEEDED' });
    expect(text(runtime.output(task.id).stdout)).toBe('still serving\n');
    // fd.exhaustion held 1024 descriptors when it ended; they were closed with the task. A few may belong to the
    // test process itself (vitest's own files), so allow a small margin rather than exact equality.
    expect(openDescriptors()).toBeLessThan(baselineDescriptors + 16);
  });

  describe('cross-engine agreement with wasmtime (Python wasmtime package)', () => {
    const probe = spawnSync('python3', [WASMTIME_RUNNER], { input: '[]' });
    const available = probe.status === 0;
    it.skipIf(!available)(
      'gives the same errno or trap for every program it can run, or the documented difference',
      async () => {
        const runs: { attempt: Escape; spec: Record<string, unknown> }[] = [];
        for (const attempt of ESCAPES) {
          if (attempt.wasmtime?.skip) continue;
          const root = await layout(dir, attempt, 'wasmtime');
          const wasm = join(root, 'program.wasm');
          await writeFile(wasm, cores.get(attempt.id)!);
          let stdin: string | undefined;
          if (attempt.stdin !== undefined) {
            stdin = join(root, 'stdin');
            await writeFile(stdin, attempt.stdin);
          }
          const preopens = Object.fromEntries(mountsOf(attempt, root).map((m) => [m.guestPath, m.hostPath]));
          runs.push({ attempt, spec: { wasm, args: [attempt.id], preopens, ...(stdin ? { stdin } : {}) } });
        }
        const result = spawnSync('python3', [WASMTIME_RUNNER], {
          input: JSON.stringify(runs.map((r) => r.spec)),
          maxBuffer: 64 * 1024 * 1024,
        });
        expect(result.status).toBe(0);
        const outcomes = JSON.parse(result.stdout.toString()) as { exitCode?: number; trap?: string }[];
        const got = runs.map((r, i) => [
          r.attempt.id,
          outcomes[i]!.trap !== undefined ? 'trap' : outcomes[i]!.exitCode,
        ]);
        const want = runs.map(({ attempt }) => {
          const w = attempt.wasmtime;
          if (w?.trap) return [attempt.id, 'trap'];
          if (w?.exitCode !== undefined) return [attempt.id, w.exitCode];
          return [attempt.id, 'exitCode' in attempt.expect ? attempt.expect.exitCode : 'trap'];
        });
        expect(got).toEqual(want);
        expect(runs.length).toBeGreaterThanOrEqual(30);
      },
    );
  });
});
