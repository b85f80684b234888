/**
 * Messages between the runtime (main thread) and a pool worker. Everything here must be structured-cloneable:
 * compiled `WebAssembly.Module`s and `SharedArrayBuffer`s cross the thread boundary without copying.
 */

import type { ImportedMemory } from './wasm-memory.js';

/** A host directory mapped into the guest for one task. */
export interface WorkerMount {
  guestPath: string;
  hostPath: string;
  readOnly: boolean;
  quotaBytes?: number;
  quotaEntries?: number;
  /** Entries already under `hostPath`; counted on disk by the worker when absent. */
  usedEntries?: number;
}

/** Main → worker: run one task. */
export interface RunRequest {
  type: 'run';
  taskId: string;
  /** Identity of the transpiled JS module; a worker loads each key once and reuses it. */
  jsKey: string;
  /**
   * The transpiled instantiation-mode JS module (verified against the prepare cache's hash). Sent only when the
   * worker has not loaded `jsKey` yet; the worker imports exactly these bytes, never a file path.
   */
  jsSource?: string;
  /** Compiled core modules by the file name the transpiled JS asks for. */
  modules: Record<string, WebAssembly.Module>;
  /** Core modules whose defined memory was turned into an import, with the declared limits. */
  memories: Record<string, ImportedMemory>;
  /** argv, program name first. */
  args: string[];
  /** Environment entries the guest sees (declared keys only). */
  env: [string, string][];
  mounts: WorkerMount[];
  /** Maximum linear memory per memory, in bytes. */
  memoryLimitBytes: number;
  /** Stdin ring buffer (see stdin.ts). */
  stdin: SharedArrayBuffer;
  /**
   * Output flow control: one Int32 counting the guest output bytes posted but not yet taken by the runtime. The
   * worker adds before posting and blocks the guest while it is at `outputBufferBytes`; the runtime subtracts after
   * taking a chunk and notifies.
   */
  outputInFlight: SharedArrayBuffer;
  /** High-water mark of output in flight, bytes. */
  outputBufferBytes: number;
}

/** Worker → main: a chunk of guest output. */
export interface OutputMessage {
  type: 'output';
  taskId: string;
  fd: 1 | 2;
  data: Uint8Array;
}

/** A write refused because a mount's quota was reached (the runtime's `QuotaRefusal`). */
export type QuotaEvent =
  | { guestPath: string; kind: 'bytes'; quotaBytes: number; attemptedBytes: number }
  | { guestPath: string; kind: 'entries'; quotaEntries: number; attemptedEntries: number };

/** How the guest ended, as seen inside the worker. */
export type WorkerOutcome =
  | { kind: 'exit'; exitCode: number }
  | { kind: 'trap'; message: string }
  /** A `memory.grow` past the task's limit was refused and the guest then failed; `exitCode` if it exited. */
  | { kind: 'memory-limit'; message: string; exitCode?: number }
  | { kind: 'instantiate-error'; message: string };

/** Worker → main: the task finished. Times are epoch milliseconds (fractional). */
export interface DoneMessage {
  type: 'done';
  taskId: string;
  outcome: WorkerOutcome;
  memoryBytes: number;
  quotaEvents: QuotaEvent[];
  instantiateStart: number;
  instantiateEnd: number;
  runStart: number;
  runEnd: number;
}

/**
 * Worker → main: the component is instantiated and `wasi:cli/run` is about to be called. Lets the runtime time the
 * instantiate and run spans of a task it stops (cancel, deadline) before the worker can say `done`.
 */
export interface RunningMessage {
  type: 'running';
  taskId: string;
  instantiateStart: number;
  runStart: number;
}

/** Worker → main: the worker has loaded its WASI host and is ready for tasks. */
export interface ReadyMessage {
  type: 'ready';
}

/** Any message a worker posts. */
export type WorkerMessage = OutputMessage | RunningMessage | DoneMessage | ReadyMessage;
