/**
 * Pool worker: runs one task at a time, each in a fresh component instance with its own WASI host.
 *
 * The WASI 0.2 host is preview2-shim's, made into a sandbox (TOOLCHAIN.md: the shim's defaults are not one):
 * - `WASIShim` with `sandbox` — preopens are exactly the task's mounts, network disabled;
 * - our own `wasi:cli` — environment and arguments from the task only, stdio backed by the task's streams (subclasses
 *   of the shim's stream classes, so the transpiled component's resource checks accept them), no terminals, and an
 *   `exit` that ends the task instead of calling `process.exit`;
 * - read-only mounts and quotas enforced around the shim's `Descriptor` (wasmtime semantics: writes through a
 *   read-only preopen fail with `not-permitted`; a write past the byte quota, or a create past the entry quota,
 *   fails with `insufficient-space`, ENOSPC; renames and hard links between mounts fail with `cross-device`).
 *
 * This file is the worker's entry point; it only runs inside `worker_threads`.
 */

import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import * as shim from '@bytecodealliance/preview2-shim';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { correctPreview1, type MemoryRef } from './preview1.js';
import type { DoneMessage, QuotaEvent, RunningMessage, RunRequest, WorkerMount, WorkerOutcome } from './protocol.js';
import { StdinReader } from './stdin.js';
import { GROW_FAILED_EXPORT, MEMORY_IMPORT_FIELD, MEMORY_IMPORT_MODULE } from './wasm-memory.js';

const port = parentPort;
if (!port) throw new Error('@vyr/runtime worker.js must run in a worker thread');

const PAGE = 65536;

/** Thrown by our `wasi:cli/exit` to unwind the guest; caught below and turned into an exit code. */
class ExitSignal {
  constructor(readonly code: number) {}
}

type Bytes = Uint8Array;
type Pollable = object;
// Loose shapes of the shim's classes: the shim ships JS with partial typings.
type ShimClass = { prototype: Record<string | symbol, unknown> } & (new () => object);
interface Filesystem {
  types: { Descriptor: ShimClass; DirectoryEntryStream?: ShimClass };
}
interface IoModule {
  streams: { InputStream: ShimClass; OutputStream: ShimClass };
  error: { Error: new (payload: unknown) => Error };
}
const io = shim.io as unknown as IoModule;
const filesystem = shim.filesystem as unknown as Filesystem;
const clocks = shim.clocks as unknown as { monotonicClock: { subscribeDuration(ns: bigint): Pollable } };

const BaseOutputStream = io.streams.OutputStream as unknown as new () => object;
const BaseInputStream = io.streams.InputStream as unknown as new () => object;
const IoError = io.error.Error;

/** Per-task state the stdio classes and filesystem guards consult. */
interface TaskContext {
  taskId: string;
  stdin: StdinReader;
  quotaEvents: QuotaEvent[];
  /** Descriptors the task opened and has not closed; each holds a host file descriptor of the node process. */
  open: Set<object>;
}

/**
 * Most files and directories one task may hold open at once. Each is a file descriptor of the node process: a guest
 * opening files without closing them would otherwise take the whole process's descriptor table (seen: the node
 * then cannot accept a connection). One open past the bound fails with `insufficient-memory` (ENOMEM, what the host
 * answers at its own limit); whatever is still open when the task ends is closed then.
 */
const MAX_OPEN_DESCRIPTORS = 1024;

const disposeSymbol: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for('dispose');
let current: TaskContext | undefined;

function readyPollable(): Pollable {
  return clocks.monotonicClock.subscribeDuration(0n);
}

/**
 * Guest stdout/stderr: every write is posted to the runtime, with credit-based flow control. `inFlight` counts bytes
 * posted but not yet taken by the runtime; a write that would take it past `limit` blocks the guest's thread
 * (`Atomics.wait`) until the runtime catches up, so a guest writing faster than the node can take output is slowed
 * instead of filling the message queue without bound. `check-write` reports the credit left; `subscribe` is ready
 * once there is credit.
 */
