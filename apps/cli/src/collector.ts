import { resolve } from 'node:path';
import {
  type CliContext,
  CliError,
  type CommandRegistrar,
  createStreamLogger,
  ExitCode,
  emit,
  parseListen,
  parseSize,
  readInputFile,
  readSecretFile,
} from '@vyr/cli';
import {
  type CollectorStatus,
  createCollector,
  type FullPolicy,
  inspectSpool,
  redactUrl,
  type SpoolInspection,
} from '@vyr/collector';
import { type SelfMetrics, startSelfMetrics } from './collector-metrics.js';

/**
 * `vyr collector start|status`: the disconnected OTLP collector (`@vyr/collector`) as a command. `start` runs in
 * the foreground until SIGTERM or SIGINT and then stops cleanly; `status` reads a spool offline (`--spool`) or
 * asks a running collector (`--addr`).
 */
export const registerCollectorCommands: CommandRegistrar = (program, ctx, output) => {
  const group = program
    .command('collector')
    .description('durable OTLP/HTTP store-and-forward: acknowledges only what is fsynced, forwards in order');

  group
    .command('start')
    .description('run a collector in the foreground until SIGTERM/SIGINT')
    .requiredOption('--spool <dir>', 'spool directory (created if missing)')
    .requiredOption('--upstream <url>', 'base URL of the upstream OTLP/HTTP receiver, e.g. http://cloud:4318')
    .option('--listen <host:port>', 'address of the OTLP/HTTP receiver', '127.0.0.1:4318')
    .option(
      '--max-spool-bytes <n>',
      'bound of the spool on disk (a size: 1GiB = 1G = 1024³ bytes, 1GB = 1000³)',
      '1GiB',
    )
    .option('--full-policy <policy>', 'when the spool is full: drop-oldest or refuse', 'drop-oldest')
    .option('--max-request-bytes <n>', 'largest accepted request body (default min(16 MiB, spool/4))')
    .option(
      '--max-inflight-bytes <n>',
      'bytes of requests processed at once; more get 503 + Retry-After (default max(64MiB, --max-request-bytes))',
    )
    .option('--token-file <file>', 'file holding the bearer token senders must present (required off loopback)')
    .option('--tls-cert <file>', 'PEM certificate: serve HTTPS (needs --tls-key)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option(
      '--allow-remote',
      'allow --listen on a non-loopback address without --token-file (anyone who reaches it can write: firewall it)',
      false,
    )
    .option('--compression <gzip|none>', 'compression of upstream requests', 'gzip')
    .option(
      '--retry-max-delay-ms <ms>',
      'longest wait between retries of a failing upstream (exponential backoff from 1 s, with jitter)',
      '30000',
    )
    .option(
      '--self-metrics-interval-ms <ms>',
      "period of the collector's own metrics, sent through its own spool to the upstream; 0 turns them off",
      '10000',
    )
    .action(async (o: StartFlags) => {
      const out = output();
      const { host, port } = parseListen(o.listen);
      const policy = o.fullPolicy;
      if (policy !== 'drop-oldest' && policy !== 'refuse') {
        throw new CliError('INVALID_INPUT', `--full-policy ${policy} must be drop-oldest or refuse`, ExitCode.USAGE);
      }
      if (o.compression !== 'gzip' && o.compression !== 'none') {
        throw new CliError('INVALID_INPUT', `--compression ${o.compression} must be gzip or none`, ExitCode.USAGE);
      }
      const retryMaxDelayMs = Number(o.retryMaxDelayMs);
      if (!Number.isInteger(retryMaxDelayMs) || retryMaxDelayMs < 1) {
        throw new CliError(
          'INVALID_INPUT',
          `--retry-max-delay-ms ${o.retryMaxDelayMs} must be a whole number of milliseconds, at least 1`,
          ExitCode.USAGE,
        );
      }
      const intervalMs = Number(o.selfMetricsIntervalMs);
      if (!Number.isInteger(intervalMs) || intervalMs < 0) {
        throw new CliError(
          'INVALID_INPUT',
          `--self-metrics-interval-ms ${o.selfMetricsIntervalMs} must be a whole number of milliseconds (0 = off)`,
          ExitCode.USAGE,
        );
      }
      if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
        throw new CliError('INVALID_INPUT', '--tls-cert and --tls-key go together', ExitCode.USAGE);
      }
      const token = o.tokenFile ? await readSecretFile(ctx, resolvePath(ctx, o.tokenFile), 'token file') : undefined;
      const tls =
        o.tlsCert && o.tlsKey
          ? {
              cert: await readInputFile(ctx, resolvePath(ctx, o.tlsCert), 'TLS certificate'),
              key: await readInputFile(ctx, resolvePath(ctx, o.tlsKey), 'TLS key'),
            }
          : undefined;
      // Registered before the collector creates its instruments; attached once the receiver listens.
      const self: SelfMetrics | undefined =
        intervalMs > 0 ? startSelfMetrics({ intervalMs, serviceInstanceId: `${o.listen}:${o.spool}` }) : undefined;
      const collector = createCollector({
        host,
        port,
        spoolDir: resolvePath(ctx, o.spool),
        upstream: o.upstream,
        maxSpoolBytes: parseSize(o.maxSpoolBytes, '--max-spool-bytes'),
        maxRequestBytes:
          o.maxRequestBytes === undefined ? undefined : parseSize(o.maxRequestBytes, '--max-request-bytes'),
        maxInflightBytes:
          o.maxInflightBytes === undefined ? undefined : parseSize(o.maxInflightBytes, '--max-inflight-bytes'),
        allowRemote: o.allowRemote,
        ...(token !== undefined ? { token } : {}),
        ...(tls !== undefined ? { tls } : {}),
        fullPolicy: policy as FullPolicy,
        compression: o.compression,
        backoff: { initialDelayMs: Math.min(1000, retryMaxDelayMs), maxDelayMs: retryMaxDelayMs },
        logger: createStreamLogger(ctx.stderr, out.json),
      });
      const info = await collector.start();
      self?.attach(info.url);
      const upstream = redactUrl(o.upstream);
      emit(
        ctx,
        out,
        { event: 'listening', url: info.url, spool: o.spool, upstream },
        `collector listening on ${info.url} (spool ${o.spool}, upstream ${upstream})`,
      );
      // The app owns the process: the command ends on SIGTERM/SIGINT with a clean stop.
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        process.once('SIGTERM', () => resolve('SIGTERM'));
        process.once('SIGINT', () => resolve('SIGINT'));
      });
      // The last self-metrics collection goes into the spool before the receiver closes.
      await self?.shutdown();
      await collector.stop();
      const st = collector.status();
      emit(
        ctx,
        out,
        { event: 'stopped', signal, spool: { records: st.spool.records, items: st.spool.items } },
        `collector stopped (${signal}); ${st.spool.items} item(s) in ${st.spool.records} request(s) left in the spool`,
      );
    });

  group
    .command('status')
    .description('show spool occupancy and counters: offline from --spool, or from a running collector at --addr')
    .option('--spool <dir>', 'read this spool directory without changing it')
    .option('--addr <url>', 'ask a running collector (its receiver URL, e.g. http://127.0.0.1:4318)')
    .action(async (o: { spool?: string; addr?: string }) => {
      const out = output();
      if ((o.spool === undefined) === (o.addr === undefined)) {
        throw new CliError('INVALID_INPUT', 'give exactly one of --spool DIR or --addr URL', ExitCode.USAGE);
      }
      if (o.addr !== undefined) {
        const st = await fetchStatus(o.addr);
        emit(ctx, out, st, formatLive(st));
        return;
      }
      const st = await inspectSpool(resolvePath(ctx, o.spool as string));
      emit(ctx, out, st, formatOffline(st));
    });
};

