import { CliError } from './errors.js';
import { ExitCode } from './exit-codes.js';

/**
 * The explicit non-goals of the VYR MVO (ARCHITECTURE.md §9) that a user may try from the command line, each with
 * what to do instead. Saying "no" precisely is part of the product: these get `OUT_OF_SCOPE` (exit 64) instead of
 * a parser's "unknown option". Listed in docs/cli.md ("Out of scope").
 */
const MULTI_NODE =
  'multi-node scheduling and placement are out of scope for VYR MVO: a node runs what it is given. Choose the node yourself with --node URL (or VYR_NODE); run one node per machine';
const MESH =
  'service-mesh features (sidecars, L7 routing, inter-service mTLS) are out of scope for VYR MVO: a task is a WASI command with no sockets. Put a proxy in front of your own services; secure a node with --tls-cert/--tls-key and a bearer token';
const STATE_CLASS =
  'only the state class "ephemeral" exists in VYR MVO (node-local, single writer, nothing replicated); replicated, eventual or strongly consistent state needs Raft/CRDTs and is a later phase. Copy state between nodes yourself with `vyr state export` and `vyr state create --from`';

/** Flags (exact names, before `--`) that ask for a non-goal, and the answer. */
const FLAGS: ReadonlyMap<string, string> = new Map([
  ...[
    '--replicas',
    '--placement',
    '--node-selector',
    '--nodes',
    '--affinity',
    '--anti-affinity',
    '--spread',
    '--region',
    '--zone',
    '--join',
    '--peers',
    '--cluster',
    '--schedule',
  ].map((f) => [f, MULTI_NODE] as const),
  ...[
    '--sidecar',
    '--mesh',
    '--service-mesh',
    '--mtls',
    '--route',
    '--ingress',
    '--egress',
    '--expose',
    '--traffic-split',
    '--inject',
  ].map((f) => [f, MESH] as const),
  ...['--consistency', '--replicated', '--replication', '--quorum'].map((f) => [f, STATE_CLASS] as const),
]);

/** Top-level commands a user of an orchestrator or a mesh may try. */
const COMMANDS: ReadonlyMap<string, string> = new Map([
  ...['deploy', 'scale', 'cluster', 'schedule', 'place', 'join'].map((c) => [c, MULTI_NODE] as const),
  ...['mesh', 'sidecar', 'service', 'route'].map((c) => [c, MESH] as const),
]);

/** State classes VYR has (one). */
export const STATE_CLASSES: readonly string[] = ['ephemeral'];

/** The refusal for a state class other than `ephemeral`. */
export function stateClassError(value: string): CliError {
  return new CliError('OUT_OF_SCOPE', `state class ${JSON.stringify(value)}: ${STATE_CLASS}`, ExitCode.INVALID_INPUT);
}

/**
 * Looks at the arguments before `--` (after it, everything belongs to the task) for a request that is an explicit
 * non-goal: a multi-node or placement flag or command, a service-mesh flag or command, a state consistency flag.
 *
 * @returns the `OUT_OF_SCOPE` error to report, or `undefined`.
 */
export function outOfScope(argv: readonly string[]): CliError | undefined {
  const end = argv.indexOf('--');
  const own = end === -1 ? argv : argv.slice(0, end);
  const command = own[firstPositional(own)];
  const answer = command === undefined ? undefined : COMMANDS.get(command);
  if (answer !== undefined)
    return new CliError('OUT_OF_SCOPE', `\`vyr ${command}\`: ${answer}`, ExitCode.INVALID_INPUT);
  for (const arg of own) {
    const flag = arg.split('=')[0]!;
    const answer = FLAGS.get(flag);
    if (answer !== undefined) return new CliError('OUT_OF_SCOPE', `${flag}: ${answer}`, ExitCode.INVALID_INPUT);
  }
  return undefined;
}

/** Index of the first argument that is not a (global) option: the command. */
function firstPositional(args: readonly string[]): number {
  return args.findIndex((a) => !a.startsWith('-'));
}
