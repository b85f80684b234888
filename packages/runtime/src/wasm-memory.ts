/**
 * Prepare-time rewrite of a core Wasm module so the runtime can limit its linear memory and know, exactly, when the
 * limit refused a `memory.grow`. Binary format: WebAssembly core spec §5 (sections, imports, limits, instructions),
 * plus the encodings of the finished proposals jco's outputs and common toolchains use (bulk memory, reference
 * types, SIMD, threads, exception handling, tail calls, GC, multi-memory memargs).
 *
 * Two changes, both index-preserving (nothing already in the module is renumbered):
 * 1. A module that *defines* its one 32-bit, unshared memory gets it as an import `vyr:runtime.memory` instead. The
 *    runtime creates that memory per task with `maximum` = the task's limit, so the engine refuses a `memory.grow`
 *    past it (returns -1, as the core spec says for a memory at its maximum) without a recompile per limit.
 * 2. Every `memory.grow` instruction (in a module that defines or imports a memory) becomes a `call` to a function
 *    appended to the module. It performs the same `memory.grow` and, when it returns -1, stores the page count that
 *    was asked for (current + delta, as i64) in an appended global exported as `vyr:runtime/grow-failed`. The guest
 *    sees exactly what it saw before (the grow's result); the host reads the global after the run and attributes a
 *    failure to the memory limit only when a grow past the limit was refused — no heuristics on the final size.
 * 3. In a module that defines its memory (a component's main module), `memory.size` (and `memory.grow 0`) leaves out
 *    pages another core module of the component grew before this module first asked: until the memory grows after
 *    that first `memory.size`, it answers the pages the module owns (its initial pages, or the end of its own last
 *    grow); from then on the real size. The preview1 adapter takes its stack and its state from `memory.grow` (the
 *    main module exports no `cabi_realloc`) before the program's code runs. An allocator that takes all memory up
 *    to `memory.size` as its initial heap — wasi-libc's dlmalloc before 2023 (`try_init_allocator` used `sbrk(0)`;
 *    Debian's `wasi-libc` 0.0~git20220510 still does), AssemblyScript's TLSF — would otherwise hand those pages out
 *    again, and the adapter's state check traps (`assertion failed at adapter line 2857/2858`) once the program
 *    writes them. Growth after the first look is answered as it is, so `memory.size` before a `memory.grow` is still
 *    where the new pages start. A module that alone grows its memory sees exactly what it saw before.
 *
 * Modules whose memory cannot be limited this way are refused with `UNSUPPORTED_ARTIFACT` naming the reason: more
 * than one memory (multi-memory), a 64-bit memory (memory64), a shared memory (threads), a custom page size, or an
 * instruction this decoder does not know (it cannot then find every `memory.grow`).
 */

import { RuntimeError } from './errors.js';

/** Module and field name of the memory import the rewrite adds. */
export const MEMORY_IMPORT_MODULE = 'vyr:runtime';
/** Field name of the memory import the rewrite adds. */
export const MEMORY_IMPORT_FIELD = 'memory';
/**
 * Export name of the i64 global holding the page count of the last `memory.grow` that returned -1 (0: none failed).
 * The `:` and `/` keep it apart from any name a toolchain generates.
 */
export const GROW_FAILED_EXPORT = 'vyr:runtime/grow-failed';

/** The limits of the memory that was turned into an import, in 64 KiB pages. */
export interface ImportedMemory {
  /** Initial pages. */
  minPages: number;
  /** Maximum pages the module declared, if it declared one. */
  maxPages?: number;
}

/**
 * Most table elements a module may have, over all the tables it defines. A table lives on the worker's JS heap,
 * outside the memory limit: a guest growing a table by millions of entries exhausted that heap and V8 ended the
 * whole node process (a fatal out-of-memory error, not a worker exit). Each defined table gets this bound, shared
 * among its tables, as its maximum (or keeps a smaller one it declared), so the engine answers `table.grow` past
 * it with -1 as the core spec says for a table at its maximum; a module whose tables start larger is refused.
 * Toolchains' tables are far smaller (a C/C++ program's indirect-call table holds its address-taken functions).
 */
export const MAX_TABLE_ELEMENTS = 1_000_000;

