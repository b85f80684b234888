import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';
import { tempDir } from './temp.js';

/** Absolute path of `packages/testing/fixtures/`. */
export const FIXTURES_DIR = fileURLToPath(new URL('../fixtures/', import.meta.url));

/**
 * WASI preview1 core modules written in WAT (`fixtures/wat/<name>.wat`), compiled at test time with wabt.
 * Pack adapts them to components with the preview1 command adapter.
 *
 * - `hello`: prints `hello from vyr\n` to stdout, exit 0.
 * - `exit-33`: prints `exiting with 33\n` to stderr, `proc_exit(33)`.
 * - `loop`: tight `loop br 0`, never returns.
 * - `trap`: prints `about to trap\n`, then `unreachable`.
 * - `memory-grow`: grows memory 1 MiB at a time to 1 GiB (prints `grew to 1 GiB\n`, exit 0) or prints
 *   `memory.grow failed\n` and exits 1.
 * - `env`: prints its environment as `KEY=VALUE` lines.
 * - `args`: prints its arguments, one per line (argv[0] first).
 * - `cat`: copies stdin to stdout.
 * - `stdio`: `to stdout\n` on stdout and `to stderr\n` on stderr.
 * - `fs`: writes/reads `note.txt` in the first preopen, prints it, and checks `../escape.txt` is refused
 *   (prints `escape refused\n`; exit 3 if the escape worked, exit 2 when there is no preopen).
 * - `bad-import`: imports `env::host_call` (pack refuses: UNSUPPORTED_IMPORTS).
 * - `reactor`: no `_start` (pack refuses: UNSUPPORTED_WORLD).
 * - `claim-memory`: an allocator that claims all memory up to `memory.size` at its first allocation (as
 *   AssemblyScript's does), no `cabi_realloc`; reads env and args with *_sizes_get / *_get into its heap and prints
 *   the arguments, then `KEY=VALUE` lines.
 */
export const WAT_FIXTURES = [
  'hello',
  'exit-33',
  'loop',
  'trap',
  'memory-grow',
  'env',
  'args',
  'cat',
  'stdio',
  'fs',
  'bad-import',
  'reactor',
  'claim-memory',
] as const;

/** Name of a WAT fixture. */
export type WatFixtureName = (typeof WAT_FIXTURES)[number];

/**
 * C programs built with clang-19 + wasi-libc into WASI preview1 modules, committed as
 * `fixtures/c/<name>.wasm` next to their source and reproduced byte for byte by `fixtures/build.sh`
 * (`make fixtures`).
 *
 * - `hello-c`: prints `hello from C\n`, exit 0.
 * - `wasi-conformance`: exercises args, environ, clocks, random, stdio and files in the preopen at `/data`
 *   (open/read/write/seek/readdir/rename/unlink/mkdir/stat/symlink) and checks escapes are refused; prints one
 *   `ok <check>` or `FAIL <check>: …` line per check and exits with the number of failures.
 * - `wasi-regressions`: P1 calls that once trapped or answered wrongly (NUL bytes in paths, set-times with and
 *   without SYMLINK_FOLLOW, stat of a symlink, fd_write to a descriptor that is not open); prints `ok`/`FAIL`
 *   lines and exits with the number of failures. Needs a read-write preopen at `/data`.
 * - `event-transform`: reads JSON lines from stdin (or `/data/in.jsonl` when stdin is empty), writes transformed
 *   lines to stdout and appends them to `/data/out.jsonl`; the demo workload.
 * - `heap-churn`: copies stdin to stdout through the heap (a realloc-grown buffer per line, written in batches and
 *   freed; all input also kept in a realloc-doubled buffer), then writes `lines L bytes B fnv1a H` to stderr.
 *   Allocates, frees and reuses heap memory past the initial memory while doing I/O.
 */
export const C_FIXTURES = ['hello-c', 'wasi-conformance', 'event-transform', 'wasi-regressions', 'heap-churn'] as const;

/** Name of a C fixture. */
export type CFixtureName = (typeof C_FIXTURES)[number];

/**
 * Absolute path of a committed fixture: a C fixture's `.wasm` (`fixturePath('wasi-conformance')`) or a WAT
 * fixture's source (`fixturePath('hello')` → `fixtures/wat/hello.wat`).
 */
