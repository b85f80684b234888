import { writeFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { resolve } from 'node:path';
import { Http2SessionManager } from '@connectrpc/connect-node';
import { createNodeClient, type NodeClient, type NodeClientOptions } from '@vyr/api/client';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError, toCliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { readInputFile, readSecretFile } from '../files.js';

/** Node URL used when neither `--node` nor `VYR_NODE` is given (docs/cli.md). */
export const DEFAULT_NODE_URL = 'http://127.0.0.1:7070';

/** Largest message the CLI accepts from a node (a WatchTask output chunk, an export chunk), bytes. */
const READ_MAX_BYTES = 64 * 1024 * 1024;

/** Flags every command that talks to a node accepts. */
export interface NodeFlags {
  node?: string;
  tokenFile?: string;
  http2?: boolean;
  ca?: string;
}

/** Adds `--node`, `--token-file`, `--http2` and `--ca` to a command. */
export function withNodeOptions(cmd: Command): Command {
  return cmd
    .option('--node <url>', `node URL (env VYR_NODE; default ${DEFAULT_NODE_URL})`)
    .option('--token-file <file>', 'file holding the bearer token (env VYR_TOKEN holds the token itself)')
    .option('--http2', 'use HTTP/2 (cleartext h2c or TLS) instead of HTTP/1.1; https:// URLs always do', false)
    .option('--ca <file>', 'PEM CA certificate to trust for an https:// node (e.g. its self-signed certificate)');
}

/** A client, where it points, and how to let go of its connections. */
export interface NodeConnection {
  client: NodeClient;
  url: string;
  /**
   * Closes every connection of the client at once, including calls still in flight (an HTTP/2 session, the
   * sockets of an HTTP/1.1 agent). Idempotent. Without it a request the node refused before reading it whole
   * (an oversized stdin) keeps its socket, and the process, alive.
   */
  close(): void;
}

/**
 * Resolves the node URL, token and CA from flags and environment, and creates a client whose connections the CLI
 * owns (an `Http2SessionManager` for HTTP/2, an `http.Agent` for HTTP/1.1), made by `createNodeClient` of
 * `@vyr/api/client`: Connect protocol, binary, bearer token.
 */
export async function connect(ctx: CliContext, flags: NodeFlags): Promise<NodeConnection> {
  const url = (flags.node ?? ctx.env.VYR_NODE ?? DEFAULT_NODE_URL).replace(/\/+$/, '');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(
      'INVALID_ARGUMENT',
      `node URL ${JSON.stringify(url)} is not a URL (e.g. ${DEFAULT_NODE_URL})`,
      ExitCode.USAGE,
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CliError('INVALID_ARGUMENT', `node URL ${url} must start with http:// or https://`, ExitCode.USAGE);
  }
  let token: string | undefined;
  if (flags.tokenFile) token = await readSecretFile(ctx, flags.tokenFile, '--token-file');
  else if (ctx.env.VYR_TOKEN?.trim()) token = ctx.env.VYR_TOKEN.trim();
  const ca = flags.ca ? await readInputFile(ctx, flags.ca, '--ca') : undefined;

  const tls = parsed.protocol === 'https:';
  let close: () => void;
  let transport: Pick<NodeClientOptions, 'httpVersion' | 'sessionManager' | 'agent'>;
  // TLS always negotiates HTTP/2 by ALPN; the node serves both.
  if (flags.http2 || tls) {
    const sessions = new Http2SessionManager(url, {}, ca ? { ca } : {});
    close = () => sessions.abort();
    transport = { httpVersion: '2', sessionManager: sessions };
  } else {
    const agent = new HttpAgent({ keepAlive: true });
    close = () => agent.destroy();
    transport = { httpVersion: '1.1', agent };
  }
  const client = createNodeClient({ baseUrl: url, token, readMaxBytes: READ_MAX_BYTES, ...transport });
  let closed = false;
  return {
    client,
    url,
    close: () => {
      if (closed) return;
      closed = true;
      close();
    },
  };
}

/**
 * Runs `fn` with a client, maps whatever it throws ({@link toCliError}, naming the node), and closes the client's
 * connections afterwards, whether `fn` succeeded or not.
 */
export async function withNode<T>(
  ctx: CliContext,
  flags: NodeFlags,
  fn: (conn: NodeConnection) => Promise<T>,
): Promise<T> {
  const conn = await connect(ctx, flags);
  try {
    return await fn(conn);
  } catch (err) {
    throw toCliError(err, { nodeUrl: conn.url });
  } finally {
    conn.close();
  }
}

/** `vyr node status`: the node's identity, capacity, contents and telemetry health. */
export function registerNodeClientCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  const group =
    program.commands.find((c) => c.name() === 'node') ??
    program.command('node').description('run and inspect a VYR node');
  withNodeOptions(
    group
      .command('status')
      .description("show a node's id, tier, version, queue, pool, contents, telemetry health and receipt key")
      .option('--public-key-out <file>', "write the node's receipt public key (SPKI PEM) to this file"),
  ).action(async (flags: NodeFlags & { publicKeyOut?: string }) =>
    withNode(ctx, flags, async ({ client, url }) => {
      const info = await client.getNodeInfo({});
      if (flags.publicKeyOut !== undefined) {
        if (!info.nodePublicKey) {
          throw new CliError(
            'UNIMPLEMENTED',
            `the node at ${url} signs no receipts (it reports no public key)`,
            ExitCode.UNAVAILABLE,
          );
        }
        await writeFile(resolve(ctx.cwd, flags.publicKeyOut), info.nodePublicKey);
      }
      const t = info.telemetry;
      const value = {
        url,
        nodeId: info.nodeId,
        tier: info.tier,
        version: info.version,
        uptimeMs: Number(info.uptimeMs),
        queueLength: info.queueLength,
        maxQueueLength: info.maxQueueLength,
        poolSize: info.poolSize,
        runningTasks: info.runningTasks,
        retainedTasks: info.retainedTasks,
        artifacts: info.artifacts,
        states: info.states,
        ...(info.nodeKeyId ? { nodeKeyId: info.nodeKeyId, nodePublicKey: info.nodePublicKey } : {}),
        telemetry: {
          otlpEndpoint: t?.otlpEndpoint ?? '',
          spansExported: Number(t?.spansExported ?? 0n),
          spansDropped: Number(t?.spansDropped ?? 0n),
          metricExports: Number(t?.metricExports ?? 0n),
          metricExportsFailed: Number(t?.metricExportsFailed ?? 0n),
          streamItemsDropped: Number(t?.streamItemsDropped ?? 0n),
        },
      };
      const human = [
        `node       ${info.nodeId} (${info.tier}, vyr ${info.version}) at ${url}, up ${Math.round(Number(info.uptimeMs) / 1000)} s`,
        `pool       ${info.runningTasks} of ${info.poolSize} workers busy`,
        `queue      ${info.queueLength} of ${info.maxQueueLength} waiting`,
        `tasks      ${info.retainedTasks} retained`,
        `artifacts  ${info.artifacts}`,
        `states     ${info.states}`,
        `receipts   signed with key ${info.nodeKeyId || 'none'}${flags.publicKeyOut ? ` (public key written to ${flags.publicKeyOut})` : ''}`,
        `telemetry  ${value.telemetry.otlpEndpoint ? `OTLP to ${value.telemetry.otlpEndpoint}` : 'OTLP export off (streams only)'}; spans exported ${value.telemetry.spansExported}, dropped ${value.telemetry.spansDropped}; metric exports ${value.telemetry.metricExports} ok, ${value.telemetry.metricExportsFailed} failed; stream items dropped ${value.telemetry.streamItemsDropped}`,
      ].join('\n');
      emit(ctx, output(), value, human);
    }),
  );
}