/** Result of {@link limitModuleMemory}. */
export interface MemoryRewrite {
  /** The rewritten module (the input, unchanged, when the module has no memory). */
  bytes: Uint8Array;
  /** Set when the module defined its memory; it is now imported and the runtime creates it. */
  memory?: ImportedMemory;
  /** Whether the module imports a memory (from another core module of the component). */
  importsMemory: boolean;
  /** Number of `memory.grow` instructions now routed through the recording function. */
  growSites: number;
}

const SECTION_CUSTOM = 0;
const SECTION_TYPE = 1;
const SECTION_IMPORT = 2;
const SECTION_FUNCTION = 3;
const SECTION_TABLE = 4;
const SECTION_MEMORY = 5;
const SECTION_GLOBAL = 6;
const SECTION_EXPORT = 7;
const SECTION_CODE = 10;

/** Position of each known section id in the order the binary format requires (custom sections go anywhere). */
const SECTION_RANK: Record<number, number> = {
  1: 1,
  2: 2,
  3: 3,
  4: 4,
  5: 5,
  13: 6,
  6: 7,
  7: 8,
  8: 9,
  9: 10,
  12: 11,
  10: 12,
  11: 13,
};

/** Refusal at prepare: the module's memory cannot be limited. */
function unsupported(reason: string): RuntimeError {
  return new RuntimeError(
    'UNSUPPORTED_ARTIFACT',
    `the runtime cannot enforce a memory limit on this module: ${reason}; rebuild it with one 32-bit, unshared memory`,
  );
}

class Reader {
  pos: number;
  readonly bytes: Uint8Array;
  readonly end: number;
  constructor(bytes: Uint8Array, pos: number, end = bytes.length) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }
  byte(): number {
    if (this.pos >= this.end) throw unsupported(`truncated module (at byte ${this.pos})`);
    return this.bytes[this.pos++]!;
  }
  u32(): number {
    let result = 0;
    for (let shift = 0; shift <= 28; shift += 7) {
      const b = this.byte();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
    }
    throw unsupported(`malformed LEB128 at byte ${this.pos}`);
  }
  /** Skips any LEB128 (signed or unsigned, up to 64 bits). */
  leb(): void {
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return;
    throw unsupported(`malformed LEB128 at byte ${this.pos}`);
  }
  skip(n: number): void {
    if (this.pos + n > this.end) throw unsupported(`truncated module (at byte ${this.pos})`);
    this.pos += n;
  }
  name(): void {
    this.skip(this.u32());
  }
  heapType(): void {
    this.leb(); // s33: an abstract heap type (one negative byte) or a type index
  }
  valType(): void {
    const b = this.byte();
    if (b === 0x63 || b === 0x64) this.heapType(); // (ref null ht) / (ref ht)
  }
  blockType(): void {
    const b = this.byte();
    if (b === 0x63 || b === 0x64) this.heapType();
    else if (b & 0x80) this.leb(); // a type index of more than one byte
  }
  memarg(): void {
    const align = this.u32();
    if (align & 0x40) this.u32(); // multi-memory: an explicit memory index follows
    this.leb(); // offset (u64 under memory64)
  }
  limits(): { flags: number; min: number; max?: number } {
    const flags = this.byte();
    const is64 = (flags & 0x04) !== 0;
    let min = 0; // a 64-bit minimum is not needed: such a memory is refused
    if (is64) this.leb();
    else min = this.u32();
    let max: number | undefined;
    if (flags & 0x01) {
      if (is64) this.leb();
      else max = this.u32();
    }
    if (flags & 0x08) this.u32(); // custom-page-sizes proposal: page size log2
    return max === undefined ? { flags, min } : { flags, min, max };
  }
}

/** Bytes assembled from pieces without copying them one by one (a core module's code can be megabytes). */
class Builder {
  readonly parts: Uint8Array[] = [];
  length = 0;
  push(piece: Uint8Array | number[] | Builder): this {
    if (piece instanceof Builder) {
      for (const p of piece.parts) this.push(p);
      return this;
    }
    const bytes = piece instanceof Uint8Array ? piece : Uint8Array.from(piece);
    this.parts.push(bytes);
    this.length += bytes.length;
    return this;
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const p of this.parts) {
      out.set(p, offset);
      offset += p.length;
    }
    return out;
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

/** Signed LEB128 of a non-negative i32 (an `i32.const` immediate). */
function writeS32(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
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
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > bytes.length) throw unsupported('a section runs past the end of the module');
    sections.push({ id, start, contentStart, end });
    r.pos = end;
  }
  return sections;
}

