import { readFile } from 'node:fs/promises';
import { componentNew, componentWit, preview1AdapterCommandPath } from '@bytecodealliance/jco';
import { ArtifactError } from './errors.js';
import type { ComponentInfo, WasmSourceKind } from './types.js';

/** The only core-module import namespace `pack` adapts (WASI preview1). */
export const PREVIEW1_MODULE = 'wasi_snapshot_preview1';
/** The export of a WASI 0.2 command. */
const RUN_EXPORT = /^wasi:cli\/run@0\.2\.\d+$/;

/** `WebAssembly.validate`, typed locally: the repo's `lib` setting has no DOM/WebAssembly declarations. */
function wasmValidate(bytes: Uint8Array): boolean {
  const wasm = (globalThis as unknown as { WebAssembly: { validate(b: Uint8Array): boolean } }).WebAssembly;
  return wasm.validate(bytes);
}

/** Kind of a Wasm binary, from its 8-byte preamble (core spec §5.5.16; component-model Binary.md). */
export type WasmBinaryKind = 'core' | 'component';

/** Reads the Wasm preamble: `\0asm` then version 1 (core) or `0d 00 01 00` (component, layer 1). */
export function wasmKind(bytes: Uint8Array): WasmBinaryKind | undefined {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    return undefined;
  }
  const version = (bytes[4]! | (bytes[5]! << 8)) >>> 0;
  const layer = (bytes[6]! | (bytes[7]! << 8)) >>> 0;
  if (version === 1 && layer === 0) return 'core';
  if (version === 0x0d && layer === 1) return 'component';
  return undefined;
}

/**
 * Whether `bytes` look like WebAssembly text (WAT): after whitespace and comments (`;; …` and `(; … ;)`), a
 * `(module` or `(component` form.
 */
export function isWatText(bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 4096)).toString('utf8');
  const rest = head.replace(/^(?:\s+|;;[^\n]*(?:\n|$)|\(;[\s\S]*?;\))*/, '');
  return /^\(\s*(?:module|component)\b/.test(rest);
}

/** An import or export of a core module. */
export interface CoreEntity {
  module?: string;
  name: string;
  kind: number;
}

/** Minimal reader for the import (2) and export (7) sections of a core module. Assumes a validated module. */
export function coreImportsExports(bytes: Uint8Array): { imports: CoreEntity[]; exports: CoreEntity[] } {
  let pos = 8;
  const u32 = (): number => {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[pos++]!;
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  };
  const name = (): string => {
    const len = u32();
    const s = Buffer.from(bytes.buffer, bytes.byteOffset + pos, len).toString('utf8');
    pos += len;
    return s;
  };
  const limits = (): void => {
    const flags = bytes[pos++]!;
    u32();
    if (flags & 1) u32();
    if (flags & 8) u32(); // custom page size (proposal)
  };
  const imports: CoreEntity[] = [];
  const exports: CoreEntity[] = [];
  while (pos < bytes.length) {
    const id = bytes[pos++]!;
    const size = u32();
    const end = pos + size;
    if (id === 2) {
      const count = u32();
      for (let i = 0; i < count; i++) {
        const module = name();
        const field = name();
        const kind = bytes[pos++]!;
        if (kind === 0) u32();
        else if (kind === 1) {
          pos++; // reftype
          limits();
        } else if (kind === 2) limits();
        else if (kind === 3)
          pos += 2; // valtype + mut
        else if (kind === 4) {
          pos++;
          u32();
        }
        imports.push({ module, name: field, kind });
      }
    } else if (id === 7) {
      const count = u32();
      for (let i = 0; i < count; i++) {
        const field = name();
        const kind = bytes[pos++]!;
        u32();
        exports.push({ name: field, kind });
      }
    }
    pos = end;
  }
  return { imports, exports };
}

/** A component ready to pack, with its world. */
export interface PreparedComponent {
  /** WASI 0.2 component bytes. */
  component: Uint8Array;
  /** Native component, or a preview1 module adapted here. */
  source: WasmSourceKind;
  /** Its world. */
  info: ComponentInfo;
}

let adapterBytes: Promise<Uint8Array> | undefined;
function commandAdapter(): Promise<Uint8Array> {
  adapterBytes ??= readFile(preview1AdapterCommandPath()).then((b) => new Uint8Array(b));
  return adapterBytes;
}

/**
 * Turns a WASI P1 core module or a WASI P2 command component into a checked WASI 0.2 command component.
 *
 * @param label - names the input in messages (e.g. its path).
 * @throws ArtifactError `NOT_WASM`, `INVALID_WASM`, `UNSUPPORTED_IMPORTS`, `UNSUPPORTED_WORLD`.
 */
