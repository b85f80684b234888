import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Context, context } from '@opentelemetry/api';
import {
  ApiError,
  type ArtifactService,
  type ArtifactView,
  type BindingSpec,
  type CreateStateSpec,
  type StateResultView,
  type StateService,
  type StateView,
  type SubmitSpec,
  type TaskEvent,
  type TaskService,
  type TaskView,
  type WatchSpec,
} from '@vyr/api';
import {
  type ArtifactStore,
  type LoadedArtifact,
  type StateSlotDeclaration,
  type StoredArtifact,
  type TrustPolicy,
  verifyLoaded,
} from '@vyr/artifact';
import type {
  ArtifactSource,
  Mount,
  Runtime,
  RuntimeArtifact,
  RuntimeHooks,
  StateBindingRequest,
  TaskStatus,
} from '@vyr/runtime';
import { type RestartedTask, StateError, type StateInstanceInfo, type StateKernel } from '@vyr/state';
import { type ReceiptRecorder, receiptNotReady } from './receipts.js';

/** What the node knows about an artifact without reading its blobs again. */
interface ArtifactMeta {
  view: ArtifactView;
  slots: StateSlotDeclaration[];
}

/** Options of {@link createNodeLayers}. */
export interface NodeLayersOptions {
  store: ArtifactStore;
  policy: TrustPolicy;
  kernel: StateKernel;
  /** Creates the runtime once the layers have built its artifact source and state hooks. */
  createRuntime(source: ArtifactSource, hooks: RuntimeHooks): Runtime;
  /** Scratch directory for exports. */
  tempDir: string;
  /** Tasks that were live when the previous node process died (`failedTasks` of `kernel.recover()`). */
  restartedTasks: readonly RestartedTask[];
  /** State results remembered for finished tasks; default 4,000. */
  maxRememberedResults?: number;
  /** Signs and keeps every task's execution receipt; default: no receipts (GetTaskReceipt is unimplemented). */
  receipts?: ReceiptRecorder;
}

/** The API's ports over the real layers, plus what the node needs for status. */
export interface NodeLayers {
  tasks: TaskService;
  states: StateService;
  artifacts: ArtifactService;
  runtime: Runtime;
  /** Tasks known to the node now (live and retained finished ones). */
  retainedTaskCount(): number;
  /** Resolves when every receipt being signed is stored (call after the runtime closed). */
  flushReceipts(): Promise<void>;
  artifactCount(): Promise<number>;
}

const NODE_RESTART = 'NODE_RESTART';
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'DEADLINE_EXCEEDED']);

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * What the API handlers and the runtime's bind hook of one task share while the task can still be bound. Every
 * state-kernel bind of the task runs inside the hook's trace context (the task's `vyr.state.bind` span), so the
 * kernel's spans nest under `vyr.task` whether the binding came inline with SubmitTask or later with BindState.
 */
interface BindSession {
  /** Resolves with the hook's trace context once the bind hook runs (after prepare). */
  started: Deferred<Context>;
  /** Resolves once every inline binding was granted or queued (`undefined`), or with the first refusal. */
  inline: Deferred<unknown>;
}

/**
 * Adapts `@vyr/runtime`, `@vyr/state` and `@vyr/artifact` to the ports of `@vyr/api`. This is the glue of the
 * runtime contract documented in `@vyr/state`: every task is registered with the kernel; inline bindings are checked
 * before a task is created and bound right after; the runtime's bind hook waits for every declared slot and hands the
 * mounts to the task; the release hook records each slot's digest on the task.
 */
