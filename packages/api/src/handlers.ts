import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { ConnectRouter, HandlerContext, ServiceImpl } from '@connectrpc/connect';
import {
  Access,
  type Artifact,
  ArtifactSchema,
  NodeService,
  RequestLimitsSchema,
  type StateInstance,
  StateInstanceSchema,
  StateScope,
  type Task,
  TaskSchema,
  TaskStatus,
  TelemetryHealthSchema,
} from '@vyr/proto';
import type { ResourceMetrics, ResourceSpans } from '@vyr/proto/otlp';
import { ApiError, toConnectError } from './errors.js';
import type { Feed } from './feed.js';
import { filterResourceMetrics, filterResourceSpans } from './otlp-filter.js';
import type {
  AccessName,
  ArtifactService,
  ArtifactView,
  BindingSpec,
  NodeStatusView,
  StateService,
  StateView,
  SubmitSpec,
  TaskService,
  TaskStatusName,
  TaskView,
} from './ports.js';

/** Size limits on requests; every field says its default. */
export interface RequestLimits {
  /** Largest artifact upload (tar of the OCI layout) in bytes; default 256 MiB. */
  maxArtifactBytes?: number;
  /** Largest stdin of one task in bytes; default 8 MiB. */
  maxStdinBytes?: number;
  /** Largest state seed tar in bytes; default 32 MiB. */
  maxSeedBytes?: number;
  /** Largest total size of args plus env keys and values in bytes; default 64 KiB. */
  maxArgsEnvBytes?: number;
  /** Largest deadline in milliseconds; default 24 h. */
  maxDeadlineMs?: number;
  /** Largest chunk size the node sends on ExportState; default 256 KiB. */
  exportChunkBytes?: number;
}

/** The telemetry the streams read: finished spans and metric collections in OTLP form. */
export interface TelemetryFeeds {
  traces: Feed<ResourceSpans>;
  metrics: Feed<ResourceMetrics>;
}

/** Dependencies of {@link createNodeServiceHandlers}. */
export interface NodeServiceDeps {
  tasks: TaskService;
  states: StateService;
  artifacts: ArtifactService;
  telemetry: TelemetryFeeds;
  /** Node identity and counters for GetNodeInfo. */
  status(): Promise<NodeStatusView>;
  /** Directory for upload temp files (artifact tars, seeds); created if missing. */
  tempDir: string;
  /** Request size limits; defaults documented on {@link RequestLimits}. */
  limits?: RequestLimits;
  /** Idempotency keys remembered (oldest forgotten first); default 10,000. */
  maxIdempotencyKeys?: number;
  /**
   * Durable record of idempotency keys, so a retry after the node restarted still finds its task instead of running
   * it again. Default: none (keys live in memory only).
   */
  idempotencyStore?: IdempotencyStore;
  /** Per-subscriber buffer of StreamTraces / StreamMetrics, in batches; default 1,024. */
  streamBufferItems?: number;
}

/** Limits after defaults, exposed so the server can size `readMaxBytes` above the largest legal message. */
export function resolveLimits(limits: RequestLimits = {}): Required<RequestLimits> {
  return {
    maxArtifactBytes: limits.maxArtifactBytes ?? 256 * 1024 * 1024,
    maxStdinBytes: limits.maxStdinBytes ?? 8 * 1024 * 1024,
    maxSeedBytes: limits.maxSeedBytes ?? 32 * 1024 * 1024,
    maxArgsEnvBytes: limits.maxArgsEnvBytes ?? 64 * 1024,
    maxDeadlineMs: limits.maxDeadlineMs ?? 24 * 3600 * 1000,
    exportChunkBytes: limits.exportChunkBytes ?? 256 * 1024,
  };
}

/**
 * Largest single request message the node reads (`readMaxBytes` of the Connect adapter): one message may hold a whole
 * stdin or seed, plus 1 MiB for the other fields.
 */
export function maxMessageBytes(limits: Required<RequestLimits>): number {
  return Math.max(limits.maxStdinBytes, limits.maxSeedBytes) + 1024 * 1024;
}

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
// Ids are opaque to the API but always short and printable: `tk_…`, `st_…`. Anything else cannot exist.
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** Largest linear memory a wasm32 task can have: 65,536 pages of 64 KiB. */
const MAX_MEMORY_BYTES = 4 * 1024 * 1024 * 1024;

