/**
 * The suites `bench/run.ts` runs, and how each one's JSON output becomes {@link Benchmark}s with raw samples.
 * Ids are stable (`<suite>.<slug of the row name>`, or an explicit alias below) because the whitepaper template
 * names benchmarks by id.
 */
import { pairRatios, summarize } from './stats.ts';
import type { Benchmark, Ratio } from './types.ts';

/** In the order they run: the side-by-side comparison first, while the machine is freshest. */
export const SUITES = ['compare', 'runtime', 'api', 'collector', 'artifact', 'state', 'nongoals'] as const;
export type SuiteName = (typeof SUITES)[number];

/** What one suite contributed to the results file. */
export interface SuiteOutput {
  benchmarks: Benchmark[];
  ratios: Ratio[];
  workload?: unknown;
  /** The non-goal probes (bench/nongoals.ts): not benchmarks, quoted by the whitepaper. */
  nongoals?: unknown[];
  notes: string[];
}

/** `Cold path: import + prepare (C hello)` → `cold-path-import-prepare-c-hello`. */
export function slug(name: string): string {
  return name
    .toLowerCase()
    .replace(/→/g, ' to ')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 60)
    .replace(/-$/, '');
}

function better(unit: string): 'lower' | 'higher' {
  return /\/s$/.test(unit) ? 'higher' : 'lower';
}

function make(
  suite: string,
  id: string,
  title: string,
  unit: string,
  samples: readonly number[],
  method: string,
  subject = 'vyr',
): Benchmark {
  const values = samples.filter((v) => Number.isFinite(v));
  const b: Benchmark = { id, group: suite, subject, title, unit, better: better(unit), samples: values, method };
  if (values.length > 0) b.summary = summarize(values);
  else b.skipped = 'the suite reported no samples';
  return b;
}

/** The last line of `stdout` that parses as JSON (a suite may print a human summary first). */
function lastJson(stdout: string): unknown {
  const lines = stdout.trim().split('\n');
  try {
    return JSON.parse(stdout);
  } catch {
    for (let i = lines.length - 1; i >= 0; i--) {
      try {
        return JSON.parse(lines[i] as string);
      } catch {
        // keep looking
      }
    }
  }
  throw new Error('no JSON document in the suite output');
}

interface Row {
  name: string;
  unit?: string;
  values: number[];
}

