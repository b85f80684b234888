import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { Logger, LogLevel } from '@vyr/telemetry';
import { type Command, Option } from 'commander';
import { NodeError, nodeExitCode } from './errors.js';
import { DEFAULT_LISTEN, startNode, untilSignal, type VyrNode } from './node.js';
import { checkTlsPair } from './server.js';
import { parseTier } from './tiers.js';

/**
 * The parts of `@vyr/cli`'s `CliContext` the node commands use. Declared structurally so `@vyr/node` does not
 * depend on `@vyr/cli` (ARCHITECTURE.md §1: apps/cli composes both); a `CommandRegistrar` accepts this function.
 */
export interface NodeCommandContext {
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  setExitCode(code: number): void;
}

/** A logger writing one line per event to `out`: JSON with `--json`, `level message k=v` otherwise. */
export function createStreamLogger(out: Writable, json: boolean, minLevel: LogLevel = 'info'): Logger {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const write = (level: LogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (order[level] < order[minLevel]) return;
    if (json) {
      out.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
    } else {
      const extra = Object.entries(fields ?? {})
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      out.write(`${level} ${message}${extra ? ` ${extra}` : ''}\n`);
    }
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}

async function readSecretFile(path: string, what: string): Promise<string> {
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'FILE_UNREADABLE';
    throw new NodeError(code, `cannot read ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (text.length === 0) throw new NodeError('INVALID_FILE', `${what} ${path} is empty`);
  return text;
}

interface StartFlags {
  tier: string;
  dataDir: string;
  listen: string;
  trust: string[];
  otlp?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  allowUnsigned: boolean;
  nodeKey?: string;
  poolSize?: string;
  maxQueue?: string;
  maxStdinBytes?: string;
  maxSeedBytes?: string;
  metricIntervalMs?: string;
  streamBuffer?: string;
  stateConflict: 'wait' | 'refuse';
  pendingTimeoutMs?: string;
  logLevel: LogLevel;
}

/** Writes a refused start as `PROG: CODE: message` (and a JSON error object on stdout with `--json`). */
function reportStartError(ctx: NodeCommandContext, program: string, json: boolean, err: unknown): void {
  const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  if (json) ctx.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  ctx.stderr.write(`${program}: ${code}: ${message}\n`);
}

function positiveInt(value: string | undefined, flag: string, maxDigits = 6): number | undefined {
  if (value === undefined) return undefined;
  if (!new RegExp(`^[1-9]\\d{0,${maxDigits - 1}}$`).test(value))
    throw new NodeError('INVALID_ARGUMENT', `${flag} ${JSON.stringify(value)} is not a positive integer`);
  return Number(value);
}

/**
 * Registers `vyr node start` (the daemon) under the `node` command group, creating the group if the CLI has not
 * (the CLI contributes `vyr node status`, which talks to a node through the API).
 *
 * `vyr node start` prints one JSON line on stdout once it listens — `{"event":"listening","url":…,"nodeId":…}` —
 * logs to stderr, and on SIGTERM/SIGINT stops gracefully (live tasks cancelled, telemetry flushed) and exits 0. A
 * refused start prints `PROG: CODE: message` on stderr and sets the exit code of its `NodeErrorCode`
 * (`NODE_EXIT_CODES`, docs/cli.md) itself, so both the `vyr` and the `vyr-node` binary exit with it.
 */
export function registerNodeCommands(program: Command, ctx: NodeCommandContext, output: () => { json: boolean }): void {
  const group =
    program.commands.find((c) => c.name() === 'node') ??
    program.command('node').description('run and inspect a VYR node');
  group
    .command('start')
    .description('start a node: serve NodeService over Connect, gRPC and gRPC-Web until SIGTERM')
    .addOption(
      new Option('--tier <tier>', 'profile of defaults').choices(['laptop', 'edge', 'cloud']).default('laptop'),
    )
    .requiredOption('--data-dir <dir>', 'data directory (artifact store, state, cache, node id)')
    .option('--listen <host:port>', 'address to listen on (port 0 picks one)', DEFAULT_LISTEN)
    .option('--trust <pub...>', 'trusted public key (SPKI PEM); repeatable', [])
    .option(
      '--otlp <url>',
      'OTLP/HTTP endpoint for traces and metrics (edge default: http://127.0.0.1:4318); "none" turns export off',
    )
    .option('--token-file <file>', 'file holding the bearer token clients must send (required off loopback)')
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS (needs --tls-key)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--allow-unsigned', 'run unsigned artifacts (laptop tier only; never the default)', false)
    .option(
      '--node-key <file>',
      'PKCS#8 PEM ECDSA P-256 key to sign execution receipts with (default: DATA_DIR/node-key/vyr.key, made on first start)',
    )
    .option('--pool-size <n>', "worker threads (default: the tier's)")
    .option('--max-queue <n>', "tasks allowed to wait before submit answers resource_exhausted (default: the tier's)")
    .option('--max-stdin-bytes <n>', 'largest stdin of one task, in bytes (default 8388608 = 8 MiB)')
    .option('--max-seed-bytes <n>', 'largest state seed (`state create --from`), in bytes (default 33554432 = 32 MiB)')
    .option('--metric-interval-ms <ms>', "metric collection period in ms (default: the tier's)")
    .option(
      '--stream-buffer <n>',
      'span/metric batches buffered per stream subscriber before the oldest are dropped',
      '1024',
    )
    .addOption(
      new Option(
        '--state-conflict <policy>',
        'a state binding that conflicts with the single writer: refuse it (failed_precondition) or wait in FIFO order',
      )
        .choices(['refuse', 'wait'])
        .default('refuse'),
    )
    .option(
      '--pending-timeout-ms <ms>',
      'a task PENDING longer than this for its state ends FAILED(PENDING_TIMEOUT)',
      '300000',
    )
    .addOption(
      new Option('--log-level <level>', 'stderr log level').choices(['debug', 'info', 'warn', 'error']).default('info'),
    )
    .action(async (flags: StartFlags, command: Command) => {
      const json = output().json;
      let root: Command = command;
      while (root.parent) root = root.parent;
      try {
        await start(flags, json);
      } catch (err) {
        reportStartError(ctx, root.name(), json, err);
        ctx.setExitCode(nodeExitCode(err));
      }
    });

  async function start(flags: StartFlags, json: boolean): Promise<void> {
    const logger = createStreamLogger(ctx.stderr, json, flags.logLevel);
    if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined)) {
      throw new NodeError('INVALID_ARGUMENT', '--tls-cert and --tls-key go together');
    }
    const token = flags.tokenFile ? await readSecretFile(resolve(ctx.cwd, flags.tokenFile), 'token file') : undefined;
    let tls: { cert: Buffer; key: Buffer } | undefined;
    if (flags.tlsCert && flags.tlsKey) {
      const certPath = resolve(ctx.cwd, flags.tlsCert);
      const keyPath = resolve(ctx.cwd, flags.tlsKey);
      tls = {
        cert: Buffer.from(await readSecretFile(certPath, 'TLS certificate')),
        key: Buffer.from(await readSecretFile(keyPath, 'TLS key')),
      };
      checkTlsPair(tls, { cert: `TLS certificate ${certPath}`, key: `TLS key ${keyPath}` });
    }
    const poolSize = positiveInt(flags.poolSize, '--pool-size');
    const maxQueueLength = positiveInt(flags.maxQueue, '--max-queue');
    const maxStdinBytes = positiveInt(flags.maxStdinBytes, '--max-stdin-bytes', 10);
    const maxSeedBytes = positiveInt(flags.maxSeedBytes, '--max-seed-bytes', 10);
    const metricIntervalMs = positiveInt(flags.metricIntervalMs, '--metric-interval-ms');
    const streamBufferItems = positiveInt(flags.streamBuffer, '--stream-buffer');
    const statePendingTimeoutMs = positiveInt(flags.pendingTimeoutMs, '--pending-timeout-ms', 10);
    const signal = untilSignal();
    const node: VyrNode = await startNode(
      {
        tier: parseTier(flags.tier),
        dataDir: resolve(ctx.cwd, flags.dataDir),
        listen: flags.listen,
        trust: flags.trust.map((p) => resolve(ctx.cwd, p)),
        allowUnsigned: flags.allowUnsigned,
        ...(flags.nodeKey !== undefined ? { nodeKeyPath: resolve(ctx.cwd, flags.nodeKey) } : {}),
        ...(flags.otlp !== undefined ? { otlpEndpoint: flags.otlp === 'none' ? null : flags.otlp } : {}),
        ...(token ? { token } : {}),
        ...(tls ? { tls } : {}),
        ...(poolSize ? { poolSize } : {}),
        ...(maxQueueLength ? { maxQueueLength } : {}),
        ...(metricIntervalMs ? { metricIntervalMs } : {}),
        ...(maxStdinBytes || maxSeedBytes
          ? { limits: { ...(maxStdinBytes ? { maxStdinBytes } : {}), ...(maxSeedBytes ? { maxSeedBytes } : {}) } }
          : {}),
        ...(streamBufferItems ? { streamBufferItems } : {}),
        stateConflictPolicy: flags.stateConflict,
        ...(statePendingTimeoutMs ? { statePendingTimeoutMs } : {}),
        logger,
      },
      {
        until: signal.then((sig) => logger.info('stopping', { signal: sig })),
        onListening: (n) =>
          ctx.stdout.write(
            `${JSON.stringify({
              event: 'listening',
              url: n.url,
              listen: n.listen,
              nodeId: n.nodeId,
              tier: n.tier,
              pid: process.pid,
              restartedTasks: n.restartedTaskIds.length,
              nodeKeyId: n.nodeKey.keyId,
            })}\n`,
          ),
      },
    );
    ctx.stdout.write(`${JSON.stringify({ event: 'stopped', nodeId: node.nodeId, signal: await signal })}\n`);
    ctx.setExitCode(0);
  }
}
