import { describe, expect, it } from 'vitest';
// The prepare-time rewrite is internal; these tests pin its table contract directly.
import { limitModuleMemory, MAX_TABLE_ELEMENTS } from '../dist/wasm-memory.js';
import { watToWasm } from './helpers.js';

/** The table limits of a module, read back by instantiating it (`WebAssembly.Table` exposes only `length`). */
async function growLimit(module: Uint8Array, grow: number): Promise<boolean> {
  const { instance } = (await WebAssembly.instantiate(module, {
    'vyr:runtime': { memory: new WebAssembly.Memory({ initial: 1 }) },
  })) as unknown as { instance: WebAssembly.Instance };
  const table = instance.exports.t as WebAssembly.Table;
  try {
    table.grow(grow);
    return true;
  } catch {
    return false;
  }
}

describe('table limit: tables live on the worker heap, so each module gets at most MAX_TABLE_ELEMENTS', () => {
  it('gives a table without a maximum the bound as its maximum', async () => {
    const rewritten = limitModuleMemory(await watToWasm('(module (table (export "t") 1 funcref) (memory 1))'));
    expect(await growLimit(rewritten.bytes, MAX_TABLE_ELEMENTS - 1)).toBe(true);
    expect(await growLimit(rewritten.bytes, MAX_TABLE_ELEMENTS)).toBe(false);
  });

  it('keeps a smaller maximum the module declared, and shares the bound among several tables', async () => {
    const own = limitModuleMemory(await watToWasm('(module (table (export "t") 1 10 funcref))'));
    expect(await growLimit(own.bytes, 9)).toBe(true);
    expect(await growLimit(own.bytes, 10)).toBe(false);
    const two = limitModuleMemory(await watToWasm('(module (table (export "t") 0 funcref) (table 0 externref))'));
    expect(await growLimit(two.bytes, MAX_TABLE_ELEMENTS / 2)).toBe(true);
    expect(await growLimit(two.bytes, MAX_TABLE_ELEMENTS / 2 + 1)).toBe(false);
  });

  it('refuses a module whose tables start larger than the bound (UNSUPPORTED_ARTIFACT)', async () => {
    const big = await watToWasm(`(module (table ${MAX_TABLE_ELEMENTS + 1} funcref))`);
    expect(() => limitModuleMemory(big)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_ARTIFACT' }));
  });
});