const RUNTIME_IDS: [RegExp, string][] = [
  [/^warm task latency/, 'runtime.warm'],
  [/^throughput, telemetry off/, 'runtime.throughput.telemetry-off'],
  [/^throughput, telemetry on/, 'runtime.throughput.telemetry-on'],
  [/^cold path: import \+ prepare \+ run \(C hello/, 'runtime.cold.hello-c'],
  [/^cold path: prepare \+ run \(C hello.*without import/, 'runtime.cold.hello-c.no-import'],
  [/^cold path: import \+ prepare \+ run \(12 MB/, 'runtime.cold.12mb'],
  [/^cold path: prepare \+ run \(12 MB.*without import/, 'runtime.cold.12mb.no-import'],
  [/^worker spawn/, 'runtime.worker-spawn'],
  [/^cancel latency/, 'runtime.cancel'],
];

const API_IDS: [RegExp, string][] = [
  [/^node RSS, idle/, 'api.rss.idle'],
  [/^node RSS with [\d,]+ finished/, 'api.rss.loaded'],
  [/^submit→exit over RPC, HTTP\/1\.1, p50/, 'api.rpc.h1.p50'],
  [/^submit→exit over RPC, HTTP\/1\.1, p99/, 'api.rpc.h1.p99'],
  [/^submit→exit over RPC, HTTP\/2, p50/, 'api.rpc.h2.p50'],
  [/^submit→exit over RPC, HTTP\/2, p99/, 'api.rpc.h2.p99'],
  [/^StreamTraces replay/, 'api.stream-traces.replay'],
  [/^StreamTraces live/, 'api.stream-traces.live'],
];

function idFor(suite: string, name: string, table: [RegExp, string][]): string {
  return table.find(([re]) => re.test(name))?.[1] ?? `${suite}.${slug(name)}`;
}

/** Parses one suite's stdout. Throws when it holds no JSON document of the expected shape. */
export function normalizeSuite(suite: SuiteName, stdout: string): SuiteOutput {
  const doc = lastJson(stdout) as Record<string, unknown>;
  const notes: string[] = [];
  const benchmarks: Benchmark[] = [];
  switch (suite) {
    case 'compare': {
      const c = doc as unknown as SuiteOutput & { workload: unknown };
      return { benchmarks: c.benchmarks, ratios: c.ratios, workload: c.workload, notes: c.notes };
    }
    case 'runtime': {
      for (const r of doc.rows as Row[])
        benchmarks.push(
          make(
            'runtime',
            idFor('runtime', r.name, RUNTIME_IDS),
            r.name,
            r.unit ?? 'ms',
            r.values,
            'in-process createRuntime (bench/runtime.bench.ts)',
          ),
        );
      const n = doc.notes as Record<string, unknown>;
      const one = (id: string, title: string, unit: string, v: unknown, method: string) => {
        if (typeof v === 'number') benchmarks.push(make('runtime', id, title, unit, [v], method));
      };
      one(
        'runtime.rss.idle',
        'process RSS, one runtime idle (pool of 2, warm, after GC)',
        'MiB',
        n.idleRssMiB,
        'process.memoryUsage().rss',
      );
      one(
        'runtime.rss.loaded-peak',
        'process RSS peak under throughput load (2 runtimes × 2 workers, SDK + receiver)',
        'MiB',
        n.loadedPeakRssMiB,
        'max of process.memoryUsage().rss sampled every 20 ms',
      );
      const sizes = (n.componentBytes ?? {}) as Record<string, number>;
      for (const [k, v] of Object.entries(sizes))
        one(`runtime.size.${slug(k)}`, `component size: ${k}`, 'bytes', v, 'component layer of the packed artifact');
      if (n.tracesReceived) notes.push(`traces received by the OTLP receiver: ${JSON.stringify(n.tracesReceived)}`);
      return { benchmarks, ratios: [], notes };
    }
    case 'api': {
      for (const r of doc.rows as Row[])
        benchmarks.push(
          make(
            'api',
            idFor('api', r.name, API_IDS),
            r.name,
            r.unit ?? 'ms',
            r.values,
            'a real node process (apps/node) on loopback, Connect binary (bench/api.bench.ts)',
          ),
        );
      for (const note of (doc.notes as string[]) ?? []) notes.push(note);
      return { benchmarks, ratios: [], notes };
    }
    case 'collector': {
      const c = (doc.collector ?? doc) as Record<string, unknown>;
      const stats: [string, string, string][] = [
        ['ingestSpansPerSec8Clients', 'durable ingest, 8 clients (fsync before ack)', 'spans/s'],
        ['ingestSpansPerSec1Client', 'durable ingest, 1 client (fsync before ack)', 'spans/s'],
        ['spoolBytesPerSpan', 'spool bytes per span', 'bytes'],
        ['drainSpansPerSecGzip', 'drain after reconnect, gzip upstream', 'spans/s'],
        ['drainSpansPerSecNone', 'drain after reconnect, uncompressed upstream', 'spans/s'],
      ];
      const method = `collector in its own process, ${c.spansPerRequest}-span protobuf requests (bench/collector.bench.ts)`;
      for (const [key, title, unit] of stats) {
        const s = c[key] as { values?: number[] } | undefined;
        if (s?.values) benchmarks.push(make('collector', `collector.${slug(key)}`, title, unit, s.values, method));
      }
      const b = c.backlog as Record<string, unknown> | undefined;
      if (b) {
        const mib = (v: unknown) => (typeof v === 'number' ? [v / 2 ** 20] : []);
        benchmarks.push(
          make(
            'collector',
            'collector.backlog.restart',
            `restart over a backlog of ${((b.bytes as number) / 2 ** 20).toFixed(0)} MiB (recovery)`,
            'ms',
            [b.restartMs as number],
            method,
          ),
          make('collector', 'collector.backlog.rss-idle', 'collector RSS, idle', 'MiB', mib(b.rssIdleBytes), method),
          make(
            'collector',
            'collector.backlog.rss-holding',
            'collector RSS holding the backlog',
            'MiB',
            mib(b.rssHoldingBytes),
            method,
          ),
        );
        const filling = b.rssWhileFillingBytes as { values?: number[] } | undefined;
        if (filling?.values)
          benchmarks.push(
            make(
              'collector',
              'collector.backlog.rss-filling',
              'collector RSS while the backlog fills',
              'MiB',
              filling.values.map((v) => v / 2 ** 20),
              method,
            ),
          );
        notes.push(
          `collector backlog: ${b.spans} spans, ${b.bytes} bytes, recovered ${b.recoveredSpans} spans after restart`,
        );
      }
      return { benchmarks, ratios: [], notes };
    }
    case 'artifact': {
      for (const r of (doc.rows as (Row & { componentBytes: number })[]) ?? [])
        benchmarks.push(
          make(
            'artifact',
            `artifact.${slug(r.name)}`,
            `${r.name} (component ${(r.componentBytes / 1024).toFixed(0)} KiB)`,
            'ms',
            r.values,
            'tinybench, real files in a temp dir (bench/artifact.bench.ts)',
          ),
        );
      return { benchmarks, ratios: [], notes };
    }
    case 'nongoals':
      return { benchmarks: [], ratios: [], nongoals: doc.nongoals as unknown[], notes };
    case 'state': {
      const rows = (Array.isArray(doc) ? doc : (doc.rows as Row[])) as Row[];
      for (const r of rows)
        benchmarks.push(
          make(
            'state',
            `state.${slug(r.name)}`,
            r.name,
            r.unit ?? 'ms',
            r.values,
            'state kernel in-process, real files (bench/state.bench.ts)',
          ),
        );
      return { benchmarks, ratios: [], notes };
    }
  }
}

/** Ratios inside one suite, pair by pair over its interleaved rounds. */
export function suiteRatios(suite: SuiteName, benchmarks: readonly Benchmark[]): Ratio[] {
  const pair = (id: string, title: string, num: string, den: string): Ratio => {
    const a = benchmarks.find((b) => b.id === num);
    const b = benchmarks.find((x) => x.id === den);
    if (!a?.summary || !b?.summary)
      return { id, title, numerator: num, denominator: den, pairs: [], skipped: 'missing samples' };
    const pairs = pairRatios(a.samples, b.samples);
    return { id, title, numerator: num, denominator: den, pairs, summary: summarize(pairs) };
  };
  if (suite === 'runtime')
    return [
      pair(
        'runtime.telemetry-on/off',
        'trivial-task throughput: telemetry on ÷ off (same round)',
        'runtime.throughput.telemetry-on',
        'runtime.throughput.telemetry-off',
      ),
    ];
  return [];
}
