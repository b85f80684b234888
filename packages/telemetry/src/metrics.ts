import type { Attributes, Counter, Meter } from '@opentelemetry/api';
import { MetricNames } from './names.js';
import { vyrMeter } from './tracing.js';

let dropped: Counter | undefined;
let droppedMeter: Meter | undefined;

/**
 * Counts telemetry that was lost: spans, metric points or log records an exporter or a bounded buffer discarded
 * (ARCHITECTURE.md §5: nothing is dropped silently). `signal` says which kind (`traces`, `metrics`, `logs`,
 * `stream`), `reason` why (`queue_full`, `export_failed`, `slow_subscriber`).
 */
export function recordTelemetryDropped(
  count: number,
  attributes: Attributes & { signal: string; reason: string },
  meter: Meter = vyrMeter(),
): void {
  if (count <= 0) return;
  if (!dropped || droppedMeter !== meter) {
    droppedMeter = meter;
    dropped = meter.createCounter(MetricNames.telemetryDropped, {
      description: 'Telemetry items dropped before export',
      unit: '{item}',
    });
  }
  dropped.add(count, attributes);
}