/** What the import section declares, by kind. */
interface Imports {
  funcs: number;
  globals: number;
  memories: { flags: number }[];
}

function readImports(bytes: Uint8Array, section: Section | undefined): Imports {
  const result: Imports = { funcs: 0, globals: 0, memories: [] };
  if (!section) return result;
  const r = new Reader(bytes, section.contentStart, section.end);
  let count = r.u32();
  while (count-- > 0) {
    r.name();
    r.name();
    const kind = r.byte();
    switch (kind) {
      case 0x00: // func: typeidx
        r.u32();
        result.funcs++;
        break;
      case 0x01: // table: reftype + limits
        r.valType();
        r.limits();
        break;
      case 0x02:
        result.memories.push({ flags: r.limits().flags });
        break;
      case 0x03: // global: valtype + mutability
        r.valType();
        r.byte();
        result.globals++;
        break;
      case 0x04: // tag: attribute + typeidx
        r.byte();
        r.u32();
        break;
      default:
        throw unsupported(`unknown import kind 0x${kind.toString(16)}`);
    }
  }
  return result;
}

/** Number of types the type section defines (a recursion group counts each of its sub-types). */
function countTypes(bytes: Uint8Array, section: Section | undefined): number {
  if (!section) return 0;
  const r = new Reader(bytes, section.contentStart, section.end);
  const fieldType = () => {
    r.valType(); // storage type: a value type or a packed i8 (0x78) / i16 (0x77), both one byte
    r.byte(); // mutability
  };
  const compType = () => {
    const form = r.byte();
    if (form === 0x60) {
      for (let n = r.u32(); n > 0; n--) r.valType();
      for (let n = r.u32(); n > 0; n--) r.valType();
    } else if (form === 0x5f) {
      for (let n = r.u32(); n > 0; n--) fieldType();
    } else if (form === 0x5e) {
      fieldType();
    } else {
      throw unsupported(`unknown type form 0x${form.toString(16)}`);
    }
  };
  const subType = () => {
    const b = r.bytes[r.pos];
    if (b === 0x50 || b === 0x4f) {
      r.byte();
      for (let n = r.u32(); n > 0; n--) r.u32();
    }
    compType();
  };
  let types = 0;
  for (let count = r.u32(); count > 0; count--) {
    if (r.bytes[r.pos] === 0x4e) {
      r.byte();
      const n = r.u32();
      for (let i = 0; i < n; i++) subType();
      types += n;
    } else {
      subType();
      types++;
    }
  }
  return types;
}

function vectorCount(bytes: Uint8Array, section: Section | undefined): number {
  return section ? new Reader(bytes, section.contentStart, section.end).u32() : 0;
}

/**
 * Decodes one instruction at `r.pos` and skips its immediates; returns the opcode (prefixed opcodes return the
 * prefix). Throws `UNSUPPORTED_ARTIFACT` on an opcode it does not know.
 */
