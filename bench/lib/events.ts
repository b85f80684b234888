/**
 * The event-transform input, written by the demo's own generator (examples/event-transform/generate.mjs,
 * `--seed N --bytes N --out FILE`), so the bench and the demo feed the workload the same kind of events (a mix of
 * units and timestamp forms, some lines out of order, a fixed share of bad lines). Deterministic for a seed and a
 * size.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Path of the demo's generator in this checkout. */
export const DEMO_GENERATOR = fileURLToPath(new URL('../../examples/event-transform/generate.mjs', import.meta.url));

/** A generated input file. */
export interface EventInput {
  path: string;
  bytes: number;
  /** Non-blank lines (events, good and bad). */
  events: number;
  generator: string;
  seed: number;
}

/** Writes about `bytes` of events to `path` with `seed` (at least one line); returns what was written. */
export async function generateEvents(path: string, seed: number, bytes: number): Promise<EventInput> {
  await run(process.execPath, [DEMO_GENERATOR, '--seed', String(seed), '--bytes', String(bytes), '--out', path]);
  const text = await readFile(path, 'utf8');
  const events = text.split('\n').filter((l) => l.trim() !== '').length;
  return { path, bytes: Buffer.byteLength(text), events, generator: 'examples/event-transform/generate.mjs', seed };
}
