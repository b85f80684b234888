import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createNodeClient, describeCallError, type NodeCallError, type NodeClient } from '@vyr/api/client';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';

/** Node URL used when neither `--node` nor `VYR_NODE` is given (docs/cli.md). */
export const DEFAULT_NODE_URL = 'http://127.0.0.1:7070';

/** Flags every command that talks to a node accepts. */
export interface NodeFlags {
  node?: string;
  tokenFile?: string;
  http2?: boolean;
  ca?: string;
}

/** Adds `--node`, `--token-file` and `--http2` to a command. */
export function withNodeOptions(cmd: Command): Command {
  return cmd
    .option('--node <url>', `node URL (env VYR_NODE; default ${DEFAULT_NODE_URL})`)
    .option('--token-file <file>', 'file holding the bearer token (env VYR_TOKEN holds the token itself)')
    .option('--http2', 'use HTTP/2 (cleartext h2c or TLS) instead of HTTP/1.1', false)
    .option('--ca <file>', 'PEM CA certificate to trust for an https:// node (e.g. its self-signed certificate)');
}

/** A connected client and where it points. */
export interface NodeConnection {
  client: NodeClient;
  url: string;
}

/** Resolves the node URL and token from flags and environment, and creates a client. */
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
  if (flags.tokenFile) {
    try {
      token = (await readFile(resolve(ctx.cwd, flags.tokenFile), 'utf8')).trim();
    } catch (err) {
      throw new CliError(
        'NOT_FOUND',
        `cannot read token file ${flags.tokenFile}: ${(err as Error).message}`,
        ExitCode.NOT_FOUND,
      );
    }
  } else if (ctx.env.VYR_TOKEN) {
    token = ctx.env.VYR_TOKEN.trim();
  }
  let ca: Buffer | undefined;
  if (flags.ca) {
    try {
      ca = await readFile(resolve(ctx.cwd, flags.ca));
    } catch (err) {
      throw new CliError('NOT_FOUND', `cannot read --ca ${flags.ca}: ${(err as Error).message}`, ExitCode.NOT_FOUND);
    }
  }
  const client = createNodeClient({
    baseUrl: url,
    ...(ca ? { ca } : {}),
    ...(token ? { token } : {}),
    httpVersion: flags.http2 || parsed.protocol === 'https:' ? '2' : '1.1',
  });
  return { client, url };
}

// Artifact refusals that mean "verification failed" get their own exit code, whatever the Connect code.
const VERIFY_CODES = new Set([
  'UNTRUSTED_KEY',
  'UNSIGNED',
  'SIGNATURE_INVALID',
  'MESSAGE_DIGEST_MISMATCH',
  'BLOB_DIGEST_MISMATCH',
  'BLOB_MISSING',
  'MANIFEST_TAMPERED',
  'CONFIG_TAMPERED',
  'UNTRUSTED',
]);

const BY_CONNECT_CODE: Record<string, ExitCodeValue> = {
  invalid_argument: ExitCode.INVALID_INPUT,
  not_found: ExitCode.NOT_FOUND,
  already_exists: ExitCode.ALREADY_EXISTS,
  permission_denied: ExitCode.PERMISSION_DENIED,
  unauthenticated: ExitCode.PERMISSION_DENIED,
  failed_precondition: ExitCode.PERMISSION_DENIED,
  resource_exhausted: ExitCode.RESOURCE_EXHAUSTED,
  unavailable: ExitCode.UNAVAILABLE,
  deadline_exceeded: ExitCode.UNAVAILABLE,
};

/** The exit code for a failed call (docs/cli.md "Exit codes"). */
export function exitCodeFor(e: NodeCallError): ExitCodeValue {
  if (VERIFY_CODES.has(e.errorCode)) return ExitCode.VERIFY_FAILED;
  return BY_CONNECT_CODE[e.connectCode] ?? ExitCode.FAILURE;
}

/**
 * Converts an error of a NodeService call into a {@link CliError} that keeps the node's precise code (e.g.
 * UNTRUSTED_KEY, BINDING_CONFLICT) and a stable exit code. CliErrors pass through.
 */
