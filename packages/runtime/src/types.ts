import type { Context, Meter, Tracer } from '@opentelemetry/api';
import type { Logger } from '@vyr/telemetry';

/**
 * Lifecycle of a task (ARCHITECTURE.md §3): `PENDING` (accepted, being prepared and bound) → `QUEUED` (waiting for
 * a worker) → `RUNNING` → one of the four terminal states.
 */
export type TaskState = 'PENDING' | 'QUEUED' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'DEADLINE_EXCEEDED';

/** The four states a task ends in. */
export type TerminalState = 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'DEADLINE_EXCEEDED';

/**
 * Why a task did not succeed; set on every non-`SUCCEEDED` end.
 * - `EXIT_CODE`: the guest exited with a non-zero code (`exitCode` holds it; `run` returning `err` is code 1).
 * - `TRAP`: the guest trapped (`message` holds the engine's trap message, e.g. `unreachable`).
 * - `MEMORY_LIMIT`: the guest's linear memory reached the task's limit and the guest failed.
 * - `CANCELLED`: `cancel()` was called. `DEADLINE_EXCEEDED`: the deadline passed.
 * - `PREPARE_FAILED`: the component could not be transpiled or compiled.
 * - `INSTANTIATE_FAILED`: the component could not be linked (for example, it imports an interface this host lacks).
 * - `STATE_BIND_FAILED` / `STATE_RELEASE_FAILED`: a state hook threw.
 * - `PENDING_TIMEOUT`: the task stayed `PENDING` too long waiting for its state: the `bind` hook gave up with an error
 *   whose `code` is `PENDING_TIMEOUT` (the state kernel's pending timeout; `message` names the unbound slots).
 * - `WORKER_CRASHED`: the worker thread died for a reason other than the above.
 * - `RUNTIME_CLOSED`: the runtime closed before the task finished.
 */
export type TaskReason =
  | 'EXIT_CODE'
  | 'TRAP'
  | 'MEMORY_LIMIT'
  | 'CANCELLED'
  | 'DEADLINE_EXCEEDED'
  | 'PREPARE_FAILED'
  | 'INSTANTIATE_FAILED'
  | 'STATE_BIND_FAILED'
  | 'STATE_RELEASE_FAILED'
  | 'PENDING_TIMEOUT'
  | 'WORKER_CRASHED'
  | 'RUNTIME_CLOSED';

/** A host directory made visible to one task. */
export interface Mount {
  /** Absolute guest path (`/` allowed). Each guest path may appear once per task. */
  guestPath: string;
  /** Absolute host directory; must exist. */
  hostPath: string;
  /** Refuse every write through this mount (WASI `not-permitted`). Default false. */
  readOnly?: boolean;
  /** Maximum bytes of regular files under the mount; a write past it fails in the guest with ENOSPC. Default: none. */
  quotaBytes?: number;
  /**
   * Maximum entries (files, directories, symlinks; each hard link counts) under the mount. Creating a file, a
   * directory, a symlink or a hard link past it fails in the guest with ENOSPC (`insufficient-space`) and is
   * recorded in {@link TaskStatus.quotaExceeded}, like the byte quota. Default: none.
   */
  quotaEntries?: number;
  /**
   * Entries already under the mount when the task starts: the starting count against `quotaEntries` (the state
   * kernel measured it). Default: counted on disk when the task starts.
   */
  usedEntries?: number;
}

/**
 * A guest write refused by a mount quota (WASI `insufficient-space`, ENOSPC in the guest): the byte quota
 * (`attemptedBytes`: the total the write would have reached) or the entry quota (`attemptedEntries`: the count the
 * create would have reached).
 */
export type QuotaRefusal =
  | { guestPath: string; kind: 'bytes'; quotaBytes: number; attemptedBytes: number }
  | { guestPath: string; kind: 'entries'; quotaEntries: number; attemptedEntries: number };