const STATUS_TO_PROTO: Record<TaskStatusName, TaskStatus> = {
  PENDING: TaskStatus.PENDING,
  QUEUED: TaskStatus.QUEUED,
  RUNNING: TaskStatus.RUNNING,
  SUCCEEDED: TaskStatus.SUCCEEDED,
  FAILED: TaskStatus.FAILED,
  CANCELLED: TaskStatus.CANCELLED,
  DEADLINE_EXCEEDED: TaskStatus.DEADLINE_EXCEEDED,
};

function invalid(message: string, field: string): ApiError {
  return new ApiError('INVALID_ARGUMENT', message, { metadata: { field } });
}

function checkDigest(digest: string, field: string): string {
  if (!DIGEST_RE.test(digest)) {
    throw invalid(`${field} ${JSON.stringify(digest)} is not a digest: expected sha256:<64 lowercase hex>`, field);
  }
  return digest;
}

function checkId(id: string, field: string, kind: string): string {
  if (!ID_RE.test(id)) throw invalid(`${field} ${JSON.stringify(id)} is not a ${kind} id`, field);
  return id;
}

function toNumber(value: bigint, field: string, max: number): number {
  if (value > BigInt(max)) throw invalid(`${field} ${value} is over the limit of ${max}`, field);
  return Number(value);
}

function tooLarge(what: string, size: number | bigint, limit: number, field: string): ApiError {
  return new ApiError('TOO_LARGE', `${what} is ${size} bytes, over the node's limit of ${limit} bytes`, {
    metadata: { field, limitBytes: String(limit) },
  });
}

function accessName(access: Access, field: string): AccessName | undefined {
  switch (access) {
    case Access.UNSPECIFIED:
      return undefined;
    case Access.RO:
      return 'ro';
    case Access.RW:
      return 'rw';
    default:
      throw invalid(`${field} ${access} is not a known access`, field);
  }
}

/** Converts a {@link TaskView} to its wire form. */
export function taskToProto(task: TaskView): Task {
  return create(TaskSchema, {
    id: task.id,
    artifactDigest: task.artifactDigest,
    status: STATUS_TO_PROTO[task.status],
    reason: task.reason ?? '',
    message: task.message ?? '',
    exitCode: task.exitCode,
    createdAtUnixMs: BigInt(Math.trunc(task.createdAtMs)),
    startedAtUnixMs: BigInt(Math.trunc(task.startedAtMs ?? 0)),
    endedAtUnixMs: BigInt(Math.trunc(task.endedAtMs ?? 0)),
    stateResults: task.stateResults.map((r) => ({
      slot: r.slot,
      stateId: r.stateId,
      digest: r.digest,
      bytes: BigInt(r.bytes),
      entries: BigInt(r.entries),
      quotaExceeded: r.quotaExceeded ?? false,
    })),
    traceId: task.traceId ?? '',
    unboundSlots: task.unboundSlots,
    droppedOutputBytes: BigInt(task.droppedOutputBytes ?? 0),
  });
}

/** Converts a {@link StateView} to its wire form. */
export function stateToProto(state: StateView): StateInstance {
  return create(StateInstanceSchema, {
    id: state.id,
    name: state.name ?? '',
    scope: state.scope === 'task' ? StateScope.TASK : StateScope.NAMED,
    stateClass: state.stateClass,
    bytes: BigInt(state.bytes),
    entries: BigInt(state.entries),
    quotaBytes: BigInt(state.quotaBytes),
    quotaEntries: BigInt(state.quotaEntries),
    createdAtUnixMs: BigInt(Math.trunc(state.createdAtMs)),
    expiresAtUnixMs: BigInt(Math.trunc(state.expiresAtMs ?? 0)),
    taskId: state.taskId ?? '',
    lastDigest: state.lastDigest ?? '',
    boundTaskIds: state.boundTaskIds,
  });
}

/** Converts an {@link ArtifactView} to its wire form. */
export function artifactToProto(a: ArtifactView): Artifact {
  return create(ArtifactSchema, {
    digest: a.digest,
    name: a.name,
    version: a.version,
    sizeBytes: BigInt(a.sizeBytes),
    signerKeyIds: a.signerKeyIds,
    stateSlots: a.stateSlots,
    envKeys: a.envKeys,
  });
}

/** Runs a unary handler body and maps whatever it throws, once. */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toConnectError(err);
  }
}

/** Runs a streaming handler body and maps whatever it throws, once. */
async function* mappedStream<T>(gen: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* gen;
  } catch (err) {
    throw toConnectError(err);
  }
}

