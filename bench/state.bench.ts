/**
 * State kernel benchmarks (issue 4): bind + release overhead per task for an empty slot and for a 10 MB /
 * 1,000-file instance, and digest throughput. Run: `node bench/state.bench.ts` (Node 24 strips the types) after
 * `pnpm -F @vyr/state build`. Prints a table and, with `--json`, one JSON document.
 *
 * Each bind + release is one task's whole state overhead: bind (registry write, fsync) + release (canonical walk,
 * SHA-256 of every file, registry writes, fsync). The digest is computed on every release, ro included.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createStateKernel, digestTree, type StateSlot } from '@vyr/state';

/** Summary of one measurement, in milliseconds (or MB/s for throughput rows). */
export interface StateBenchRow {
  name: string;
  unit: 'ms' | 'MB/s';
  samples: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
  max: number;
  /** Every sample, in the order taken. */
  values: number[];
}

function summarize(name: string, unit: StateBenchRow['unit'], values: number[]): StateBenchRow {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))]!;
  return {
    name,
    unit,
    samples: sorted.length,
    median: at(0.5),
    p10: at(0.1),
    p90: at(0.9),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    values: [...values],
  };
}

async function timeIt(iterations: number, warmup: number, fn: (i: number) => Promise<void>): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn(i);
    out.push(performance.now() - t0);
  }
  return out;
}

/** 1,000 files of 10,000 random bytes in 10 directories: 10 MB. */
async function makeTenMegabyteTree(root: string): Promise<void> {
  for (let d = 0; d < 10; d++) {
    await mkdir(join(root, `dir-${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) await writeFile(join(root, `dir-${d}`, `file-${f}.bin`), randomBytes(10_000));
  }
}

/** Runs every state benchmark and returns the rows. */
export async function runStateBench(options: { quick?: boolean } = {}): Promise<StateBenchRow[]> {
  const scale = options.quick ? 0.2 : 1;
  const n = (k: number) => Math.max(3, Math.round(k * scale));
  const work = await mkdtemp(join(tmpdir(), 'vyr-state-bench-'));
  const kernel = createStateKernel({ dataDir: join(work, 'data'), sweepIntervalMs: 0 });
  const rows: StateBenchRow[] = [];
  try {
    await kernel.recover();
    const rw: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw' }];
    const ro: StateSlot[] = [{ name: 'data', mount: '/data', access: 'ro' }];
    let task = 0;
    const cycle = (instanceId: string, slots: StateSlot[]) => async () => {
      const taskId = `bench-${task++}`;
      await kernel.bind({ instanceId, taskId, slot: 'data', declaredSlots: slots });
      await kernel.releaseTask(taskId);
    };

    const empty = await kernel.create({ scope: 'named' });
    rows.push(summarize('bind+release, empty slot, rw', 'ms', await timeIt(n(200), 20, cycle(empty.id, rw))));
    rows.push(summarize('bind+release, empty slot, ro', 'ms', await timeIt(n(200), 20, cycle(empty.id, ro))));

    const seedDir = join(work, 'seed');
    await makeTenMegabyteTree(seedDir);
    rows.push(
      summarize(
        'create seeded from dir, 10 MB / 1,000 files',
        'ms',
        await timeIt(n(10), 2, async () => {
          const info = await kernel.create({ scope: 'named', seed: { dir: seedDir } });
          await kernel.delete(info.id);
        }),
      ),
    );
    const big = await kernel.create({ scope: 'named', seed: { dir: seedDir } });
    rows.push(summarize('bind+release, 10 MB / 1,000 files, rw', 'ms', await timeIt(n(30), 3, cycle(big.id, rw))));
    rows.push(summarize('bind+release, 10 MB / 1,000 files, ro', 'ms', await timeIt(n(30), 3, cycle(big.id, ro))));
    // A task-scoped instance: create (empty) + bind + release + destroy, the full per-task lifecycle.
    rows.push(
      summarize(
        'task-scoped create+bind+release+destroy, empty',
        'ms',
        await timeIt(n(100), 10, async () => {
          const taskId = `bench-${task++}`;
          const scratch = await kernel.create({ scope: 'task', taskId });
          await kernel.bind({ instanceId: scratch.id, taskId, slot: 'data', declaredSlots: rw });
          await kernel.releaseTask(taskId);
        }),
      ),
    );

    const tenMb = 10_000_000 / 1e6;
    const treeMs = await timeIt(n(20), 3, async () => {
      await digestTree(big.hostPath);
    });
    rows.push(
      summarize(
        'digest throughput, 10 MB / 1,000 files',
        'MB/s',
        treeMs.map((ms) => tenMb / (ms / 1000)),
      ),
    );
    const oneFile = join(work, 'one');
    await mkdir(oneFile);
    await writeFile(join(oneFile, 'blob.bin'), randomBytes(100_000_000));
    const fileMs = await timeIt(n(8), 1, async () => {
      await digestTree(oneFile);
    });
    rows.push(
      summarize(
        'digest throughput, one 100 MB file',
        'MB/s',
        fileMs.map((ms) => 100 / (ms / 1000)),
      ),
    );
  } finally {
    await kernel.close();
    await rm(work, { recursive: true, force: true });
  }
  return rows;
}

function format(rows: StateBenchRow[]): string {
  const f = (v: number) => (v >= 100 ? v.toFixed(0) : v.toFixed(2));
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(48)} ${f(r.median).padStart(8)} ${r.unit.padEnd(4)}  p10 ${f(r.p10).padStart(8)}  p90 ${f(r.p90).padStart(8)}  min ${f(r.min).padStart(8)}  max ${f(r.max).padStart(8)}  n=${r.samples}`,
  );
  return [`${'benchmark'.padEnd(48)} ${'median'.padStart(8)}`, ...lines].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runStateBench({ quick: process.argv.includes('--quick') });
  process.stdout.write(process.argv.includes('--json') ? `${JSON.stringify(rows, null, 2)}\n` : `${format(rows)}\n`);
}
