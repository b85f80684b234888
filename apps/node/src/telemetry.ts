import { fromBinary } from '@bufbuild/protobuf';
import {
  type Attributes,
  type Context,
  context,
  type Meter,
  type MeterOptions,
  type MeterProvider,
  type MetricOptions,
  metrics,
  propagation,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ProtobufMetricsSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  type MetricReader,
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  MeterProvider as SdkMeterProvider,
  type ResourceMetrics as SdkResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  BatchSpanProcessor,
  type ReadableSpan,
  type Span as SdkSpan,
  type SpanExporter,
  type SpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { TASK_ID_ATTRIBUTE, type TelemetryFeeds, type TelemetryHealthView } from '@vyr/api';
import { ExportMetricsServiceRequestSchema, ExportTraceServiceRequestSchema } from '@vyr/proto/otlp';
import type { Logger } from '@vyr/telemetry';

/** Options of {@link createNodeTelemetry}. */
export interface NodeTelemetryOptions {
  nodeId: string;
  tier: string;
  version: string;
  /** OTLP/HTTP base URL (`/v1/traces` and `/v1/metrics` are appended); absent: no export, streams only. */
  otlpEndpoint?: string;
  /** Where finished spans and metric collections go for StreamTraces / StreamMetrics. */
  feeds: TelemetryFeeds;
  /** Period of metric collection (export and stream), ms; default 10,000. */
  metricIntervalMs?: number;
  /**
   * Span queue of the batch processor. Default 65,536: at the benchmark's load (a few thousand tasks per second,
   * ~8 spans each) the queue drains faster than it fills; the SDK default of 2,048 dropped spans in a tight loop.
   */
  maxQueueSize?: number;
  /** Spans per OTLP request; default 2,048. */
  maxExportBatchSize?: number;
  /** Delay between batch exports, ms; default 1,000. */
  scheduledDelayMillis?: number;
  /** Delay that groups finished spans into one stream batch, ms; default 25. */
  streamBatchDelayMs?: number;
  logger: Logger;
}

/** The node's OpenTelemetry SDK and its counters. */
export interface NodeTelemetry {
  readonly tracerProvider: TracerProvider;
  readonly meterProvider: SdkMeterProvider;
  /** Export counters for GetNodeInfo and `vyr node status`. */
  health(): TelemetryHealthView;
  /** Exports everything pending (spans, a final metric collection); never throws. */
  flush(): Promise<void>;
  /** Flushes, then stops the SDK and unregisters the globals. */
  shutdown(): Promise<void>;
}

const SPAN_PROCESSED_METRIC = 'otel.sdk.processor.span.processed';

/** Counts what an exporter reports, so `exported` and `failed` are never guesses. */
class CountingSpanExporter implements SpanExporter {
  exported = 0;
  failed = 0;
  readonly #inner: SpanExporter;
  readonly #logger: Logger;
  constructor(inner: SpanExporter, logger: Logger) {
    this.#inner = inner;
    this.#logger = logger;
  }
  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.exported += spans.length;
      else {
        this.failed += spans.length;
        this.#logger.warn('span export failed; spans dropped', { spans: spans.length, error: result.error?.message });
      }
      resultCallback(result);
    });
  }
  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

/** Counts metric exports the same way. */
class CountingMetricExporter implements PushMetricExporter {
  succeeded = 0;
  failed = 0;
  readonly #inner: PushMetricExporter;
  readonly #logger: Logger;
  constructor(inner: PushMetricExporter, logger: Logger) {
    this.#inner = inner;
    this.#logger = logger;
  }
  export(metricsData: SdkResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    this.#inner.export(metricsData, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.succeeded++;
      else {
        this.failed++;
        this.#logger.warn('metric export failed', { error: result.error?.message });
      }
      resultCallback(result);
    });
  }
  forceFlush(): Promise<void> {
    return this.#inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }
  selectAggregationTemporality = (t: Parameters<NonNullable<PushMetricExporter['selectAggregationTemporality']>>[0]) =>
    this.#inner.selectAggregationTemporality?.(t) ?? AggregationTemporality.CUMULATIVE;
}

/**
 * Puts the task's `vyr.task.id` on every descendant of a task's root span `vyr.task` (which the runtime creates with
 * it) when the descendant starts: the span ids of each task's live spans are tracked, and a span whose parent is one
 * of them belongs to that task. Tasks submitted under one caller `traceparent` share a trace id, so the trace id
 * cannot tell their spans apart; this attribute can (StreamTraces `task_id`, and any OTLP backend).
 */