/** Resource limits of one task. */
export interface TaskLimits {
  /** Maximum linear memory, bytes (per memory of the component). */
  memoryBytes?: number;
  /** Wall-clock deadline from submit, milliseconds. */
  deadlineMs?: number;
}

/** What the runtime needs from an artifact: its declarations and its component bytes. */
export interface RuntimeArtifact {
  /** `sha256:<hex>` of the artifact's OCI manifest. */
  digest: string;
  /** VYR declarations (subset the runtime reads). */
  manifest: {
    name?: string;
    version?: string;
    /** Environment keys the task may receive. */
    env: readonly string[];
    /** Declared default limits. */
    limits?: TaskLimits;
  };
  /** The WASI 0.2 command component. */
  component: Uint8Array;
}

/**
 * Where artifacts come from. `load` must return only verified artifacts (trust policy passed, blobs re-hashed) and
 * throw otherwise; {@link artifactSourceFromStore} builds one from the `@vyr/artifact` store and trust policy.
 */
export interface ArtifactSource {
  /**
   * Loads and verifies `digest`.
   * @throws an error with `code` `NOT_FOUND` for an unknown digest (the runtime reports `NOT_FOUND`); a verification
   *   verdict (`code` `UNSIGNED`, `UNTRUSTED_KEY`, `SIGNATURE_INVALID`, `MESSAGE_DIGEST_MISMATCH`, `MALFORMED_BUNDLE`,
   *   `BLOB_DIGEST_MISMATCH`, `MANIFEST_TAMPERED`, `CONFIG_TAMPERED` or `UNTRUSTED`) is reported as `UNTRUSTED`;
   *   anything else (a missing blob, an I/O error) as `INTERNAL`. The cause is attached in every case.
   */
  load(digest: string): Promise<RuntimeArtifact>;
}

/** Context handed to state hooks. */
export interface StateHookContext {
  taskId: string;
  digest: string;
  artifact: RuntimeArtifact;
  /** The submit request. */
  request: SubmitRequest;
  /**
   * Aborted when the task ends (cancel, deadline, runtime close) while it is still `PENDING`. A `bind` hook that is
   * still waiting (for example for a state slot) should stop and reject; the runtime awaits the `bind` promise
   * before it calls `release`, so whatever `bind` acquired is always released.
   */
  signal: AbortSignal;
  /**
   * The trace context of the hook's own span (`vyr.state.bind` or `vyr.state.release`, a child of the task's
   * `vyr.task`). Run state-kernel calls inside it (`context.with(ctx.traceContext, …)`), also calls made later
   * on the hook's behalf (a `bind_state` RPC while the task is PENDING), so their spans nest under the task.
   */
  traceContext: Context;
}

/**
 * A state binding requested at submit, carried to the `bind` hook unchanged (`ctx.request.stateBindings`). The
 * runtime does not interpret it; the hook binds it (so the bind happens inside the task's trace).
 */
export interface StateBindingRequest {
  /** Declared slot name. */
  slot: string;
  /** State instance id. */
  instanceId: string;
  /** Requested access; default: the slot's declared access. */
  access?: 'ro' | 'rw';
}

/** How a task ended, decided before the `release` hook runs. */
export interface TaskOutcome {
  /** The terminal state the task will be published with (see {@link RuntimeHooks.release} for the one exception). */
  state: TerminalState;
  /** Set on every non-`SUCCEEDED` outcome. */
  reason?: TaskReason;
  /** Detail for `reason` (trap message, error text). */
  message?: string;
  /** The guest's exit code, when it exited. */
  exitCode?: number;
}

/** Context handed to the `release` hook. */
export interface StateReleaseContext extends StateHookContext {
  /**
   * The task's status with the outcome already applied (`state`, `reason`, `message`, `exitCode`, `endedAt`): the
   * status it will be published with once `release` returns.
   */
  status: TaskStatus;
  /** The outcome (the same values as in `status`), for hooks that only need those. */
  outcome: TaskOutcome;
}

