import type { Writable } from 'node:stream';

/** A levelled logger, structurally the `Logger` of `@vyr/telemetry` that libraries take as an option. */
export interface CliLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Levels of {@link CliLogger}, least severe first. */
export type CliLogLevel = 'debug' | 'info' | 'warn' | 'error';

const ORDER: Record<CliLogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * The logger of every long-running `vyr` command: one line per event on `out` (stderr), at `minLevel` (default
 * `info`) and above. With `json`: `{"time","level","message",…fields}`; otherwise
 * `2026-01-01T00:00:00.000Z warn  message key=value …`.
 */
export function createStreamLogger(out: Writable, json: boolean, minLevel: CliLogLevel = 'info'): CliLogger {
  const write = (level: CliLogLevel, message: string, fields?: Record<string, unknown>): void => {
    if (ORDER[level] < ORDER[minLevel]) return;
    const time = new Date().toISOString();
    if (json) {
      out.write(`${JSON.stringify({ time, level, message, ...fields })}\n`);
      return;
    }
    const kv = Object.entries(fields ?? {})
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    out.write(`${time} ${level.padEnd(5)} ${message}${kv ? ` ${kv}` : ''}\n`);
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
  };
}
