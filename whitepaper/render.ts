/**
 * Renders whitepaper/v0.1.md and its SVG charts from a results file of `make bench` and the template
 * whitepaper/v0.1.template.md. Every number in the paper comes from the results file through a directive; none
 * is typed by hand.
 *
 *   node whitepaper/render.ts [--results bench/results/<file>.json] [--out-dir whitepaper]
 *
 * Without --results, the newest full-mode results file in bench/results/ is used. Directives in the template:
 *   {{source}}                      the results file, its mode and date
 *   {{machine}} {{tools}} {{load}}   fact tables
 *   {{workload}}                    inputs and subjects of the side-by-side suite
 *   {{table:GROUP}}                 every benchmark of a group (startup, throughput, phase, compile, cold, memory,
 *                                   size, runtime, api, collector, artifact, state); `{{table:throughput:events/s}}`
 *                                   keeps one unit
 *   {{methods:GROUP}}               how one sample of each benchmark of a group is taken
 *   {{ratios:PREFIX}}               the pair-by-pair ratios whose id starts with PREFIX
 *   {{value:ID}} / {{value:ID:FIELD}}  one summary number with its unit (FIELD: median (default), min, p95, max, n)
 *   {{ratio:ID}}                    the median of a ratio, as ×N
 *   {{chart:NAME}}                  an SVG chart (written to charts/NAME.svg) and its image link
 *   {{cited}}                       the Kubernetes figures, cited not measured
 *   {{skipped}}                     every benchmark not measured, with the reason
 *   {{worse}}                       every ratio where VYR is the slower side, largest first
 *   {{demo}}                        the portability demo's table (from the results file's `demo`, when present)
 *   {{nongoal:ID}}                  what a user gets when trying a non-goal (bench/nongoals.ts, recorded in the run)
 *   {{suites}}                      each suite's exit code and duration
 * An unknown directive, or an id the results file does not hold, fails the render (exit 1) instead of leaving a
 * hole in the paper.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Summary } from '../bench/lib/stats.ts';
import type { Benchmark, Ratio } from '../bench/lib/types.ts';

export type { Benchmark, Ratio, Summary };

/** The side-by-side suite's description of its workload (bench/compare.ts). */
export interface Workload {
  origin: string;
  cSource: string;
  wasm: string;
  js: string | null;
  inputs: Record<'tiny' | 'large', { bytes: number; events: number; generator: string; seed: number }>;
  rounds: Record<string, number>;
  sameOutputAsProcess: Record<string, boolean>;
}

export interface Results {
  schema: string;
  mode: string;
  command: string;
  startedAt: string;
  durationS: number;
  machine: Record<string, unknown> & { loadavgAtStart: number[] };
  load: { atStart: number[]; atEnd: number[]; samples: { atS: number; load1: number }[]; note: string };
  tools: Record<string, string | null>;
  workload: Record<string, unknown> | null;
  benchmarks: Benchmark[];
  ratios: Ratio[];
  cited: { id: string; figure: string; value: string; conditions: string; source: string; url: string }[];
  demo?: unknown;
  nongoals?: { id: string; attempt: string; command: string; exitCode: number | null; output: string }[];
  suiteRuns: Record<string, { exitCode: number | null; seconds: number; error?: string; notes?: string[] }>;
}

// ---- numbers --------------------------------------------------------------------------------------------------

/** One number in its unit, the way every table and sentence of the paper prints it. */
export function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return String(v);
  if (unit === 'bytes') {
    if (v >= 2 ** 20) return `${(v / 2 ** 20).toFixed(1)} MiB`;
    if (v >= 1024) return `${(v / 1024).toFixed(1)} KiB`;
    return `${Math.round(v)} B`;
  }
  if (unit === 'MiB') return `${v.toFixed(1)} MiB`;
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  const s = v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return unit === 'ms' ? `${s} ms` : `${s} ${unit}`;
}

