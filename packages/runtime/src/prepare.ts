/**
 * Prepare once per digest (ARCHITECTURE.md §3): transpile the component with jco in instantiation mode (so each
 * task gets its own imports), cache the output on disk by digest + jco version, compile the core modules once and
 * keep them in memory. A `WebAssembly.Module` is structured-cloneable, so warm workers receive compiled code and
 * never recompile.
 *
 * The disk cache is not trusted blindly: `meta.json` records the SHA-256 of every file of the entry, every load
 * re-hashes them, and the bytes that were hashed are the bytes that are compiled (core modules) or executed (the
 * transpiled JS is handed to workers as source, never re-read from disk by path), so nothing can change between the
 * check and the use. Files are fsynced before the entry is renamed into place. A damaged entry (a truncated or
 * altered file, a missing file, a module that no longer compiles) is deleted and transpiled once more.
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '@vyr/telemetry';
import { RuntimeError } from './errors.js';
import { type ImportedMemory, limitModuleMemory } from './wasm-memory.js';

/** A prepared component, ready to post to workers. */
export interface PreparedComponent {
  /** Artifact digest the component belongs to. */
  digest: string;
  /** Identity of the transpiled JS (digest + SHA-256 of the source): workers keep one loaded module per key. */
  jsKey: string;
  /** The transpiled instantiation-mode JS module, exactly the bytes whose hash was checked. */
  jsSource: string;
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
  /** Set when a damaged disk entry was deleted and transpiled again: what was wrong with it. */
  repaired?: string;
}

/** Options of {@link Preparer}. */
export interface PreparerOptions {
  cacheDir: string;
  /** Prepared components kept in memory (compiled modules), least recently used dropped first. */
  maxPrepared: number;
  logger: Logger;
}

const JS_FILE = 'component.js';
const META_FILE = 'meta.json';
/**
 * Version of the cache entry layout and of the module rewrite. An entry of another format is re-transpiled (the
 * rewrite of the core modules changed, or the metadata did).
 */
export const CACHE_FORMAT = 3;
/** Failed prepares remembered in memory (so a broken component is not transpiled again for every task). */
const MAX_REMEMBERED_FAILURES = 256;

interface Meta {
  format: number;
  jcoVersion: string;
  /** SHA-256 (hex) of every file of the entry except `meta.json`, by file name. */
  sha256: Record<string, string>;
  /** Core module file names. */
  modules: string[];
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

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Transpiles, caches and compiles components; one instance per runtime. */
export class Preparer {
  readonly #options: PreparerOptions;
  /** Insertion order is recency order: a hit moves the entry to the end. */
  readonly #memory = new Map<string, PreparedComponent>();
  readonly #inflight = new Map<string, Promise<PrepareResult>>();
  readonly #failures = new Map<string, RuntimeError>();

  constructor(options: PreparerOptions) {
    this.#options = options;
  }

  /** Prepared components held in memory now. */
  get size(): number {
    return this.#memory.size;
  }

  /** Drops the in-memory compiled modules of `digest` (the disk cache stays). */
  forget(digest: string): void {
    this.#memory.delete(digest);
  }

  /**
   * Returns the prepared component for `digest`, transpiling `component()` only when neither memory nor a sound
   * disk entry has it. Concurrent calls for one digest share the work.
   * @throws RuntimeError `UNSUPPORTED_ARTIFACT` when jco cannot transpile the component or its memory cannot be
   *   limited; `INTERNAL` when the cache cannot be written or a freshly transpiled module does not compile.
   */
  prepare(digest: string, component: () => Uint8Array): Promise<PrepareResult> {
    const warm = this.#memory.get(digest);
    if (warm) {
      this.#memory.delete(digest);
      this.#memory.set(digest, warm);
      return Promise.resolve({ prepared: warm, cache: 'memory' });
    }
    const failed = this.#failures.get(digest);
    if (failed) return Promise.reject(failed);
    let pending = this.#inflight.get(digest);
    if (!pending) {
      pending = this.#prepareCold(digest, component).finally(() => this.#inflight.delete(digest));
      this.#inflight.set(digest, pending);
    }
    return pending;
  }

  #remember(digest: string, prepared: PreparedComponent): void {
    this.#memory.set(digest, prepared);
    while (this.#memory.size > this.#options.maxPrepared) {
      this.#memory.delete(this.#memory.keys().next().value as string);
    }
  }

