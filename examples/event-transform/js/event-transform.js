// event-transform, in JavaScript: the second implementation of ../README.md, built into a WASI 0.2 component with
// componentize-js (build.mjs). It follows the same text as ../src/event-transform.c and produces byte-identical
// stdout, stderr and state files; where the README leaves a detail open, the C program is the reference (noted
// below where it matters). No clock, no randomness: the component's world (wit/world.wit) imports stdio,
// arguments, exit and the filesystem only.
//
// Only the standard library of the engine (JSON.parse, TextDecoder, typed arrays) and the WASI imports are used.
import { getArguments } from 'wasi:cli/environment@0.2.10';
import { exitWithCode } from 'wasi:cli/exit@0.2.10';
import { getStderr } from 'wasi:cli/stderr@0.2.10';
import { getStdin } from 'wasi:cli/stdin@0.2.10';
import { getStdout } from 'wasi:cli/stdout@0.2.10';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.10';
import { filesystemErrorCode } from 'wasi:filesystem/types@0.2.10';

const MAX_LINE_BYTES = 64 * 1024;
const MAX_TS_MS = 253402300799999; // 9999-12-31T23:59:59.999Z
const MAX_ABS_VALUE = 1e6;
/** WASI `blocking-write-and-flush` takes at most 4096 bytes per call. */
const WRITE_CHUNK = 4096;
const READ_CHUNK = 65536n;

const EXIT_USAGE = 64;
const EXIT_DATAERR = 65;
const EXIT_NOINPUT = 66;
const EXIT_SOFTWARE = 70;
const EXIT_CANTCREAT = 73;
const EXIT_IOERR = 74;

const USAGE = 'usage: event-transform [--input FILE] [--window-seconds N] [--reference FILE] [--out DIR]';

/** Ends the program: the C program's `die` (one line on stderr, then exit with the code). */
class Exit {
  constructor(code, message) {
    this.code = code;
    this.message = message;
  }
}
const die = (code, message) => {
  throw new Exit(code, message);
};

/**
 * The text `strerror` gives for the WASI errno the preview1 adapter maps each `wasi:filesystem` error code to
 * (wasi-libc, from musl), so messages naming an OS error read the same as the C program's.
 */
const STRERROR = {
  access: 'Permission denied',
  'would-block': 'Resource temporarily unavailable',
  already: 'Operation already in progress',
  'bad-descriptor': 'Bad file descriptor',
  busy: 'Resource busy',
  deadlock: 'Resource deadlock would occur',
  quota: 'Quota exceeded',
  exist: 'File exists',
  'file-too-large': 'File too large',
  'illegal-byte-sequence': 'Illegal byte sequence',
  'in-progress': 'Operation in progress',
  interrupted: 'Interrupted system call',
  invalid: 'Invalid argument',
  io: 'I/O error',
  'is-directory': 'Is a directory',
  loop: 'Symbolic link loop',
  'too-many-links': 'Too many links',
  'message-size': 'Message too large',
  'name-too-long': 'Filename too long',
  'no-device': 'No such device',
  'no-entry': 'No such file or directory',
  'no-lock': 'No locks available',
  'insufficient-memory': 'Out of memory',
  'insufficient-space': 'No space left on device',
  'not-directory': 'Not a directory',
  'not-empty': 'Directory not empty',
  'not-recoverable': 'State not recoverable',
  unsupported: 'Not supported',
  'no-tty': 'Not a tty',
  'no-such-device': 'No such device or address',
  overflow: 'Value too large for data type',
  'not-permitted': 'Operation not permitted',
  pipe: 'Broken pipe',
  'read-only': 'Read-only file system',
  'invalid-seek': 'Invalid seek',
  'text-file-busy': 'Text file busy',
  'cross-device': 'Cross-device link',
  // Not a wasi:filesystem code: wasi-libc's ENOTCAPABLE when no preopen holds the path.
  'not-capable': 'Capabilities insufficient',
};

/** The error code a failed WASI call threw (componentize-js puts a `result`'s error in `payload`). */
function errorCode(e) {
  if (e instanceof Exit) throw e;
  const p = e && typeof e === 'object' && 'payload' in e ? e.payload : e;
  if (typeof p === 'string') return p;
  // A stream error: `closed`, or `last-operation-failed` with an io error that a file stream's error code is read
  // from (as the preview1 adapter does: a write past the quota is `insufficient-space`, ENOSPC).
  if (p && typeof p === 'object' && p.tag === 'closed') return 'pipe';
  if (p && typeof p === 'object' && p.tag === 'last-operation-failed') {
    try {
      return filesystemErrorCode(p.val) ?? 'io';
    } catch {
      return 'io';
    }
  }
  return 'io';
}
const strerror = (code) => STRERROR[code] ?? 'I/O error';