/** Result of a release hook; attributes are added to the `vyr.state.release` span. */
export interface StateReleaseResult {
  attributes?: Record<string, string | number | boolean>;
}

/**
 * Optional hooks the state kernel plugs in. Each runs inside its own span (`vyr.state.bind`,
 * `vyr.state.release`), so the kernel's own spans nest under them.
 */
export interface RuntimeHooks {
  /**
   * Called while the task is `PENDING`; returns extra mounts to add to the submit's mounts. `ctx.signal` aborts if
   * the task ends first (cancel, deadline, close); a rejection then is expected and not reported as a failure. Any
   * other rejection ends the task `FAILED` with `STATE_BIND_FAILED`, or with `PENDING_TIMEOUT` when the error's
   * `code` is `PENDING_TIMEOUT` (the hook waited too long for the task's state).
   */
  bind?(ctx: StateHookContext): Promise<readonly Mount[] | undefined> | readonly Mount[] | undefined;
  /**
   * Called once after the task ends (whatever the outcome) and after `bind` has settled, before the terminal status
   * is published. `ctx.outcome` and `ctx.status` already carry the terminal state, reason, message and exit code.
   * If `release` throws on a `SUCCEEDED` outcome, the task is published as `FAILED` with `STATE_RELEASE_FAILED`
   * instead; on any other outcome the error is logged and the outcome kept.
   */
  release?(ctx: StateReleaseContext): Promise<StateReleaseResult | undefined> | StateReleaseResult | undefined;
}

/** A task submission. */
export interface SubmitRequest {
  /** Artifact digest, `sha256:<64 hex>`. */
  digest: string;
  /** Arguments after the program name (the guest's argv[0] is the artifact name, or `main`). Default `[]`. */
  args?: readonly string[];
  /** Environment values; every key must be declared by the artifact. Default `{}`. */
  env?: Readonly<Record<string, string>>;
  /** Stdin: bytes, a string (UTF-8) or an async iterable of chunks. Default: empty (immediate end of input). */
  stdin?: Uint8Array | string | AsyncIterable<Uint8Array>;
  /** Limit overrides (highest precedence over the artifact's declarations and the runtime defaults). */
  limits?: TaskLimits;
  /** Host directories for the guest, in addition to those the `bind` hook returns. Default `[]`. */
  mounts?: readonly Mount[];
  /** State bindings for the `bind` hook (see {@link StateBindingRequest}). Default `[]`. */
  stateBindings?: readonly StateBindingRequest[];
  /** The caller's W3C `traceparent`: the task's trace joins it. */
  traceparent?: string;
  /** Parent context, when the caller runs in-process (ignored if `traceparent` is set). */
  parentContext?: Context;
  /**
   * Hold the task's output for its first watcher instead of dropping any: until the first {@link Runtime.watch} of
   * the task attaches, every chunk is kept (the guest blocks in its write once `outputBufferBytes` are unread), and
   * from then on the guest is paced to that watcher (it blocks while the watcher is `outputBufferBytes` behind). The
   * hold ends, and the usual retention and drop rules apply, when that watcher stops, or when no watcher attached
   * within `outputHoldMs` of the first held chunk. For a submitter that follows its own task (`vyr run`). Default
   * false: output is never held, a watcher that reads too slowly or attaches late misses bytes (`dropped` events).
   */
  holdOutput?: boolean;
}

