import { type Logger, silentLogger } from '@vyr/telemetry';
import { CollectorError } from './errors.js';
import type { FullPolicy } from './spool/spool.js';
import { redactUrl } from './upstream.js';

/** Retry timing of the forwarder (OTLP specification: exponential back-off with jitter). */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 1000. */
  initialDelayMs?: number;
  /** Upper bound of the computed delay, in ms. Default 30000. A `Retry-After` from the upstream wins over it. */
  maxDelayMs?: number;
  /** Growth factor per consecutive failure. Default 2. */
  multiplier?: number;
  /** Fraction of the delay drawn at random and subtracted (0 = no jitter, 1 = full jitter). Default 0.5. */
  jitter?: number;
}

/** Options of {@link createCollector}. */
export interface CollectorOptions {
  /**
   * Interface to listen on. Default `127.0.0.1`. An address other than loopback (`127.0.0.0/8`, `::1`, `localhost`)
   * needs a {@link token} (the node's rule), or {@link allowRemote} to accept anyone who reaches it.
   */
  host?: string;
  /**
   * Bearer token every request must carry (`Authorization: Bearer <token>`, RFC 6750); others get 401 before their
   * body is read. Default: none (no authentication), allowed only on loopback unless {@link allowRemote}.
   */
  token?: string;
  /** Serve HTTPS with this PEM certificate and key (the token then never travels in cleartext). Default: HTTP. */
  tls?: { cert: string | Uint8Array; key: string | Uint8Array };
  /** Allow a non-loopback {@link host} without a token, although anyone who reaches it can write into the spool. Default false. */
  allowRemote?: boolean;
  /** TCP port; 0 picks a free one. Default 4318 (the OTLP/HTTP port). */
  port?: number;
  /** Directory of the durable spool; created if missing. Required. */
  spoolDir: string;
  /**
   * Base URL of the upstream OTLP/HTTP receiver; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended to its
   * path, as OTel SDKs do with `OTEL_EXPORTER_OTLP_ENDPOINT`. Required.
   */
  upstream: string;
  /** Headers sent with every upstream request (e.g. `authorization`). Default none. */
  upstreamHeaders?: Readonly<Record<string, string>>;
  /** Bound of the spool on disk, in bytes. Default 1 GiB. */
  maxSpoolBytes?: number;
  /** What happens when the spool is full: drop the oldest data (counted) or refuse with 503. Default `drop-oldest`. */
  fullPolicy?: FullPolicy;
  /** Largest accepted request body, in bytes, both as sent and after gzip decoding. Default min(16 MiB, maxSpoolBytes / 4). */
  maxRequestBytes?: number;
  /**
   * Bound on the bytes of requests being received, decoded and stored at the same time, across all connections
   * (the body as sent plus its gzip-decoded size). A request that would exceed it gets 503 with `Retry-After`
   * before its body is read. Default max(64 MiB, maxRequestBytes); at least maxRequestBytes.
   */
  maxInflightBytes?: number;
  /** Most simultaneous client connections; more are refused by the server. Default 512. */
  maxConnections?: number;
  /** Segment file size at which a new segment is started, in bytes. Default maxSpoolBytes / 16, within 4 KiB…64 MiB. */
  segmentBytes?: number;
  /** `Retry-After` sent with 503 responses (spool full, stopping), in seconds. Default 5. */
  retryAfterSeconds?: number;
  /** Compression of upstream request bodies. Default `gzip`. */
  compression?: 'gzip' | 'none';
  /** Time allowed for one upstream request (connect to last response byte), in ms. Default 10000. */
  upstreamTimeoutMs?: number;
  /** Retry timing; see {@link BackoffOptions}. */
  backoff?: BackoffOptions;
  /** Where the collector logs. Default: silent. */
  logger?: Logger;
}

