import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SpanStatusCode } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Attr, MetricNames, SpanNames } from '@vyr/telemetry';
import { describe, expect, it } from 'vitest';
import type { StateSlot } from '../src/index.js';
import { expectCode } from './expect.js';
import { openKernel, tempDir } from './helpers.js';

class PullReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

function telemetry() {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const reader = new PullReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  return {
    exporter,
    reader,
    tracer: tracerProvider.getTracer('vyr'),
    meter: meterProvider.getMeter('vyr'),
  };
}

const RW: StateSlot[] = [{ name: 'data', mount: '/data', access: 'rw' }];

describe('telemetry', () => {
  it('writes create, bind and release spans with ids, digest and bytes', async () => {
    const t = telemetry();
    const kernel = await openKernel({ tracer: t.tracer, meter: t.meter });
    const info = await kernel.create({ scope: 'named' });
    const mount = await kernel.bind({ instanceId: info.id, taskId: 't', slot: 'data', declaredSlots: RW });
    await writeFile(join(mount.hostPath, 'f'), 'twelve bytes');
    const { releases } = await kernel.releaseTask('t');
    const spans = t.exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual([SpanNames.stateCreate, SpanNames.stateBind, SpanNames.stateRelease]);
    const [create, bind, release] = spans;
    expect(create!.attributes).toMatchObject({
      [Attr.stateId]: info.id,
      [Attr.stateDigest]: info.digest,
      [Attr.stateBytes]: 0,
    });
    expect(bind!.attributes).toMatchObject({
      [Attr.stateId]: info.id,
      [Attr.taskId]: 't',
      [Attr.stateSlot]: 'data',
      [Attr.stateAccess]: 'rw',
    });
    expect(release!.attributes).toMatchObject({
      [Attr.stateId]: info.id,
      [Attr.taskId]: 't',
      [Attr.stateDigest]: releases[0]!.digest,
      [Attr.stateBytes]: 12,
    });
  });

  it('marks a refused bind span as an error with the StateError code', async () => {
    const t = telemetry();
    const kernel = await openKernel({ tracer: t.tracer, meter: t.meter });
    const info = await kernel.create({ scope: 'named' });
    await expectCode(
      kernel.bind({ instanceId: info.id, taskId: 't', slot: 'nope', declaredSlots: RW }),
      'UNDECLARED_SLOT',
    );
    const bind = t.exporter.getFinishedSpans().find((s) => s.name === SpanNames.stateBind)!;
    expect(bind.status.code).toBe(SpanStatusCode.ERROR);
    expect(bind.attributes[Attr.errorCode]).toBe('UNDECLARED_SLOT');
  });

  it('reports bytes held per scope on the vyr.state.bytes gauge (last measurement)', async () => {
    const t = telemetry();
    const kernel = await openKernel({ tracer: t.tracer, meter: t.meter });
    const points = async () => {
      const { resourceMetrics } = await t.reader.collect();
      const metric = resourceMetrics.scopeMetrics
        .flatMap((s) => s.metrics)
        .find((m) => m.descriptor.name === MetricNames.stateBytes)!;
      expect(metric.descriptor.unit).toBe('By');
      return Object.fromEntries(metric.dataPoints.map((p) => [p.attributes['vyr.state.scope'], p.value]));
    };
    expect(await points()).toEqual({ named: 0, task: 0 });
    const seed = await tempDir();
    await writeFile(join(seed, 'b'), Buffer.alloc(300));
    const named = await kernel.create({ scope: 'named' });
    await kernel.create({ scope: 'task', taskId: 't', seed: { dir: seed } });
    expect(await points()).toEqual({ named: 0, task: 300 });
    const m1 = await kernel.bind({ instanceId: named.id, taskId: 't', slot: 'data', declaredSlots: RW });
    await writeFile(join(m1.hostPath, 'a'), Buffer.alloc(1000));
    await kernel.releaseTask('t');
    // Named bytes measured at release; the task-scoped instance is destroyed.
    expect(await points()).toEqual({ named: 1000, task: 0 });
  });
});
