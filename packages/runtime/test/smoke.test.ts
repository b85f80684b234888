import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime } from '../dist/index.js';
import { makeArtifact, memorySource, PRINT, tempDir, text, watComponent } from './helpers.js';

describe('smoke', () => {
  let cleanup: () => Promise<void>;
  let dir: string;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterAll(() => cleanup());
  it('runs hello and exits 33', async () => {
    const comp = await watComponent(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "hello\\n")
      ${PRINT}
      (func (export "_start") (call $print (i32.const 16) (i32.const 6)) (call $exit (i32.const 33))))`);
    const a = makeArtifact(comp);
    const rt = createRuntime({ artifacts: memorySource([a]), cacheDir: dir });
    const t = await rt.submit({ digest: a.digest });
    const s = await rt.wait(t.id);
    expect(text(rt.output(t.id).stdout)).toBe('hello\n');
    expect(s.exitCode).toBe(33);
    expect(s.state).toBe('FAILED');
    await rt.close();
  });
});
