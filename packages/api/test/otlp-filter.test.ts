import { create } from '@bufbuild/protobuf';
import { ResourceMetricsSchema, ResourceSpansSchema } from '@vyr/proto/otlp';
import { describe, expect, it } from 'vitest';
import { filterResourceMetrics, filterResourceSpans, TASK_ID_ATTRIBUTE } from '../src/otlp-filter.js';

const TRACE = new Uint8Array(16).fill(7);

function span(name: string, taskId: string | undefined, start: bigint) {
  return {
    traceId: TRACE,
    spanId: new Uint8Array(8).fill(name.length),
    name,
    startTimeUnixNano: start,
    endTimeUnixNano: start + 10n,
    attributes: taskId
      ? [{ key: TASK_ID_ATTRIBUTE, value: { value: { case: 'stringValue' as const, value: taskId } } }]
      : [],
  };
}

/** Three tasks in one trace (a shared caller traceparent), plus the caller's own span. */
const batch = create(ResourceSpansSchema, {
  scopeSpans: [
    {
      spans: [
        span('caller', undefined, 100n),
        span('vyr.task', 'tk_a', 110n),
        span('vyr.run', 'tk_a', 120n),
        span('vyr.task', 'tk_b', 130n),
        span('vyr.state.bind', 'tk_b', 140n),
        span('vyr.task', 'tk_c', 150n),
      ],
    },
  ],
});

const names = (rs: ReturnType<typeof filterResourceSpans>) =>
  rs?.scopeSpans.flatMap((ss) => ss.spans.map((s) => `${s.name}@${s.startTimeUnixNano}`)) ?? [];

describe('StreamTraces filter', () => {
  it('keeps only the spans carrying the task id, never the rest of a shared trace', () => {
    expect(names(filterResourceSpans(batch, { taskId: 'tk_a', sinceUnixNano: 0n }))).toEqual([
      'vyr.task@110',
      'vyr.run@120',
    ]);
    expect(names(filterResourceSpans(batch, { taskId: 'tk_b', sinceUnixNano: 0n }))).toEqual([
      'vyr.task@130',
      'vyr.state.bind@140',
    ]);
    expect(filterResourceSpans(batch, { taskId: 'tk_none', sinceUnixNano: 0n })).toBeUndefined();
  });

  it('since_unix_nano keeps spans that started at or after it, with or without a task', () => {
    expect(names(filterResourceSpans(batch, { sinceUnixNano: 140n }))).toEqual(['vyr.state.bind@140', 'vyr.task@150']);
    expect(names(filterResourceSpans(batch, { taskId: 'tk_a', sinceUnixNano: 115n }))).toEqual(['vyr.run@120']);
    expect(filterResourceSpans(batch, { sinceUnixNano: 0n })).toBe(batch);
  });
});

describe('StreamMetrics filter', () => {
  it('keeps data points recorded at or after since_unix_nano and drops metrics left empty', () => {
    const point = (t: bigint) => ({ timeUnixNano: t, value: { case: 'asInt' as const, value: 1n } });
    const rm = create(ResourceMetricsSchema, {
      scopeMetrics: [
        {
          metrics: [
            { name: 'old', data: { case: 'sum', value: { dataPoints: [point(10n)] } } },
            { name: 'mixed', data: { case: 'gauge', value: { dataPoints: [point(10n), point(30n)] } } },
          ],
        },
      ],
    });
    const kept = filterResourceMetrics(rm, { sinceUnixNano: 20n });
    const metrics = kept?.scopeMetrics[0]?.metrics ?? [];
    expect(metrics.map((m) => m.name)).toEqual(['mixed']);
    expect(
      (metrics[0]!.data.value as { dataPoints: { timeUnixNano: bigint }[] }).dataPoints.map((p) => p.timeUnixNano),
    ).toEqual([30n]);
    expect(filterResourceMetrics(rm, { sinceUnixNano: 40n })).toBeUndefined();
  });
});
