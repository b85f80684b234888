import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import initWabt from 'wabt';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
// The prepare-time rewrite is internal; these tests pin its contract directly.
import {
  GROW_FAILED_EXPORT,
  limitModuleMemory,
  MEMORY_IMPORT_FIELD,
  MEMORY_IMPORT_MODULE,
} from '../dist/wasm-memory.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, watToWasm } from './helpers.js';

const MiB = 1024 * 1024;

/**
 * A P1 program that calls `memory.grow(delta)` once (`memory` declared as `memoryDecl`), then runs `onFail` if the
 * grow returned -1 and `after` in any case.
 */
function growWat(options: { delta: number; onFail: string; after: string; memoryDecl?: string }): string {
  return `(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") ${options.memoryDecl ?? '1'})
    (func (export "_start")
      (if (i32.eq (memory.grow (i32.const ${options.delta})) (i32.const -1)) (then ${options.onFail}))
      ${options.after}))`;
}

describe('memory limit: exact attribution from refused memory.grow, exit codes always kept', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  const a: Record<string, RuntimeArtifact> = {};
  const limits = { memoryBytes: 4 * MiB };

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    const specs: Record<string, Parameters<typeof growWat>[0]> = {
      // 62 of 64 pages, no grow refused, then exit 7: an ordinary failure, however close to the limit.
      nearExit: { delta: 61, onFail: '(call $exit (i32.const 99))', after: '(call $exit (i32.const 7))' },
      nearTrap: { delta: 61, onFail: '(call $exit (i32.const 99))', after: 'unreachable' },
      refusedExit: { delta: 100, onFail: '(call $exit (i32.const 1))', after: '(call $exit (i32.const 0))' },
      refusedTrap: { delta: 100, onFail: 'unreachable', after: '(call $exit (i32.const 0))' },
      refusedHandled: { delta: 100, onFail: '(nop)', after: '(call $exit (i32.const 0))' },
      // The module's own maximum (4 pages) refuses the grow, not the task's limit.
      ownMaximum: {
        delta: 10,
        memoryDecl: '1 4',
        onFail: '(call $exit (i32.const 1))',
        after: '(call $exit (i32.const 0))',
      },
    };
    for (const [name, spec] of Object.entries(specs)) {
      a[name] = makeArtifact(await p1ToComponent(await watToWasm(growWat(spec))), { name, limits });
    }
    runtime = createRuntime({ artifacts: memorySource(Object.values(a)), cacheDir: join(dir, 'cache'), poolSize: 1 });
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  const run = async (name: string) => runtime.wait((await runtime.submit({ digest: a[name]!.digest })).id);

  it('a non-zero exit near the limit with no refused grow is EXIT_CODE with the exact code', async () => {
    const status = await run('nearExit');
    expect(status).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 7 });
    expect(status.memoryBytes).toBeGreaterThanOrEqual(62 * 65536);
  });

  it('a trap near the limit with no refused grow is TRAP', async () => {
    expect(await run('nearTrap')).toMatchObject({
      state: 'FAILED',
      reason: 'TRAP',
      message: expect.stringMatching(/unreachable/),
    });
  });

  it('an exit after the limit refused a grow is MEMORY_LIMIT and keeps the exit code', async () => {
    const status = await run('refusedExit');
    expect(status).toMatchObject({ state: 'FAILED', reason: 'MEMORY_LIMIT', exitCode: 1 });
    expect(status.message).toMatch(
      /^memory\.grow to \d+ bytes refused: the task's memory limit is 4194304 bytes \(then exit code 1\)$/,
    );
  });

  it('a trap after the limit refused a grow is MEMORY_LIMIT with the trap message', async () => {
    const status = await run('refusedTrap');
    expect(status).toMatchObject({ state: 'FAILED', reason: 'MEMORY_LIMIT' });
    expect(status.message).toMatch(/\(then trap: .*unreachable.*\)$/);
    expect(status.exitCode).toBeUndefined();
  });

  it('a guest that handles a refused grow and exits 0 succeeds', async () => {
    expect(await run('refusedHandled')).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
  });

  it("a grow refused by the module's own declared maximum is not the task's memory limit", async () => {
    expect(await run('ownMaximum')).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 1 });
  });

  // jco 1.35 already refuses such a component while transpiling; the rewrite's own refusal (tested below) is the
  // guarantee if a later jco lets it through.
  it('ends a component whose core module has two memories PREPARE_FAILED with UNSUPPORTED_ARTIFACT', async () => {
    const wat = `(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (memory $second 1)
      (func (export "_start") (call $exit (i32.const 0))))`;
    const wabt = await initWabt();
    // `multi_memory` is a wabt feature flag its type definitions do not list yet.
    const module = wabt.parseWat('multi.wat', wat, { multi_memory: true } as Parameters<typeof wabt.parseWat>[2]);
    const core = new Uint8Array(module.toBinary({}).buffer);
    module.destroy();
    const multi = makeArtifact(await p1ToComponent(core), { name: 'multi-memory' });
    const other = createRuntime({ artifacts: memorySource([multi]), cacheDir: join(dir, 'multi') });
    try {
      const status = await other.wait((await other.submit({ digest: multi.digest })).id);
      expect(status).toMatchObject({ state: 'FAILED', reason: 'PREPARE_FAILED' });
      expect(status.message).toMatch(/^UNSUPPORTED_ARTIFACT: .*(multiple memories|2 memories)/);
      expect(status.startedAt).toBeUndefined();
    } finally {
      await other.close();
    }
  });
});

