#!/usr/bin/env node
// Deterministic input for event-transform: JSON-Lines sensor events from a seeded PRNG. The same seed and size give
// the same bytes on every machine (integer PRNG, no clock). Mixes units and timestamp formats, puts 5 % of events
// out of order, and makes a fixed share of lines bad (see README.md "Generated input").
//
//   node generate.mjs [--seed N] [--bytes SIZE] [--out FILE] [--reference FILE]
//   SIZE: bytes, or with a suffix k/m/g (powers of 1000) or KiB/MiB/GiB (powers of 1024); default 1m.
import { createWriteStream, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_REFERENCE = join(here, 'reference', 'devices.json');
/** 2026-12-07T00:00:00Z: where generated time starts. */
export const START_MS = Date.UTC(2026, 11, 7);

/** Parses `1m`, `100MiB`, `1g`, `4096`… into bytes. */
export function parseSize(text) {
  const m = /^(\d+)\s*(k|m|g|kb|mb|gb|kib|mib|gib)?$/i.exec(String(text).trim());
  if (!m) throw new Error(`not a size: ${JSON.stringify(text)} (e.g. 1m, 100MiB, 4096)`);
  const unit = (m[2] ?? '').toLowerCase();
  const factor = {
    '': 1,
    k: 1e3,
    kb: 1e3,
    m: 1e6,
    mb: 1e6,
    g: 1e9,
    gb: 1e9,
    kib: 1024,
    mib: 1024 ** 2,
    gib: 1024 ** 3,
  }[unit];
  return Number(m[1]) * factor;
}

/** mulberry32: a 32-bit integer PRNG, the same sequence in every JavaScript engine. */
function prng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)],
  };
}

const OFFSETS = [
  ['+01:00', 60],
  ['-05:30', -330],
  ['+09:00', 540],
];

function rfc3339(ms, rnd) {
  const roll = rnd.int(100);
  if (roll < 60) return new Date(ms).toISOString(); // Z, milliseconds
  if (roll < 75) return new Date(ms - (ms % 1000)).toISOString().replace('.000Z', 'Z'); // whole seconds
  if (roll < 80) return new Date(ms).toISOString().replace('T', 't').replace('Z', 'z'); // lower case
  if (roll < 85) return new Date(ms).toISOString().replace('Z', '123Z'); // microseconds: truncated to ms
  const [text, minutes] = rnd.pick(OFFSETS);
  return new Date(ms + minutes * 60000).toISOString().replace('Z', text);
}

// Metric, share in %, canonical value generator, units with their inverse conversion (canonical -> unit).
const METRICS = [
  {
    metric: 'temperature',
    share: 40,
    value: (r) => 5 + r.next() * 30,
    units: [
      ['degC', 50, (c) => c],
      ['degF', 35, (c) => (c * 9) / 5 + 32],
      ['K', 15, (c) => c + 273.15],
    ],
  },
  {
    metric: 'pressure',
    share: 25,
    value: (r) => 980 + r.next() * 60,
    units: [
      ['hPa', 40, (h) => h],
      ['kPa', 25, (h) => h / 10],
      ['psi', 20, (h) => h / 68.94757293168361],
      ['bar', 10, (h) => h / 1000],
      ['Pa', 5, (h) => h * 100],
    ],
  },
  { metric: 'humidity', share: 20, value: (r) => 20 + r.next() * 70, units: [['%', 100, (p) => p]] },
  {
    metric: 'voltage',
    share: 15,
    value: (r) => 3 + r.next() * 2,
    units: [
      ['V', 60, (v) => v],
      ['mV', 40, (v) => v * 1000],
    ],
  },
];

function weighted(rnd, items, weightOf) {
  let roll = rnd.int(100);
  for (const item of items) {
    roll -= weightOf(item);
    if (roll < 0) return item;
  }
  return items[items.length - 1];
}

