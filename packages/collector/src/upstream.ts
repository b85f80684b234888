import { SIGNALS, type Signal } from './spool/record.js';

/**
 * State of the upstream as a forwarder last saw it:
 * - `unknown`: nothing sent yet;
 * - `up`: the last request got an answer that settled it (2xx, or a 400/413 for that request's data);
 * - `backoff`: the last request got 429/502/503/504 and will be retried;
 * - `down`: the last request failed to connect or timed out and will be retried;
 * - `misconfigured`: the upstream answers, but not as an OTLP receiver that takes our data (401, 403, 404, 405,
 *   501, an unfollowed redirect, a 2xx that is not an Export*ServiceResponse, …): the backlog is kept and the
 *   signal paused, probing again every `backoff.maxDelayMs`.
 */
export type UpstreamState = 'unknown' | 'up' | 'backoff' | 'down' | 'misconfigured';

/** Every {@link UpstreamState}, in order of severity (the aggregate state is the most severe of the signals'). */
export const UPSTREAM_STATES: readonly UpstreamState[] = ['unknown', 'up', 'backoff', 'down', 'misconfigured'];

/** What one signal's forwarder knows about the upstream. */
export interface SignalUpstreamStatus {
  state: UpstreamState;
  /** Last failure or refusal: HTTP status with the upstream's message, or the connection error. */
  lastError: string | undefined;
  /** When the upstream last accepted a request of this signal (ms since the epoch). */
  lastSuccessAt: number | undefined;
  /** Failed or refused attempts since the last success. */
  consecutiveFailures: number;
  /** When the next attempt is due (ms since the epoch), while waiting. */
  nextAttemptAt: number | undefined;
}

/** The upstream as a whole (reported by `status()`): the most severe signal state, plus each signal's. */
export interface UpstreamStatus extends SignalUpstreamStatus {
  /** The upstream base URL with any user name and password replaced by `***`. */
  url: string;
  signals: Record<Signal, SignalUpstreamStatus>;
}

/** Per-signal upstream state, shared by the three forwarders and read by `status()` and the state gauge. */
export class UpstreamTracker {
  readonly url: string;
  readonly signals: Record<Signal, SignalUpstreamStatus>;

  constructor(url: URL) {
    this.url = redactUrl(url);
    const fresh = (): SignalUpstreamStatus => ({
      state: 'unknown',
      lastError: undefined,
      lastSuccessAt: undefined,
      consecutiveFailures: 0,
      nextAttemptAt: undefined,
    });
    this.signals = { traces: fresh(), metrics: fresh(), logs: fresh() };
  }

  /** The most severe state across signals (`misconfigured` > `down` > `backoff` > `up` > `unknown`). */
  state(): UpstreamState {
    return this.worst().state;
  }

  /** A snapshot: the aggregate (state and last error of the most severe signal) and each signal's own. */
  snapshot(): UpstreamStatus {
    const worst = this.worst();
    let lastSuccessAt: number | undefined;
    let nextAttemptAt: number | undefined;
    let consecutiveFailures = 0;
    for (const s of SIGNALS) {
      const st = this.signals[s];
      if (st.lastSuccessAt !== undefined) lastSuccessAt = Math.max(lastSuccessAt ?? 0, st.lastSuccessAt);
      if (st.nextAttemptAt !== undefined) nextAttemptAt = Math.min(nextAttemptAt ?? Infinity, st.nextAttemptAt);
      consecutiveFailures = Math.max(consecutiveFailures, st.consecutiveFailures);
    }
    const signals = {} as Record<Signal, SignalUpstreamStatus>;
    for (const s of SIGNALS) signals[s] = { ...this.signals[s] };
    return {
      url: this.url,
      state: worst.state,
      lastError: worst.lastError ?? latestError(this.signals),
      lastSuccessAt,
      consecutiveFailures,
      nextAttemptAt,
      signals,
    };
  }

  private worst(): SignalUpstreamStatus {
    let worst = this.signals.traces;
    for (const s of SIGNALS) {
      const st = this.signals[s];
      if (UPSTREAM_STATES.indexOf(st.state) > UPSTREAM_STATES.indexOf(worst.state)) worst = st;
    }
    return worst;
  }
}

function latestError(signals: Record<Signal, SignalUpstreamStatus>): string | undefined {
  for (const s of SIGNALS) if (signals[s].lastError !== undefined) return signals[s].lastError;
  return undefined;
}

/**
 * A URL for display: user name and password (userinfo) replaced by `***`, so credentials given in `--upstream`
 * never reach status output or logs. Strings that do not parse are redacted by pattern.
 */
export function redactUrl(url: string | URL): string {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    return String(url).replace(/\/\/[^/?#]*@/, '//***@');
  }
  if (u.username === '' && u.password === '') return String(url);
  u.username = '***';
  u.password = '';
  return u.href;
}
