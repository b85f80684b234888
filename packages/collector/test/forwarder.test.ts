import { create, toBinary } from '@bufbuild/protobuf';
import { MockOtlpServer } from '@elastic/mockotlpserver';
import { createCollector } from '@vyr/collector';
import { ExportTraceServiceResponseSchema } from '@vyr/proto/otlp';
import { describe, expect, it } from 'vitest';
import {
  type Answer,
  deadUpstream,
  decodeTraceId,
  fakeUpstream,
  post,
  spanIdsOf,
  tempDir,
  traceBody,
  until,
} from './helpers.js';

const fastBackoff = { initialDelayMs: 10, maxDelayMs: 50 };

/** Starts a collector in front of a scripted upstream; `run` gets the receiver URL and the upstream. */
async function withCollector(
  script: Answer[],
  run: (ctx: {
    url: string;
    up: Awaited<ReturnType<typeof fakeUpstream>>;
    collector: ReturnType<typeof createCollector>;
  }) => Promise<void>,
): Promise<void> {
  const tmp = await tempDir();
  const up = await fakeUpstream(script);
  const collector = createCollector({
    port: 0,
    spoolDir: tmp.dir,
    upstream: up.url,
    compression: 'none',
    backoff: fastBackoff,
  });
  const { url } = await collector.start();
  try {
    await run({ url, up, collector });
  } finally {
    await collector.stop();
    await up.close();
    await tmp.cleanup();
  }
}

/** Batch numbers of the trace requests an upstream saw, in arrival order. */
function batchesSeen(up: Awaited<ReturnType<typeof fakeUpstream>>): number[] {
  return up.seen.map((s) => decodeTraceId(spanIdsOf(s.body)[0] as Uint8Array).batch);
}

describe('forwarder (OTLP/HTTP client rules)', () => {
  it('honours Retry-After on 429 instead of its own, much shorter back-off', async () => {
    await withCollector([{ status: 429, headers: { 'retry-after': '1' } }], async ({ url, up, collector }) => {
      expect((await post(`${url}/v1/traces`, traceBody(1, 1, 5))).status).toBe(200);
      await until(() => up.seen.length === 2, 10_000, 'the retry');
      const gap = (up.seen[1]?.at ?? 0) - (up.seen[0]?.at ?? 0);
      // The back-off alone would retry within 50 ms; Retry-After: 1 asks for a second.
      expect(gap).toBeGreaterThanOrEqual(950);
      await until(() => collector.status().spool.records === 0, 5000, 'drained');
      expect(collector.status().counters.retries).toBe(1);
      expect(collector.status().counters.forwarded.traces).toBe(5);
    });
  });

  it('retries 502, 503 and 504 until a 2xx, keeping the order of the queue', async () => {
    await withCollector([{ status: 502 }, { status: 503 }, { status: 504 }], async ({ url, up, collector }) => {
      for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 4))).status).toBe(200);
      await until(() => collector.status().spool.records === 0, 10_000, 'drained');
      expect(batchesSeen(up)).toEqual([1, 1, 1, 1, 2, 3]);
      expect(collector.status().counters.retries).toBe(3);
      expect(collector.status().upstream.state).toBe('up');
    });
  });

  it('does not retry a 400 (or any other non-retryable status): drops the request, counted, and moves on', async () => {
    await withCollector(
      [
        { status: 400, headers: { 'content-type': 'application/json' }, body: '{"code":3,"message":"bad data"}' },
        { status: 500 },
      ],
      async ({ url, up, collector }) => {
        for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 6))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'drained');
        expect(batchesSeen(up)).toEqual([1, 2, 3]);
        const st = collector.status();
        expect(st.counters.retries).toBe(0);
        expect(st.counters.dropped.upstream_status).toBe(12);
        expect(st.counters.forwarded.traces).toBe(6);
      },
    );
  });

  it('never retries a partial success and counts the items the upstream rejected', async () => {
    const partial = toBinary(
      ExportTraceServiceResponseSchema,
      create(ExportTraceServiceResponseSchema, {
        partialSuccess: { rejectedSpans: 3n, errorMessage: 'spans too old' },
      }),
    );
    await withCollector(
      [{ status: 200, headers: { 'content-type': 'application/x-protobuf' }, body: partial }],
      async ({ url, up, collector }) => {
        expect((await post(`${url}/v1/traces`, traceBody(1, 1, 10))).status).toBe(200);
        expect((await post(`${url}/v1/traces`, traceBody(1, 2, 10))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'drained');
        expect(batchesSeen(up)).toEqual([1, 2]);
        const st = collector.status();
        expect(st.counters.dropped.upstream_rejected).toBe(3);
        expect(st.counters.forwarded.traces).toBe(17);
        expect(st.counters.retries).toBe(0);
      },
    );
  });

  it('keeps retrying through connection failures and delivers once the upstream comes up', async () => {
    const tmp = await tempDir();
    const dead = await deadUpstream();
    const collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      backoff: fastBackoff,
    });
    const { url } = await collector.start();
    let up: Awaited<ReturnType<typeof fakeUpstream>> | undefined;
    try {
      for (let b = 1; b <= 5; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 3))).status).toBe(200);
      await until(() => collector.status().counters.retries >= 5, 10_000, 'several retries');
      expect(collector.status().upstream.state).toBe('down');
      expect(collector.status().spool.items).toBe(15);
      expect(collector.status().spool.oldestAgeMs).toBeGreaterThan(0);
      await dead.close();
      up = await fakeUpstream([], dead.port);
      await until(() => collector.status().spool.records === 0, 10_000, 'drained');
      expect(batchesSeen(up)).toEqual([1, 2, 3, 4, 5]);
      expect(collector.status().upstream.state).toBe('up');
    } finally {
      await collector.stop();
      await up?.close();
      await dead.close();
      await tmp.cleanup();
    }
  });
});