export function fixturePath(name: CFixtureName | WatFixtureName): string {
  if ((C_FIXTURES as readonly string[]).includes(name)) return join(FIXTURES_DIR, 'c', `${name}.wasm`);
  if ((WAT_FIXTURES as readonly string[]).includes(name)) return join(FIXTURES_DIR, 'wat', `${name}.wat`);
  throw new Error(`unknown fixture ${JSON.stringify(name)}; known: ${[...C_FIXTURES, ...WAT_FIXTURES].join(', ')}`);
}

/** The WAT source text of a fixture. */
export async function watSource(name: WatFixtureName): Promise<string> {
  return readFile(fixturePath(name), 'utf8');
}

type Wabt = Awaited<ReturnType<typeof wabtInit>>;
let wabt: Promise<Wabt> | undefined;
const compiled = new Map<string, Promise<Uint8Array>>();

/**
 * Compiles a WAT fixture to a WASI preview1 core module with wabt. Deterministic (no names section), cached
 * per process. Returns a fresh copy each call.
 */
export async function buildWatFixture(name: WatFixtureName): Promise<Uint8Array> {
  let bytes = compiled.get(name);
  if (bytes === undefined) {
    bytes = (async () => {
      wabt ??= wabtInit();
      const w = await wabt;
      const module = w.parseWat(`${name}.wat`, await watSource(name));
      try {
        module.validate();
        return new Uint8Array(module.toBinary({ log: false, write_debug_names: false }).buffer);
      } finally {
        module.destroy();
      }
    })();
    compiled.set(name, bytes);
  }
  return new Uint8Array(await bytes);
}

/**
 * Compiles a WAT fixture and writes it as `<dir>/<name>.wasm`.
 *
 * @param dir - target directory. Default: a fresh {@link tempDir}.
 * @returns the file's absolute path.
 */
export async function watFixtureFile(name: WatFixtureName, dir?: string): Promise<string> {
  const target = join(dir ?? (await tempDir()), `${name}.wasm`);
  await writeFile(target, await buildWatFixture(name));
  return target;
}

/** Options of {@link buildLargeModule}. */
export interface LargeModuleOptions {
  /** Bytes of (incompressible, pseudo-random) data in the module's data segment. Default: 12 MiB. */
  dataBytes?: number;
  /** Seed of the xorshift32 generator filling the data. Default: 1. */
  seed?: number;
}

/**
 * Builds a large WASI preview1 command module for benchmarks: the `hello` program plus one active data segment
 * of `dataBytes` pseudo-random bytes (so size dominates, as in real toolchain output). Deterministic for a given
 * seed; generate it at bench time rather than committing it.
 */
export async function buildLargeModule(options: LargeModuleOptions = {}): Promise<Uint8Array> {
  const dataBytes = options.dataBytes ?? 12 * 1024 * 1024;
  const offset = 65536;
  const pages = Math.ceil((offset + dataBytes) / 65536) + 1;
  wabt ??= wabtInit();
  const w = await wabt;
  const wat = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") ${pages})
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const ${offset}))
    (i32.store (i32.const 4) (i32.const 13))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`;
  const module = w.parseWat('large.wat', wat);
  let base: Uint8Array;
  try {
    base = new Uint8Array(module.toBinary({ log: false, write_debug_names: false }).buffer);
  } finally {
    module.destroy();
  }
  // Data: "large module\n" then pseudo-random bytes. Appended as the data section (id 11), which follows the
  // code section, the last section wabt wrote (core spec §5.5.2 section order).
  const data = new Uint8Array(dataBytes);
  data.set(new TextEncoder().encode('large module\n'));
  let x = options.seed ?? 1;
  for (let i = 13; i < dataBytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  const segment = [0x01, 0x00, 0x41, ...sleb(offset), 0x0b, ...uleb(dataBytes)];
  const header = [0x0b, ...uleb(segment.length + dataBytes)];
  const out = new Uint8Array(base.length + header.length + segment.length + dataBytes);
  out.set(base, 0);
  out.set(header, base.length);
  out.set(segment, base.length + header.length);
  out.set(data, base.length + header.length + segment.length);
  return out;
}

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}
