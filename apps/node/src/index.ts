// Public API of @vyr/node: the node daemon as a library (createNode) and its `vyr node start` command.

export { createStreamLogger, type NodeCommandContext, registerNodeCommands } from './commands.js';
export { NodeError, type NodeErrorCode } from './errors.js';
export {
  createNode,
  DEFAULT_LISTEN,
  loadNodeId,
  NODE_VERSION,
  type NodeOptions,
  type StartNodeHooks,
  startNode,
  untilSignal,
  type VyrNode,
} from './node.js';
export { isLoopback, parseListen } from './server.js';
export { createNodeTelemetry, type NodeTelemetry, type NodeTelemetryOptions } from './telemetry.js';
export { parseTier, TIERS, type Tier, type TierProfile } from './tiers.js';
