import { createHash, type Hash, randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { isAbsolute, posix } from 'node:path';
import {
  type Attributes,
  type Context,
  context,
  type Histogram,
  type HrTime,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  type Tracer,
  trace,
  type UpDownCounter,
} from '@opentelemetry/api';
import {
  Attr,
  contextFromTraceparent,
  type Logger,
  MetricNames,
  recordError,
  SpanNames,
  silentLogger,
  vyrMeter,
  vyrTracer,
  withSpan,
} from '@vyr/telemetry';
import { RuntimeError } from './errors.js';
import { type PoolWorker, WorkerPool } from './pool.js';
import { type PreparedComponent, Preparer } from './prepare.js';
import type { DoneMessage, RunRequest, WorkerMessage } from './protocol.js';
import { createStdinRing, StdinWriter } from './stdin.js';
import type {
  Mount,
  Runtime,
  RuntimeArtifact,
  RuntimeOptions,
  RuntimeStats,
  StateHookContext,
  SubmitRequest,
  TaskEvent,
  TaskOutcome,
  TaskReason,
  TaskState,
  TaskStatus,
  TerminalState,
  WatchOptions,
} from './types.js';

const MiB = 1024 * 1024;
const TERMINAL: ReadonlySet<TaskState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'DEADLINE_EXCEEDED']);
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ENV_KEY = /^[^=\0]+$/;
/**
 * `ArtifactError` codes that are a verification verdict (signature, trust policy, content re-hash): reported as
 * `UNTRUSTED`. Anything else an `ArtifactSource` throws (a missing blob, an I/O error) is `INTERNAL`, `NOT_FOUND`
 * stays `NOT_FOUND`.
 */
const VERIFICATION_CODES: ReadonlySet<string> = new Set([
  'UNSIGNED',
  'UNTRUSTED_KEY',
  'SIGNATURE_INVALID',
  'MESSAGE_DIGEST_MISMATCH',
  'MALFORMED_BUNDLE',
  'BLOB_DIGEST_MISMATCH',
  'MANIFEST_TAMPERED',
  'CONFIG_TAMPERED',
  'UNTRUSTED',
]);

interface Watcher {
  events: TaskEvent[];
  bytes: number;
  dropped: number;
  /** The first watcher of a `holdOutput` task: never drops, and gives the guest its output credit as it reads. */
  primary?: boolean;
  /** Wants status events only (no output, never a task's primary watcher). */
  statusOnly?: boolean;
  wake?: () => void;
}

interface OutputChunk {
  fd: 1 | 2;
  data: Uint8Array;
}

interface TaskRecord {
  status: TaskStatus;
  request: SubmitRequest;
  artifact: RuntimeArtifact;
  prepared?: PreparedComponent;
  mounts: Mount[];
  rootSpan: Span;
  rootContext: Context;
  worker?: PoolWorker;
  deadlineTimer?: NodeJS.Timeout;
  stdinAbort: AbortController;
  /** Aborted when the task ends: the `bind` hook's `signal`. */
  bindAbort: AbortController;
  /** The `bind` hook while it runs (it may reject); `finish` awaits it before calling `release`. */
  binding?: Promise<unknown>;
  stdin?: SharedArrayBuffer;
  /** Output bytes the worker posted and the runtime has not taken yet (see protocol.ts `outputInFlight`). */
  outputInFlight?: Int32Array;
  /**
   * Output hold of a `holdOutput` task (SubmitRequest.holdOutput): `waiting` for the first watcher (nothing is
   * dropped, credit is kept), `attached` (the primary watcher gives credit back as it reads), or `none`.
   */
  hold: 'none' | 'waiting' | 'attached';
  /** Output bytes taken from the worker whose credit was not given back yet (held for the primary watcher). */
  heldCredit: number;
  /** Ends a `waiting` hold `outputHoldMs` after the first held chunk. */
  holdTimer?: NodeJS.Timeout;
  /** Worker timestamps of instantiate and run start (the `running` message), for tasks stopped before `done`. */
  runningAt?: { instantiateStart: number; runStart: number };
  output: OutputChunk[];
  /** SHA-256 of everything the guest wrote to stdout / stderr (finished into `status.stdoutDigest` at the end). */
  outputHash: { 1: Hash; 2: Hash };
  retainedBytes: number;
  watchers: Set<Watcher>;
  done: Promise<TaskStatus>;
  resolveDone: (status: TaskStatus) => void;
  /** Set once the end is decided; later signals are ignored. */
  ending: boolean;
  /** Set while a cancel or deadline is terminating the worker. */
  stopping?: boolean;
  /** When the worker termination began (epoch ms): the `vyr.terminate` span starts there. */
  killStartedAt?: number;
  /** Counted in the waiting gauge (PENDING or QUEUED). */
  waiting: boolean;
}

function snapshot(status: TaskStatus): TaskStatus {
  return { ...status, limits: { ...status.limits }, quotaExceeded: status.quotaExceeded.map((q) => ({ ...q })) };
}

function toHrTime(epochMs: number): HrTime {
  const seconds = Math.floor(epochMs / 1000);
  return [seconds, Math.round((epochMs - seconds * 1000) * 1e6)];
}

