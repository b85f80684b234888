/**
 * Prepare once per digest (ARCHITECTURE.md §3): transpile the component with jco in instantiation mode (so each
 * task gets its own imports), cache the output on disk by digest + jco version, compile the core modules once and
 * keep them in memory. A `WebAssembly.Module` is structured-cloneable, so warm workers receive compiled code and
 * never recompile.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RuntimeError } from './errors.js';
import { type ImportedMemory, importDefinedMemory } from './wasm-memory.js';

/** A prepared component, ready to post to workers. */
export interface PreparedComponent {
  /** Artifact digest the component belongs to. */
  digest: string;
  /** `file:` URL of the transpiled JS module (instantiation mode). */
  jsUrl: string;
  /** Compiled core modules by file name. */
  modules: Record<string, WebAssembly.Module>;
  /** Core modules whose memory the runtime provides (and limits). */
  memories: Record<string, ImportedMemory>;
}

/** What {@link Preparer.prepare} reports for telemetry. */
export interface PrepareResult {
  prepared: PreparedComponent;
  /** Where the component came from: `memory` (warm), `disk` (transpiled earlier), `miss` (transpiled now). */
  cache: 'memory' | 'disk' | 'miss';
}

const JS_FILE = 'component.js';
const META_FILE = 'meta.json';

interface Meta {
  jcoVersion: string;
  files: string[];
  memories: Record<string, ImportedMemory>;
}

let jcoVersionPromise: Promise<string> | undefined;

/** The installed jco version (part of the cache key: a new jco may transpile differently). */
export function jcoVersion(): Promise<string> {
  jcoVersionPromise ??= (async () => {
    const entry = new URL(import.meta.resolve('@bytecodealliance/jco'));
    const pkg = JSON.parse(await readFile(new URL('../package.json', entry), 'utf8')) as { version: string };
    return pkg.version;
  })();
  return jcoVersionPromise;
}

function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new RuntimeError('INVALID_ARGUMENT', `digest ${JSON.stringify(digest)} is not sha256:<64 hex>`);
  return m[1]!;
}

/** Transpiles, caches and compiles components; one instance per runtime. */
export class Preparer {
  readonly #cacheDir: string;
  readonly #memory = new Map<string, PreparedComponent>();
  readonly #inflight = new Map<string, Promise<PrepareResult>>();

  constructor(cacheDir: string) {
    this.#cacheDir = cacheDir;
  }

  /** The in-memory prepared component for `digest`, if any. */
  peek(digest: string): PreparedComponent | undefined {
    return this.#memory.get(digest);
  }

  /** Drops the in-memory compiled modules of `digest` (the disk cache stays). */
  forget(digest: string): void {
    this.#memory.delete(digest);
  }

  /**
   * Returns the prepared component for `digest`, transpiling `component()` only when neither memory nor disk has
   * it. Concurrent calls for one digest share the work.
   * @throws RuntimeError `UNSUPPORTED_ARTIFACT` when jco cannot transpile the component.
   */
  prepare(digest: string, component: () => Uint8Array): Promise<PrepareResult> {
    const warm = this.#memory.get(digest);
    if (warm) return Promise.resolve({ prepared: warm, cache: 'memory' });
    let pending = this.#inflight.get(digest);
    if (!pending) {
      pending = this.#prepareCold(digest, component).finally(() => this.#inflight.delete(digest));
      this.#inflight.set(digest, pending);
    }
    return pending;
  }

  async #prepareCold(digest: string, component: () => Uint8Array): Promise<PrepareResult> {
    const version = await jcoVersion();
    const dir = join(this.#cacheDir, `jco-${version}`, hexOf(digest));
    let meta = await readMeta(dir, version);
    let cache: PrepareResult['cache'] = 'disk';
    if (!meta) {
      cache = 'miss';
      meta = await this.#transpileToDisk(dir, version, component());
    }
    const modules: Record<string, WebAssembly.Module> = {};
    await Promise.all(
      meta.files.map(async (file) => {
        modules[file] = await WebAssembly.compile(await readFile(join(dir, file)));
      }),
    );
    const prepared: PreparedComponent = {
      digest,
      jsUrl: pathToFileURL(join(dir, JS_FILE)).href,
      modules,
      memories: meta.memories,
    };
    this.#memory.set(digest, prepared);
    return { prepared, cache };
  }

  async #transpileToDisk(dir: string, version: string, component: Uint8Array): Promise<Meta> {
    // jco (with binaryen and friends) is loaded only on a cache miss: a node that finds everything prepared never
    // pays for it in memory or start-up time.
    const { transpile } = await import('@bytecodealliance/jco');
    let out: Awaited<ReturnType<typeof transpile>>;
    try {
      out = await transpile(component, {
        name: 'component',
        instantiation: 'async',
        noTypescript: true,
        quiet: true,
        base64Cutoff: 0,
      });
    } catch (cause) {
      throw new RuntimeError(
        'UNSUPPORTED_ARTIFACT',
        `jco could not transpile the component: ${(cause as Error).message ?? String(cause)}`,
        { cause },
      );
    }
    const tmp = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
    await mkdir(tmp, { recursive: true });
    const meta: Meta = { jcoVersion: version, files: [], memories: {} };
    for (const [name, bytes] of Object.entries(out.files)) {
      if (name.endsWith('.wasm')) {
        const rewrite = importDefinedMemory(bytes);
        if (rewrite.memory) meta.memories[name] = rewrite.memory;
        meta.files.push(name);
        await writeFile(join(tmp, name), rewrite.bytes);
      } else if (name === JS_FILE) {
        await writeFile(join(tmp, name), bytes);
      }
    }
    meta.files.sort();
    await writeFile(join(tmp, META_FILE), JSON.stringify(meta));
    try {
      await rename(tmp, dir);
    } catch {
      // Another runtime sharing the cache finished first: keep its copy.
      await rm(tmp, { recursive: true, force: true });
      const existing = await readMeta(dir, version);
      if (existing) return existing;
      throw new RuntimeError('INTERNAL', `could not write the prepare cache at ${dir}`);
    }
    return meta;
  }
}

async function readMeta(dir: string, version: string): Promise<Meta | undefined> {
  try {
    const meta = JSON.parse(await readFile(join(dir, META_FILE), 'utf8')) as Meta;
    if (meta.jcoVersion !== version) return undefined;
    const present = new Set(await readdir(dir));
    if (!present.has(JS_FILE) || !meta.files.every((f) => present.has(f))) return undefined;
    return meta;
  } catch {
    return undefined;
  }
}