export function toNodeCliError(err: unknown, url: string): CliError {
  if (err instanceof CliError) return err;
  // Local artifact errors (reading ARTIFACT before an upload) keep their code too.
  if (err instanceof Error && err.name === 'ArtifactError') {
    const code = (err as { code?: string }).code ?? 'INVALID_INPUT';
    const exit =
      code === 'NOT_FOUND'
        ? ExitCode.NOT_FOUND
        : VERIFY_CODES.has(code)
          ? ExitCode.VERIFY_FAILED
          : ExitCode.INVALID_INPUT;
    return new CliError(code, err.message, exit, { cause: err });
  }
  const e = describeCallError(err);
  if (e.connectCode === 'unavailable' && e.domain === 'transport') {
    return new CliError(
      'UNAVAILABLE',
      `cannot reach the node at ${url}: ${e.message}; is \`vyr node start\` running?`,
      ExitCode.UNAVAILABLE,
      {
        cause: err,
      },
    );
  }
  return new CliError(e.errorCode, e.message, exitCodeFor(e), { cause: err });
}

/** Runs `fn` with a client and maps whatever it throws. */
export async function withNode<T>(
  ctx: CliContext,
  flags: NodeFlags,
  fn: (conn: NodeConnection) => Promise<T>,
): Promise<T> {
  const conn = await connect(ctx, flags);
  try {
    return await fn(conn);
  } catch (err) {
    throw toNodeCliError(err, conn.url);
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};

/** Parses a size like `64MiB`, `10MB`, `512k`, `4096` into bytes. @throws CliError INVALID_ARGUMENT. */
export function parseSize(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = m ? SIZE_UNITS[(m[2] as string).toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new CliError(
      'INVALID_ARGUMENT',
      `${flag} ${JSON.stringify(value)} is not a size (e.g. 64MiB, 10MB, 4096)`,
      ExitCode.USAGE,
    );
  }
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new CliError('INVALID_ARGUMENT', `${flag} ${JSON.stringify(value)} must be a positive size`, ExitCode.USAGE);
  }
  return bytes;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration like `500ms`, `5s`, `10m`, `1h`, `7d` into milliseconds. @throws CliError INVALID_ARGUMENT. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (!m) {
    throw new CliError(
      'INVALID_ARGUMENT',
      `${flag} ${JSON.stringify(value)} is not a duration (e.g. 500ms, 5s, 10m, 1h)`,
      ExitCode.USAGE,
    );
  }
  const ms = Math.round(Number(m[1]) * (DURATION_UNITS[m[2] as string] as number));
  if (ms <= 0)
    throw new CliError('INVALID_ARGUMENT', `${flag} ${JSON.stringify(value)} must be positive`, ExitCode.USAGE);
  return ms;
}

/** Human size: `1.5 MiB`. */
export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  for (const unit of ['B', 'KiB', 'MiB', 'GiB']) {
    if (v < 1024 || unit === 'GiB') return unit === 'B' ? `${v} B` : `${v.toFixed(1)} ${unit}`;
    v /= 1024;
  }
  return `${v} B`;
}

/** A plain text table: left-aligned columns separated by two spaces. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `vyr node status`: the node's identity, capacity, contents and telemetry health. */
export function registerNodeClientCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  const group =
    program.commands.find((c) => c.name() === 'node') ??
    program.command('node').description('run and inspect a VYR node');
  withNodeOptions(
    group.command('status').description("show a node's id, tier, version, queue, pool, contents and telemetry health"),
  ).action(async (flags: NodeFlags) =>
    withNode(ctx, flags, async ({ client, url }) => {
      const info = await client.getNodeInfo({});
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
        `telemetry  ${value.telemetry.otlpEndpoint ? `OTLP to ${value.telemetry.otlpEndpoint}` : 'OTLP export off (streams only)'}; spans exported ${value.telemetry.spansExported}, dropped ${value.telemetry.spansDropped}; metric exports ${value.telemetry.metricExports} ok, ${value.telemetry.metricExportsFailed} failed; stream items dropped ${value.telemetry.streamItemsDropped}`,
      ].join('\n');
      emit(ctx, output(), value, human);
    }),
  );
}
