/**
 * Test helpers: WAT → WASI P1 core module (wabt) → command component (jco's preview1 adapter), and an in-memory
 * artifact source. The artifact layer's `pack` does the same adaptation for real artifacts.
 */
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentNew } from '@bytecodealliance/jco';
import initWabt from 'wabt';
import { CACHE_FORMAT } from '../src/prepare.js';
import type { ArtifactSource, RuntimeArtifact, TaskLimits } from '../src/types.js';

/**
 * The tests import the package's built `dist/` (as other packages do). Running vitest alone after editing `src/`
 * would test stale code, so every test file (all import this module) fails at once when a source file is newer than
 * its build output.
 */
function assertDistIsFresh(): void {
  const src = new URL('../src/', import.meta.url);
  const dist = new URL('../dist/', import.meta.url);
  const stale: string[] = [];
  for (const name of readdirSync(src)) {
    if (!name.endsWith('.ts') || name.endsWith('.d.ts')) continue;
    const built = new URL(name.replace(/\.ts$/, '.js'), dist);
    let builtAt = 0;
    try {
      builtAt = statSync(built).mtimeMs;
    } catch {
      builtAt = 0;
    }
    if (statSync(new URL(name, src)).mtimeMs > builtAt) stale.push(name);
  }
  if (stale.length > 0) {
    throw new Error(
      `packages/runtime/dist is older than src/${stale.join(', src/')}: run \`pnpm -F @vyr/runtime build\` before the tests`,
    );
  }
}
assertDistIsFresh();

let wabt: Awaited<ReturnType<typeof initWabt>> | undefined;
let adapter: Uint8Array | undefined;