export async function prepareComponent(bytes: Uint8Array, label: string): Promise<PreparedComponent> {
  const kind = wasmKind(bytes);
  if (kind === undefined && isWatText(bytes)) {
    throw new ArtifactError(
      'NOT_WASM',
      `${label} is WebAssembly text format (WAT), not a binary; compile it first, e.g. \`wat2wasm ${label} -o ${label.replace(/\.wat$/i, '')}.wasm\` (wabt) or \`wasm-tools parse\`, and pack the .wasm`,
    );
  }
  if (kind === undefined) {
    throw new ArtifactError(
      'NOT_WASM',
      `${label} is not WebAssembly (no "\\0asm" preamble with version 1 or component layer 1); pack takes a WASI P2 command component or a WASI P1 core module`,
    );
  }
  if (kind === 'core') {
    if (!wasmValidate(bytes)) {
      throw new ArtifactError('INVALID_WASM', `${label} is a core Wasm module that does not validate`);
    }
    const { imports, exports } = coreImportsExports(bytes);
    const foreign = imports.filter((i) => i.module !== PREVIEW1_MODULE);
    if (foreign.length > 0) {
      const names = foreign.map((i) => `${i.module}::${i.name}`);
      throw new ArtifactError(
        'UNSUPPORTED_IMPORTS',
        `${label} imports ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` and ${names.length - 5} more` : ''}; a core module may import only ${PREVIEW1_MODULE} (WASI preview1)`,
      );
    }
    if (!exports.some((e) => e.name === '_start' && e.kind === 0)) {
      throw new ArtifactError(
        'UNSUPPORTED_WORLD',
        `${label} does not export a "_start" function: only WASI commands can be packed (build with a command target, not a reactor/library)`,
      );
    }
    if (!exports.some((e) => e.name === 'memory' && e.kind === 2)) {
      throw new ArtifactError(
        'UNSUPPORTED_WORLD',
        `${label} does not export its "memory", which WASI preview1 requires`,
      );
    }
    let component: Uint8Array;
    try {
      component = await componentNew(bytes, [[PREVIEW1_MODULE, await commandAdapter()]]);
    } catch (cause) {
      throw new ArtifactError(
        'INVALID_WASM',
        `${label}: the WASI preview1 command adapter could not be applied: ${firstLine(cause)}`,
        { cause },
      );
    }
    return { component, source: 'wasip1-adapted', info: await componentInfo(component, label) };
  }
  return { component: bytes, source: 'wasip2', info: await componentInfo(bytes, label) };
}

/**
 * Reads a component's world (imports/exports) and checks it is a `wasi:cli/command`: it exports `wasi:cli/run`
 * (0.2.x) and nothing else, and imports only `wasi:` interfaces.
 *
 * @throws ArtifactError `INVALID_WASM`, `UNSUPPORTED_WORLD`.
 */
export async function componentInfo(component: Uint8Array, label: string): Promise<ComponentInfo> {
  let wit: string;
  try {
    wit = await componentWit(component);
  } catch (cause) {
    throw new ArtifactError('INVALID_WASM', `${label} is not a valid Wasm component: ${firstLine(cause)}`, {
      cause,
    });
  }
  const { imports, exports } = parseWorld(wit);
  const run = exports.find((e) => RUN_EXPORT.test(e));
  const otherExports = exports.filter((e) => e !== run);
  if (run === undefined || otherExports.length > 0) {
    throw new ArtifactError(
      'UNSUPPORTED_WORLD',
      `${label} is not a wasi:cli/command component: it exports [${exports.join(', ') || 'nothing'}], a command exports exactly wasi:cli/run@0.2.x`,
    );
  }
  const foreign = imports.filter((i) => !i.startsWith('wasi:'));
  if (foreign.length > 0) {
    throw new ArtifactError(
      'UNSUPPORTED_WORLD',
      `${label} is not a wasi:cli/command component: it imports ${foreign.join(', ')}, a command imports only wasi: interfaces`,
    );
  }
  const version = run.slice(run.indexOf('@'));
  return { target: `wasi:cli/command${version}`, imports, exports };
}

/**
 * Extracts top-level `import`/`export` items of the component's world from the WIT text jco prints. Named
 * function or inline-interface items (`import foo: func(...)`) are reported by their plain name.
 */
export function parseWorld(wit: string): { imports: string[]; exports: string[] } {
  const imports: string[] = [];
  const exports: string[] = [];
  let depth = 0;
  let inWorld = false;
  for (const raw of wit.split('\n')) {
    const line = raw.trim();
    if (depth === 0 && /^world\s+\S+\s*\{$/.test(line)) {
      inWorld = true;
      depth = 1;
      continue;
    }
    if (inWorld && depth === 1) {
      const m = /^(import|export)\s+(\S+?)(?:;|:\s|\s*\{)/.exec(line);
      if (m) (m[1] === 'import' ? imports : exports).push(m[2]!);
    }
    depth += (line.match(/\{/g)?.length ?? 0) - (line.match(/\}/g)?.length ?? 0);
    if (inWorld && depth === 0) inWorld = false;
  }
  return { imports: [...new Set(imports)].sort(), exports: [...new Set(exports)].sort() };
}

function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0] ?? '';
}
