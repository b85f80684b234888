export { type Logger, type LogLevel, silentLogger } from './logger.js';
export { Attr, INSTRUMENTATION_SCOPE, MetricNames, SpanNames } from './names.js';
export { recordError, vyrMeter, vyrTracer, type WithSpanOptions, withSpan } from './tracing.js';
