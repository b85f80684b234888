import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CollectorError } from './errors.js';
import { Forwarder } from './forwarder.js';
import { type CollectorOptions, isLoopback, type ResolvedOptions, resolveOptions } from './options.js';
import { createHandler } from './receiver.js';
import type { RecoveryReport } from './spool/queue.js';
import { SIGNALS, type Signal } from './spool/record.js';
import { type FullPolicy, Spool, type SpoolStats } from './spool/spool.js';
import { type CollectorCounters, CollectorTelemetry } from './telemetry.js';
import { redactUrl, type SignalUpstreamStatus, type UpstreamState, UpstreamTracker } from './upstream.js';

/** A snapshot of a collector: what it holds, what it did, how the upstream looks. Served on `GET /status`. */
export interface CollectorStatus {
  /** `running` between a successful `start()` and `stop()`. */
  state: 'created' | 'running' | 'stopping' | 'stopped';
  /** The receiver's base URL once listening, e.g. `http://127.0.0.1:4318`. */
  url: string | undefined;
  /** The upstream: the most severe state across signals and each signal's own. The URL has no credentials. */
  upstream: UpstreamStatusView & { url: string; signals: Record<Signal, UpstreamStatusView> };
  spool: SpoolStats & {
    dir: string;
    maxBytes: number;
    fullPolicy: FullPolicy;
    /** Age of the oldest unforwarded item in ms (0 when empty). */
    oldestAgeMs: number;
    signals: Record<Signal, SpoolStats>;
    /** What the last start found on disk (backlog resumed, torn tail truncated). */
    recovered: RecoveryReport | undefined;
  };
  /** Requests being processed now: their bytes count against `maxInflightBytes`. */
  receiver: { inflightBytes: number; maxInflightBytes: number };
  counters: CollectorCounters;
}

/** Upstream state as `status()` shows it: times as ISO 8601 strings. */
export interface UpstreamStatusView {
  state: UpstreamState;
  lastError: string | undefined;
  lastSuccessAt: string | undefined;
  consecutiveFailures: number;
  nextAttemptAt: string | undefined;
}

/** A running OTLP store-and-forward collector (see {@link createCollector}). */
export interface Collector {
  /**
   * Opens (and recovers) the spool, starts listening and starts forwarding the backlog.
   * @returns the receiver's base URL.
   * @throws CollectorError `SPOOL_LOCKED`, `SPOOL_IO`, `LISTEN_FAILED`.
   */
  start(): Promise<{ url: string; host: string; port: number }>;
  /**
   * Stops cleanly: refuses new exports (503), waits for requests being stored, stops forwarding (an in-flight
   * upstream request is abandoned and its record stays in the spool), closes the spool. Idempotent.
   */
  stop(): Promise<void>;
  /** A snapshot of counters, spool occupancy and upstream state. */
  status(): CollectorStatus;
}

/**
 * Creates a disconnected collector: an OTLP/HTTP receiver that answers 200 only once a request is fsynced to
 * the spool, and one forwarder per signal that drains the spool, in order, to one upstream OTLP/HTTP endpoint.
 *
 * @throws CollectorError `INVALID_OPTIONS` for bad options (checked here, before anything touches the disk).
 */
