import { type Context, context, ROOT_CONTEXT, type SpanContext, TraceFlags, trace } from '@opentelemetry/api';

// W3C Trace Context, level 1, §3.2: version "00" - trace-id (32 hex) - parent-id (16 hex) - trace-flags (2 hex).
// Every field is lowercase hex (§3.2.2: HEXDIGLC); a future version may append "-" and more fields (§3.2.4).
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Parses a W3C `traceparent` header value into a remote span context. Returns `undefined` for anything the
 * specification says to ignore: malformed values (including uppercase hex, which §3.2.2 does not allow), version
 * `ff`, an all-zero trace id or parent id, or extra fields on version `00`. Surrounding whitespace (HTTP optional
 * whitespace around a header value) is ignored.
 */
export function parseTraceparent(traceparent: string): SpanContext | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const m = TRACEPARENT.exec(traceparent.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return undefined;
  return { traceId, spanId, traceFlags: Number.parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
}

/**
 * The context a caller's `traceparent` designates, so spans started in it join the caller's trace. Does not depend
 * on a registered propagator (libraries cannot assume the app installed one). Falls back to `base` (default: the
 * active context) when `traceparent` is absent or invalid.
 */
export function contextFromTraceparent(traceparent: string | undefined, base?: Context): Context {
  const parent = base ?? context.active();
  if (!traceparent) return parent;
  const spanContext = parseTraceparent(traceparent);
  return spanContext ? trace.setSpanContext(base ?? ROOT_CONTEXT, spanContext) : parent;
}

/** The W3C `traceparent` value of `spanContext` (for handing a task's trace to another process). */
export function formatTraceparent(spanContext: SpanContext): string {
  const flags = (spanContext.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${spanContext.traceId}-${spanContext.spanId}-${flags}`;
}
