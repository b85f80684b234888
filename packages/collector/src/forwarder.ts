import http from 'node:http';
import https from 'node:https';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Logger } from '@vyr/telemetry';
import type { ResolvedOptions } from './options.js';
import {
  CONTENT_TYPE,
  parseStatusMessage,
  parseSuccess,
  type RequestPart,
  SIGNAL_PATHS,
  splitRequest,
} from './otlp.js';
import type { SpoolQueue, SpoolRecord } from './spool/queue.js';
import type { CollectorTelemetry } from './telemetry.js';
import { redactUrl, type SignalUpstreamStatus, type UpstreamTracker } from './upstream.js';

/**
 * HTTP statuses the OTLP specification says to retry ("Retryable Response Codes"); every other 4xx/5xx must not be
 * retried as such. Of those, only 400 ("Bad Data") and 413 ("Content Too Large") speak about the request's data;
 * the rest say the upstream cannot take OTLP data as configured, so the backlog is kept (docs/collector.md).
 */
const RETRYABLE = new Set([429, 502, 503, 504]);
const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Redirects followed per request (307 and 308 only: they keep the method and body, RFC 9110 §15.4). */
const MAX_REDIRECTS = 5;

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Where the answer came from (after redirects). */
  url: URL;
}

/** What one upstream answer means for the request that got it. */
type Verdict =
  | { kind: 'delivered'; rejected: number; message: string }
  /** 400: the request's data is bad for good; drop this request (counted). */
  | { kind: 'bad_data'; failure: string }
  /** 413: the request is too large for the upstream; split it, or drop it if it cannot be split. */
  | { kind: 'too_large'; failure: string }
  /** 429/502/503/504 or no answer: retry with back-off (or after Retry-After). */
  | { kind: 'retry'; failure: string; cause: string; retryAfterMs: number | undefined; state: 'backoff' | 'down' }
  /** Any other answer: the upstream is not an OTLP receiver we can deliver to; keep the data, probe again later. */
  | { kind: 'misconfigured'; failure: string; cause: string };

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
 * after the upstream took it (2xx with a valid Export*ServiceResponse) or refused its data for good (400, or 413
 * for a part that cannot be split further). Follows the OTLP specification's OTLP/HTTP client rules: retry only
 * 429/502/503/504 and connection failures, honour `Retry-After`, exponential back-off with jitter, no limit on
 * retries, never retry a partial success. Any other answer marks the upstream `misconfigured`: the signal pauses
 * and probes again every `backoff.maxDelayMs`, and nothing is dropped.
 */
