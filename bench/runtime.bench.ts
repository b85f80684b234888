/**
 * Runtime benchmarks (issue 3). Run: `node bench/runtime.bench.ts [--json] [--quick]` (Node 24 strips the types)
 * after `pnpm -F @vyr/runtime... build`.
 *
 * - warm latency: submit → terminal status of a small WAT component, prepared, warm pool (target p50 ≤ 3 ms);
 * - throughput of trivial tasks on the machine's cores, telemetry off (no SDK) vs on (SDK tracer + meter, batch
 *   processor exporting OTLP/HTTP protobuf to a real local receiver) (target overhead ≤ 5 %);
 * - cold path: import into a fresh store + prepare (jco transpile + compile) + run, for the ≈30 KB C component and
 *   for a 12 MB component (a P1 module with a 12 MB data segment: same transpile/compile path, not a JS engine);
 * - cancel latency of a tight `loop br 0` (cancel() → CANCELLED; target p99 ≤ 50 ms);
 * - RSS of the process: idle (one runtime, pool of 2, warm, after GC), and the peak during the throughput load
 *   (two runtimes of 2 workers each, SDK and OTLP receiver in the same process).
 * Run with `node --expose-gc` for a stable idle RSS.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createStore, createTrustPolicy, packArtifact } from '@vyr/artifact';
import { artifactSourceFromStore, createRuntime, type Runtime } from '@vyr/runtime';
import { buildLargeModule, fixturePath, watFixtureFile } from '@vyr/testing';
import { startOtlpReceiver } from '@vyr/testing/otlp';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');

interface Row {
  name: string;
  unit: string;
  samples: number;
  median: number;
  p10: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  /** Every sample, in the order taken. */
  values: number[];
}

function summarize(name: string, unit: string, values: number[]): Row {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))]!;
  return {
    name,
    unit,
    samples: s.length,
    median: at(0.5),
    p10: at(0.1),
    p90: at(0.9),
    p99: at(0.99),
    min: s[0]!,
    max: s.at(-1)!,
    values: [...values],
  };
}

// The OpenTelemetry SDK is a dev dependency of @vyr/runtime (libraries never depend on it); resolve it from there.
const sdkRequire = createRequire(new URL('../packages/runtime/package.json', import.meta.url));
const sdkTrace = sdkRequire('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
const sdkMetrics = sdkRequire('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics');
const otlpTrace = sdkRequire(
  '@opentelemetry/exporter-trace-otlp-proto',
) as typeof import('@opentelemetry/exporter-trace-otlp-proto');
const otlpMetrics = sdkRequire(
  '@opentelemetry/exporter-metrics-otlp-proto',
) as typeof import('@opentelemetry/exporter-metrics-otlp-proto');

const work = await mkdtemp(join(tmpdir(), 'vyr-bench-runtime-'));
const policy = createTrustPolicy({ allowUnsigned: true });

async function packInto(storeDir: string, input: string, name: string) {
  const out = join(work, `${name}-${Math.random().toString(36).slice(2)}.oci`);
  const packed = await packArtifact(input, out, {
    manifest: { name, version: '1.0.0', env: [], state: [], limits: {} },
  });
  return { out, digest: packed.digest, componentBytes: packed.componentBytes, storeDir };
}

async function runOnce(runtime: Runtime, digest: string): Promise<void> {
  const t = await runtime.submit({ digest });
  const s = await runtime.wait(t.id);
  if (s.state !== 'SUCCEEDED') throw new Error(`task ended ${s.state} ${s.reason ?? ''} ${s.message ?? ''}`);
}

const rows: Row[] = [];
const notes: Record<string, unknown> = {};
const poolSize = 2;

// ---- fixtures in a store --------------------------------------------------------------------------------------
const storeDir = join(work, 'store');
const store = createStore({ dir: storeDir });
const hello = await packInto(storeDir, await watFixtureFile('hello', work), 'hello');
const loop = await packInto(storeDir, await watFixtureFile('loop', work), 'loop');
const helloC = await packInto(storeDir, fixturePath('hello-c'), 'hello-c');
for (const a of [hello, loop, helloC]) await store.import(a.out);
const source = artifactSourceFromStore(store, policy);
notes.componentBytes = { hello: hello.componentBytes, helloC: helloC.componentBytes };

// ---- warm latency ---------------------------------------------------------------------------------------------
{
  const runtime = createRuntime({ artifacts: source, cacheDir: join(work, 'cache-warm'), poolSize });
  await runtime.warmUp();
  for (let i = 0; i < 50; i++) await runOnce(runtime, hello.digest);
  const values: number[] = [];
  for (let i = 0; i < (quick ? 100 : 1000); i++) {
    const t0 = performance.now();
    await runOnce(runtime, hello.digest);
    values.push(performance.now() - t0);
  }
  rows.push(summarize('warm task latency submit→exit (WAT hello, verify+re-hash included)', 'ms', values));
  global.gc?.();
  await new Promise((r) => setTimeout(r, 200));
  notes.idleRssMiB = process.memoryUsage().rss / 2 ** 20;
  await runtime.close();
}

// ---- throughput, telemetry off vs on, and RSS ----------------------------------------------------------------
async function throughput(
  runtime: Runtime,
  tasks: number,
  concurrency: number,
): Promise<{ perSec: number; peakRss: number }> {
  let next = 0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 20);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tasks) {
        next++;
        await runOnce(runtime, hello.digest);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  return { perSec: tasks / seconds, peakRss };
}