/** Compiles WAT text to a WASI P1 core module. */
export async function watToWasm(wat: string): Promise<Uint8Array> {
  wabt ??= await initWabt();
  const module = wabt.parseWat('fixture.wat', wat, { multi_value: true, bulk_memory: true });
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/** Wraps a P1 core module into a WASI 0.2 command component with jco's preview1 command adapter. */
export async function p1ToComponent(core: Uint8Array): Promise<Uint8Array> {
  adapter ??= await readFile(
    new URL('../lib/wasi_snapshot_preview1.command.wasm', import.meta.resolve('@bytecodealliance/jco')),
  );
  return componentNew(core, [['wasi_snapshot_preview1', adapter]]);
}

/** WAT → command component. */
export async function watComponent(wat: string): Promise<Uint8Array> {
  return p1ToComponent(await watToWasm(wat));
}

/** An artifact whose digest is the SHA-256 of its component plus its declarations (stable across runs). */
export function makeArtifact(
  component: Uint8Array,
  manifest: { name?: string; env?: string[]; limits?: TaskLimits } = {},
): RuntimeArtifact {
  const m = { name: manifest.name ?? 'fixture', env: manifest.env ?? [], limits: manifest.limits ?? {} };
  const digest = `sha256:${createHash('sha256').update(component).update(JSON.stringify(m)).digest('hex')}`;
  return { digest, manifest: m, component };
}

/** An ArtifactSource over a fixed set of artifacts; `refuse` digests fail as untrusted. */
export function memorySource(artifacts: RuntimeArtifact[], refuse: string[] = []): ArtifactSource & { loads: number } {
  const byDigest = new Map(artifacts.map((a) => [a.digest, a]));
  const source = {
    loads: 0,
    async load(digest: string): Promise<RuntimeArtifact> {
      source.loads++;
      if (refuse.includes(digest)) {
        throw Object.assign(new Error('signed by a key outside the trust policy'), { code: 'UNTRUSTED_KEY' });
      }
      const a = byDigest.get(digest);
      if (!a) throw Object.assign(new Error(`artifact ${digest} not found`), { code: 'NOT_FOUND' });
      return a;
    },
  };
  return source;
}

/** A temp directory removed by the returned cleanup. */
export async function tempDir(prefix = 'vyr-runtime-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** UTF-8 decode. */
export const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** A WAT prelude: `$print(ptr, len)` writes to stdout using scratch memory at 0..16. */
export const PRINT = `
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))`;

/**
 * A WASI P1 program that tries one filesystem operation in the first preopen (fd 3) and exits with the WASI errno
 * it got (0 on success), so tests can assert the exact error the guest saw. `op`:
 * - `create`: path_open(note.txt, CREAT|TRUNC, write) and write `bytes` bytes in 1 KiB chunks.
 * - `mkdir`: path_create_directory(sub).
 * - `unlink`: path_unlink_file(note.txt).
 * - `read`: open note.txt with only the fd_read right (as wasi-libc does for O_RDONLY) and copy it to stdout.
 */
export function fsOpWat(op: 'create' | 'mkdir' | 'unlink' | 'read', bytes = 10): string {
  const body = {
    create: `
      (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 9)
        (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 32)))
      (if (local.get $e) (then (call $exit (local.get $e))))
      (local.set $fd (i32.load (i32.const 32)))
      (local.set $left (i32.const ${bytes}))
      (block $done (loop $w
        (br_if $done (i32.le_s (local.get $left) (i32.const 0)))
        (i32.store (i32.const 0) (i32.const 4096))
        (i32.store (i32.const 4) (select (i32.const 1024) (local.get $left) (i32.gt_s (local.get $left) (i32.const 1024))))
        (local.set $e (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
        (if (local.get $e) (then (call $exit (local.get $e))))
        (local.set $left (i32.sub (local.get $left) (i32.load (i32.const 8))))
        (br $w)))
      (call $exit (call $fd_close (local.get $fd)))`,
    mkdir: `(call $exit (call $mkdir (i32.const 3) (i32.const 1056) (i32.const 3)))`,
    unlink: `(call $exit (call $unlink (i32.const 3) (i32.const 1024) (i32.const 8)))`,
    read: `
      (local.set $e (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 8) (i32.const 0)
        (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 32)))
      (if (local.get $e) (then (call $exit (local.get $e))))
      (local.set $fd (i32.load (i32.const 32)))
      (i32.store (i32.const 40) (i32.const 4096))
      (i32.store (i32.const 44) (i32.const 4096))
      (local.set $e (call $fd_read (local.get $fd) (i32.const 40) (i32.const 1) (i32.const 48)))
      (if (local.get $e) (then (call $exit (local.get $e))))
      (i32.store (i32.const 0) (i32.const 4096))
      (i32.store (i32.const 4) (i32.load (i32.const 48)))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (call $exit (i32.const 0))`,
  }[op];
  return `(module
    (import "wasi_snapshot_preview1" "path_open"
      (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (memory (export "memory") 1)
    (data (i32.const 1024) "note.txt")
    (data (i32.const 1056) "sub")
    (func (export "_start") (local $e i32) (local $fd i32) (local $left i32)
      ${body}))`;
}

/** WASI errno values (wasi_snapshot_preview1 `errno`) the tests assert. */
export const Errno = { NOSPC: 51, NOTCAPABLE: 76, PERM: 63, ACCES: 2, ROFS: 69 } as const;

/** The installed jco version (the prepare cache is keyed by it). */
export async function installedJcoVersion(): Promise<string> {
  const entry = new URL(import.meta.resolve('@bytecodealliance/jco'));
  return (JSON.parse(await readFile(new URL('../package.json', entry), 'utf8')) as { version: string }).version;
}

/** The prepare-cache directory of `digest` under `cacheDir` (layout of src/prepare.ts). */
export async function cacheEntryDir(cacheDir: string, digest: string): Promise<string> {
  return join(cacheDir, `jco-${await installedJcoVersion()}`, digest.slice('sha256:'.length));
}

/**
 * Writes a prepare-cache entry by hand, with correct hashes in `meta.json` (src/prepare.ts's current format): what a
 * runtime finds there is what it runs. Tests use it to run host JS the transpiler would never emit.
 */
export async function writeCacheEntry(cacheDir: string, digest: string, componentJs: string): Promise<string> {
  const dir = await cacheEntryDir(cacheDir, digest);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'component.js'), componentJs);
  const meta = {
    format: CACHE_FORMAT,
    jcoVersion: await installedJcoVersion(),
    sha256: { 'component.js': createHash('sha256').update(componentJs).digest('hex') },
    modules: [],
    memories: {},
  };
  await writeFile(join(dir, 'meta.json'), JSON.stringify(meta));
  return dir;
}

/** One artifact for {@link signedStoreSource}: a WASI P1 core module and its declarations. */
export interface StoreArtifactSpec {
  name: string;
  core: Uint8Array;
  env?: string[];
  limits?: TaskLimits;
}

/**
 * The real verification path: each core module is packed into an OCI artifact (`packArtifact` adapts it to a
 * command component), signed with a fresh trusted key, imported into an `@vyr/artifact` store under `dir`, and
 * served through `artifactSourceFromStore` with a trust policy holding only that key — every load re-hashes the
 * blobs and verifies the signature, as on a node.
 */