describe('the prepare-time memory rewrite', () => {
  const compile = async (wat: string, features: Record<string, boolean> = {}) => {
    const wabt = await initWabt();
    const module = wabt.parseWat('m.wat', wat, features);
    try {
      return new Uint8Array(module.toBinary({}).buffer);
    } finally {
      module.destroy();
    }
  };

  it('imports the defined memory and records the page count of a refused grow in an exported global', async () => {
    const bytes = await compile(`(module
      (memory 2 100)
      (global $g (mut i32) (i32.const 5))
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "size") (result i32) (memory.size))
      (func (export "g") (result i32) (global.get $g)))`);
    const rewrite = limitModuleMemory(bytes);
    expect(rewrite.memory).toEqual({ minPages: 2, maxPages: 100 });
    expect(rewrite.growSites).toBe(1);
    const module = new WebAssembly.Module(new Uint8Array(rewrite.bytes));
    expect(WebAssembly.Module.imports(module)).toEqual([
      { module: MEMORY_IMPORT_MODULE, name: MEMORY_IMPORT_FIELD, kind: 'memory' },
    ]);
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 4 });
    const { exports } = new WebAssembly.Instance(module, { [MEMORY_IMPORT_MODULE]: { [MEMORY_IMPORT_FIELD]: memory } });
    const e = exports as Record<string, (...args: number[]) => number> & Record<string, { value: bigint }>;
    const failed = exports[GROW_FAILED_EXPORT] as { value: bigint };
    expect(e.grow!(1)).toBe(2); // the guest sees what memory.grow returns
    expect(failed.value).toBe(0n);
    expect(e.grow!(5)).toBe(-1); // 3 + 5 > 4
    expect(failed.value).toBe(8n);
    expect(e.size!()).toBe(3);
    expect(e.g!()).toBe(5); // existing globals keep their index
    expect(memory.buffer.byteLength).toBe(3 * 65536);
  });

  it('routes memory.grow through the recorder in a module that imports its memory, indices unchanged', async () => {
    const bytes = await compile(`(module
      (import "env" "memory" (memory 1))
      (import "env" "f" (func $f (result i32)))
      (func $twice (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))
      (func (export "run") (param i32) (result i32)
        (i32.add (call $twice (memory.grow (local.get 0))) (call $f))))`);
    const rewrite = limitModuleMemory(bytes);
    expect(rewrite).toMatchObject({ importsMemory: true, growSites: 1 });
    expect(rewrite.memory).toBeUndefined();
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2 });
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(rewrite.bytes)), {
      env: { memory, f: () => 100 },
    });
    const run = exports.run as (n: number) => number;
    expect(run(1)).toBe(102); // old size 1, doubled, plus f()
    expect(run(1)).toBe(98); // -1 doubled, plus f()
    expect((exports[GROW_FAILED_EXPORT] as { value: bigint }).value).toBe(3n);
  });

  it('answers memory.size in the module that defines the memory without the pages others grew before it looked', async () => {
    const bytes = await compile(`(module
      (memory 2 100)
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "size") (result i32) (memory.size)))`);
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 10 });
    const { exports } = new WebAssembly.Instance(
      new WebAssembly.Module(new Uint8Array(limitModuleMemory(bytes).bytes)),
      {
        [MEMORY_IMPORT_MODULE]: { [MEMORY_IMPORT_FIELD]: memory },
      },
    );
    const e = exports as Record<string, (...args: number[]) => number>;
    memory.grow(1); // another core module of the component (the preview1 adapter) takes a page for itself
    expect(e.size!()).toBe(2); // an allocator taking all of memory.size as its heap leaves that page alone
    expect(e.size!()).toBe(2);
    expect(e.grow!(0)).toBe(2);
    expect(e.grow!(2)).toBe(3); // its own new pages start after the other module's
    expect(e.size!()).toBe(5);
    // Growth after it first looked is answered as it is: memory.size before a grow is where the new pages start.
    memory.grow(1);
    expect(e.size!()).toBe(6);
    expect(e.grow!(1)).toBe(6);
    expect(e.grow!(10)).toBe(-1);
    expect(e.size!()).toBe(7);
    expect(memory.buffer.byteLength).toBe(7 * 65536);
  });

  it('answers memory.size exactly when only the defining module grows its memory', async () => {
    const bytes = await compile(`(module
      (memory 1 100)
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "size") (result i32) (memory.size)))`);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 10 });
    const { exports } = new WebAssembly.Instance(
      new WebAssembly.Module(new Uint8Array(limitModuleMemory(bytes).bytes)),
      {
        [MEMORY_IMPORT_MODULE]: { [MEMORY_IMPORT_FIELD]: memory },
      },
    );
    const e = exports as Record<string, (...args: number[]) => number>;
    expect(e.grow!(2)).toBe(1);
    expect(e.size!()).toBe(3);
    expect(e.grow!(0)).toBe(3);
    expect(e.grow!(1)).toBe(3);
    expect(e.size!()).toBe(4);
  });

  it('answers memory.size with the initial pages in a defining module that never grows', async () => {
    const bytes = await compile('(module (memory 3) (func (export "size") (result i32) (memory.size)))');
    const rewrite = limitModuleMemory(bytes);
    expect(rewrite.growSites).toBe(0);
    const memory = new WebAssembly.Memory({ initial: 3, maximum: 10 });
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(rewrite.bytes)), {
      [MEMORY_IMPORT_MODULE]: { [MEMORY_IMPORT_FIELD]: memory },
    });
    memory.grow(2);
    expect((exports.size as () => number)()).toBe(3);
    expect(exports[GROW_FAILED_EXPORT]).toBeUndefined();
  });

  it('leaves memory.size alone in a module that imports its memory', async () => {
    const bytes = await compile(`(module
      (import "env" "memory" (memory 1))
      (func (export "size") (result i32) (memory.size)))`);
    const rewrite = limitModuleMemory(bytes);
    expect(rewrite).toEqual({ bytes, importsMemory: true, growSites: 0 });
  });

  it('leaves a module without memory unchanged', async () => {
    const bytes = await compile('(module (func (export "f") (result i32) (i32.const 1)))');
    expect(limitModuleMemory(bytes)).toEqual({ bytes, importsMemory: false, growSites: 0 });
  });

  it.each([
    ['a shared memory', '(module (memory 1 2 shared))', { threads: true }, /shared \(threads\)/],
    ['a 64-bit memory', '(module (memory i64 1))', { memory64: true }, /64-bit \(memory64\)/],
    ['an imported shared memory', '(module (import "env" "m" (memory 1 2 shared)))', { threads: true }, /shared/],
    ['two memories', '(module (import "env" "m" (memory 1)) (memory 1))', { multi_memory: true }, /2 memories/],
  ])('refuses %s with UNSUPPORTED_ARTIFACT', async (_what, wat, features, reason) => {
    const bytes = await compile(wat, features);
    expect(() => limitModuleMemory(bytes)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_ARTIFACT' }));
    expect(() => limitModuleMemory(bytes)).toThrow(reason);
  });

  it('refuses a module with an instruction it cannot decode instead of missing a memory.grow', async () => {
    const bytes = await compile('(module (memory 1) (func (drop (memory.grow (i32.const 1)))))');
    // Replace the `drop` (0x1a) with an opcode that does not exist (0xc5).
    const patched = bytes.slice();
    const at = patched.lastIndexOf(0x1a);
    patched[at] = 0xc5;
    expect(() => limitModuleMemory(patched)).toThrow(/unknown instruction 0xc5/);
  });
});