class TaskOutputStream extends BaseOutputStream {
  readonly #fd: 1 | 2;
  readonly #taskId: string;
  readonly #inFlight: Int32Array;
  readonly #limit: number;
  constructor(fd: 1 | 2, taskId: string, inFlight: Int32Array, limit: number) {
    super();
    this.#fd = fd;
    this.#taskId = taskId;
    this.#inFlight = inFlight;
    this.#limit = limit;
  }
  #send(data: Bytes): void {
    if (data.length === 0) return;
    for (;;) {
      const pending = Atomics.load(this.#inFlight, 0);
      // A chunk larger than the whole budget still goes once nothing else is in flight.
      if (pending === 0 || pending + data.length <= this.#limit) break;
      Atomics.wait(this.#inFlight, 0, pending, 1000);
    }
    Atomics.add(this.#inFlight, 0, data.length);
    const copy = data.slice();
    port!.postMessage({ type: 'output', taskId: this.#taskId, fd: this.#fd, data: copy }, [copy.buffer]);
  }
  #credit(): number {
    return Math.max(0, this.#limit - Atomics.load(this.#inFlight, 0));
  }
  checkWrite(): bigint {
    return BigInt(this.#credit());
  }
  write(buf: Bytes): void {
    this.#send(buf);
  }
  blockingWriteAndFlush(buf: Bytes): void {
    this.#send(buf);
  }
  flush(): void {}
  blockingFlush(): void {}
  writeZeroes(len: bigint): void {
    this.#send(new Uint8Array(Number(len)));
  }
  blockingWriteZeroesAndFlush(len: bigint): void {
    this.writeZeroes(len);
  }
  splice(src: { read(len: bigint): Bytes }, len: bigint): bigint {
    const data = src.read(len);
    this.#send(data);
    return BigInt(data.length);
  }
  blockingSplice(src: { blockingRead(len: bigint): Bytes }, len: bigint): bigint {
    const data = src.blockingRead(len);
    this.#send(data);
    return BigInt(data.length);
  }
  subscribe(): Pollable {
    // Ready when there is credit; otherwise a short timer (a poll may wake early; check-write tells the truth).
    if (this.#credit() > 0) return readyPollable();
    return clocks.monotonicClock.subscribeDuration(5_000_000n);
  }
  [Symbol.dispose](): void {}
}

/** Guest stdin: reads the task's ring; `closed` at end of input, as WASI `input-stream` specifies. */
class TaskInputStream extends BaseInputStream {
  readonly #reader: StdinReader;
  constructor(reader: StdinReader) {
    super();
    this.#reader = reader;
  }
  #read(len: bigint, block: boolean): Bytes {
    const data = this.#reader.read(Math.min(Number(len), 1 << 20), block);
    if (data === undefined) throw { tag: 'closed' };
    return data;
  }
  read(len: bigint): Bytes {
    return this.#read(len, false);
  }
  blockingRead(len: bigint): Bytes {
    return this.#read(len, true);
  }
  skip(len: bigint): bigint {
    return BigInt(this.#read(len, false).length);
  }
  blockingSkip(len: bigint): bigint {
    return BigInt(this.#read(len, true).length);
  }
  subscribe(): Pollable {
    // Ready when data or end of input is there. Otherwise a short timer: a poll may wake spuriously (allowed by
    // wasi:io/poll) and the guest's next read tells it the truth.
    if (this.#reader.available() > 0 || this.#reader.ended()) return readyPollable();
    return clocks.monotonicClock.subscribeDuration(5_000_000n);
  }
  [Symbol.dispose](): void {}
}

// ---- filesystem guards: read-only mounts and quotas ------------------------------------------------------------

interface MountState {
  guestPath: string;
  readOnly: boolean;
  quotaBytes?: number;
  usedBytes: number;
  quotaEntries?: number;
  /** Files, directories and symlinks under the mount (each hard link counts), as the state kernel counts them. */
  usedEntries: number;
}
interface StreamTarget {
  descriptor: object;
  mount: MountState;
  offset: number;
}
const mountOf = new WeakMap<object, MountState>();
const fileStreams = new WeakMap<object, StreamTarget>();

type Method = (this: object, ...args: never[]) => unknown;
function wrap(proto: Record<string | symbol, unknown>, name: string, make: (orig: Method) => Method): void {
  const orig = proto[name] as Method;
  proto[name] = make(orig);
}

function sizeOf(descriptor: object): number {
  const stat = (descriptor as { stat(): { size: bigint } }).stat();
  return Number(stat.size);
}

function recordQuota(mount: MountState, attempted: number): void {
  current?.quotaEvents.push({
    guestPath: mount.guestPath,
    kind: 'bytes',
    quotaBytes: mount.quotaBytes!,
    attemptedBytes: attempted,
  });
}

/** Whether `path` (relative to the directory `dir`) names nothing yet, so creating it adds an entry. */
function absent(dir: object, path: string, follow: boolean): boolean {
  try {
    (dir as { statAt(flags: object, path: string): unknown }).statAt({ symlinkFollow: follow }, path);
    return false;
  } catch (err) {
    return err === 'no-entry';
  }
}

/**
 * Throws `insufficient-space` (ENOSPC in the guest) if one more entry would pass the mount's entry quota, recording
 * the refusal. Called before a create that will add an entry; the caller counts it once the create succeeded.
 */
function chargeEntry(mount: MountState | undefined): void {
  if (mount?.quotaEntries === undefined) return;
  if (mount.usedEntries + 1 > mount.quotaEntries) {
    current?.quotaEvents.push({
      guestPath: mount.guestPath,
      kind: 'entries',
      quotaEntries: mount.quotaEntries,
      attemptedEntries: mount.usedEntries + 1,
    });
    throw 'insufficient-space';
  }
}

/**
 * Each mount is its own filesystem for the guest: a rename or hard link between two mounts fails with
 * `cross-device` (EXDEV, as between two host filesystems; `mv` then copies). A hard link across mounts would
 * make two state instances share a file (implicit sharing), and a rename across them would move content past both
 * quotas' accounting.
 */
function sameMount(a: MountState | undefined, b: MountState | undefined): void {
  if (a !== b) throw 'cross-device';
}

/** Throws if writing `len` bytes at `offset` of a file of `size` bytes would pass the mount's quota. */
function chargeWrite(mount: MountState, size: number, offset: number, len: number, asStream: boolean): number {
  if (mount.quotaBytes === undefined) return 0;
  const growth = Math.max(0, offset + len - size);
  if (mount.usedBytes + growth > mount.quotaBytes) {
    recordQuota(mount, mount.usedBytes + growth);
    if (asStream) {
      const payload = Object.assign(new Error(`quota of ${mount.guestPath} exceeded`), { code: 'ENOSPC' });
      throw { tag: 'last-operation-failed', val: new IoError(payload) };
    }
    throw 'insufficient-space';
  }
  return growth;
}

/** The mount of `descriptor`; throws `not-permitted` when it is read-only (the guard of every mutating call). */
function writableMount(descriptor: object): MountState | undefined {
  const mount = mountOf.get(descriptor);
  if (mount?.readOnly) throw 'not-permitted';
  return mount;
}

function readOnlyGuard(name: string): void {
  wrap(
    filesystem.types.Descriptor.prototype,
    name,
    (orig) =>
      function (this: object, ...args: never[]) {
        writableMount(this);
        return orig.apply(this, args);
      },
  );
}

/**
 * Arguments of each `descriptor` method that are guest paths (wasi:filesystem/types). A path with a NUL byte cannot
 * name a file on any host: the guest gets `invalid` (EINVAL, what wasmtime answers) before the shim builds a host
 * path from it (Node would throw an exception quoting that host path).
 */
const PATH_ARGS: Record<string, number[]> = {
  createDirectoryAt: [0],
  statAt: [1],
  setTimesAt: [1],
  linkAt: [1, 3],
  openAt: [1],
  readlinkAt: [0],
  removeDirectoryAt: [0],
  renameAt: [0, 2],
  symlinkAt: [0, 1],
  unlinkFileAt: [0],
  metadataHashAt: [1],
};

/**
 * Every `descriptor` method returns `result<_, error-code>`: an exception that is not an error code (the shim
 * rethrows Node errors it does not map, whose messages hold host paths) would trap the task with that message.
 * It becomes `io` (EIO) instead; the guest's call fails, the task and the host path stay private.
 */
function errorCodeOnly(proto: Record<string | symbol, unknown>): void {
  for (const name of Object.getOwnPropertyNames(proto)) {
    if (name === 'constructor' || typeof proto[name] !== 'function') continue;
    const pathArgs = PATH_ARGS[name] ?? [];
    wrap(
      proto,
      name,
      (orig) =>
        function (this: object, ...args: never[]) {
          for (const i of pathArgs) {
            if (typeof args[i] === 'string' && (args[i] as string).includes('\0')) throw 'invalid';
          }
          try {
            return orig.apply(this, args);
          } catch (err) {
            if (typeof err === 'string') throw err;
            throw 'io';
          }
        },
    );
  }
}

/** A wasi:clocks datetime for "now". */
function nowDatetime(): { seconds: bigint; nanoseconds: number } {
  const ns = BigInt(Date.now()) * 1_000_000n;
  return { seconds: ns / 1_000_000_000n, nanoseconds: Number(ns % 1_000_000_000n) };
}

type NewTimestamp = { tag: 'no-change' } | { tag: 'now' } | { tag: 'timestamp'; val: Datetime };
type Datetime = { seconds: bigint; nanoseconds: number };

/**
 * `set-times` / `set-times-at` as wasi:filesystem specifies them. The shim (0.26.1) gets three things wrong, each
 * seen with third-party programs: `no-change` reads the times of the *directory* (`set-times-at`; on a preopen
 * that fails with `invalid`), `now` is computed in seconds where milliseconds are expected (times land in 1970),
 * and `set-times` hands `futimes` milliseconds where it takes seconds (times land in the year 58000). Here
 * `no-change` keeps the file's own time (read with the same symlink rule), `now` is the wall clock, and both calls
 * reach the shim with explicit timestamps, scaled for `set-times`. Node sets times through a double of seconds,
 * so digits below ~1 µs are rounded (WASI lets a filesystem keep coarser times than it was given).
 */
function installTimeFixes(proto: Record<string | symbol, unknown>): void {
  const resolve = (value: NewTimestamp, current: () => Datetime): Datetime => {
    if (value.tag === 'timestamp') return value.val;
    if (value.tag === 'now') return nowDatetime();
    return current();
  };
  const explicit = (val: Datetime): NewTimestamp => ({ tag: 'timestamp', val });
  wrap(
    proto,
    'setTimesAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const [flags, path, atime, mtime] = args as unknown as [object, string, NewTimestamp, NewTimestamp];
        let stat: { dataAccessTimestamp: Datetime; dataModificationTimestamp: Datetime } | undefined;
        const current = () =>
          (stat ??= (this as { statAt(f: object, p: string): NonNullable<typeof stat> }).statAt(flags, path));
        const a = resolve(atime, () => current().dataAccessTimestamp);
        const m = resolve(mtime, () => current().dataModificationTimestamp);
        return orig.call(this, ...([flags, path, explicit(a), explicit(m)] as never[]));
      },
  );
  // The shim passes timestampToMs(t) to futimes, which reads it as seconds: hand it t / 1000, as a datetime whose
  // "milliseconds" are the seconds wanted (nanoseconds may be fractional there; the shim only divides them).
  const asShimSeconds = (t: Datetime): NewTimestamp => {
    const seconds = t.seconds / 1000n;
    const rest = Number(t.seconds % 1000n);
    return { tag: 'timestamp', val: { seconds, nanoseconds: rest * 1_000_000 + t.nanoseconds / 1000 } };
  };
  wrap(
    proto,
    'setTimes',
    (orig) =>
      function (this: object, ...args: never[]) {
        const [atime, mtime] = args as unknown as [NewTimestamp, NewTimestamp];
        let stat: { dataAccessTimestamp: Datetime; dataModificationTimestamp: Datetime } | undefined;
        const current = () => (stat ??= (this as { stat(): NonNullable<typeof stat> }).stat());
        const a = resolve(atime, () => current().dataAccessTimestamp);
        const m = resolve(mtime, () => current().dataModificationTimestamp);
        return orig.call(this, ...([asShimSeconds(a), asShimSeconds(m)] as never[]));
      },
  );
}

function installFilesystemGuards(): void {
  const proto = filesystem.types.Descriptor.prototype;
  installTimeFixes(proto);
  errorCodeOnly(proto);
  // Closing a descriptor (the guest's resource drop) takes it off the task's open set.
  const dispose = proto[disposeSymbol] as ((this: object) => void) | undefined;
  if (dispose) {
    proto[disposeSymbol] = function (this: object) {
      current?.open.delete(this);
      dispose.call(this);
    };
  }
  if (filesystem.types.DirectoryEntryStream) errorCodeOnly(filesystem.types.DirectoryEntryStream.prototype);
  wrap(
    proto,
    'openAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = mountOf.get(this);
        const [, , openFlags, descriptorFlags] = args as unknown as [
          unknown,
          string,
          { create?: boolean; truncate?: boolean },
          { write?: boolean; mutateDirectory?: boolean },
        ];
        if (
          mount?.readOnly &&
          (descriptorFlags.write || descriptorFlags.mutateDirectory || openFlags.create || openFlags.truncate)
        ) {
          throw 'not-permitted';
        }
        const [pathFlags, path] = args as unknown as [{ symlinkFollow?: boolean }, string];
        const creates =
          mount?.quotaEntries !== undefined &&
          openFlags.create === true &&
          absent(this, path, pathFlags.symlinkFollow === true);
        if (creates) chargeEntry(mount);
        if (current && current.open.size >= MAX_OPEN_DESCRIPTORS) throw 'insufficient-memory';
        const opened = orig.apply(this, args) as object;
        current?.open.add(opened);
        if (mount) {
          mountOf.set(opened, mount);
          if (creates) mount.usedEntries++;
        }
        return opened;
      },
  );
  for (const name of ['setTimesAt', 'setTimes', 'appendViaStream']) {
    readOnlyGuard(name);
  }
  // Creates of one entry: a directory, a symlink. Refused on a read-only mount, charged against the entry quota.
  for (const [name, pathArg] of [
    ['createDirectoryAt', 0],
    ['symlinkAt', 1],
  ] as const) {
    wrap(
      proto,
      name,
      (orig) =>
        function (this: object, ...args: never[]) {
          const mount = writableMount(this);
          const creates = mount?.quotaEntries !== undefined && absent(this, args[pathArg] as unknown as string, false);
          if (creates) chargeEntry(mount);
          const result = orig.apply(this, args);
          if (creates) mount!.usedEntries++;
          return result;
        },
    );
  }
  wrap(
    proto,
    'linkAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const [oldFlags, oldPath, target, newPath] = args as unknown as [
          { symlinkFollow?: boolean },
          string,
          object,
          string,
        ];
        const mount = mountOf.get(this);
        if (mount?.readOnly || mountOf.get(target)?.readOnly) throw 'not-permitted';
        sameMount(mount, mountOf.get(target));
        // A new name for an existing file: one more entry, and as many more bytes as the state kernel counts (it
        // sums the size of every path).
        const creates = mount?.quotaEntries !== undefined && absent(target, newPath, false);
        const size =
          mount?.quotaBytes !== undefined ? regularFileSize(this, oldPath, oldFlags.symlinkFollow === true) : 0;
        if (creates) chargeEntry(mount);
        if (mount?.quotaBytes !== undefined && mount.usedBytes + size > mount.quotaBytes) {
          recordQuota(mount, mount.usedBytes + size);
          throw 'insufficient-space';
        }
        const result = orig.apply(this, args);
        if (mount) {
          if (creates) mount.usedEntries++;
          mount.usedBytes += size;
        }
        return result;
      },
  );
  wrap(
    proto,
    'removeDirectoryAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = writableMount(this);
        const result = orig.apply(this, args);
        if (mount) mount.usedEntries = Math.max(0, mount.usedEntries - 1);
        return result;
      },
  );
  wrap(
    proto,
    'renameAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const [, target, newPath] = args as unknown as [string, object, string];
        const mount = mountOf.get(this);
        if (mount?.readOnly || mountOf.get(target)?.readOnly) throw 'not-permitted';
        const targetMount = mountOf.get(target);
        sameMount(mount, targetMount);
        // Renaming over an existing name replaces it: one entry (and that file's bytes) fewer.
        const replacesEntry = targetMount?.quotaEntries !== undefined && !absent(target, newPath, false);
        const replaced = targetMount?.quotaBytes !== undefined ? regularFileSize(target, newPath) : 0;
        const result = orig.apply(this, args);
        if (targetMount) {
          targetMount.usedBytes = Math.max(0, targetMount.usedBytes - replaced);
          if (replacesEntry) targetMount.usedEntries = Math.max(0, targetMount.usedEntries - 1);
        }
        return result;
      },
  );
  wrap(
    proto,
    'unlinkFileAt',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = writableMount(this);
        const freed = mount?.quotaBytes !== undefined ? regularFileSize(this, args[0] as unknown as string) : 0;
        const result = orig.apply(this, args);
        if (mount) {
          mount.usedBytes = Math.max(0, mount.usedBytes - freed);
          mount.usedEntries = Math.max(0, mount.usedEntries - 1);
        }
        return result;
      },
  );
  wrap(
    proto,
    'setSize',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = writableMount(this);
        if (mount?.quotaBytes === undefined) return orig.apply(this, args);
        const size = Number(args[0] as unknown as bigint);
        const before = sizeOf(this);
        const growth = chargeWrite(mount, before, 0, size, false);
        const result = orig.apply(this, args);
        mount.usedBytes = Math.max(0, mount.usedBytes + growth - Math.max(0, before - size));
        return result;
      },
  );
  wrap(
    proto,
    'write',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = writableMount(this);
        if (mount?.quotaBytes === undefined) return orig.apply(this, args);
        const [buffer, offset] = args as unknown as [Bytes, bigint];
        const growth = chargeWrite(mount, sizeOf(this), Number(offset), buffer.length, false);
        const result = orig.apply(this, args);
        mount.usedBytes += growth;
        return result;
      },
  );
  wrap(
    proto,
    'writeViaStream',
    (orig) =>
      function (this: object, ...args: never[]) {
        const mount = writableMount(this);
        const stream = orig.apply(this, args) as object;
        if (mount?.quotaBytes !== undefined) {
          fileStreams.set(stream, { descriptor: this, mount, offset: Number(args[0] as unknown as bigint) });
        }
        return stream;
      },
  );
  const streamProto = io.streams.OutputStream.prototype;
  const charged = (lengthOf: (args: never[]) => number) => (orig: Method) =>
    function (this: object, ...args: never[]) {
      const target = fileStreams.get(this);
      if (!target) return orig.apply(this, args);
      const len = lengthOf(args);
      const growth = chargeWrite(target.mount, sizeOf(target.descriptor), target.offset, len, true);
      const result = orig.apply(this, args);
      target.offset += len;
      target.mount.usedBytes += growth;
      return result;
    };
  const bufferLength = (args: never[]) => (args[0] as unknown as Bytes).length;
  const zeroesLength = (args: never[]) => Number(args[0] as unknown as bigint);
  wrap(streamProto, 'write', charged(bufferLength));
  wrap(streamProto, 'blockingWriteAndFlush', charged(bufferLength));
  wrap(streamProto, 'writeZeroes', charged(zeroesLength));
  wrap(streamProto, 'blockingWriteZeroesAndFlush', charged(zeroesLength));
}

