/**
 * Span, attribute and metric names shared by every layer. One place, so the trace a task leaves reads the same
 * whichever package wrote each part. Metric names follow the OpenTelemetry naming rules (dot-separated namespace,
 * unit in the `unit` field, not in the name).
 */

/** Instrumentation scope name used by every VYR tracer and meter. */
export const INSTRUMENTATION_SCOPE = 'vyr';

/** Span names: one trace per task, root `vyr.task`, one child per phase (ARCHITECTURE.md §5). */
export const SpanNames = {
  task: 'vyr.task',
  verify: 'vyr.verify',
  prepare: 'vyr.prepare',
  stateCreate: 'vyr.state.create',
  stateBind: 'vyr.state.bind',
  instantiate: 'vyr.instantiate',
  run: 'vyr.run',
  stateRelease: 'vyr.state.release',
  terminate: 'vyr.terminate',
  import: 'vyr.artifact.import',
} as const;

/** Attribute keys set on VYR spans and metric points. */
export const Attr = {
  taskId: 'vyr.task.id',
  taskOutcome: 'vyr.task.outcome',
  taskReason: 'vyr.task.reason',
  exitCode: 'vyr.task.exit_code',
  artifactDigest: 'vyr.artifact.digest',
  artifactName: 'vyr.artifact.name',
  nodeId: 'vyr.node.id',
  nodeTier: 'vyr.node.tier',
  cacheHit: 'vyr.prepare.cache_hit',
  stateId: 'vyr.state.id',
  stateSlot: 'vyr.state.slot',
  stateAccess: 'vyr.state.access',
  stateDigest: 'vyr.state.digest',
  stateBytes: 'vyr.state.bytes',
  errorCode: 'vyr.error.code',
} as const;

/** Metric instrument names (ARCHITECTURE.md §5 and §6). */
export const MetricNames = {
  taskDuration: 'vyr.task.duration',
  tasksActive: 'vyr.task.active',
  queueLength: 'vyr.task.queue.length',
  verifyDuration: 'vyr.artifact.verify.duration',
  prepareDuration: 'vyr.artifact.prepare.duration',
  stateBytes: 'vyr.state.bytes',
  telemetryDropped: 'vyr.telemetry.dropped',
  collectorReceived: 'vyr.collector.received',
  collectorForwarded: 'vyr.collector.forwarded',
  collectorRetries: 'vyr.collector.retries',
  collectorDropped: 'vyr.collector.dropped',
  collectorSpoolItems: 'vyr.collector.spool.items',
  collectorSpoolBytes: 'vyr.collector.spool.bytes',
  collectorSpoolOldestAge: 'vyr.collector.spool.oldest_age',
} as const;
