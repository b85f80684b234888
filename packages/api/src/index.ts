// Public API of @vyr/api: the NodeService handlers over the runtime, state and artifact layers, and the one place
// where their errors become Connect codes. The client is on the `@vyr/api/client` subpath.

export { createBearerAuthInterceptor } from './auth.js';
export { ApiError, type ApiErrorCode, connectCodeFor, ERROR_CODE_HEADER, toConnectError } from './errors.js';
export {
  createFeed,
  type Feed,
  type FeedDelivery,
  type FeedOptions,
  type SubscribeOptions,
} from './feed.js';
export {
  artifactToProto,
  createNodeServiceHandlers,
  type IdempotencyRecord,
  type IdempotencyStore,
  maxMessageBytes,
  type NodeServiceDeps,
  type RequestLimits,
  registerNodeService,
  resolveLimits,
  stateToProto,
  type TelemetryFeeds,
  taskToProto,
} from './handlers.js';
export { answerMalformedAsInvalid, createMalformedMessageInterceptor } from './malformed.js';
export {
  filterResourceMetrics,
  filterResourceSpans,
  type MetricFilter,
  type SpanFilter,
  TASK_ID_ATTRIBUTE,
} from './otlp-filter.js';
export type {
  AccessName,
  ArtifactService,
  ArtifactView,
  BindingSpec,
  CreateStateSpec,
  NodeStatusView,
  StateResultView,
  StateService,
  StateView,
  SubmitSpec,
  TaskEvent,
  TaskService,
  TaskStatusName,
  TaskView,
  TelemetryHealthView,
  WatchSpec,
} from './ports.js';
