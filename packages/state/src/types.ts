import type { Meter, Tracer } from '@opentelemetry/api';
import type { Logger } from '@vyr/telemetry';

/** Access mode of a binding: read-only or read-write. */
export type StateAccess = 'ro' | 'rw';

/** `task`: destroyed when its task is released. `named`: lives until its TTL passes or it is deleted. */
export type StateScope = 'task' | 'named';

/** The one state class of the MVO (ARCHITECTURE.md §4): node-local, on disk under the data directory. */
export type StateClass = 'ephemeral';

/** What a conflicting bind does: wait in FIFO order until the instance is free, or fail with `BINDING_CONFLICT`. */
export type ConflictPolicy = 'wait' | 'refuse';

/** A content digest, `sha256:<64 lowercase hex>` (algorithm: docs/state.md). */
export type StateDigest = `sha256:${string}`;

/**
 * One state slot as an artifact declares it. Structurally the same as `StateSlotDeclaration` of `@vyr/artifact`,
 * so the runtime passes the artifact's `state` array unchanged.
 */
export interface StateSlot {
  /** Slot name, `[a-z0-9][a-z0-9_-]{0,62}`, unique within the artifact. */
  name: string;
  /** Absolute, normalised guest path where the slot is mounted; `/` allowed. */
  mount: string;
  /** Widest access a binding of this slot may have. */
  access: StateAccess;
  /** Byte cap of the slot; absent: the instance's own quota applies. */
  quotaBytes?: number;
}

/** Options of {@link createStateKernel}. */
export interface StateKernelOptions {
  /** Directory holding the registry (`state.db`) and instance contents (`instances/<id>`); created if missing. */
  dataDir: string;
  /** Levelled logger; default: silent. */
  logger?: Logger;
  /** What a bind that conflicts with the single-writer rule does; default `'wait'` (FIFO). */
  conflictPolicy?: ConflictPolicy;
  /** TTL of named instances created without `ttlMs`; default 24 h. `Infinity` means no expiry. */
  defaultTtlMs?: number;
  /** Byte quota of instances created without `quotaBytes`; default 1 GiB. */
  defaultQuotaBytes?: number;
  /** Entry quota of instances created without `quotaEntries`; default 100,000. */
  defaultQuotaEntries?: number;
  /** How long a waiting bind or {@link StateKernel.whenReady} waits before `PENDING_TIMEOUT`; default 300,000 ms. */
  pendingTimeoutMs?: number;
  /** Period of the background TTL sweep; default 60,000 ms; `0` disables it (call {@link StateKernel.sweep}). */
  sweepIntervalMs?: number;
  /**
   * How long a task-scoped instance may wait for its task to run before the sweep destroys it as an orphan;
   * default 900,000 ms (15 min); `Infinity` disables it. An orphan is an unbound task-scoped instance, older than
   * this, whose task is unknown, already ended, or known only from task-scoped creates (never registered with its
   * declared slots, never bound), e.g. created for a task id that was never submitted. Such a task is ended with
   * reason `state_orphaned`.
   */
  orphanGraceMs?: number;
  /** Tracer for `vyr.state.*` spans; default: the global VYR tracer. */
  tracer?: Tracer;
  /** Meter for the `vyr.state.bytes` gauge; default: the global VYR meter. */
  meter?: Meter;
  /** Clock in epoch milliseconds, for TTLs; default `Date.now`. */
  now?: () => number;
}

/** Where to seed a new instance from. */
export type StateSeed =
  /** Copy of a directory tree (regular files, directories, symlinks that stay inside). */
  | { dir: string }
  /** Contents of a `.tar` (optionally gzip-compressed) file. */
  | { tar: string };