function checkMount(mount: Mount, where: string): void {
  if (typeof mount?.guestPath !== 'string' || !mount.guestPath.startsWith('/')) {
    throw new RuntimeError(
      'INVALID_ARGUMENT',
      `${where}: guestPath ${JSON.stringify(mount?.guestPath)} is not absolute`,
    );
  }
  if (
    posix.normalize(mount.guestPath) !== mount.guestPath &&
    `${posix.normalize(mount.guestPath)}/` !== mount.guestPath
  ) {
    throw new RuntimeError('INVALID_ARGUMENT', `${where}: guestPath ${mount.guestPath} is not normalised`);
  }
  if (typeof mount.hostPath !== 'string' || !isAbsolute(mount.hostPath)) {
    throw new RuntimeError('INVALID_ARGUMENT', `${where}: hostPath ${JSON.stringify(mount.hostPath)} is not absolute`);
  }
  let isDir = false;
  try {
    isDir = statSync(mount.hostPath).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) throw new RuntimeError('INVALID_ARGUMENT', `${where}: hostPath ${mount.hostPath} is not a directory`);
  if (mount.quotaBytes !== undefined && !(Number.isSafeInteger(mount.quotaBytes) && mount.quotaBytes >= 0)) {
    throw new RuntimeError('INVALID_ARGUMENT', `${where}: quotaBytes ${mount.quotaBytes} is not a byte count`);
  }
  for (const key of ['quotaEntries', 'usedEntries'] as const) {
    const value = mount[key];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new RuntimeError('INVALID_ARGUMENT', `${where}: ${key} ${value} is not an entry count`);
    }
  }
}

function checkPositive(value: number | undefined, name: string): void {
  if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
    throw new RuntimeError('INVALID_ARGUMENT', `${name} must be a positive number, got ${value}`);
  }
}

/**
 * Creates a runtime with a warm worker pool. Workers start on first use or on {@link Runtime.warmUp}.
 *
 * @example
 * const runtime = createRuntime({ artifacts, cacheDir: '/var/lib/vyr/cache' });
 * const task = await runtime.submit({ digest, args: ['--help'] });
 * for await (const event of runtime.watch(task.id)) { … }
 */
