import { CliError } from './errors.js';
import { ExitCode } from './exit-codes.js';

// IEC units and bare K/M/G are binary (1024), as `--memory 64M` users of docker, wasmtime and `ulimit` expect;
// SI units KB/MB/GB are decimal (1000). Case does not matter.
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
};

/**
 * Parses a size into bytes, the one size syntax of every `vyr` flag (docs/cli.md "Sizes and durations"):
 * a number with an optional unit — none or `B` (bytes); `K`, `KiB`, `M`, `MiB`, `G`, `GiB` (binary: 1024);
 * `KB`, `MB`, `GB` (decimal: 1000); any case. `64M` = `64MiB` = 67108864, `10MB` = 10000000.
 * Fractions are rounded to whole bytes.
 *
 * @param flag named in the error, e.g. `--memory`.
 * @throws CliError `INVALID_ARGUMENT` (exit 2) for anything else, zero, or more than 2^53 - 1.
 */
export function parseSize(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(value.trim());
  const unit = m ? SIZE_UNITS[(m[2] as string).toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new CliError(
      'INVALID_ARGUMENT',
      `${flag} ${JSON.stringify(value)} is not a size (e.g. 64MiB or 64M = 64×1024², 10MB = 10×1000², 4096 bytes)`,
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

/**
 * Parses a duration like `500ms`, `5s`, `10m`, `1h`, `7d` into milliseconds.
 *
 * @throws CliError `INVALID_ARGUMENT` (exit 2).
 */
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

/**
 * Parses a listen address `HOST:PORT` or `[IPv6]:PORT` (port 0 picks a free port) — the grammar of the node's
 * `--listen`, shared by every `vyr` command that listens.
 *
 * @throws CliError `INVALID_INPUT` (exit 2) naming `flag`.
 */
export function parseListen(value: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new CliError(
      'INVALID_INPUT',
      `${flag} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:4318, [::1]:4318)`,
      ExitCode.USAGE,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}
