/**
 * Rewrites a core Wasm module so that its one defined linear memory becomes an import. The runtime then creates
 * that memory itself, per task, with `maximum` set to the task's memory limit: the limit is enforced by the
 * engine (a `memory.grow` past it returns -1, as the core spec says for a memory at its maximum) without
 * recompiling the module for each limit. Binary format: WebAssembly core spec §5 (sections, imports, limits).
 */

/** Module and field name of the memory import the rewrite adds. */
export const MEMORY_IMPORT_MODULE = 'vyr:runtime';
/** Field name of the memory import the rewrite adds. */
export const MEMORY_IMPORT_FIELD = 'memory';

/** The limits of the memory that was turned into an import, in 64 KiB pages. */
export interface ImportedMemory {
  /** Initial pages. */
  minPages: number;
  /** Maximum pages the module declared, if it declared one. */
  maxPages?: number;
}

/** Result of {@link importDefinedMemory}. */
export interface MemoryRewrite {
  /** The rewritten module (or the input, unchanged, when `memory` is undefined). */
  bytes: Uint8Array;
  /** Set when the module defined exactly one 32-bit, unshared memory and imported none; it is now imported. */
  memory?: ImportedMemory;
}

const SECTION_TYPE = 1;
const SECTION_IMPORT = 2;
const SECTION_MEMORY = 5;

function readU32(bytes: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[pos++]!;
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result >>> 0, pos];
    shift += 7;
    if (shift > 35) throw new Error('malformed LEB128 in Wasm module');
  }
}

function writeU32(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

function encodeName(name: string): number[] {
  const utf8 = new TextEncoder().encode(name);
  return [...writeU32(utf8.length), ...utf8];
}

interface Section {
  id: number;
  start: number;
  contentStart: number;
  end: number;
}

function readSections(bytes: Uint8Array): Section[] {
  const sections: Section[] = [];
  let pos = 8;
  while (pos < bytes.length) {
    const start = pos;
    const id = bytes[pos++]!;
    const [size, contentStart] = readU32(bytes, pos);
    const end = contentStart + size;
    if (end > bytes.length) throw new Error('Wasm section runs past the end of the module');
    sections.push({ id, start, contentStart, end });
    pos = end;
  }
  return sections;
}

/** Counts imported memories by walking the import section (importdesc kinds: 0 func, 1 table, 2 mem, 3 global, 4 tag). */
function importedMemoryCount(bytes: Uint8Array, section: Section): number {
  let [count, pos] = readU32(bytes, section.contentStart);
  let memories = 0;
  while (count-- > 0) {
    for (let i = 0; i < 2; i++) {
      const [len, p] = readU32(bytes, pos);
      pos = p + len;
    }
    const kind = bytes[pos++]!;
    switch (kind) {
      case 0: // typeidx
        pos = readU32(bytes, pos)[1];
        break;
      case 1: {
        // reftype (possibly a multi-byte ref encoding) + limits
        const ref = bytes[pos++]!;
        if (ref === 0x63 || ref === 0x64) pos = skipHeapType(bytes, pos);
        pos = skipLimits(bytes, pos);
        break;
      }
      case 2:
        memories++;
        pos = skipLimits(bytes, pos);
        break;
      case 3: {
        const valType = bytes[pos++]!;
        if (valType === 0x63 || valType === 0x64) pos = skipHeapType(bytes, pos);
        pos++; // mutability
        break;
      }
      case 4:
        pos++; // attribute
        pos = readU32(bytes, pos)[1];
        break;
      default:
        throw new Error(`unknown import kind ${kind} in Wasm module`);
    }
  }
  return memories;
}

function skipHeapType(bytes: Uint8Array, pos: number): number {
  // s33: abstract heap types are one byte (negative), concrete ones a type index.
  let p = pos;
  while (bytes[p]! & 0x80) p++;
  return p + 1;
}

function skipLimits(bytes: Uint8Array, pos: number): number {
  const flags = bytes[pos++]!;
  pos = skipLeb(bytes, pos);
  if (flags & 1) pos = skipLeb(bytes, pos);
  return pos;
}

function skipLeb(bytes: Uint8Array, pos: number): number {
  let p = pos;
  while (bytes[p]! & 0x80) p++;
  return p + 1;
}

/**
 * Turns the single defined memory of `module` into an import `vyr:runtime.memory` with the same limits.
 * Modules that define no memory, several memories, a shared or 64-bit memory, or that already import a memory are
 * returned unchanged (their memory is then not limited by the runtime; see docs/runtime.md).
 */
export function importDefinedMemory(module: Uint8Array): MemoryRewrite {
  if (module.length < 8 || module[0] !== 0 || module[1] !== 0x61 || module[2] !== 0x73 || module[3] !== 0x6d) {
    return { bytes: module };
  }
  const sections = readSections(module);
  const memorySection = sections.find((s) => s.id === SECTION_MEMORY);
  if (!memorySection) return { bytes: module };
  const importSection = sections.find((s) => s.id === SECTION_IMPORT);
  if (importSection && importedMemoryCount(module, importSection) > 0) return { bytes: module };

  const [count, limitsPos] = readU32(module, memorySection.contentStart);
  if (count !== 1) return { bytes: module };
  const flags = module[limitsPos]!;
  if (flags !== 0 && flags !== 1) return { bytes: module }; // shared or memory64: leave alone
  const [minPages, afterMin] = readU32(module, limitsPos + 1);
  let maxPages: number | undefined;
  if (flags === 1) maxPages = readU32(module, afterMin)[0];
  const limitsBytes = module.subarray(limitsPos, memorySection.end);

  const entry = [...encodeName(MEMORY_IMPORT_MODULE), ...encodeName(MEMORY_IMPORT_FIELD), 2, ...limitsBytes];
  let importContent: number[];
  if (importSection) {
    const [existing, afterCount] = readU32(module, importSection.contentStart);
    importContent = [...writeU32(existing + 1), ...module.subarray(afterCount, importSection.end), ...entry];
  } else {
    importContent = [...writeU32(1), ...entry];
  }
  const newImportSection = Uint8Array.from([SECTION_IMPORT, ...writeU32(importContent.length), ...importContent]);

  const parts: Uint8Array[] = [module.subarray(0, 8)];
  let importWritten = false;
  for (const section of sections) {
    if (section.id === SECTION_MEMORY) continue;
    if (section.id === SECTION_IMPORT) {
      parts.push(newImportSection);
      importWritten = true;
      continue;
    }
    // The import section comes right after the type section (custom sections may sit anywhere).
    if (!importWritten && section.id !== 0 && section.id !== SECTION_TYPE) {
      parts.push(newImportSection);
      importWritten = true;
    }
    parts.push(module.subarray(section.start, section.end));
  }
  if (!importWritten) parts.push(newImportSection);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    bytes.set(p, offset);
    offset += p.length;
  }
  return { bytes, memory: maxPages === undefined ? { minPages } : { minPages, maxPages } };
}
