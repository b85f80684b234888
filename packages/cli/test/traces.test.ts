import { describe, expect, it } from 'vitest';
import { renderTraceTree, type SpanRow, wantsColor } from '../src/commands/telemetry.js';

const MS = 1_000_000n;
const T0 = 1_700_000_000_000n * MS;

function span(
  name: string,
  id: string,
  parent: string,
  startMs: number,
  durationMs: number,
  status: SpanRow['status'] = 'UNSET',
): SpanRow {
  return {
    traceId: 'ab'.repeat(16),
    spanId: id,
    parentSpanId: parent,
    name,
    startUnixNano: T0 + BigInt(startMs) * MS,
    durationMs,
    status,
    attributes: {},
  };
}

// A task of 100 ms: prepare for the first 40, run for the last 50, a failing step in between.
const ROWS = [
  span('vyr.run', 'r', 't', 50, 50, 'OK'),
  span('vyr.task', 't', '', 0, 100),
  span('vyr.prepare', 'p', 't', 0, 40),
  span('vyr.state.bind', 'b', 't', 40, 0.1, 'ERROR'),
];

describe('vyr traces: a waterfall per trace', () => {
  it('places each span as a bar on the task time axis, with aligned durations and offsets, plain when not a terminal', () => {
    const out = renderTraceTree(ROWS, { barWidth: 20 });
    expect(out).toBe(
      [
        `trace ${'ab'.repeat(16)}`,
        '  vyr.task                            100.000 ms     +0.000 |####################| UNSET',
        '    vyr.prepare                        40.000 ms     +0.000 |########            | UNSET',
        '    vyr.state.bind                      0.100 ms    +40.000 |        #           | ERROR',
        '    vyr.run                            50.000 ms    +50.000 |          ##########| OK',
      ].join('\n'),
    );
    expect(out).not.toContain('\u001b[');
  });

  it('colours the status (red ERROR, green OK) and the bars on a terminal', () => {
    const out = renderTraceTree(ROWS, { barWidth: 20, color: true });
    expect(out).toContain('\u001b[31mERROR');
    expect(out).toContain('\u001b[32mOK');
    expect(out).toContain('█');
  });

  it('colours only a terminal, and never with NO_COLOR or TERM=dumb', () => {
    expect(wantsColor({ isTTY: true }, {})).toBe(true);
    expect(wantsColor({ isTTY: false }, {})).toBe(false);
    expect(wantsColor({}, {})).toBe(false);
    expect(wantsColor({ isTTY: true }, { NO_COLOR: '1' })).toBe(false);
    expect(wantsColor({ isTTY: true }, { TERM: 'dumb' })).toBe(false);
  });
});
