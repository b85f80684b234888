/**
 * What the NodeService handlers need from the layers below, as small interfaces. `apps/node` adapts the real
 * runtime, state kernel and artifact store to them; tests can do the same with their own parts. Keeping the
 * seam here means the wire format (proto) and the layers' TypeScript APIs can evolve independently.
 */

/** Task lifecycle states (ARCHITECTURE.md §3). */
export type TaskStatusName =
  | 'PENDING'
  | 'QUEUED'
  | 'RUNNING'
  | 'SUCCEEDED'
  | 'FAILED'
  | 'CANCELLED'
  | 'DEADLINE_EXCEEDED';

/** Access of a binding. */
export type AccessName = 'ro' | 'rw';

/** A state instance's digest at release, as recorded on a task. */
export interface StateResultView {
  slot: string;
  stateId: string;
  /** `sha256:<hex>`; empty when the content could not be measured. */
  digest: string;
  bytes: number;
  entries: number;
  /**
   * The slot's byte or entry quota was hit: the guest had a write or create refused with ENOSPC, or the content was
   * over the quota at release. Default false.
   */
  quotaExceeded?: boolean;
}

/** A task as the API reports it. Times are epoch milliseconds. */
export interface TaskView {
  id: string;
  artifactDigest: string;
  status: TaskStatusName;
  /** Reason code of a non-success end (EXIT_CODE, TRAP, MEMORY_LIMIT, DEADLINE, CANCELLED, NODE_RESTART, …). */
  reason?: string;
  /** Human-readable detail of the reason. */
  message?: string;
  exitCode?: number;
  createdAtMs: number;
  startedAtMs?: number;
  endedAtMs?: number;
  stateResults: StateResultView[];
  /** 32 lowercase hex chars. */
  traceId?: string;
  /** Declared slots still unbound while PENDING. */
  unboundSlots: string[];
  /**
   * Output bytes watchers of the task missed (read too slowly, attached after the node's retained output window),
   * summed over its watchers; default 0.
   */
  droppedOutputBytes?: number;
}

/** One binding requested at submit or with BindState. */
export interface BindingSpec {
  slot: string;
  stateId: string;
  /** Default: the access the artifact declares for the slot. */
  access?: AccessName;
}

/** A validated SubmitTask request. */
export interface SubmitSpec {
  artifactDigest: string;
  args: string[];
  env: Record<string, string>;
  stdin: Uint8Array;
  /** Absent: the artifact's declared limit or the node default. */
  deadlineMs?: number;
  /** Absent: the artifact's declared limit or the node default. */
  memoryBytes?: number;
  bindings: BindingSpec[];
  /** W3C traceparent of the caller. */
  traceparent?: string;
  /**
   * The submitter will follow the task with `watch` and wants all of its output: hold it for the first watcher and
   * pace the guest to that watcher instead of dropping (proto `SubmitTaskRequest.hold_output`). Default false.
   */
  holdOutput?: boolean;
}

/** One event of a watched task: a status change, a chunk of output, or a gap in the output. */
export type TaskEvent =
  /** `receipt`: on the terminal status only, when the watch asked for it (the task's signed receipt, bundle JSON). */
  | { type: 'status'; task: TaskView; receipt?: string }
  | { type: 'stdout'; data: Uint8Array }
  | { type: 'stderr'; data: Uint8Array }
  /** `bytes` of output this watcher missed at this point of the stream (it read too slowly or attached late). */
  | { type: 'dropped'; bytes: number };

/** Options of {@link TaskService.watch}. */
export interface WatchSpec {
  /** Put the task's receipt on the terminal status event. Default false. */
  includeReceipt?: boolean;
}