/**
 * Bytes the state kernel counts for the path: the size of a regular file (each of its names counts, as in the
 * kernel's digest walk), 0 for anything else or a missing path.
 */
function regularFileSize(dir: object, path: string, follow = false): number {
  try {
    const stat = (dir as { statAt(flags: object, path: string): { type: string; size: bigint } }).statAt(
      { symlinkFollow: follow },
      path,
    );
    return stat.type === 'regular-file' ? Number(stat.size) : 0;
  } catch {
    return 0;
  }
}

/**
 * Bytes of regular files and number of entries under `dir` (the quotas' starting point), counted as the state
 * kernel counts them: every path below the root, symlinks not followed.
 */
function diskUsage(dir: string): { bytes: number; entries: number } {
  let total = 0;
  let entries = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const name of names) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) stack.push(p);
      else if (st.isFile()) total += st.size;
      if (st.isDirectory() || st.isFile() || st.isSymbolicLink()) entries++;
    }
  }
  return { bytes: total, entries };
}

installFilesystemGuards();

// ---- task execution --------------------------------------------------------------------------------------------

const now = (): number => performance.timeOrigin + performance.now();

/** Transpiled component modules this worker has loaded, by `jsKey` (ES modules cannot be unloaded). */
const componentModules = new Map<string, Promise<{ instantiate: Instantiate }>>();

