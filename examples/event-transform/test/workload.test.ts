import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { cleanupTempDirs } from '@vyr/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { generateEvents, parseSize, START_MS } from '../generate.mjs';
import { EXAMPLE_DIR, good, runC } from './run-wasi.js';

afterAll(cleanupTempDirs);

const T0 = START_MS; // 2026-12-07T00:00:00Z
const lines = (...l: string[]) => `${l.join('\n')}\n`;
const out = (run: { stdout: string }) =>
  run.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const rejects = (run: { files: Record<string, string> }) =>
  run.files['rejects.jsonl']
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
/** The canonical value event-transform writes for one event, as the text it printed. */
async function canonicalValue(overrides: Record<string, unknown>): Promise<string> {
  const run = await runC(lines(good(overrides)));
  expect(rejects(run)).toEqual([]);
  return /"value":(-?\d+\.\d{3}),/.exec(run.stdout)?.[1] ?? 'no output';
}
async function reasonOf(line: string | Uint8Array): Promise<string> {
  const run = await runC(typeof line === 'string' ? `${line}\n` : line);
  expect(run.code).toBe(0);
  expect(run.stdout).toBe('');
  return rejects(run)[0]?.reason;
}

describe('event-transform (C, WASI P1): accepted events', () => {
  it('writes one enriched, normalised event per accepted line, in input order', async () => {
    const run = await runC(lines(good(), good({ device: 'dev-002', ts: T0 + 61_000, value: 70, unit: 'degF' })));
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `{"device":"dev-001","site":"plant-a","zone":"plant-a:line-1","ts":${T0},"metric":"temperature","value":21.500,"unit":"degC","window":${T0}}\n` +
        `{"device":"dev-002","site":"plant-b","zone":"plant-b:line-1","ts":${T0 + 61_000},"metric":"temperature","value":21.111,"unit":"degC","window":${T0 + 60_000}}\n`,
    );
    expect(run.summary).toEqual({ in: 2, out: 2, rejected: 0, windows: 2, groups: 2, window_ms: 60000, reasons: {} });
    expect(run.files['summary.json']).toBe(run.stderr);
  });

  it.each([
    ['temperature', 21.5, 'degC', '21.500'],
    ['temperature', 98.6, 'degF', '37.000'],
    ['temperature', -40, 'degF', '-40.000'],
    ['temperature', 0, 'K', '-273.150'],
    ['temperature', 300, 'K', '26.850'],
    ['pressure', 1013.25, 'hPa', '1013.250'],
    ['pressure', 101325, 'Pa', '1013.250'],
    ['pressure', 101.325, 'kPa', '1013.250'],
    ['pressure', 1.01325, 'bar', '1013.250'],
    ['pressure', 14.6959, 'psi', '1013.247'],
    ['humidity', 45.25, '%', '45.250'],
    ['voltage', 3.3, 'V', '3.300'],
    ['voltage', 3300, 'mV', '3.300'],
  ])('converts %s %s %s to its canonical unit: %s', async (metric, value, unit, expected) => {
    expect(await canonicalValue({ metric, value, unit })).toBe(expected);
  });

  it('rounds to thousandths half away from zero and never prints -0.000', async () => {
    expect(await canonicalValue({ metric: 'voltage', unit: 'V', value: 0.0005 })).toBe('0.001');
    expect(await canonicalValue({ metric: 'voltage', unit: 'V', value: -0.0005 })).toBe('-0.001');
    expect(await canonicalValue({ metric: 'voltage', unit: 'V', value: -0.0001 })).toBe('0.000');
    expect(await canonicalValue({ metric: 'voltage', unit: 'V', value: -0 })).toBe('0.000');
    expect(await canonicalValue({ metric: 'voltage', unit: 'V', value: 1e6 })).toBe('1000000.000');
  });

  it.each([
    ['2026-12-07T00:00:00Z', T0],
    ['2026-12-07T00:00:00.5Z', T0 + 500],
    ['2026-12-07T00:00:00.123456Z', T0 + 123],
    ['2026-12-07t00:00:00.999z', T0 + 999],
    ['2026-12-07T01:00:00+01:00', T0],
    ['2026-12-06T18:30:00-05:30', T0],
    ['2024-02-29T12:00:00Z', Date.UTC(2024, 1, 29, 12)],
    ['1970-01-01T00:00:00Z', 0],
    [T0 + 42, T0 + 42],
    [1.5e3, 1500],
  ])('reads the timestamp %j as UTC epoch ms %d', async (ts, ms) => {
    const run = await runC(lines(good({ ts })));
    expect(out(run)[0].ts).toBe(ms);
  });

  it('puts events into tumbling windows [start, start + width), however late they come', async () => {
    const run = await runC(
      lines(
        good({ ts: T0 + 59_999, value: 1 }),
        good({ ts: T0 + 60_000, value: 2 }),
        good({ ts: T0 + 5, value: 3 }), // out of order: back to the first window
      ),
    );
    expect(out(run).map((e) => e.window)).toEqual([T0, T0 + 60_000, T0]);
    expect(Object.keys(run.files).sort()).toEqual([
      'rejects.jsonl',
      'summary.json',
      `windows/${T0}.jsonl`,
      `windows/${T0 + 60_000}.jsonl`,
    ]);
    expect(JSON.parse(run.files[`windows/${T0}.jsonl`])).toMatchObject({ count: 2, min: 1, max: 3 });
    const narrow = await runC(lines(good({ ts: T0 + 9_999 }), good({ ts: T0 + 10_000 })), {
      args: ['--window-seconds', '10'],
    });
    expect(out(narrow).map((e) => e.window)).toEqual([T0, T0 + 10_000]);
    expect(narrow.summary?.window_ms).toBe(10_000);
  });

  it('aggregates per device and metric: count, min, max, mean (half away from zero) and nearest-rank p95', async () => {
    const values = Array.from({ length: 20 }, (_, i) => 20 - i); // 20 … 1, unsorted input
    const run = await runC(
      lines(
        ...values.map((value) => good({ metric: 'voltage', unit: 'V', value })),
        good({ device: 'dev-002', metric: 'voltage', unit: 'V', value: -1 }),
        good({ device: 'dev-002', metric: 'voltage', unit: 'V', value: -2 }),
        good({ metric: 'humidity', unit: '%', value: 50 }),
      ),
    );
    const rows = run.files[`windows/${T0}.jsonl`].trim().split('\n');
    expect(rows).toEqual([
      `{"device":"dev-001","site":"plant-a","zone":"plant-a:line-1","metric":"humidity","unit":"%","window":${T0},"count":1,"min":50.000,"max":50.000,"mean":50.000,"p95":50.000}`,
      `{"device":"dev-001","site":"plant-a","zone":"plant-a:line-1","metric":"voltage","unit":"V","window":${T0},"count":20,"min":1.000,"max":20.000,"mean":10.500,"p95":19.000}`,
      `{"device":"dev-002","site":"plant-b","zone":"plant-b:line-1","metric":"voltage","unit":"V","window":${T0},"count":2,"min":-2.000,"max":-1.000,"mean":-1.500,"p95":-1.000}`,
    ]);
    expect(run.summary).toMatchObject({ in: 23, out: 23, windows: 1, groups: 3 });
  });

  it('ignores members it does not know, nested ones included; the last of a repeated member counts', async () => {
    const run = await runC(
      lines(
        '{"meta":{"a":[1,{"b":[[],{}]}],"c":null},"device":"dev-001","ts":0,"metric":"voltage","value":1,"unit":"V"}',
        '{"device":"nope","device":"dev-003","ts":0,"metric":"voltage","value":1,"unit":"V","value":2}',
        '{"d\\u0065vice":"dev-00\\u0034","ts":0,"metric":"voltage","value":1,"unit":"V"}',
      ),
    );
    expect(out(run).map((e) => [e.device, e.value])).toEqual([
      ['dev-001', 1],
      ['dev-003', 2],
      ['dev-004', 1],
    ]);
  });
});