function skipInstruction(r: Reader): number {
  const op = r.byte();
  if ((op >= 0x45 && op <= 0xc4) || op === 0x00 || op === 0x01 || op === 0x05 || op === 0x0b) return op;
  switch (op) {
    case 0x02: // block
    case 0x03: // loop
    case 0x04: // if
    case 0x06: // try (legacy exceptions)
      r.blockType();
      return op;
    case 0x0a: // throw_ref
    case 0x0f: // return
    case 0x19: // catch_all
    case 0x1a: // drop
    case 0x1b: // select
    case 0xd1: // ref.is_null
    case 0xd3: // ref.eq
    case 0xd4: // ref.as_non_null
      return op;
    case 0x07: // catch tagidx
    case 0x08: // throw tagidx
    case 0x09: // rethrow label
    case 0x0c: // br
    case 0x0d: // br_if
    case 0x10: // call
    case 0x12: // return_call
    case 0x14: // call_ref typeidx
    case 0x15: // return_call_ref typeidx
    case 0x18: // delegate label
    case 0x20: // local.get
    case 0x21: // local.set
    case 0x22: // local.tee
    case 0x23: // global.get
    case 0x24: // global.set
    case 0x25: // table.get
    case 0x26: // table.set
    case 0x3f: // memory.size memidx
    case 0x40: // memory.grow memidx
    case 0xd2: // ref.func
    case 0xd5: // br_on_null
    case 0xd6: // br_on_non_null
      r.u32();
      return op;
    case 0x0e: // br_table
      for (let n = r.u32(); n > 0; n--) r.u32();
      r.u32();
      return op;
    case 0x11: // call_indirect typeidx tableidx
    case 0x13: // return_call_indirect
      r.u32();
      r.u32();
      return op;
    case 0x1c: // select t*
      for (let n = r.u32(); n > 0; n--) r.valType();
      return op;
    case 0x1f: // try_table blocktype vec(catch)
      r.blockType();
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.byte();
        if (kind === 0x00 || kind === 0x01) r.u32();
        else if (kind !== 0x02 && kind !== 0x03) throw unsupported(`unknown catch clause 0x${kind.toString(16)}`);
        r.u32();
      }
      return op;
    case 0x41: // i32.const
    case 0x42: // i64.const
      r.leb();
      return op;
    case 0x43:
      r.skip(4);
      return op;
    case 0x44:
      r.skip(8);
      return op;
    case 0xd0: // ref.null heaptype
      r.heapType();
      return op;
    case 0xfb:
      skipGc(r, r.u32());
      return op;
    case 0xfc:
      skipMisc(r, r.u32());
      return op;
    case 0xfd:
      skipSimd(r, r.u32());
      return op;
    case 0xfe: {
      const sub = r.u32();
      if (sub === 0x03)
        r.byte(); // atomic.fence
      else if (sub <= 0x4e) r.memarg();
      else throw unsupported(`unknown atomic instruction 0xfe 0x${sub.toString(16)}`);
      return op;
    }
    default:
      if (op >= 0x28 && op <= 0x3e) {
        r.memarg(); // loads and stores
        return op;
      }
      throw unsupported(`unknown instruction 0x${op.toString(16)} at byte ${r.pos - 1}`);
  }
}

function skipMisc(r: Reader, sub: number): void {
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: // memory.init dataidx memidx
    case 10: // memory.copy memidx memidx
    case 12: // table.init elemidx tableidx
    case 14: // table.copy
      r.u32();
      r.u32();
      return;
    case 9: // data.drop
    case 11: // memory.fill memidx
    case 13: // elem.drop
    case 15: // table.grow
    case 16: // table.size
    case 17: // table.fill
      r.u32();
      return;
    default:
      throw unsupported(`unknown instruction 0xfc 0x${sub.toString(16)}`);
  }
}

function skipSimd(r: Reader, sub: number): void {
  if (sub <= 11 || sub === 92 || sub === 93) r.memarg();
  else if (sub === 12 || sub === 13)
    r.skip(16); // v128.const, i8x16.shuffle
  else if (sub >= 21 && sub <= 34)
    r.byte(); // extract/replace lane
  else if (sub >= 84 && sub <= 91) {
    r.memarg(); // load/store lane
    r.byte();
  } else if (sub > 0x113) throw unsupported(`unknown SIMD instruction 0xfd 0x${sub.toString(16)}`);
}

function skipGc(r: Reader, sub: number): void {
  switch (sub) {
    case 0: // struct.new
    case 1: // struct.new_default
    case 6: // array.new
    case 7: // array.new_default
    case 11: // array.get
    case 12:
    case 13:
    case 14: // array.set
    case 16: // array.fill
      r.u32();
      return;
    case 2: // struct.get typeidx fieldidx
    case 3:
    case 4:
    case 5:
    case 8: // array.new_fixed typeidx n
    case 9: // array.new_data typeidx dataidx
    case 10: // array.new_elem
    case 17: // array.copy typeidx typeidx
    case 18: // array.init_data
    case 19: // array.init_elem
      r.u32();
      r.u32();
      return;
    case 15: // array.len
    case 26: // any.convert_extern
    case 27: // extern.convert_any
    case 28: // ref.i31
    case 29: // i31.get_s
    case 30: // i31.get_u
      return;
    case 20: // ref.test
    case 21:
    case 22: // ref.cast
    case 23:
      r.heapType();
      return;
    case 24: // br_on_cast flags label ht ht
    case 25:
      r.byte();
      r.u32();
      r.heapType();
      r.heapType();
      return;
    default:
      throw unsupported(`unknown GC instruction 0xfb 0x${sub.toString(16)}`);
  }
}

