/**
 * The event-transform input: JSON lines of device readings. When the demo's generator
 * (examples/event-transform/generate.mjs, `--seed N --bytes N --out FILE`) is in the tree it is used, so the bench
 * and the demo feed the workload the same kind of events; otherwise a seeded stand-in here writes lines of the
 * same shape. Either way the result is deterministic for a seed and a byte target.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Path of the demo's generator in this checkout. */
export const DEMO_GENERATOR = fileURLToPath(new URL('../../examples/event-transform/generate.mjs', import.meta.url));

/** A generated input file. */
export interface EventInput {
  path: string;
  bytes: number;
  events: number;
  /** Which generator wrote it: the demo's (`examples/event-transform/generate.mjs`) or `bench/lib/events.ts`. */
  generator: string;
  seed: number;
}

/** mulberry32: a small, well-known 32-bit PRNG; enough for reproducible test data. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Lines of the stand-in generator until they reach `bytes` (at least one line). */
export function standInEvents(seed: number, bytes: number): string {
  const rnd = prng(seed);
  const kinds = ['temperature', 'humidity', 'pressure', 'door', 'motion'];
  const lines: string[] = [];
  let size = 0;
  let i = 0;
  const t0 = Date.UTC(2026, 0, 1);
  while (size < bytes || lines.length === 0) {
    i++;
    const kind = kinds[Math.floor(rnd() * kinds.length)] as string;
    const line = JSON.stringify({
      id: `evt-${seed}-${i}`,
      device: `dev-${String(Math.floor(rnd() * 64)).padStart(3, '0')}`,
      kind,
      ts: new Date(t0 + i * 250).toISOString(),
      value: Math.round(rnd() * 100_000) / 1000,
      tags: { site: `site-${Math.floor(rnd() * 8)}`, fw: `1.${Math.floor(rnd() * 9)}.${Math.floor(rnd() * 20)}` },
    });
    lines.push(line);
    size += line.length + 1;
  }
  return `${lines.join('\n')}\n`;
}

/** Writes about `bytes` of events to `path` with `seed`; returns what was written. */
export async function generateEvents(path: string, seed: number, bytes: number): Promise<EventInput> {
  let generator = 'bench/lib/events.ts';
  if (existsSync(DEMO_GENERATOR)) {
    await run(process.execPath, [DEMO_GENERATOR, '--seed', String(seed), '--bytes', String(bytes), '--out', path]);
    generator = 'examples/event-transform/generate.mjs';
  } else {
    await writeFile(path, standInEvents(seed, bytes));
  }
  const text = await readFile(path, 'utf8');
  const events = text.split('\n').filter((l) => l.trim() !== '').length;
  return { path, bytes: Buffer.byteLength(text), events, generator, seed };
}