/** A ratio as ×N. */
export function fmtRatio(v: number): string {
  return `×${v >= 9.995 ? v.toFixed(1) : v.toFixed(2)}`;
}

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A benchmark table: one row per benchmark, id first (the test matches rows to the results file by id). */
export function benchmarkTable(rows: readonly Benchmark[]): string {
  const out = ['| id | what | n | min | median | p95 | max |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const b of rows) {
    if (!b.summary) {
      out.push(
        `| \`${b.id}\` | ${cell(b.title)} | 0 | — | *not measured: ${cell(b.skipped ?? 'no samples')}* | — | — |`,
      );
      continue;
    }
    const s = b.summary;
    out.push(
      `| \`${b.id}\` | ${cell(b.title)} | ${s.n} | ${fmt(s.min, b.unit)} | **${fmt(s.median, b.unit)}** | ${fmt(s.p95, b.unit)} | ${fmt(s.max, b.unit)} |`,
    );
  }
  return out.join('\n');
}

/** A ratio table. */
export function ratioTable(rows: readonly Ratio[]): string {
  const out = ['| id | ratio | pairs | min | median | p95 | max |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    if (!r.summary) {
      out.push(`| \`${r.id}\` | ${cell(r.title)} | 0 | — | *not measured: ${cell(r.skipped ?? 'no pairs')}* | — | — |`);
      continue;
    }
    const s = r.summary;
    out.push(
      `| \`${r.id}\` | ${cell(r.title)} | ${s.n} | ${fmtRatio(s.min)} | **${fmtRatio(s.median)}** | ${fmtRatio(s.p95)} | ${fmtRatio(s.max)} |`,
    );
  }
  return out.join('\n');
}

// ---- charts -----------------------------------------------------------------------------------------------------

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * A horizontal chart: per benchmark a bar to the median, a line from min to max, a tick at p95 and every raw
 * sample as a dot. Log scale when the values span more than two decades.
 */
