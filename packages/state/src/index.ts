/**
 * `@vyr/state`: the state kernel of a VYR node (ARCHITECTURE.md §4). Declared, explicitly bound, task-scoped state
 * with one state class (`ephemeral`: node-local, on disk) and one consistency class (single writer), and a content
 * digest on every release. Algorithms and on-disk layout: docs/state.md.
 *
 * ## Runtime contract (how `@vyr/runtime` and the node drive the kernel)
 *
 * 1. **Node start.** `const kernel = createStateKernel({ dataDir, logger })`, then
 *    `const { failedTasks } = await kernel.recover()`; record each of those tasks as `FAILED(node_restart)` (with
 *    the `artifactDigest` it was registered with).
 * 2. **Submit.** `kernel.registerTask(taskId, artifact.manifest.state, { artifactDigest })` (the artifact's declared
 *    slots, unchanged).
 *    For each inline binding: `kernel.bind({ instanceId, taskId, slot, access })`. Bind errors are coded
 *    {@link StateError}s to return to the submitter.
 * 3. **PENDING.** The task may leave PENDING when `kernel.isReady(taskId)` is true; or
 *    `await kernel.whenReady(taskId, { timeoutMs, signal })`, which resolves with the mounts, or rejects
 *    `PENDING_TIMEOUT` (end the task with that reason), `TASK_TERMINATED` or `CANCELLED` (when `signal`, the task's
 *    own abort signal, fires). Later `bind_state` calls bind while the
 *    task is PENDING; under the default `wait` policy a bind that conflicts with the single-writer rule queues FIFO.
 * 4. **Run.** `kernel.mounts(taskId)` gives one {@link StateMount} per slot: give the WASI host a preopen per mount
 *    (`guestPath` → `hostPath`); refuse every write when `readOnly`; fail a write with WASI `no-space` when the
 *    total size of regular files under `hostPath` would exceed `quotaBytes` (start the count at `usedBytes`), or the
 *    number of entries would exceed `quotaEntries`. Never follow a symlink out of `hostPath`.
 * 5. **End, whatever the outcome** (success, failure, cancel, deadline, pending timeout), after the guest has stopped:
 *    `const { releases } = await kernel.releaseTask(taskId, { reason })`. Each release carries `digest`, `bytes`,
 *    `entries` and `quotaExceeded` (the kernel re-measures; a guest that got past the quota is recorded here) — put
 *    them on the task result. Task-scoped instances are destroyed; waiters for the released instances proceed.
 *
 * Spans `vyr.state.create`, `vyr.state.bind`, `vyr.state.release` are children of the active context (run the calls
 * inside the task's span context); the `vyr.state.bytes` gauge reports bytes per scope.
 *
 * @packageDocumentation
 */

export { StateError, type StateErrorCode } from './errors.js';
export { createStateKernel, NODE_RESTART_REASON, ORPHANED_REASON, type StateKernel } from './kernel.js';
export { digestTree, type TreeSummary } from './tree.js';
export type {
  BindRequest,
  ConflictPolicy,
  CreateStateRequest,
  ExportRequest,
  ExportResult,
  RecoveryReport,
  RestartedTask,
  StateAccess,
  StateBindingInfo,
  StateClass,
  StateDigest,
  StateInstanceInfo,
  StateKernelOptions,
  StateMount,
  StateRelease,
  StateScope,
  StateSeed,
  StateSlot,
  StateUsage,
  SweepReport,
  TaskBindingStatus,
  TaskReleaseReport,
} from './types.js';