export async function signedStoreSource(
  dir: string,
  specs: StoreArtifactSpec[],
): Promise<{ source: ArtifactSource; digests: Record<string, string>; storeDir: string }> {
  const { artifactSourceFromStore } = await import('../dist/index.js');
  const { createStore, createTrustPolicy, generateKeyPair, packArtifact, signArtifact } = await import('@vyr/artifact');
  const key = generateKeyPair();
  const storeDir = join(dir, 'store');
  const store = createStore({ dir: storeDir });
  const digests: Record<string, string> = {};
  await mkdir(join(dir, 'packs'), { recursive: true });
  for (const spec of specs) {
    const wasm = join(dir, 'packs', `${spec.name}.wasm`);
    await writeFile(wasm, spec.core);
    const out = join(dir, 'packs', `${spec.name}.oci`);
    const packed = await packArtifact(wasm, out, {
      manifest: { name: spec.name, version: '1.0.0', env: spec.env ?? [], state: [], limits: spec.limits ?? {} },
    });
    await signArtifact(out, key.privateKeyPem);
    await store.import(out);
    digests[spec.name] = packed.digest;
  }
  return {
    source: artifactSourceFromStore(store, createTrustPolicy({ keys: [key.publicKeyPem] })),
    digests,
    storeDir,
  };
}

/** Options of {@link buildJsComponent}. */
export interface JsComponentOptions {
  /** ES module source; it must export what the world exports (e.g. `export const run = { run() {…} }`). */
  source: string;
  /** WIT text: the world and any interface packages it uses. */
  wit: string;
  worldName: string;
  /** componentize-js features to leave out (`http`, `fetch-event`, `random`, `stdio`, `clocks`). */
  disableFeatures: string[];
}

/**
 * Builds a JavaScript component with componentize-js (SpiderMonkey compiled to Wasm, ≈12 MB). Building takes
 * 10–40 s, so the component is cached in the OS temp dir by a hash of its inputs.
 */
export async function buildJsComponent(options: JsComponentOptions): Promise<Uint8Array> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { rename } = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  const { fileURLToPath, pathToFileURL } = await import('node:url');
  // componentize-js and the shim it runs on sit beside jco in the store.
  const scope = dirname(dirname(dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/jco')))));
  const componentize = join(scope, 'componentize-js', 'src', 'componentize.js');
  const version = JSON.parse(await readFile(join(scope, 'componentize-js', 'package.json'), 'utf8')).version as string;
  const key = createHash('sha256')
    .update(JSON.stringify([options.source, options.wit, options.worldName, options.disableFeatures, version]))
    .digest('hex')
    .slice(0, 16);
  const cacheDir = join(tmpdir(), 'vyr-runtime-test-cache');
  const out = join(cacheDir, `${options.worldName}-js-${key}.wasm`);
  try {
    return await readFile(out);
  } catch {
    // build below
  }
  await mkdir(cacheDir, { recursive: true });
  const work = join(cacheDir, `build-${key}-${process.pid}`);
  await mkdir(work, { recursive: true });
  await writeFile(join(work, 'component.js'), options.source);
  // jco componentize with shim 0.26.1 needs `/` preopened in the building process (TOOLCHAIN.md).
  const preload = join(work, 'preload.mjs');
  const shimFs = pathToFileURL(join(scope, 'preview2-shim', 'dist', 'nodejs', 'filesystem.js')).href;
  await writeFile(preload, `import { _setPreopens } from ${JSON.stringify(shimFs)};\n_setPreopens({ '/': '/' });\n`);
  const build = join(work, 'build.mjs');
  await writeFile(
    build,
    `import { componentize } from ${JSON.stringify(pathToFileURL(componentize).href)};
import { writeFile } from 'node:fs/promises';
const { component } = await componentize({
  sourcePath: ${JSON.stringify(join(work, 'component.js'))},
  witWorld: ${JSON.stringify(options.wit)},
  worldName: ${JSON.stringify(options.worldName)},
  disableFeatures: ${JSON.stringify(options.disableFeatures)},
});
await writeFile(${JSON.stringify(`${out}.tmp-${process.pid}`)}, component);
`,
  );
  await promisify(execFile)(process.execPath, ['--import', preload, build], { timeout: 200_000 });
  await rename(`${out}.tmp-${process.pid}`, out);
  await rm(work, { recursive: true, force: true });
  return readFile(out);
}
