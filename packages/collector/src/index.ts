export { type Collector, type CollectorStatus, createCollector, type UpstreamStatusView } from './collector.js';
export { CollectorError, type CollectorErrorCode } from './errors.js';
export type { BackoffOptions, CollectorOptions } from './options.js';
export type { RecoveryReport } from './spool/queue.js';
export type { Encoding, Signal } from './spool/record.js';
export { type FullPolicy, inspectSpool, type SpoolInspection, type SpoolStats } from './spool/spool.js';
export {
  type CollectorCounters,
  type DropReason,
  LocalMetricNames,
  type RequestOutcome,
} from './telemetry.js';
export {
  redactUrl,
  type SignalUpstreamStatus,
  type UpstreamState,
  type UpstreamStatus,
} from './upstream.js';
