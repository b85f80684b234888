/** The shapes of a results file (bench/results/<date>-<host>.json), schema `vyr-bench-results/1`. */
import type { Summary } from './stats.ts';

/** One benchmark: raw samples in `unit`, and their summary; or a reason it was not measured. */
export interface Benchmark {
  /** Stable id, e.g. `startup.runc`, `runtime.cancel`. The whitepaper refers to benchmarks by id. */
  id: string;
  /** The table it belongs to: startup, throughput, phase, compile, cold, memory, size, vyr, collector, … */
  group: string;
  /** Who ran the workload: process, runc, crun, wasmtime, node-wasi, vyr, … */
  subject: string;
  title: string;
  unit: string;
  /** Which direction is better, for charts and for "where VYR is worse". */
  better: 'lower' | 'higher';
  /** Every sample, in the order taken (interleaved rounds keep their round index). */
  samples: number[];
  summary?: Summary;
  /** How one sample is taken. */
  method: string;
  /** Set when there are no samples: why (tool absent, refused on this machine, workload not built yet). */
  skipped?: string;
}

/** A ratio of two benchmarks computed pair by pair (same round) over their samples. */
export interface Ratio {
  id: string;
  title: string;
  numerator: string;
  denominator: string;
  pairs: number[];
  summary?: Summary;
  skipped?: string;
}

/** A figure we did not measure: quoted with its source and conditions. */
export interface CitedFigure {
  id: string;
  figure: string;
  value: string;
  conditions: string;
  source: string;
  url: string;
  quote: string;
}
