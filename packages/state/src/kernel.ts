import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { extname, isAbsolute, join, posix, resolve } from 'node:path';
import type { Attributes, ObservableGauge, ObservableResult, Span } from '@opentelemetry/api';
import { Attr, type Logger, MetricNames, SpanNames, silentLogger, vyrMeter, vyrTracer, withSpan } from '@vyr/telemetry';
import { asStateError, StateError } from './errors.js';
import { exportDir, exportTar } from './export.js';
import { type BindingRow, type InstanceRow, Registry, type RestartedTaskRow, type TaskRow } from './registry.js';
import { seedFromDir, seedFromTar } from './seed.js';
import { digestTree, walkTree } from './tree.js';
import type {
  BindRequest,
  ConflictPolicy,
  CreateStateRequest,
  ExportRequest,
  ExportResult,
  RecoveryReport,
  StateAccess,
  StateInstanceInfo,
  StateKernelOptions,
  StateMount,
  StateRelease,
  StateScope,
  StateSlot,
  StateUsage,
  SweepReport,
  TaskBindingStatus,
  TaskReleaseReport,
} from './types.js';

/**
 * The state kernel of one node (ARCHITECTURE.md §4). Obtain it with {@link createStateKernel}; see the package
 * documentation (index.ts) for how the runtime drives it.
 */
export interface StateKernel {
  /** The data directory (absolute). */
  readonly dataDir: string;
  /**
   * Finishes crash recovery and reports it. The registry part already ran when the kernel was created (tasks that
   * were live are ended `node_restart`, bindings dropped, task-scoped instances unregistered); this removes their
   * directories and leftovers of interrupted creates/deletes, and re-measures named instances whose writer died.
   * Call once at node start, before accepting tasks; later calls return the same report.
   */
  recover(): Promise<RecoveryReport>;
  /**
   * Creates an `ephemeral` instance, optionally seeded. Errors: `INVALID_ARGUMENT`, `TASK_TERMINATED` (task scope),
   * `ALREADY_EXISTS` (name), `QUOTA_EXCEEDED` / `UNSAFE_SEED_ENTRY` (seed), `IO_ERROR`.
   */
  create(request: CreateStateRequest): Promise<StateInstanceInfo>;
  /** One instance. `NOT_FOUND` if unknown, deleted or expired. */
  get(instanceId: string): StateInstanceInfo;
  /** All live instances, by creation time then id; optionally only one scope or one owner task. */
  list(filter?: { scope?: StateScope; taskId?: string }): StateInstanceInfo[];
  /** Measures the instance now (walks it; no hashing). */
  usage(instanceId: string): Promise<StateUsage>;
  /**
   * Registers a task (state PENDING from the kernel's point of view) with its artifact's declared slots. Idempotent
   * for the same slots; `INVALID_ARGUMENT` for different ones (or a different `artifactDigest`); `TASK_TERMINATED`
   * once released. Optional: `bind` with `declaredSlots` registers too. Registering every task lets
   * {@link StateKernel.recover} report it after a crash, with `options.artifactDigest` (the artifact it runs, stored
   * with the task; given on a later call when the first did not) so the restarted node can still say what it ran.
   */
  registerTask(taskId: string, declaredSlots: readonly StateSlot[], options?: { artifactDigest?: string }): void;
  /**
   * Binds an instance to a declared slot of a task and resolves with the mount for the task's WASI host. Under the
   * `wait` policy a conflicting bind queues (FIFO) until the holders release; under `refuse` it fails at once.
   * Errors: `NOT_FOUND`, `TASK_TERMINATED`, `UNDECLARED_SLOT`, `ACCESS_WIDER_THAN_DECLARED`, `SCOPE_MISMATCH`,
   * `SLOT_ALREADY_BOUND`, `BINDING_CONFLICT`, `PENDING_TIMEOUT`, `CANCELLED`, `INVALID_ARGUMENT`.
   */
  bind(request: BindRequest): Promise<StateMount>;
  /** Which declared slots of a task are bound, missing, or waiting. */
  taskStatus(taskId: string, declaredSlots?: readonly StateSlot[]): TaskBindingStatus;
  /** True when every declared slot of the task has a granted binding (the task may leave PENDING). */
  isReady(taskId: string, declaredSlots?: readonly StateSlot[]): boolean;
  /**
   * Resolves with the task's mounts once every declared slot is bound. Rejects with `PENDING_TIMEOUT` after
   * `timeoutMs` (default {@link StateKernelOptions.pendingTimeoutMs}), `TASK_TERMINATED` if the task is released,
   * `CANCELLED` on abort.
   */
  whenReady(
    taskId: string,
    options?: { declaredSlots?: readonly StateSlot[]; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<StateMount[]>;
  /** The task's granted mounts, by slot name. */
  mounts(taskId: string): StateMount[];
  /**
   * Ends the task in the kernel, whatever its outcome: cancels its waiting binds, releases each binding after
   * computing the content digest, destroys its task-scoped instances (after recording their digest) and unblocks
   * waiters. Call after the guest can no longer write. Idempotent; an unknown task is recorded as ended.
   * `options.quotaRefusedSlots` names the slots whose WASI host refused a guest write or create past the binding's
   * quota: their releases (and instances) record `quotaExceeded` even though the content is within the quota.
   */
  releaseTask(
    taskId: string,
    options?: { reason?: string; quotaRefusedSlots?: readonly string[] },
  ): Promise<TaskReleaseReport>;
  /** Exports the content to a directory or a deterministic tar. `INSTANCE_IN_USE` while a writer holds it. */
  export(request: ExportRequest): Promise<ExportResult>;
  /** Deletes an unbound instance. `INSTANCE_IN_USE` while bound, queued for, or exported. */
  delete(instanceId: string): Promise<void>;
  /**
   * Deletes expired, unbound named instances, destroys orphaned task-scoped instances (see
   * {@link StateKernelOptions.orphanGraceMs}) and removes leftover directories; returns the ids. Runs every
   * `sweepIntervalMs` in the background.
   */
  sweep(): Promise<SweepReport>;
  /** Stops the sweep, fails waiters with `CLOSED`, closes the registry and frees the data directory. */
  close(): Promise<void>;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const DEFAULTS = {
  conflictPolicy: 'wait' as ConflictPolicy,
  defaultTtlMs: DAY_MS,
  defaultQuotaBytes: 1024 ** 3,
  defaultQuotaEntries: 100_000,
  pendingTimeoutMs: 300_000,
  sweepIntervalMs: 60_000,
  orphanGraceMs: 15 * 60_000,
  /** Ended tasks are remembered (to refuse late binds with TASK_TERMINATED) for this long. */
  endedTaskRetentionMs: 7 * DAY_MS,
};

/** Task end reason recorded by recovery. */
export const NODE_RESTART_REASON = 'node_restart';
/** Task end reason recorded when the sweep destroys the task-scoped instances of a task that never ran. */
export const ORPHANED_REASON = 'state_orphaned';

/** Attribute keys not (yet) in @vyr/telemetry's Attr table; local on purpose (telemetry is owned elsewhere). */
const ATTR_STATE_SCOPE = 'vyr.state.scope';
const ATTR_STATE_ENTRIES = 'vyr.state.entries';
const ATTR_STATE_QUOTA_EXCEEDED = 'vyr.state.quota_exceeded';

const ID_RE = /^st_[a-z2-7]{26}$/;
const SLOT_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const INSTANCE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

function newInstanceId(): string {
  const bytes = randomBytes(26);
  let id = 'st_';
  for (const b of bytes) id += BASE32[b & 31];
  return id;
}

interface Holder {
  taskId: string;
  slot: string;
  access: StateAccess;
  mount: StateMount;
}

interface Waiter {
  taskId: string;
  slot: string;
  access: StateAccess;
  grant(): void;
  fail(err: StateError): void;
}

interface LiveInstance {
  row: InstanceRow;
  holders: Holder[];
  queue: Waiter[];
  exporters: number;
}

interface ReadyWaiter {
  check(): void;
  fail(err: StateError): void;
}

interface LiveTask {
  row: TaskRow;
  bound: Map<string, Holder>;
  waiting: Map<string, Waiter>;
  readyWaiters: Set<ReadyWaiter>;
  release?: Promise<TaskReleaseReport>;
}

/** Data directories opened by a kernel in this process (the lock file cannot tell two of ours apart). */
const openDataDirs = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The start time of process `pid` (field 22 of `/proc/PID/stat`, clock ticks since boot), or undefined where /proc
 * is unavailable. With the pid it names one process for good: a pid reused later has another start time.
 */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // `pid (comm) state ppid …`: comm may hold spaces and ')', so count fields from the last ')'; the field after
    // it is field 3, hence field 22 is the 20th.
    const start = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')[19]
      ?.trim();
    return start && /^\d+$/.test(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes `dataDir/kernel.lock`, holding `PID START` (START: {@link processStartTime}; omitted without /proc). A lock
 * left by a dead process is taken over, and so is one whose pid now belongs to another process (its start time
 * differs). A lock without a start time, or a holder whose start time cannot be read, falls back to the pid alone.
 */
function acquireLock(dataDir: string, logger: Logger): string {
  const path = join(dataDir, 'kernel.lock');
  if (openDataDirs.has(dataDir)) {
    throw new StateError(
      'DATA_DIR_LOCKED',
      `data directory ${dataDir} is already open in this process; close it first`,
    );
  }
  const myStart = processStartTime(process.pid);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, myStart === undefined ? `${process.pid}\n` : `${process.pid} ${myStart}\n`);
      fsyncSync(fd);
      closeSync(fd);
      openDataDirs.add(dataDir);
      return path;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw asStateError(err, `cannot lock ${dataDir}`);
    }
    let holder = 0;
    let holderStart: string | undefined;
    try {
      const [pidText, startText] = readFileSync(path, 'utf8').trim().split(/\s+/);
      holder = Number.parseInt(pidText ?? '', 10);
      holderStart = startText;
    } catch {
      // Vanished or unreadable: try again.
    }
    if (holder > 0 && holder !== process.pid && pidAlive(holder)) {
      const startNow = holderStart === undefined ? undefined : processStartTime(holder);
      if (startNow === undefined || startNow === holderStart) {
        throw new StateError(
          'DATA_DIR_LOCKED',
          `data directory ${dataDir} is in use by process ${holder}; stop it or use another --data-dir`,
        );
      }
      logger.warn('taking over a stale state lock: its pid now belongs to another process', {
        path,
        pid: holder,
        lockedStart: holderStart,
        currentStart: startNow,
      });
    }
    try {
      unlinkSync(path);
    } catch {
      // Someone else removed it first.
    }
  }
  throw new StateError('DATA_DIR_LOCKED', `could not take the lock ${path}; retry`);
}

function invalid(message: string): StateError {
  return new StateError('INVALID_ARGUMENT', message);
}

function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
}