/** Task operations. Errors are thrown as the layers' coded errors; the API maps them. */
export interface TaskService {
  /** Admits a task. @throws RuntimeError RESOURCE_EXHAUSTED when the queue is full. */
  submit(spec: SubmitSpec): Promise<TaskView>;
  /** Stops a non-terminal task with `reason`; returns ended tasks unchanged. */
  cancel(taskId: string, reason: string): Promise<TaskView>;
  /** @throws a coded NOT_FOUND error for unknown ids. */
  get(taskId: string): Promise<TaskView>;
  /**
   * Status changes and output of a task until it ends: first the current status (and any retained output), the
   * last event is the terminal status; a `dropped` event wherever this watcher missed output. Ends early when
   * `signal` aborts.
   */
  watch(taskId: string, signal: AbortSignal, options?: WatchSpec): AsyncIterable<TaskEvent>;
  /**
   * The signed execution receipt of an ended task (Sigstore bundle JSON, docs/receipts.md) and the key id that
   * signed it. Optional: a node without receipts leaves it out and GetTaskReceipt answers UNIMPLEMENTED.
   * @throws a coded NOT_FOUND error for unknown ids, ApiError RECEIPT_NOT_READY while the task has not ended.
   */
  receipt?(taskId: string): Promise<{ receiptJson: string; keyId: string }>;
  /** Binds a state instance to a declared slot of a PENDING task; returns the task after binding. */
  bind(taskId: string, binding: BindingSpec): Promise<TaskView>;
}

/** A state instance as the API reports it. */
export interface StateView {
  id: string;
  name?: string;
  scope: 'task' | 'named';
  stateClass: 'ephemeral';
  bytes: number;
  entries: number;
  quotaBytes: number;
  quotaEntries: number;
  createdAtMs: number;
  expiresAtMs?: number;
  taskId?: string;
  lastDigest?: string;
  boundTaskIds: string[];
}

/** A validated CreateState request. */
export interface CreateStateSpec {
  scope: 'task' | 'named';
  name?: string;
  ttlMs?: number;
  quotaBytes?: number;
  quotaEntries?: number;
  taskId?: string;
  /** Path of a tar file to seed from (written by the API from the request's bytes; deleted after the call). */
  seedTarPath?: string;
}

/** State operations. */
export interface StateService {
  create(spec: CreateStateSpec): Promise<StateView>;
  delete(stateId: string): Promise<void>;
  list(): Promise<StateView[]>;
  /** The instance as a deterministic tar archive, in chunks. */
  exportTar(stateId: string, signal: AbortSignal): AsyncIterable<Uint8Array>;
}

/** An artifact as the API reports it. */
export interface ArtifactView {
  digest: string;
  name: string;
  version: string;
  sizeBytes: number;
  signerKeyIds: string[];
  stateSlots: string[];
  envKeys: string[];
}

/** Artifact operations. */
export interface ArtifactService {
  /**
   * Verifies the tar of an OCI image layout at `tarPath` against the node's trust policy and stores it.
   * @throws ArtifactError UNTRUSTED_KEY / UNSIGNED / SIGNATURE_INVALID / MALFORMED_LAYOUT / …
   */
  importTar(tarPath: string): Promise<{ artifact: ArtifactView; alreadyPresent: boolean }>;
  list(): Promise<ArtifactView[]>;
}

/** Counters of the node's OpenTelemetry exporters. */
export interface TelemetryHealthView {
  spansExported: number;
  spansDropped: number;
  metricExports: number;
  metricExportsFailed: number;
  /** OTLP endpoint, empty when export is off. */
  otlpEndpoint: string;
}

/** What GetNodeInfo reports, except the stream counters the API adds itself. */
export interface NodeStatusView {
  nodeId: string;
  tier: string;
  version: string;
  startedAtMs: number;
  queueLength: number;
  maxQueueLength: number;
  poolSize: number;
  runningTasks: number;
  retainedTasks: number;
  artifacts: number;
  states: number;
  telemetry: TelemetryHealthView;
  /** What a conflicting state binding does: `refuse` or `wait`. */
  stateConflictPolicy: string;
  /** How long a `holdOutput` task's output is held for its first watcher, ms. */
  outputHoldMs: number;
  /** How long a PENDING task waits for its state bindings, ms. */
  pendingTimeoutMs: number;
  /** The node's receipt signing key, SPKI PEM; empty when the node signs no receipts. */
  nodePublicKeyPem?: string;
  /** Key id (hex SHA-256 of the SPKI DER) of that key. */
  nodeKeyId?: string;
}
