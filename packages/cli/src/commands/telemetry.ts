import type { AnyValue, KeyValue, ResourceMetrics, Span } from '@vyr/proto/otlp';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { parseDuration } from '../parse.js';
import { type NodeFlags, withNode, withNodeOptions } from './node-client.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function anyValue(v: AnyValue | undefined): unknown {
  const x = v?.value;
  switch (x?.case) {
    case 'stringValue':
    case 'boolValue':
    case 'doubleValue':
      return x.value;
    case 'intValue':
      return Number(x.value);
    case 'arrayValue':
      return x.value.values.map(anyValue);
    default:
      return undefined;
  }
}

function attrs(kvs: readonly KeyValue[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs) out[kv.key] = anyValue(kv.value);
  return out;
}

/** One span, flattened for printing. */
export interface SpanRow {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  startUnixNano: bigint;
  durationMs: number;
  status: 'OK' | 'ERROR' | 'UNSET';
  attributes: Record<string, unknown>;
}

function row(s: Span): SpanRow {
  return {
    traceId: hex(s.traceId),
    spanId: hex(s.spanId),
    parentSpanId: hex(s.parentSpanId),
    name: s.name,
    startUnixNano: s.startTimeUnixNano,
    durationMs: Number(s.endTimeUnixNano - s.startTimeUnixNano) / 1e6,
    status: s.status?.code === 2 ? 'ERROR' : s.status?.code === 1 ? 'OK' : 'UNSET',
    attributes: attrs(s.attributes),
  };
}

function rowJson(r: SpanRow): Record<string, unknown> {
  return { ...r, startUnixNano: r.startUnixNano.toString() };
}

// Attributes worth a column in the human view; the rest are in --json.
const SHOWN = [
  'vyr.task.id',
  'vyr.task.outcome',
  'vyr.task.reason',
  'vyr.task.exit_code',
  'vyr.prepare.cache_hit',
  'vyr.state.slot',
  'vyr.state.digest',
  'vyr.error.code',
];

function shown(r: SpanRow): string {
  return SHOWN.filter((k) => r.attributes[k] !== undefined)
    .map((k) => `${k.replace(/^vyr\./, '')}=${String(r.attributes[k])}`)
    .join(' ');
}

/** Options of {@link renderTraceTree}. */
export interface TraceTreeOptions {
  /** ANSI colours for the status and the bars (a terminal; never when piped or with NO_COLOR). Default: false. */
  color?: boolean;
  /** Width of the waterfall column in characters. Default: 40. */
  barWidth?: number;
}

const ANSI = { red: '\u001b[31m', green: '\u001b[32m', cyan: '\u001b[36m', dim: '\u001b[2m', reset: '\u001b[0m' };

/**
 * One waterfall bar: the span's offset and length on the trace's time axis (earliest start to latest end), at
 * least one cell wide so that a 0.1 ms span is still seen. `#` when plain, `█` with colour.
 */
function bar(offsetMs: number, durationMs: number, totalMs: number, width: number, color: boolean): string {
  const scale = totalMs > 0 ? width / totalMs : 0;
  const from = Math.min(width - 1, Math.floor(offsetMs * scale));
  const cells = Math.max(1, Math.min(width - from, Math.round(durationMs * scale)));
  const body = (color ? '█' : '#').repeat(cells);
  return `|${' '.repeat(from)}${body}${' '.repeat(width - from - cells)}|`;
}

function paintStatus(status: SpanRow['status'], color: boolean): string {
  const text = status.padEnd(5);
  if (!color) return text;
  const tint = status === 'ERROR' ? ANSI.red : status === 'OK' ? ANSI.green : ANSI.dim;
  return `${tint}${text}${ANSI.reset}`;
}

/**
 * Renders spans as one waterfall per trace: children under their parents, ordered by start time; per span its
 * duration (aligned), its offset from the trace's start, a bar placed on the trace's time axis, its status
 * (coloured on a terminal) and the attributes worth reading. Plain ASCII when `color` is false.
 */
export function renderTraceTree(rows: readonly SpanRow[], options: TraceTreeOptions = {}): string {
  const color = options.color ?? false;
  const width = options.barWidth ?? 40;
  const byTrace = new Map<string, SpanRow[]>();
  for (const r of rows) byTrace.set(r.traceId, [...(byTrace.get(r.traceId) ?? []), r]);
  const lines: string[] = [];
  for (const [traceId, spans] of byTrace) {
    spans.sort((a, b) => (a.startUnixNano < b.startUnixNano ? -1 : a.startUnixNano > b.startUnixNano ? 1 : 0));
    const ids = new Set(spans.map((s) => s.spanId));
    const children = new Map<string, SpanRow[]>();
    for (const s of spans) {
      const parent = ids.has(s.parentSpanId) ? s.parentSpanId : '';
      children.set(parent, [...(children.get(parent) ?? []), s]);
    }
    const start = spans[0]!.startUnixNano;
    const offsetOf = (s: SpanRow): number => Number(s.startUnixNano - start) / 1e6;
    const totalMs = Math.max(...spans.map((s) => offsetOf(s) + s.durationMs));
    lines.push(`trace ${traceId}`);
    const walk = (parent: string, depth: number): void => {
      for (const s of children.get(parent) ?? []) {
        const label = `${'  '.repeat(depth + 1)}${s.name}`;
        const offset = `+${offsetOf(s).toFixed(3)}`.padStart(10);
        const drawn = bar(offsetOf(s), s.durationMs, totalMs, width, color);
        lines.push(
          `${label.padEnd(34)} ${s.durationMs.toFixed(3).padStart(10)} ms ${offset} ${color ? `${ANSI.cyan}${drawn}${ANSI.reset}` : drawn} ${paintStatus(s.status, color)} ${shown(s)}`.trimEnd(),
        );
        walk(s.spanId, depth + 1);
      }
    };
    walk('', 0);
  }
  return lines.join('\n');
}

