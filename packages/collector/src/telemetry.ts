import type { BatchObservableCallback, Counter, Meter, ObservableGauge } from '@opentelemetry/api';
import { MetricNames, vyrMeter } from '@vyr/telemetry';
import type { Signal } from './spool/record.js';
import { UPSTREAM_STATES, type UpstreamState } from './upstream.js';

/** Why telemetry items left the collector without reaching the upstream. */
export type DropReason =
  /** Removed by the `drop-oldest` full policy. */
  | 'spool_full'
  /** Invalid items removed from an accepted request (answered with partial success). */
  | 'invalid'
  /** The upstream answered with partial success and rejected these items (never retried). */
  | 'upstream_rejected'
  /** The upstream answered 400 (bad data, OTLP specification): the request was dropped, never retried. */
  | 'upstream_status'
  /** The upstream answered 413 to a request that holds a single span, metric or log record: dropped. */
  | 'upstream_too_large'
  /** A spool record failed its checksum while being read for forwarding. */
  | 'corrupt';

/** Outcome of one incoming HTTP request. */
export type RequestOutcome =
  | 'accepted'
  | 'malformed'
  | 'too_large'
  | 'unsupported_media_type'
  | 'spool_full'
  | 'unavailable'
  /** Refused with 503 because `maxInflightBytes` of requests were already being processed. */
  | 'busy'
  | 'not_found'
  /** Refused with 401: no bearer token, or the wrong one. */
  | 'unauthenticated';

/**
 * Instrument names not (yet) in `@vyr/telemetry` names: requests by outcome and upstream state. Kept here so
 * `names.ts` stays owned by the telemetry package; they follow the same `vyr.collector.*` namespace.
 */
export const LocalMetricNames = {
  requests: 'vyr.collector.requests',
  upstreamState: 'vyr.collector.upstream.state',
  upstreamMisconfigured: 'vyr.collector.upstream.misconfigured',
} as const;

const DROP_REASONS: readonly DropReason[] = [
  'spool_full',
  'invalid',
  'upstream_rejected',
  'upstream_status',
  'upstream_too_large',
  'corrupt',
];
const OUTCOMES: readonly RequestOutcome[] = [
  'accepted',
  'malformed',
  'too_large',
  'unsupported_media_type',
  'spool_full',
  'unavailable',
  'busy',
  'not_found',
  'unauthenticated',
];

const perSignal = (): Record<Signal, number> => ({ traces: 0, metrics: 0, logs: 0 });

/** Monotonic counters of one collector instance (reported by `status()`). */
export interface CollectorCounters {
  /** Items accepted into the spool, per signal. */
  received: Record<Signal, number>;
  /** Items the upstream accepted (2xx, minus partial-success rejections), per signal. */
  forwarded: Record<Signal, number>;
  /** Upstream requests that succeeded (2xx). */
  forwardedRequests: number;
  /** Upstream attempts that will be retried (429/502/503/504 or connection failure). */
  retries: number;
  /**
   * Upstream answers taken as a misconfiguration (401, 403, 404, 405, 501, unfollowed redirects, 2xx without an
   * export response, …): the request stayed in the spool and the signal paused.
   */
  misconfigured: number;
  /** Items dropped, by reason. */
  dropped: Record<DropReason, number>;
  /** Incoming requests, by outcome. */
  requests: Record<RequestOutcome, number>;
}

/** Gauges read at collection time. */
export interface Observed {
  spoolItems: number;
  spoolBytes: number;
  oldestAgeSeconds: number;
  upstreamState: UpstreamState;
}

/**
 * The collector's own telemetry: in-memory counters for `status()` and the same numbers as OTel instruments
 * through `@opentelemetry/api` (no-ops until the app registers an SDK).
 */
export class CollectorTelemetry {
  readonly counters: CollectorCounters = {
    received: perSignal(),
    forwarded: perSignal(),
    forwardedRequests: 0,
    retries: 0,
    misconfigured: 0,
    dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>,
    requests: Object.fromEntries(OUTCOMES.map((r) => [r, 0])) as Record<RequestOutcome, number>,
  };
  private readonly meter: Meter;
  private readonly received: Counter;
  private readonly forwarded: Counter;
  private readonly retries: Counter;
  private readonly dropped: Counter;
  private readonly requests: Counter;
  private readonly misconfigured: Counter;
  private readonly gauges: ObservableGauge[];
  private readonly callback: BatchObservableCallback;