export function createCollector(options: CollectorOptions): Collector {
  const opts: ResolvedOptions = resolveOptions(options);
  let state: CollectorStatus['state'] = 'created';
  let url: string | undefined;
  let server: Server | undefined;
  let forwarders: Forwarder[] = [];
  const upstream = new UpstreamTracker(opts.upstream);
  let telemetry: CollectorTelemetry | undefined;
  const spool = new Spool({
    dir: opts.spoolDir,
    maxBytes: opts.maxSpoolBytes,
    fullPolicy: opts.fullPolicy,
    segmentBytes: opts.segmentBytes,
    logger: opts.logger,
    onDrop: (signal, reason, items) => telemetry?.addDropped(signal, reason, items),
  });
  const inflight = new Set<Promise<unknown>>();
  const inflightBytes = { bytes: 0 };

  const status = (): CollectorStatus => {
    const { total, signals } = spool.stats();
    const now = Date.now();
    const iso = (t: number | undefined): string | undefined =>
      t === undefined ? undefined : new Date(t).toISOString();
    const view = (u: SignalUpstreamStatus): UpstreamStatusView => ({
      state: u.state,
      lastError: u.lastError,
      lastSuccessAt: iso(u.lastSuccessAt),
      consecutiveFailures: u.consecutiveFailures,
      nextAttemptAt: iso(u.nextAttemptAt),
    });
    const up = upstream.snapshot();
    return {
      state,
      url,
      upstream: {
        url: up.url,
        ...view(up),
        signals: { traces: view(up.signals.traces), metrics: view(up.signals.metrics), logs: view(up.signals.logs) },
      },
      spool: {
        ...total,
        dir: opts.spoolDir,
        maxBytes: opts.maxSpoolBytes,
        fullPolicy: opts.fullPolicy,
        oldestAgeMs: total.oldestReceivedAt === undefined ? 0 : Math.max(0, now - total.oldestReceivedAt),
        signals,
        recovered: spool.recovered(),
      },
      receiver: { inflightBytes: inflightBytes.bytes, maxInflightBytes: opts.maxInflightBytes },
      counters: structuredClone(tel().counters),
    };
  };
  const tel = (): CollectorTelemetry => {
    if (!telemetry) {
      telemetry = new CollectorTelemetry(() => {
        const { total } = spool.stats();
        return {
          spoolItems: total.items,
          spoolBytes: total.bytes,
          oldestAgeSeconds: total.oldestReceivedAt === undefined ? 0 : (Date.now() - total.oldestReceivedAt) / 1000,
          upstreamState: upstream.state(),
        };
      });
    }
    return telemetry;
  };

  return {
    async start() {
      if (state !== 'created') throw new CollectorError('STOPPED', `collector already ${state}; create a new one`);
      const t = tel();
      const recovered = await spool.open();
      opts.logger.info('collector: spool opened', {
        dir: opts.spoolDir,
        backlogRecords: recovered.records,
        backlogItems: recovered.items,
        truncatedBytes: recovered.truncatedBytes,
      });
      const handler = createHandler({
        opts,
        spool,
        telemetry: t,
        status,
        stopping: () => state !== 'running',
        inflight: inflightBytes,
      });
      const listener = (req: IncomingMessage, res: ServerResponse): void => {
        const p = new Promise<void>((resolve) => res.on('close', resolve));
        inflight.add(p);
        void p.then(() => inflight.delete(p));
        handler(req, res);
      };
      const serverOptions = { keepAliveTimeout: 30_000, requestTimeout: 120_000 };
      const srv: Server = opts.tls
        ? createHttpsServer(
            { ...serverOptions, cert: Buffer.from(opts.tls.cert), key: Buffer.from(opts.tls.key) },
            listener,
          )
        : createServer(serverOptions, listener);
      if (opts.token !== undefined && !opts.tls && !isLoopback(opts.host)) {
        opts.logger.warn(
          'collector: the bearer token travels in cleartext: serve HTTPS (--tls-cert/--tls-key) off loopback',
          {
            host: opts.host,
          },
        );
      }
      srv.maxConnections = opts.maxConnections;
      try {
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(opts.port, opts.host, () => {
            srv.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        await spool.close();
        throw new CollectorError(
          'LISTEN_FAILED',
          `cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}; choose another --listen address`,
          { cause: err },
        );
      }
      server = srv;
      const addr = srv.address() as AddressInfo;
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      url = `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`;
      forwarders = SIGNALS.map((s) => new Forwarder(spool.queues[s], opts, t, upstream));
      for (const f of forwarders) f.start();
      state = 'running';
      opts.logger.info('collector: listening', { url, upstream: redactUrl(opts.upstream) });
      if (!isLoopback(opts.host) && opts.token === undefined) {
        opts.logger.warn(
          'collector: the receiver listens beyond loopback without authentication or TLS; anyone who reaches it can write into the spool (firewall it or put an authenticating proxy in front)',
          { url },
        );
      }
      return { url, host: addr.address, port: addr.port };
    },

    async stop() {
      if (state !== 'running') {
        if (state === 'created') state = 'stopped';
        return;
      }
      state = 'stopping';
      const srv = server;
      const closed = new Promise<void>((resolve) => srv?.close(() => resolve()) ?? resolve());
      srv?.closeIdleConnections();
      // Requests already being stored finish (their clients get the 200 they are owed); new ones get 503.
      await Promise.allSettled([...inflight]);
      srv?.closeAllConnections();
      await closed;
      await Promise.all(forwarders.map((f) => f.stop()));
      await spool.close();
      telemetry?.close();
      state = 'stopped';
      opts.logger.info('collector: stopped', {});
    },

    status,
  };
}
