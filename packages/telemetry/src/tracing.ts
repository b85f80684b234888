import {
  type Attributes,
  type Context,
  context,
  type Meter,
  metrics,
  type Span,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { Attr, INSTRUMENTATION_SCOPE } from './names.js';

/** The tracer every VYR library writes spans with. A no-op until an app registers an SDK. */
export function vyrTracer(version = '0.1.0'): Tracer {
  return trace.getTracer(INSTRUMENTATION_SCOPE, version);
}

/** The meter every VYR library records metrics with. A no-op until an app registers an SDK. */
export function vyrMeter(version = '0.1.0'): Meter {
  return metrics.getMeter(INSTRUMENTATION_SCOPE, version);
}

/** Options of {@link withSpan}. */
export interface WithSpanOptions {
  /** Attributes set when the span starts. */
  attributes?: Attributes;
  /** Parent context; default: the active context. */
  parent?: Context;
  /** Tracer to use; default: {@link vyrTracer}. */
  tracer?: Tracer;
}

/**
 * Runs `fn` inside a new active span and ends the span however `fn` ends. A thrown error is recorded on the span
 * (status ERROR, exception event, `vyr.error.code` when the error carries a `code`) and rethrown unchanged.
 */
export async function withSpan<T>(
  name: string,
  options: WithSpanOptions,
  fn: (span: Span) => Promise<T> | T,
): Promise<T> {
  const tracer = options.tracer ?? vyrTracer();
  const parent = options.parent ?? context.active();
  const span = tracer.startSpan(name, { attributes: options.attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    recordError(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** Marks `span` as failed with `err`: status ERROR, an exception event, and the error's `code` if it has one. */
export function recordError(span: Span, err: unknown): void {
  const error = err instanceof Error ? err : new Error(String(err));
  span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') span.setAttribute(Attr.errorCode, code);
}