  constructor(observe: () => Observed, meter: Meter = vyrMeter()) {
    this.meter = meter;
    this.received = meter.createCounter(MetricNames.collectorReceived, {
      unit: '{item}',
      description: 'Telemetry items (spans, data points, log records) accepted into the spool',
    });
    this.forwarded = meter.createCounter(MetricNames.collectorForwarded, {
      unit: '{item}',
      description: 'Telemetry items accepted by the upstream',
    });
    this.retries = meter.createCounter(MetricNames.collectorRetries, {
      unit: '{request}',
      description: 'Upstream requests retried after 429/502/503/504 or a connection failure',
    });
    this.dropped = meter.createCounter(MetricNames.collectorDropped, {
      unit: '{item}',
      description: 'Telemetry items dropped, by reason',
    });
    this.requests = meter.createCounter(LocalMetricNames.requests, {
      unit: '{request}',
      description: 'Incoming OTLP/HTTP requests, by outcome',
    });
    this.misconfigured = meter.createCounter(LocalMetricNames.upstreamMisconfigured, {
      unit: '{request}',
      description: 'Upstream answers taken as a misconfiguration; the request stays in the spool',
    });
    const items = meter.createObservableGauge(MetricNames.collectorSpoolItems, {
      unit: '{item}',
      description: 'Telemetry items in the spool waiting for the upstream',
    });
    const bytes = meter.createObservableGauge(MetricNames.collectorSpoolBytes, {
      unit: 'By',
      description: 'Bytes of spool segment files on disk',
    });
    const age = meter.createObservableGauge(MetricNames.collectorSpoolOldestAge, {
      unit: 's',
      description: 'Age of the oldest item in the spool',
    });
    const state = meter.createObservableGauge(LocalMetricNames.upstreamState, {
      unit: '1',
      description: '1 for the current upstream state (attribute state), 0 for the others',
    });
    this.gauges = [items, bytes, age, state];
    this.callback = (result) => {
      const o = observe();
      result.observe(items, o.spoolItems);
      result.observe(bytes, o.spoolBytes);
      result.observe(age, o.oldestAgeSeconds);
      for (const s of UPSTREAM_STATES) {
        result.observe(state, s === o.upstreamState ? 1 : 0, { state: s });
      }
    };
    meter.addBatchObservableCallback(this.callback, this.gauges);
  }

  /** Items accepted into the spool. */
  addReceived(signal: Signal, items: number): void {
    this.counters.received[signal] += items;
    if (items > 0) this.received.add(items, { signal });
  }

  /** Items the upstream accepted. */
  addForwarded(signal: Signal, items: number): void {
    this.counters.forwarded[signal] += items;
    this.counters.forwardedRequests++;
    if (items > 0) this.forwarded.add(items, { signal });
  }

  /** One retry of an upstream request. */
  addRetry(signal: Signal, cause: string): void {
    this.counters.retries++;
    this.retries.add(1, { signal, cause });
  }

  /** One upstream answer taken as a misconfiguration (`status` is the HTTP status). */
  addMisconfigured(signal: Signal, status: string): void {
    this.counters.misconfigured++;
    this.misconfigured.add(1, { signal, status });
  }

  /** Items dropped for `reason`. */
  addDropped(signal: Signal, reason: DropReason, items: number): void {
    this.counters.dropped[reason] += items;
    if (items > 0) this.dropped.add(items, { signal, reason });
  }

  /** One incoming request with its outcome. */
  addRequest(outcome: RequestOutcome, signal?: Signal): void {
    this.counters.requests[outcome]++;
    this.requests.add(1, signal ? { outcome, signal } : { outcome });
  }

  /** Stops observing gauges (on collector stop). */
  close(): void {
    this.meter.removeBatchObservableCallback(this.callback, this.gauges);
  }
}
