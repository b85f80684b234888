import { once } from 'node:events';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import { create, fromBinary, toBinary, toJson } from '@bufbuild/protobuf';
import { type Collector, createCollector } from '@vyr/collector';
import {
  ExportLogsServiceResponseSchema,
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
} from '@vyr/proto/otlp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deadUpstream, fakeUpstream, post, spanIdsOf, tempDir, traceBody, traceRequest, until } from './helpers.js';

/** Decodes a protobuf google.rpc.Status body (field 1 code, field 2 message). */
function statusMessage(body: Uint8Array): { code: number; message: string } {
  const b = Buffer.from(body);
  let i = 0;
  let code = 0;
  let message = '';
  while (i < b.length) {
    const tag = b[i++] as number;
    if (tag === 0x08) {
      code = b[i++] as number;
    } else if (tag === 0x12) {
      let len = 0;
      let shift = 0;
      let byte: number;
      do {
        byte = b[i++] as number;
        len |= (byte & 0x7f) << shift;
        shift += 7;
      } while (byte & 0x80);
      message = b.subarray(i, i + len).toString('utf8');
      i += len;
    } else break;
  }
  return { code, message };
}

describe('OTLP/HTTP receiver', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let collector: Collector;
  let base: string;
  let dead: Awaited<ReturnType<typeof deadUpstream>>;

  beforeEach(async () => {
    tmp = await tempDir();
    dead = await deadUpstream();
    // The upstream is down throughout: everything accepted stays in the spool where status() counts it.
    collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      maxSpoolBytes: 4 * 1024 * 1024,
      maxRequestBytes: 256 * 1024,
      backoff: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    base = (await collector.start()).url;
  });
  afterEach(async () => {
    await collector.stop();
    await dead.close();
    await tmp.cleanup();
  });

  it('acknowledges a protobuf export with an empty ExportTraceServiceResponse once it is spooled', async () => {
    const res = await post(`${base}/v1/traces`, traceBody(1, 1, 50));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-protobuf');
    const msg = fromBinary(ExportTraceServiceResponseSchema, res.body);
    expect(msg.partialSuccess).toBeUndefined();
    const st = collector.status();
    expect(st.spool.signals.traces.items).toBe(50);
    expect(st.spool.signals.traces.records).toBe(1);
    expect(st.counters.received.traces).toBe(50);
    expect(st.counters.requests.accepted).toBe(1);
  });

  it('accepts OTLP/JSON with hex ids and answers in JSON', async () => {
    const json = toJson(ExportTraceServiceRequestSchema, traceRequest(1, 2, 3), { enumAsInteger: true }) as {
      resourceSpans: { scopeSpans: { spans: { traceId: string; spanId: string }[] }[] }[];
    };
    for (const s of json.resourceSpans[0]?.scopeSpans[0]?.spans ?? []) {
      s.traceId = Buffer.from(s.traceId, 'base64').toString('hex');
      s.spanId = Buffer.from(s.spanId, 'base64').toString('hex');
    }
    const res = await post(`${base}/v1/traces`, JSON.stringify({ ...json, unknownField: 1 }), {
      'content-type': 'application/json',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(JSON.parse(Buffer.from(res.body).toString())).toEqual({});
    expect(collector.status().spool.signals.traces.items).toBe(3);
  });

  it('decodes gzip request bodies', async () => {
    const res = await post(`${base}/v1/traces`, gzipSync(traceBody(1, 3, 20)), {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(200);
    expect(collector.status().spool.signals.traces.items).toBe(20);
  });

  it('answers 400 with a Status message to a body that is not gzip although it says so', async () => {
    const res = await post(`${base}/v1/traces`, traceBody(1, 3, 2), {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(400);
    expect(statusMessage(res.body).message).toMatch(/gzip/);
    expect(collector.status().counters.requests.malformed).toBe(1);
  });

  it('answers 413 with a clear message when the body exceeds maxRequestBytes, as sent or after gunzip', async () => {
    const big = new Uint8Array(300 * 1024);
    const res = await post(`${base}/v1/traces`, big);
    expect(res.status).toBe(413);
    expect(statusMessage(res.body).message).toMatch(/exceeds the limit of 262144 bytes \(maxRequestBytes\)/);
    // A small gzip body that inflates beyond the limit (a "zip bomb") is refused the same way.
    const bomb = gzipSync(Buffer.alloc(2 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(256 * 1024);
    const res2 = await post(`${base}/v1/traces`, bomb, {
      'content-type': 'application/x-protobuf',
      'content-encoding': 'gzip',
    });
    expect(res2.status).toBe(413);
    expect(statusMessage(res2.body).message).toMatch(/after gzip decoding/);
    expect(collector.status().counters.requests.too_large).toBe(2);
    expect(collector.status().spool.items).toBe(0);
  });

  it('answers 400 to malformed protobuf and JSON bodies and counts them', async () => {
    const bad = await post(`${base}/v1/traces`, new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2]));
    expect(bad.status).toBe(400);
    expect(statusMessage(bad.body).code).toBe(3);
    const badJson = await post(`${base}/v1/metrics`, '{"resourceMetrics": [', { 'content-type': 'application/json' });
    expect(badJson.status).toBe(400);
    expect(badJson.headers.get('content-type')).toBe('application/json');
    expect(JSON.parse(Buffer.from(badJson.body).toString()).message).toMatch(/ExportMetricsServiceRequest/);
    const wrongShape = await post(`${base}/v1/logs`, '{"resourceLogs": 5}', { 'content-type': 'application/json' });
    expect(wrongShape.status).toBe(400);
    expect(collector.status().counters.requests.malformed).toBe(3);
    expect(collector.status().spool.items).toBe(0);
  });

  it('answers 415 to other media types, 404 to other paths, 405 to other methods', async () => {
    expect((await post(`${base}/v1/traces`, 'x', { 'content-type': 'text/plain' })).status).toBe(415);
    expect(
      (await post(`${base}/v1/traces`, 'x', { 'content-type': 'application/x-protobuf', 'content-encoding': 'br' }))
        .status,
    ).toBe(415);
    expect((await post(`${base}/v1/profiles`, traceBody(1, 1, 1))).status).toBe(404);
    expect((await fetch(`${base}/v1/traces`)).status).toBe(405);
  });

  it('rejects spans with invalid ids and reports them as partial success, storing only the valid ones', async () => {
    const req = traceRequest(1, 4, 10);
    const spans = req.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];
    (spans[2] as { traceId: Uint8Array }).traceId = new Uint8Array(16); // all-zero trace id
    (spans[5] as { spanId: Uint8Array }).spanId = new Uint8Array(3); // wrong length
    const { toBinary } = await import('@bufbuild/protobuf');
    const res = await post(`${base}/v1/traces`, toBinary(ExportTraceServiceRequestSchema, req));
    expect(res.status).toBe(200);
    const msg = fromBinary(ExportTraceServiceResponseSchema, res.body);
    expect(msg.partialSuccess?.rejectedSpans).toBe(2n);
    expect(msg.partialSuccess?.errorMessage).toMatch(/2 span/);
    const st = collector.status();
    expect(st.spool.signals.traces.items).toBe(8);
    expect(st.counters.dropped.invalid).toBe(2);
  });

  it('reports partial success in JSON for metrics without a name, and accepts logs', async () => {
    const metrics = {
      resourceMetrics: [
        {
          scopeMetrics: [
            {
              metrics: [
                { name: 'ok', gauge: { dataPoints: [{ asDouble: 1 }, { asDouble: 2 }] } },
                { name: '', sum: { dataPoints: [{ asInt: '3' }] } },
              ],
            },
          ],
        },
      ],
    };
    const res = await post(`${base}/v1/metrics`, JSON.stringify(metrics), { 'content-type': 'application/json' });
    expect(res.status).toBe(200);
    const body = JSON.parse(Buffer.from(res.body).toString());
    expect(body.partialSuccess.rejectedDataPoints).toBe('1');
    const logs = { resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'hi' } }] }] }] };
    const res2 = await post(`${base}/v1/logs`, JSON.stringify(logs), { 'content-type': 'application/json' });
    expect(res2.status).toBe(200);
    expect(JSON.parse(Buffer.from(res2.body).toString())).toEqual({});
    const st = collector.status();
    expect(st.spool.signals.metrics.items).toBe(2);
    expect(st.spool.signals.logs.items).toBe(1);
    // Response schemas of the other signals decode too.
    expect(ExportMetricsServiceResponseSchema.typeName).toMatch(/ExportMetricsServiceResponse/);
    expect(ExportLogsServiceResponseSchema.typeName).toMatch(/ExportLogsServiceResponse/);
  });

  it('counts the data points of every metric type in protobuf, and rejects those of metrics without a name', async () => {
    const metrics = (unnamed: boolean) =>
      toBinary(
        ExportMetricsServiceRequestSchema,
        create(ExportMetricsServiceRequestSchema, {
          resourceMetrics: [
            {
              scopeMetrics: [
                {
                  metrics: [
                    { name: 'g', data: { case: 'gauge', value: { dataPoints: [{}, {}] } } },
                    {
                      name: 's',
                      data: { case: 'sum', value: { dataPoints: [{}, {}, {}], aggregationTemporality: 2 } },
                    },
                    {
                      name: 'h',
                      data: {
                        case: 'histogram',
                        value: { dataPoints: [{ bucketCounts: [1n, 2n], explicitBounds: [1] }] },
                      },
                    },
                    {
                      name: 'e',
                      data: {
                        case: 'exponentialHistogram',
                        value: { dataPoints: [{ positive: { bucketCounts: [3n] } }, {}] },
                      },
                    },
                    { name: unnamed ? '' : 'q', data: { case: 'summary', value: { dataPoints: [{}, {}, {}, {}] } } },
                  ],
                },
              ],
            },
          ],
        }),
      );
    expect((await post(`${base}/v1/metrics`, metrics(false))).status).toBe(200);
    expect(collector.status().counters.received.metrics).toBe(12);
    const partial = await post(`${base}/v1/metrics`, metrics(true));
    expect(partial.status).toBe(200);
    expect(fromBinary(ExportMetricsServiceResponseSchema, partial.body).partialSuccess?.rejectedDataPoints).toBe(4n);
    expect(collector.status().counters.received.metrics).toBe(20);
  });

  it('answers 400 to protobuf that breaks deep inside: a nested length past its message, a string that is not UTF-8', async () => {
    const good = Buffer.from(traceBody(1, 1, 3));
    // The service.name attribute value "generator" sits deep in Resource → KeyValue → AnyValue.
    const at = good.indexOf(Buffer.from('generator'));
    const notUtf8 = Buffer.from(good);
    notUtf8[at] = 0xff;
    const badString = await post(`${base}/v1/traces`, notUtf8);
    expect(badString.status).toBe(400);
    expect(statusMessage(badString.body).message).toMatch(/not valid UTF-8/);
    // The length byte of that string, made to run past the end of its AnyValue.
    const tooLong = Buffer.from(good);
    tooLong[at - 1] = 0x7f;
    expect((await post(`${base}/v1/traces`, tooLong)).status).toBe(400);
    expect(collector.status().counters.requests.malformed).toBe(2);
    expect(collector.status().spool.items).toBe(0);
  });

  it('answers an empty request with success and stores nothing', async () => {
    const res = await post(`${base}/v1/traces`, new Uint8Array(0));
    expect(res.status).toBe(200);
    expect(collector.status().spool.records).toBe(0);
  });

  it('serves its status as JSON on GET /status', async () => {
    await post(`${base}/v1/traces`, traceBody(1, 5, 7));
    const res = await fetch(`${base}/status`);
    expect(res.status).toBe(200);
    const st = (await res.json()) as { state: string; spool: { items: number } };
    expect(st.state).toBe('running');
    expect(st.spool.items).toBe(7);
    await until(() => collector.status().upstream.state === 'down', 5000, 'upstream down');
    expect(collector.status().upstream.lastError).toMatch(/connection failure/);
  });
});