export class Forwarder {
  private readonly queue: SpoolQueue;
  private readonly opts: ResolvedOptions;
  private readonly telemetry: CollectorTelemetry;
  private readonly upstream: SignalUpstreamStatus;
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly logger: Logger;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(queue: SpoolQueue, opts: ResolvedOptions, telemetry: CollectorTelemetry, upstream: UpstreamTracker) {
    this.queue = queue;
    this.opts = opts;
    this.telemetry = telemetry;
    this.upstream = upstream.signals[queue.signal];
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

  /**
   * Sends one record until every part of it is settled. Returns false when stopped before that. A 413 replaces a
   * part by its two halves, sent in order; a crash in between re-sends the whole record (a counted duplicate).
   */
  private async deliver(rec: SpoolRecord): Promise<boolean> {
    const signal = this.queue.signal;
    const parts: RequestPart[] = [{ payload: rec.payload, items: rec.items }];
    while (parts.length > 0) {
      const part = parts[0] as RequestPart;
      const outcome = await this.sendPart(rec, part);
      if (outcome === 'aborted') return false;
      if (outcome === 'dropped') {
        // The full policy removed this record while it waited for the upstream.
        this.telemetry.addDropped(
          signal,
          'spool_full',
          parts.reduce((n, p) => n + p.items, 0),
        );
        return true;
      }
      if (outcome === 'too_large') {
        const halves = splitRequest(signal, rec.encoding, part.payload);
        if (halves) {
          this.logger.warn('forwarder: upstream answered 413; sending the request in two halves', {
            signal,
            items: part.items,
            bytes: part.payload.length,
          });
          parts.splice(0, 1, ...halves);
          continue;
        }
        this.logger.error('forwarder: upstream answered 413 to a single item; dropping it', {
          signal,
          items: part.items,
          bytes: part.payload.length,
        });
        this.telemetry.addDropped(signal, 'upstream_too_large', part.items);
      }
      parts.shift();
    }
    return true;
  }

  /** Sends one part until the upstream settles it; retries and probes as the answers say. */
  private async sendPart(rec: SpoolRecord, part: RequestPart): Promise<'sent' | 'too_large' | 'dropped' | 'aborted'> {
    const signal = this.queue.signal;
    const st = this.upstream;
    const headers: Record<string, string> = {
      'content-type': CONTENT_TYPE[rec.encoding],
      'user-agent': 'vyr-collector/0.1.0',
    };
    let body = Buffer.from(part.payload.buffer, part.payload.byteOffset, part.payload.length);
    if (this.opts.compression === 'gzip') {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
    }
    for (let attempt = 0; ; attempt++) {
      if (this.abort.signal.aborted) return 'aborted';
      if (this.queue.isDropped(rec.seq)) return 'dropped';
      let verdict: Verdict;
      try {
        verdict = this.classify(await this.send(body, headers), rec.encoding);
      } catch (err) {
        if (this.abort.signal.aborted) return 'aborted';
        verdict = {
          kind: 'retry',
          failure: `connection failure: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
          cause: 'connection',
          retryAfterMs: undefined,
          state: 'down',
        };
      }
      if (verdict.kind === 'delivered') {
        this.onSuccess(part, verdict);
        return 'sent';
      }
      st.lastError = verdict.failure;
      st.consecutiveFailures++;
      if (verdict.kind === 'bad_data' || verdict.kind === 'too_large') {
        // The upstream answered and judged this request's data: it is reachable and working.
        st.state = 'up';
        st.nextAttemptAt = undefined;
        if (verdict.kind === 'too_large') return 'too_large';
        this.logger.error('forwarder: upstream refused the data of a request (400); dropping it, not retryable', {
          signal,
          failure: verdict.failure,
          items: part.items,
        });
        this.telemetry.addDropped(signal, 'upstream_status', part.items);
        return 'sent';
      }
      let delay: number;
      if (verdict.kind === 'retry') {
        st.state = verdict.state;
        delay =
          verdict.retryAfterMs !== undefined
            ? // Retry-After: 0 (or a date in the past) must not turn into a busy loop.
              Math.min(Math.max(verdict.retryAfterMs, this.opts.backoff.initialDelayMs), MAX_RETRY_AFTER_MS)
            : backoffDelay(attempt, this.opts.backoff);
        this.telemetry.addRetry(signal, verdict.cause);
        if (attempt === 0 || attempt % 10 === 0) {
          this.logger.warn('forwarder: upstream unavailable, retrying', {
            signal,
            failure: verdict.failure,
            delayMs: delay,
            attempt: attempt + 1,
          });
        }
      } else {
        const first = st.state !== 'misconfigured';
        st.state = 'misconfigured';
        // Probe at the longest back-off: nothing is dropped, and the operator fixes the upstream or its URL.
        delay = Math.round(this.opts.backoff.maxDelayMs * (1 - this.opts.backoff.jitter * Math.random()));
        this.telemetry.addMisconfigured(signal, verdict.cause);
        if (first || attempt % 10 === 0) {
          this.logger.error('forwarder: upstream is not accepting OTLP data as configured; keeping the spool', {
            signal,
            upstream: redactUrl(this.url),
            failure: verdict.failure,
            probeInMs: delay,
            backlogItems: this.queue.stats().items,
          });
        }
      }
      st.nextAttemptAt = Date.now() + delay;
      await sleep(delay, this.abort.signal);
    }
  }

  /** What an upstream answer means (docs/collector.md, "Forwarder"). */
  private classify(res: Response, encoding: SpoolRecord['encoding']): Verdict {
    const status = res.status;
    const contentType = firstHeader(res.headers['content-type']);
    const detail = (): string => {
      const msg = parseStatusMessage(contentType, res.body);
      return `HTTP ${status}${msg ? `: ${msg}` : ''}`;
    };
    if (status >= 200 && status < 300) {
      const parsed = parseSuccess(this.queue.signal, contentType, encoding, res.body);
      if (parsed) return { kind: 'delivered', ...parsed };
      return {
        kind: 'misconfigured',
        cause: String(status),
        failure: `HTTP ${status} from ${redactUrl(res.url)} with a body that is not an OTLP export response (content-type ${JSON.stringify(contentType ?? '')}); is the upstream an OTLP/HTTP receiver?`,
      };
    }
    if (status === 400) return { kind: 'bad_data', failure: detail() };
    if (status === 413) return { kind: 'too_large', failure: detail() };
    if (RETRYABLE.has(status)) {
      return {
        kind: 'retry',
        failure: detail(),
        cause: String(status),
        retryAfterMs: parseRetryAfter(firstHeader(res.headers['retry-after'])),
        state: 'backoff',
      };
    }
    if (status >= 300 && status < 400) {
      const location = firstHeader(res.headers.location) ?? '(none)';
      return {
        kind: 'misconfigured',
        cause: String(status),
        failure: `HTTP ${status} redirect from ${redactUrl(res.url)} to ${redactUrl(location)} not followed (only 307/308 within http(s), no https→http, at most ${MAX_REDIRECTS}); point the upstream URL at the final address`,
      };
    }
    return { kind: 'misconfigured', cause: String(status), failure: `${detail()} from ${redactUrl(res.url)}` };
  }

  private onSuccess(part: RequestPart, parsed: { rejected: number; message: string }): void {
    const signal = this.queue.signal;
    const st = this.upstream;
    if (st.state === 'misconfigured') {
      this.logger.info('forwarder: upstream accepts requests again', { signal, upstream: redactUrl(this.url) });
    }
    st.state = 'up';
    st.lastSuccessAt = Date.now();
    st.consecutiveFailures = 0;
    st.nextAttemptAt = undefined;
    const rejected = Math.min(part.items, Math.max(0, parsed.rejected));
    if (rejected > 0) {
      // Partial success: the upstream took the request; what it rejected must not be retried (OTLP spec).
      this.logger.warn('forwarder: upstream rejected items (partial success)', {
        signal,
        rejected,
        message: parsed.message,
      });
      this.telemetry.addDropped(signal, 'upstream_rejected', rejected);
    }
    this.telemetry.addForwarded(signal, part.items - rejected);
  }

  /** POSTs to the upstream, following 307/308 redirects; configured headers are not sent to another origin. */
  private async send(body: Buffer, baseHeaders: Record<string, string>): Promise<Response> {
    let url = this.url;
    for (let hop = 0; ; hop++) {
      const sameOrigin = url.origin === this.url.origin;
      const headers = sameOrigin ? { ...this.opts.upstreamHeaders, ...baseHeaders } : baseHeaders;
      const res = await this.post(url, sameOrigin ? this.agent : undefined, body, headers);
      if ((res.status !== 307 && res.status !== 308) || hop >= MAX_REDIRECTS) return res;
      const location = firstHeader(res.headers.location);
      let next: URL;
      try {
        next = new URL(location ?? '', url);
      } catch {
        return res;
      }
      if (location === undefined || (next.protocol !== 'http:' && next.protocol !== 'https:')) return res;
      if (url.protocol === 'https:' && next.protocol === 'http:') return res;
      url = next;
    }
  }

  private post(
    url: URL,
    agent: http.Agent | undefined,
    body: Buffer,
    headers: Record<string, string>,
  ): Promise<Response> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise<Response>((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method: 'POST',
          agent,
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
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data, url });
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
