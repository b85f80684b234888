import http from 'node:http';
import https from 'node:https';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Logger } from '@vyr/telemetry';
import type { ResolvedOptions } from './options.js';
import { CONTENT_TYPE, parseStatusMessage, parseSuccess, SIGNAL_PATHS } from './otlp.js';
import type { SpoolQueue, SpoolRecord } from './spool/queue.js';
import type { CollectorTelemetry, UpstreamState } from './telemetry.js';

/** What the forwarders know about the upstream, shared across signals (reported by `status()`). */
export interface UpstreamStatus {
  url: string;
  state: UpstreamState;
  /** Last failure: HTTP status or connection error text. */
  lastError: string | undefined;
  lastSuccessAt: number | undefined;
  /** Failed attempts since the last success. */
  consecutiveFailures: number;
  /** When the next retry is due (ms since the epoch), while backing off. */
  nextAttemptAt: number | undefined;
}

/** HTTP statuses the OTLP specification says to retry ("Retryable Response Codes"); all others are final. */
const RETRYABLE = new Set([429, 502, 503, 504]);
const MAX_RESPONSE_BYTES = 1024 * 1024;

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns ms to wait, or `undefined` when
 * absent or unparseable (then the computed back-off applies).
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/** Delay before retry number `attempt` (0-based): exponential, capped, with jitter subtracted at random. */
export function backoffDelay(attempt: number, b: ResolvedOptions['backoff'], random = Math.random): number {
  const base = Math.min(b.maxDelayMs, b.initialDelayMs * b.multiplier ** attempt);
  return Math.round(base * (1 - b.jitter * random()));
}

/** Longest `Retry-After` honoured, so a broken upstream cannot park the forwarder for days. */
const MAX_RETRY_AFTER_MS = 60 * 60 * 1000;

/**
 * Forwards one queue to the upstream, strictly in order, one request at a time: a record leaves the spool only
 * after a 2xx (or when it is dropped for a reason that retrying cannot fix). Follows the OTLP specification's
 * OTLP/HTTP client rules: retry only 429/502/503/504 and connection failures, honour `Retry-After`, exponential
 * back-off with jitter, no limit on retries, never retry a partial success.
 */