describe('byte-faithful forwarding', () => {
  it('forwards protobuf and JSON bodies exactly as received, with their content types', async () => {
    const tmp = await tempDir();
    const up = await fakeUpstream();
    const c = createCollector({ port: 0, spoolDir: tmp.dir, upstream: up.url, compression: 'gzip' });
    const { url } = await c.start();
    try {
      const bin = traceBody(2, 1, 30);
      const json = Buffer.from(
        JSON.stringify({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'x' } }] }] }] }),
      );
      expect((await post(`${url}/v1/traces`, bin)).status).toBe(200);
      expect((await post(`${url}/v1/logs`, json, { 'content-type': 'application/json' })).status).toBe(200);
      await until(() => up.seen.length === 2, 10_000, 'two forwarded requests');
      const traces = up.seen.find((s) => s.path === '/v1/traces');
      const logs = up.seen.find((s) => s.path === '/v1/logs');
      expect(traces?.headers['content-type']).toBe('application/x-protobuf');
      expect(traces?.headers['content-encoding']).toBe('gzip');
      expect(Buffer.compare(traces?.body ?? Buffer.alloc(0), Buffer.from(bin))).toBe(0);
      expect(logs?.headers['content-type']).toBe('application/json');
      expect(logs?.body.toString()).toBe(json.toString());
      expect(spanIdsOf(traces?.body ?? new Uint8Array())).toHaveLength(30);
      await until(() => c.status().spool.records === 0, 5000, 'spool drained');
      expect(c.status().counters.forwarded).toEqual({ traces: 30, metrics: 0, logs: 1 });
    } finally {
      await c.stop();
      await up.close();
      await tmp.cleanup();
    }
  });
});

