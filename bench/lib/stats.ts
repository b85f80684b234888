/**
 * Summaries of raw samples, one definition for the harness, the whitepaper renderer and its test.
 * Quantiles use the nearest-rank method on the sorted samples (no interpolation), so every reported number is
 * one of the samples.
 */

/** min / median / p95 / max of a sample set, in the samples' unit. */
export interface Summary {
  n: number;
  min: number;
  median: number;
  p95: number;
  max: number;
}

/** Nearest-rank quantile `q` (0..1) of `values`. Throws on an empty set. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('quantile of an empty sample set');
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(q * s.length));
  return s[Math.min(s.length, rank) - 1] as number;
}

/** The summary of `values` (at least one sample). */
export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error('summary of an empty sample set');
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0] as number,
    median: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    max: s.at(-1) as number,
  };
}

/**
 * Pair-by-pair ratios a[i] / b[i] of two interleaved sample series (same round index, so both saw the same
 * moment's noise). The shorter series bounds the pairs.
 */
export function pairRatios(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.min(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) if ((b[i] as number) !== 0) out.push((a[i] as number) / (b[i] as number));
  return out;
}
