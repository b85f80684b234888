import './fresh-dist.js';
import { context, ROOT_CONTEXT, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  StackContextManager,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { afterEach, describe, expect, it } from 'vitest';
import { recordError, withSpan } from '../dist/index.js';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const tracer = provider.getTracer('test');
// What an app's SDK set-up does: without a context manager no span is ever "active".
context.setGlobalContextManager(new StackContextManager().enable());

class CodedError extends Error {
  readonly code = 'UNTRUSTED_KEY';
}

describe('withSpan', () => {
  afterEach(() => exporter.reset());

  it('ends the span with status UNSET and returns the result; the span is active inside', async () => {
    let inside: string | undefined;
    const result = await withSpan('vyr.test', { tracer, attributes: { 'vyr.k': 'v' } }, async (span) => {
      inside = trace.getActiveSpan()?.spanContext().spanId;
      expect(inside).toBe(span.spanContext().spanId);
      return 42;
    });
    expect(result).toBe(42);
    const [span] = exporter.getFinishedSpans();
    expect(span!.name).toBe('vyr.test');
    expect(span!.attributes).toEqual({ 'vyr.k': 'v' });
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
    expect(span!.ended).toBe(true);
  });

  it('records a thrown error (status ERROR, exception event, vyr.error.code) and rethrows it unchanged', async () => {
    const error = new CodedError('signed by a key outside the trust policy');
    await expect(
      withSpan('vyr.verify', { tracer }, () => {
        throw error;
      }),
    ).rejects.toBe(error);
    const [span] = exporter.getFinishedSpans();
    expect(span!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'signed by a key outside the trust policy' });
    expect(span!.attributes['vyr.error.code']).toBe('UNTRUSTED_KEY');
    const event = span!.events.find((e) => e.name === 'exception')!;
    expect(event.attributes).toMatchObject({ 'exception.message': 'signed by a key outside the trust policy' });
    expect(event.attributes!['exception.stacktrace']).toMatch(/CodedError|signed by a key/);
    expect(span!.ended).toBe(true);
  });

  it('records a rejected promise and a thrown non-Error value', async () => {
    await expect(withSpan('a', { tracer }, async () => Promise.reject(new Error('async failure')))).rejects.toThrow(
      'async failure',
    );
    await expect(
      withSpan('b', { tracer }, () => {
        throw 'a string';
      }),
    ).rejects.toBe('a string');
    const [a, b] = exporter.getFinishedSpans();
    expect(a!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'async failure' });
    expect(a!.attributes['vyr.error.code']).toBeUndefined();
    expect(b!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'a string' });
  });

  it('nests under the given parent context', async () => {
    await withSpan('parent', { tracer }, async (parent) => {
      await withSpan('child', { tracer, parent: trace.setSpan(ROOT_CONTEXT, parent) }, () => undefined);
    });
    const spans = exporter.getFinishedSpans();
    const parent = spans.find((s) => s.name === 'parent')!;
    const child = spans.find((s) => s.name === 'child')!;
    expect(child.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(child.spanContext().traceId).toBe(parent.spanContext().traceId);
  });

  it('recordError sets the code only when the error carries a string code', () => {
    const span = tracer.startSpan('x');
    recordError(span, Object.assign(new Error('n'), { code: 7 }));
    span.end();
    const [finished] = exporter.getFinishedSpans();
    expect(finished!.attributes['vyr.error.code']).toBeUndefined();
    expect(finished!.status.code).toBe(SpanStatusCode.ERROR);
  });
});