/** Where a function body has an instruction the rewrite replaces: `[at, end)` are its bytes. */
interface Site {
  at: number;
  end: number;
  op: 0x3f | 0x40;
}

/**
 * Rewrites the code section: every `memory.grow` becomes `call growFunc`, and, when `sizeFunc` is given, every
 * `memory.size` becomes `call sizeFunc`; `appended` are the bodies of the functions to append. `plan` is asked once
 * the sites are counted, so what is appended (and so every index) can depend on them.
 */
function rewriteCode(
  bytes: Uint8Array,
  section: Section,
  plan: (sites: { grow: number; size: number }) => { growFunc: number; sizeFunc?: number; appended: number[][] },
) {
  const r = new Reader(bytes, section.contentStart, section.end);
  const count = r.u32();
  const functions: { start: number; end: number; sites: Site[] }[] = [];
  const counts = { grow: 0, size: 0 };
  for (let i = 0; i < count; i++) {
    const size = r.u32();
    const start = r.pos;
    const end = start + size;
    const body = new Reader(bytes, start, end);
    for (let groups = body.u32(); groups > 0; groups--) {
      body.u32();
      body.valType();
    }
    const sites: Site[] = [];
    while (body.pos < end) {
      const at = body.pos;
      const op = skipInstruction(body);
      if (op !== 0x40 && op !== 0x3f) continue;
      const memory = new Reader(bytes, at + 1, end).u32();
      if (memory !== 0) {
        throw unsupported(`${op === 0x40 ? 'memory.grow' : 'memory.size'} of memory ${memory} (multi-memory)`);
      }
      sites.push({ at, end: body.pos, op });
      if (op === 0x40) counts.grow++;
      else counts.size++;
    }
    if (body.pos !== end) throw unsupported(`function body ${i} is malformed`);
    functions.push({ start, end, sites });
    r.pos = end;
  }
  if (r.pos !== section.end) throw unsupported('the code section has trailing bytes');
  const { growFunc, sizeFunc, appended } = plan(counts);
  const call = [0x10, ...writeU32(growFunc)];
  const getSize = sizeFunc === undefined ? undefined : [0x10, ...writeU32(sizeFunc)];
  const bodies = new Builder();
  for (const { start, end, sites } of functions) {
    const out = new Builder();
    let copied = start;
    for (const site of sites) {
      const replacement = site.op === 0x40 ? call : getSize;
      if (!replacement) continue;
      out.push(bytes.subarray(copied, site.at)).push(replacement);
      copied = site.end;
    }
    out.push(bytes.subarray(copied, end));
    bodies.push(writeU32(out.length)).push(out);
  }
  const content = new Builder().push(writeU32(count + appended.length)).push(bodies);
  for (const body of appended) content.push(body);
  return { content, growSites: counts.grow, sizeSites: getSize ? counts.size : 0 };
}

/**
 * Body of the appended function `(param $delta i32) (result i32) (local $r i32)`: `memory.grow` and, on -1, store
 * `memory.size + delta` (as i64, so it cannot wrap) in the recording global. With `owned` (a module that defines its
 * memory, see {@link limitModuleMemory}): a grow that succeeds sets the `top` global to the end of the pages it
 * added, and `memory.grow 0` answers what `memory.size` answers in that module (`call size`).
 */