/** Starts a POST whose body is sent only in part; `finish()` sends the rest and resolves with the status. */
function partialPost(
  url: string,
  body: Uint8Array,
  sendFirst: number,
  chunked = false,
): { finish(): Promise<number>; response: Promise<{ status: number; retryAfter: string | undefined; body: string }> } {
  const req = request(`${url}/v1/traces`, {
    method: 'POST',
    headers: chunked
      ? { 'content-type': 'application/x-protobuf', 'transfer-encoding': 'chunked' }
      : { 'content-type': 'application/x-protobuf', 'content-length': String(body.length) },
  });
  const response = new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          retryAfter: res.headers['retry-after'] as string | undefined,
          body: Buffer.concat(chunks).toString('latin1'),
        }),
      );
    });
    req.on('error', reject);
  });
  req.write(body.subarray(0, sendFirst));
  return {
    response,
    finish: async () => {
      req.end(body.subarray(sendFirst));
      return (await response).status;
    },
  };
}

describe('OTLP/HTTP receiver memory bound', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let dead: Awaited<ReturnType<typeof deadUpstream>>;
  beforeEach(async () => {
    tmp = await tempDir();
    dead = await deadUpstream();
  });
  afterEach(async () => {
    await dead.close();
    await tmp.cleanup();
  });

  it('answers 503 with Retry-After, before reading the body, when requests in flight would exceed maxInflightBytes', async () => {
    const c = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      maxSpoolBytes: 4 * 1024 * 1024,
      maxRequestBytes: 256 * 1024,
      maxInflightBytes: 300 * 1024,
      retryAfterSeconds: 3,
    });
    const { url } = await c.start();
    try {
      const big = traceBody(1, 1, 2000);
      expect(big.length).toBeGreaterThan(160 * 1024);
      // The first request holds its reservation while its body trickles in.
      const first = partialPost(url, big, 1000);
      await until(() => c.status().receiver.inflightBytes === big.length, 5000, 'the first reservation');
      const second = await partialPost(url, traceBody(1, 2, 2000), 10).response;
      expect(second.status).toBe(503);
      expect(second.retryAfter).toBe('3');
      expect(second.body).toMatch(/maxInflightBytes 307200/);
      // Without a Content-Length the bytes are counted as they arrive.
      const third = await partialPost(url, traceBody(1, 3, 2000), 150 * 1024, true).response;
      expect(third.status).toBe(503);
      expect(await first.finish()).toBe(200);
      // The reservations ended with their responses: the next request fits again.
      expect((await post(`${url}/v1/traces`, traceBody(1, 4, 2000))).status).toBe(200);
      const st = c.status();
      expect(st.counters.requests.busy).toBe(2);
      expect(st.counters.requests.accepted).toBe(2);
      expect(st.spool.items).toBe(4000);
      await until(() => c.status().receiver.inflightBytes === 0, 5000, 'every reservation released');
    } finally {
      await c.stop();
    }
  });

  it('limits simultaneous connections (maxConnections)', async () => {
    const c = createCollector({ port: 0, spoolDir: tmp.dir, upstream: dead.url, maxConnections: 2 });
    const { port } = await c.start();
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = connect(port, '127.0.0.1');
        await once(s, 'connect');
        sockets.push(s);
      }
      const extra = connect(port, '127.0.0.1');
      sockets.push(extra);
      extra.on('error', () => {});
      await once(extra, 'close');
      expect(sockets[0]?.destroyed).toBe(false);
    } finally {
      for (const s of sockets) s.destroy();
      await c.stop();
    }
  });

  it('validates maxInflightBytes against maxRequestBytes', () => {
    expect(() =>
      createCollector({ spoolDir: tmp.dir, upstream: dead.url, maxRequestBytes: 1024 * 1024, maxInflightBytes: 1024 }),
    ).toThrow(/maxInflightBytes 1024 must be an integer of at least maxRequestBytes/);
  });
});