// ---------- paths: absolute guest paths resolved against the preopens, as wasi-libc does ----------

let preopens;

/** wasi-libc's `strip_prefixes`: leading `/`, `./` and a lone `.`. */
function stripPrefixes(p) {
  for (;;) {
    if (p.startsWith('/')) p = p.slice(1);
    else if (p.startsWith('./')) p = p.slice(2);
    else if (p === '.') p = '';
    else return p;
  }
}

/**
 * The preopened directory and relative path wasi-libc opens for `path` (cwd `/`): the longest preopen whose name
 * is a whole-component prefix of the path (the last registered among equals). Throws `not-capable` (wasi-libc's
 * ENOTCAPABLE) when none matches.
 */
function resolve(path) {
  if (!preopens) {
    preopens = getDirectories().map(([descriptor, name]) => ({ descriptor, prefix: stripPrefixes(name) }));
  }
  let p = path.startsWith('/') ? path : `/${path}`;
  while (p.startsWith('/')) p = p.slice(1);
  let best;
  for (let i = preopens.length - 1; i >= 0; i--) {
    const { prefix } = preopens[i];
    if (best !== undefined && prefix.length <= best.prefix.length) continue;
    let matches;
    if (p[0] !== '/' && prefix.length === 0) matches = true;
    else if (!p.startsWith(prefix)) matches = false;
    else {
      let k = prefix.length;
      while (k > 0 && prefix[k - 1] === '/') k--;
      matches = k >= p.length || p[k] === '/';
    }
    if (matches) best = preopens[i];
  }
  if (best === undefined) throw { payload: 'not-capable' };
  let rel = p.slice(best.prefix.length);
  while (rel.startsWith('/')) rel = rel.slice(1);
  return { dir: best.descriptor, rel: rel === '' ? '.' : rel };
}

const FOLLOW = { symlinkFollow: true };

function openRead(path) {
  const { dir, rel } = resolve(path);
  return dir.openAt(FOLLOW, rel, {}, { read: true });
}

function openWrite(path) {
  const { dir, rel } = resolve(path);
  return dir.openAt(FOLLOW, rel, { create: true, truncate: true }, { write: true });
}

/** Drops WASI resources now (a child before its parent: a stream before its descriptor), as fclose does. */
function drop(...resources) {
  for (const r of resources) r?.[Symbol.dispose]?.();
}

function mkdir(path) {
  const { dir, rel } = resolve(path);
  dir.createDirectoryAt(rel);
}

// ---------- byte streams ----------

/** Reads `stream` to its end (or the first error), calling `onChunk` with each chunk. */
function readStream(stream, onChunk) {
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(READ_CHUNK);
    } catch (e) {
      const code = errorCode(e);
      if (code === 'pipe') return undefined; // closed: the end
      return code;
    }
    if (chunk.length > 0) onChunk(chunk);
  }
}

/**
 * Writers still open, newest first: on exit the C program's stdio flushes what its files still buffer (files
 * opened with fopen, newest first, then stdout), so a program ending with an error keeps that output too.
 */
const openWriters = [];

/** A buffered writer of ASCII/UTF-8 text to an output stream, in chunks WASI accepts. */
class Writer {
  /** `descriptor`: the file `stream` writes to, dropped with it by `close`. */
  constructor(stream, limit, descriptor) {
    openWriters.unshift(this);
    this.descriptor = descriptor;
    this.stream = stream;
    this.limit = limit;
    this.parts = [];
    this.size = 0;
    this.failed = undefined; // the error code of the first failed write
  }
  write(text) {
    this.parts.push(text);
    this.size += text.length;
    if (this.size >= this.limit) this.flush();
  }
  flush() {
    if (this.size === 0) return this.failed;
    const bytes = encoder.encode(this.parts.join(''));
    this.parts = [];
    this.size = 0;
    if (this.failed) return this.failed;
    try {
      for (let i = 0; i < bytes.length; i += WRITE_CHUNK) {
        this.stream.blockingWriteAndFlush(bytes.subarray(i, Math.min(bytes.length, i + WRITE_CHUNK)));
      }
    } catch (e) {
      this.failed = errorCode(e);
    }
    return this.failed;
  }
  /** Flushes, then drops the stream and its file (the open file count stays flat, as with fclose). */
  close() {
    const failed = this.flush();
    const i = openWriters.indexOf(this);
    if (i >= 0) openWriters.splice(i, 1);
    drop(this.stream, this.descriptor);
    this.stream = undefined;
    this.descriptor = undefined;
    return failed;
  }
}

