/**
 * Host-side corrections to the WASI preview1 calls a P1 core module makes through jco's preview1 adapter
 * (`wasi_snapshot_preview1.command.wasm`, from wasmtime). The adapter turns each P1 call into WASI 0.2 calls; where
 * its answer differs from what the WASI P1 spec and wasmtime's native P1 host give, the runtime answers the call
 * itself at the main module's import boundary (the same place the runtime already catches `proc_exit`). Each fix
 * names the program behaviour that exposed it.
 *
 * - `args_sizes_get` / `args_get` / `environ_sizes_get` / `environ_get` are answered by the host from the task's
 *   arguments and environment, written straight into the guest's buffers. Through the adapter, the first of these
 *   calls makes the adapter take its state and stack from `memory.grow` (a module without `cabi_realloc` gives it no
 *   allocator). Toolchains whose allocator claims all memory up to `memory.size` at its first allocation
 *   (AssemblyScript's TLSF and stub runtimes) then hand the adapter's pages out again, and the adapter's canary check
 *   traps: `assertion failed at adapter line 2858`. Answering from the host keeps the adapter out of the program's
 *   start-up, so the program's allocator claims memory first and the adapter's pages come after it.
 * - `fd_write` with no bytes to write returns `EBADF` for a descriptor that is not open (the adapter returns success
 *   before it looks the descriptor up; WASI P1 and wasmtime check the descriptor first). Seen with AssemblyScript's
 *   `fd_write(-31337, 0, 0, …)`.
 *
 * - `sock_accept` / `sock_recv` / `sock_send` get `ENOTSOCK` (`EBADF` for a descriptor that is not open): a VYR
 *   task is never given a socket, and the adapter implements these three as a trap (`unreachable`).
 * - `proc_raise` gets `ENOTSUP` (wasmtime's answer; the adapter traps).
 * - A path that is not UTF-8 gets `EILSEQ` (wasmtime's answer). The adapter passes the bytes on as a WASI 0.2
 *   `string`, which the host decodes with replacement characters: `\xff` would silently name a file `\ufffd`.
 *
 * Pointers the guest passes are bounds-checked: an out-of-bounds buffer gets `EFAULT`, never a host exception.
 */

/** WASI preview1 errno values used here (wasi_snapshot_preview1 `errno`). */
const ERRNO_SUCCESS = 0;
const ERRNO_BADF = 8;
const ERRNO_FAULT = 21;
const ERRNO_ILSEQ = 25;
const ERRNO_NOTSOCK = 57;
const ERRNO_NOTSUP = 58;

const encoder = new TextEncoder();

/** The memory of the main module, known once it is instantiated (imports are built before that). */
export interface MemoryRef {
  memory?: WebAssembly.Memory;
}

type P1Function = (...args: number[]) => number;

/** NUL-terminated UTF-8 strings, as P1 `args_get` / `environ_get` write them. */
function encodeAll(strings: string[]): Uint8Array[] {
  return strings.map((s) => {
    const bytes = encoder.encode(s);
    const out = new Uint8Array(bytes.length + 1);
    out.set(bytes);
    return out;
  });
}

/** Whether `[ptr, ptr + len)` lies inside the memory (u32 pointers, as the guest passed them). */
function inBounds(memory: WebAssembly.Memory, ptr: number, len: number): boolean {
  return ptr >>> 0 === ptr && len >= 0 && ptr + len <= memory.buffer.byteLength;
}

/** `*_sizes_get`: count and total bytes (terminators included). */
function sizesGet(ref: MemoryRef, strings: Uint8Array[]): P1Function {
  return (countPtr: number, sizePtr: number): number => {
    const memory = ref.memory;
    const count = countPtr >>> 0;
    const size = sizePtr >>> 0;
    if (!memory || !inBounds(memory, count, 4) || !inBounds(memory, size, 4)) return ERRNO_FAULT;
    const view = new DataView(memory.buffer);
    view.setUint32(count, strings.length, true);
    view.setUint32(
      size,
      strings.reduce((n, s) => n + s.length, 0),
      true,
    );
    return ERRNO_SUCCESS;
  };
}

/** `args_get` / `environ_get`: the pointer array at `ptrs`, the strings one after another at `buf`. */
function listGet(ref: MemoryRef, strings: Uint8Array[]): P1Function {
  const total = strings.reduce((n, s) => n + s.length, 0);
  return (ptrsArg: number, bufArg: number): number => {
    const memory = ref.memory;
    const ptrs = ptrsArg >>> 0;
    const buf = bufArg >>> 0;
    if (!memory || !inBounds(memory, ptrs, 4 * strings.length) || !inBounds(memory, buf, total)) return ERRNO_FAULT;
    const view = new DataView(memory.buffer);
    const bytes = new Uint8Array(memory.buffer);
    let at = buf;
    strings.forEach((s, i) => {
      view.setUint32(ptrs + 4 * i, at, true);
      bytes.set(s, at);
      at += s.length;
    });
    return ERRNO_SUCCESS;
  };
}

/**
 * The descriptors the adapter has open, followed from the main module's own calls: stdio (0-2), one per preopen
 * (numbered from 3 in order, as the adapter numbers them), every descriptor a successful `path_open` returned, less
 * those closed; `fd_renumber` moves one. Consulted only to tell EBADF from another errno.
 */