/** The bad lines, one kind each in turn; each is the reject reason event-transform must give. */
const BAD = [
  ['invalid_json', (e) => JSON.stringify(e).slice(0, -3)],
  ['not_object', (e) => JSON.stringify([e.device, e.value])],
  ['missing_device', (e) => JSON.stringify({ ...e, device: undefined })],
  ['missing_ts', (e) => JSON.stringify({ ...e, ts: undefined })],
  ['bad_ts', (e) => JSON.stringify({ ...e, ts: '2026-13-07T00:00:00Z' })],
  ['bad_ts', (e) => JSON.stringify({ ...e, ts: 'yesterday' })],
  ['bad_metric', (e) => JSON.stringify({ ...e, metric: 'rpm' })],
  ['missing_value', (e) => JSON.stringify({ ...e, value: undefined })],
  ['bad_value', (e) => JSON.stringify({ ...e, value: String(e.value) })],
  ['bad_unit', (e) => JSON.stringify({ ...e, unit: 'furlong' })],
  ['out_of_range', (e) => JSON.stringify({ ...e, metric: 'humidity', unit: '%', value: 140 })],
  ['bad_device', (e) => JSON.stringify({ ...e, device: 'dev 001' })],
  [
    'invalid_utf8',
    (e) =>
      Buffer.concat([Buffer.from(`{"device":"${e.device}","note":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
  ],
  ['unknown_device', (e) => JSON.stringify({ ...e, device: 'dev-999' })],
];

/**
 * Yields the input as Buffers of about 64 KiB until at least `bytes` bytes are out (a whole line more at most).
 * `devices`: device ids of the reference table (3 % of good events name a device outside it instead... see BAD).
 */
export function* generateEvents({ seed = 1, bytes = 1e6, devices } = {}) {
  const ids = devices ?? JSON.parse(readFileSync(DEFAULT_REFERENCE, 'utf8')).map((d) => d.device);
  const rnd = prng(seed);
  let t = START_MS;
  let written = 0;
  let bad = 0;
  let chunk = [];
  let chunkBytes = 0;
  for (let n = 0; written < bytes; n++) {
    t += rnd.int(400);
    const ts = rnd.int(100) < 5 ? Math.max(0, t - rnd.int(120000)) : t;
    const m = weighted(rnd, METRICS, (x) => x.share);
    const [unit, , fromCanonical] = weighted(rnd, m.units, (u) => u[1]);
    const value = Math.round(fromCanonical(m.value(rnd)) * 100) / 100;
    const event = {
      device: rnd.pick(ids),
      ts: rnd.int(100) < 40 ? ts : rfc3339(ts, rnd),
      metric: m.metric,
      value,
      unit,
    };
    if (rnd.int(100) < 10) event.meta = { seq: n, fw: '1.4.2', tags: ['a', { k: [1, 2] }] };
    let line;
    if (rnd.int(1000) < 20) line = BAD[bad++ % BAD.length][1](event);
    else if (rnd.int(1000) < 2) line = '';
    else line = JSON.stringify(event);
    const buf = typeof line === 'string' ? Buffer.from(`${line}\n`) : Buffer.concat([line, Buffer.from('\n')]);
    chunk.push(buf);
    chunkBytes += buf.length;
    written += buf.length;
    if (chunkBytes >= 65536) {
      yield Buffer.concat(chunk);
      chunk = [];
      chunkBytes = 0;
    }
  }
  if (chunk.length) yield Buffer.concat(chunk);
}

async function main() {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '1' },
      bytes: { type: 'string', default: '1m' },
      out: { type: 'string' },
      reference: { type: 'string' },
    },
  });
  const seed = Number(values.seed);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new Error('--seed must be an integer 0..4294967295');
  const devices = values.reference
    ? JSON.parse(readFileSync(values.reference, 'utf8')).map((d) => d.device)
    : undefined;
  const out = values.out ? createWriteStream(values.out) : process.stdout;
  for (const buf of generateEvents({ seed, bytes: parseSize(values.bytes), devices })) {
    if (!out.write(buf)) await new Promise((resolve) => out.once('drain', resolve));
  }
  if (values.out) await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err) => {
    process.stderr.write(`generate.mjs: ${err.message}\n`);
    process.exit(64);
  });
}