{
  const receiver = await startOtlpReceiver();
  const spanExporter = new otlpTrace.OTLPTraceExporter({ url: `${receiver.url}/v1/traces` });
  const tracerProvider = new sdkTrace.TracerProvider({
    spanProcessors: [
      new sdkTrace.BatchSpanProcessor({
        exporter: spanExporter,
        maxQueueSize: 200_000,
        maxExportBatchSize: 2048,
        scheduledDelayMillis: 200,
      }),
    ],
  });
  const meterProvider = new sdkMetrics.MeterProvider({
    readers: [
      new sdkMetrics.PeriodicExportingMetricReader({
        exporter: new otlpMetrics.OTLPMetricExporter({ url: `${receiver.url}/v1/metrics` }),
        exportIntervalMillis: 1000,
      }),
    ],
  });
  const off = createRuntime({ artifacts: source, cacheDir: join(work, 'cache-tp'), poolSize });
  const on = createRuntime({
    artifacts: source,
    cacheDir: join(work, 'cache-tp'),
    poolSize,
    tracer: tracerProvider.getTracer('vyr'),
    meter: meterProvider.getMeter('vyr'),
  });
  await off.warmUp();
  await on.warmUp();
  for (let i = 0; i < 50; i++) {
    await runOnce(off, hello.digest);
    await runOnce(on, hello.digest);
  }
  const tasks = quick ? 200 : 2000;
  const offRates: number[] = [];
  const onRates: number[] = [];
  let peak = 0;
  for (let round = 0; round < (quick ? 2 : 5); round++) {
    const a = await throughput(off, tasks, poolSize * 4);
    const b = await throughput(on, tasks, poolSize * 4);
    offRates.push(a.perSec);
    onRates.push(b.perSec);
    peak = Math.max(peak, a.peakRss, b.peakRss);
  }
  await tracerProvider.forceFlush();
  rows.push(summarize('throughput, telemetry off', 'tasks/s', offRates));
  rows.push(summarize('throughput, telemetry on (OTLP/HTTP export)', 'tasks/s', onRates));
  const med = (v: number[]) => summarize('', '', v).median;
  notes.telemetryOverheadPercent = (1 - med(onRates) / med(offRates)) * 100;
  notes.loadedPeakRssMiB = peak / 2 ** 20;
  const spans = receiver.spans().filter((s) => s.name === 'vyr.task').length;
  const expected = (quick ? 2 : 5) * tasks + 50;
  notes.tracesReceived = { rootSpans: spans, tasksWithTelemetry: expected };
  await off.close();
  await on.close();
  await tracerProvider.shutdown();
  await meterProvider.shutdown();
  await receiver.close();
}