/** Arguments of {@link StateKernel.create}. */
export interface CreateStateRequest {
  /** `task` (requires `taskId`) or `named`. */
  scope: StateScope;
  /** Owner task of a task-scoped instance. */
  taskId?: string;
  /** Optional unique label of a named instance, `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`. */
  name?: string;
  /** Lifetime of a named instance from creation; default {@link StateKernelOptions.defaultTtlMs}. */
  ttlMs?: number;
  /** Byte quota (sum of regular-file sizes); default {@link StateKernelOptions.defaultQuotaBytes}. */
  quotaBytes?: number;
  /** Entry quota (files + directories + symlinks); default {@link StateKernelOptions.defaultQuotaEntries}. */
  quotaEntries?: number;
  /** Initial content; default: empty. */
  seed?: StateSeed;
}

/** A current binding of an instance, as listed on {@link StateInstanceInfo}. */
export interface StateBindingInfo {
  taskId: string;
  slot: string;
  access: StateAccess;
}

/** What the kernel knows about one instance. */
export interface StateInstanceInfo {
  /** `st_<26 base32 chars>`. */
  id: string;
  class: StateClass;
  scope: StateScope;
  /** Owner task (task scope only). */
  taskId?: string;
  /** Label (named scope only, optional). */
  name?: string;
  /** Creation time, epoch ms. */
  createdAtMs: number;
  /** Expiry time, epoch ms (named scope with a finite TTL). */
  expiresAtMs?: number;
  quotaBytes: number;
  quotaEntries: number;
  /** Bytes at the last measurement (creation, release or {@link StateKernel.usage}). */
  bytes: number;
  /** Entries at the last measurement. */
  entries: number;
  /** Digest at the last creation/release; absent while a writer holds the instance. */
  digest?: StateDigest;
  /** The last release found the content over a quota, or was told a guest write was refused by one. */
  quotaExceeded: boolean;
  /** Current bindings. */
  bindings: StateBindingInfo[];
  /** Directory holding the content on the node. */
  hostPath: string;
}

/** Arguments of {@link StateKernel.bind}. */
export interface BindRequest {
  /** Instance to bind. */
  instanceId: string;
  /** Task to bind it to. */
  taskId: string;
  /** Declared slot name. */
  slot: string;
  /** Requested access; default: the slot's declared access. */
  access?: StateAccess;
  /**
   * The artifact's declared slots. Required the first time the kernel hears of the task (it registers the task);
   * afterwards optional, and must equal the registered list when given.
   */
  declaredSlots?: readonly StateSlot[];
  /** Wait limit under the `wait` policy; default {@link StateKernelOptions.pendingTimeoutMs}. */
  timeoutMs?: number;
  /** Cancels a waiting bind (`CANCELLED`). */
  signal?: AbortSignal;
  /**
   * Called synchronously, once, when the bind is queued behind a conflicting holder (`wait` policy): the caller may
   * answer "accepted, waiting" at once while the returned promise settles later (granted, or `PENDING_TIMEOUT`,
   * `CANCELLED`, `TASK_TERMINATED`, `CLOSED`). Not called for a bind granted or refused at once.
   */
  onQueued?: () => void;
}

/**
 * A granted binding: what the runtime hands to the task's WASI host as one preopen. The first four fields are the
 * runtime's mount contract; the rest are informative.
 */
export interface StateMount {
  /** Absolute guest path (the slot's declared mount). */
  guestPath: string;
  /** Host directory of the instance. */
  hostPath: string;
  /** True for `ro` bindings: the WASI host must refuse every write. */
  readOnly: boolean;
  /**
   * Cap on the total size of regular files under `hostPath` (not an increment): min(instance quota, slot quota).
   * A write that would take the total past it must fail in the guest with WASI `no-space` (ENOSPC).
   */
  quotaBytes: number;
  /** Cap on the number of entries under `hostPath`. */
  quotaEntries: number;
  /** Bytes already used when the binding was granted (the WASI host's starting charge). */
  usedBytes: number;
  /** Entries already used when the binding was granted. */
  usedEntries: number;
  instanceId: string;
  taskId: string;
  slot: string;
  access: StateAccess;
  /**
   * The instance's content digest when the binding was granted (the digest recorded at its creation or last
   * release), for execution receipts; absent when the kernel had no measurement.
   */
  digestBefore?: StateDigest;
}

