import { gzipSync } from 'node:zlib';
import { toJsonString } from '@bufbuild/protobuf';
import { type Collector, createCollector } from '@vyr/collector';
import { ExportTraceServiceRequestSchema } from '@vyr/proto/otlp';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadUpstream, post, tempDir, traceBody, traceRequest } from './helpers.js';

const MAX_REQUEST_BYTES = 64 * 1024;

/** A mutation of a byte string (flip, overwrite, truncate, insert), positions clamped to its length. */
const mutate = fc
  .tuple(fc.constantFrom('flip', 'truncate', 'insert'), fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 32 }))
  .map(([kind, at, chunk]) => (b: Uint8Array): Uint8Array => {
    const i = b.length === 0 ? 0 : at % b.length;
    if (kind === 'flip') {
      const out = b.slice();
      if (out.length > 0) out[i] = out[i]! ^ (chunk[0]! || 1);
      return out;
    }
    if (kind === 'truncate') return b.slice(0, i);
    return new Uint8Array([...b.subarray(0, i), ...chunk, ...b.subarray(i)]);
  });

const validProto = traceBody(7, 1, 5);
const validJson = new TextEncoder().encode(toJsonString(ExportTraceServiceRequestSchema, traceRequest(7, 1, 5)));

/** A fuzzed OTLP/HTTP request: path, content type, encoding and body. */
const fuzzed = fc.record({
  path: fc.constantFrom('/v1/traces', '/v1/metrics', '/v1/logs', '/v1/traces/', '/v2/traces', '/'),
  contentType: fc.constantFrom(
    'application/x-protobuf',
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    '',
  ),
  encoding: fc.constantFrom('identity', 'gzip', 'gzip', 'br', ''),
  body: fc.oneof(
    fc.uint8Array({ maxLength: 2048 }),
    mutate.map((m) => m(validProto)),
    mutate.map((m) => m(validJson)),
    fc.json().map((j) => new TextEncoder().encode(j)),
    fc
      .jsonValue()
      .map((v) => new TextEncoder().encode(JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [v] }] }] }))),
    // A gzip bomb: 32 MiB of zeros in a few KiB, far past the limit once inflated.
    fc.constant(new Uint8Array(gzipSync(Buffer.alloc(32 * 1024 * 1024)))),
    // Oversized: past maxRequestBytes before any decoding.
    fc.constant(new Uint8Array(MAX_REQUEST_BYTES + 1)),
  ),
  // Whether the body is gzip-compressed before sending (with or without saying so), and truncated after that.
  compress: fc.boolean(),
  truncateCompressed: fc.option(fc.nat(), { nil: undefined }),
});

/** Mostly fuzzed requests, some valid ones among them (so the receiver is seen accepting between refusals). */
const requests = fc.oneof(
  { arbitrary: fuzzed, weight: 5 },
  {
    arbitrary: fc
      .record({
        path: fc.constant('/v1/traces'),
        contentType: fc.constantFrom('application/x-protobuf', 'application/json'),
        encoding: fc.constantFrom('', 'gzip'),
        body: fc.constant(validProto),
        compress: fc.constant(false),
        truncateCompressed: fc.constant(undefined),
      })
      .map((r) => ({
        ...r,
        body: r.contentType === 'application/json' ? validJson : validProto,
        compress: r.encoding === 'gzip',
      })),
    weight: 1,
  },
);

/**
 * Property-based fuzzing (fast-check) of the collector's OTLP/HTTP receiver over a real socket: bodies in protobuf
 * and JSON, gzip, truncated, oversized, gzip bombs, wrong content types and encodings, unknown paths. Every answer is
 * an OTLP status (200, or 4xx with a google.rpc.Status body naming the problem), never a 5xx or a dropped connection,
 * and the collector keeps accepting valid exports.
 */
describe('fuzzed bad input: the OTLP receiver answers every request with a coded status and keeps serving', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let dead: Awaited<ReturnType<typeof deadUpstream>>;
  let collector: Collector;
  let base: string;

  beforeAll(async () => {
    tmp = await tempDir();
    dead = await deadUpstream();
    collector = createCollector({
      port: 0,
      spoolDir: tmp.dir,
      upstream: dead.url,
      maxSpoolBytes: 64 * 1024 * 1024,
      maxRequestBytes: MAX_REQUEST_BYTES,
      backoff: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    base = (await collector.start()).url;
  });
  afterAll(async () => {
    await collector?.stop();
    await dead?.close();
    await tmp?.cleanup();
  });

  it('answers 250 fuzzed requests with 200 or a 4xx status body', async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(requests, async (r) => {
        let body = r.body;
        if (r.compress) body = new Uint8Array(gzipSync(body));
        if (r.truncateCompressed !== undefined && body.length > 0)
          body = body.slice(0, r.truncateCompressed % body.length);
        const headers: Record<string, string> = {};
        if (r.contentType) headers['content-type'] = r.contentType;
        if (r.encoding) headers['content-encoding'] = r.encoding;
        const res = await post(`${base}${r.path}`, body, headers);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([200, 400, 404, 413, 415]).toContain(res.status);
        if (res.status !== 200) expect(res.body.length).toBeGreaterThan(0);
      }),
      { numRuns: 250 },
    );
    // The generator reaches both sides: accepted exports and refusals.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].filter((s) => s !== 200).length).toBeGreaterThan(1);
  });

  it('still accepts a valid export afterwards and reports its status', async () => {
    const res = await post(`${base}/v1/traces`, validProto);
    expect(res.status).toBe(200);
    const status = collector.status() as { counters: { requests: { accepted: number } } };
    expect(status.counters.requests.accepted).toBeGreaterThan(0);
  });
});
