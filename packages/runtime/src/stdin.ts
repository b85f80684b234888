/**
 * A single-producer, single-consumer byte ring in a `SharedArrayBuffer`: the runtime (main thread) writes the
 * task's stdin, the worker reads it synchronously with `Atomics.wait` — WASI `blocking-read` must block the guest
 * without returning to the event loop. Bounded: the producer waits (asynchronously) while the ring is full.
 *
 * Layout: Int32 control words [written, read, eof, seq] followed by `capacity` data bytes. Counters wrap (32-bit);
 * `capacity` is a power of two so `counter & (capacity - 1)` is the ring index even after wrapping.
 */

const WRITTEN = 0;
const READ = 1;
const EOF = 2;
const SEQ = 3;
const HEADER_BYTES = 16;

/** Allocates a stdin ring with at least `capacityBytes` of buffer (rounded up to a power of two, min 1 KiB). */
export function createStdinRing(capacityBytes: number): SharedArrayBuffer {
  let capacity = 1024;
  while (capacity < capacityBytes) capacity *= 2;
  return new SharedArrayBuffer(HEADER_BYTES + capacity);
}

function views(sab: SharedArrayBuffer): { ctrl: Int32Array; data: Uint8Array; capacity: number } {
  const ctrl = new Int32Array(sab, 0, 4);
  const data = new Uint8Array(sab, HEADER_BYTES);
  return { ctrl, data, capacity: data.length };
}

/** Producer side, used on the main thread. */
export class StdinWriter {
  readonly #ctrl: Int32Array;
  readonly #data: Uint8Array;
  readonly #capacity: number;

  constructor(sab: SharedArrayBuffer) {
    const v = views(sab);
    this.#ctrl = v.ctrl;
    this.#data = v.data;
    this.#capacity = v.capacity;
  }

  /** Copies as much of `chunk` as fits; returns the number of bytes written (0 when the ring is full). */
  tryWrite(chunk: Uint8Array): number {
    const written = Atomics.load(this.#ctrl, WRITTEN);
    const read = Atomics.load(this.#ctrl, READ);
    const free = this.#capacity - ((written - read) | 0);
    const n = Math.min(free, chunk.length);
    if (n <= 0) return 0;
    const mask = this.#capacity - 1;
    const start = written & mask;
    const first = Math.min(n, this.#capacity - start);
    this.#data.set(chunk.subarray(0, first), start);
    if (n > first) this.#data.set(chunk.subarray(first, n), 0);
    Atomics.store(this.#ctrl, WRITTEN, (written + n) | 0);
    this.#signal();
    return n;
  }

  /** Writes all of `chunk`, waiting (without blocking the event loop) while the consumer drains the ring. */
  async write(chunk: Uint8Array, signal?: AbortSignal): Promise<void> {
    let rest = chunk;
    while (rest.length > 0) {
      if (signal?.aborted) return;
      const n = this.tryWrite(rest);
      rest = rest.subarray(n);
      if (rest.length > 0) {
        const read = Atomics.load(this.#ctrl, READ);
        const result = Atomics.waitAsync(this.#ctrl, READ, read, 50);
        if (result.async) await result.value;
      }
    }
  }

  /** Marks end of input: once the ring is drained, reads report `closed`. */
  close(): void {
    Atomics.store(this.#ctrl, EOF, 1);
    this.#signal();
  }

  #signal(): void {
    Atomics.add(this.#ctrl, SEQ, 1);
    Atomics.notify(this.#ctrl, SEQ);
  }
}

/** Consumer side, used inside the worker. */
export class StdinReader {
  readonly #ctrl: Int32Array;
  readonly #data: Uint8Array;
  readonly #capacity: number;

  constructor(sab: SharedArrayBuffer) {
    const v = views(sab);
    this.#ctrl = v.ctrl;
    this.#data = v.data;
    this.#capacity = v.capacity;
  }

  /** Bytes ready to read now. */
  available(): number {
    return (Atomics.load(this.#ctrl, WRITTEN) - Atomics.load(this.#ctrl, READ)) | 0;
  }

  /** Whether the producer closed the stream and every byte was read. */
  ended(): boolean {
    return Atomics.load(this.#ctrl, EOF) === 1 && this.available() === 0;
  }

  /**
   * Reads up to `max` bytes. Non-blocking: returns an empty array when nothing is ready, `undefined` at end of
   * input. With `block`, waits until at least one byte arrives or the stream ends.
   */
  read(max: number, block: boolean): Uint8Array | undefined {
    for (;;) {
      // Read the sequence number first so a write or close between the checks below wakes the wait.
      const seq = Atomics.load(this.#ctrl, SEQ);
      const avail = this.available();
      if (avail > 0) return this.#take(Math.min(avail, max));
      if (Atomics.load(this.#ctrl, EOF) === 1) return undefined;
      if (!block || max === 0) return new Uint8Array(0);
      Atomics.wait(this.#ctrl, SEQ, seq);
    }
  }

  #take(n: number): Uint8Array {
    const read = Atomics.load(this.#ctrl, READ);
    const mask = this.#capacity - 1;
    const start = read & mask;
    const first = Math.min(n, this.#capacity - start);
    const out = new Uint8Array(n);
    out.set(this.#data.subarray(start, start + first));
    if (n > first) out.set(this.#data.subarray(0, n - first), first);
    Atomics.store(this.#ctrl, READ, (read + n) | 0);
    Atomics.notify(this.#ctrl, READ);
    return out;
  }
}
