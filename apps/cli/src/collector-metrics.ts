import { metrics } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';

/**
 * An exporter whose target is set once the collector's receiver is listening (its port may be ephemeral), so
 * the meter provider can be registered before `createCollector` creates its instruments.
 */
class LateBoundExporter implements PushMetricExporter {
  private target: OTLPMetricExporter | undefined;

  bind(target: OTLPMetricExporter): void {
    this.target = target;
  }

  export(data: ResourceMetrics, done: (result: ExportResult) => void): void {
    if (this.target === undefined) {
      done({ code: ExportResultCode.FAILED, error: new Error('collector receiver not listening yet') });
      return;
    }
    this.target.export(data, done);
  }

  selectAggregationTemporality(): AggregationTemporality {
    return AggregationTemporality.CUMULATIVE;
  }

  async forceFlush(): Promise<void> {
    await this.target?.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.target?.shutdown();
  }
}

/** The collector's own metrics pipeline; see {@link startSelfMetrics}. */
export interface SelfMetrics {
  /** Points the exporter at the collector's own receiver once it listens. */
  attach(receiverUrl: string): void;
  /** Exports a last collection and stops. */
  shutdown(): Promise<void>;
}

/**
 * Registers a global meter provider whose metrics (spool depth, bytes, oldest age, received, forwarded, retries,
 * dropped, upstream state) are exported over OTLP/HTTP to the collector's OWN receiver: they are spooled durably
 * with everything else and reach the upstream in order, even after an outage. Call before `createCollector`.
 */
export function startSelfMetrics(options: { intervalMs: number; serviceInstanceId: string }): SelfMetrics {
  const exporter = new LateBoundExporter();
  const provider = new MeterProvider({
    resource: resourceFromAttributes({
      'service.name': 'vyr-collector',
      'service.instance.id': options.serviceInstanceId,
    }),
    readers: [
      new PeriodicExportingMetricReader({
        exporter,
        exportIntervalMillis: options.intervalMs,
        exportTimeoutMillis: Math.min(options.intervalMs, 30_000),
      }),
    ],
  });
  metrics.setGlobalMeterProvider(provider);
  return {
    attach: (receiverUrl) => exporter.bind(new OTLPMetricExporter({ url: `${receiverUrl}/v1/metrics` })),
    shutdown: async () => {
      await provider.forceFlush().catch(() => undefined);
      await provider.shutdown().catch(() => undefined);
      metrics.disable();
    },
  };
}
