import './fresh-dist.js';
import { context, ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { contextFromTraceparent, formatTraceparent, parseTraceparent } from '../dist/index.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('W3C traceparent (Trace Context level 1, §3.2)', () => {
  it('parses a version 00 value into a remote, sampled span context', () => {
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-01`)).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-00`)?.traceFlags).toBe(TraceFlags.NONE);
    // Only the sampled bit is known; other flag bits are not propagated.
    expect(parseTraceparent(`00-${TRACE}-${SPAN}-ff`)?.traceFlags).toBe(TraceFlags.SAMPLED);
    // HTTP optional whitespace around the header value.
    expect(parseTraceparent(` 00-${TRACE}-${SPAN}-01\t`)?.traceId).toBe(TRACE);
  });

  it.each([
    ['version ff', `ff-${TRACE}-${SPAN}-01`],
    ['an all-zero trace id', `00-${'0'.repeat(32)}-${SPAN}-01`],
    ['an all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['uppercase hex in the trace id', `00-${TRACE.toUpperCase()}-${SPAN}-01`],
    ['uppercase hex in the parent id', `00-${TRACE}-00F067AA0BA902B7-01`],
    ['uppercase hex in the flags', `00-${TRACE}-${SPAN}-0A`],
    ['uppercase hex in the version', `0A-${TRACE}-${SPAN}-01`],
    ['extra fields on version 00', `00-${TRACE}-${SPAN}-01-extra`],
    ['a short trace id', `00-${TRACE.slice(1)}-${SPAN}-01`],
    ['a long parent id', `00-${TRACE}-${SPAN}0-01`],
    ['non-hex characters', `00-${TRACE.replace('4', 'g')}-${SPAN}-01`],
    ['another separator', `00_${TRACE}_${SPAN}_01`],
    ['a version without the dash before extra fields', `01-${TRACE}-${SPAN}-01x`],
    ['an empty string', ''],
  ])('ignores %s', (_what, value) => {
    expect(parseTraceparent(value)).toBeUndefined();
  });

  it('accepts a future version with extra fields after a dash (§3.2.4)', () => {
    expect(parseTraceparent(`01-${TRACE}-${SPAN}-01-what-the-future-holds`)).toMatchObject({
      traceId: TRACE,
      spanId: SPAN,
    });
  });

  it('formats a span context back to the same header value', () => {
    const value = `00-${TRACE}-${SPAN}-01`;
    expect(formatTraceparent(parseTraceparent(value)!)).toBe(value);
  });

  it('contextFromTraceparent joins the caller or falls back to the base context', () => {
    const joined = contextFromTraceparent(`00-${TRACE}-${SPAN}-01`, ROOT_CONTEXT);
    expect(trace.getSpanContext(joined)).toMatchObject({ traceId: TRACE, spanId: SPAN, isRemote: true });
    const base = ROOT_CONTEXT.setValue(Symbol('k'), 1);
    expect(contextFromTraceparent(`00-${TRACE.toUpperCase()}-${SPAN}-01`, base)).toBe(base);
    expect(contextFromTraceparent(undefined, base)).toBe(base);
    expect(contextFromTraceparent(undefined)).toBe(context.active());
  });
});