const encoder = new TextEncoder();
/** Well-formed UTF-8 only (WHATWG: no overlongs, no surrogates, nothing above U+10FFFF); a BOM is kept. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lossyUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

// ---------- names, timestamps, units ----------

const NAME = /^[A-Za-z0-9._:-]{1,64}$/;
const isName = (v) => typeof v === 'string' && NAME.test(v);

const MDAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysFromCivil(y, m, d) {
  y -= m <= 2 ? 1 : 0;
  const era = Math.trunc((y >= 0 ? y : y - 399) / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

const isDigit = (c) => c >= 48 && c <= 57;

/** `n` decimal digits of `s` at `at`, or -1. */
function digits(s, at, n) {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return -1;
    v = v * 10 + (c - 48);
  }
  return v;
}

/**
 * RFC 3339 date-time (section 5.6) to UTC epoch ms: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM), `t`/`z` accepted,
 * the fraction truncated to milliseconds, second 60 rejected; -1 when invalid or out of range. `s` is at most 64
 * characters (longer strings are `bad_ts` before this).
 */
function parseRfc3339(s) {
  const n = s.length;
  if (n < 20) return -1;
  const Y = digits(s, 0, 4);
  const M = digits(s, 5, 2);
  const D = digits(s, 8, 2);
  if (Y < 0 || s[4] !== '-' || M < 0 || s[7] !== '-' || D < 0) return -1;
  if (s[10] !== 'T' && s[10] !== 't') return -1;
  const h = digits(s, 11, 2);
  const m = digits(s, 14, 2);
  const sec = digits(s, 17, 2);
  if (h < 0 || s[13] !== ':' || m < 0 || s[16] !== ':' || sec < 0) return -1;
  let i = 19;
  let frac = 0;
  if (s[i] === '.') {
    i++;
    const start = i;
    while (isDigit(s.charCodeAt(i))) {
      if (i - start < 3) frac = frac * 10 + (s.charCodeAt(i) - 48);
      i++;
    }
    if (i === start) return -1;
    for (let k = i - start; k < 3; k++) frac *= 10;
  }
  let sign = 0;
  let oh = 0;
  let om = 0;
  if (s[i] === 'Z' || s[i] === 'z') {
    i++;
  } else if (s[i] === '+' || s[i] === '-') {
    sign = s[i] === '+' ? 1 : -1;
    if (n - i !== 6) return -1;
    oh = digits(s, i + 1, 2);
    om = digits(s, i + 4, 2);
    if (oh < 0 || s[i + 3] !== ':' || om < 0) return -1;
    i += 6;
  } else {
    return -1;
  }
  if (i !== n) return -1;
  const leap = (Y % 4 === 0 && Y % 100 !== 0) || Y % 400 === 0;
  if (M < 1 || M > 12 || D < 1 || D > MDAYS[M - 1] + (M === 2 && leap ? 1 : 0)) return -1;
  if (h > 23 || m > 59 || sec > 59 || oh > 23 || om > 59) return -1;
  let t = daysFromCivil(Y, M, D) * 86400000 + h * 3600000 + m * 60000 + sec * 1000 + frac;
  t -= sign * (oh * 3600000 + om * 60000);
  if (t < 0 || t > MAX_TS_MS) return -1;
  return t;
}

/**
 * Units per metric: how to reach the canonical unit, in the README's operation order, and the canonical range.
 * `op`: 0 `x * k`, 1 `x / k`, 2 `x + k`, 3 `(x - 32) * 5 / 9`.
 */
const METRICS = {
  temperature: {
    canonical: 'degC',
    min: -273.15,
    max: 10000,
    units: { degC: [0, 1], degF: [3, 0], K: [2, -273.15] },
  },
  pressure: {
    canonical: 'hPa',
    min: 0,
    max: 100000,
    units: { hPa: [0, 1], Pa: [1, 100], kPa: [0, 10], bar: [0, 1000], psi: [0, 68.94757293168361] },
  },
  humidity: { canonical: '%', min: 0, max: 100, units: { '%': [0, 1] } },
  voltage: { canonical: 'V', min: -MAX_ABS_VALUE, max: MAX_ABS_VALUE, units: { V: [0, 1], mV: [1, 1000] } },
};
const METRIC_NAMES = Object.keys(METRICS);
/** Each metric's place in the byte order of the names (the aggregate rows' order). */
const METRIC_RANK = METRIC_NAMES.map((name) => [...METRIC_NAMES].sort().indexOf(name));
METRIC_NAMES.forEach((name, index) => {
  METRICS[name].name = name;
  METRICS[name].index = index;
});

