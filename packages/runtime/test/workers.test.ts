import { join } from 'node:path';
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { buildWatFixture } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type RuntimeArtifact } from '../dist/index.js';
import { makeArtifact, memorySource, p1ToComponent, tempDir, writeCacheEntry } from './helpers.js';

/** A pull reader: the test collects when it wants. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

describe('worker deaths', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let hello: RuntimeArtifact;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    hello = makeArtifact(await p1ToComponent(await buildWatFixture('hello')), { name: 'hello' });
  });
  afterAll(() => cleanup());

  it('a worker that dies mid-task ends the task WORKER_CRASHED, leaves the active gauge, and is replaced', async () => {
    // The component's host JS (from a cache entry with valid hashes) ends the worker thread while instantiating,
    // as a crash in the WASI host would. The component bytes are never used: the disk entry is found first.
    const crasher = makeArtifact(new Uint8Array([0, 97, 115, 109, 13, 0, 1, 0]), { name: 'crasher' });
    const cacheDir = join(dir, 'crash');
    await writeCacheEntry(cacheDir, crasher.digest, 'export async function instantiate() { process.exit(3); }\n');
    const reader = new TestReader({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const runtime = createRuntime({
      artifacts: memorySource([crasher, hello]),
      cacheDir,
      poolSize: 1,
      meter: meterProvider.getMeter('vyr'),
    });
    try {
      await runtime.warmUp();
      const task = await runtime.submit({ digest: crasher.digest });
      const status = await runtime.wait(task.id);
      expect(status).toMatchObject({ state: 'FAILED', reason: 'WORKER_CRASHED' });
      expect(status.message).toMatch(/worker thread exited/);
      expect(runtime.stats()).toMatchObject({ running: 0, workersReplaced: 1 });

      const { resourceMetrics } = await reader.collect();
      const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
      const sum = (name: string) =>
        metrics.find((m) => m.descriptor.name === name)!.dataPoints.reduce((n, p) => n + (p.value as number), 0);
      expect(sum('vyr.task.active')).toBe(0);
      expect(sum('vyr.task.queue.length')).toBe(0);

      // The replacement worker runs the next task.
      const next = await runtime.wait((await runtime.submit({ digest: hello.digest })).id);
      expect(next.state).toBe('SUCCEEDED');
      const after = (await reader.collect()).resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
      const active = after.find((m) => m.descriptor.name === 'vyr.task.active')!;
      expect(active.dataPoints.reduce((n, p) => n + (p.value as number), 0)).toBe(0);
    } finally {
      await runtime.close();
      await meterProvider.shutdown();
    }
  });

  it('workers that die at startup are restarted with back-off; warmUp fails with UNAVAILABLE after five in a row', async () => {
    // A 5 MiB JS heap is too small to load the WASI host: every worker dies before it is ready.
    const runtime = createRuntime({
      artifacts: memorySource([hello]),
      cacheDir: join(dir, 'startup'),
      poolSize: 1,
      workerHeapMb: 5,
    });
    try {
      const task = await runtime.submit({ digest: hello.digest });
      await expect(runtime.warmUp()).rejects.toMatchObject({
        code: 'UNAVAILABLE',
        message: expect.stringMatching(/died 5 times in a row before they were ready/),
      });
      // A task waiting for a worker does not wait forever.
      expect(await runtime.wait(task.id)).toMatchObject({
        state: 'FAILED',
        reason: 'WORKER_CRASHED',
        message: expect.stringMatching(/died 5 times in a row/),
      });
      expect(runtime.stats()).toMatchObject({ workers: 0, workersReplaced: 5 });
      // Calling warmUp again is a new attempt (and fails the same way here).
      await expect(runtime.warmUp()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(runtime.stats().workersReplaced).toBe(10);
    } finally {
      await runtime.close();
    }
    expect(() => createRuntime({ artifacts: memorySource([]), cacheDir: dir, workerHeapMb: 1 })).toThrow(
      /workerHeapMb/,
    );
  });
});