describe('event-transform (C, WASI P1): rejects', () => {
  it.each([
    ['invalid_json', '{"device":"dev-001",'],
    ['invalid_json', '{"a":01}'],
    ['invalid_json', '{} {}'],
    ['invalid_json', "{'device':'dev-001'}"],
    ['invalid_json', '{"a":"\u0001"}'],
    ['not_object', '[1,2,3]'],
    ['not_object', 'null'],
    ['not_object', '"text"'],
    ['missing_device', good({ device: undefined })],
    ['bad_device', good({ device: 'dev 001' })],
    ['bad_device', good({ device: 7 })],
    ['bad_device', good({ device: 'd'.repeat(65) })],
    ['bad_device', good({ device: 'dev-001\u0000' })],
    ['missing_ts', good({ ts: undefined })],
    ['bad_ts', good({ ts: '2026-13-07T00:00:00Z' })],
    ['bad_ts', good({ ts: '2026-02-29T00:00:00Z' })],
    ['bad_ts', good({ ts: '2026-12-07T23:59:60Z' })],
    ['bad_ts', good({ ts: '2026-12-07 00:00:00Z' })],
    ['bad_ts', good({ ts: '2026-12-07T00:00:00' })],
    ['bad_ts', good({ ts: '1969-12-31T23:59:59Z' })],
    ['bad_ts', good({ ts: 1.5 })],
    ['bad_ts', good({ ts: -1 })],
    ['bad_ts', good({ ts: true })],
    ['missing_metric', good({ metric: undefined })],
    ['bad_metric', good({ metric: 'rpm' })],
    ['missing_value', good({ value: undefined })],
    ['bad_value', good({ value: '21.5' })],
    ['bad_value', good({ value: null })],
    ['bad_value', '{"device":"dev-001","ts":0,"metric":"voltage","value":1e400,"unit":"V"}'],
    ['missing_unit', good({ unit: undefined })],
    ['bad_unit', good({ unit: 'psi' })],
    ['bad_unit', good({ unit: 'DEGC' })],
    ['out_of_range', good({ value: -300 })],
    ['out_of_range', good({ metric: 'humidity', unit: '%', value: 100.5 })],
    ['out_of_range', good({ metric: 'pressure', unit: 'hPa', value: -1 })],
    ['out_of_range', good({ metric: 'voltage', unit: 'V', value: 1e6 + 1 })],
    ['unknown_device', good({ device: 'dev-999' })],
  ])('rejects as %s: %s', async (reason, line) => {
    expect(await reasonOf(line)).toBe(reason);
  });

  it('rejects invalid UTF-8 (and an overlong form) before parsing', async () => {
    expect(await reasonOf(Buffer.from([...Buffer.from('{"device":"'), 0xff, ...Buffer.from('"}\n')]))).toBe(
      'invalid_utf8',
    );
    expect(await reasonOf(Buffer.from([...Buffer.from('{"a":"'), 0xc0, 0xaf, ...Buffer.from('"}\n')]))).toBe(
      'invalid_utf8',
    );
    expect(await reasonOf(Buffer.from([0xef, 0xbb, 0xbf, ...Buffer.from(`${good()}\n`)]))).toBe('invalid_json'); // BOM kept
  });

  it('rejects a line over 64 KiB without reading it as JSON, and goes on with the next line', async () => {
    const long = `{"pad":"${'x'.repeat(65_536)}"}`;
    const run = await runC(lines(long, good()));
    expect(rejects(run)).toEqual([{ line: 1, reason: 'line_too_long' }]);
    expect(out(run)).toHaveLength(1);
  });

  it('skips blank lines without counting them, but numbers lines as the input has them', async () => {
    const run = await runC(`\n  \t\r\n${good()}\r\n\n{oops}\n${good()}`); // last line without newline
    expect(rejects(run)).toEqual([{ line: 5, reason: 'invalid_json' }]);
    expect(run.summary).toMatchObject({ in: 3, out: 2, rejected: 1, reasons: { invalid_json: 1 } });
  });

  it('counts every reason in the summary, in byte order of the reason', async () => {
    const run = await runC(lines('[]', good({ unit: 'x' }), '[]', good()));
    expect(run.stderr).toBe(
      `{"in":4,"out":1,"rejected":3,"windows":1,"groups":1,"window_ms":60000,"reasons":{"bad_unit":1,"not_object":2}}\n`,
    );
  });
});