function convert(op, k, x) {
  switch (op) {
    case 0:
      return x * k;
    case 1:
      return x / k;
    case 2:
      return x + k;
    default:
      return ((x - 32) * 5) / 9;
  }
}

/** Thousandths, rounded half away from zero (in double arithmetic, like the C program). */
const toMilli = (x) => (x < 0 ? -Math.floor(-x * 1000 + 0.5) : Math.floor(x * 1000 + 0.5));

/** An integer number of thousandths as `[-]I.FFF` (never `-0.000`). */
function milli(v) {
  const a = v < 0 ? -v : v;
  const f = a % 1000;
  return `${v < 0 ? '-' : ''}${(a - f) / 1000}.${f < 10 ? '00' : f < 100 ? '0' : ''}${f}`;
}

/** Mean in thousandths: sum / n rounded half away from zero, in exact integer arithmetic. */
function meanMilli(values) {
  const n = values.length;
  if (n * 1e9 <= Number.MAX_SAFE_INTEGER) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[i];
    const r = sum % n;
    let q = (sum - r) / n;
    if (2 * (r < 0 ? -r : r) >= n) q += sum < 0 ? -1 : 1;
    return q;
  }
  // Sums beyond 2^53 (more than nine million values in one group): BigInt.
  let sum = 0n;
  for (let i = 0; i < n; i++) sum += BigInt(values[i]);
  const bn = BigInt(n);
  let q = sum / bn;
  const r = sum % bn;
  if (2n * (r < 0n ? -r : r) >= bn) q += sum < 0n ? -1n : 1n;
  return Number(q);
}

// ---------- the reference table ----------

const isWs = (c) => c === 32 || c === 9 || c === 10 || c === 13;

/**
 * A validating scan of one JSON value at `s[j.p]` (RFC 8259), the C program's `skip_value`: it tells where a
 * reference entry ends and, on failure, lets the error say the same thing the C program says.
 */
function skipValue(s, j) {
  const n = s.length;
  const stack = [];
  const skipWs = () => {
    while (j.p < n && isWs(s.charCodeAt(j.p))) j.p++;
  };
  const string = () => {
    j.p++;
    while (j.p < n) {
      const c = s.charCodeAt(j.p);
      if (c === 34) {
        j.p++;
        return true;
      }
      if (c < 0x20) return false;
      if (c !== 92) {
        j.p++;
        continue;
      }
      if (n - j.p < 2) return false;
      const e = s[j.p + 1];
      j.p += 2;
      if (e === 'u') {
        if (n - j.p < 4 || !/^[0-9A-Fa-f]{4}$/.test(s.slice(j.p, j.p + 4))) return false;
        j.p += 4;
      } else if (!'"\\/bfnrt'.includes(e)) {
        return false;
      }
    }
    return false;
  };
  const number = () => {
    if (j.p < n && s[j.p] === '-') j.p++;
    if (j.p >= n) return false;
    if (s[j.p] === '0') j.p++;
    else if (s[j.p] >= '1' && s[j.p] <= '9') while (j.p < n && isDigit(s.charCodeAt(j.p))) j.p++;
    else return false;
    if (j.p < n && s[j.p] === '.') {
      j.p++;
      if (j.p >= n || !isDigit(s.charCodeAt(j.p))) return false;
      while (j.p < n && isDigit(s.charCodeAt(j.p))) j.p++;
    }
    if (j.p < n && (s[j.p] === 'e' || s[j.p] === 'E')) {
      j.p++;
      if (j.p < n && (s[j.p] === '+' || s[j.p] === '-')) j.p++;
      if (j.p >= n || !isDigit(s.charCodeAt(j.p))) return false;
      while (j.p < n && isDigit(s.charCodeAt(j.p))) j.p++;
    }
    return true;
  };
  const literal = (lit) => {
    if (s.startsWith(lit, j.p)) {
      j.p += lit.length;
      return true;
    }
    return false;
  };
  const memberKey = () => {
    skipWs();
    if (j.p >= n || s[j.p] !== '"' || !string()) return false;
    skipWs();
    if (j.p >= n || s[j.p] !== ':') return false;
    j.p++;
    return true;
  };
  for (;;) {
    skipWs();
    if (j.p >= n) return false;
    const c = s[j.p];
    let empty = false;
    if (c === '{' || c === '[') {
      j.p++;
      skipWs();
      const close = c === '{' ? '}' : ']';
      if (j.p < n && s[j.p] === close) {
        j.p++;
        empty = true;
      } else {
        stack.push(close);
        if (close === '}' && !memberKey()) return false;
        continue;
      }
    }
    if (!empty) {
      if (c === '"') {
        if (!string()) return false;
      } else if (c === 't') {
        if (!literal('true')) return false;
      } else if (c === 'f') {
        if (!literal('false')) return false;
      } else if (c === 'n') {
        if (!literal('null')) return false;
      } else if (!number()) return false;
    }
    // after a value
    for (;;) {
      if (stack.length === 0) return true;
      skipWs();
      if (j.p >= n) return false;
      const close = stack[stack.length - 1];
      if (s[j.p] === close) {
        j.p++;
        stack.pop();
        continue;
      }
      if (s[j.p] !== ',') return false;
      j.p++;
      if (close === ']') break;
      if (!memberKey()) return false;
      break;
    }
  }
}