/** A snapshot of a task. */
export interface TaskStatus {
  id: string;
  digest: string;
  state: TaskState;
  /** Set on every non-`SUCCEEDED` terminal state. */
  reason?: TaskReason;
  /** Human-readable detail for `reason` (trap message, error text). */
  message?: string;
  /** Exit code when the guest exited (0 on success). */
  exitCode?: number;
  /** Epoch milliseconds. */
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
  /** Linear memory the guest had when it ended, bytes. */
  memoryBytes?: number;
  /** The effective limits. */
  limits: { memoryBytes: number; deadlineMs?: number };
  /** Total bytes the guest wrote to stdout / stderr. */
  stdoutBytes: number;
  stderrBytes: number;
  /**
   * `sha256:<hex>` of everything the guest wrote to stdout / stderr (all of it, also what was not retained or what
   * watchers missed); set once the task has ended, before the `release` hook runs. For execution receipts.
   */
  stdoutDigest?: string;
  stderrDigest?: string;
  /** Output bytes not retained because the retention buffer was full (oldest dropped first). */
  droppedOutputBytes: number;
  /**
   * Output bytes watchers of this task missed, summed over its watchers: the bytes of every `dropped` event
   * {@link Runtime.watch} has yielded for it (a watcher that attached after older output was no longer retained, or
   * that read too slowly). 0 when every watcher got every byte.
   */
  missedOutputBytes: number;
  /** Writes refused by a mount quota (bytes or entries), in the order they happened. */
  quotaExceeded: QuotaRefusal[];
  /** Trace id of the task's trace (hex), when telemetry is recording. */
  traceId?: string;
}

/** An event of {@link Runtime.watch}. */
export type TaskEvent =
  | { type: 'status'; status: TaskStatus }
  | { type: 'stdout'; data: Uint8Array }
  | { type: 'stderr'; data: Uint8Array }
  /**
   * Output this watcher missed at this point of the stream: it read too slowly (its buffer was full), or it attached
   * after older output was no longer retained (then it is the first event).
   */
  | { type: 'dropped'; bytes: number };

/** Options of {@link createRuntime}. */
export interface RuntimeOptions {
  /** Verified artifacts. Required. */
  artifacts: ArtifactSource;
  /** Directory of the prepare cache (transpiled components by digest + jco version). Required. */
  cacheDir: string;
  /** Worker threads, one running task each. Default: 2. */
  poolSize?: number;
  /** Tasks allowed to wait (PENDING + QUEUED) before submit answers `RESOURCE_EXHAUSTED`. Default: 64. */
  maxQueueLength?: number;
  /** Defaults for limits the artifact does not declare. Default: 256 MiB memory, no deadline. */
  defaultLimits?: TaskLimits;
  /** Upper bound on any task's memory limit, bytes. Default: 4 GiB. */
  maxMemoryBytes?: number;
  /** Output kept per task (stdout and stderr together) for `watch` replays and `output()`, bytes; oldest chunks are dropped first. Default: 2 MiB. */
  maxRetainedOutputBytes?: number;
  /** Output a watcher may lag behind before its oldest chunks are dropped, bytes. Default: 4 MiB. */
  maxWatcherBufferBytes?: number;
  /**
   * Guest output (stdout and stderr together) that may be on its way from a worker to the runtime, bytes. A guest
   * that writes faster than the runtime takes its output blocks in its write until the runtime catches up
   * (`check-write` reports the credit left). Default: 1 MiB; at least 4096.
   */
  outputBufferBytes?: number;
  /**
   * How long the output of a `holdOutput` task is held waiting for its first watcher, from the first held chunk,
   * milliseconds; the guest blocks at most this long for want of a reader. Default: 60,000.
   */
  outputHoldMs?: number;
  /** Size of the stdin ring shared with the worker, bytes. Default: 64 KiB. */
  stdinBufferBytes?: number;
  /**
   * Prepared components (compiled core modules, transpiled JS) kept in memory, least recently used dropped first; a
   * dropped one is reloaded from the disk cache on its next task. A worker that has loaded more distinct components
   * than this is replaced when it next becomes idle (loaded JS modules cannot be unloaded). Default: 32.
   */
  maxPreparedArtifacts?: number;
  /**
   * JS heap limit of each worker thread, MiB (`resourceLimits.maxOldGenerationSizeMb`). Guest linear memory is not
   * part of it (see `maxMemoryBytes`); it bounds the WASI host and the transpiled component JS. Default: 256.
   */
  workerHeapMb?: number;
  /** Finished tasks kept for `get`, oldest forgotten first. Default: 1000. */
  maxFinishedTasks?: number;
  /** Node identity for the `vyr.node.id` attribute. Default: `local`. */
  nodeId?: string;
  /** Node tier for the `vyr.node.tier` attribute. Default: `laptop`. */
  tier?: string;
  /** State hooks. Default: none. */
  hooks?: RuntimeHooks;
  /** Logger. Default: silent. */
  logger?: Logger;
  /** Tracer. Default: the global `vyr` tracer. */
  tracer?: Tracer;
  /** Meter. Default: the global `vyr` meter (instruments are created by `createRuntime`). */
  meter?: Meter;
}

