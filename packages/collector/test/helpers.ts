import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type ExportTraceServiceRequest,
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
} from '@vyr/proto/otlp';

/** A fresh temp directory, removed by the returned cleanup. */
export async function tempDir(prefix = 'vyr-collector-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** 16-byte trace id encoding (source, batch, index) so a receiver can tell exactly which span it got. */
export function traceIdFor(source: number, batch: number, index: number): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(0x7e570000 + source, 0);
  b.writeUInt32BE(batch, 4);
  b.writeUInt32BE(index, 8);
  b.writeUInt32BE(1, 12);
  return b;
}

/** Decodes what {@link traceIdFor} encoded. */
export function decodeTraceId(id: Uint8Array): { source: number; batch: number; index: number } {
  const b = Buffer.from(id);
  return { source: b.readUInt32BE(0) - 0x7e570000, batch: b.readUInt32BE(4), index: b.readUInt32BE(8) };
}

/** An ExportTraceServiceRequest with `count` spans of `batch` from `source`. */
export function traceRequest(source: number, batch: number, count: number): ExportTraceServiceRequest {
  const spans = [];
  for (let i = 0; i < count; i++) {
    spans.push({
      traceId: traceIdFor(source, batch, i),
      spanId: Buffer.from([0, 0, 0, 0, 0, 0, 0, 1 + (i % 250)]),
      name: `op-${i % 10}`,
      kind: 2,
      startTimeUnixNano: 1_700_000_000_000_000_000n + BigInt(i),
      endTimeUnixNano: 1_700_000_000_000_500_000n + BigInt(i),
      attributes: [
        { key: 'http.route', value: { value: { case: 'stringValue' as const, value: '/api/items' } } },
        { key: 'seq', value: { value: { case: 'intValue' as const, value: BigInt(i) } } },
      ],
    });
  }
  return create(ExportTraceServiceRequestSchema, {
    resourceSpans: [
      {
        resource: {
          attributes: [
            { key: 'service.name', value: { value: { case: 'stringValue', value: 'generator' } } },
            { key: 'service.instance.id', value: { value: { case: 'stringValue', value: `source-${source}` } } },
          ],
        },
        scopeSpans: [{ scope: { name: 'vyr-test' }, spans }],
      },
    ],
  });
}

/** Binary encoding of {@link traceRequest}. */
export function traceBody(source: number, batch: number, count: number): Uint8Array {
  return toBinary(ExportTraceServiceRequestSchema, traceRequest(source, batch, count));
}

/** Every span trace id in a binary ExportTraceServiceRequest. */
export function spanIdsOf(body: Uint8Array): Uint8Array[] {
  const req = fromBinary(ExportTraceServiceRequestSchema, body);
  return req.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => s.traceId)));
}

/** POSTs `body` and returns status, headers and body. */
export async function post(
  url: string,
  body: Uint8Array | string,
  headers: Record<string, string> = { 'content-type': 'application/x-protobuf' },
): Promise<{ status: number; headers: Headers; body: Uint8Array }> {
  const res = await fetch(url, {
    method: 'POST',
    body: typeof body === 'string' ? body : new Uint8Array(body),
    headers,
  });
  return { status: res.status, headers: res.headers, body: new Uint8Array(await res.arrayBuffer()) };
}

/** One request as a fake upstream saw it. */
export interface SeenRequest {
  path: string;
  headers: IncomingHttpHeaders;
  /** Body after gzip decoding. */
  body: Buffer;
  at: number;
}

/** How a fake upstream answers one request. */
export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

/**
 * A scriptable OTLP/HTTP upstream: answers from `script` in order (then 200 with an empty
 * ExportTraceServiceResponse) and records every request it saw.
 */
export async function fakeUpstream(
  script: Answer[] = [],
  port = 0,
): Promise<{ url: string; seen: SeenRequest[]; server: Server; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
      seen.push({ path: req.url ?? '', headers: req.headers, body, at: Date.now() });
      const a = script.shift() ?? {
        status: 200,
        headers: { 'content-type': 'application/x-protobuf' },
        body: toBinary(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema, {})),
      };
      res.writeHead(a.status, a.headers ?? {});
      res.end(a.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const addr = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    seen,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * An upstream that is down but whose port stays taken: every connection is reset at once. Unlike a port that was
 * bound and released, no other test can start listening on it meanwhile. `close()` frees the port (for a
 * `fakeUpstream(…, port)` that comes up there right after).
 */
export async function deadUpstream(): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createTcpServer((sock) => {
    sockets.add(sock);
    sock.on('error', () => {});
    sock.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
}

/**
 * A TCP proxy that holds its port for the whole test: while `target` is undefined it resets every connection
 * (the upstream is down); once set, it relays connections to that port (the upstream is up).
 */
export async function switchableProxy(): Promise<{
  url: string;
  setTarget(port: number | undefined): void;
  close(): Promise<void>;
}> {
  let target: number | undefined;
  const sockets = new Set<Socket>();
  const server = createTcpServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    if (target === undefined) {
      sock.resetAndDestroy();
      return;
    }
    const up = connect(target, '127.0.0.1');
    sockets.add(up);
    up.on('close', () => sockets.delete(up));
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    setTarget: (p) => {
      target = p;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Polls `check` until it returns true (or throws after `timeoutMs`). */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  what = 'condition',
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
