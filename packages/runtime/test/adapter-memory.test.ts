import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixturePath } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, text } from './helpers.js';

const MiB = 1024 * 1024;
const ENV_KEYS = Array.from({ length: 40 }, (_, i) => `VAR_${i}`);

/** JSON lines of varying length, `bytes` or a little more in all (seeded, so every run feeds the same bytes). */
function jsonLines(bytes: number): string {
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  const lines: string[] = [];
  let total = 0;
  for (let i = 0; total < bytes; i++) {
    const pad = 'x'.repeat(next() % 300);
    const line = `{"seq":${i},"device":"dev-${next() % 64}","value":${next() % 10000},"pad":"${pad}"}\n`;
    lines.push(line);
    total += line.length;
  }
  return lines.join('');
}

function fnv1a(bytes: Uint8Array): string {
  let h = 2166136261;
  for (const b of bytes) h = Math.imul(h ^ b, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/**
 * A WASI P1 program built with clang-19 and Debian's wasi-libc, adapted with jco's preview1 adapter. That adapter
 * takes its stack and its state from `memory.grow` (the program exports no `cabi_realloc`), and this wasi-libc's
 * dlmalloc takes everything up to `memory.size` as its heap at the first `malloc` — the adapter's pages included.
 * Once the program frees and reuses that memory, the adapter traps (`assertion failed at adapter line 2857/2858`)
 * or reads clobbered state. wasmtime (no adapter) runs the program correctly; so must VYR.
 */
describe('P1 programs whose allocator claims memory up to memory.size', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  let churn: RuntimeArtifact;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    churn = makeArtifact(await p1ToComponent(await readFile(fixturePath('heap-churn'))), {
      name: 'heap-churn',
      env: ENV_KEYS,
      limits: { memoryBytes: 64 * MiB },
    });
    runtime = createRuntime({ artifacts: memorySource([churn]), cacheDir: join(dir, 'cache'), poolSize: 1 });
  }, 120_000);
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  it('allocates, frees and reuses heap memory over 4 MiB of I/O and copies its input exactly', async () => {
    const input = new TextEncoder().encode(jsonLines(4 * MiB));
    const lines = input.filter((b) => b === 0x0a).length;
    const task = await runtime.submit({ digest: churn.digest, stdin: input });
    const status = await runtime.wait(task.id);
    const out = runtime.output(task.id);
    expect(text(out.stderr)).toBe(`lines ${lines} bytes ${input.length} fnv1a ${fnv1a(input)}\n`);
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    // All of stdout, also what the retention buffer dropped, is the input byte for byte.
    expect(status.stdoutBytes).toBe(input.length);
    expect(status.stdoutDigest).toBe(`sha256:${createHash('sha256').update(input).digest('hex')}`);
  }, 120_000);

  it('gives the same program several arguments and environment variables without disturbing its heap', async () => {
    const input = new TextEncoder().encode(jsonLines(1 * MiB));
    const args = Array.from({ length: 40 }, (_, i) => `argument-${i}-${'a'.repeat(i * 10)}`);
    const env = Object.fromEntries(ENV_KEYS.map((key, i) => [key, 'v'.repeat(i * 20)]));
    const task = await runtime.submit({ digest: churn.digest, stdin: input, args, env });
    const status = await runtime.wait(task.id);
    const out = runtime.output(task.id);
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
    expect(Buffer.from(out.stdout).equals(Buffer.from(input))).toBe(true);
  }, 120_000);
});