interface IdempotencyEntry {
  fingerprint: string;
  task: Promise<TaskView>;
}

/** What a durable idempotency store keeps per key: the request's fingerprint and the task it started. */
export interface IdempotencyRecord {
  fingerprint: string;
  taskId: string;
}

/** A durable map of idempotency keys (see {@link NodeServiceDeps.idempotencyStore}); it bounds itself. */
export interface IdempotencyStore {
  get(key: string): IdempotencyRecord | undefined;
  put(key: string, record: IdempotencyRecord): void;
}

/**
 * Implements every NodeService RPC over the given layers. Validation (ids, digests, sizes) and error mapping
 * happen here, once; the layers below see only well-formed requests.
 */
export function createNodeServiceHandlers(deps: NodeServiceDeps): ServiceImpl<typeof NodeService> {
  const limits = resolveLimits(deps.limits);
  const maxKeys = deps.maxIdempotencyKeys ?? 10_000;
  const idempotency = new Map<string, IdempotencyEntry>();
  const streamBuffer = deps.streamBufferItems ?? 1024;
  let tempReady: Promise<unknown> | undefined;
  const tempFile = async (suffix: string): Promise<string> => {
    tempReady ??= mkdir(deps.tempDir, { recursive: true });
    await tempReady;
    return join(deps.tempDir, `${randomUUID()}${suffix}`);
  };

  function bindingSpec(b: { slot: string; stateId: string; access: Access }, field: string): BindingSpec {
    if (b.slot.length === 0 || b.slot.length > 64)
      throw invalid(`${field}.slot ${JSON.stringify(b.slot)} is not a slot name`, `${field}.slot`);
    const access = accessName(b.access, `${field}.access`);
    return {
      slot: b.slot,
      stateId: checkId(b.stateId, `${field}.state_id`, 'state'),
      ...(access ? { access } : {}),
    };
  }

  return {
    async submitTask(req) {
      return mapped(async () => {
        const artifactDigest = checkDigest(req.artifactDigest, 'artifact_digest');
        if (req.stdin.byteLength > limits.maxStdinBytes) {
          throw tooLarge('stdin', req.stdin.byteLength, limits.maxStdinBytes, 'stdin');
        }
        let argsEnvBytes = 0;
        for (const a of req.args) argsEnvBytes += Buffer.byteLength(a) + 1;
        for (const [k, v] of Object.entries(req.env)) {
          if (k.length === 0 || k.includes('=') || k.includes('\0'))
            throw invalid(`env key ${JSON.stringify(k)} is not a valid name`, 'env');
          if (v.includes('\0')) throw invalid(`env value of ${k} contains a NUL byte`, 'env');
          argsEnvBytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 2;
        }
        if (argsEnvBytes > limits.maxArgsEnvBytes) {
          throw tooLarge('args plus env', argsEnvBytes, limits.maxArgsEnvBytes, 'args');
        }
        const spec: SubmitSpec = {
          artifactDigest,
          args: [...req.args],
          env: { ...req.env },
          stdin: req.stdin,
          bindings: req.bindings.map((b, i) => bindingSpec(b, `bindings[${i}]`)),
          ...(req.holdOutput ? { holdOutput: true } : {}),
        };
        if (req.deadlineMs > 0n) spec.deadlineMs = toNumber(req.deadlineMs, 'deadline_ms', limits.maxDeadlineMs);
        if (req.memoryBytes > 0n) spec.memoryBytes = toNumber(req.memoryBytes, 'memory_bytes', MAX_MEMORY_BYTES);
        if (req.traceparent.length > 0) {
          if (!/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(req.traceparent)) {
            throw invalid(`traceparent ${JSON.stringify(req.traceparent)} is not a W3C traceparent`, 'traceparent');
          }
          spec.traceparent = req.traceparent;
        }
        if (req.idempotencyKey.length === 0) {
          return { task: taskToProto(await deps.tasks.submit(spec)) };
        }
        if (req.idempotencyKey.length > 256)
          throw invalid('idempotency_key is longer than 256 characters', 'idempotency_key');
        const fingerprint = fingerprintOf(spec);
        const known = idempotency.get(req.idempotencyKey);
        if (known !== undefined) {
          if (known.fingerprint !== fingerprint) {
            throw new ApiError(
              'IDEMPOTENCY_MISMATCH',
              `idempotency key ${JSON.stringify(req.idempotencyKey)} was used for a different request; use a new key`,
            );
          }
          const first = await known.task;
          return { task: taskToProto(await deps.tasks.get(first.id)) };
        }
        const stored = deps.idempotencyStore?.get(req.idempotencyKey);
        if (stored !== undefined) {
          // Used before this process started: the same request gets the same task, never a second run.
          if (stored.fingerprint !== fingerprint) {
            throw new ApiError(
              'IDEMPOTENCY_MISMATCH',
              `idempotency key ${JSON.stringify(req.idempotencyKey)} was used for a different request; use a new key`,
            );
          }
          try {
            return { task: taskToProto(await deps.tasks.get(stored.taskId)) };
          } catch (err) {
            if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
            throw new ApiError(
              'NOT_FOUND',
              `idempotency key ${JSON.stringify(req.idempotencyKey)} started task ${stored.taskId}, which ended before the node restarted and is no longer known; it is not run again`,
            );
          }
        }
        // Register before awaiting, so a concurrent retry joins this submit instead of starting a second task.
        const task = deps.tasks.submit(spec);
        const entry: IdempotencyEntry = { fingerprint, task };
        idempotency.set(req.idempotencyKey, entry);
        if (idempotency.size > maxKeys) idempotency.delete(idempotency.keys().next().value as string);
        try {
          const view = await task;
          deps.idempotencyStore?.put(req.idempotencyKey, { fingerprint, taskId: view.id });
          return { task: taskToProto(view) };
        } catch (err) {
          // A refused submit ran nothing: the key may be retried.
          if (idempotency.get(req.idempotencyKey) === entry) idempotency.delete(req.idempotencyKey);
          throw err;
        }
      });
    },

    async cancelTask(req) {
      return mapped(async () => {
        const id = checkId(req.taskId, 'task_id', 'task');
        return { task: taskToProto(await deps.tasks.cancel(id, 'cancelled by CancelTask')) };
      });
    },

    async getTask(req) {
      return mapped(async () => {
        const id = checkId(req.taskId, 'task_id', 'task');
        return { task: taskToProto(await deps.tasks.get(id)) };
      });
    },

    async *watchTask(req, ctx: HandlerContext) {
      yield* mappedStream(
        (async function* () {
          const id = checkId(req.taskId, 'task_id', 'task');
          const options = req.includeReceipt ? { includeReceipt: true } : undefined;
          for await (const ev of deps.tasks.watch(id, ctx.signal, options)) {
            if (ev.type === 'status') {
              yield {
                event: { case: 'task' as const, value: taskToProto(ev.task) },
                ...(ev.receipt !== undefined ? { receiptJson: ev.receipt } : {}),
              };
            } else if (ev.type === 'stdout') yield { event: { case: 'stdout' as const, value: ev.data } };
            else if (ev.type === 'stderr') yield { event: { case: 'stderr' as const, value: ev.data } };
            else yield { event: { case: 'dropped' as const, value: BigInt(ev.bytes) } };
          }
        })(),
      );
    },

    async createState(req) {
      return mapped(async () => {
        let scope: 'task' | 'named';
        if (req.scope === StateScope.TASK) scope = 'task';
        else if (req.scope === StateScope.NAMED || req.scope === StateScope.UNSPECIFIED) scope = 'named';
        else throw invalid(`scope ${req.scope} is not a known scope`, 'scope');
        if (scope === 'task' && req.taskId.length === 0)
          throw invalid('a task-scoped instance needs task_id', 'task_id');
        if (req.seedTar.byteLength > limits.maxSeedBytes) {
          throw tooLarge('seed_tar', req.seedTar.byteLength, limits.maxSeedBytes, 'seed_tar');
        }
        const spec = {
          scope,
          ...(req.name ? { name: req.name } : {}),
          ...(req.ttlMs > 0n ? { ttlMs: toNumber(req.ttlMs, 'ttl_ms', Number.MAX_SAFE_INTEGER) } : {}),
          ...(req.quotaBytes > 0n
            ? { quotaBytes: toNumber(req.quotaBytes, 'quota_bytes', Number.MAX_SAFE_INTEGER) }
            : {}),
          ...(req.quotaEntries > 0n
            ? { quotaEntries: toNumber(req.quotaEntries, 'quota_entries', Number.MAX_SAFE_INTEGER) }
            : {}),
          ...(req.taskId ? { taskId: checkId(req.taskId, 'task_id', 'task') } : {}),
        };
        if (req.seedTar.byteLength === 0) return { state: stateToProto(await deps.states.create(spec)) };
        const path = await tempFile('.seed.tar');
        try {
          await writeAll(path, [req.seedTar]);
          return { state: stateToProto(await deps.states.create({ ...spec, seedTarPath: path })) };
        } catch (err) {
          throw hidePath(err, path, 'the uploaded seed');
        } finally {
          await rm(path, { force: true });
        }
      });
    },

    async bindState(req) {
      return mapped(async () => {
        const taskId = checkId(req.taskId, 'task_id', 'task');
        const binding = bindingSpec({ slot: req.slot, stateId: req.stateId, access: req.access }, 'binding');
        return { task: taskToProto(await deps.tasks.bind(taskId, binding)) };
      });
    },

    async deleteState(req) {
      return mapped(async () => {
        await deps.states.delete(checkId(req.stateId, 'state_id', 'state'));
        return {};
      });
    },

    async listStates() {
      return mapped(async () => ({ states: (await deps.states.list()).map(stateToProto) }));
    },

    async *exportState(req, ctx) {
      yield* mappedStream(
        (async function* () {
          const id = checkId(req.stateId, 'state_id', 'state');
          const max = limits.exportChunkBytes;
          for await (const chunk of deps.states.exportTar(id, ctx.signal)) {
            for (let off = 0; off < chunk.byteLength; off += max) {
              yield { chunk: chunk.subarray(off, Math.min(off + max, chunk.byteLength)) };
            }
          }
        })(),
      );
    },

    async importArtifact(requests) {
      return mapped(async () => {
        const iterator = requests[Symbol.asyncIterator]();
        const first = await iterator.next();
        if (first.done || first.value.part.case !== 'header') {
          throw new ApiError('BAD_UPLOAD', 'an upload starts with a header message giving size_bytes, then chunks');
        }
        const declared = first.value.part.value.sizeBytes;
        if (declared === 0n) throw new ApiError('BAD_UPLOAD', 'header.size_bytes is 0: nothing to import');
        if (declared > BigInt(limits.maxArtifactBytes)) {
          throw tooLarge('the artifact upload', declared, limits.maxArtifactBytes, 'header.size_bytes');
        }
        const size = Number(declared);
        const path = await tempFile('.artifact.tar');
        try {
          // Chunks go straight to disk: the node never holds the whole artifact in memory during upload.
          const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
          let received = 0;
          try {
            for (;;) {
              const next = await iterator.next();
              if (next.done) break;
              const part = next.value.part;
              if (part.case !== 'chunk') throw new ApiError('BAD_UPLOAD', 'only the first message may be a header');
              received += part.value.byteLength;
              if (received > size) {
                throw new ApiError('BAD_UPLOAD', `upload is longer than header.size_bytes (${size} bytes)`);
              }
              if (!out.write(part.value)) await new Promise<void>((r) => out.once('drain', r));
            }
          } finally {
            await new Promise<void>((resolve, reject) =>
              out.end((err?: Error | null) => (err ? reject(err) : resolve())),
            );
          }
          if (received !== size) {
            throw new ApiError('BAD_UPLOAD', `upload ended after ${received} of ${size} bytes announced in the header`);
          }
          const result = await deps.artifacts.importTar(path).catch((err: unknown) => {
            throw hidePath(err, path, 'the uploaded artifact');
          });
          return { artifact: artifactToProto(result.artifact), alreadyPresent: result.alreadyPresent };
        } finally {
          await rm(path, { force: true });
        }
      });
    },

    async listArtifacts() {
      return mapped(async () => ({ artifacts: (await deps.artifacts.list()).map(artifactToProto) }));
    },

    async *streamTraces(req, ctx) {
      yield* mappedStream(
        (async function* () {
          let taskId: string | undefined;
          if (req.taskId.length > 0) {
            taskId = checkId(req.taskId, 'task_id', 'task');
            await deps.tasks.get(taskId); // not_found for unknown tasks
          }
          const filter = { ...(taskId !== undefined ? { taskId } : {}), sinceUnixNano: req.sinceUnixNano };
          for await (const { item, dropped } of deps.telemetry.traces.subscribe({
            follow: req.follow,
            bufferItems: streamBuffer,
            filter: (rs) => filterResourceSpans(rs, filter),
            signal: ctx.signal,
          })) {
            yield { resourceSpans: item, dropped: BigInt(dropped) };
          }
        })(),
      );
    },

    async *streamMetrics(req, ctx) {
      yield* mappedStream(
        (async function* () {
          // Metrics are node-wide: no metric carries a task id (one time series per task would be unbounded), so a
          // task filter could only ever answer nothing. Refused rather than silently empty.
          if (req.taskId.length > 0) {
            throw invalid(
              `task_id ${JSON.stringify(req.taskId)}: metrics are node-wide and carry no task id; use StreamTraces for one task's telemetry`,
              'task_id',
            );
          }
          const filter = { sinceUnixNano: req.sinceUnixNano };
          for await (const { item, dropped } of deps.telemetry.metrics.subscribe({
            follow: req.follow,
            bufferItems: streamBuffer,
            filter: (rm) => filterResourceMetrics(rm, filter),
            signal: ctx.signal,
          })) {
            yield { resourceMetrics: item, dropped: BigInt(dropped) };
          }
        })(),
      );
    },

    async getTaskReceipt(req) {
      return mapped(async () => {
        const id = checkId(req.taskId, 'task_id', 'task');
        if (!deps.tasks.receipt) throw new ApiError('UNIMPLEMENTED', 'this node signs no execution receipts');
        const { receiptJson, keyId } = await deps.tasks.receipt(id);
        return { receiptJson, nodeKeyId: keyId };
      });
    },

    async getNodeInfo() {
      return mapped(async () => {
        const s = await deps.status();
        return {
          nodeId: s.nodeId,
          tier: s.tier,
          version: s.version,
          uptimeMs: BigInt(Math.max(0, Date.now() - s.startedAtMs)),
          queueLength: s.queueLength,
          maxQueueLength: s.maxQueueLength,
          poolSize: s.poolSize,
          runningTasks: s.runningTasks,
          retainedTasks: s.retainedTasks,
          artifacts: s.artifacts,
          states: s.states,
          telemetry: create(TelemetryHealthSchema, {
            spansExported: BigInt(s.telemetry.spansExported),
            spansDropped: BigInt(s.telemetry.spansDropped),
            metricExports: BigInt(s.telemetry.metricExports),
            metricExportsFailed: BigInt(s.telemetry.metricExportsFailed),
            streamItemsDropped: BigInt(deps.telemetry.traces.droppedTotal + deps.telemetry.metrics.droppedTotal),
            otlpEndpoint: s.telemetry.otlpEndpoint,
          }),
          stateConflictPolicy: s.stateConflictPolicy,
          limits: create(RequestLimitsSchema, {
            maxArtifactBytes: BigInt(limits.maxArtifactBytes),
            maxStdinBytes: BigInt(limits.maxStdinBytes),
            maxSeedBytes: BigInt(limits.maxSeedBytes),
            maxArgsEnvBytes: BigInt(limits.maxArgsEnvBytes),
            maxDeadlineMs: BigInt(limits.maxDeadlineMs),
            maxMemoryBytes: BigInt(MAX_MEMORY_BYTES),
            maxMessageBytes: BigInt(maxMessageBytes(limits)),
          }),
          outputHoldMs: BigInt(s.outputHoldMs),
          pendingTimeoutMs: BigInt(s.pendingTimeoutMs),
          nodePublicKey: s.nodePublicKeyPem ?? '',
          nodeKeyId: s.nodeKeyId ?? '',
        };
      });
    },
  };
}

/** Registers NodeService on a Connect router: `connectNodeAdapter({ routes: (r) => registerNodeService(r, deps) })`. */
export function registerNodeService(router: ConnectRouter, deps: NodeServiceDeps): ConnectRouter {
  return router.service(NodeService, createNodeServiceHandlers(deps));
}

function fingerprintOf(spec: SubmitSpec): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify([
      spec.artifactDigest,
      spec.args,
      Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
      spec.deadlineMs ?? 0,
      spec.memoryBytes ?? 0,
      spec.bindings,
    ]),
  );
  h.update(spec.stdin);
  return h.digest('hex');
}

/**
 * Replaces the node's temp file path in an error message by what the client sent (`the uploaded seed`): the path
 * means nothing to the client and tells it about the node's file system.
 */
function hidePath(err: unknown, path: string, what: string): unknown {
  if (err instanceof Error && err.message.includes(path)) err.message = err.message.split(path).join(what);
  return err;
}

async function writeAll(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  for (const c of chunks) if (!out.write(c)) await new Promise<void>((r) => out.once('drain', r));
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
