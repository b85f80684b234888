import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WASI } from 'node:wasi';
import { tempDir } from '@vyr/testing';

/** `examples/event-transform/`. */
export const EXAMPLE_DIR = fileURLToPath(new URL('..', import.meta.url));
export const C_WASM = join(EXAMPLE_DIR, 'event-transform.wasm');
export const REFERENCE_DIR = join(EXAMPLE_DIR, 'reference');

let module: Promise<WebAssembly.Module> | undefined;

/** What one run of the workload left: exit code, output, and every file of the aggregate state (path → text). */
export interface WorkloadRun {
  code: number;
  stdout: string;
  stderr: string;
  files: Record<string, string>;
  /** The parsed stderr summary, when the run got that far. */
  summary?: {
    in: number;
    out: number;
    rejected: number;
    windows: number;
    groups: number;
    window_ms: number;
    reasons: Record<string, number>;
  };
}

export interface RunOptions {
  /** Arguments after the program name. */
  args?: string[];
  /** Reference directory mounted at `/ref`; `null` mounts nothing there. Default: the demo's table. */
  referenceDir?: string | null;
  /** Contents of `/ref/devices.json` instead of the demo's table. */
  reference?: string;
  /** Files already in `/agg`. */
  aggregateFiles?: Record<string, string>;
}

async function listFiles(dir: string, root = dir): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) Object.assign(out, await listFiles(path, root));
    else out[relative(root, path)] = await readFile(path, 'utf8');
  }
  return out;
}

/**
 * Runs the C build (`event-transform.wasm`, WASI P1) in Node's own WASI implementation with `/ref` and `/agg`
 * preopened — the workload alone, without VYR, so these tests specify the program and nothing else.
 */
export async function runC(input: string | Uint8Array, options: RunOptions = {}): Promise<WorkloadRun> {
  module ??= readFile(C_WASM).then((bytes) => WebAssembly.compile(bytes));
  const dir = await tempDir('vyr-et-');
  const agg = join(dir, 'agg');
  await mkdir(agg);
  for (const [name, text] of Object.entries(options.aggregateFiles ?? {})) await writeFile(join(agg, name), text);
  let ref = options.referenceDir === undefined ? REFERENCE_DIR : options.referenceDir;
  if (options.reference !== undefined) {
    ref = join(dir, 'ref');
    await mkdir(ref);
    await writeFile(join(ref, 'devices.json'), options.reference);
  }
  await writeFile(join(dir, 'stdin'), input);
  const fds = {
    stdin: openSync(join(dir, 'stdin'), 'r'),
    stdout: openSync(join(dir, 'stdout'), 'w'),
    stderr: openSync(join(dir, 'stderr'), 'w'),
  };
  let code: number;
  try {
    const wasi = new WASI({
      version: 'preview1',
      args: ['event-transform', ...(options.args ?? [])],
      env: {},
      preopens: { ...(ref === null ? {} : { '/ref': ref }), '/agg': agg },
      returnOnExit: true,
      ...fds,
    });
    const instance = await WebAssembly.instantiate(await module, {
      wasi_snapshot_preview1: wasi.wasiImport,
    } as WebAssembly.Imports);
    code = wasi.start(instance);
  } finally {
    for (const fd of Object.values(fds)) closeSync(fd);
  }
  const stdout = await readFile(join(dir, 'stdout'), 'utf8');
  const stderr = await readFile(join(dir, 'stderr'), 'utf8');
  const run: WorkloadRun = { code, stdout, stderr, files: await listFiles(agg) };
  if (code === 0) run.summary = JSON.parse(stderr);
  return run;
}

/** One event line from its members (undefined members left out). */
export function event(members: Record<string, unknown>): string {
  return JSON.stringify(members);
}

/** A valid event; `overrides` replace or (with `undefined`) remove members. */
export function good(overrides: Record<string, unknown> = {}): string {
  return event({
    device: 'dev-001',
    ts: '2026-12-07T00:00:00.000Z',
    metric: 'temperature',
    value: 21.5,
    unit: 'degC',
    ...overrides,
  });
}