  async #prepareCold(digest: string, component: () => Uint8Array): Promise<PrepareResult> {
    const version = await jcoVersion();
    const dir = join(this.#options.cacheDir, `jco-${version}`, hexOf(digest));
    let damage: string | undefined;
    try {
      const prepared = await loadEntry(dir, version, digest);
      if (prepared) {
        this.#remember(digest, prepared);
        return { prepared, cache: 'disk' };
      }
    } catch (err) {
      damage = (err as Error).message;
      this.#options.logger.warn('prepare cache entry is damaged; deleting it and transpiling again', {
        digest,
        dir,
        error: damage,
      });
      await rm(dir, { recursive: true, force: true });
    }
    let prepared: PreparedComponent;
    try {
      prepared = await this.#transpileToDisk(dir, version, digest, component());
    } catch (err) {
      const error =
        err instanceof RuntimeError
          ? err
          : new RuntimeError('INTERNAL', `prepare failed: ${(err as Error).message}`, { cause: err });
      if (error.code === 'UNSUPPORTED_ARTIFACT') {
        this.#failures.set(digest, error);
        if (this.#failures.size > MAX_REMEMBERED_FAILURES) {
          this.#failures.delete(this.#failures.keys().next().value as string);
        }
      }
      throw error;
    }
    this.#remember(digest, prepared);
    return damage === undefined ? { prepared, cache: 'miss' } : { prepared, cache: 'miss', repaired: damage };
  }

  async #transpileToDisk(dir: string, version: string, digest: string, component: Uint8Array) {
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
    const files = new Map<string, Uint8Array>();
    const meta: Meta = { format: CACHE_FORMAT, jcoVersion: version, sha256: {}, modules: [], memories: {} };
    let memoryDefined = false;
    const importers: string[] = [];
    for (const [name, bytes] of Object.entries(out.files)) {
      if (name.endsWith('.wasm')) {
        let rewrite: ReturnType<typeof limitModuleMemory>;
        try {
          rewrite = limitModuleMemory(bytes);
        } catch (err) {
          if (err instanceof RuntimeError) {
            throw new RuntimeError(err.code, `core module ${name}: ${err.message}`, { cause: err });
          }
          throw err;
        }
        if (rewrite.memory) {
          meta.memories[name] = rewrite.memory;
          memoryDefined = true;
        }
        if (rewrite.importsMemory) importers.push(name);
        meta.modules.push(name);
        files.set(name, rewrite.bytes);
      } else if (name === JS_FILE) {
        files.set(name, bytes);
      }
    }
    if (!files.has(JS_FILE)) throw new RuntimeError('INTERNAL', `jco produced no ${JS_FILE}`);
    // Inside a component every imported core memory is another core module's export; if none defines one, the
    // memory comes from somewhere the runtime does not control and cannot limit.
    if (importers.length > 0 && !memoryDefined) {
      throw new RuntimeError(
        'UNSUPPORTED_ARTIFACT',
        `core module ${importers[0]} imports a memory that no core module of the component defines; the runtime cannot limit it`,
      );
    }
    meta.modules.sort();
    for (const [name, bytes] of files) meta.sha256[name] = sha256(bytes);
    // Compile before anything is written: a module the engine refuses is not cached.
    const prepared = await compileEntry(digest, meta, files);

    const tmp = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(tmp, { recursive: true, mode: 0o700 });
      for (const [name, bytes] of files) await writeDurably(join(tmp, name), bytes);
      await writeDurably(join(tmp, META_FILE), new TextEncoder().encode(JSON.stringify(meta)));
      await syncDir(tmp);
      try {
        await rename(tmp, dir);
        await syncDir(dirname(dir));
      } catch {
        // Another runtime sharing the cache finished first: keep its copy (it is verified when loaded).
        await rm(tmp, { recursive: true, force: true });
      }
    } catch (err) {
      // A cache that cannot be written costs a transpile per runtime start, not the task.
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      this.#options.logger.warn('could not write the prepare cache', { dir, error: (err as Error).message });
    }
    return prepared;
  }
}

/** Writes a file and fsyncs it, so a crash cannot leave a renamed entry with empty or partial files. */
async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function compileEntry(digest: string, meta: Meta, files: Map<string, Uint8Array>): Promise<PreparedComponent> {
  const modules: Record<string, WebAssembly.Module> = {};
  for (const name of meta.modules) {
    try {
      modules[name] = await WebAssembly.compile(files.get(name)! as Uint8Array<ArrayBuffer>);
    } catch (cause) {
      throw new RuntimeError('INTERNAL', `core module ${name} does not compile: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
  const js = files.get(JS_FILE)!;
  return {
    digest,
    jsKey: `${digest}:${meta.sha256[JS_FILE]}`,
    jsSource: new TextDecoder().decode(js),
    modules,
    memories: meta.memories,
  };
}

/**
 * Loads and verifies a disk entry. Resolves `undefined` when there is no entry (or one of another jco version or
 * format, which is simply not this key); throws when an entry exists but is damaged.
 */
async function loadEntry(dir: string, version: string, digest: string): Promise<PreparedComponent | undefined> {
  let metaText: string;
  try {
    metaText = await readFile(join(dir, META_FILE), 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT')
      throw new Error(`cannot read ${META_FILE}: ${(err as Error).message}`);
    // meta.json is written last, inside the temp dir: a directory without it is a damaged entry.
    try {
      await stat(dir);
    } catch {
      return undefined;
    }
    throw new Error(`the entry has no ${META_FILE}`);
  }
  let meta: Meta;
  try {
    meta = JSON.parse(metaText) as Meta;
  } catch {
    throw new Error(`${META_FILE} is not JSON`);
  }
  if (meta.format !== CACHE_FORMAT || meta.jcoVersion !== version) {
    throw new Error(`entry has format ${meta.format} / jco ${meta.jcoVersion}, expected ${CACHE_FORMAT} / ${version}`);
  }
  if (
    typeof meta.sha256 !== 'object' ||
    !Array.isArray(meta.modules) ||
    typeof meta.sha256[JS_FILE] !== 'string' ||
    !meta.modules.every((m) => typeof meta.sha256[m] === 'string')
  ) {
    throw new Error(`${META_FILE} does not list a hash for every file`);
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, expected] of Object.entries(meta.sha256)) {
    if (name.includes('/') || name.includes('\\') || name === META_FILE) throw new Error(`bad file name ${name}`);
    const bytes = await readFile(join(dir, name));
    const actual = sha256(bytes);
    if (actual !== expected) throw new Error(`${name} has SHA-256 ${actual}, ${META_FILE} recorded ${expected}`);
    files.set(name, bytes);
  }
  return compileEntry(digest, meta, files);
}