class TaskAttributionProcessor implements SpanProcessor {
  /** Span id → task id, for spans of a task that have not ended. */
  readonly #taskBySpan = new Map<string, string>();
  onStart(span: SdkSpan, parentContext: Context): void {
    const own = span.attributes[TASK_ID_ATTRIBUTE];
    let taskId = typeof own === 'string' ? own : undefined;
    if (taskId === undefined) {
      const parent = trace.getSpanContext(parentContext);
      taskId = parent ? this.#taskBySpan.get(parent.spanId) : undefined;
      if (taskId === undefined) return;
      span.setAttribute(TASK_ID_ATTRIBUTE, taskId);
    }
    this.#taskBySpan.set(span.spanContext().spanId, taskId);
  }
  onEnd(span: ReadableSpan): void {
    this.#taskBySpan.delete(span.spanContext().spanId);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    this.#taskBySpan.clear();
    return Promise.resolve();
  }
}

/**
 * Hands finished spans to the StreamTraces feed as OTLP ResourceSpans. Spans are grouped for a few milliseconds and
 * converted with the OTLP exporter's own serializer, so the stream carries exactly what an OTLP receiver gets.
 */
class FeedSpanProcessor implements SpanProcessor {
  #pending: ReadableSpan[] = [];
  #timer: NodeJS.Timeout | undefined;
  readonly #feeds: TelemetryFeeds;
  readonly #delayMs: number;
  readonly #logger: Logger;
  constructor(feeds: TelemetryFeeds, delayMs: number, logger: Logger) {
    this.#feeds = feeds;
    this.#delayMs = delayMs;
    this.#logger = logger;
  }
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    this.#pending.push(span);
    if (this.#pending.length >= 512) this.#flush();
    else this.#timer ??= setTimeout(() => this.#flush(), this.#delayMs);
  }
  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const spans = this.#pending;
    this.#pending = [];
    if (spans.length === 0) return;
    try {
      const bytes = ProtobufTraceSerializer.serializeRequest(spans);
      if (!bytes) return;
      for (const rs of fromBinary(ExportTraceServiceRequestSchema, bytes).resourceSpans) this.#feeds.traces.publish(rs);
    } catch (err) {
      this.#logger.error('could not convert spans for StreamTraces', { error: (err as Error).message });
    }
  }
  forceFlush(): Promise<void> {
    this.#flush();
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return this.forceFlush();
  }
}