class OpenDescriptors {
  readonly #open = new Set<number>();
  constructor(preopens: number) {
    for (let fd = 0; fd < 3 + preopens; fd++) this.#open.add(fd);
  }
  has(fd: number): boolean {
    return this.#open.has(fd >>> 0);
  }
  /** Wraps a call that writes a new descriptor at the pointer in argument `outArg` on success. */
  opens(ref: MemoryRef, call: P1Function, outArg: number): P1Function {
    return (...args: number[]): number => {
      const errno = call(...args);
      const memory = ref.memory;
      const out = (args[outArg] ?? -1) >>> 0;
      if (errno === ERRNO_SUCCESS && memory && inBounds(memory, out, 4)) {
        this.#open.add(new DataView(memory.buffer).getUint32(out, true));
      }
      return errno;
    };
  }
  closes(call: P1Function): P1Function {
    return (fd: number): number => {
      const errno = call(fd);
      if (errno === ERRNO_SUCCESS) this.#open.delete(fd >>> 0);
      return errno;
    };
  }
  renumbers(call: P1Function): P1Function {
    return (from: number, to: number): number => {
      const errno = call(from, to);
      if (errno === ERRNO_SUCCESS) {
        this.#open.delete(from >>> 0);
        this.#open.add(to >>> 0);
      }
      return errno;
    };
  }
}

/** `fd_write` that returns `EBADF` for a write of no bytes to a descriptor that is not open. */
function fdWrite(ref: MemoryRef, adapterWrite: P1Function, open: OpenDescriptors): P1Function {
  return (fd: number, iovs: number, iovsLen: number, nwritten: number): number => {
    const memory = ref.memory;
    if (!memory || open.has(fd)) return adapterWrite(fd, iovs, iovsLen, nwritten);
    const base = iovs >>> 0;
    const count = iovsLen >>> 0;
    if (!inBounds(memory, base, 8 * count)) return adapterWrite(fd, iovs, iovsLen, nwritten);
    const view = new DataView(memory.buffer);
    for (let i = 0; i < count; i++) {
      if (view.getUint32(base + 8 * i + 4, true) !== 0) return adapterWrite(fd, iovs, iovsLen, nwritten);
    }
    return ERRNO_BADF;
  };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Argument positions of the (pointer, length) pairs that are paths, per P1 function (wasi_snapshot_preview1.witx).
 */
const PATH_PAIRS: Record<string, [number, number][]> = {
  path_create_directory: [[1, 2]],
  path_filestat_get: [[2, 3]],
  path_filestat_set_times: [[2, 3]],
  path_link: [
    [2, 3],
    [5, 6],
  ],
  path_open: [[2, 3]],
  path_readlink: [[1, 2]],
  path_remove_directory: [[1, 2]],
  path_rename: [
    [1, 2],
    [4, 5],
  ],
  path_symlink: [
    [0, 1],
    [3, 4],
  ],
  path_unlink_file: [[1, 2]],
};

/** A path call that answers `EILSEQ` for a path that is not UTF-8 (out-of-bounds paths go on to the adapter). */
function utf8Paths(ref: MemoryRef, call: P1Function, pairs: [number, number][]): P1Function {
  return (...args: number[]): number => {
    const memory = ref.memory;
    if (memory) {
      for (const [ptrArg, lenArg] of pairs) {
        const ptr = (args[ptrArg] as number) >>> 0;
        const len = (args[lenArg] as number) >>> 0;
        if (!inBounds(memory, ptr, len)) continue;
        try {
          strictUtf8.decode(new Uint8Array(memory.buffer, ptr, len));
        } catch {
          return ERRNO_ILSEQ;
        }
      }
    }
    return call(...args);
  };
}

/**
 * The `wasi_snapshot_preview1` imports of a main module with the corrections above; `p1` are the adapter's exports
 * the module would otherwise get. `ref.memory` must be set to the module's memory once it is instantiated.
 */
export function correctPreview1(
  p1: Record<string, unknown>,
  ref: MemoryRef,
  args: string[],
  env: [string, string][],
  preopens: number,
): Record<string, unknown> {
  const argv = encodeAll(args);
  const environ = encodeAll(env.map(([k, v]) => `${k}=${v}`));
  const out: Record<string, unknown> = { ...p1 };
  if (p1.args_sizes_get) out.args_sizes_get = sizesGet(ref, argv);
  if (p1.args_get) out.args_get = listGet(ref, argv);
  if (p1.environ_sizes_get) out.environ_sizes_get = sizesGet(ref, environ);
  if (p1.environ_get) out.environ_get = listGet(ref, environ);
  for (const [name, pairs] of Object.entries(PATH_PAIRS)) {
    if (typeof p1[name] === 'function') out[name] = utf8Paths(ref, p1[name] as P1Function, pairs);
  }
  const open = new OpenDescriptors(preopens);
  // path_open(fd, dirflags, path, path_len, oflags, rights, inheriting, fdflags, *fd)
  if (out.path_open) out.path_open = open.opens(ref, out.path_open as P1Function, 8);
  if (p1.fd_close) out.fd_close = open.closes(p1.fd_close as P1Function);
  if (p1.fd_renumber) out.fd_renumber = open.renumbers(p1.fd_renumber as P1Function);
  if (typeof p1.fd_write === 'function') out.fd_write = fdWrite(ref, p1.fd_write as P1Function, open);
  const notSocket = (fd: number): number => (open.has(fd) ? ERRNO_NOTSOCK : ERRNO_BADF);
  if (p1.sock_accept) out.sock_accept = notSocket;
  if (p1.sock_recv) out.sock_recv = notSocket;
  if (p1.sock_send) out.sock_send = notSocket;
  if (p1.proc_raise) out.proc_raise = () => ERRNO_NOTSUP;
  return out;
}
