export { contextFromTraceparent, formatTraceparent, parseTraceparent } from './context.js';
export { type Logger, type LogLevel, silentLogger } from './logger.js';
export { recordTelemetryDropped } from './metrics.js';
export { Attr, INSTRUMENTATION_SCOPE, MetricNames, SpanNames } from './names.js';
export { recordError, vyrMeter, vyrTracer, type WithSpanOptions, withSpan } from './tracing.js';