/** The component's JS module, imported from the verified source the runtime sent (a `data:` URL, never a path). */
function loadComponentJs(req: RunRequest): Promise<{ instantiate: Instantiate }> {
  let loaded = componentModules.get(req.jsKey);
  if (!loaded) {
    if (req.jsSource === undefined) throw new Error(`the runtime sent no source for ${req.jsKey}`);
    const url = `data:text/javascript;base64,${Buffer.from(req.jsSource, 'utf8').toString('base64')}`;
    loaded = import(url) as Promise<{ instantiate: Instantiate }>;
    componentModules.set(req.jsKey, loaded);
    loaded.catch(() => componentModules.delete(req.jsKey));
  }
  return loaded;
}

type Instantiate = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: Record<string, unknown>,
  instantiateCore: (module: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
) => Promise<Record<string, unknown>>;

function buildImports(req: RunRequest, ctx: TaskContext): Record<string, unknown> {
  const preopens: Record<string, string> = {};
  for (const m of req.mounts) preopens[m.guestPath] = m.hostPath;
  const wasi = new WASIShim({
    sandbox: { preopens, env: {}, args: [], enableNetwork: false },
  } as ConstructorParameters<typeof WASIShim>[0]).getImportObject() as Record<string, unknown>;

  const dirs = (wasi['wasi:filesystem/preopens'] as { getDirectories(): [object, string][] }).getDirectories();
  for (const [descriptor, guestPath] of dirs) {
    const mount = req.mounts.find((m: WorkerMount) => m.guestPath === guestPath)!;
    const state: MountState = { guestPath, readOnly: mount.readOnly, usedBytes: 0, usedEntries: 0 };
    if (mount.quotaBytes !== undefined || (mount.quotaEntries !== undefined && mount.usedEntries === undefined)) {
      const usage = diskUsage(mount.hostPath);
      state.usedBytes = usage.bytes;
      state.usedEntries = usage.entries;
    }
    if (mount.quotaBytes !== undefined) state.quotaBytes = mount.quotaBytes;
    if (mount.quotaEntries !== undefined) {
      state.quotaEntries = mount.quotaEntries;
      if (mount.usedEntries !== undefined) state.usedEntries = mount.usedEntries;
    }
    mountOf.set(descriptor, state);
  }

  const inFlight = new Int32Array(req.outputInFlight);
  const stdout = new TaskOutputStream(1, req.taskId, inFlight, req.outputBufferBytes);
  const stderr = new TaskOutputStream(2, req.taskId, inFlight, req.outputBufferBytes);
  const stdin = new TaskInputStream(ctx.stdin);
  const env = req.env;
  const args = req.args;
  const cli = shim.cli as unknown as Record<string, unknown>;
  return {
    ...wasi,
    'wasi:cli/environment': {
      getEnvironment: () => env,
      getArguments: () => args,
      initialCwd: () => undefined,
    },
    'wasi:cli/exit': {
      exit(status: { tag: 'ok' | 'err' }): never {
        throw new ExitSignal(status.tag === 'err' ? 1 : 0);
      },
      exitWithCode(code: number): never {
        throw new ExitSignal(code);
      },
    },
    // The shim's sandbox refuses outgoing HTTP by throwing the *sockets* error string `access-denied`, which is not
    // a `wasi:http/types.error-code`: the guest's binding then traps instead of seeing an error. Refuse with the
    // wasi:http code for a request the host does not allow, `HTTP-request-denied` (what wasmtime answers too).
    'wasi:http/outgoing-handler': {
      handle(): never {
        throw { tag: 'HTTP-request-denied' };
      },
    },
    'wasi:cli/stdin': { getStdin: () => stdin },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    // Not a terminal: the guest sees `none`, as wasmtime answers for piped stdio.
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
  };
}