/** A metric "exporter" that publishes each collection to the StreamMetrics feed. */
class FeedMetricExporter implements PushMetricExporter {
  readonly #feeds: TelemetryFeeds;
  readonly #logger: Logger;
  constructor(feeds: TelemetryFeeds, logger: Logger) {
    this.#feeds = feeds;
    this.#logger = logger;
  }
  export(metricsData: SdkResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    try {
      const bytes = ProtobufMetricsSerializer.serializeRequest(metricsData);
      if (bytes) {
        for (const rm of fromBinary(ExportMetricsServiceRequestSchema, bytes).resourceMetrics) {
          this.#feeds.metrics.publish(rm);
        }
      }
      resultCallback({ code: ExportResultCode.SUCCESS });
    } catch (err) {
      this.#logger.error('could not convert metrics for StreamMetrics', { error: (err as Error).message });
      resultCallback({ code: ExportResultCode.FAILED, error: err as Error });
    }
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A MeterProvider view that delegates to `inner` and also counts the batch span processor's queue drops (the SDK's
 * self-observability counter `otel.sdk.processor.span.processed` with `error.type=queue_full`), so `spans_dropped`
 * includes them. The counter still reaches the OTLP backend through `inner`.
 */
function countingMeterProvider(inner: MeterProvider, onQueueDrop: (n: number) => void): MeterProvider {
  return {
    getMeter(name: string, version?: string, options?: MeterOptions): Meter {
      const m = inner.getMeter(name, version, options);
      return {
        createCounter(metricName: string, opts?: MetricOptions) {
          const counter = m.createCounter(metricName, opts);
          if (metricName !== SPAN_PROCESSED_METRIC) return counter;
          return {
            add(value: number, attributes?: Attributes) {
              if (attributes?.['error.type'] === 'queue_full') onQueueDrop(value);
              counter.add(value, attributes);
            },
          };
        },
        createGauge: (n, o) => m.createGauge(n, o),
        createHistogram: (n, o) => m.createHistogram(n, o),
        createUpDownCounter: (n, o) => m.createUpDownCounter(n, o),
        createObservableGauge: (n, o) => m.createObservableGauge(n, o),
        createObservableCounter: (n, o) => m.createObservableCounter(n, o),
        createObservableUpDownCounter: (n, o) => m.createObservableUpDownCounter(n, o),
        addBatchObservableCallback: (cb, obs) => m.addBatchObservableCallback(cb, obs),
        removeBatchObservableCallback: (cb, obs) => m.removeBatchObservableCallback(cb, obs),
      };
    },
  };
}

/**
 * Wires the OpenTelemetry SDK for the node (ARCHITECTURE.md §5): OTLP/HTTP protobuf exporters for traces and
 * metrics when an endpoint is given, the StreamTraces/StreamMetrics feeds always, W3C trace context propagation and
 * an AsyncLocalStorage context manager. Registers the providers globally, so libraries writing through
 * `@opentelemetry/api` reach it.
 */
export function createNodeTelemetry(options: NodeTelemetryOptions): NodeTelemetry {
  const logger = options.logger;
  const resource = resourceFromAttributes({
    'service.name': 'vyr-node',
    'service.version': options.version,
    'service.instance.id': options.nodeId,
    'vyr.node.id': options.nodeId,
    'vyr.node.tier': options.tier,
  });
  const intervalMs = options.metricIntervalMs ?? 10_000;
  const endpoint = options.otlpEndpoint?.replace(/\/+$/, '');

  const readers: MetricReader[] = [
    new PeriodicExportingMetricReader({
      exporter: new FeedMetricExporter(options.feeds, logger),
      exportIntervalMillis: intervalMs,
    }),
  ];
  let metricExporter: CountingMetricExporter | undefined;
  if (endpoint) {
    metricExporter = new CountingMetricExporter(new OTLPMetricExporter({ url: `${endpoint}/v1/metrics` }), logger);
    readers.push(new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: intervalMs }));
  }
  const meterProvider = new SdkMeterProvider({ resource, readers });

  let queueDropped = 0;
  const processors: SpanProcessor[] = [new FeedSpanProcessor(options.feeds, options.streamBatchDelayMs ?? 25, logger)];
  // First, so the attribute is on the span before any other processor sees it.
  const attribution = new TaskAttributionProcessor();
  let spanExporter: CountingSpanExporter | undefined;
  if (endpoint) {
    spanExporter = new CountingSpanExporter(new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }), logger);
    const maxQueueSize = options.maxQueueSize ?? 65_536;
    // sdk-trace 3.x takes one options object; the positional (exporter, config) form of 1.x crashes.
    processors.unshift(
      new BatchSpanProcessor({
        exporter: spanExporter,
        maxQueueSize,
        maxExportBatchSize: Math.min(options.maxExportBatchSize ?? 2048, maxQueueSize),
        scheduledDelayMillis: options.scheduledDelayMillis ?? 1000,
        selfObsMeterProvider: countingMeterProvider(meterProvider, (n) => {
          queueDropped += n;
        }),
      }),
    );
  }
  const tracerProvider = new TracerProvider({ resource, spanProcessors: [attribution, ...processors] });

  // Globals: the libraries (runtime, state) write through @opentelemetry/api only.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());

  const health = (): TelemetryHealthView => ({
    spansExported: spanExporter?.exported ?? 0,
    spansDropped: (spanExporter?.failed ?? 0) + queueDropped,
    metricExports: metricExporter?.succeeded ?? 0,
    metricExportsFailed: metricExporter?.failed ?? 0,
    otlpEndpoint: endpoint ?? '',
  });

  const flush = async (): Promise<void> => {
    try {
      await tracerProvider.forceFlush();
    } catch (err) {
      logger.warn('span flush failed', { error: (err as Error).message });
    }
    try {
      await meterProvider.forceFlush();
    } catch (err) {
      logger.warn('metric flush failed', { error: (err as Error).message });
    }
  };

  return {
    tracerProvider,
    meterProvider,
    health,
    flush,
    async shutdown() {
      await flush();
      await Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]);
      trace.disable();
      metrics.disable();
      propagation.disable();
      context.disable();
    },
  };
}
