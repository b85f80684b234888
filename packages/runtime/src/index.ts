// Public API of @vyr/runtime: end-user symbols first, named re-exports only.

export { isRuntimeError, RuntimeError, type RuntimeErrorCode } from './errors.js';
export { createRuntime } from './runtime.js';
export { artifactSourceFromStore } from './source.js';
export type {
  ArtifactSource,
  Mount,
  QuotaRefusal,
  Runtime,
  RuntimeArtifact,
  RuntimeHooks,
  RuntimeOptions,
  RuntimeStats,
  StateBindingRequest,
  StateHookContext,
  StateReleaseContext,
  StateReleaseResult,
  SubmitRequest,
  TaskEvent,
  TaskLimits,
  TaskOutcome,
  TaskReason,
  TaskState,
  TaskStatus,
  TerminalState,
  WatchOptions,
} from './types.js';