function findRun(exports: Record<string, unknown>): () => unknown {
  for (const [name, value] of Object.entries(exports)) {
    if (name.startsWith('wasi:cli/run@') && value && typeof (value as { run?: unknown }).run === 'function') {
      return (value as { run: () => unknown }).run;
    }
  }
  const plain = exports.run as { run?: () => unknown } | undefined;
  if (plain && typeof plain.run === 'function') return plain.run;
  throw new Error('the component exports no wasi:cli/run');
}

/** Closes what the task left open (its host file descriptors), now rather than whenever the GC finalizes them. */
function closeLeftovers(ctx: TaskContext): void {
  for (const descriptor of [...ctx.open]) {
    try {
      (descriptor as Record<symbol, () => void>)[disposeSymbol]?.();
    } catch {
      // already closed
    }
  }
  ctx.open.clear();
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * A message the task's status carries, with every host path of the task's mounts replaced by its guest path: the
 * node's layout (data dir, state instance ids) is not the guest's or the client's business.
 */
function redactHostPaths(message: string, mounts: WorkerMount[]): string {
  let out = message;
  // Longest first, so a mount nested in another is replaced by its own guest path.
  for (const m of [...mounts].sort((a, b) => b.hostPath.length - a.hostPath.length)) {
    const host = m.hostPath.endsWith('/') && m.hostPath.length > 1 ? m.hostPath.slice(0, -1) : m.hostPath;
    if (host === '/' || host === '') continue;
    out = out.split(host).join(m.guestPath === '/' ? '' : m.guestPath);
  }
  return out;
}

function redactOutcome(outcome: WorkerOutcome, mounts: WorkerMount[]): WorkerOutcome {
  if (!('message' in outcome) || typeof outcome.message !== 'string') return outcome;
  return { ...outcome, message: redactHostPaths(outcome.message, mounts) };
}

async function runTask(req: RunRequest): Promise<DoneMessage> {
  const ctx: TaskContext = {
    taskId: req.taskId,
    stdin: new StdinReader(req.stdin),
    quotaEvents: [],
    open: new Set(),
  };
  current = ctx;
  const memories: WebAssembly.Memory[] = [];
  const exportedMemories: WebAssembly.Memory[] = [];
  const limitPages = Math.max(1, Math.floor(req.memoryLimitBytes / PAGE));
  const names = new Map<WebAssembly.Module, string>();
  for (const [name, module] of Object.entries(req.modules)) names.set(module, name);
  let memoryRefused: string | undefined;
  /** The `vyr:runtime/grow-failed` globals of the instances (see wasm-memory.ts). */
  const growProbes: { value: bigint }[] = [];
  /** Whether the task's limit (not the module's own declared maximum) is the memory's maximum. */
  let limitIsMaximum = false;

  const instantiateCore = (module: WebAssembly.Module, imports: WebAssembly.Imports = {}): WebAssembly.Instance => {
    const name = names.get(module);
    const declared = name === undefined ? undefined : req.memories[name];
    let finalImports = imports;
    if (declared) {
      const maximum = Math.min(declared.maxPages ?? 65536, limitPages);
      if (declared.minPages > maximum) {
        memoryRefused = `initial memory ${declared.minPages * PAGE} bytes exceeds the limit of ${req.memoryLimitBytes} bytes`;
        throw new RangeError(memoryRefused);
      }
      const memory = new WebAssembly.Memory({ initial: declared.minPages, maximum });
      if (maximum === limitPages && limitPages < (declared.maxPages ?? 65536)) limitIsMaximum = true;
      memories.push(memory);
      finalImports = { ...finalImports, [MEMORY_IMPORT_MODULE]: { [MEMORY_IMPORT_FIELD]: memory } };
    }
    const p1 = finalImports.wasi_snapshot_preview1 as Record<string, unknown> | undefined;
    /** The P1 main module's memory, for the calls the host answers itself (preview1.ts). */
    const p1Memory: MemoryRef = {};
    if (p1) {
      const corrected = correctPreview1(p1, p1Memory, req.args, req.env, req.mounts.length);
      if (p1.proc_exit) {
        // The preview1 adapter folds every non-zero proc_exit code into exit(err) = 1; catching the call at the
        // module boundary keeps the exact code (wasmtime does the same for core modules).
        corrected.proc_exit = (code: number) => {
          throw new ExitSignal(code >>> 0);
        };
      }
      finalImports = { ...finalImports, wasi_snapshot_preview1: corrected };
    }
    const instance = new WebAssembly.Instance(module, finalImports);
    if (p1) {
      p1Memory.memory = Object.values(instance.exports).find((v) => v instanceof WebAssembly.Memory) as
        | WebAssembly.Memory
        | undefined;
    }
    const probe = instance.exports[GROW_FAILED_EXPORT] as { value: bigint } | undefined;
    if (probe) growProbes.push(probe);
    for (const value of Object.values(instance.exports)) {
      if (value instanceof WebAssembly.Memory && !memories.includes(value)) exportedMemories.push(value);
    }
    return instance;
  };

  const memoryBytes = () => {
    const all = new Set([...memories, ...exportedMemories]);
    let total = 0;
    for (const m of all) total += m.buffer.byteLength;
    return total;
  };
  // Every `memory.grow` records the page count it asked for when it returned -1 (wasm-memory.ts). A failure is the
  // memory limit's doing exactly when a grow past the limit was refused and the limit is the memory's maximum.
  const refusedPages = (): number => {
    let pages = 0;
    for (const probe of growProbes) pages = Math.max(pages, Number(probe.value));
    return pages;
  };
  const limitRefusedGrow = (): number | undefined => {
    const pages = refusedPages();
    return limitIsMaximum && pages > limitPages ? pages : undefined;
  };

  const instantiateStart = now();
  let instantiateEnd = instantiateStart;
  let runStart = instantiateStart;
  let outcome: WorkerOutcome;
  try {
    const mod = await loadComponentJs(req);
    const imports = buildImports(req, ctx);
    let run: () => unknown;
    try {
      const exports = await mod.instantiate((name) => req.modules[name]!, imports, instantiateCore);
      run = findRun(exports);
    } catch (err) {
      instantiateEnd = now();
      runStart = instantiateEnd;
      if (err instanceof ExitSignal) throw err;
      throw Object.assign(new Error(describe(err)), { instantiateFailed: true });
    }
    instantiateEnd = now();
    runStart = instantiateEnd;
    port!.postMessage({ type: 'running', taskId: req.taskId, instantiateStart, runStart } satisfies RunningMessage);
    try {
      run();
      outcome = { kind: 'exit', exitCode: 0 };
    } catch (err) {
      // `run` returning `err(())` surfaces as a thrown component error: exit code 1, like wasmtime.
      if (err instanceof ExitSignal) throw err;
      if (err instanceof WebAssembly.RuntimeError || err instanceof RangeError) throw err;
      if ((err as { name?: string }).name === 'ComponentError') outcome = { kind: 'exit', exitCode: 1 };
      else throw err;
    }
  } catch (err) {
    if (err instanceof ExitSignal) outcome = { kind: 'exit', exitCode: err.code };
    else if (memoryRefused !== undefined) outcome = { kind: 'memory-limit', message: memoryRefused };
    else if ((err as { instantiateFailed?: boolean }).instantiateFailed)
      outcome = { kind: 'instantiate-error', message: describe(err) };
    else outcome = { kind: 'trap', message: describe(err) };
  }
  // A guest that handled a refused grow and still succeeded keeps its success; any other end after the limit refused
  // a grow is the limit's doing, with the exit code kept.
  const refused = limitRefusedGrow();
  const failed = outcome.kind === 'trap' || (outcome.kind === 'exit' && outcome.exitCode !== 0);
  if (refused !== undefined && failed) {
    const what = outcome.kind === 'exit' ? `exit code ${outcome.exitCode}` : `trap: ${outcome.message}`;
    const message = `memory.grow to ${refused * PAGE} bytes refused: the task's memory limit is ${req.memoryLimitBytes} bytes (then ${what})`;
    outcome =
      outcome.kind === 'exit'
        ? { kind: 'memory-limit', message, exitCode: outcome.exitCode }
        : { kind: 'memory-limit', message };
  }
  const runEnd = now();
  closeLeftovers(ctx);
  current = undefined;
  return {
    type: 'done',
    taskId: req.taskId,
    outcome: redactOutcome(outcome, req.mounts),
    memoryBytes: memoryBytes(),
    quotaEvents: ctx.quotaEvents,
    instantiateStart,
    instantiateEnd,
    runStart,
    runEnd,
  };
}

port.on('message', (msg: RunRequest) => {
  if (msg.type !== 'run') return;
  runTask(msg).then(
    (done) => port.postMessage(done),
    (err: unknown) =>
      port.postMessage({
        type: 'done',
        taskId: msg.taskId,
        outcome: { kind: 'trap', message: redactHostPaths(`host failure: ${describe(err)}`, msg.mounts) },
        memoryBytes: 0,
        quotaEvents: [],
        instantiateStart: now(),
        instantiateEnd: now(),
        runStart: now(),
        runEnd: now(),
      } satisfies DoneMessage),
  );
});
port.postMessage({ type: 'ready' });