describe('chaining', () => {
  it('edge collector → cloud collector → final receiver delivers every span once, in order', async () => {
    const edgeDir = await tempDir();
    const cloudDir = await tempDir();
    const final = await fakeUpstream();
    const cloud = createCollector({ port: 0, spoolDir: cloudDir.dir, upstream: final.url, backoff: fastBackoff });
    const cloudUrl = (await cloud.start()).url;
    const edge = createCollector({ port: 0, spoolDir: edgeDir.dir, upstream: cloudUrl, backoff: fastBackoff });
    const edgeUrl = (await edge.start()).url;
    try {
      for (let b = 1; b <= 10; b++) expect((await post(`${edgeUrl}/v1/traces`, traceBody(7, b, 50))).status).toBe(200);
      await until(() => final.seen.length === 10, 10_000, 'ten requests at the final receiver');
      expect(batchesSeen(final)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(edge.status().counters.forwarded.traces).toBe(500);
      await until(() => cloud.status().counters.forwarded.traces === 500, 5000, 'cloud forwarded');
    } finally {
      await edge.stop();
      await cloud.stop();
      await final.close();
      await edgeDir.cleanup();
      await cloudDir.cleanup();
    }
  });

  it('forwards to a third-party OTLP receiver (@elastic/mockotlpserver)', async () => {
    const tmp = await tempDir();
    const received: unknown[] = [];
    const mock = new MockOtlpServer({
      logLevel: 'warn',
      services: ['http'],
      httpHostname: '127.0.0.1',
      httpPort: 0,
      onTrace: (t: unknown) => received.push(t),
    });
    await mock.start();
    const collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: String(mock.httpUrl),
      compression: 'none',
      backoff: fastBackoff,
    });
    const { url } = await collector.start();
    try {
      for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(3, b, 20))).status).toBe(200);
      await until(() => received.length === 3, 10_000, 'three trace requests at mockotlpserver');
      const spans = (received as { resourceSpans: { scopeSpans: { spans: { traceId: Uint8Array }[] }[] }[] }[]).flatMap(
        (r) => r.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)),
      );
      expect(spans).toHaveLength(60);
      expect(spans.map((s) => decodeTraceId(s.traceId).batch)).toEqual([
        ...Array(20).fill(1),
        ...Array(20).fill(2),
        ...Array(20).fill(3),
      ]);
      await until(() => collector.status().spool.records === 0, 5000, 'drained');
    } finally {
      await collector.stop();
      await mock.close();
      await tmp.cleanup();
    }
  });
});