function growBody(global: number, owned?: { top: number; size: number }): number[] {
  const onSuccess =
    owned === undefined
      ? []
      : [
          0x05, // else (the grow succeeded)
          ...[0x20, 0x00], // local.get $delta
          ...[0x04, 0x40], // if (delta != 0)
          ...[0x20, 0x01], // local.get $r
          ...[0x20, 0x00], // local.get $delta
          0x6a, // i32.add
          ...[0x24, ...writeU32(owned.top)], // global.set $top
          0x05, // else (memory.grow 0)
          ...[0x10, ...writeU32(owned.size)], // call $size
          ...[0x21, 0x01], // local.set $r
          0x0b, // end
        ];
  const body = [
    ...[0x01, 0x01, 0x7f], // one local: i32
    ...[0x20, 0x00], // local.get $delta
    ...[0x40, 0x00], // memory.grow 0
    ...[0x22, 0x01], // local.tee $r
    ...[0x41, 0x7f], // i32.const -1
    0x46, // i32.eq
    ...[0x04, 0x40], // if
    ...[0x3f, 0x00], // memory.size 0
    0xad, // i64.extend_i32_u
    ...[0x20, 0x00], // local.get $delta
    0xad, // i64.extend_i32_u
    0x7c, // i64.add
    ...[0x24, ...writeU32(global)], // global.set $failed
    ...onSuccess,
    0x0b, // end
    ...[0x20, 0x01], // local.get $r
    0x0b, // end
  ];
  return [...writeU32(body.length), ...body];
}

/**
 * Body of the appended `(result i32) (local $real i32)` that replaces `memory.size` in a module that defines its
 * memory: the first call notes the memory's real size in `first`; while the memory is still that size, it answers
 * `top` (the pages the module owns: its initial pages, or the end of its own last grow), afterwards the real size.
 * So pages another module grew before this one first looked are not its own, and any growth after that (its own or
 * another module's) is answered exactly as `memory.size` would, so `memory.size` before a `memory.grow` is still
 * where the new pages start.
 */
function sizeBody(top: number, first: number): number[] {
  const body = [
    ...[0x01, 0x01, 0x7f], // one local: i32
    ...[0x3f, 0x00], // memory.size 0
    ...[0x21, 0x00], // local.set $real
    ...[0x23, ...writeU32(first)], // global.get $first
    0x45, // i32.eqz
    ...[0x04, 0x40], // if (first call)
    ...[0x20, 0x00], // local.get $real
    ...[0x24, ...writeU32(first)], // global.set $first
    0x0b, // end
    ...[0x20, 0x00], // local.get $real
    ...[0x23, ...writeU32(first)], // global.get $first
    0x46, // i32.eq
    ...[0x04, 0x7f], // if (result i32): nothing grew since the first call
    ...[0x23, ...writeU32(top)], // global.get $top
    0x05, // else
    ...[0x20, 0x00], // local.get $real
    0x0b, // end
    0x0b, // end
  ];
  return [...writeU32(body.length), ...body];
}

function appendToVector(bytes: Uint8Array, section: Section | undefined, entry: number[]): Builder {
  return appendAllToVector(bytes, section, [entry]);
}

function appendAllToVector(bytes: Uint8Array, section: Section | undefined, entries: number[][]): Builder {
  const out = new Builder();
  if (!section) out.push(writeU32(entries.length));
  else {
    const r = new Reader(bytes, section.contentStart, section.end);
    out.push(writeU32(r.u32() + entries.length)).push(bytes.subarray(r.pos, section.end));
  }
  for (const entry of entries) out.push(entry);
  return out;
}

/**
 * The table section with every table's maximum bounded (see {@link MAX_TABLE_ELEMENTS}), or undefined when every
 * table already declares a maximum within its share.
 */