export function chartSvg(title: string, rows: readonly Benchmark[], unit: string): string {
  const data = rows.filter((b) => b.summary);
  const width = 760;
  const labelW = 230;
  const valueW = 110;
  const rowH = 26;
  const top = 40;
  const plotW = width - labelW - valueW - 20;
  const height = top + Math.max(1, data.length) * rowH + 36;
  const all = data.flatMap((b) => b.samples);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const log = lo > 0 && hi / lo > 100;
  const min = log ? 10 ** Math.floor(Math.log10(lo)) : 0;
  const max = log ? 10 ** Math.ceil(Math.log10(hi)) : hi * 1.05 || 1;
  const x = (v: number) =>
    labelW +
    (log ? (Math.log10(Math.max(v, min)) - Math.log10(min)) / (Math.log10(max) - Math.log10(min)) : v / max) * plotW;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12" role="img" aria-labelledby="title">`,
    `<title id="title">${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="10" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  // Axis ticks.
  const ticks: number[] = [];
  if (log) for (let t = min; t <= max * 1.0001; t *= 10) ticks.push(t);
  else for (let i = 0; i <= 4; i++) ticks.push((max / 4) * i);
  for (const t of ticks) {
    const tx = x(t).toFixed(1);
    parts.push(`<line x1="${tx}" y1="${top - 6}" x2="${tx}" y2="${height - 30}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${tx}" y="${height - 16}" text-anchor="middle" fill="#555">${esc(fmt(t, unit))}</text>`);
  }
  data.forEach((b, i) => {
    const s = b.summary as Summary;
    const cy = top + i * rowH + rowH / 2;
    const vyr = b.subject.startsWith('vyr');
    parts.push(`<text x="${labelW - 8}" y="${cy + 4}" text-anchor="end">${esc(b.subject)}</text>`);
    parts.push(
      `<rect x="${labelW}" y="${cy - 7}" width="${Math.max(1, x(s.median) - labelW).toFixed(1)}" height="14" fill="${vyr ? '#d95f02' : '#7570b3'}" opacity="0.55"/>`,
    );
    parts.push(`<line x1="${x(s.min).toFixed(1)}" y1="${cy}" x2="${x(s.max).toFixed(1)}" y2="${cy}" stroke="#333"/>`);
    parts.push(
      `<line x1="${x(s.p95).toFixed(1)}" y1="${cy - 6}" x2="${x(s.p95).toFixed(1)}" y2="${cy + 6}" stroke="#333"/>`,
    );
    for (const v of b.samples)
      parts.push(`<circle cx="${x(v).toFixed(1)}" cy="${cy}" r="1.6" fill="#000" opacity="0.35"/>`);
    parts.push(`<text x="${width - valueW}" y="${cy + 4}">${esc(fmt(s.median, unit))}</text>`);
  });
  parts.push(
    `<text x="10" y="${height - 4}" fill="#777" font-size="10">bar: median · line: min–max · tick: p95 · dots: every sample${log ? ' · log scale' : ''}</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

// ---- the paper --------------------------------------------------------------------------------------------------

/** The charts the paper can show: name → title, which benchmarks, unit. */
const CHARTS: Record<string, { title: string; pick: (b: Benchmark) => boolean; unit: string }> = {
  startup: { title: 'start → exit, one event (ms, lower is better)', pick: (b) => b.group === 'startup', unit: 'ms' },
  throughput: {
    title: 'event-transform over the large input (events/s, higher is better)',
    pick: (b) => b.group === 'throughput' && b.unit === 'events/s',
    unit: 'events/s',
  },
  cold: {
    title: 'first run of a new module/artifact (ms, lower is better)',
    pick: (b) => b.group === 'cold',
    unit: 'ms',
  },
  memory: {
    title: 'peak memory over the large input (bytes; methods differ, see table)',
    pick: (b) => b.group === 'memory',
    unit: 'bytes',
  },
};

export interface Rendered {
  markdown: string;
  charts: Record<string, string>;
}

/** `sha256:0123…` shortened to its first 12 hex digits, so a digest fits a table cell and still compares by eye. */
function short(v: unknown): string {
  const t = String(v ?? '');
  return /^sha256:[0-9a-f]{64}$/.test(t) ? `${t.slice(0, 19)}…` : t;
}

function demoTable(demo: unknown): string {
  if (!demo || typeof demo !== 'object') {
    return [
      "<!-- demo: filled from the results file's `demo` (copied by `make bench` from .vyr/demo/result.json, written by `make demo`) -->",
      '*Not in this results file: `make demo` had not written `.vyr/demo/result.json` on the machine when `make bench` ran. Run `make demo`, then `make bench`, to fill this table.*',
    ].join('\n');
  }
  const d = demo as Record<string, unknown>;
  const rows = (Array.isArray(d.rows) ? d.rows : Array.isArray(d.tiers) ? d.tiers : null) as
    | Record<string, unknown>[]
    | null;
  if (!rows || rows.length === 0) return `\`\`\`json\n${JSON.stringify(demo, null, 2)}\n\`\`\``;
  // Every scalar column the demo reports, in its order; ids that differ per run by design (node id, trace id) last.
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) =>
    rows.every((r) => r[k] === undefined || r[k] === null || typeof r[k] !== 'object'),
  );
  const out = [`| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`];
  for (const r of rows) out.push(`| ${keys.map((k) => cell(short(r[k]))).join(' | ')} |`);
  const facts = Object.entries(d)
    .filter(([, v]) => v !== null && typeof v !== 'object')
    .map(([k, v]) => `${k}: ${cell(short(v))}`);
  const verdict =
    d.verdict && typeof d.verdict === 'object' ? Object.entries(d.verdict as Record<string, unknown>) : [];
  if (facts.length > 0) out.push('', `Run: ${facts.join('; ')}.`);
  if (verdict.length > 0) out.push('', `Verdict: ${verdict.map(([k, v]) => `${k} = **${String(v)}**`).join(', ')}.`);
  return out.join('\n');
}

