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

  it('does not retry a 400 (bad data): drops that request, counted, keeps the upstream "up" and moves on', async () => {
    await withCollector(
      [{ status: 400, headers: { 'content-type': 'application/json' }, body: '{"code":3,"message":"bad data"}' }],
      async ({ url, up, collector }) => {
        for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 6))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'drained');
        expect(batchesSeen(up)).toEqual([1, 2, 3]);
        const st = collector.status();
        expect(st.counters.retries).toBe(0);
        expect(st.counters.dropped.upstream_status).toBe(6);
        expect(st.counters.forwarded.traces).toBe(12);
        expect(st.upstream.state).toBe('up');
        expect(st.upstream.signals.traces.state).toBe('up');
      },
    );
  });

  it('remembers a 400 as the last error of an upstream that is reachable (state up, not unknown)', async () => {
    await withCollector(
      [{ status: 400, headers: { 'content-type': 'application/json' }, body: '{"code":3,"message":"bad data"}' }],
      async ({ url, collector }) => {
        expect((await post(`${url}/v1/traces`, traceBody(1, 1, 2))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'drained');
        const st = collector.status().upstream;
        expect(st.state).toBe('up');
        expect(st.lastError).toBe('HTTP 400: bad data');
        expect(st.signals.traces.consecutiveFailures).toBe(1);
      },
    );
  });

  const notOtlp: [string, Answer][] = [
    ['501 (a server without POST)', { status: 501, body: 'Not Implemented' }],
    ['401 (missing credentials)', { status: 401, body: 'Unauthorized' }],
    ['403 (wrong credentials)', { status: 403 }],
    ['404 (wrong path)', { status: 404, headers: { 'content-type': 'text/html' }, body: '<h1>Not Found</h1>' }],
    ['405 (method not allowed)', { status: 405 }],
    ['500 (a broken upstream)', { status: 500 }],
    ['301 (a redirect POST cannot follow)', { status: 301, headers: { location: 'http://elsewhere.invalid/' } }],
    ['302 (a redirect POST cannot follow)', { status: 302, headers: { location: '/login' } }],
    [
      '200 with an HTML page instead of an export response',
      { status: 200, headers: { 'content-type': 'text/html' }, body: '<html><body>Welcome</body></html>' },
    ],
    [
      '200 with bytes that are not an ExportTraceServiceResponse',
      { status: 200, headers: { 'content-type': 'application/x-protobuf' }, body: 'not protobuf at all' },
    ],
  ];
  it.each(notOtlp)(
    'keeps the backlog when the upstream answers %s: state misconfigured, nothing dropped, all delivered once it is fixed',
    async (_what, answer) => {
      await withCollector([answer, answer, answer], async ({ url, up, collector }) => {
        for (let b = 1; b <= 3; b++) expect((await post(`${url}/v1/traces`, traceBody(1, b, 5))).status).toBe(200);
        await until(() => collector.status().counters.misconfigured >= 2, 10_000, 'two refused probes');
        const mid = collector.status();
        expect(mid.upstream.state).toBe('misconfigured');
        expect(mid.upstream.signals.traces.state).toBe('misconfigured');
        expect(mid.upstream.lastError).toMatch(new RegExp(`HTTP ${answer.status}`));
        expect(Object.values(mid.counters.dropped).reduce((a, b) => a + b, 0)).toBe(0);
        expect(mid.counters.retries).toBe(0);
        // The upstream is fixed (the script runs out: 200 from now on): everything arrives, in order, once.
        await until(() => collector.status().spool.records === 0, 10_000, 'drained');
        expect(batchesSeen(up)).toEqual([1, 1, 1, 1, 2, 3]);
        const end = collector.status();
        expect(end.counters.forwarded.traces).toBe(15);
        expect(end.counters.misconfigured).toBe(3);
        expect(end.upstream.state).toBe('up');
      });
    },
  );

  it('follows 307 and 308 redirects with the same method and body, without sending configured headers to another origin', async () => {
    const tmp = await tempDir();
    const target = await fakeUpstream();
    const front = await fakeUpstream([
      { status: 307, headers: { location: '/moved/v1/traces' } },
      { status: 308, headers: { location: `${target.url}/v1/traces` } },
    ]);
    const collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: front.url,
      upstreamHeaders: { authorization: 'Bearer front-only' },
      compression: 'none',
      backoff: fastBackoff,
    });
    const { url } = await collector.start();
    try {
      expect((await post(`${url}/v1/traces`, traceBody(1, 1, 4))).status).toBe(200);
      await until(() => collector.status().spool.records === 0, 10_000, 'drained');
      expect(front.seen.map((s) => s.path)).toEqual(['/v1/traces', '/moved/v1/traces']);
      expect(front.seen.every((s) => s.headers.authorization === 'Bearer front-only')).toBe(true);
      expect(batchesSeen(target)).toEqual([1]);
      expect(target.seen[0]?.headers.authorization).toBeUndefined();
      expect(target.seen[0]?.body.equals(front.seen[0]?.body as Buffer)).toBe(true);
      expect(collector.status().counters.forwarded.traces).toBe(4);
    } finally {
      await collector.stop();
      await front.close();
      await target.close();
      await tmp.cleanup();
    }
  });

  it('answers a 413 by sending the request in two halves, in order, and drops (counted) a single item that is still too large', async () => {
    await withCollector(
      [{ status: 413 }, { status: 200 }, { status: 200 }, { status: 413 }],
      async ({ url, up, collector }) => {
        // Batch 1 (10 spans): 413, then its halves (5 + 5) are accepted.
        expect((await post(`${url}/v1/traces`, traceBody(1, 1, 10))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'batch 1 settled');
        const sizes = up.seen.map((s) => spanIdsOf(s.body).length);
        expect(sizes).toEqual([10, 5, 5]);
        const ids = up.seen.slice(1).flatMap((s) => spanIdsOf(s.body).map((id) => decodeTraceId(id).index));
        expect(ids).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        expect(collector.status().counters.forwarded.traces).toBe(10);
        // Batch 2 (1 span): 413 and nothing to split.
        expect((await post(`${url}/v1/traces`, traceBody(1, 2, 1))).status).toBe(200);
        await until(() => collector.status().spool.records === 0, 10_000, 'batch 2 settled');
        const st = collector.status();
        expect(st.counters.dropped.upstream_too_large).toBe(1);
        expect(st.counters.forwarded.traces).toBe(10);
        expect(st.counters.retries).toBe(0);
      },
    );
  });

  it('waits at least the initial back-off after "Retry-After: 0" instead of busy-looping', async () => {
    const tmp = await tempDir();
    const up = await fakeUpstream([{ status: 503, headers: { 'retry-after': '0' } }]);
    const collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: up.url,
      backoff: { initialDelayMs: 800, maxDelayMs: 1000 },
    });
    const { url } = await collector.start();
    try {
      expect((await post(`${url}/v1/traces`, traceBody(1, 1, 2))).status).toBe(200);
      await until(() => collector.status().upstream.nextAttemptAt !== undefined, 5000, 'the 503');
      const next = Date.parse(collector.status().upstream.nextAttemptAt as string);
      expect(next - (up.seen[0]?.at ?? 0)).toBeGreaterThanOrEqual(800);
      await until(() => collector.status().spool.records === 0, 5000, 'drained');
      expect(up.seen).toHaveLength(2);
    } finally {
      await collector.stop();
      await up.close();
      await tmp.cleanup();
    }
  });

  it('honours Retry-After given as an HTTP-date', async () => {
    const at = new Date(Math.ceil((Date.now() + 2500) / 1000) * 1000);
    await withCollector(
      [{ status: 429, headers: { 'retry-after': at.toUTCString() } }],
      async ({ url, up, collector }) => {
        expect((await post(`${url}/v1/traces`, traceBody(1, 1, 2))).status).toBe(200);
        await until(() => collector.status().upstream.nextAttemptAt !== undefined, 5000, 'the 429');
        const next = Date.parse(collector.status().upstream.nextAttemptAt as string);
        // The back-off alone (10–50 ms) would retry long before the date.
        expect(Math.abs(next - at.getTime())).toBeLessThan(250);
        await until(() => up.seen.length === 2, 10_000, 'the retry');
        expect(up.seen[1]?.at ?? 0).toBeGreaterThanOrEqual(at.getTime() - 5);
      },
    );
  });

  it('never shows the user name and password of the upstream URL, yet sends them as Basic credentials', async () => {
    const tmp = await tempDir();
    const up = await fakeUpstream();
    const logs: string[] = [];
    const log = (m: string, f?: Record<string, unknown>): void => {
      logs.push(`${m} ${JSON.stringify(f ?? {})}`);
    };
    const upstream = up.url.replace('http://', 'http://user:s3cret@');
    const collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream,
      backoff: fastBackoff,
      logger: { debug: log, info: log, warn: log, error: log },
    });
    const { url } = await collector.start();
    try {
      expect((await post(`${url}/v1/traces`, traceBody(1, 1, 2))).status).toBe(200);
      await until(() => collector.status().spool.records === 0, 5000, 'drained');
      expect(up.seen[0]?.headers.authorization).toBe(`Basic ${Buffer.from('user:s3cret').toString('base64')}`);
      const st = collector.status();
      expect(st.upstream.url).toBe(`${up.url.replace('http://', 'http://***@')}/`);
      const served = await (await fetch(`${url}/status`)).text();
      expect(served).not.toMatch(/s3cret/);
      expect(logs.join('\n')).not.toMatch(/s3cret/);
      expect(logs.join('\n')).toMatch(/\*\*\*@127\.0\.0\.1/);
      expect(() => createCollector({ spoolDir: tmp.dir, upstream: 'ftp://user:s3cret@x' })).toThrow(
        /^upstream ftp:\/\/\*\*\*@x\/? must be/,
      );
    } finally {
      await collector.stop();
      await up.close();
      await tmp.cleanup();
    }
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