function limitTables(bytes: Uint8Array, section: Section): Builder | undefined {
  const r = new Reader(bytes, section.contentStart, section.end);
  const count = r.u32();
  if (count === 0) return undefined;
  const share = Math.floor(MAX_TABLE_ELEMENTS / count);
  const out = new Builder().push(writeU32(count));
  let changed = false;
  let initial = 0;
  for (let i = 0; i < count; i++) {
    const start = r.pos;
    // function-references: `0x40 0x00 tabletype expr` (a table with an initializer); otherwise `tabletype`.
    const withInit = bytes[r.pos] === 0x40;
    if (withInit) r.skip(2);
    r.valType();
    const limitsStart = r.pos;
    const flags = bytes[r.pos]!;
    if (flags & ~0x01) throw tableUnsupported(`table ${i} has limits flags 0x${flags.toString(16)} (table64?)`);
    const limits = r.limits();
    const limitsEnd = r.pos;
    initial += limits.min;
    if (initial > MAX_TABLE_ELEMENTS) {
      throw tableUnsupported(`its tables start with ${initial} elements, more than ${MAX_TABLE_ELEMENTS}`);
    }
    const max = Math.max(limits.min, share);
    let rest = limitsEnd;
    if (withInit) {
      // The initializer is a constant expression ending in `end` (0x0b); skip it instruction by instruction.
      for (;;) {
        if (bytes[r.pos] === 0x0b) {
          r.pos++;
          break;
        }
        skipInstruction(r);
      }
      rest = r.pos;
    }
    if (limits.max !== undefined && limits.max <= max) {
      out.push(bytes.subarray(start, rest));
      continue;
    }
    changed = true;
    out.push(bytes.subarray(start, limitsStart));
    out.push([0x01, ...writeU32(limits.min), ...writeU32(max)]);
    out.push(bytes.subarray(limitsEnd, rest));
  }
  return changed ? out : undefined;
}

function tableUnsupported(reason: string): RuntimeError {
  return new RuntimeError(
    'UNSUPPORTED_ARTIFACT',
    `the runtime cannot bound this module's tables: ${reason}; tables may hold at most ${MAX_TABLE_ELEMENTS} elements`,
  );
}

/**
 * Prepares a core module for a memory limit (see the file comment): its defined memory becomes an import and every
 * `memory.grow` records a refusal. A module without any memory is returned unchanged.
 * @throws RuntimeError `UNSUPPORTED_ARTIFACT` naming why the module's memory cannot be limited.
 */
