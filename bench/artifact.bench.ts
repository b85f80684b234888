/**
 * Artifact layer benchmarks (issue 2): pack, sign, verify and store-import for a ~30 KB and a ~12 MB component.
 * Run: `node bench/artifact.bench.ts [--json] [--quick]` (Node 24 strips the types) after `pnpm -F @vyr/artifact build` and
 * `pnpm -F @vyr/testing build`. Prints median and spread (p25–p75, min–max) in milliseconds.
 *
 * Inputs are WASI P1 modules generated at bench time by `buildLargeModule` (hello + a pseudo-random data segment),
 * so `pack` includes the preview1 adaptation with jco, as it does for real users. Every operation works on real
 * files in a temp dir: pack writes a fresh layout each iteration, sign re-signs one layout (integrity check +
 * bundle + layout rewrite + detached copy), verify reads and re-hashes every blob and checks the bundle, import
 * copies into a fresh store each iteration; store-list reads metadata only (manifest + declarations), so it should
 * not grow with the component, while store-get re-hashes every blob.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createStore,
  loadTrustPolicy,
  packArtifact,
  readArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '@vyr/artifact';
import { buildLargeModule } from '@vyr/testing';
import { Bench } from 'tinybench';

/** One benchmark row, milliseconds. */
export interface ArtifactBenchRow {
  name: string;
  componentBytes: number;
  samples: number;
  median: number;
  p25: number;
  p75: number;
  min: number;
  max: number;
  /** Every sample (ms), in the order taken. */
  values: number[];
}

function quantile(sorted: readonly number[], q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** Runs the artifact benchmarks and returns one row per operation and size. */
export async function runArtifactBench(options: { quick?: boolean } = {}): Promise<ArtifactBenchRow[]> {
  const root = await mkdtemp(join(tmpdir(), 'vyr-bench-artifact-'));
  const rows: ArtifactBenchRow[] = [];
  try {
    const keys = await writeKeyPair(join(root, 'keys'));
    const policy = await loadTrustPolicy([keys.publicKeyPath]);
    const sizes = [
      // ~30 KB component: 12 KiB of data + the preview1 adapter (~17 KB).
      { label: '30KB', dataBytes: 12 * 1024, iterations: options.quick ? 5 : 30 },
      { label: '12MB', dataBytes: 12 * 1024 * 1024, iterations: options.quick ? 2 : 10 },
    ];
    for (const size of sizes) {
      const dir = join(root, size.label);
      const input = join(root, `${size.label}.wasm`);
      await writeFile(input, await buildLargeModule({ dataBytes: size.dataBytes }));
      const artifact = join(root, `${size.label}.oci`);
      await packArtifact(input, artifact);
      await signArtifact(artifact, { path: keys.privateKeyPath });
      const componentBytes = (await readArtifact(artifact)).component.byteLength;
      // A store holding the artifact, for list (metadata only) and get (every blob re-hashed).
      const readStore = createStore({ dir: join(dir, 'store-read') });
      await readStore.import(artifact);
      const digest = (await readStore.list())[0]!.digest;
      let n = 0;
      let storeDir = '';
      const bench = new Bench({
        name: `artifact ${size.label}`,
        iterations: size.iterations,
        time: 0,
        warmupIterations: options.quick ? 1 : 2,
        retainSamples: true,
        throws: true,
      });
      bench
        .add(`pack ${size.label}`, async () => {
          await packArtifact(input, join(dir, `pack-${n++}.oci`));
        })
        .add(`sign ${size.label}`, async () => {
          await signArtifact(artifact, { path: keys.privateKeyPath });
        })
        .add(`verify ${size.label}`, async () => {
          await verifyArtifact(artifact, policy);
        })
        .add(
          `store-import ${size.label}`,
          async () => {
            await createStore({ dir: storeDir }).import(artifact);
          },
          {
            beforeEach: () => {
              storeDir = join(dir, `store-${n++}`);
            },
          },
        )
        .add(`store-list ${size.label}`, async () => {
          await readStore.list();
        })
        .add(`store-get ${size.label}`, async () => {
          await readStore.get(digest);
        });
      await bench.run();
      for (const task of bench.tasks) {
        const result = task.result as { latency?: { samples?: readonly number[] } } | undefined;
        const values = [...(result?.latency?.samples ?? [])];
        const samples = [...values].sort((a, b) => a - b);
        if (samples.length === 0) throw new Error(`${task.name}: no samples`);
        rows.push({
          name: task.name,
          componentBytes,
          samples: samples.length,
          median: quantile(samples, 0.5),
          p25: quantile(samples, 0.25),
          p75: quantile(samples, 0.75),
          min: samples[0]!,
          max: samples[samples.length - 1]!,
          values,
        });
      }
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}

function format(rows: readonly ArtifactBenchRow[]): string {
  const f = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  const header = 'operation              component    n   median ms   p25–p75 ms        min–max ms';
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(22)} ${`${(r.componentBytes / 1024).toFixed(0)} KiB`.padStart(10)} ${String(r.samples).padStart(4)} ${f(r.median).padStart(11)}   ${`${f(r.p25)}–${f(r.p75)}`.padEnd(16)}  ${f(r.min)}–${f(r.max)}`,
  );
  return [header, ...lines].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await runArtifactBench({ quick: process.argv.includes('--quick') });
  if (process.argv.includes('--json')) console.log(JSON.stringify({ benchmark: 'artifact', rows }, null, 2));
  else console.log(format(rows));
}