// ---- cold path ------------------------------------------------------------------------------------------------
{
  const large = join(work, 'large.wasm');
  await writeFile(large, await buildLargeModule({ dataBytes: 12 * 1024 * 1024 }));
  const largeArtifact = await packInto(storeDir, large, 'large');
  notes.componentBytes = { ...(notes.componentBytes as object), large: largeArtifact.componentBytes };
  for (const [label, artifact] of [
    ['cold path: import + prepare + run (C hello, ≈30 KB component)', helloC],
    ['cold path: import + prepare + run (12 MB component)', largeArtifact],
  ] as const) {
    const totals: number[] = [];
    const prepareOnly: number[] = [];
    for (let i = 0; i < (quick ? 2 : 5); i++) {
      const dir = join(work, `cold-${i}-${Math.random().toString(36).slice(2)}`);
      const coldStore = createStore({ dir: join(dir, 'store') });
      const runtime = createRuntime({
        artifacts: artifactSourceFromStore(coldStore, policy),
        cacheDir: join(dir, 'cache'),
        poolSize: 1,
      });
      await runtime.warmUp(); // worker spawn is measured separately below
      const t0 = performance.now();
      await coldStore.import(artifact.out);
      const t1 = performance.now();
      await runOnce(runtime, artifact.digest);
      const t2 = performance.now();
      totals.push(t2 - t0);
      prepareOnly.push(t2 - t1);
      await runtime.close();
      await rm(dir, { recursive: true, force: true });
    }
    rows.push(summarize(label, 'ms', totals));
    rows.push(summarize(`${label.replace('import + ', '')}, without import`, 'ms', prepareOnly));
  }
  const spawn: number[] = [];
  for (let i = 0; i < (quick ? 3 : 8); i++) {
    const runtime = createRuntime({ artifacts: source, cacheDir: join(work, 'cache-warm'), poolSize: 1 });
    const t0 = performance.now();
    await runtime.warmUp();
    spawn.push(performance.now() - t0);
    await runtime.close();
  }
  rows.push(summarize('worker spawn + WASI host load (pool of 1)', 'ms', spawn));
}

// ---- cancel latency -------------------------------------------------------------------------------------------
{
  const runtime = createRuntime({ artifacts: source, cacheDir: join(work, 'cache-warm'), poolSize });
  await runtime.warmUp();
  const values: number[] = [];
  for (let i = 0; i < (quick ? 10 : 100); i++) {
    const t = await runtime.submit({ digest: loop.digest });
    for await (const e of runtime.watch(t.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    await new Promise((r) => setTimeout(r, 5)); // let the guest enter its loop
    const t0 = performance.now();
    const s = await runtime.cancel(t.id);
    values.push(performance.now() - t0);
    if (s.state !== 'CANCELLED') throw new Error(`cancel ended ${s.state}`);
    await runtime.warmUp(); // the replacement worker is ready before the next round
  }
  rows.push(summarize('cancel latency of loop br 0 (cancel() → thread terminated → CANCELLED)', 'ms', values));
  await runtime.close();
}

await rm(work, { recursive: true, force: true });

if (args.has('--json')) {
  process.stdout.write(`${JSON.stringify({ rows, notes }, null, 2)}\n`);
} else {
  const f = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(2));
  console.log('| benchmark | unit | n | median | p10 | p90 | p99 | min | max |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.name} | ${r.unit} | ${r.samples} | ${f(r.median)} | ${f(r.p10)} | ${f(r.p90)} | ${f(r.p99)} | ${f(r.min)} | ${f(r.max)} |`,
    );
  }
  console.log(JSON.stringify(notes, null, 2));
}
