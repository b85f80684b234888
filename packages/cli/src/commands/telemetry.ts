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

/** Renders spans as one tree per trace, children under their parents, ordered by start time. */
export function renderTraceTree(rows: readonly SpanRow[]): string {
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
    lines.push(`trace ${traceId}`);
    const walk = (parent: string, depth: number): void => {
      for (const s of children.get(parent) ?? []) {
        const label = `${'  '.repeat(depth + 1)}${s.name}`;
        lines.push(
          `${label.padEnd(34)} ${s.durationMs.toFixed(3).padStart(10)} ms  ${s.status.padEnd(5)} ${shown(s)}`.trimEnd(),
        );
        walk(s.spanId, depth + 1);
      }
    };
    walk('', 0);
  }
  return lines.join('\n');
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
          rows.length === 0 ? 'no spans' : renderTraceTree(rows),
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