interface StartFlags {
  spool: string;
  upstream: string;
  listen: string;
  maxSpoolBytes: string;
  fullPolicy: string;
  maxRequestBytes?: string;
  maxInflightBytes?: string;
  allowRemote: boolean;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  compression: 'gzip' | 'none';
  selfMetricsIntervalMs: string;
  retryMaxDelayMs: string;
}

function resolvePath(ctx: CliContext, p: string): string {
  return resolve(ctx.cwd, p);
}

async function fetchStatus(addr: string): Promise<CollectorStatus> {
  let url: URL;
  try {
    url = new URL('/status', addr);
  } catch {
    throw new CliError('INVALID_INPUT', `--addr ${addr} is not a URL; give e.g. http://127.0.0.1:4318`, ExitCode.USAGE);
  }
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (err) {
    throw new CliError(
      'UNAVAILABLE',
      `no collector answers at ${addr}: ${(err as Error).message}`,
      ExitCode.UNAVAILABLE,
      {
        cause: err,
      },
    );
  }
  if (!res.ok) {
    throw new CliError(
      'UNAVAILABLE',
      `${url} answered HTTP ${res.status}; is it a vyr collector?`,
      ExitCode.UNAVAILABLE,
    );
  }
  return (await res.json()) as CollectorStatus;
}

function age(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function formatLive(st: CollectorStatus): string {
  const c = st.counters;
  const dropped = Object.entries(c.dropped)
    .filter(([, n]) => n > 0)
    .map(([r, n]) => `${r}=${n}`)
    .join(' ');
  const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
  return [
    `collector ${st.url ?? ''} (${st.state})`,
    `upstream  ${st.upstream.url} ${st.upstream.state}${st.upstream.lastError ? ` (last error: ${st.upstream.lastError})` : ''}`,
    `spool     ${st.spool.items} item(s) in ${st.spool.records} request(s), ${st.spool.bytes} of ${st.spool.maxBytes} bytes, oldest ${age(st.spool.oldestAgeMs)}, policy ${st.spool.fullPolicy}`,
    `received  ${sum(c.received)} item(s); forwarded ${sum(c.forwarded)}; retries ${c.retries}`,
    `dropped   ${dropped || 'none'}`,
  ].join('\n');
}

function formatOffline(st: SpoolInspection): string {
  const lines = [
    `spool     ${st.dir}${st.lock ? ` (lock: pid ${st.lock.pid}, ${st.lock.alive ? 'running' : 'not running'})` : ''}`,
    `total     ${st.total.items} item(s) in ${st.total.records} request(s), ${st.total.bytes} bytes on disk${
      st.total.oldestReceivedAt === undefined ? '' : `, oldest ${age(Date.now() - st.total.oldestReceivedAt)}`
    }`,
  ];
  for (const [signal, s] of Object.entries(st.signals)) {
    lines.push(`${signal.padEnd(9)} ${s.items} item(s) in ${s.records} request(s), ${s.segments} segment(s)`);
  }
  if (st.tornTailBytes > 0) lines.push(`torn tail ${st.tornTailBytes} byte(s), truncated on the next start`);
  return lines.join('\n');
}