/** Counters for health checks and benchmarks. */
export interface RuntimeStats {
  workers: number;
  idleWorkers: number;
  running: number;
  queued: number;
  pending: number;
  workersReplaced: number;
  /** Workers replaced because they had loaded more than `maxPreparedArtifacts` distinct components. */
  workersRecycled: number;
}

/** Options of {@link Runtime.watch}. */
export interface WatchOptions {
  /** Ends the watch early. */
  signal?: AbortSignal;
  /**
   * Status events only: the current status, then each change until the terminal status; no output, and never the
   * primary watcher of a `holdOutput` task (for callers that wait for a state, not for the task's output). Default
   * false.
   */
  statusOnly?: boolean;
}

/** A runtime: runs verified components as isolated, cancellable, observable tasks. */
export interface Runtime {
  /**
   * Verifies the artifact and accepts the task. Resolves with the task in `PENDING` once accepted; the task then
   * runs on its own (use `watch` or `wait`).
   * @throws RuntimeError `INVALID_ARGUMENT`, `NOT_FOUND`, `UNTRUSTED`, `RESOURCE_EXHAUSTED`, `CLOSED`.
   */
  submit(request: SubmitRequest): Promise<TaskStatus>;
  /**
   * Cancels a task. A running task's worker is terminated and replaced. Resolves with the final status
   * (`CANCELLED`, or the terminal state it had already reached).
   * @throws RuntimeError `NOT_FOUND`.
   */
  cancel(taskId: string): Promise<TaskStatus>;
  /** Current status. @throws RuntimeError `NOT_FOUND`. */
  get(taskId: string): TaskStatus;
  /** Resolves with the terminal status. @throws RuntimeError `NOT_FOUND`. */
  wait(taskId: string): Promise<TaskStatus>;
  /**
   * Status changes and output of a task, from its beginning, ending after the terminal status: the current status,
   * then the retained output (preceded by a `dropped` event when older output is no longer retained), then live
   * events; a task that has already ended yields its retained output first and its terminal status last. Stops
   * early when `signal` aborts. The first watcher of a `holdOutput` task gets every byte and paces the guest.
   * @throws RuntimeError `NOT_FOUND`.
   */
  watch(taskId: string, options?: WatchOptions): AsyncIterable<TaskEvent>;
  /** Retained stdout and stderr of a task. @throws RuntimeError `NOT_FOUND`. */
  output(taskId: string): { stdout: Uint8Array; stderr: Uint8Array };
  /** Pool and queue counters. */
  stats(): RuntimeStats;
  /**
   * Starts the warm pool now instead of on first use; resolves when every worker is ready. After workers died at
   * startup five times in a row it rejects with `UNAVAILABLE` (queued tasks then end `FAILED` with
   * `WORKER_CRASHED`); calling it again retries. @throws RuntimeError `UNAVAILABLE`, `CLOSED`.
   */
  warmUp(): Promise<void>;
  /** Cancels every live task (`RUNTIME_CLOSED`), stops the workers. Idempotent. */
  close(): Promise<void>;
}