describe('event-transform (C, WASI P1): inputs it cannot use', () => {
  it('handles an empty input: exit 0, empty rejects, no windows directory', async () => {
    const run = await runC('');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    expect(run.files).toEqual({
      'rejects.jsonl': '',
      'summary.json': '{"in":0,"out":0,"rejected":0,"windows":0,"groups":0,"window_ms":60000,"reasons":{}}\n',
    });
  });

  it('exits 66 naming the reference slot when the reference state is not there', async () => {
    const run = await runC(lines(good()), { referenceDir: null });
    expect(run.code).toBe(66);
    expect(run.stderr).toContain("reference state missing: slot 'reference' has no /ref/devices.json");
  });

  it.each([
    ['not an array', '{"device":"dev-001"}', 'not a JSON array'],
    ['invalid JSON', '[{"device":"dev-001",}]', 'each entry must be a JSON object'],
    ['a missing member', '[{"device":"dev-001","site":"s"}]', 'an entry has no "zone"'],
    ['a bad name', '[{"device":"dev 1","site":"s","zone":"z"}]', '"device" of an entry is not a valid name'],
    [
      'a repeated device',
      '[{"device":"a","site":"s","zone":"z"},{"device":"a","site":"t","zone":"z"}]',
      "device 'a' appears twice",
    ],
  ])('exits 65 on a reference table with %s', async (_what, reference, message) => {
    const run = await runC(lines(good()), { reference });
    expect(run.code).toBe(65);
    expect(run.stderr).toContain(message);
  });

  it('exits 73 when the aggregate state is not empty, and 64 on bad arguments', async () => {
    expect((await runC('', { aggregateFiles: { 'summary.json': '{}' } })).code).toBe(73);
    expect((await runC('', { args: ['--window-seconds', '0'] })).code).toBe(64);
    expect((await runC('', { args: ['--frobnicate', '1'] })).code).toBe(64);
  });

  it('reads the input from a file when given --input, e.g. one in a bound state', async () => {
    const run = await runC('', { args: ['--input', '/ref/devices.json'] });
    expect(run.code).toBe(0);
    expect(run.summary).toMatchObject({ in: 50, rejected: 50 }); // the table's lines are not events
  });
});