/** The outcome of releasing one instance at task end. */
export interface StateRelease {
  instanceId: string;
  /** Slot it was bound to (absent for a task-scoped instance that was never bound). */
  slot?: string;
  access?: StateAccess;
  scope: StateScope;
  /** Content digest at release (absent only if the content could not be read; see `error`). */
  digest?: StateDigest;
  /** Sum of regular-file sizes. */
  bytes: number;
  /** Files + directories + symlinks. */
  entries: number;
  /**
   * The binding's byte or entry quota was hit: the content was over it at release, or the runtime reported a guest
   * write or create it refused (`releaseTask`'s `quotaRefusedSlots`). Recorded on the instance.
   */
  quotaExceeded: boolean;
  /** The instance was task-scoped and has been destroyed. */
  destroyed: boolean;
  /** Set when measuring failed (`IO_ERROR` message); the binding is released regardless. */
  error?: string;
}

/** Result of {@link StateKernel.releaseTask}. */
export interface TaskReleaseReport {
  taskId: string;
  /** One entry per binding, then per unbound task-scoped instance, ordered by slot then instance id. */
  releases: StateRelease[];
  /** The task had already been released; nothing was done. */
  alreadyReleased: boolean;
}

/** Live usage of an instance. */
export interface StateUsage {
  bytes: number;
  entries: number;
  quotaBytes: number;
  quotaEntries: number;
}

/** Arguments of {@link StateKernel.export}. */
export interface ExportRequest {
  instanceId: string;
  /** Destination: a directory that must not exist yet (or be empty), or a file path for `tar`. */
  out: string;
  /** `dir` or `tar`; default: `tar` when `out` ends in `.tar`, else `dir`. */
  format?: 'dir' | 'tar';
}

/** Result of {@link StateKernel.export}. */
export interface ExportResult {
  out: string;
  format: 'dir' | 'tar';
  digest: StateDigest;
  bytes: number;
  entries: number;
}

/** A task that was live when the previous node process died (see {@link RecoveryReport.failedTasks}). */
export interface RestartedTask {
  taskId: string;
  /** The artifact it ran, when it was registered with one (`registerTask(…, { artifactDigest })`). */
  artifactDigest?: string;
  /** When the kernel first heard of the task, epoch ms. */
  createdAtMs: number;
}

/** Result of {@link StateKernel.recover}. */
export interface RecoveryReport {
  /** Tasks that were live when the previous process died; record them as `FAILED(node_restart)`. */
  failedTaskIds: string[];
  /** The same tasks with what the registry kept about them (artifact digest, registration time), by task id. */
  failedTasks: RestartedTask[];
  /** Task-scoped instances deleted because their task died with the node. */
  deletedInstanceIds: string[];
  /** Named instances whose writer died mid-task; kept with their last content, digest re-measured. */
  interruptedInstanceIds: string[];
  /** Leftover directories (crashed creates/deletes) removed. */
  removedOrphans: number;
}

/** Result of {@link StateKernel.sweep}. */
export interface SweepReport {
  /** Named instances deleted because their TTL passed. */
  expiredInstanceIds: string[];
  /** Task-scoped instances destroyed as orphans (see {@link StateKernelOptions.orphanGraceMs}). */
  orphanedInstanceIds: string[];
}

/** The readiness of a task's declared slots. */
export interface TaskBindingStatus {
  taskId: string;
  state: 'active' | 'ended';
  /** Declared slots with a granted binding. */
  mounts: StateMount[];
  /** Declared slots without a granted binding (possibly waiting). */
  missingSlots: string[];
  /** Slots whose bind is queued behind another holder. */
  waitingSlots: string[];
}