/** Renders the template against the results. `resultsName` is how the paper names its source file. */
export function render(template: string, results: Results, resultsName: string): Rendered {
  const charts: Record<string, string> = {};
  const byId = new Map(results.benchmarks.map((b) => [b.id, b]));
  const ratioById = new Map(results.ratios.map((r) => [r.id, r]));
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`template refers to ${what}, which ${resultsName} does not hold`);
    return v;
  };
  const m = results.machine;
  const directive = (name: string, args: string[]): string => {
    switch (name) {
      case 'source':
        return `\`${resultsName}\` (${results.mode} run of \`${results.command}\`, started ${results.startedAt}, ${results.durationS} s)`;
      case 'machine':
        return [
          '| fact | value |',
          '|---|---|',
          `| CPU | ${cell(String(m.cpuModel))} |`,
          `| logical CPUs (usable) | ${m.cpus} (${m.availableParallelism}) |`,
          `| memory | ${fmt(m.memoryBytes as number, 'bytes')} (available at start: ${m.memoryAvailableBytes === null ? 'unknown' : fmt(m.memoryAvailableBytes as number, 'bytes')}) |`,
          `| kernel | ${cell(String(m.kernel))} (${cell(String(m.kernelVersion))}) |`,
          `| arch | ${m.arch} |`,
          `| cgroups | ${m.cgroup} |`,
          `| Node.js | ${m.node} |`,
        ].join('\n');
      case 'tools':
        return [
          '| tool | version |',
          '|---|---|',
          ...Object.entries(results.tools).map(([k, v]) => `| ${k} | ${cell(v ?? 'not installed')} |`),
        ].join('\n');
      case 'load': {
        const l = results.load;
        const s = l.samples.map((x) => x.load1);
        const range =
          s.length > 0
            ? `${Math.min(...s).toFixed(2)}–${Math.max(...s).toFixed(2)} over ${s.length} samples`
            : 'not sampled';
        return `load average (1/5/15 min) at start ${l.atStart.map((v) => v.toFixed(2)).join(' / ')}, at end ${l.atEnd.map((v) => v.toFixed(2)).join(' / ')}; 1-min load during the run ${range} (${m.cpus} CPUs)`;
      }
      case 'workload': {
        const w = need(
          results.workload ?? undefined,
          'the side-by-side workload (compare suite)',
        ) as unknown as Workload;
        const lines = [
          `- source: \`${w.cSource}\` and \`${w.wasm}\` (${w.origin})`,
          `- JS component: ${w.js ? `\`${w.js}\`` : 'not built in this checkout (its rows are marked not measured)'}`,
          `- inputs: one event (${w.inputs.tiny.bytes} bytes) for start → exit; ${w.inputs.large.events.toLocaleString('en-US')} events (${fmt(w.inputs.large.bytes, 'bytes')}) for throughput, from \`${w.inputs.large.generator}\` with seed ${w.inputs.large.seed}`,
          `- rounds: ${Object.entries(w.rounds)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}`,
          `- identical output to the native process: ${Object.entries(w.sameOutputAsProcess)
            .map(([k, v]) => `${k} ${v ? 'yes' : '**no**'}`)
            .join(', ')}`,
        ];
        return lines.join('\n');
      }
      case 'table': {
        const [group, unit] = args;
        const rows = results.benchmarks.filter((b) => b.group === group && (!unit || b.unit === unit));
        if (rows.length === 0) throw new Error(`no benchmarks in group ${group}${unit ? ` with unit ${unit}` : ''}`);
        return benchmarkTable(rows);
      }
      case 'methods': {
        const rows = results.benchmarks.filter((b) => b.group === args[0]);
        if (rows.length === 0) throw new Error(`no benchmarks in group ${args[0]}`);
        return rows.map((b) => `- \`${b.id}\`: ${b.method}`).join('\n');
      }
      case 'ratios': {
        const rows = results.ratios.filter((r) => r.id.startsWith(args[0] ?? ''));
        if (rows.length === 0) throw new Error(`no ratios starting with ${args[0]}`);
        return ratioTable(rows);
      }
      case 'value': {
        const b = need(byId.get(args[0] ?? ''), `benchmark ${args[0]}`);
        if (!b.summary) return `*(not measured: ${b.skipped})*`;
        const field = (args[1] ?? 'median') as keyof Summary;
        return field === 'n' ? String(b.summary.n) : fmt(b.summary[field], b.unit);
      }
      case 'ratio': {
        const r = need(ratioById.get(args[0] ?? ''), `ratio ${args[0]}`);
        return r.summary ? fmtRatio(r.summary.median) : `*(not measured: ${r.skipped})*`;
      }
      case 'chart': {
        const c = need(CHARTS[args[0] ?? ''], `chart ${args[0]}`);
        charts[args[0] as string] = chartSvg(c.title, results.benchmarks.filter(c.pick), c.unit);
        return `![${c.title}](charts/${args[0]}.svg)`;
      }
      case 'cited':
        return [
          '| figure | value | conditions | source |',
          '|---|---|---|---|',
          ...results.cited.map(
            (c) =>
              `| ${cell(c.figure)} | **${cell(c.value)}** *(cited, not measured)* | ${cell(c.conditions)} | [${cell(c.source)}](${c.url}) |`,
          ),
        ].join('\n');
      case 'skipped': {
        const rows = results.benchmarks.filter((b) => !b.summary);
        if (rows.length === 0) return 'Every benchmark produced samples in this run.';
        return rows.map((b) => `- \`${b.id}\`: ${b.skipped}`).join('\n');
      }
      case 'worse': {
        const rows = results.ratios
          .filter(
            (r) => r.summary && r.numerator.includes('vyr') && !r.denominator.includes('vyr') && r.summary.median > 1,
          )
          .sort((a, b) => (b.summary?.median ?? 0) - (a.summary?.median ?? 0));
        if (rows.length === 0) return 'In this run VYR was not the slower side of any measured pair.';
        return rows
          .map(
            (r) =>
              `- ${r.title}: **${fmtRatio(r.summary!.median)}** (\`${r.id}\`, ${r.summary!.n} pairs, ${fmtRatio(r.summary!.min)}–${fmtRatio(r.summary!.max)})`,
          )
          .join('\n');
      }
      case 'demo':
        return demoTable(results.demo);
      case 'nongoal': {
        const p = need(
          results.nongoals?.find((x) => x.id === args[0]),
          `non-goal probe ${args[0]}`,
        );
        const exit = p.exitCode === null ? 'error' : `exit ${p.exitCode}`;
        return `\`${p.command}\` → ${exit}: \`${p.output.replace(/`/g, "'")}\``;
      }
      case 'suites':
        return [
          '| suite | exit | seconds |',
          '|---|---:|---:|',
          ...Object.entries(results.suiteRuns).map(
            ([k, v]) => `| ${k} | ${v.exitCode}${v.error ? ` (${cell(v.error.slice(0, 120))})` : ''} | ${v.seconds} |`,
          ),
        ].join('\n');
      default:
        throw new Error(`unknown directive {{${[name, ...args].join(':')}}}`);
    }
  };
  const markdown = template.replace(/\{\{([a-z]+)((?::[^}:]+)*)\}\}/g, (_all, name: string, rest: string) =>
    directive(name, rest ? rest.slice(1).split(':') : []),
  );
  return { markdown, charts };
}