export function limitModuleMemory(module: Uint8Array): MemoryRewrite {
  if (module.length < 8 || module[0] !== 0 || module[1] !== 0x61 || module[2] !== 0x73 || module[3] !== 0x6d) {
    throw unsupported('not a core WebAssembly module');
  }
  if (module[4] !== 1 || module[5] !== 0 || module[6] !== 0 || module[7] !== 0) {
    throw unsupported('not a version 1 core module');
  }
  const sections = readSections(module);
  const find = (id: number) => sections.find((s) => s.id === id);
  const importSection = find(SECTION_IMPORT);
  const memorySection = find(SECTION_MEMORY);
  const imports = readImports(module, importSection);

  let defined: { flags: number; min: number; max?: number; bytes: Uint8Array } | undefined;
  let definedCount = 0;
  if (memorySection) {
    const r = new Reader(module, memorySection.contentStart, memorySection.end);
    definedCount = r.u32();
    if (definedCount === 1) {
      const start = r.pos;
      const limits = r.limits();
      defined = { ...limits, bytes: module.subarray(start, r.pos) };
    }
  }
  const replaced = new Map<number, Builder>();
  const removed = new Set<number>();
  const tableSection = find(SECTION_TABLE);
  const tables = tableSection ? limitTables(module, tableSection) : undefined;
  if (tables) replaced.set(SECTION_TABLE, tables);

  const total = definedCount + imports.memories.length;
  if (total === 0 && !tables) return { bytes: module, importsMemory: false, growSites: 0 };
  if (total > 1) throw unsupported(`it has ${total} memories (multi-memory)`);
  if (total === 1) {
    const flags = defined ? defined.flags : imports.memories[0]!.flags;
    if (flags & 0x02) throw unsupported('its memory is shared (threads)');
    if (flags & 0x04) throw unsupported('its memory is 64-bit (memory64)');
    if (flags & ~0x01) throw unsupported(`its memory has limits flags 0x${flags.toString(16)} (custom page size?)`);
  }

  if (defined) {
    // The defined memory (index 0) becomes imported memory 0: no memory index changes.
    const entry = [...encodeName(MEMORY_IMPORT_MODULE), ...encodeName(MEMORY_IMPORT_FIELD), 0x02, ...defined.bytes];
    replaced.set(SECTION_IMPORT, appendToVector(module, importSection, entry));
    removed.add(SECTION_MEMORY);
  }

  const codeSection = find(SECTION_CODE);
  let growSites = 0;
  if (codeSection && total > 0) {
    const functionSection = find(SECTION_FUNCTION);
    const globalSection = find(SECTION_GLOBAL);
    const typeSection = find(SECTION_TYPE);
    const exportSection = find(SECTION_EXPORT);
    // Appended entries take the next free index of each space, so existing indices stay valid.
    const firstFunc = imports.funcs + vectorCount(module, functionSection);
    const firstGlobal = imports.globals + vectorCount(module, globalSection);
    const firstType = countTypes(module, typeSection);
    let grow = false;
    let owned = false;
    const code = rewriteCode(module, codeSection, (sites) => {
      grow = sites.grow > 0;
      owned = defined !== undefined && sites.grow + sites.size > 0;
      // Functions: grow, then size. Globals: failed, then top and first.
      const sizeFunc = firstFunc + (grow ? 1 : 0);
      const failed = firstGlobal;
      const top = firstGlobal + (grow ? 1 : 0);
      const appended: number[][] = [];
      if (grow) appended.push(growBody(failed, owned ? { top, size: sizeFunc } : undefined));
      if (owned) appended.push(sizeBody(top, top + 1));
      return { growFunc: firstFunc, ...(owned ? { sizeFunc } : {}), appended };
    });
    growSites = code.growSites;
    if (grow || owned) replaced.set(SECTION_CODE, code.content);
    const types: number[][] = [];
    const funcs: number[][] = [];
    const globals: number[][] = [];
    if (grow) {
      types.push([0x60, 0x01, 0x7f, 0x01, 0x7f]); // (func (param i32) (result i32))
      funcs.push(writeU32(firstType));
      globals.push([0x7e, 0x01, 0x42, 0x00, 0x0b]); // $failed: (global (mut i64) (i64.const 0))
      replaced.set(
        SECTION_EXPORT,
        appendToVector(module, exportSection, [...encodeName(GROW_FAILED_EXPORT), 0x03, ...writeU32(firstGlobal)]),
      );
    }
    if (owned && defined) {
      types.push([0x60, 0x00, 0x01, 0x7f]); // (func (result i32))
      funcs.push(writeU32(firstType + types.length - 1));
      // $top: the runtime creates the memory with exactly the module's initial pages. $first: 0 until the first call.
      globals.push([0x7f, 0x01, 0x41, ...writeS32(defined.min), 0x0b]);
      globals.push([0x7f, 0x01, 0x41, 0x00, 0x0b]);
    }
    if (types.length > 0) {
      replaced.set(SECTION_TYPE, appendAllToVector(module, typeSection, types));
      replaced.set(SECTION_FUNCTION, appendAllToVector(module, functionSection, funcs));
      replaced.set(SECTION_GLOBAL, appendAllToVector(module, globalSection, globals));
    }
  }
  if (replaced.size === 0) return { bytes: module, importsMemory: total > 0 && !defined, growSites: 0 };

  const present = new Set(sections.map((s) => s.id));
  const added = [...replaced.keys()]
    .filter((id) => !present.has(id))
    .sort((x, y) => SECTION_RANK[x]! - SECTION_RANK[y]!);
  const out = new Builder().push(module.subarray(0, 8));
  const emit = (id: number, content: Builder) => {
    out.push([id, ...writeU32(content.length)]).push(content);
  };
  for (const section of sections) {
    if (section.id !== SECTION_CUSTOM) {
      const rank = SECTION_RANK[section.id];
      if (rank === undefined) throw unsupported(`unknown section id ${section.id}`);
      while (added.length > 0 && SECTION_RANK[added[0]!]! < rank) {
        const id = added.shift()!;
        emit(id, replaced.get(id)!);
      }
    }
    if (removed.has(section.id)) continue;
    const content = replaced.get(section.id);
    if (content) emit(section.id, content);
    else out.push(module.subarray(section.start, section.end));
  }
  for (const id of added) emit(id, replaced.get(id)!);
  const memory: ImportedMemory | undefined = defined
    ? defined.max === undefined
      ? { minPages: defined.min }
      : { minPages: defined.min, maxPages: defined.max }
    : undefined;
  return { bytes: out.bytes(), ...(memory ? { memory } : {}), importsMemory: total > 0 && !defined, growSites };
}
