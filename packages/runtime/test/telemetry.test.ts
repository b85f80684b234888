import { join } from 'node:path';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { buildWatFixture } from '@vyr/testing';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '@vyr/testing/otlp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime } from '../dist/index.js';
import { signedStoreSource, tempDir } from './helpers.js';

/** A pull reader: the test collects when it wants. */
class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

describe('exit criterion: every task leaves one OTLP trace covering verify → prepare → instantiate → run → terminate', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let receiver: OtlpReceiver;
  let provider: TracerProvider;
  let meterProvider: MeterProvider;
  let reader: TestReader;
  let runtime: Runtime;
  /** Packed, signed artifacts in a real store, verified on every load. */
  let hello: { digest: string };
  let exit33: { digest: string };
  let loop: { digest: string };
  const released: string[] = [];

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    receiver = await startOtlpReceiver();
    provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'vyr-runtime-test' }),
      spanProcessors: [
        new BatchSpanProcessor({
          exporter: new OTLPTraceExporter({ url: `${receiver.url}/v1/traces` }),
          maxQueueSize: 10_000,
          scheduledDelayMillis: 50,
        }),
      ],
    });
    reader = new TestReader({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
    meterProvider = new MeterProvider({ readers: [reader] });
    const store = await signedStoreSource(dir, [
      { name: 'hello', core: await buildWatFixture('hello') },
      { name: 'exit-33', core: await buildWatFixture('exit-33') },
      { name: 'loop', core: await buildWatFixture('loop') },
    ]);
    hello = { digest: store.digests.hello! };
    exit33 = { digest: store.digests['exit-33']! };
    loop = { digest: store.digests.loop! };
    runtime = createRuntime({
      artifacts: store.source,
      cacheDir: join(dir, 'cache'),
      nodeId: 'node-under-test',
      tier: 'edge',
      tracer: provider.getTracer('vyr'),
      meter: meterProvider.getMeter('vyr'),
      hooks: {
        // A state kernel's own spans, started in the context the runtime hands to each hook.
        bind: ({ traceContext }) => {
          provider.getTracer('kernel').startSpan('kernel.bind', {}, traceContext).end();
          return [];
        },
        release: ({ taskId, traceContext }) => {
          provider.getTracer('kernel').startSpan('kernel.release', {}, traceContext).end();
          released.push(taskId);
          return { attributes: { 'vyr.state.digest': 'sha256:none' } };
        },
      },
    });
  });
  afterAll(async () => {
    await runtime?.close();
    await provider?.shutdown();
    await meterProvider?.shutdown();
    await receiver?.close();
    await cleanup();
  });

  const spansOf = (traceId: string) => (spans: ReceivedSpan[]) => spans.filter((s) => s.traceId === traceId);

  it('sends one trace per task with the span tree and attributes of ARCHITECTURE.md §5, joined to the caller', async () => {
    const task = await runtime.submit({
      digest: exit33.digest,
      traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
    });
    const status = await runtime.wait(task.id);
    expect(status.traceId).toBe(CALLER_TRACE);
    await provider.forceFlush();
    const all = await receiver.waitForSpans((s) => spansOf(CALLER_TRACE)(s).some((x) => x.name === 'vyr.task'));
    const spans = spansOf(CALLER_TRACE)(all);
    const root = spans.find((s) => s.name === 'vyr.task')!;
    expect(spans.filter((s) => s.name === 'vyr.task')).toHaveLength(1);
    expect(root.parentSpanId).toBe(CALLER_SPAN);
    expect(root.resource['service.name']).toBe('vyr-runtime-test');
    expect(root.attributes).toMatchObject({
      'vyr.task.id': task.id,
      'vyr.artifact.digest': exit33.digest,
      'vyr.artifact.name': 'exit-33',
      'vyr.node.id': 'node-under-test',
      'vyr.node.tier': 'edge',
      'vyr.task.outcome': 'FAILED',
      'vyr.task.reason': 'EXIT_CODE',
      'vyr.task.exit_code': 33,
    });
    const children = spans.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name);
    expect(children.sort()).toEqual(
      [
        'vyr.verify',
        'vyr.prepare',
        'vyr.state.bind',
        'vyr.instantiate',
        'vyr.run',
        'vyr.state.release',
        'vyr.terminate',
      ].sort(),
    );
    const byName = (n: string) => spans.find((s) => s.name === n)!;
    // The hooks' traceContext is their own span's: what the kernel does nests under vyr.state.bind / .release.
    expect(byName('kernel.bind').parentSpanId).toBe(byName('vyr.state.bind').spanId);
    expect(byName('kernel.release').parentSpanId).toBe(byName('vyr.state.release').spanId);
    expect(byName('vyr.prepare').attributes['vyr.prepare.cache_hit']).toBe(false);
    expect(byName('vyr.run').attributes['vyr.task.exit_code']).toBe(33);
    expect(byName('vyr.state.release').attributes['vyr.state.digest']).toBe('sha256:none');
    // Phases are in order and inside the root span. The SDK stamps span starts from Date.now() (whole
    // milliseconds) while instantiate/run carry the worker's precise times, hence 1 ms of slack.
    const ms = 1_000_000n;
    const order = ['vyr.verify', 'vyr.prepare', 'vyr.state.bind', 'vyr.instantiate', 'vyr.run', 'vyr.state.release'];
    for (let i = 1; i < order.length; i++) {
      expect(byName(order[i]!).startTimeUnixNano + ms).toBeGreaterThanOrEqual(byName(order[i - 1]!).endTimeUnixNano);
    }
    for (const s of spans) {
      expect(s.startTimeUnixNano + ms).toBeGreaterThanOrEqual(root.startTimeUnixNano);
      expect(s.endTimeUnixNano).toBeLessThanOrEqual(root.endTimeUnixNano + ms);
    }
    expect(released).toContain(task.id);
  });

  it('marks a warm prepare as a cache hit, and a cancelled loop still closes its trace', async () => {
    await runtime.wait((await runtime.submit({ digest: hello.digest })).id);
    const warm = await runtime.submit({ digest: hello.digest });
    await runtime.wait(warm.id);
    const busy = await runtime.submit({ digest: loop.digest });
    for await (const e of runtime.watch(busy.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    const cancelled = await runtime.cancel(busy.id);
    expect(cancelled.state).toBe('CANCELLED');
    await provider.forceFlush();
    const ids = [runtime.get(warm.id).traceId!, cancelled.traceId!];
    const all = await receiver.waitForSpans((s) =>
      ids.every((id) => s.some((x) => x.traceId === id && x.name === 'vyr.task')),
    );
    const warmPrepare = all.find((s) => s.traceId === ids[0] && s.name === 'vyr.prepare')!;
    const helloRoot = all.find((s) => s.traceId === ids[0] && s.name === 'vyr.task')!;
    expect(helloRoot.parentSpanId).toBe('');
    expect(warmPrepare.attributes['vyr.prepare.cache_hit']).toBe(true);
    const loopSpans = all.filter((s) => s.traceId === ids[1]);
    const loopRoot = loopSpans.find((s) => s.name === 'vyr.task')!;
    expect(loopRoot.attributes['vyr.task.outcome']).toBe('CANCELLED');
    expect(loopSpans.map((s) => s.name)).toEqual(
      expect.arrayContaining(['vyr.run', 'vyr.state.release', 'vyr.terminate']),
    );
  });

  it('rejected submissions leave a trace with the error code; metrics count tasks by outcome', async () => {
    await expect(runtime.submit({ digest: `sha256:${'1'.repeat(64)}` })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await provider.forceFlush();
    const all = await receiver.waitForSpans((s) => s.some((x) => x.attributes['vyr.task.outcome'] === 'REJECTED'));
    const rejected = all.find((x) => x.attributes['vyr.task.outcome'] === 'REJECTED')!;
    expect(rejected.attributes['vyr.error.code']).toBe('NOT_FOUND');

    const { resourceMetrics } = await reader.collect();
    const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const byName = (n: string) => metrics.find((m) => m.descriptor.name === n);
    const duration = byName('vyr.task.duration')!;
    expect(duration.descriptor.unit).toBe('s');
    const outcomes = duration.dataPoints.map((p) => p.attributes['vyr.task.outcome']).sort();
    expect(outcomes).toEqual(['CANCELLED', 'FAILED', 'SUCCEEDED']);
    const active = byName('vyr.task.active')!;
    expect(active.dataPoints.reduce((n, p) => n + (p.value as number), 0)).toBe(0);
    const queue = byName('vyr.task.queue.length')!;
    expect(queue.dataPoints.reduce((n, p) => n + (p.value as number), 0)).toBe(0);
    expect(byName('vyr.artifact.verify.duration')).toBeDefined();
    expect(byName('vyr.artifact.prepare.duration')).toBeDefined();
  });

  it('a cancelled or timed-out task: vyr.run covers the run up to the stop, vyr.instantiate only instantiation', async () => {
    const busy = await runtime.submit({ digest: loop.digest });
    const late = await runtime.submit({ digest: loop.digest, limits: { deadlineMs: 1500 } });
    for await (const e of runtime.watch(busy.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    // Let the guest get into its loop (instantiating the tiny module takes a few milliseconds).
    await new Promise((r) => setTimeout(r, 500));
    const cancelled = await runtime.cancel(busy.id);
    const timedOut = await runtime.wait(late.id);
    expect([cancelled.state, timedOut.state]).toEqual(['CANCELLED', 'DEADLINE_EXCEEDED']);
    await provider.forceFlush();
    const ids = [cancelled.traceId!, timedOut.traceId!];
    const all = await receiver.waitForSpans((s) =>
      ids.every((id) => s.some((x) => x.traceId === id && x.name === 'vyr.task')),
    );
    for (const id of ids) {
      const spans = all.filter((s) => s.traceId === id);
      const inst = spans.find((s) => s.name === 'vyr.instantiate')!;
      const run = spans.find((s) => s.name === 'vyr.run')!;
      const terminate = spans.find((s) => s.name === 'vyr.terminate')!;
      // Instantiation ends where the run starts; the run lasts until the worker was stopped.
      expect(inst.endTimeUnixNano).toBe(run.startTimeUnixNano);
      expect(run.endTimeUnixNano - run.startTimeUnixNano).toBeGreaterThan(
        inst.endTimeUnixNano - inst.startTimeUnixNano,
      );
      expect(run.endTimeUnixNano).toBeGreaterThan(run.startTimeUnixNano);
      expect(run.endTimeUnixNano).toBeGreaterThanOrEqual(terminate.startTimeUnixNano);
    }
  });
});
