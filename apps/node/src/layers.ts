import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
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
} from '@vyr/api';
import {
  type ArtifactStore,
  type LoadedArtifact,
  readArtifact,
  type StateSlotDeclaration,
  type StoredArtifact,
  type TrustPolicy,
  verifyLoaded,
} from '@vyr/artifact';
import type { ArtifactSource, Mount, Runtime, RuntimeArtifact, RuntimeHooks, TaskStatus } from '@vyr/runtime';
import { type RestartedTask, StateError, type StateInstanceInfo, type StateKernel } from '@vyr/state';

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
}

/** The API's ports over the real layers, plus what the node needs for status. */
export interface NodeLayers {
  tasks: TaskService;
  states: StateService;
  artifacts: ArtifactService;
  runtime: Runtime;
  /** Tasks known to the node now (live and retained finished ones). */
  retainedTaskCount(): number;
  artifactCount(): Promise<number>;
}

const NODE_RESTART = 'NODE_RESTART';
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'DEADLINE_EXCEEDED']);

/**
 * Adapts `@vyr/runtime`, `@vyr/state` and `@vyr/artifact` to the ports of `@vyr/api`. This is the glue of the
 * runtime contract documented in `@vyr/state`: every task is registered with the kernel; inline bindings are checked
 * before a task is created and bound right after; the runtime's bind hook waits for every declared slot and hands the
 * mounts to the task; the release hook records each slot's digest on the task.
 */
export function createNodeLayers(options: NodeLayersOptions): NodeLayers {
  const { store, policy, kernel } = options;
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

  const hooks: RuntimeHooks = {
    async bind(ctx) {
      const slots = slotsOf(ctx.artifact);
      kernel.registerTask(ctx.taskId, slots, { artifactDigest: ctx.digest });
      if (slots.length === 0) return [];
      // ctx.signal aborts when the task ends while PENDING (cancel, deadline, node stop); the runtime waits for this
      // hook before releasing the task's state, so the wait must end with it.
      const mounts = await kernel.whenReady(ctx.taskId, { declaredSlots: slots, signal: ctx.signal });
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
      const report = await kernel.releaseTask(ctx.taskId, {
        reason: ctx.status.reason ?? ctx.status.state,
        quotaRefusedSlots,
      });
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
      const { slots } = await meta(spec.artifactDigest);
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
        ...(spec.traceparent ? { traceparent: spec.traceparent } : {}),
      });
      recent.add(status.id);
      kernel.registerTask(status.id, slots, { artifactDigest: spec.artifactDigest });
      try {
        for (const b of spec.bindings) {
          await kernel.bind({
            instanceId: b.stateId,
            taskId: status.id,
            slot: b.slot,
            ...(b.access ? { access: b.access } : {}),
            declaredSlots: slots,
          });
        }
      } catch (err) {
        // A refused inline binding means the submit failed: the task must not run with part of its state.
        await runtime.cancel(status.id).catch(() => undefined);
        throw err;
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
    watch(taskId: string, signal: AbortSignal): AsyncIterable<TaskEvent> {
      return (async function* () {
        const status = getStatus(taskId);
        if (!status) {
          const known = restarted.get(taskId);
          if (!known) throw notFound(taskId);
          yield { type: 'status' as const, task: known };
          return;
        }
        let first = true;
        for await (const ev of runtime.watch(taskId, { signal })) {
          if (first && ev.type === 'status' && TERMINAL.has(ev.status.state)) {
            // Watching a finished task: the runtime's watch ends at its first (terminal) status event before the
            // retained output, so send that output from runtime.output() first, then the final status.
            const retained = runtime.output(taskId);
            if (retained.stdout.byteLength > 0) yield { type: 'stdout' as const, data: retained.stdout };
            if (retained.stderr.byteLength > 0) yield { type: 'stderr' as const, data: retained.stderr };
            yield { type: 'status' as const, task: view(ev.status) };
            return;
          }
          first = false;
          if (ev.type === 'status') yield { type: 'status' as const, task: view(ev.status) };
          else if (ev.type === 'stdout' || ev.type === 'stderr') yield { type: ev.type, data: ev.data };
          // 'dropped' (this watcher read too slowly) has no wire form; the task's own counters still show it.
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
      await kernel.bind({
        instanceId: binding.stateId,
        taskId,
        slot: binding.slot,
        ...(binding.access ? { access: binding.access } : {}),
        declaredSlots: slots,
      });
      return view(runtime.get(taskId));
    },
  };

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
      // Verify before storing: an untrusted artifact never enters the store.
      const loaded = await readArtifact(tarPath);
      const verification = verifyLoaded(loaded, policy);
      const alreadyPresent = await store.has(loaded.digest);
      const stored: StoredArtifact = await store.import(tarPath);
      const meta = metaOf(loaded, verification.trustedKeyIds, stored.sizeBytes);
      return { artifact: meta.view, alreadyPresent };
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