/** {@link CollectorOptions} with every default applied. */
export interface ResolvedOptions {
  host: string;
  allowRemote: boolean;
  token?: string;
  tls?: { cert: string | Uint8Array; key: string | Uint8Array };
  maxInflightBytes: number;
  maxConnections: number;
  port: number;
  spoolDir: string;
  upstream: URL;
  upstreamHeaders: Readonly<Record<string, string>>;
  maxSpoolBytes: number;
  fullPolicy: FullPolicy;
  maxRequestBytes: number;
  segmentBytes: number;
  retryAfterSeconds: number;
  compression: 'gzip' | 'none';
  upstreamTimeoutMs: number;
  backoff: Required<BackoffOptions>;
  logger: Logger;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** Applies defaults (in this one place) and validates. @throws CollectorError `INVALID_OPTIONS`. */
export function resolveOptions(o: CollectorOptions): ResolvedOptions {
  if (typeof o.spoolDir !== 'string' || o.spoolDir === '') invalid('spoolDir is required: the spool directory');
  let upstream: URL;
  try {
    upstream = new URL(o.upstream);
  } catch (err) {
    invalid(
      `upstream ${JSON.stringify(redactUrl(String(o.upstream)))} is not a URL; give e.g. http://collector.example:4318`,
      err,
    );
  }
  if (upstream.protocol !== 'http:' && upstream.protocol !== 'https:') {
    invalid(`upstream ${redactUrl(o.upstream)} must be an http:// or https:// URL`);
  }
  const maxSpoolBytes = o.maxSpoolBytes ?? 1024 * MiB;
  if (!Number.isSafeInteger(maxSpoolBytes) || maxSpoolBytes < 64 * KiB) {
    invalid(`maxSpoolBytes ${maxSpoolBytes} must be an integer of at least 65536`);
  }
  const fullPolicy = o.fullPolicy ?? 'drop-oldest';
  if (fullPolicy !== 'drop-oldest' && fullPolicy !== 'refuse') {
    invalid(`fullPolicy ${JSON.stringify(fullPolicy)} must be drop-oldest or refuse`);
  }
  const maxRequestBytes = o.maxRequestBytes ?? Math.min(16 * MiB, Math.floor(maxSpoolBytes / 4));
  if (!Number.isSafeInteger(maxRequestBytes) || maxRequestBytes < 1 || maxRequestBytes > maxSpoolBytes / 2) {
    invalid(`maxRequestBytes ${maxRequestBytes} must be between 1 and half of maxSpoolBytes (${maxSpoolBytes / 2})`);
  }
  const segmentBytes = o.segmentBytes ?? Math.min(64 * MiB, Math.max(4 * KiB, Math.floor(maxSpoolBytes / 16)));
  if (!Number.isSafeInteger(segmentBytes) || segmentBytes < 1 || segmentBytes > maxSpoolBytes / 4) {
    invalid(`segmentBytes ${segmentBytes} must be between 1 and a quarter of maxSpoolBytes`);
  }
  const maxInflightBytes = o.maxInflightBytes ?? Math.max(64 * MiB, maxRequestBytes);
  if (!Number.isSafeInteger(maxInflightBytes) || maxInflightBytes < maxRequestBytes) {
    invalid(`maxInflightBytes ${maxInflightBytes} must be an integer of at least maxRequestBytes (${maxRequestBytes})`);
  }
  const maxConnections = o.maxConnections ?? 512;
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) {
    invalid(`maxConnections ${maxConnections} must be a positive integer`);
  }
  const host = o.host ?? '127.0.0.1';
  const allowRemote = o.allowRemote ?? false;
  if (o.token !== undefined && o.token.length === 0) invalid('token is empty');
  if (!allowRemote && !isLoopback(host) && o.token === undefined) {
    invalid(
      `refusing to listen on ${JSON.stringify(host)}: the receiver has no authentication or TLS configured (no bearer token), so anyone who reaches it could fill the spool; give it a token (token, with tls), listen on 127.0.0.1 (or ::1), or accept anyone explicitly (allowRemote, --allow-remote) behind a firewall or an authenticating proxy`,
    );
  }
  const port = o.port ?? 4318;
  if (!Number.isInteger(port) || port < 0 || port > 65535) invalid(`port ${port} must be an integer in 0…65535`);
  const compression = o.compression ?? 'gzip';
  if (compression !== 'gzip' && compression !== 'none') invalid(`compression ${compression} must be gzip or none`);
  const b = o.backoff ?? {};
  const backoff: Required<BackoffOptions> = {
    initialDelayMs: b.initialDelayMs ?? 1000,
    maxDelayMs: b.maxDelayMs ?? 30_000,
    multiplier: b.multiplier ?? 2,
    jitter: b.jitter ?? 0.5,
  };
  if (backoff.initialDelayMs < 0 || backoff.maxDelayMs < backoff.initialDelayMs || backoff.multiplier < 1) {
    invalid('backoff needs 0 <= initialDelayMs <= maxDelayMs and multiplier >= 1');
  }
  if (backoff.jitter < 0 || backoff.jitter > 1) invalid(`backoff.jitter ${backoff.jitter} must be within 0…1`);
  return {
    host,
    allowRemote,
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(o.tls !== undefined ? { tls: o.tls } : {}),
    maxInflightBytes,
    maxConnections,
    port,
    spoolDir: o.spoolDir,
    upstream,
    upstreamHeaders: o.upstreamHeaders ?? {},
    maxSpoolBytes,
    fullPolicy,
    maxRequestBytes,
    segmentBytes,
    retryAfterSeconds: o.retryAfterSeconds ?? 5,
    compression,
    upstreamTimeoutMs: o.upstreamTimeoutMs ?? 10_000,
    backoff,
    logger: o.logger ?? silentLogger,
  };
}

/** True for loopback addresses and names: `127.0.0.0/8`, `::1`, `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (/^::ffff:127\./.test(h)) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function invalid(message: string, cause?: unknown): never {
  throw new CollectorError('INVALID_OPTIONS', message, { cause });
}
