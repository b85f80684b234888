import { metrics } from '@opentelemetry/api';
import { type DataPoint, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { createCollector, LocalMetricNames } from '@vyr/collector';
import { MetricNames } from '@vyr/telemetry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadUpstream, fakeUpstream, post, tempDir, traceBody, until } from './helpers.js';

/** A pull reader: the test collects when it wants. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const reader = new TestReader();
const provider = new MeterProvider({ readers: [reader] });

async function points(): Promise<Map<string, DataPoint<unknown>[]>> {
  const { resourceMetrics } = await reader.collect();
  const out = new Map<string, DataPoint<unknown>[]>();
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) out.set(m.descriptor.name, m.dataPoints as DataPoint<unknown>[]);
  }
  return out;
}

function sum(ps: DataPoint<unknown>[] | undefined, attrs: Record<string, string> = {}): number {
  return (ps ?? [])
    .filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))
    .reduce((n, p) => n + Number(p.value), 0);
}

describe('own telemetry through @opentelemetry/api', () => {
  beforeAll(() => {
    metrics.setGlobalMeterProvider(provider);
  });
  afterAll(async () => {
    await provider.shutdown();
    metrics.disable();
  });

  it('reports received, forwarded, retries, dropped by reason, spool gauges and upstream state', async () => {
    const tmp = await tempDir();
    const dead = await deadUpstream();
    const port = dead.port;
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: `http://127.0.0.1:${port}`,
      backoff: { initialDelayMs: 10, maxDelayMs: 50 },
    });
    const { url } = await c.start();
    let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 10))).status).toBe(200);
      expect((await post(`${url}/v1/traces`, new Uint8Array([0xff]))).status).toBe(400);
      await until(() => c.status().counters.retries >= 2, 5000, 'retries');
      let m = await points();
      expect(sum(m.get(MetricNames.collectorReceived), { signal: 'traces' })).toBe(30);
      expect(sum(m.get(MetricNames.collectorSpoolItems))).toBe(30);
      expect(sum(m.get(MetricNames.collectorSpoolBytes))).toBeGreaterThan(0);
      expect(sum(m.get(MetricNames.collectorSpoolOldestAge))).toBeGreaterThan(0);
      expect(sum(m.get(MetricNames.collectorRetries))).toBeGreaterThanOrEqual(2);
      expect(sum(m.get(LocalMetricNames.upstreamState), { state: 'down' })).toBe(1);
      expect(sum(m.get(LocalMetricNames.requests), { outcome: 'malformed' })).toBe(1);

      await dead.close();
      up = await fakeUpstream([{ status: 400 }], port);
      await until(() => c.status().spool.records === 0, 10_000, 'drained');
      m = await points();
      expect(sum(m.get(MetricNames.collectorForwarded), { signal: 'traces' })).toBe(20);
      expect(sum(m.get(MetricNames.collectorDropped), { reason: 'upstream_status' })).toBe(10);
      expect(sum(m.get(MetricNames.collectorSpoolItems))).toBe(0);
      expect(sum(m.get(LocalMetricNames.upstreamState), { state: 'up' })).toBe(1);
    } finally {
      await c.stop();
      await up?.close();
      await dead.close();
      await tmp.cleanup();
    }
  });
});