/** Reads a whole file, or throws its error code. */
function readFile(path) {
  const file = openRead(path);
  const chunks = [];
  let size = 0;
  const stream = file.readViaStream(0n);
  const failed = readStream(stream, (chunk) => {
    chunks.push(chunk);
    size += chunk.length;
  });
  drop(stream, file);
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return { bytes: all, failed };
}

/**
 * The reference file: a JSON array of objects, each with string members "device", "site", "zone" (names; other
 * members ignored; the last of a repeated member counts); device ids unique. Returns id → device.
 */
function loadReference(path, slot) {
  let bytes;
  try {
    ({ bytes } = readFile(path));
  } catch (e) {
    errorCode(e);
    die(EXIT_NOINPUT, `reference state missing: slot '${slot}' has no ${path} (bind the reference state)`);
  }
  // The C program reads bytes without a UTF-8 check; a malformed sequence can only sit inside a string (anywhere
  // else the JSON is invalid either way), where a replacement character keeps the structure and is no name.
  const s = lossyUtf8.decode(bytes);
  const n = s.length;
  const j = { p: 0 };
  const skipWs = () => {
    while (j.p < n && isWs(s.charCodeAt(j.p))) j.p++;
  };
  skipWs();
  if (j.p >= n || s[j.p] !== '[') die(EXIT_DATAERR, `reference ${path}: not a JSON array`);
  j.p++;
  skipWs();
  const devices = [];
  let first = true;
  while (!(j.p < n && s[j.p] === ']')) {
    if (!first) {
      if (j.p >= n || s[j.p] !== ',') die(EXIT_DATAERR, `reference ${path}: invalid JSON`);
      j.p++;
      skipWs();
    }
    first = false;
    const start = j.p;
    if (j.p >= n || s[j.p] !== '{' || !skipValue(s, j)) {
      die(EXIT_DATAERR, `reference ${path}: each entry must be a JSON object`);
    }
    const entry = JSON.parse(s.slice(start, j.p));
    const got = [entry.device, entry.site, entry.zone];
    ['device', 'site', 'zone'].forEach((name, k) => {
      if (!Object.hasOwn(entry, name)) die(EXIT_DATAERR, `reference ${path}: an entry has no "${name}"`);
      if (!isName(got[k])) die(EXIT_DATAERR, `reference ${path}: "${name}" of an entry is not a valid name`);
    });
    devices.push({ id: got[0], site: got[1], zone: got[2] });
    skipWs();
  }
  j.p++;
  skipWs();
  if (j.p !== n) die(EXIT_DATAERR, `reference ${path}: invalid JSON after the array`);
  devices.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const byId = new Map();
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i];
    if (i > 0 && devices[i - 1].id === d.id) die(EXIT_DATAERR, `reference ${path}: device '${d.id}' appears twice`);
    // The start of each output line of this device, and one group table per metric.
    d.prefix = `{"device":"${d.id}","site":"${d.site}","zone":"${d.zone}",`;
    d.groups = METRIC_NAMES.map(() => new Map());
    d.index = i; // the byte order of the ids
    d.rows = METRIC_NAMES.map((name) => {
      const metric = METRICS[name];
      return `${d.prefix}"metric":"${name}","unit":"${metric.canonical}","window":`;
    });
    byId.set(d.id, d);
  }
  return byId;
}