function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || taskId.length === 0 || taskId.length > 256 || hasControlChar(taskId)) {
    throw invalid(`task id ${JSON.stringify(taskId)} is invalid: use 1-256 printable characters`);
  }
  return taskId;
}

function checkQuota(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw invalid(`${what} ${String(value)} is invalid: use a positive integer`);
  }
  return value;
}

function checkMountPath(mount: unknown, slot: string): string {
  if (
    typeof mount !== 'string' ||
    !mount.startsWith('/') ||
    mount.includes('\0') ||
    (mount !== '/' && (mount.endsWith('/') || posix.normalize(mount) !== mount))
  ) {
    throw invalid(
      `slot '${slot}' mount ${JSON.stringify(mount)} is invalid: use a normalised absolute path such as /data or /`,
    );
  }
  return mount;
}

/** Validates an artifact's slot list and returns a normalised copy (sorted by name). */
function checkSlots(slots: unknown): StateSlot[] {
  if (!Array.isArray(slots)) throw invalid('declaredSlots must be an array of { name, mount, access, quotaBytes? }');
  const names = new Set<string>();
  const mounts = new Set<string>();
  const out: StateSlot[] = [];
  for (const s of slots as StateSlot[]) {
    if (typeof s?.name !== 'string' || !SLOT_NAME_RE.test(s.name)) {
      throw invalid(`slot name ${JSON.stringify(s?.name)} is invalid: use [a-z0-9][a-z0-9_-]{0,62}`);
    }
    if (names.has(s.name)) throw invalid(`slot '${s.name}' is declared twice`);
    const mount = checkMountPath(s.mount, s.name);
    if (mounts.has(mount)) throw invalid(`two slots are mounted at ${mount}`);
    if (s.access !== 'ro' && s.access !== 'rw') throw invalid(`slot '${s.name}' access must be 'ro' or 'rw'`);
    const quotaBytes = checkQuota(s.quotaBytes, `slot '${s.name}' quotaBytes`);
    names.add(s.name);
    mounts.add(mount);
    out.push(quotaBytes === undefined ? { name: s.name, mount, access: s.access } : { ...s, mount, quotaBytes });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function sameSlots(a: readonly StateSlot[], b: readonly StateSlot[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function compatible(inst: LiveInstance, access: StateAccess): boolean {
  if (access === 'rw') return inst.holders.length === 0 && inst.exporters === 0;
  return !inst.holders.some((h) => h.access === 'rw');
}

/** Nobody holds the instance, waits for it, or exports it. */
function idle(inst: LiveInstance): boolean {
  return inst.holders.length === 0 && inst.queue.length === 0 && inst.exporters === 0;
}

function byName<T extends { slot: string }>(a: T, b: T): number {
  return a.slot < b.slot ? -1 : a.slot > b.slot ? 1 : 0;
}

/**
 * Opens (creating if needed) the state kernel over `options.dataDir`. Takes the directory's lock, opens the
 * registry and runs the registry part of crash recovery; call {@link StateKernel.recover} next. Throws
 * `DATA_DIR_LOCKED` if another live process holds the directory.
 */
export function createStateKernel(options: StateKernelOptions): StateKernel {
  if (typeof options?.dataDir !== 'string' || options.dataDir === '') {
    throw invalid('dataDir is required');
  }
  const dataDir = resolve(options.dataDir);
  const conflictPolicy = options.conflictPolicy ?? DEFAULTS.conflictPolicy;
  if (conflictPolicy !== 'wait' && conflictPolicy !== 'refuse') {
    throw invalid(`conflictPolicy ${JSON.stringify(conflictPolicy)} is invalid: use 'wait' or 'refuse'`);
  }
  const defaultTtlMs = options.defaultTtlMs ?? DEFAULTS.defaultTtlMs;
  if (!(defaultTtlMs > 0)) throw invalid(`defaultTtlMs ${defaultTtlMs} is invalid: use a positive number or Infinity`);
  const orphanGraceMs = options.orphanGraceMs ?? DEFAULTS.orphanGraceMs;
  if (typeof orphanGraceMs !== 'number' || !(orphanGraceMs > 0)) {
    throw invalid(`orphanGraceMs ${String(orphanGraceMs)} is invalid: use a positive number or Infinity`);
  }
  const config = {
    dataDir,
    conflictPolicy,
    defaultTtlMs,
    defaultQuotaBytes: checkQuota(options.defaultQuotaBytes, 'defaultQuotaBytes') ?? DEFAULTS.defaultQuotaBytes,
    defaultQuotaEntries: checkQuota(options.defaultQuotaEntries, 'defaultQuotaEntries') ?? DEFAULTS.defaultQuotaEntries,
    pendingTimeoutMs: checkQuota(options.pendingTimeoutMs, 'pendingTimeoutMs') ?? DEFAULTS.pendingTimeoutMs,
    sweepIntervalMs: options.sweepIntervalMs ?? DEFAULTS.sweepIntervalMs,
    orphanGraceMs,
    logger: options.logger ?? silentLogger,
    tracer: options.tracer ?? vyrTracer(),
    meter: options.meter ?? vyrMeter(),
    now: options.now ?? Date.now,
  };
  try {
    mkdirSync(join(dataDir, 'instances'), { recursive: true });
    mkdirSync(join(dataDir, 'tmp'), { recursive: true });
  } catch (err) {
    throw asStateError(err, `cannot create data directory ${dataDir}`);
  }
  const lockPath = acquireLock(dataDir, config.logger);
  let registry: Registry;
  try {
    registry = new Registry(join(dataDir, 'state.db'));
  } catch (err) {
    unlinkSync(lockPath);
    openDataDirs.delete(dataDir);
    throw asStateError(err, `cannot open the state registry in ${dataDir}`);
  }
  try {
    return new Kernel(config, registry, lockPath);
  } catch (err) {
    registry.close();
    unlinkSync(lockPath);
    openDataDirs.delete(dataDir);
    throw asStateError(err, `cannot recover the state registry in ${dataDir}`);
  }
}

type Config = {
  dataDir: string;
  conflictPolicy: ConflictPolicy;
  defaultTtlMs: number;
  defaultQuotaBytes: number;
  defaultQuotaEntries: number;
  pendingTimeoutMs: number;
  sweepIntervalMs: number;
  orphanGraceMs: number;
  logger: Logger;
  tracer: StateKernelOptions['tracer'] & {};
  meter: StateKernelOptions['meter'] & {};
  now: () => number;
};

class Kernel implements StateKernel {
  readonly dataDir: string;
  readonly #c: Config;
  readonly #registry: Registry;
  readonly #lockPath: string;
  readonly #instances = new Map<string, LiveInstance>();
  readonly #tasks = new Map<string, LiveTask>();
  /** Ids being created (staging or just renamed): never orphans. */
  readonly #creating = new Set<string>();
  /** Names reserved by creates in progress. */
  readonly #pendingNames = new Set<string>();
  readonly #gauge: ObservableGauge;
  readonly #observe = (result: ObservableResult<Attributes>) => this.#observeBytes(result);
  readonly #sweepTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #recovered: Promise<RecoveryReport> | undefined;
  readonly #pendingRecovery: {
    failedTasks: RestartedTaskRow[];
    droppedTaskScoped: string[];
    interruptedWriters: string[];
  };

  constructor(config: Config, registry: Registry, lockPath: string) {
    this.#c = config;
    this.dataDir = config.dataDir;
    this.#registry = registry;
    this.#lockPath = lockPath;
    // Registry part of recovery: no binding or task survives a restart.
    this.#pendingRecovery = registry.recoverAfterRestart(config.now(), NODE_RESTART_REASON);
    for (const row of registry.instances()) this.#instances.set(row.id, { row, holders: [], queue: [], exporters: 0 });
    for (const row of registry.tasks()) this.#tasks.set(row.taskId, this.#newTask(row));
    this.#gauge = config.meter.createObservableGauge(MetricNames.stateBytes, {
      unit: 'By',
      description: 'Bytes held by state instances on this node, by scope (last measurement).',
    });
    this.#gauge.addCallback(this.#observe);
    if (config.sweepIntervalMs > 0) {
      this.#sweepTimer = setInterval(() => {
        this.sweep().catch((err) =>
          config.logger.error('state sweep failed', { error: (err as Error).message, code: (err as StateError).code }),
        );
      }, config.sweepIntervalMs);
      this.#sweepTimer.unref();
    }
  }

  #newTask(row: TaskRow): LiveTask {
    return { row, bound: new Map(), waiting: new Map(), readyWaiters: new Set() };
  }

  #observeBytes(result: ObservableResult<Attributes>): void {
    const sums: Record<StateScope, number> = { task: 0, named: 0 };
    for (const inst of this.#instances.values()) sums[inst.row.scope] += inst.row.bytes;
    result.observe(sums.named, { [ATTR_STATE_SCOPE]: 'named' });
    result.observe(sums.task, { [ATTR_STATE_SCOPE]: 'task' });
  }

  #ensureOpen(): void {
    if (this.#closed) throw new StateError('CLOSED', 'the state kernel is closed');
  }

  #hostPath(id: string): string {
    return join(this.dataDir, 'instances', id);
  }

  /** The registered instance with this id, expired or not. */
  #lookup(instanceId: unknown): LiveInstance | undefined {
    return typeof instanceId === 'string' && ID_RE.test(instanceId) ? this.#instances.get(instanceId) : undefined;
  }

  /** A live instance; expired ones count as gone unless still bound. */
  #live(instanceId: unknown): LiveInstance {
    const inst = this.#lookup(instanceId);
    if (!inst) {
      throw new StateError(
        'NOT_FOUND',
        `no state instance ${JSON.stringify(instanceId)}; list instances with 'vyr state ls'`,
      );
    }
    const exp = inst.row.expiresAtMs;
    if (exp !== undefined && exp <= this.#c.now() && inst.holders.length === 0) {
      throw new StateError(
        'NOT_FOUND',
        `state instance ${inst.row.id} expired at ${new Date(exp).toISOString()}; create a new one`,
      );
    }
    return inst;
  }

  #info(inst: LiveInstance): StateInstanceInfo {
    const r = inst.row;
    const info: StateInstanceInfo = {
      id: r.id,
      class: 'ephemeral',
      scope: r.scope,
      createdAtMs: r.createdAtMs,
      quotaBytes: r.quotaBytes,
      quotaEntries: r.quotaEntries,
      bytes: r.bytes,
      entries: r.entries,
      quotaExceeded: r.quotaExceeded,
      bindings: inst.holders
        .map((h) => ({ taskId: h.taskId, slot: h.slot, access: h.access }))
        .sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : byName(a, b))),
      hostPath: this.#hostPath(r.id),
    };
    if (r.taskId !== undefined) info.taskId = r.taskId;
    if (r.name !== undefined) info.name = r.name;
    if (r.expiresAtMs !== undefined) info.expiresAtMs = r.expiresAtMs;
    if (r.digest !== undefined) info.digest = r.digest;
    return info;
  }

  /** The task record, registering it when unknown and slots are given. */
  #task(
    taskId: string,
    declaredSlots: readonly StateSlot[] | undefined,
    register: boolean,
    artifactDigest?: string,
  ): LiveTask {
    const slots = declaredSlots === undefined ? undefined : checkSlots(declaredSlots);
    let task = this.#tasks.get(taskId);
    if (task && (task.row.state === 'ended' || task.release)) {
      throw new StateError(
        'TASK_TERMINATED',
        `task ${taskId} has ended${task.row.reason ? ` (${task.row.reason})` : ''}; submit a new task`,
      );
    }
    if (!task) {
      if (!register) {
        throw new StateError('NOT_FOUND', `no task ${taskId} is known to the state kernel; pass its declaredSlots`);
      }
      const row: TaskRow = { taskId, state: 'active', slots, createdAtMs: this.#c.now() };
      if (artifactDigest !== undefined) row.artifactDigest = artifactDigest;
      this.#registry.upsertTask(row);
      task = this.#newTask(row);
      this.#tasks.set(taskId, task);
      return task;
    }
    if (slots !== undefined) {
      if (task.row.slots === undefined) {
        task.row = { ...task.row, slots };
        this.#registry.upsertTask(task.row);
      } else if (!sameSlots(task.row.slots, slots)) {
        throw invalid(`task ${taskId} was registered with different declared slots`);
      }
    }
    if (artifactDigest !== undefined && task.row.artifactDigest !== artifactDigest) {
      if (task.row.artifactDigest !== undefined) {
        throw invalid(`task ${taskId} was registered for artifact ${task.row.artifactDigest}, not ${artifactDigest}`);
      }
      task.row = { ...task.row, artifactDigest };
      this.#registry.upsertTask(task.row);
    }
    return task;
  }

  recover(): Promise<RecoveryReport> {
    this.#recovered ??= this.#doRecover();
    return this.#recovered;
  }

  async #doRecover(): Promise<RecoveryReport> {
    this.#ensureOpen();
    const { failedTasks, droppedTaskScoped, interruptedWriters } = this.#pendingRecovery;
    const failedTaskIds = failedTasks.map((t) => t.taskId);
    for (const id of droppedTaskScoped) await this.#destroyDir(id);
    const removedOrphans = await this.#removeOrphans();
    const interruptedInstanceIds: string[] = [];
    for (const id of interruptedWriters) {
      const inst = this.#instances.get(id);
      if (!inst) continue;
      interruptedInstanceIds.push(id);
      try {
        const s = await digestTree(this.#hostPath(id));
        const exceeded = s.bytes > inst.row.quotaBytes || s.entries > inst.row.quotaEntries;
        inst.row = { ...inst.row, bytes: s.bytes, entries: s.entries, digest: s.digest, quotaExceeded: exceeded };
        this.#registry.updateMeasure(id, s.bytes, s.entries, s.digest, exceeded);
      } catch (err) {
        this.#c.logger.error('cannot re-measure state instance after restart', { instanceId: id, error: String(err) });
      }
    }
    const report: RecoveryReport = {
      failedTaskIds: failedTaskIds.sort(),
      failedTasks: failedTasks
        .map((t) => ({
          taskId: t.taskId,
          createdAtMs: t.createdAtMs,
          ...(t.artifactDigest !== undefined ? { artifactDigest: t.artifactDigest } : {}),
        }))
        .sort((a, b) => (a.taskId < b.taskId ? -1 : a.taskId > b.taskId ? 1 : 0)),
      deletedInstanceIds: [...droppedTaskScoped].sort(),
      interruptedInstanceIds: interruptedInstanceIds.sort(),
      removedOrphans,
    };
    if (failedTaskIds.length > 0 || droppedTaskScoped.length > 0 || removedOrphans > 0) {
      this.#c.logger.warn('state kernel recovered after an unclean stop', {
        failedTaskIds: report.failedTaskIds,
        deletedInstanceIds: report.deletedInstanceIds,
        interruptedInstanceIds: report.interruptedInstanceIds,
        removedOrphans,
      });
    }
    return report;
  }

  /** Removes instance directories without a registry row and staging/trash leftovers. */
  async #removeOrphans(): Promise<number> {
    let removed = 0;
    for (const sub of ['instances', 'tmp']) {
      const dir = join(this.dataDir, sub);
      for (const name of await readdir(dir)) {
        if (this.#creating.has(name) || (sub === 'instances' && this.#instances.has(name))) continue;
        if (sub === 'tmp' && name.startsWith('trash-')) continue; // being removed by #destroyDir
        await rm(join(dir, name), { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }

  /**
   * Removes a failed create's staging directory. Never throws: the create's own error is what the caller needs.
   * `maxRetries` rides out ENOTEMPTY/EBUSY from a writer that is still finishing; what is left is logged and removed
   * by the next sweep (a `tmp/` entry of no create in progress is an orphan).
   */
  async #removeStaging(staging: string): Promise<void> {
    await rm(staging, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 }).catch((err: unknown) => {
      this.#c.logger.warn('cannot remove the staging directory of a failed create; the sweep will retry', {
        path: staging,
        error: (err as Error).message,
      });
    });
  }

  /** Moves an instance directory out of `instances/` (atomic), then removes it. */
  async #destroyDir(id: string): Promise<void> {
    const trash = join(this.dataDir, 'tmp', `trash-${id}-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(this.#hostPath(id), trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw asStateError(err, `cannot remove state instance ${id}`);
    }
    await rm(trash, { recursive: true, force: true });
  }

  async create(request: CreateStateRequest): Promise<StateInstanceInfo> {
    this.#ensureOpen();
    const req = request ?? ({} as CreateStateRequest);
    if (req.scope !== 'task' && req.scope !== 'named') throw invalid(`scope must be 'task' or 'named'`);
    const quotaBytes = checkQuota(req.quotaBytes, 'quotaBytes') ?? this.#c.defaultQuotaBytes;
    const quotaEntries = checkQuota(req.quotaEntries, 'quotaEntries') ?? this.#c.defaultQuotaEntries;
    let taskId: string | undefined;
    let expiresAtMs: number | undefined;
    const createdAtMs = this.#c.now();
    if (req.scope === 'task') {
      taskId = checkTaskId(req.taskId);
      if (req.name !== undefined) throw invalid('a task-scoped instance has no name');
      if (req.ttlMs !== undefined) throw invalid('a task-scoped instance lives as long as its task; omit ttlMs');
      this.#task(taskId, undefined, true);
    } else {
      if (req.taskId !== undefined) throw invalid(`a named instance has no owner task; use scope 'task'`);
      const ttlMs = req.ttlMs ?? this.#c.defaultTtlMs;
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) throw invalid(`ttlMs ${String(ttlMs)} must be positive`);
      if (Number.isFinite(ttlMs)) expiresAtMs = createdAtMs + ttlMs;
      if (req.name !== undefined) {
        if (typeof req.name !== 'string' || !INSTANCE_NAME_RE.test(req.name)) {
          throw invalid(`name ${JSON.stringify(req.name)} is invalid: use [A-Za-z0-9][A-Za-z0-9._-]{0,127}`);
        }
        if (this.#pendingNames.has(req.name) || [...this.#instances.values()].some((i) => i.row.name === req.name)) {
          throw new StateError('ALREADY_EXISTS', `a state instance named '${req.name}' exists; pick another name`);
        }
      }
    }
    const seed = req.seed;
    if (seed !== undefined) {
      const ok =
        (typeof (seed as { dir?: unknown }).dir === 'string') !== (typeof (seed as { tar?: unknown }).tar === 'string');
      if (!ok) throw invalid('seed must be { dir: string } or { tar: string }');
    }
    const id = newInstanceId();
    this.#creating.add(id);
    if (req.name !== undefined) this.#pendingNames.add(req.name);
    const attributes: Attributes = { [Attr.stateId]: id };
    if (taskId !== undefined) attributes[Attr.taskId] = taskId;
    try {
      return await withSpan(SpanNames.stateCreate, { attributes, tracer: this.#c.tracer }, async (span) => {
        const staging = join(this.dataDir, 'tmp', id);
        let summary: Awaited<ReturnType<typeof digestTree>>;
        try {
          await mkdir(staging, { mode: 0o755 });
          const limits = { quotaBytes, quotaEntries };
          if (seed && 'dir' in seed) await seedFromDir(resolve(seed.dir), staging, limits);
          else if (seed && 'tar' in seed) await seedFromTar(resolve(seed.tar), staging, limits);
          summary = await digestTree(staging);
          await rename(staging, this.#hostPath(id));
        } catch (err) {
          await this.#removeStaging(staging);
          throw asStateError(err, `cannot create state instance`);
        }
        try {
          // Checked synchronously right before registering: the owner task may have ended while we seeded.
          this.#ensureOpen();
          if (taskId !== undefined) this.#task(taskId, undefined, true);
        } catch (err) {
          await this.#destroyDir(id);
          throw err;
        }
        const row: InstanceRow = {
          id,
          scope: req.scope,
          taskId,
          name: req.name,
          createdAtMs,
          expiresAtMs,
          quotaBytes,
          quotaEntries,
          bytes: summary.bytes,
          entries: summary.entries,
          digest: summary.digest,
          quotaExceeded: false,
        };
        try {
          this.#registry.insertInstance(row);
        } catch (err) {
          await this.#destroyDir(id);
          throw asStateError(err, `cannot register state instance ${id}`);
        }
        const inst: LiveInstance = { row, holders: [], queue: [], exporters: 0 };
        this.#instances.set(id, inst);
        span.setAttributes({ [Attr.stateDigest]: summary.digest, [Attr.stateBytes]: summary.bytes });
        this.#c.logger.debug('state instance created', { instanceId: id, scope: req.scope, bytes: summary.bytes });
        return this.#info(inst);
      });
    } finally {
      this.#creating.delete(id);
      if (req.name !== undefined) this.#pendingNames.delete(req.name);
    }
  }

  get(instanceId: string): StateInstanceInfo {
    this.#ensureOpen();
    return this.#info(this.#live(instanceId));
  }

  list(filter?: { scope?: StateScope; taskId?: string }): StateInstanceInfo[] {
    this.#ensureOpen();
    const now = this.#c.now();
    return [...this.#instances.values()]
      .filter((i) => i.row.expiresAtMs === undefined || i.row.expiresAtMs > now || i.holders.length > 0)
      .filter((i) => filter?.scope === undefined || i.row.scope === filter.scope)
      .filter((i) => filter?.taskId === undefined || i.row.taskId === filter.taskId)
      .sort((a, b) => a.row.createdAtMs - b.row.createdAtMs || (a.row.id < b.row.id ? -1 : 1))
      .map((i) => this.#info(i));
  }

  async usage(instanceId: string): Promise<StateUsage> {
    this.#ensureOpen();
    const inst = this.#live(instanceId);
    const { entries } = await walkTree(this.#hostPath(inst.row.id)).catch((err) => {
      throw asStateError(err, `cannot measure state instance ${inst.row.id}`);
    });
    let bytes = 0;
    for (const e of entries) if (e.type === 'f') bytes += e.size;
    return { bytes, entries: entries.length, quotaBytes: inst.row.quotaBytes, quotaEntries: inst.row.quotaEntries };
  }

  registerTask(taskId: string, declaredSlots: readonly StateSlot[], options?: { artifactDigest?: string }): void {
    this.#ensureOpen();
    if (declaredSlots === undefined) throw invalid('registerTask needs the declared slots (possibly [])');
    const digest = options?.artifactDigest;
    if (digest !== undefined && (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest))) {
      throw invalid(`artifactDigest ${JSON.stringify(digest)} is invalid: use sha256:<64 lowercase hex>`);
    }
    this.#task(checkTaskId(taskId), declaredSlots, true, digest);
  }

  bind(request: BindRequest): Promise<StateMount> {
    const req = request ?? ({} as BindRequest);
    const attributes: Attributes = {};
    if (typeof req.taskId === 'string') attributes[Attr.taskId] = req.taskId;
    if (typeof req.instanceId === 'string') attributes[Attr.stateId] = req.instanceId;
    if (typeof req.slot === 'string') attributes[Attr.stateSlot] = req.slot;
    return withSpan(SpanNames.stateBind, { attributes, tracer: this.#c.tracer }, (span) => this.#bind(req, span));
  }

  async #bind(req: BindRequest, span: Span): Promise<StateMount> {
    this.#ensureOpen();
    const taskId = checkTaskId(req.taskId);
    const task = this.#task(taskId, req.declaredSlots, req.declaredSlots !== undefined);
    if (task.row.slots === undefined) {
      throw invalid(`task ${taskId} has no declared slots registered; pass declaredSlots`);
    }
    const slot = task.row.slots.find((s) => s.name === req.slot);
    if (!slot) {
      const declared = task.row.slots.map((s) => s.name).join(', ') || 'none';
      throw new StateError(
        'UNDECLARED_SLOT',
        `slot ${JSON.stringify(req.slot)} is not declared by task ${taskId}'s artifact (declared: ${declared})`,
      );
    }
    const access = req.access ?? slot.access;
    if (access !== 'ro' && access !== 'rw') throw invalid(`access must be 'ro' or 'rw'`);
    if (access === 'rw' && slot.access === 'ro') {
      throw new StateError(
        'ACCESS_WIDER_THAN_DECLARED',
        `slot '${slot.name}' is declared ro; bind it ro (--ro) or change the artifact`,
      );
    }
    span.setAttribute(Attr.stateAccess, access);
    const inst = this.#live(req.instanceId);
    if (inst.row.scope === 'task' && inst.row.taskId !== taskId) {
      throw new StateError(
        'SCOPE_MISMATCH',
        `state instance ${inst.row.id} is scoped to task ${inst.row.taskId} and cannot be bound to task ${taskId}`,
      );
    }
    if (task.bound.has(slot.name) || task.waiting.has(slot.name)) {
      throw new StateError('SLOT_ALREADY_BOUND', `slot '${slot.name}' of task ${taskId} is already bound`);
    }
    if (inst.queue.length === 0 && compatible(inst, access)) return this.#grant(inst, task, slot, access);
    const holders = inst.holders.map((h) => `${h.taskId}/${h.slot} (${h.access})`).join(', ') || 'an export';
    if (inst.holders.some((h) => h.taskId === taskId) || inst.queue.some((w) => w.taskId === taskId)) {
      throw new StateError(
        'BINDING_CONFLICT',
        `task ${taskId} would wait for itself: state instance ${inst.row.id} is held by ${holders}`,
      );
    }
    if (this.#c.conflictPolicy === 'refuse') {
      throw new StateError(
        'BINDING_CONFLICT',
        `state instance ${inst.row.id} is held by ${holders}; single writer: retry after they release`,
      );
    }
    return this.#wait(inst, task, slot, access, req);
  }

  #wait(
    inst: LiveInstance,
    task: LiveTask,
    slot: StateSlot,
    access: StateAccess,
    req: BindRequest,
  ): Promise<StateMount> {
    const timeoutMs = checkQuota(req.timeoutMs, 'timeoutMs') ?? this.#c.pendingTimeoutMs;
    const signal = req.signal;
    if (signal?.aborted) return Promise.reject(new StateError('CANCELLED', 'bind cancelled before it started'));
    return new Promise<StateMount>((resolvePromise, rejectPromise) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        task.waiting.delete(slot.name);
        const at = inst.queue.indexOf(waiter);
        if (at >= 0) inst.queue.splice(at, 1);
      };
      const waiter: Waiter = {
        taskId: task.row.taskId,
        slot: slot.name,
        access,
        grant: () => {
          cleanup();
          try {
            resolvePromise(this.#grant(inst, task, slot, access));
          } catch (err) {
            rejectPromise(err);
          }
        },
        fail: (err) => {
          cleanup();
          rejectPromise(err);
          this.#processQueue(inst);
        },
      };
      const onAbort = (): void => waiter.fail(new StateError('CANCELLED', `bind of slot '${slot.name}' was cancelled`));
      const timer = setTimeout(
        () =>
          waiter.fail(
            new StateError(
              'PENDING_TIMEOUT',
              `task ${task.row.taskId} waited ${timeoutMs} ms for state instance ${inst.row.id} (slot '${slot.name}'); its holder did not release`,
            ),
          ),
        timeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      inst.queue.push(waiter);
      task.waiting.set(slot.name, waiter);
      try {
        req.onQueued?.();
      } catch (err) {
        this.#c.logger.warn('a bind onQueued callback threw', { error: (err as Error).message });
      }
    });
  }

  #grant(inst: LiveInstance, task: LiveTask, slot: StateSlot, access: StateAccess): StateMount {
    const mount: StateMount = {
      guestPath: slot.mount,
      hostPath: this.#hostPath(inst.row.id),
      readOnly: access === 'ro',
      quotaBytes: Math.min(inst.row.quotaBytes, slot.quotaBytes ?? Number.POSITIVE_INFINITY),
      quotaEntries: inst.row.quotaEntries,
      usedBytes: inst.row.bytes,
      usedEntries: inst.row.entries,
      instanceId: inst.row.id,
      taskId: task.row.taskId,
      slot: slot.name,
      access,
      // Read before an rw grant clears it below.
      ...(inst.row.digest !== undefined ? { digestBefore: inst.row.digest } : {}),
    };
    const binding: BindingRow = {
      instanceId: inst.row.id,
      taskId: task.row.taskId,
      slot: slot.name,
      access,
      guestPath: slot.mount,
      quotaBytes: mount.quotaBytes,
    };
    this.#registry.transaction(() => {
      this.#registry.insertBinding(binding);
      // A writer makes the recorded digest stale until its release measures again.
      if (access === 'rw') this.#registry.clearDigest(inst.row.id);
    });
    if (access === 'rw') inst.row = { ...inst.row, digest: undefined };
    const holder: Holder = { taskId: task.row.taskId, slot: slot.name, access, mount };
    inst.holders.push(holder);
    task.bound.set(slot.name, holder);
    this.#c.logger.debug('state bound', { instanceId: inst.row.id, taskId: task.row.taskId, slot: slot.name, access });
    for (const w of [...task.readyWaiters]) w.check();
    return { ...mount };
  }

  /** Grants queued binds from the head, as long as they are compatible (FIFO, no overtaking). */
  #processQueue(inst: LiveInstance): void {
    if (this.#closed) return;
    while (inst.queue.length > 0 && compatible(inst, inst.queue[0]!.access)) inst.queue[0]!.grant();
  }

  taskStatus(taskId: string, declaredSlots?: readonly StateSlot[]): TaskBindingStatus {
    this.#ensureOpen();
    checkTaskId(taskId);
    const task = this.#tasks.get(taskId);
    const slots = declaredSlots !== undefined ? checkSlots(declaredSlots) : task?.row.slots;
    if (slots === undefined) {
      throw new StateError('NOT_FOUND', `no declared slots known for task ${taskId}; pass declaredSlots`);
    }
    const mounts: StateMount[] = [];
    const missingSlots: string[] = [];
    const waitingSlots: string[] = [];
    for (const s of slots) {
      const holder = task?.bound.get(s.name);
      if (holder) mounts.push({ ...holder.mount });
      else missingSlots.push(s.name);
      if (task?.waiting.has(s.name)) waitingSlots.push(s.name);
    }
    return {
      taskId,
      state: task && (task.row.state === 'ended' || task.release) ? 'ended' : 'active',
      mounts,
      missingSlots,
      waitingSlots,
    };
  }

  isReady(taskId: string, declaredSlots?: readonly StateSlot[]): boolean {
    const status = this.taskStatus(taskId, declaredSlots);
    return status.state === 'active' && status.missingSlots.length === 0;
  }

  whenReady(
    taskId: string,
    options?: { declaredSlots?: readonly StateSlot[]; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<StateMount[]> {
    try {
      this.#ensureOpen();
      const task = this.#task(checkTaskId(taskId), options?.declaredSlots, options?.declaredSlots !== undefined);
      if (task.row.slots === undefined) throw invalid(`task ${taskId} has no declared slots registered`);
      const timeoutMs = checkQuota(options?.timeoutMs, 'timeoutMs') ?? this.#c.pendingTimeoutMs;
      const signal = options?.signal;
      if (signal?.aborted) throw new StateError('CANCELLED', `wait for task ${taskId} cancelled`);
      const status = (): TaskBindingStatus => this.taskStatus(taskId);
      const first = status();
      if (first.missingSlots.length === 0) return Promise.resolve(first.mounts);
      return new Promise<StateMount[]>((resolvePromise, rejectPromise) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          task.readyWaiters.delete(waiter);
        };
        const waiter: ReadyWaiter = {
          check: () => {
            const s = status();
            if (s.missingSlots.length > 0) return;
            done();
            resolvePromise(s.mounts);
          },
          fail: (err) => {
            done();
            rejectPromise(err);
          },
        };
        const onAbort = (): void => waiter.fail(new StateError('CANCELLED', `wait for task ${taskId} cancelled`));
        const timer = setTimeout(() => {
          const missing = status().missingSlots.join(', ');
          waiter.fail(
            new StateError(
              'PENDING_TIMEOUT',
              `task ${taskId} stayed pending ${timeoutMs} ms; unbound slots: ${missing}. Bind them or cancel the task`,
            ),
          );
        }, timeoutMs);
        signal?.addEventListener('abort', onAbort, { once: true });
        task.readyWaiters.add(waiter);
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  mounts(taskId: string): StateMount[] {
    this.#ensureOpen();
    const task = this.#tasks.get(checkTaskId(taskId));
    if (!task) return [];
    return [...task.bound.values()].sort(byName).map((h) => ({ ...h.mount }));
  }

  releaseTask(
    taskId: string,
    options?: { reason?: string; quotaRefusedSlots?: readonly string[] },
  ): Promise<TaskReleaseReport> {
    try {
      this.#ensureOpen();
      checkTaskId(taskId);
    } catch (err) {
      return Promise.reject(err);
    }
    let task = this.#tasks.get(taskId);
    if (task?.release) return task.release;
    if (task?.row.state === 'ended') return Promise.resolve({ taskId, releases: [], alreadyReleased: true });
    if (!task) {
      task = this.#newTask({ taskId, state: 'active', createdAtMs: this.#c.now() });
      this.#tasks.set(taskId, task);
    }
    const live = task;
    const refused = new Set(options?.quotaRefusedSlots ?? []);
    live.release = this.#releaseTask(live, options?.reason, refused).finally(() => {
      live.release = undefined;
    });
    return live.release;
  }

  async #releaseTask(
    task: LiveTask,
    reason: string | undefined,
    quotaRefused: ReadonlySet<string>,
  ): Promise<TaskReleaseReport> {
    const taskId = task.row.taskId;
    const terminated = new StateError('TASK_TERMINATED', `task ${taskId} ended while waiting for its state`);
    for (const w of [...task.waiting.values()]) w.fail(terminated);
    for (const w of [...task.readyWaiters]) w.fail(terminated);
    const releases: StateRelease[] = [];
    for (const holder of [...task.bound.values()].sort(byName)) {
      const inst = this.#instances.get(holder.mount.instanceId)!;
      releases.push(await this.#release(inst, task, holder, quotaRefused.has(holder.slot)));
    }
    const owned = [...this.#instances.values()]
      .filter((i) => i.row.scope === 'task' && i.row.taskId === taskId)
      .sort((a, b) => (a.row.id < b.row.id ? -1 : 1));
    for (const inst of owned) {
      const mine = releases.filter((r) => r.instanceId === inst.row.id);
      if (mine.length === 0) releases.push(await this.#release(inst, task, undefined, false));
      await this.#destroy(inst);
      for (const r of releases) if (r.instanceId === inst.row.id) r.destroyed = true;
    }
    task.row = { ...task.row, state: 'ended', endedAtMs: this.#c.now(), reason };
    this.#registry.upsertTask(task.row);
    this.#c.logger.debug('task state released', { taskId, instances: releases.length });
    return { taskId, releases, alreadyReleased: false };
  }

  /**
   * Measures an instance, records the result, and drops `holder` (if any), unblocking waiters. `refused`: the
   * runtime reported a guest write refused by this binding's quota.
   */
  #release(inst: LiveInstance, task: LiveTask, holder: Holder | undefined, refused: boolean): Promise<StateRelease> {
    const attributes: Attributes = { [Attr.taskId]: task.row.taskId, [Attr.stateId]: inst.row.id };
    if (holder) {
      attributes[Attr.stateSlot] = holder.slot;
      attributes[Attr.stateAccess] = holder.access;
    }
    return withSpan(SpanNames.stateRelease, { attributes, tracer: this.#c.tracer }, async (span) => {
      const result: StateRelease = {
        instanceId: inst.row.id,
        scope: inst.row.scope,
        bytes: inst.row.bytes,
        entries: inst.row.entries,
        quotaExceeded: false,
        destroyed: false,
      };
      if (holder) {
        result.slot = holder.slot;
        result.access = holder.access;
      }
      try {
        const s = await digestTree(this.#hostPath(inst.row.id));
        if (s.others.length > 0) {
          this.#c.logger.warn('state instance holds entries outside the digest (FIFO/socket/device)', {
            instanceId: inst.row.id,
            paths: s.others.slice(0, 10),
          });
        }
        const quotaBytes = holder?.mount.quotaBytes ?? inst.row.quotaBytes;
        result.digest = s.digest;
        result.bytes = s.bytes;
        result.entries = s.entries;
        result.quotaExceeded = refused || s.bytes > quotaBytes || s.entries > inst.row.quotaEntries;
        inst.row = {
          ...inst.row,
          bytes: s.bytes,
          entries: s.entries,
          digest: s.digest,
          quotaExceeded: result.quotaExceeded,
        };

        span.setAttributes({
          [Attr.stateDigest]: s.digest,
          [Attr.stateBytes]: s.bytes,
          [ATTR_STATE_ENTRIES]: s.entries,
          [ATTR_STATE_QUOTA_EXCEEDED]: result.quotaExceeded,
        });
        if (result.quotaExceeded) {
          this.#c.logger.warn('state instance over quota at release', {
            instanceId: inst.row.id,
            taskId: task.row.taskId,
            bytes: s.bytes,
            entries: s.entries,
          });
        }
      } catch (err) {
        const e = asStateError(err, `cannot measure state instance ${inst.row.id}`);
        result.error = e.message;
        this.#c.logger.error('state release could not measure the instance', {
          instanceId: inst.row.id,
          error: e.message,
        });
        span.setAttribute(Attr.errorCode, e.code);
      } finally {
        // Record the measurement and drop the binding in one commit.
        this.#registry.transaction(() => {
          if (result.digest !== undefined) {
            this.#registry.updateMeasure(
              inst.row.id,
              result.bytes,
              result.entries,
              result.digest,
              result.quotaExceeded,
            );
          }
          if (holder) this.#registry.deleteBinding(holder.taskId, holder.slot);
        });
        if (holder) {
          inst.holders.splice(inst.holders.indexOf(holder), 1);
          task.bound.delete(holder.slot);
          this.#processQueue(inst);
        }
      }
      return result;
    });
  }

  async #destroy(inst: LiveInstance): Promise<void> {
    this.#instances.delete(inst.row.id);
    this.#registry.deleteInstance(inst.row.id);
    for (const w of [...inst.queue]) w.fail(new StateError('NOT_FOUND', `state instance ${inst.row.id} was deleted`));
    await this.#destroyDir(inst.row.id);
  }

  async export(request: ExportRequest): Promise<ExportResult> {
    this.#ensureOpen();
    const inst = this.#live(request?.instanceId);
    if (typeof request.out !== 'string' || request.out === '') throw invalid('out must be a path');
    const out = resolve(request.out);
    const format = request.format ?? (extname(out).toLowerCase() === '.tar' ? 'tar' : 'dir');
    if (format !== 'dir' && format !== 'tar') throw invalid(`format must be 'dir' or 'tar'`);
    if (!compatible(inst, 'ro')) {
      throw new StateError(
        'INSTANCE_IN_USE',
        `state instance ${inst.row.id} is bound rw by task ${inst.holders[0]!.taskId}; export after it is released`,
      );
    }
    inst.exporters++;
    try {
      if (format === 'dir') {
        const existing = await lstat(out).catch(() => undefined);
        if (existing && (!existing.isDirectory() || (await readdir(out)).length > 0)) {
          throw invalid(`export destination ${out} exists and is not an empty directory`);
        }
        if (!existing) await mkdir(out, { recursive: true });
      } else if (!isAbsolute(out) || (await lstat(out).catch(() => undefined))?.isDirectory()) {
        throw invalid(`export destination ${out} is a directory; give a file path ending in .tar`);
      }
      const root = this.#hostPath(inst.row.id);
      const walk = await walkTree(root);
      const summary = await digestTree(root, walk);
      if (format === 'tar') await exportTar(root, walk.entries, out);
      else await exportDir(root, walk.entries, out);
      return { out, format, digest: summary.digest, bytes: summary.bytes, entries: summary.entries };
    } catch (err) {
      throw asStateError(err, `cannot export state instance ${inst.row.id} to ${out}`);
    } finally {
      inst.exporters--;
      this.#processQueue(inst);
    }
  }

  async delete(instanceId: string): Promise<void> {
    this.#ensureOpen();
    const inst = this.#lookup(instanceId);
    if (!inst) throw new StateError('NOT_FOUND', `no state instance ${JSON.stringify(instanceId)}`);
    if (!idle(inst)) {
      const by = inst.holders.map((h) => `${h.taskId}/${h.slot}`).join(', ') || 'an export or a waiting bind';
      throw new StateError('INSTANCE_IN_USE', `state instance ${inst.row.id} is in use by ${by}; release it first`);
    }
    await this.#destroy(inst);
    this.#c.logger.debug('state instance deleted', { instanceId });
  }

  async sweep(): Promise<SweepReport> {
    this.#ensureOpen();
    const now = this.#c.now();
    const expired = [...this.#instances.values()].filter(
      (i) => i.row.expiresAtMs !== undefined && i.row.expiresAtMs <= now && idle(i),
    );
    const expiredInstanceIds: string[] = [];
    for (const inst of expired) {
      await this.#destroy(inst);
      expiredInstanceIds.push(inst.row.id);
    }
    const orphanedInstanceIds = await this.#destroyOrphans(now);
    const cutoff = now - DEFAULTS.endedTaskRetentionMs;
    for (const [id, task] of this.#tasks) {
      if (task.row.state === 'ended' && (task.row.endedAtMs ?? 0) < cutoff) this.#tasks.delete(id);
    }
    this.#registry.pruneEndedTasks(cutoff);
    await this.#removeOrphans();
    if (expiredInstanceIds.length > 0) this.#c.logger.info('expired state instances deleted', { expiredInstanceIds });
    return { expiredInstanceIds: expiredInstanceIds.sort(), orphanedInstanceIds: orphanedInstanceIds.sort() };
  }

  /**
   * Destroys task-scoped instances whose task will never release them: the task is unknown, already ended (a
   * release that failed half-way), or known only from task-scoped creates (never registered with its declared
   * slots, so no runtime will run or release it). Only once every instance of that task is older than
   * `orphanGraceMs` and none is bound, queued for, or exported. A create-only task is released with reason
   * {@link ORPHANED_REASON}, so late binds and creates for it get `TASK_TERMINATED`.
   */
  async #destroyOrphans(now: number): Promise<string[]> {
    const byTask = new Map<string, LiveInstance[]>();
    for (const inst of this.#instances.values()) {
      if (inst.row.scope !== 'task' || inst.row.taskId === undefined) continue;
      const owned = byTask.get(inst.row.taskId) ?? [];
      owned.push(inst);
      byTask.set(inst.row.taskId, owned);
    }
    const destroyed: string[] = [];
    const taskIds: string[] = [];
    for (const [taskId, owned] of byTask) {
      const task = this.#tasks.get(taskId);
      if (task?.release) continue; // being released right now
      const neverRegistered = task?.row.state === 'active' && task.row.slots === undefined && task.bound.size === 0;
      if (task && task.row.state === 'active' && !neverRegistered) continue;
      const settled = owned.every((i) => now - i.row.createdAtMs >= this.#c.orphanGraceMs && idle(i));
      if (!settled) continue;
      if (task?.row.state === 'active') {
        await this.releaseTask(taskId, { reason: ORPHANED_REASON });
      } else {
        for (const inst of owned) await this.#destroy(inst);
      }
      destroyed.push(...owned.map((i) => i.row.id));
      taskIds.push(taskId);
    }
    if (destroyed.length > 0) {
      this.#c.logger.warn('orphaned task-scoped state instances destroyed: their task never ran or never released', {
        count: destroyed.length,
        instanceIds: destroyed,
        taskIds,
      });
    }
    return destroyed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    this.#gauge.removeCallback(this.#observe);
    const closed = new StateError('CLOSED', 'the state kernel was closed');
    for (const inst of this.#instances.values()) for (const w of [...inst.queue]) w.fail(closed);
    for (const task of this.#tasks.values()) for (const w of [...task.readyWaiters]) w.fail(closed);
    this.#registry.close();
    try {
      unlinkSync(this.#lockPath);
    } catch {
      // Already gone.
    }
    openDataDirs.delete(this.dataDir);
  }
}