export function createRuntime(options: RuntimeOptions): Runtime {
  if (!options?.artifacts || typeof options.artifacts.load !== 'function') {
    throw new RuntimeError('INVALID_ARGUMENT', 'options.artifacts must be an ArtifactSource');
  }
  if (typeof options.cacheDir !== 'string' || !isAbsolute(options.cacheDir)) {
    throw new RuntimeError('INVALID_ARGUMENT', `options.cacheDir ${JSON.stringify(options.cacheDir)} is not absolute`);
  }
  const poolSize = options.poolSize ?? 2;
  const maxQueueLength = options.maxQueueLength ?? 64;
  const defaultMemory = options.defaultLimits?.memoryBytes ?? 256 * MiB;
  const defaultDeadline = options.defaultLimits?.deadlineMs;
  const maxMemory = options.maxMemoryBytes ?? 4096 * MiB;
  const maxRetained = options.maxRetainedOutputBytes ?? 2 * MiB;
  const maxWatcherBytes = options.maxWatcherBufferBytes ?? 4 * MiB;
  const stdinBytes = options.stdinBufferBytes ?? 64 * 1024;
  const outputBufferBytes = options.outputBufferBytes ?? MiB;
  const outputHoldMs = options.outputHoldMs ?? 60_000;
  const maxFinished = options.maxFinishedTasks ?? 1000;
  const maxPrepared = options.maxPreparedArtifacts ?? 32;
  const workerHeapMb = options.workerHeapMb ?? 256;
  const nodeId = options.nodeId ?? 'local';
  const tier = options.tier ?? 'laptop';
  const logger: Logger = options.logger ?? silentLogger;
  const tracer: Tracer = options.tracer ?? vyrTracer();
  const meter = options.meter ?? vyrMeter();
  const hooks = options.hooks ?? {};
  if (!(Number.isInteger(poolSize) && poolSize >= 1)) {
    throw new RuntimeError('INVALID_ARGUMENT', `poolSize must be an integer ≥ 1, got ${poolSize}`);
  }
  if (!(Number.isInteger(maxQueueLength) && maxQueueLength >= 0)) {
    throw new RuntimeError('INVALID_ARGUMENT', `maxQueueLength must be an integer ≥ 0, got ${maxQueueLength}`);
  }
  if (!(Number.isInteger(maxPrepared) && maxPrepared >= 1)) {
    throw new RuntimeError('INVALID_ARGUMENT', `maxPreparedArtifacts must be an integer ≥ 1, got ${maxPrepared}`);
  }
  if (!(Number.isInteger(workerHeapMb) && workerHeapMb >= 2)) {
    throw new RuntimeError('INVALID_ARGUMENT', `workerHeapMb must be an integer ≥ 2, got ${workerHeapMb}`);
  }
  if (!(Number.isInteger(outputBufferBytes) && outputBufferBytes >= 4096)) {
    throw new RuntimeError('INVALID_ARGUMENT', `outputBufferBytes must be an integer ≥ 4096, got ${outputBufferBytes}`);
  }
  checkPositive(outputHoldMs, 'outputHoldMs');
  checkPositive(defaultMemory, 'defaultLimits.memoryBytes');
  checkPositive(defaultDeadline, 'defaultLimits.deadlineMs');

  const metrics = {
    duration: meter.createHistogram(MetricNames.taskDuration, {
      description: 'Task duration from submit to terminal state, by outcome',
      unit: 's',
    }) as Histogram,
    active: meter.createUpDownCounter(MetricNames.tasksActive, {
      description: 'Tasks running in a worker',
      unit: '{task}',
    }) as UpDownCounter,
    queue: meter.createUpDownCounter(MetricNames.queueLength, {
      description: 'Tasks accepted and waiting for a worker (PENDING + QUEUED)',
      unit: '{task}',
    }) as UpDownCounter,
    verify: meter.createHistogram(MetricNames.verifyDuration, {
      description: 'Artifact verification time before a task',
      unit: 's',
    }) as Histogram,
    prepare: meter.createHistogram(MetricNames.prepareDuration, {
      description: 'Component preparation time (transpile + compile on a miss)',
      unit: 's',
    }) as Histogram,
  };
  const nodeAttrs: Attributes = { [Attr.nodeId]: nodeId, [Attr.nodeTier]: tier };

  const preparer = new Preparer({ cacheDir: options.cacheDir, maxPrepared: maxPrepared, logger });
  const tasks = new Map<string, TaskRecord>();
  const finishedOrder: string[] = [];
  const queue: TaskRecord[] = [];
  let admitting = 0;
  let closed = false;

  const pool = new WorkerPool(
    { size: poolSize, logger, maxOldGenerationSizeMb: workerHeapMb, maxLoadedComponents: maxPrepared },
    {
      onIdle: () => dispatch(),
      onFailed: () => dispatch(),
      onMessage: (worker, message) => onWorkerMessage(worker, message),
      onCrash: (worker, taskId, error) => {
        const record = taskId ? tasks.get(taskId) : undefined;
        if (!record) return;
        // The task no longer runs anywhere: leave the active gauge and forget the dead worker.
        if (record.worker === worker) {
          record.worker = undefined;
          metrics.active.add(-1, nodeAttrs);
        }
        if (record.ending) return;
        const oom = (error as { code?: string } | undefined)?.code === 'ERR_WORKER_OUT_OF_MEMORY';
        const endRun = performance.timeOrigin + performance.now();
        endRunSpans(record, endRun);
        void finish(record, 'FAILED', oom ? 'MEMORY_LIMIT' : 'WORKER_CRASHED', {
          message: error?.message ?? 'the worker thread exited',
        });
      },
    },
  );

  /** Tasks PENDING or QUEUED: kept with the queue gauge, so admission never walks the retained records. */
  let waitingTasks = 0;
  const waitingCount = () => admitting + waitingTasks;

  function setState(record: TaskRecord, state: TaskState): void {
    const wasWaiting = record.waiting;
    record.status.state = state;
    record.waiting = state === 'PENDING' || state === 'QUEUED';
    if (wasWaiting !== record.waiting) {
      const delta = record.waiting ? 1 : -1;
      waitingTasks += delta;
      metrics.queue.add(delta, nodeAttrs);
    }
    // The snapshot is for watchers; most tasks have none when they change state.
    if (record.watchers.size > 0) emit(record, { type: 'status', status: snapshot(record.status) });
  }

  function emit(record: TaskRecord, event: TaskEvent): void {
    for (const w of record.watchers) {
      if (w.statusOnly && event.type !== 'status') continue;
      w.events.push(event);
      // The primary watcher of a held task is bounded by the guest's output credit instead (see giveCredit).
      if ((event.type === 'stdout' || event.type === 'stderr') && !w.primary) {
        w.bytes += event.data.length;
        // A slow watcher loses its oldest output, never slows the task (bounded buffer, drops counted).
        while (w.bytes > maxWatcherBytes) {
          const i = w.events.findIndex((e) => e.type === 'stdout' || e.type === 'stderr');
          if (i < 0) break;
          const old = w.events.splice(i, 1)[0] as { data: Uint8Array };
          w.bytes -= old.data.length;
          w.dropped += old.data.length;
        }
      }
      w.wake?.();
    }
  }

  function resolveLimits(request: SubmitRequest, artifact: RuntimeArtifact): TaskStatus['limits'] {
    checkPositive(request.limits?.memoryBytes, 'limits.memoryBytes');
    checkPositive(request.limits?.deadlineMs, 'limits.deadlineMs');
    const memoryBytes = request.limits?.memoryBytes ?? artifact.manifest.limits?.memoryBytes ?? defaultMemory;
    if (memoryBytes > maxMemory) {
      throw new RuntimeError(
        'INVALID_ARGUMENT',
        `memory limit ${memoryBytes} bytes is above this node's maximum of ${maxMemory} bytes`,
      );
    }
    const deadlineMs = request.limits?.deadlineMs ?? artifact.manifest.limits?.deadlineMs ?? defaultDeadline;
    return deadlineMs === undefined ? { memoryBytes } : { memoryBytes, deadlineMs };
  }

  function validateRequest(request: SubmitRequest): void {
    if (!request || typeof request !== 'object') throw new RuntimeError('INVALID_ARGUMENT', 'submit needs a request');
    if (typeof request.digest !== 'string' || !DIGEST.test(request.digest)) {
      throw new RuntimeError(
        'INVALID_ARGUMENT',
        `digest ${JSON.stringify(request.digest)} is not sha256:<64 lowercase hex>`,
      );
    }
    if (
      request.args !== undefined &&
      !(Array.isArray(request.args) && request.args.every((a) => typeof a === 'string'))
    ) {
      throw new RuntimeError('INVALID_ARGUMENT', 'args must be an array of strings');
    }
    for (const [key, value] of Object.entries(request.env ?? {})) {
      if (!ENV_KEY.test(key) || typeof value !== 'string' || value.includes('\0')) {
        throw new RuntimeError('INVALID_ARGUMENT', `env entry ${JSON.stringify(key)} is not a KEY=string pair`);
      }
    }
    const seen = new Set<string>();
    for (const [i, mount] of (request.mounts ?? []).entries()) {
      checkMount(mount, `mounts[${i}]`);
      if (seen.has(mount.guestPath)) {
        throw new RuntimeError('INVALID_ARGUMENT', `mounts[${i}]: guestPath ${mount.guestPath} is mounted twice`);
      }
      seen.add(mount.guestPath);
    }
    if (request.stateBindings !== undefined) {
      const ok =
        Array.isArray(request.stateBindings) &&
        request.stateBindings.every(
          (b) =>
            typeof b?.slot === 'string' &&
            typeof b.instanceId === 'string' &&
            (b.access === undefined || b.access === 'ro' || b.access === 'rw'),
        );
      if (!ok) {
        throw new RuntimeError('INVALID_ARGUMENT', 'stateBindings must be an array of { slot, instanceId, access? }');
      }
    }
    const stdin = request.stdin;
    if (
      stdin !== undefined &&
      !(stdin instanceof Uint8Array) &&
      typeof stdin !== 'string' &&
      typeof (stdin as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== 'function'
    ) {
      throw new RuntimeError('INVALID_ARGUMENT', 'stdin must be bytes, a string or an async iterable of bytes');
    }
  }

  async function submit(request: SubmitRequest): Promise<TaskStatus> {
    if (closed) throw new RuntimeError('CLOSED', 'the runtime is closed');
    validateRequest(request);
    if (waitingCount() >= maxQueueLength) {
      throw new RuntimeError(
        'RESOURCE_EXHAUSTED',
        `the task queue is full (${maxQueueLength} tasks waiting for ${poolSize} workers); retry later`,
      );
    }
    admitting++;
    // `tk_` and 32 hex digits: a random (v4) UUID without its dashes, recognisable as a task id.
    const id = `tk_${randomUUID().replaceAll('-', '')}`;
    const parent = request.traceparent
      ? contextFromTraceparent(request.traceparent, ROOT_CONTEXT)
      : (request.parentContext ?? context.active());
    const rootSpan = tracer.startSpan(
      SpanNames.task,
      { attributes: { [Attr.taskId]: id, [Attr.artifactDigest]: request.digest, ...nodeAttrs } },
      parent,
    );
    const rootContext = trace.setSpan(parent, rootSpan);
    let artifact: RuntimeArtifact;
    let limits: TaskStatus['limits'];
    try {
      const verifyStart = performance.now();
      artifact = await withSpan(
        SpanNames.verify,
        { parent: rootContext, tracer, attributes: { [Attr.artifactDigest]: request.digest } },
        async () => {
          try {
            return await options.artifacts.load(request.digest);
          } catch (cause) {
            if ((cause as { code?: string }).code === 'NOT_FOUND') {
              throw new RuntimeError('NOT_FOUND', `artifact ${request.digest} is not in the store; import it first`, {
                cause,
              });
            }
            const code = (cause as { code?: unknown }).code;
            const suffix = typeof code === 'string' ? ` (${code})` : '';
            if (typeof code === 'string' && VERIFICATION_CODES.has(code)) {
              throw new RuntimeError(
                'UNTRUSTED',
                `artifact ${request.digest} was refused by verification${suffix}: ${(cause as Error).message}`,
                { cause },
              );
            }
            // Not a verdict on the artifact (a missing blob, an I/O error, a bug): say so instead of "untrusted".
            throw new RuntimeError(
              'INTERNAL',
              `artifact ${request.digest} could not be loaded${suffix}: ${(cause as Error).message}; check the store`,
              { cause },
            );
          }
        },
      );
      metrics.verify.record((performance.now() - verifyStart) / 1000, nodeAttrs);
      if (artifact.digest !== request.digest) {
        throw new RuntimeError('INTERNAL', `artifact source returned ${artifact.digest} for ${request.digest}`);
      }
      const declared = new Set(artifact.manifest.env);
      const undeclared = Object.keys(request.env ?? {}).filter((k) => !declared.has(k));
      if (undeclared.length > 0) {
        throw new RuntimeError(
          'INVALID_ARGUMENT',
          `env keys ${undeclared.join(', ')} are not declared by the artifact (declared: ${[...declared].join(', ') || 'none'})`,
        );
      }
      limits = resolveLimits(request, artifact);
      if (closed) throw new RuntimeError('CLOSED', 'the runtime is closed');
    } catch (err) {
      admitting--;
      recordError(rootSpan, err);
      rootSpan.setAttribute(Attr.taskOutcome, 'REJECTED');
      rootSpan.end();
      throw err;
    }
    admitting--;
    if (artifact.manifest.name) rootSpan.setAttribute(Attr.artifactName, artifact.manifest.name);

    let resolveDone!: (status: TaskStatus) => void;
    const done = new Promise<TaskStatus>((r) => {
      resolveDone = r;
    });
    const spanContext = rootSpan.spanContext();
    const record: TaskRecord = {
      status: {
        id,
        digest: request.digest,
        state: 'PENDING',
        createdAt: Date.now(),
        limits,
        stdoutBytes: 0,
        stderrBytes: 0,
        droppedOutputBytes: 0,
        missedOutputBytes: 0,
        quotaExceeded: [],
        ...(trace.isSpanContextValid(spanContext) ? { traceId: spanContext.traceId } : {}),
      },
      request,
      artifact,
      mounts: [...(request.mounts ?? [])],
      rootSpan,
      rootContext,
      stdinAbort: new AbortController(),
      bindAbort: new AbortController(),
      output: [],
      outputHash: { 1: createHash('sha256'), 2: createHash('sha256') },
      retainedBytes: 0,
      hold: request.holdOutput === true ? 'waiting' : 'none',
      heldCredit: 0,
      watchers: new Set(),
      done,
      resolveDone,
      ending: false,
      waiting: true,
    };
    waitingTasks++;
    metrics.queue.add(1, nodeAttrs);
    tasks.set(id, record);
    if (limits.deadlineMs !== undefined) {
      record.deadlineTimer = setTimeout(() => void stop(record, 'DEADLINE_EXCEEDED'), limits.deadlineMs);
    }
    void advance(record);
    return snapshot(record.status);
  }

  function hookContext(record: TaskRecord, traceContext: Context): StateHookContext {
    return {
      taskId: record.status.id,
      digest: record.status.digest,
      artifact: record.artifact,
      request: record.request,
      signal: record.bindAbort.signal,
      traceContext,
    };
  }

  /** PENDING → prepare → bind → QUEUED. */
  async function advance(record: TaskRecord): Promise<void> {
    try {
      const started = performance.now();
      const result = await withSpan(SpanNames.prepare, { parent: record.rootContext, tracer }, async (span) => {
        const r = await preparer.prepare(record.status.digest, () => record.artifact.component);
        span.setAttribute(Attr.cacheHit, r.cache !== 'miss');
        span.setAttribute('vyr.prepare.cache', r.cache);
        if (r.repaired !== undefined) span.setAttribute('vyr.prepare.repaired', r.repaired);
        return r;
      });
      metrics.prepare.record((performance.now() - started) / 1000, {
        ...nodeAttrs,
        [Attr.cacheHit]: result.cache !== 'miss',
      });
      record.prepared = result.prepared;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const message = typeof code === 'string' ? `${code}: ${(err as Error).message}` : (err as Error).message;
      return finish(record, 'FAILED', 'PREPARE_FAILED', { message });
    }
    if (record.ending) return;
    if (hooks.bind) {
      try {
        const binding = withSpan(SpanNames.stateBind, { parent: record.rootContext, tracer }, (span) =>
          hooks.bind!(hookContext(record, trace.setSpan(record.rootContext, span))),
        );
        record.binding = binding;
        const extra = await binding;
        // Ended while binding (cancel, deadline, close): `finish` awaited the bind and releases what it got.
        if (record.ending) return;
        const seen = new Set(record.mounts.map((m) => m.guestPath));
        for (const [i, mount] of (extra ?? []).entries()) {
          checkMount(mount, `bind hook mount ${i}`);
          if (seen.has(mount.guestPath)) {
            throw new RuntimeError('INVALID_ARGUMENT', `bind hook mount ${i}: ${mount.guestPath} is mounted twice`);
          }
          seen.add(mount.guestPath);
          record.mounts.push(mount);
        }
      } catch (err) {
        // The hook gave up waiting for the task's state: a reason of its own, not a failure of the hook.
        const reason = (err as { code?: unknown }).code === 'PENDING_TIMEOUT' ? 'PENDING_TIMEOUT' : 'STATE_BIND_FAILED';
        return finish(record, 'FAILED', reason, { message: (err as Error).message });
      }
    }
    if (record.ending) return;
    setState(record, 'QUEUED');
    queue.push(record);
    dispatch();
  }

  function dispatch(): void {
    const failure = pool.failure;
    if (failure) {
      // No worker can start: waiting tasks would wait forever.
      for (const record of queue.splice(0)) {
        void finish(record, 'FAILED', 'WORKER_CRASHED', { message: failure.message });
      }
      return;
    }
    while (queue.length > 0) {
      const next = queue[0]!;
      if (next.ending) {
        queue.shift();
        continue;
      }
      const worker = pool.idle();
      if (!worker) return;
      queue.shift();
      startOnWorker(next, worker);
    }
  }

  function startOnWorker(record: TaskRecord, worker: PoolWorker): void {
    const prepared = record.prepared!;
    record.worker = worker;
    record.stdin = createStdinRing(stdinBytes);
    const outputInFlight = new SharedArrayBuffer(4);
    record.outputInFlight = new Int32Array(outputInFlight);
    record.status.startedAt = Date.now();
    setState(record, 'RUNNING');
    metrics.active.add(1, nodeAttrs);
    const env = Object.entries(record.request.env ?? {});
    const request: RunRequest = {
      type: 'run',
      taskId: record.status.id,
      jsKey: prepared.jsKey,
      // A worker imports each component's JS once; later tasks only name it.
      ...(worker.loaded.has(prepared.jsKey) ? {} : { jsSource: prepared.jsSource }),
      modules: prepared.modules,
      memories: prepared.memories,
      args: [record.artifact.manifest.name ?? 'main', ...(record.request.args ?? [])],
      env,
      mounts: record.mounts.map((m) => ({
        guestPath: m.guestPath,
        hostPath: m.hostPath,
        readOnly: m.readOnly ?? false,
        ...(m.quotaBytes !== undefined ? { quotaBytes: m.quotaBytes } : {}),
        ...(m.quotaEntries !== undefined ? { quotaEntries: m.quotaEntries } : {}),
        ...(m.usedEntries !== undefined ? { usedEntries: m.usedEntries } : {}),
      })),
      memoryLimitBytes: record.status.limits.memoryBytes,
      stdin: record.stdin,
      outputInFlight,
      outputBufferBytes,
    };
    pool.run(worker, request);
    void pumpStdin(record);
  }

  async function pumpStdin(record: TaskRecord): Promise<void> {
    const writer = new StdinWriter(record.stdin!);
    const signal = record.stdinAbort.signal;
    const input = record.request.stdin;
    try {
      if (typeof input === 'string') await writer.write(new TextEncoder().encode(input), signal);
      else if (input instanceof Uint8Array) await writer.write(input, signal);
      else if (input) await pumpIterable(input, writer, signal);
    } catch (err) {
      logger.warn('stdin source failed; closing the task stdin', { taskId: record.status.id, error: String(err) });
    } finally {
      writer.close();
    }
  }

  /**
   * Copies an async iterable into the stdin ring until it ends or the task ends. When the task ends first, the
   * iterator is closed with `return()` (as `for await` does on `break`), even while its `next()` is still pending, so
   * a generator's `finally` runs and a network stream behind it is released.
   */
  async function pumpIterable(input: AsyncIterable<Uint8Array>, writer: StdinWriter, signal: AbortSignal) {
    const iterator = input[Symbol.asyncIterator]();
    const ended = Symbol('ended');
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<typeof ended>((resolve) => {
      onAbort = () => resolve(ended);
      if (signal.aborted) resolve(ended);
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    let exhausted = false;
    try {
      for (;;) {
        const next = await Promise.race([iterator.next(), aborted]);
        if (next === ended) break;
        if (next.done) {
          exhausted = true;
          break;
        }
        await writer.write(next.value, signal);
        if (signal.aborted) break;
      }
    } catch (err) {
      exhausted = true; // a throwing iterator is finished; `return()` is not called on it
      throw err;
    } finally {
      signal.removeEventListener('abort', onAbort!);
      if (!exhausted && typeof iterator.return === 'function') {
        // Not awaited: an async generator queues `return()` behind a pending `next()`.
        Promise.resolve()
          .then(() => iterator.return!())
          .catch((err: unknown) =>
            logger.warn('closing the stdin source failed', { error: err instanceof Error ? err.message : String(err) }),
          );
      }
    }
  }

  function onWorkerMessage(worker: PoolWorker, message: WorkerMessage): void {
    if (message.type === 'ready') return;
    const record = tasks.get(message.taskId);
    if (!record || record.worker !== worker) return;
    if (message.type === 'output') {
      // Taken: give the guest its credit back (it may be blocked in a write waiting for it), unless the output is
      // held for the primary watcher, which gives it back as it reads.
      record.heldCredit += message.data.length;
      onOutput(record, message.fd, message.data);
      if (record.hold === 'none') giveCredit(record, record.heldCredit);
    } else if (message.type === 'running') {
      record.runningAt = { instantiateStart: message.instantiateStart, runStart: message.runStart };
    } else if (message.type === 'done') {
      record.worker = undefined;
      pool.release(worker);
      onDone(record, message);
    }
  }

  /** Gives the guest back `bytes` of output credit (see protocol.ts `outputInFlight`) and wakes a blocked write. */
  function giveCredit(record: TaskRecord, bytes: number): void {
    const n = Math.min(bytes, record.heldCredit);
    if (n <= 0) return;
    record.heldCredit -= n;
    const inFlight = record.outputInFlight;
    if (!inFlight) return;
    Atomics.sub(inFlight, 0, n);
    Atomics.notify(inFlight, 0);
  }

  /** Ends a task's output hold: every held byte's credit goes back, retention and drop rules apply again. */
  function endHold(record: TaskRecord): void {
    if (record.hold === 'none') return;
    record.hold = 'none';
    clearTimeout(record.holdTimer);
    record.holdTimer = undefined;
    for (const w of record.watchers) w.primary = false;
    giveCredit(record, record.heldCredit);
    trimRetained(record);
  }

  function trimRetained(record: TaskRecord): void {
    // While waiting for the primary watcher nothing is dropped; the guest's credit bounds what is kept.
    if (record.hold === 'waiting') return;
    while (record.retainedBytes > maxRetained && record.output.length > 0) {
      const old = record.output.shift()!;
      record.retainedBytes -= old.data.length;
      record.status.droppedOutputBytes += old.data.length;
    }
  }

  function onOutput(record: TaskRecord, fd: 1 | 2, data: Uint8Array): void {
    if (fd === 1) record.status.stdoutBytes += data.length;
    else record.status.stderrBytes += data.length;
    if (!record.ending) record.outputHash[fd].update(data);
    record.output.push({ fd, data });
    record.retainedBytes += data.length;
    trimRetained(record);
    if (record.hold === 'waiting' && !record.holdTimer) {
      record.holdTimer = setTimeout(() => {
        if (record.hold !== 'waiting') return;
        logger.warn('no watcher attached to a task holding its output; its output is no longer held', {
          taskId: record.status.id,
          outputHoldMs,
        });
        endHold(record);
      }, outputHoldMs);
      record.holdTimer.unref();
    }
    emit(record, { type: fd === 1 ? 'stdout' : 'stderr', data });
  }

  function endRunSpans(record: TaskRecord, runEnd: number, done?: DoneMessage): void {
    // A task stopped before `done` (cancel, deadline) has the worker's `running` timestamps when the guest got as far
    // as `run`: instantiate ends and run starts there, and run lasts until the stop. Stopped during instantiation,
    // instantiate lasts until the stop and run is empty.
    const startedAt = record.status.startedAt ?? runEnd;
    const running = record.runningAt;
    const instStart = done?.instantiateStart ?? running?.instantiateStart ?? startedAt;
    const instEnd = done?.instantiateEnd ?? running?.runStart ?? runEnd;
    const runStart = done?.runStart ?? running?.runStart ?? runEnd;
    const inst = tracer.startSpan(SpanNames.instantiate, { startTime: toHrTime(instStart) }, record.rootContext);
    inst.end(toHrTime(instEnd));
    const run = tracer.startSpan(SpanNames.run, { startTime: toHrTime(runStart) }, record.rootContext);
    if (done?.outcome.kind === 'exit') run.setAttribute(Attr.exitCode, done.outcome.exitCode);
    if (done && done.outcome.kind !== 'exit')
      run.setStatus({ code: SpanStatusCode.ERROR, message: done.outcome.message });
    for (const q of done?.quotaEvents ?? []) {
      run.addEvent(
        'vyr.state.quota_exceeded',
        q.kind === 'bytes'
          ? { 'vyr.state.mount': q.guestPath, 'vyr.state.quota': 'bytes', [Attr.stateBytes]: q.attemptedBytes }
          : { 'vyr.state.mount': q.guestPath, 'vyr.state.quota': 'entries', 'vyr.state.entries': q.attemptedEntries },
      );
    }
    run.end(toHrTime(runEnd));
  }

  function onDone(record: TaskRecord, done: DoneMessage): void {
    metrics.active.add(-1, nodeAttrs);
    record.status.memoryBytes = done.memoryBytes;
    record.status.quotaExceeded.push(...done.quotaEvents);
    if (record.ending) return;
    endRunSpans(record, done.runEnd, done);
    const o = done.outcome;
    switch (o.kind) {
      case 'exit':
        if (o.exitCode === 0) void finish(record, 'SUCCEEDED', undefined, { exitCode: 0 });
        else void finish(record, 'FAILED', 'EXIT_CODE', { exitCode: o.exitCode, message: `exit code ${o.exitCode}` });
        return;
      case 'trap':
        void finish(record, 'FAILED', 'TRAP', { message: o.message });
        return;
      case 'memory-limit':
        void finish(record, 'FAILED', 'MEMORY_LIMIT', {
          message: o.message,
          ...(o.exitCode !== undefined ? { exitCode: o.exitCode } : {}),
        });
        return;
      case 'instantiate-error':
        void finish(record, 'FAILED', 'INSTANTIATE_FAILED', { message: o.message });
        return;
    }
  }

  /**
   * Cancel or deadline: stop the task wherever it is. A running guest is stopped by terminating its worker (the
   * only way to stop `loop br 0` or a guest blocked in a read); the task reaches its terminal state only once the
   * thread is gone, so `CANCELLED` always means "no longer executing".
   */
  async function stop(record: TaskRecord, state: 'CANCELLED' | 'DEADLINE_EXCEEDED', reason: TaskReason = state) {
    if (record.ending || record.stopping || TERMINAL.has(record.status.state)) return;
    record.stopping = true;
    const worker = record.worker;
    if (worker) {
      record.worker = undefined;
      metrics.active.add(-1, nodeAttrs);
      record.killStartedAt = performance.timeOrigin + performance.now();
      await pool.replace(worker);
      endRunSpans(record, performance.timeOrigin + performance.now());
    }
    const message =
      reason === 'DEADLINE_EXCEEDED'
        ? `deadline of ${record.status.limits.deadlineMs} ms exceeded`
        : reason === 'RUNTIME_CLOSED'
          ? 'the runtime closed'
          : 'cancelled';
    await finish(record, state, reason, { message });
  }

  async function finish(
    record: TaskRecord,
    state: TerminalState,
    reason: TaskReason | undefined,
    detail: { exitCode?: number; message?: string },
  ): Promise<void> {
    if (record.ending) return;
    record.ending = true;
    clearTimeout(record.deadlineTimer);
    record.stdinAbort.abort();
    record.bindAbort.abort();
    const index = queue.indexOf(record);
    if (index >= 0) queue.splice(index, 1);
    // A bind still running (cancel during PENDING) is aborted above and awaited here, so whatever it acquired before
    // it noticed is released below instead of leaking.
    if (record.binding) await record.binding.catch(() => undefined);
    // The outcome is decided before `release`, so the hook sees the state, reason and exit code the task ends with.
    let outcome: TaskOutcome = {
      state,
      ...(reason !== undefined ? { reason } : {}),
      ...(detail.message !== undefined && state !== 'SUCCEEDED' ? { message: detail.message } : {}),
      ...(detail.exitCode !== undefined ? { exitCode: detail.exitCode } : {}),
    };
    const endedAt = Date.now();
    // Nothing the guest writes is taken after this point (its worker is gone): the digests cover all of its output.
    record.status.stdoutDigest = `sha256:${record.outputHash[1].digest('hex')}`;
    record.status.stderrDigest = `sha256:${record.outputHash[2].digest('hex')}`;
    if (hooks.release) {
      try {
        await withSpan(SpanNames.stateRelease, { parent: record.rootContext, tracer }, async (span) => {
          const status: TaskStatus = { ...snapshot(record.status), ...outcome, endedAt };
          const ctx = hookContext(record, trace.setSpan(record.rootContext, span));
          const r = await hooks.release!({ ...ctx, status, outcome: { ...outcome } });
          if (r?.attributes) span.setAttributes(r.attributes);
          return r;
        });
      } catch (err) {
        if (outcome.state === 'SUCCEEDED') {
          outcome = { ...outcome, state: 'FAILED', reason: 'STATE_RELEASE_FAILED', message: (err as Error).message };
        }
        logger.warn('state release hook failed', { taskId: record.status.id, error: (err as Error).message });
      }
    }
    const terminate = tracer.startSpan(
      SpanNames.terminate,
      record.killStartedAt === undefined ? {} : { startTime: toHrTime(record.killStartedAt) },
      record.rootContext,
    );
    const status = record.status;
    status.endedAt = endedAt;
    if (outcome.exitCode !== undefined) status.exitCode = outcome.exitCode;
    if (outcome.reason !== undefined) status.reason = outcome.reason;
    if (outcome.message !== undefined) status.message = outcome.message;
    setState(record, outcome.state);
    const root = record.rootSpan;
    root.setAttribute(Attr.taskOutcome, outcome.state);
    if (outcome.reason) root.setAttribute(Attr.taskReason, outcome.reason);
    if (status.exitCode !== undefined) root.setAttribute(Attr.exitCode, status.exitCode);
    if (outcome.state !== 'SUCCEEDED')
      root.setStatus({ code: SpanStatusCode.ERROR, message: status.message ?? outcome.reason ?? outcome.state });
    terminate.end();
    root.end();
    metrics.duration.record((status.endedAt - status.createdAt) / 1000, {
      ...nodeAttrs,
      [Attr.taskOutcome]: outcome.state,
    });
    for (const w of record.watchers) w.wake?.();
    record.resolveDone(snapshot(status));
    finishedOrder.push(status.id);
    while (finishedOrder.length > maxFinished) {
      const old = tasks.get(finishedOrder.shift()!);
      if (!old) continue;
      clearTimeout(old.holdTimer);
      tasks.delete(old.status.id);
    }
  }

  function find(taskId: string): TaskRecord {
    const record = typeof taskId === 'string' ? tasks.get(taskId) : undefined;
    if (!record) throw new RuntimeError('NOT_FOUND', `no task ${JSON.stringify(taskId)} on this node`);
    return record;
  }

  async function* watch(taskId: string, opts?: WatchOptions): AsyncGenerator<TaskEvent> {
    const record = find(taskId);
    if (opts?.statusOnly) {
      yield* watchStatus(record, opts.signal);
      return;
    }
    const watcher: Watcher = { events: [], bytes: 0, dropped: 0 };
    if (record.hold === 'waiting') {
      // The first watcher of a held task: everything since the start is still retained (nothing was dropped while
      // waiting); it gives the guest its credit back as it reads.
      record.hold = 'attached';
      clearTimeout(record.holdTimer);
      record.holdTimer = undefined;
      watcher.primary = true;
    }
    // An ended task publishes nothing more: its retained output first, then its terminal status, the last event.
    const ended = TERMINAL.has(record.status.state);
    if (!ended) watcher.events.push({ type: 'status', status: snapshot(record.status) });
    for (const chunk of record.output) {
      watcher.events.push({ type: chunk.fd === 1 ? 'stdout' : 'stderr', data: chunk.data });
      watcher.bytes += chunk.data.length;
    }
    if (ended) watcher.events.push({ type: 'status', status: snapshot(record.status) });
    if (record.status.droppedOutputBytes > 0) watcher.dropped = record.status.droppedOutputBytes;
    record.watchers.add(watcher);
    const onAbort = () => watcher.wake?.();
    opts?.signal?.addEventListener('abort', onAbort);
    try {
      for (;;) {
        if (opts?.signal?.aborted) return;
        if (watcher.dropped > 0) {
          const bytes = watcher.dropped;
          watcher.dropped = 0;
          record.status.missedOutputBytes += bytes;
          yield { type: 'dropped', bytes };
          continue;
        }
        const event = watcher.events.shift();
        if (event) {
          if (event.type === 'stdout' || event.type === 'stderr') {
            watcher.bytes -= event.data.length;
            // Read by the primary watcher: the guest may write this much more.
            if (watcher.primary) giveCredit(record, event.data.length);
            yield event;
            continue;
          }
          // A status snapshot counts the bytes watchers missed up to now, this watcher's gaps included.
          if (event.type === 'status') event.status.missedOutputBytes = record.status.missedOutputBytes;
          yield event;
          if (event.type === 'status' && TERMINAL.has(event.status.state)) return;
          continue;
        }
        if (TERMINAL.has(record.status.state) && record.ending) {
          // The terminal status event was queued by setState; the loop above delivers it.
          if (watcher.events.length === 0) return;
          continue;
        }
        await new Promise<void>((resolve) => {
          watcher.wake = resolve;
        });
        watcher.wake = undefined;
      }
    } finally {
      record.watchers.delete(watcher);
      opts?.signal?.removeEventListener('abort', onAbort);
      // The primary watcher went away: nobody paces the guest any more.
      if (watcher.primary) endHold(record);
    }
  }

  /** Status events only: the current status, then every change until the terminal status. */
  async function* watchStatus(record: TaskRecord, signal?: AbortSignal): AsyncGenerator<TaskEvent> {
    const watcher: Watcher = { events: [{ type: 'status', status: snapshot(record.status) }], bytes: 0, dropped: 0 };
    watcher.statusOnly = true;
    record.watchers.add(watcher);
    const onAbort = () => watcher.wake?.();
    signal?.addEventListener('abort', onAbort);
    try {
      for (;;) {
        if (signal?.aborted) return;
        const event = watcher.events.shift();
        if (event) {
          yield event;
          if (event.type === 'status' && TERMINAL.has(event.status.state)) return;
          continue;
        }
        await new Promise<void>((resolve) => {
          watcher.wake = resolve;
        });
        watcher.wake = undefined;
      }
    } finally {
      record.watchers.delete(watcher);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  function concat(chunks: Uint8Array[]): Uint8Array {
    const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let offset = 0;
    for (const c of chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }

  return {
    submit,
    async cancel(taskId: string): Promise<TaskStatus> {
      const record = find(taskId);
      void stop(record, 'CANCELLED');
      return record.done;
    },
    get(taskId: string): TaskStatus {
      return snapshot(find(taskId).status);
    },
    wait(taskId: string): Promise<TaskStatus> {
      return find(taskId).done;
    },
    watch(taskId: string, opts?: WatchOptions): AsyncIterable<TaskEvent> {
      find(taskId);
      return watch(taskId, opts);
    },
    output(taskId: string) {
      const record = find(taskId);
      return {
        stdout: concat(record.output.filter((c) => c.fd === 1).map((c) => c.data)),
        stderr: concat(record.output.filter((c) => c.fd === 2).map((c) => c.data)),
      };
    },
    stats(): RuntimeStats {
      const counts = pool.counts();
      let running = 0;
      let queued = 0;
      let pending = 0;
      for (const r of tasks.values()) {
        if (r.status.state === 'RUNNING') running++;
        else if (r.status.state === 'QUEUED') queued++;
        else if (r.status.state === 'PENDING') pending++;
      }
      return {
        workers: counts.workers,
        idleWorkers: counts.idle,
        running,
        queued,
        pending,
        workersReplaced: pool.replaced,
        workersRecycled: pool.recycled,
      };
    },
    warmUp(): Promise<void> {
      if (closed) return Promise.reject(new RuntimeError('CLOSED', 'the runtime is closed'));
      return pool.start();
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const live = [...tasks.values()].filter((r) => !r.ending);
      for (const r of live) void stop(r, 'CANCELLED', 'RUNTIME_CLOSED');
      await Promise.all(live.map((r) => r.done));
      await pool.close();
    },
  };
}