describe('generate.mjs', () => {
  const digest = (seed: number, bytes: number) => {
    const hash = createHash('sha256');
    let size = 0;
    for (const chunk of generateEvents({ seed, bytes })) {
      hash.update(chunk);
      size += chunk.length;
    }
    return { sha256: hash.digest('hex'), size };
  };

  it('is deterministic per seed and stops at the line that reaches the size', () => {
    const a = digest(1, 200_000);
    expect(digest(1, 200_000)).toEqual(a);
    expect(digest(2, 200_000).sha256).not.toBe(a.sha256);
    expect(a.size).toBeGreaterThanOrEqual(200_000);
    expect(a.size).toBeLessThan(200_000 + 70_000);
    expect(parseSize('1m')).toBe(1e6);
    expect(parseSize('100MiB')).toBe(100 * 1024 ** 2);
    expect(() => parseSize('lots')).toThrow(/not a size/);
  });

  it('gives the workload a fixed share of bad lines, unit mixes and late events it processes without failing', async () => {
    const input = Buffer.concat([...generateEvents({ seed: 9, bytes: 300_000 })]);
    const run = await runC(input);
    expect(run.code).toBe(0);
    const s = run.summary!;
    expect(s.rejected / s.in).toBeGreaterThan(0.01);
    expect(s.rejected / s.in).toBeLessThan(0.04);
    expect(Object.keys(s.reasons).length).toBeGreaterThanOrEqual(12);
    const units = new Set(input.toString('latin1').match(/"unit":"[^"]+"/g));
    expect(units.size).toBeGreaterThanOrEqual(11);
    const ts = out(run).map((e) => e.ts as number);
    expect(ts.some((t, i) => i > 0 && t < ts[i - 1])).toBe(true); // out of order events were accepted
  });
});

describe('event-transform.wasm', () => {
  const hasClang = spawnSync('clang-19', ['--version']).status === 0;
  it.skipIf(!hasClang)('is reproduced byte for byte from src/event-transform.c by build.sh (needs clang-19)', () => {
    const out = execFileSync('bash', [join(EXAMPLE_DIR, 'build.sh'), '--check'], { encoding: 'utf8' });
    expect(out).toContain('event-transform.wasm reproduces byte for byte');
  });
});
