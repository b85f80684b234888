import { create } from '@bufbuild/protobuf';
import {
  type KeyValue,
  type Metric,
  MetricSchema,
  type ResourceMetrics,
  ResourceMetricsSchema,
  type ResourceSpans,
  ResourceSpansSchema,
  ScopeMetricsSchema,
  ScopeSpansSchema,
  type Span,
} from '@vyr/proto/otlp';

/** Attribute key that marks a span or data point as belonging to a task (`@vyr/telemetry` Attr.taskId). */
export const TASK_ID_ATTRIBUTE = 'vyr.task.id';

/** Lowercase hex of bytes (trace ids). */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function stringAttr(attributes: readonly KeyValue[], key: string): string | undefined {
  for (const kv of attributes) {
    if (kv.key === key && kv.value?.value.case === 'stringValue') return kv.value.value.value;
  }
  return undefined;
}

/** What a trace subscriber asked for. */
export interface SpanFilter {
  /** Task whose spans to keep (spans carrying `vyr.task.id` = this id); absent keeps all. */
  taskId?: string;
  /** Keep spans that started at or after this time (ns since the epoch); 0 keeps all. */
  sinceUnixNano: bigint;
}

/**
 * Narrows a ResourceSpans batch to the spans a subscriber wants, or `undefined` when none remain. A span belongs
 * to a task when it carries the task's `vyr.task.id`: the runtime sets it on the task's root span `vyr.task`, and the
 * node's span processor copies it onto every descendant when it starts (`apps/node`, `TaskAttributionProcessor`).
 * The trace id is not enough: tasks submitted under one caller `traceparent` share their trace.
 */
export function filterResourceSpans(rs: ResourceSpans, filter: SpanFilter): ResourceSpans | undefined {
  if (filter.taskId === undefined && filter.sinceUnixNano === 0n) return rs;
  const keep = (span: Span): boolean => {
    if (span.startTimeUnixNano < filter.sinceUnixNano) return false;
    if (filter.taskId === undefined) return true;
    return stringAttr(span.attributes, TASK_ID_ATTRIBUTE) === filter.taskId;
  };
  const scopeSpans = [];
  for (const ss of rs.scopeSpans) {
    const spans = ss.spans.filter(keep);
    if (spans.length === 0) continue;
    scopeSpans.push(spans.length === ss.spans.length ? ss : create(ScopeSpansSchema, { ...ss, spans }));
  }
  if (scopeSpans.length === 0) return undefined;
  return create(ResourceSpansSchema, { ...rs, scopeSpans });
}

/** What a metric subscriber asked for. Metrics are node-wide: there is no task filter (StreamMetrics refuses one). */
export interface MetricFilter {
  /** Keep data points recorded at or after this time (ns since the epoch); 0 keeps all. */
  sinceUnixNano: bigint;
}

function narrowMetric(metric: Metric, filter: MetricFilter): Metric | undefined {
  const keep = (p: { attributes: KeyValue[]; timeUnixNano: bigint }): boolean => p.timeUnixNano >= filter.sinceUnixNano;
  const data = metric.data;
  if (data.case === undefined) return undefined;
  const points = (data.value.dataPoints as { attributes: KeyValue[]; timeUnixNano: bigint }[]).filter(keep);
  if (points.length === 0) return undefined;
  if (points.length === data.value.dataPoints.length) return metric;
  const value = { ...data.value, dataPoints: points } as typeof data.value;
  return create(MetricSchema, { ...metric, data: { case: data.case, value } as Metric['data'] });
}

/** Narrows a ResourceMetrics collection to the data points a subscriber wants, or `undefined` when none remain. */
export function filterResourceMetrics(rm: ResourceMetrics, filter: MetricFilter): ResourceMetrics | undefined {
  if (filter.sinceUnixNano === 0n) return rm;
  const scopeMetrics = [];
  for (const sm of rm.scopeMetrics) {
    const metrics = sm.metrics.map((m) => narrowMetric(m, filter)).filter((m): m is Metric => m !== undefined);
    if (metrics.length > 0) scopeMetrics.push(create(ScopeMetricsSchema, { ...sm, metrics }));
  }
  if (scopeMetrics.length === 0) return undefined;
  return create(ResourceMetricsSchema, { ...rm, scopeMetrics });
}