/** The newest full-mode results file in `dir`, by name (`<date>-<host>.json`). */
export function newestResults(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && !f.endsWith('-quick.json'))
    .sort()
    .at(-1);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const root = join(here, '..');
  const argv = process.argv.slice(2);
  const opt = (n: string) => (argv.includes(n) ? argv[argv.indexOf(n) + 1] : undefined);
  const resultsDir = join(root, 'bench/results');
  const resultsPath =
    opt('--results') ?? (newestResults(resultsDir) ? join(resultsDir, newestResults(resultsDir)!) : undefined);
  if (!resultsPath) {
    process.stderr.write('render: no results file (run `make bench` first, or pass --results FILE)\n');
    process.exit(1);
  }
  const outDir = opt('--out-dir') ?? here;
  const results = JSON.parse(await readFile(resultsPath, 'utf8')) as Results;
  const template = await readFile(join(here, 'v0.1.template.md'), 'utf8');
  const absolute = resolve(resultsPath);
  const name = absolute.startsWith(root) ? relative(root, absolute) : basename(absolute);
  try {
    const { markdown, charts } = render(template, results, name);
    await mkdir(join(outDir, 'charts'), { recursive: true });
    await writeFile(join(outDir, 'v0.1.md'), markdown);
    for (const [n, svg] of Object.entries(charts)) await writeFile(join(outDir, 'charts', `${n}.svg`), svg);
    process.stdout.write(
      `render: ${relative(process.cwd(), join(outDir, 'v0.1.md'))} and ${Object.keys(charts).length} chart(s) from ${name}\n`,
    );
  } catch (err) {
    process.stderr.write(`render: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
