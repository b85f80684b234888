import { availableParallelism } from 'node:os';
import { NodeError } from './errors.js';

/** The three tier profiles. The artifact is identical on every tier; only these defaults change. */
export type Tier = 'laptop' | 'edge' | 'cloud';

/** Defaults a tier sets; every field can be overridden by a flag or option. */
export interface TierProfile {
  /** Worker threads. */
  poolSize: number;
  /** Tasks allowed to wait (PENDING + QUEUED). */
  maxQueueLength: number;
  /** Memory limit of tasks whose artifact declares none, bytes. */
  defaultMemoryBytes: number;
  /** Deadline of tasks whose artifact declares none, ms; undefined: none. */
  defaultDeadlineMs: number | undefined;
  /** Where telemetry goes when `--otlp` is not given; undefined: no export (streams only). */
  otlpEndpoint: string | undefined;
  /** Metric collection period, ms. */
  metricIntervalMs: number;
  /** Largest artifact upload, bytes. */
  maxArtifactBytes: number;
}

const MiB = 1024 * 1024;

/**
 * - `laptop`: a developer machine: 2 workers, telemetry only on the live streams unless `--otlp` is given.
 * - `edge`: a small box that may be offline: 2 workers, a short queue, telemetry to a collector on the same host
 *   (`vyr collector start` on 127.0.0.1:4318), which stores and forwards it (ARCHITECTURE.md §6).
 * - `cloud`: a VM: one worker per core, a long queue, larger limits; telemetry to `--otlp`.
 */
export const TIERS: Readonly<Record<Tier, TierProfile>> = {
  laptop: {
    poolSize: 2,
    maxQueueLength: 64,
    defaultMemoryBytes: 256 * MiB,
    defaultDeadlineMs: undefined,
    otlpEndpoint: undefined,
    metricIntervalMs: 10_000,
    maxArtifactBytes: 256 * MiB,
  },
  edge: {
    poolSize: 2,
    maxQueueLength: 32,
    defaultMemoryBytes: 128 * MiB,
    defaultDeadlineMs: 60_000,
    otlpEndpoint: 'http://127.0.0.1:4318',
    metricIntervalMs: 30_000,
    maxArtifactBytes: 128 * MiB,
  },
  cloud: {
    poolSize: Math.max(2, availableParallelism()),
    maxQueueLength: 256,
    defaultMemoryBytes: 512 * MiB,
    defaultDeadlineMs: undefined,
    otlpEndpoint: undefined,
    metricIntervalMs: 10_000,
    maxArtifactBytes: 1024 * MiB,
  },
};

/** Parses a tier name. @throws NodeError INVALID_ARGUMENT. */
export function parseTier(value: string): Tier {
  if (value === 'laptop' || value === 'edge' || value === 'cloud') return value;
  throw new NodeError('INVALID_ARGUMENT', `tier ${JSON.stringify(value)} is not one of laptop, edge, cloud`);
}