export class Forwarder {
  private readonly queue: SpoolQueue;
  private readonly opts: ResolvedOptions;
  private readonly telemetry: CollectorTelemetry;
  private readonly upstream: UpstreamStatus;
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly logger: Logger;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(queue: SpoolQueue, opts: ResolvedOptions, telemetry: CollectorTelemetry, upstream: UpstreamStatus) {
    this.queue = queue;
    this.opts = opts;
    this.telemetry = telemetry;
    this.upstream = upstream;
    this.logger = opts.logger;
    const base = opts.upstream.href.replace(/\/+$/, '');
    this.url = new URL(`${base}${SIGNAL_PATHS[queue.signal]}`);
    const Agent = this.url.protocol === 'https:' ? https.Agent : http.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** Starts the forwarding loop. A failure of the loop itself is logged and the loop restarts after a back-off. */
  start(): void {
    this.loop = this.run();
  }

  /** Stops forwarding: aborts an in-flight request (its record stays in the spool) and waits for the loop. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    this.agent.destroy();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.abort.signal.aborted) {
      try {
        const rec = await this.queue.next(this.abort.signal);
        if (!rec) break;
        const done = await this.deliver(rec);
        if (!done) break;
        await this.queue.ack(rec);
        failures = 0;
      } catch (err) {
        // A spool I/O failure: report it and try again later rather than losing the loop.
        this.logger.error('forwarder: spool failure', { signal: this.queue.signal, error: String(err) });
        await sleep(backoffDelay(failures++, this.opts.backoff), this.abort.signal);
      }
    }
  }

  /** Sends one record until it is delivered or dropped. Returns false when stopped before that. */
  private async deliver(rec: SpoolRecord): Promise<boolean> {
    const signal = this.queue.signal;
    const headers: Record<string, string> = {
      ...this.opts.upstreamHeaders,
      'content-type': CONTENT_TYPE[rec.encoding],
      'user-agent': 'vyr-collector/0.1.0',
    };
    let body = rec.payload;
    if (this.opts.compression === 'gzip') {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
    for (let attempt = 0; ; attempt++) {
      if (this.abort.signal.aborted) return false;
      if (this.queue.isDropped(rec.seq)) {
        // The full policy removed this record while it waited for the upstream.
        this.telemetry.addDropped(signal, 'spool_full', rec.items);
        return true;
      }
      let res: Response | undefined;
      let failure: string;
      let retryAfterMs: number | undefined;
      try {
        res = await this.post(body, headers);
      } catch (err) {
        if (this.abort.signal.aborted) return false;
        failure = `connection failure: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      }
      if (res && res.status >= 200 && res.status < 300) {
        this.onSuccess(rec, res);
        return true;
      }
      if (res && !RETRYABLE.has(res.status)) {
        const msg = parseStatusMessage(res.headers['content-type'], res.body);
        this.logger.error('forwarder: upstream refused a request; dropping it (not retryable)', {
          signal,
          status: res.status,
          message: msg,
          items: rec.items,
        });
        this.upstream.lastError = `HTTP ${res.status}${msg ? `: ${msg}` : ''}`;
        this.telemetry.addDropped(signal, 'upstream_status', rec.items);
        return true;
      }
      if (res) {
        failure = `HTTP ${res.status}`;
        retryAfterMs = parseRetryAfter(firstHeader(res.headers['retry-after']));
        this.upstream.state = 'backoff';
      } else {
        this.upstream.state = 'down';
      }
      const delay =
        retryAfterMs !== undefined
          ? Math.min(retryAfterMs, MAX_RETRY_AFTER_MS)
          : backoffDelay(attempt, this.opts.backoff);
      this.upstream.lastError = failure!;
      this.upstream.consecutiveFailures++;
      this.upstream.nextAttemptAt = Date.now() + delay;
      this.telemetry.addRetry(signal, res ? String(res.status) : 'connection');
      if (attempt === 0 || attempt % 10 === 0) {
        this.logger.warn('forwarder: upstream unavailable, retrying', {
          signal,
          failure: failure!,
          delayMs: delay,
          attempt: attempt + 1,
        });
      }
      await sleep(delay, this.abort.signal);
    }
  }

  private onSuccess(rec: SpoolRecord, res: Response): void {
    const signal = this.queue.signal;
    this.upstream.state = 'up';
    this.upstream.lastSuccessAt = Date.now();
    this.upstream.consecutiveFailures = 0;
    this.upstream.nextAttemptAt = undefined;
    const parsed = parseSuccess(signal, res.headers['content-type'], res.body);
    if (!parsed) {
      this.logger.warn('forwarder: upstream 2xx body is not an export response; counting the request as accepted', {
        signal,
        status: res.status,
      });
    }
    const rejected = Math.min(rec.items, Math.max(0, parsed?.rejected ?? 0));
    if (rejected > 0) {
      // Partial success: the upstream took the request; what it rejected must not be retried (OTLP spec).
      this.logger.warn('forwarder: upstream rejected items (partial success)', {
        signal,
        rejected,
        message: parsed?.message,
      });
      this.telemetry.addDropped(signal, 'upstream_rejected', rejected);
    }
    this.telemetry.addForwarded(signal, rec.items - rejected);
  }

  private post(body: Buffer, headers: Record<string, string>): Promise<Response> {
    const mod = this.url.protocol === 'https:' ? https : http;
    return new Promise<Response>((resolve, reject) => {
      const req = mod.request(
        this.url,
        {
          method: 'POST',
          agent: this.agent,
          headers: { ...headers, 'content-length': String(body.length) },
          signal: this.abort.signal,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let n = 0;
          res.on('data', (c: Buffer) => {
            n += c.length;
            if (n <= MAX_RESPONSE_BYTES) chunks.push(c);
          });
          res.on('error', reject);
          res.on('end', () => {
            let data = Buffer.concat(chunks);
            if (firstHeader(res.headers['content-encoding']) === 'gzip') {
              try {
                data = gunzipSync(data);
              } catch {
                data = Buffer.alloc(0);
              }
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data });
          });
        },
      );
      req.setTimeout(this.opts.upstreamTimeoutMs, () =>
        req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })),
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