// ---------- the program ----------

const REASONS = [
  'bad_device',
  'bad_metric',
  'bad_ts',
  'bad_unit',
  'bad_value',
  'invalid_json',
  'invalid_utf8',
  'line_too_long',
  'missing_device',
  'missing_metric',
  'missing_ts',
  'missing_unit',
  'missing_value',
  'not_object',
  'out_of_range',
  'unknown_device',
];

function usage(why) {
  die(EXIT_USAGE, `${why}\n${USAGE}`);
}

function main() {
  const argv = getArguments();
  let input;
  let reference = '/ref/devices.json';
  let outDir = '/agg';
  let windowMs = 60000;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (i + 1 >= argv.length) usage('missing value after an option');
    if (a === '--input') input = argv[++i];
    else if (a === '--reference') reference = argv[++i];
    else if (a === '--out') outDir = argv[++i];
    else if (a === '--window-seconds') {
      // strtol(…, 10) with nothing after the number: optional white space and sign, then digits.
      const m = /^[ \t\n\v\f\r]*([+-]?[0-9]+)$/.exec(argv[++i]);
      const s = m ? Number(m[1]) : 0;
      if (!(s >= 1 && s <= 86400)) usage('--window-seconds must be an integer from 1 to 86400');
      windowMs = s * 1000;
    } else usage('unknown option');
  }
  const devices = loadReference(reference, 'reference');

  let path = `${outDir}/summary.json`;
  let probe = false;
  try {
    drop(openRead(path));
    probe = true;
  } catch (e) {
    errorCode(e);
  }
  if (probe) die(EXIT_CANTCREAT, `aggregate state is not empty (${path} exists): bind a fresh state`);
  let rejectsFile;
  try {
    rejectsFile = openWrite(`${outDir}/rejects.jsonl`);
  } catch (e) {
    die(
      EXIT_CANTCREAT,
      `aggregate state missing: slot 'aggregates' has no writable ${outDir} (${strerror(errorCode(e))})`,
    );
  }
  const rejects = new Writer(rejectsFile.writeViaStream(0n), 65536, rejectsFile);

  let inStream;
  if (input !== undefined) {
    try {
      inStream = openRead(input).readViaStream(0n);
    } catch (e) {
      die(EXIT_NOINPUT, `cannot open input ${input}: ${strerror(errorCode(e))}`);
    }
  } else {
    inStream = getStdin();
  }
  const stdout = new Writer(getStdout(), 65536);
  openWriters.splice(openWriters.indexOf(stdout), 1);
  openWriters.push(stdout); // flushed after the files

  const reasonCounts = new Map();
  let nIn = 0;
  let nOut = 0;
  let nRejected = 0;
  // Aggregation state in flat typed arrays (a few bytes per event and per group, so 100 MB of input fits in the
  // 256 MiB memory limit): each accepted event's thousandths and group; each group's device, metric and window.
  let nGroups = 0;
  let evValue = new Int32Array(1 << 16); // |m| <= 1e9 < 2^31
  let evGroup = new Int32Array(1 << 16);
  const gDevice = [];
  let gMetric = new Uint8Array(1 << 12);
  let gWindow = new Float64Array(1 << 12);
  let gCount = new Int32Array(1 << 12);
  const grow = (a) => {
    const b = new a.constructor(a.length * 2);
    b.set(a);
    return b;
  };
  const reject = (line, reason) => {
    nRejected++;
    reasonCounts.set(reason, (reasonCounts.get(reason) ?? 0) + 1);
    rejects.write(`{"line":${line},"reason":"${reason}"}\n`);
    if (rejects.failed) die(EXIT_IOERR, `cannot write rejects.jsonl: ${strerror(rejects.failed)}`);
  };

  /** One line (without its `\n`), `bytes` of at most MAX_LINE_BYTES. */
  const processLine = (bytes, lineno) => {
    let k = 0;
    const n = bytes.length;
    while (k < n && isWs(bytes[k])) k++;
    if (k === n) return; // blank: not an event
    nIn++;
    let text;
    try {
      text = strictUtf8.decode(bytes);
    } catch {
      reject(lineno, 'invalid_utf8');
      return;
    }
    let e;
    try {
      e = JSON.parse(text);
    } catch {
      reject(lineno, 'invalid_json');
      return;
    }
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return reject(lineno, 'not_object');
    if (!Object.hasOwn(e, 'device')) return reject(lineno, 'missing_device');
    const id = e.device;
    if (!isName(id)) return reject(lineno, 'bad_device');
    if (!Object.hasOwn(e, 'ts')) return reject(lineno, 'missing_ts');
    const t = e.ts;
    let ts;
    if (typeof t === 'string') {
      // Longer than 64 bytes: never a timestamp (a longer string can only pass with non-ASCII, which never does).
      ts = t.length <= 64 ? parseRfc3339(t) : -1;
      if (ts < 0) return reject(lineno, 'bad_ts');
    } else if (typeof t === 'number') {
      if (!(t >= 0 && t <= MAX_TS_MS) || Math.floor(t) !== t) return reject(lineno, 'bad_ts');
      ts = t + 0; // -0 is 0
    } else {
      return reject(lineno, 'bad_ts');
    }
    if (!Object.hasOwn(e, 'metric')) return reject(lineno, 'missing_metric');
    const metric = typeof e.metric === 'string' && Object.hasOwn(METRICS, e.metric) ? METRICS[e.metric] : undefined;
    if (!metric) return reject(lineno, 'bad_metric');
    if (!Object.hasOwn(e, 'value')) return reject(lineno, 'missing_value');
    const x = e.value;
    if (typeof x !== 'number' || !Number.isFinite(x)) return reject(lineno, 'bad_value');
    if (!Object.hasOwn(e, 'unit')) return reject(lineno, 'missing_unit');
    const unit = typeof e.unit === 'string' && Object.hasOwn(metric.units, e.unit) ? metric.units[e.unit] : undefined;
    if (!unit) return reject(lineno, 'bad_unit');
    const value = convert(unit[0], unit[1], x);
    if (!(value >= metric.min && value <= metric.max) || !(Math.abs(value) <= MAX_ABS_VALUE)) {
      return reject(lineno, 'out_of_range');
    }
    const dev = devices.get(id);
    if (!dev) return reject(lineno, 'unknown_device');

    const m = toMilli(value);
    const window = ts - (ts % windowMs);
    stdout.write(
      `${dev.prefix}"ts":${ts},"metric":"${metric.name}","value":${milli(m)},"unit":"${metric.canonical}","window":${window}}\n`,
    );
    const byWindow = dev.groups[metric.index];
    let g = byWindow.get(window);
    if (g === undefined) {
      g = nGroups++;
      if (g === gMetric.length) {
        gMetric = grow(gMetric);
        gWindow = grow(gWindow);
        gCount = grow(gCount);
      }
      byWindow.set(window, g);
      gDevice.push(dev);
      gMetric[g] = metric.index;
      gWindow[g] = window;
    }
    gCount[g]++;
    if (nOut === evValue.length) {
      evValue = grow(evValue);
      evGroup = grow(evGroup);
    }
    evValue[nOut] = m;
    evGroup[nOut] = g;
    nOut++;
  };

  // Lines split on \n only; a line longer than MAX_LINE_BYTES is rejected without looking at it.
  const line = new Uint8Array(MAX_LINE_BYTES);
  let len = 0;
  let tooLong = false;
  let lineno = 0;
  const endLine = () => {
    lineno++;
    if (tooLong) {
      nIn++;
      reject(lineno, 'line_too_long');
    } else processLine(line.subarray(0, len), lineno);
    len = 0;
    tooLong = false;
  };
  const failed = readStream(inStream, (chunk) => {
    let at = 0;
    const n = chunk.length;
    while (at < n) {
      const nl = chunk.indexOf(10, at);
      const end = nl < 0 ? n : nl;
      if (len === 0 && !tooLong && nl >= 0 && end - at <= MAX_LINE_BYTES) {
        // The whole line is in this chunk: no copy.
        lineno++;
        processLine(chunk.subarray(at, end), lineno);
      } else {
        if (!tooLong) {
          const take = Math.min(end - at, MAX_LINE_BYTES - len);
          line.set(chunk.subarray(at, at + take), len);
          len += take;
          if (take < end - at) tooLong = true;
        }
        if (nl >= 0) endLine();
      }
      at = end + 1;
    }
  });
  if (failed) die(EXIT_IOERR, `cannot read the input: ${strerror(failed)}`);
  if (len > 0 || tooLong) endLine();
  const outFailed = stdout.flush();
  if (outFailed) die(EXIT_IOERR, `cannot write stdout: ${strerror(outFailed)}`);
  const rejFailed = rejects.close();
  if (rejFailed) die(EXIT_IOERR, `cannot write rejects.jsonl: ${strerror(rejFailed)}`);

  // Each group's values, contiguous: offsets by group, then one pass over the events.
  const start = new Int32Array(nGroups + 1);
  for (let g = 0; g < nGroups; g++) start[g + 1] = start[g] + gCount[g];
  const values = new Int32Array(nOut);
  const at = start.slice(0, nGroups);
  for (let i = 0; i < nOut; i++) values[at[evGroup[i]]++] = evValue[i];
  evValue = undefined;
  evGroup = undefined;
  // Aggregates: one file per window, rows sorted by device then metric (byte order: the names are ASCII).
  const order = Array.from({ length: nGroups }, (_, g) => g);
  order.sort((a, b) => {
    if (gWindow[a] !== gWindow[b]) return gWindow[a] < gWindow[b] ? -1 : 1;
    if (gDevice[a] !== gDevice[b]) return gDevice[a].index - gDevice[b].index;
    return METRIC_RANK[gMetric[a]] - METRIC_RANK[gMetric[b]];
  });
  path = `${outDir}/windows`;
  if (nGroups > 0) {
    try {
      mkdir(path);
    } catch (e) {
      const code = errorCode(e);
      if (code !== 'exist') die(EXIT_IOERR, `cannot write windows/: ${strerror(code)}`);
    }
  }
  let file;
  let nWindows = 0;
  for (let i = 0; i < nGroups; i++) {
    const g = order[i];
    const window = gWindow[g];
    if (i === 0 || window !== gWindow[order[i - 1]]) {
      if (file) {
        const f = file.close();
        if (f) die(EXIT_IOERR, `cannot write a window file: ${strerror(f)}`);
      }
      path = `${outDir}/windows/${window}.jsonl`;
      try {
        const d = openWrite(path);
        file = new Writer(d.writeViaStream(0n), 65536, d);
      } catch (e) {
        die(EXIT_IOERR, `cannot write ${path}: ${strerror(errorCode(e))}`);
      }
      nWindows++;
    }
    const n = gCount[g];
    const v = values.subarray(start[g], start[g] + n).sort();
    const rank = Math.floor((95 * n + 99) / 100); // nearest rank: ceil(0.95 n)
    file.write(
      `${gDevice[g].rows[gMetric[g]]}${window},"count":${n},` +
        `"min":${milli(v[0])},"max":${milli(v[n - 1])},"mean":${milli(meanMilli(v))},"p95":${milli(v[rank - 1])}}\n`,
    );
    if (file.failed) die(EXIT_IOERR, `cannot write a window file: ${strerror(file.failed)}`);
  }
  if (file) {
    const f = file.close();
    if (f) die(EXIT_IOERR, `cannot write a window file: ${strerror(f)}`);
  }

  const reasons = REASONS.filter((r) => reasonCounts.has(r))
    .map((r) => `"${r}":${reasonCounts.get(r)}`)
    .join(',');
  const summary =
    `{"in":${nIn},"out":${nOut},"rejected":${nRejected},"windows":${nWindows},"groups":${nGroups},` +
    `"window_ms":${windowMs},"reasons":{${reasons}}}\n`;
  path = `${outDir}/summary.json`;
  let summaryFile;
  try {
    const d = openWrite(path);
    summaryFile = new Writer(d.writeViaStream(0n), 65536, d);
  } catch (e) {
    die(EXIT_IOERR, `cannot write summary.json: ${strerror(errorCode(e))}`);
  }
  summaryFile.write(summary);
  const sf = summaryFile.close();
  if (sf) die(EXIT_IOERR, `cannot write summary.json: ${strerror(sf)}`);
  const stderr = new Writer(getStderr(), 65536);
  stderr.write(summary);
  stderr.flush();
}

export const run = {
  run() {
    let code = 0;
    let message;
    try {
      main();
    } catch (e) {
      if (e instanceof Exit) {
        code = e.code;
        message = e.message;
      } else if (e instanceof RangeError || String(e).includes('out of memory')) {
        code = EXIT_SOFTWARE;
        message = 'out of memory';
      } else {
        code = EXIT_SOFTWARE;
        message = `internal error: ${e}`;
      }
    }
    if (code !== 0) {
      for (const w of openWriters.splice(0)) w.flush();
      const stderr = new Writer(getStderr(), 65536);
      stderr.write(`event-transform: ${message}\n`);
      stderr.flush();
      exitWithCode(code);
    }
  },
};