/** Whether to colour output written to `stream`: a terminal, and no `NO_COLOR` (https://no-color.org). */
export function wantsColor(stream: unknown, env: Record<string, string | undefined>): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true && (env.NO_COLOR ?? '') === '' && env.TERM !== 'dumb';
}

interface TraceFlags extends NodeFlags {
  task?: string;
  follow: boolean;
  since?: string;
}

function sinceNanos(since: string | undefined): bigint {
  if (!since) return 0n;
  return BigInt(Date.now() - parseDuration(since, '--since')) * 1_000_000n;
}

function metricRows(rm: ResourceMetrics): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const sm of rm.scopeMetrics) {
    for (const m of sm.metrics) {
      const d = m.data;
      if (d.case === undefined) continue;
      for (const p of d.value.dataPoints) {
        const point = p as {
          attributes: KeyValue[];
          timeUnixNano: bigint;
          value?: { case?: string; value?: unknown };
          count?: bigint;
          sum?: number;
        };
        const value =
          point.value?.case !== undefined
            ? Number(point.value.value)
            : { count: Number(point.count ?? 0n), ...(point.sum !== undefined ? { sum: point.sum } : {}) };
        out.push({
          name: m.name,
          unit: m.unit,
          kind: d.case,
          value,
          attributes: attrs(point.attributes),
          timeUnixNano: point.timeUnixNano.toString(),
        });
      }
    }
  }
  return out;
}

/** `vyr traces` and `vyr metrics`: read the node's live telemetry streams. */
export function registerTelemetryCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  withNodeOptions(
    program
      .command('traces')
      .description('print the spans a node retains (as a tree per trace), or follow new ones')
      .option('--task <id>', 'only the spans of this task')
      .option('--since <duration>', 'only spans that started within this long (e.g. 10m)')
      .option('--follow', 'keep printing spans as tasks finish', false),
  ).action(async (flags: TraceFlags) =>
    withNode(ctx, flags, async ({ client }) => {
      const json = output().json;
      const rows: SpanRow[] = [];
      let dropped = 0n;
      for await (const batch of client.streamTraces({
        taskId: flags.task ?? '',
        sinceUnixNano: sinceNanos(flags.since),
        follow: flags.follow,
      })) {
        if (batch.dropped > dropped) {
          ctx.stderr.write(`vyr: missed ${batch.dropped - dropped} span batch(es): reading too slowly\n`);
          dropped = batch.dropped;
        }
        const spans = (batch.resourceSpans?.scopeSpans ?? []).flatMap((ss) => ss.spans.map(row));
        if (!flags.follow) {
          rows.push(...spans);
          continue;
        }
        for (const r of spans) {
          if (json) ctx.stdout.write(`${JSON.stringify(rowJson(r))}\n`);
          else
            ctx.stdout.write(
              `${r.traceId.slice(0, 8)} ${r.name.padEnd(20)} ${r.durationMs.toFixed(3).padStart(10)} ms  ${r.status.padEnd(5)} ${shown(r)}`.trimEnd() +
                '\n',
            );
        }
      }
      if (!flags.follow) {
        emit(
          ctx,
          output(),
          { spans: rows.map(rowJson), dropped: Number(dropped) },
          rows.length === 0 ? 'no spans' : renderTraceTree(rows, { color: wantsColor(ctx.stdout, ctx.env) }),
        );
      }
    }),
  );

  withNodeOptions(
    program
      .command('metrics')
      .description('print the metric collections a node retains, or follow new ones (node-wide: no metric is per task)')
      .option('--since <duration>', 'only points recorded within this long (e.g. 10m)')
      .option('--follow', 'keep printing collections as they are made', false),
  ).action(async (flags: Omit<TraceFlags, 'task'>) =>
    withNode(ctx, flags, async ({ client }) => {
      const json = output().json;
      let last: Record<string, unknown>[] = [];
      for await (const batch of client.streamMetrics({
        sinceUnixNano: sinceNanos(flags.since),
        follow: flags.follow,
      })) {
        const points = batch.resourceMetrics ? metricRows(batch.resourceMetrics) : [];
        if (flags.follow) {
          for (const p of points) {
            ctx.stdout.write(
              json
                ? `${JSON.stringify(p)}\n`
                : `${p.name} ${JSON.stringify(p.value)} ${JSON.stringify(p.attributes)}\n`,
            );
          }
        } else last = points;
      }
      if (!flags.follow) {
        // Cumulative metrics: the latest collection says it all.
        emit(
          ctx,
          output(),
          { points: last },
          last.length === 0
            ? 'no metrics collected yet'
            : last.map((p) => `${p.name} ${JSON.stringify(p.value)} ${JSON.stringify(p.attributes)}`).join('\n'),
        );
      }
    }),
  );
}