export function createNodeLayers(options: NodeLayersOptions): NodeLayers {
  const { store, policy, kernel, receipts } = options;
  const metas = new Map<string, ArtifactMeta>();
  const runtimeArtifacts = new Map<string, RuntimeArtifact>();
  const results = new Map<string, StateResultView[]>();
  const maxResults = options.maxRememberedResults ?? 4000;
  const restarted = new Map<string, TaskView>();
  const recent = new Set<string>();
  for (const t of options.restartedTasks) {
    restarted.set(t.taskId, {
      id: t.taskId,
      // Recorded with the task when it was registered (empty only for tasks of a registry older than that field).
      artifactDigest: t.artifactDigest ?? '',
      status: 'FAILED',
      reason: NODE_RESTART,
      message: 'the node stopped while the task was live; its task-scoped state was deleted',
      createdAtMs: t.createdAtMs,
      stateResults: [],
      unboundSlots: [],
    });
  }

  function metaOf(loaded: LoadedArtifact, signerKeyIds: string[], sizeBytes: number): ArtifactMeta {
    const meta: ArtifactMeta = {
      view: {
        digest: loaded.digest,
        name: loaded.manifest.name,
        version: loaded.manifest.version,
        sizeBytes,
        signerKeyIds,
        stateSlots: loaded.manifest.state.map((s) => s.name),
        envKeys: [...loaded.manifest.env],
      },
      slots: loaded.manifest.state,
    };
    metas.set(loaded.digest, meta);
    return meta;
  }

  function sizeOf(loaded: LoadedArtifact): number {
    const m = loaded.ociManifest;
    return loaded.manifestBytes.byteLength + m.config.size + m.layers.reduce((n, l) => n + l.size, 0);
  }

  /** Loads, re-hashes and verifies an artifact: the runtime's gate and the source of cached metadata. */
  async function loadVerified(digest: string): Promise<LoadedArtifact> {
    const loaded = await store.get(digest);
    const verification = verifyLoaded(loaded, policy);
    if (!metas.has(digest)) metaOf(loaded, verification.trustedKeyIds, sizeOf(loaded));
    return loaded;
  }

  async function meta(digest: string): Promise<ArtifactMeta> {
    const known = metas.get(digest);
    if (known) return known;
    await loadVerified(digest);
    return metas.get(digest) as ArtifactMeta;
  }

  const source: ArtifactSource = {
    async load(digest: string): Promise<RuntimeArtifact> {
      // Re-hashed and verified on every load (ARCHITECTURE.md §2); the object handed to the runtime is shared per
      // digest, so retained finished tasks do not each keep their own copy of the component bytes.
      const loaded = await loadVerified(digest);
      let artifact = runtimeArtifacts.get(loaded.digest);
      if (!artifact) {
        artifact = { digest: loaded.digest, manifest: loaded.manifest, component: loaded.component };
        runtimeArtifacts.set(loaded.digest, artifact);
      }
      return artifact;
    },
  };

  const slotsOf = (artifact: RuntimeArtifact): StateSlotDeclaration[] =>
    (artifact.manifest as { state?: StateSlotDeclaration[] }).state ?? [];

  /** Tail of the import queue (see `importTar`). */
  let importing: Promise<void> = Promise.resolve();
  const sessions = new Map<string, BindSession>();
  const sessionOf = (taskId: string): BindSession => {
    let session = sessions.get(taskId);
    if (!session) {
      session = { started: deferred(), inline: deferred() };
      sessions.set(taskId, session);
    }
    return session;
  };
  /** Drops the session of a task that has ended (the release hook does it; late RPCs may have made a new one). */
  const forgetIfEnded = (taskId: string): void => {
    const state = getStatus(taskId)?.state;
    if (state === undefined || TERMINAL.has(state)) sessions.delete(taskId);
  };

  const hooks: RuntimeHooks = {
    async bind(ctx) {
      const slots = slotsOf(ctx.artifact);
      const taskId = ctx.taskId;
      const inTask = <T>(fn: () => T): T => context.with(ctx.traceContext, fn);
      kernel.registerTask(taskId, slots, { artifactDigest: ctx.digest });
      const session = sessionOf(taskId);
      session.started.resolve(ctx.traceContext);
      // Inline bindings, in request order. Each is granted at once, refused at once (BINDING_CONFLICT under the
      // `refuse` policy, …: SubmitTask answers with that error), or queued behind the current holder (`wait`
      // policy: SubmitTask answers PENDING and the task starts once the holder releases).
      const grants: Promise<unknown>[] = [];
      try {
        for (const b of (ctx.request.stateBindings ?? []) as readonly StateBindingRequest[]) {
          let queued = false;
          const grant = inTask(() =>
            kernel.bind({
              instanceId: b.instanceId,
              taskId,
              slot: b.slot,
              ...(b.access ? { access: b.access } : {}),
              declaredSlots: slots,
              signal: ctx.signal,
              onQueued: () => {
                queued = true;
              },
            }),
          );
          grant.catch(() => undefined); // observed below (at once, or through queuedFailure)
          if (!queued) await grant;
          grants.push(grant);
        }
      } catch (err) {
        session.inline.resolve(err);
        throw err;
      }
      session.inline.resolve(undefined);
      if (slots.length === 0) return [];
      // A queued bind that fails (its pending timeout, the task cancelled) ends the wait at once.
      const queuedFailure = new Promise<never>((_, reject) => {
        for (const g of grants) g.catch(reject);
      });
      queuedFailure.catch(() => undefined);
      // ctx.signal aborts when the task ends while PENDING (cancel, deadline, node stop): the runtime waits for this
      // hook before releasing the task's state, so the wait ends with it. A slot still unbound after the kernel's
      // pending timeout rejects PENDING_TIMEOUT, which the runtime reports as the task's reason.
      const mounts = await Promise.race([
        inTask(() => kernel.whenReady(taskId, { declaredSlots: slots, signal: ctx.signal })),
        queuedFailure,
      ]);
      return mounts.map(
        (m): Mount => ({
          guestPath: m.guestPath,
          hostPath: m.hostPath,
          readOnly: m.readOnly,
          quotaBytes: m.quotaBytes,
          quotaEntries: m.quotaEntries,
          usedEntries: m.usedEntries,
        }),
      );
    },
    async release(ctx) {
      // Writes the WASI host refused past a quota, by the slot mounted at that guest path: the kernel records them.
      const refusedPaths = new Set(ctx.status.quotaExceeded.map((q) => q.guestPath));
      const quotaRefusedSlots = kernel
        .mounts(ctx.taskId)
        .filter((m) => refusedPaths.has(m.guestPath))
        .map((m) => m.slot);
      sessions.delete(ctx.taskId);
      receipts?.noteBefore(ctx.taskId, kernel.mounts(ctx.taskId));
      const report = await context.with(ctx.traceContext, () =>
        kernel.releaseTask(ctx.taskId, { reason: ctx.status.reason ?? ctx.status.state, quotaRefusedSlots }),
      );
      const list: StateResultView[] = report.releases
        .filter((r) => r.slot !== undefined)
        .map((r) => ({
          slot: r.slot as string,
          stateId: r.instanceId,
          digest: r.digest ?? '',
          bytes: r.bytes,
          entries: r.entries,
          quotaExceeded: r.quotaExceeded,
        }));
      results.set(ctx.taskId, list);
      if (results.size > maxResults) results.delete(results.keys().next().value as string);
      const attributes: Record<string, string> = {};
      for (const r of list) attributes[`vyr.state.digest.${r.slot}`] = r.digest;
      return { attributes };
    },
  };

  const runtime = options.createRuntime(source, hooks);

  function view(status: TaskStatus): TaskView {
    let unboundSlots: string[] = [];
    if (status.state === 'PENDING') {
      try {
        unboundSlots = kernel.taskStatus(status.id).missingSlots;
      } catch {
        unboundSlots = [];
      }
    }
    return {
      id: status.id,
      artifactDigest: status.digest,
      status: status.state,
      ...(status.reason !== undefined ? { reason: status.reason } : {}),
      ...(status.message !== undefined ? { message: status.message } : {}),
      ...(status.exitCode !== undefined ? { exitCode: status.exitCode } : {}),
      createdAtMs: status.createdAt,
      ...(status.startedAt !== undefined ? { startedAtMs: status.startedAt } : {}),
      ...(status.endedAt !== undefined ? { endedAtMs: status.endedAt } : {}),
      stateResults: results.get(status.id) ?? [],
      ...(status.traceId !== undefined ? { traceId: status.traceId } : {}),
      unboundSlots,
      droppedOutputBytes: status.missedOutputBytes,
    };
  }

  function getStatus(taskId: string): TaskStatus | undefined {
    try {
      return runtime.get(taskId);
    } catch (err) {
      if ((err as { code?: string }).code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  function notFound(taskId: string): ApiError {
    return new ApiError('NOT_FOUND', `no task ${taskId} on this node (finished tasks are kept for a while only)`, {
      metadata: { taskId },
    });
  }

  function checkBinding(slots: readonly StateSlotDeclaration[], b: BindingSpec): void {
    const slot = slots.find((s) => s.name === b.slot);
    if (!slot) {
      throw new StateError(
        'UNDECLARED_SLOT',
        `slot ${JSON.stringify(b.slot)} is not declared by the artifact (declared: ${slots.map((s) => s.name).join(', ') || 'none'})`,
      );
    }
    if (b.access === 'rw' && slot.access === 'ro') {
      throw new StateError('ACCESS_WIDER_THAN_DECLARED', `slot ${b.slot} is declared ro; rw was requested`);
    }
    kernel.get(b.stateId); // NOT_FOUND for unknown instances, before any task exists
  }

  const tasks: TaskService = {
    async submit(spec: SubmitSpec): Promise<TaskView> {
      const { slots, view: artifactView } = await meta(spec.artifactDigest);
      const seen = new Set<string>();
      for (const b of spec.bindings) {
        if (seen.has(b.slot))
          throw new StateError('SLOT_ALREADY_BOUND', `slot ${b.slot} is bound twice in the request`);
        seen.add(b.slot);
        checkBinding(slots, b);
      }
      const status = await runtime.submit({
        digest: spec.artifactDigest,
        args: spec.args,
        env: spec.env,
        stdin: spec.stdin,
        limits: {
          ...(spec.deadlineMs !== undefined ? { deadlineMs: spec.deadlineMs } : {}),
          ...(spec.memoryBytes !== undefined ? { memoryBytes: spec.memoryBytes } : {}),
        },
        // Bound by the runtime's bind hook, inside the task's trace (see BindSession).
        stateBindings: spec.bindings.map((b) => ({
          slot: b.slot,
          instanceId: b.stateId,
          ...(b.access ? { access: b.access } : {}),
        })),
        ...(spec.traceparent ? { traceparent: spec.traceparent } : {}),
        ...(spec.holdOutput ? { holdOutput: true } : {}),
      });
      recent.add(status.id);
      if (receipts) {
        // The draft is on disk before the task can run: a crash from here on still yields a receipt on restart.
        receipts.draft({
          status,
          artifact: { name: artifactView.name, version: artifactView.version },
          args: spec.args,
          env: spec.env,
          stdin: spec.stdin,
          bindings: spec.bindings.map((b) => ({
            slot: b.slot,
            stateId: b.stateId,
            access: b.access ?? slots.find((s) => s.name === b.slot)?.access ?? 'rw',
          })),
        });
        receipts.track(status.id, runtime.wait(status.id), () => results.get(status.id) ?? []);
      }
      try {
        // Registered now, not only when the hook runs after prepare, so a crash in between still reports it.
        kernel.registerTask(status.id, slots, { artifactDigest: spec.artifactDigest });
      } catch (err) {
        // Already ended and released (a prepare that failed at once): nothing left to register.
        if ((err as { code?: string }).code !== 'TASK_TERMINATED') throw err;
      }
      if (spec.bindings.length > 0) {
        try {
          // The answer waits until each inline binding is granted or queued, or one is refused: a refused binding
          // fails the submit (the task ends FAILED(STATE_BIND_FAILED) and never runs with part of its state).
          const refused = await Promise.race([
            sessionOf(status.id).inline.promise,
            runtime.wait(status.id).then(() => undefined),
          ]);
          if (refused !== undefined) throw refused;
        } finally {
          forgetIfEnded(status.id);
        }
      }
      return view(runtime.get(status.id));
    },
    async cancel(taskId: string): Promise<TaskView> {
      const known = restarted.get(taskId);
      if (known && !getStatus(taskId)) return known;
      return view(await runtime.cancel(taskId));
    },
    async get(taskId: string): Promise<TaskView> {
      const status = getStatus(taskId);
      if (status) return view(status);
      const known = restarted.get(taskId);
      if (known) return known;
      throw notFound(taskId);
    },
    watch(taskId: string, signal: AbortSignal, watchOptions?: WatchSpec): AsyncIterable<TaskEvent> {
      const withReceipt = watchOptions?.includeReceipt === true && receipts !== undefined;
      const receiptOf = async (id: string): Promise<{ receipt?: string }> => {
        const receipt = withReceipt ? await receipts.receipt(id) : undefined;
        return receipt !== undefined ? { receipt } : {};
      };
      return (async function* () {
        const status = getStatus(taskId);
        if (!status) {
          const known = restarted.get(taskId);
          if (!known) throw notFound(taskId);
          yield { type: 'status' as const, task: known, ...(await receiptOf(taskId)) };
          return;
        }
        // The runtime replays what it retains (a finished task: its output, then its terminal status), says where this
        // watcher missed output (`dropped`: it attached after older output was no longer retained, or read too
        // slowly), and paces the guest to the first watcher of a `holdOutput` task. This generator is pulled only as
        // fast as the transport writes (connect awaits each write), so a slow client is a slow watcher.
        for await (const ev of runtime.watch(taskId, { signal })) {
          if (ev.type === 'status') {
            // The terminal status is the last event: it carries the receipt when asked (signed right after it).
            const receipt = TERMINAL.has(ev.status.state) ? await receiptOf(taskId) : {};
            yield { type: 'status' as const, task: view(ev.status), ...receipt };
          } else if (ev.type === 'dropped') yield { type: 'dropped' as const, bytes: ev.bytes };
          else yield { type: ev.type, data: ev.data };
        }
      })();
    },
    async bind(taskId: string, binding: BindingSpec): Promise<TaskView> {
      const status = getStatus(taskId);
      if (!status) {
        if (restarted.has(taskId))
          throw new StateError('TASK_TERMINATED', `task ${taskId} ended with the node restart`);
        throw notFound(taskId);
      }
      if (status.state !== 'PENDING') {
        throw new StateError(
          'TASK_TERMINATED',
          `task ${taskId} is ${status.state}; state can be bound only while a task is PENDING`,
        );
      }
      const { slots } = await meta(status.digest);
      checkBinding(slots, binding);
      let parent: Context | undefined;
      try {
        // The bind runs in the task's trace, under its vyr.state.bind span, once the bind hook has started.
        parent = await Promise.race([sessionOf(taskId).started.promise, runtime.wait(taskId).then(() => undefined)]);
      } finally {
        forgetIfEnded(taskId);
      }
      if (parent === undefined) {
        const ended = getStatus(taskId);
        throw new StateError(
          'TASK_TERMINATED',
          `task ${taskId} ended (${ended?.state ?? 'gone'}${ended?.reason ? `, ${ended.reason}` : ''}) before its state could be bound`,
        );
      }
      let queued = false;
      const grant = context.with(parent, () =>
        kernel.bind({
          instanceId: binding.stateId,
          taskId,
          slot: binding.slot,
          ...(binding.access ? { access: binding.access } : {}),
          declaredSlots: slots,
          onQueued: () => {
            queued = true;
          },
        }),
      );
      // Queued behind a holder (`wait` policy): answered now, with the slot still unbound; the task starts when the
      // bind is granted, or ends PENDING_TIMEOUT if it never is (the bind hook's wait reports it).
      const access = binding.access ?? slots.find((s) => s.name === binding.slot)?.access ?? 'rw';
      const noteBinding = () => receipts?.noteBinding(taskId, { slot: binding.slot, stateId: binding.stateId, access });
      if (queued) grant.then(noteBinding, () => undefined);
      else {
        await grant;
        noteBinding();
        // The last slot bound: the bind hook hands the mounts to the runtime, which queues the task. Answer once it
        // has left PENDING (QUEUED, RUNNING or already ended), as the API promises.
        let missing: string[] = [];
        try {
          missing = kernel.taskStatus(taskId).missingSlots;
        } catch {
          missing = [];
        }
        if (missing.length === 0) {
          for await (const ev of runtime.watch(taskId, { statusOnly: true })) {
            if (ev.type === 'status' && ev.status.state !== 'PENDING') break;
          }
        }
      }
      return view(runtime.get(taskId));
    },
  };

  if (receipts) {
    tasks.receipt = async (taskId: string) => {
      const status = getStatus(taskId);
      if (status && !TERMINAL.has(status.state)) throw receiptNotReady(taskId, status.state);
      const receipt = await receipts.receipt(taskId);
      if (receipt === undefined) {
        if (status || restarted.has(taskId)) {
          throw new ApiError(
            'NOT_FOUND',
            `task ${taskId} has no receipt on this node (it could not be signed; see the node log)`,
            {
              metadata: { taskId },
            },
          );
        }
        throw notFound(taskId);
      }
      return { receiptJson: receipt, keyId: receipts.keyId };
    };
  }

  function stateView(info: StateInstanceInfo): StateView {
    return {
      id: info.id,
      ...(info.name !== undefined ? { name: info.name } : {}),
      scope: info.scope,
      stateClass: info.class,
      bytes: info.bytes,
      entries: info.entries,
      quotaBytes: info.quotaBytes,
      quotaEntries: info.quotaEntries,
      createdAtMs: info.createdAtMs,
      ...(info.expiresAtMs !== undefined ? { expiresAtMs: info.expiresAtMs } : {}),
      ...(info.taskId !== undefined ? { taskId: info.taskId } : {}),
      ...(info.digest !== undefined ? { lastDigest: info.digest } : {}),
      boundTaskIds: [...new Set(info.bindings.map((b) => b.taskId))],
    };
  }

  const states: StateService = {
    async create(spec: CreateStateSpec): Promise<StateView> {
      if (spec.scope === 'task' && spec.taskId !== undefined) {
        // A task-scoped instance lives and dies with its task: it must name a task of this node that has not ended,
        // or nothing would ever delete it.
        const status = getStatus(spec.taskId);
        if (!status) {
          if (restarted.has(spec.taskId)) {
            throw new StateError('TASK_TERMINATED', `task ${spec.taskId} ended with the node restart`);
          }
          throw notFound(spec.taskId);
        }
        if (TERMINAL.has(status.state)) {
          throw new StateError(
            'TASK_TERMINATED',
            `task ${spec.taskId} is ${status.state}; a task-scoped instance needs a task that has not ended`,
          );
        }
      }
      const info = await kernel.create({
        scope: spec.scope,
        ...(spec.taskId !== undefined ? { taskId: spec.taskId } : {}),
        ...(spec.name !== undefined ? { name: spec.name } : {}),
        ...(spec.ttlMs !== undefined ? { ttlMs: spec.ttlMs } : {}),
        ...(spec.quotaBytes !== undefined ? { quotaBytes: spec.quotaBytes } : {}),
        ...(spec.quotaEntries !== undefined ? { quotaEntries: spec.quotaEntries } : {}),
        ...(spec.seedTarPath !== undefined ? { seed: { tar: spec.seedTarPath } } : {}),
      });
      return stateView(info);
    },
    async delete(stateId: string): Promise<void> {
      await kernel.delete(stateId);
    },
    async list(): Promise<StateView[]> {
      return kernel.list().map(stateView);
    },
    exportTar(stateId: string, signal: AbortSignal): AsyncIterable<Uint8Array> {
      return (async function* () {
        kernel.get(stateId);
        await mkdir(options.tempDir, { recursive: true });
        const out = join(options.tempDir, `${randomUUID()}.export.tar`);
        try {
          await kernel.export({ instanceId: stateId, out, format: 'tar' });
          for await (const chunk of createReadStream(out, { highWaterMark: 256 * 1024, signal })) {
            yield chunk as Buffer;
          }
        } finally {
          await rm(out, { force: true });
        }
      })();
    },
  };

  const artifacts: ArtifactService = {
    async importTar(tarPath: string) {
      // One copy of the artifact in memory at a time: the store reads and re-hashes the upload, then the stored copy
      // is read back and verified (every load re-hashes and verifies too, so nothing runs from it before). A
      // refused artifact that was not in the store before is removed again (its blobs collected). Imports are
      // serialized so a refusal never removes what a concurrent import of the same digest stored.
      const previous = importing;
      let done!: () => void;
      importing = new Promise<void>((r) => {
        done = r;
      });
      await previous;
      try {
        const before = new Set((await store.list()).map((a) => a.digest));
        const stored: StoredArtifact = await store.import(tarPath);
        const alreadyPresent = before.has(stored.digest);
        let loaded: LoadedArtifact | undefined = await store.get(stored.digest);
        let verification: ReturnType<typeof verifyLoaded>;
        try {
          verification = verifyLoaded(loaded, policy);
        } catch (err) {
          loaded = undefined;
          if (!alreadyPresent) {
            await store.remove(stored.digest);
            await store.gc().catch(() => undefined);
          }
          throw err;
        }
        const meta = metaOf(loaded, verification.trustedKeyIds, stored.sizeBytes);
        return { artifact: meta.view, alreadyPresent };
      } finally {
        done();
      }
    },
    async list(): Promise<ArtifactView[]> {
      const out: ArtifactView[] = [];
      for (const stored of await store.list()) {
        let meta = metas.get(stored.digest);
        if (!meta) {
          try {
            meta = await (async () => {
              await loadVerified(stored.digest);
              return metas.get(stored.digest) as ArtifactMeta;
            })();
          } catch {
            // Stored but no longer trusted (trust set changed) or damaged: list it without signers.
            out.push({
              digest: stored.digest,
              name: stored.name,
              version: stored.version,
              sizeBytes: stored.sizeBytes,
              signerKeyIds: [],
              stateSlots: [],
              envKeys: [],
            });
            continue;
          }
        }
        out.push({ ...meta.view, sizeBytes: stored.sizeBytes });
      }
      return out;
    },
  };

  return {
    tasks,
    states,
    artifacts,
    runtime,
    async flushReceipts() {
      await receipts?.flush();
    },
    retainedTaskCount() {
      let n = 0;
      for (const id of recent) {
        if (getStatus(id)) n++;
        else recent.delete(id);
      }
      return n + restarted.size;
    },
    async artifactCount() {
      return (await store.list()).length;
    },
  };
}
