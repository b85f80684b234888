import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { create, fromBinary, fromJson, type JsonValue, toBinary } from '@bufbuild/protobuf';
import {
  type AnyValue,
  type ExportLogsServiceRequest,
  ExportLogsServiceRequestSchema,
  ExportLogsServiceResponseSchema,
  type ExportMetricsServiceRequest,
  ExportMetricsServiceRequestSchema,
  ExportMetricsServiceResponseSchema,
  type ExportTraceServiceRequest,
  ExportTraceServiceRequestSchema,
  ExportTraceServiceResponseSchema,
  type KeyValue,
  type Span,
} from '@vyr/proto/otlp';

/** A span as received, flattened with its resource and scope, attributes turned into a plain object. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
  scope: string;
  statusCode: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  span: Span;
}

/** What the receiver answers; default 200 with an empty Export*ServiceResponse. */
export interface ReceiverReply {
  status: number;
  headers?: Record<string, string>;
  body?: Uint8Array | string;
}

/** Options of {@link startOtlpReceiver}. */
export interface OtlpReceiverOptions {
  /** Port to listen on; default 0 (ephemeral). */
  port?: number;
  /** Decide the reply per request; default: always 200. Requests answered non-2xx are not recorded. */
  reply?: (signal: 'traces' | 'metrics' | 'logs', request: IncomingMessage) => ReceiverReply | undefined;
}

/** A real OTLP/HTTP receiver on loopback that decodes with the generated opentelemetry-proto types. */
export interface OtlpReceiver {
  /** Base URL, e.g. `http://127.0.0.1:4318`; signal paths are `/v1/traces`, `/v1/metrics`, `/v1/logs`. */
  readonly url: string;
  readonly traces: ExportTraceServiceRequest[];
  readonly metrics: ExportMetricsServiceRequest[];
  readonly logs: ExportLogsServiceRequest[];
  /** Every span received so far, flattened. */
  spans(): ReceivedSpan[];
  /** Resolves once `predicate` holds over the received spans; rejects after `timeoutMs` (default 10 000). */
  waitForSpans(predicate: (spans: ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Resolves once `predicate` holds over the received metric requests. */
  waitForMetrics(
    predicate: (requests: ExportMetricsServiceRequest[]) => boolean,
    timeoutMs?: number,
  ): Promise<ExportMetricsServiceRequest[]>;
  close(): Promise<void>;
}

/** Converts an OTLP AnyValue to a plain JS value. */
export function anyValueToJs(value: AnyValue | undefined): unknown {
  const v = value?.value;
  switch (v?.case) {
    case 'stringValue':
    case 'boolValue':
    case 'doubleValue':
      return v.value;
    case 'intValue':
      return Number(v.value);
    case 'bytesValue':
      return v.value;
    case 'arrayValue':
      return v.value.values.map(anyValueToJs);
    case 'kvlistValue':
      return attributesToObject(v.value.values);
    default:
      return undefined;
  }
}

/** Converts OTLP attributes to a plain object. */
export function attributesToObject(attributes: readonly KeyValue[]): Record<string, unknown> {
  return Object.fromEntries(attributes.map((kv) => [kv.key, anyValueToJs(kv.value)]));
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
}

/** Starts a receiver on 127.0.0.1. */
export async function startOtlpReceiver(options: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const traces: ExportTraceServiceRequest[] = [];
  const metrics: ExportMetricsServiceRequest[] = [];
  const logs: ExportLogsServiceRequest[] = [];
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of waiters) w();
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const signal =
      req.url === '/v1/traces'
        ? 'traces'
        : req.url === '/v1/metrics'
          ? 'metrics'
          : req.url === '/v1/logs'
            ? 'logs'
            : undefined;
    if (req.method !== 'POST' || signal === undefined) {
      res.writeHead(404).end();
      return;
    }
    const body = await readBody(req);
    const custom = options.reply?.(signal, req);
    if (custom !== undefined && (custom.status < 200 || custom.status > 299)) {
      res.writeHead(custom.status, custom.headers ?? {}).end(custom.body);
      return;
    }
    const json = (req.headers['content-type'] ?? '').startsWith('application/json');
    const decode = <T>(schema: Parameters<typeof fromBinary>[0]): T =>
      (json ? fromJson(schema, JSON.parse(body.toString('utf8')) as JsonValue) : fromBinary(schema, body)) as T;
    let responseBytes: Uint8Array;
    if (signal === 'traces') {
      traces.push(decode<ExportTraceServiceRequest>(ExportTraceServiceRequestSchema));
      responseBytes = toBinary(ExportTraceServiceResponseSchema, create(ExportTraceServiceResponseSchema));
    } else if (signal === 'metrics') {
      metrics.push(decode<ExportMetricsServiceRequest>(ExportMetricsServiceRequestSchema));
      responseBytes = toBinary(ExportMetricsServiceResponseSchema, create(ExportMetricsServiceResponseSchema));
    } else {
      logs.push(decode<ExportLogsServiceRequest>(ExportLogsServiceRequestSchema));
      responseBytes = toBinary(ExportLogsServiceResponseSchema, create(ExportLogsServiceResponseSchema));
    }
    if (json) res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(responseBytes);
    notify();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const spans = (): ReceivedSpan[] =>
    traces.flatMap((request) =>
      request.resourceSpans.flatMap((rs) => {
        const resource = attributesToObject(rs.resource?.attributes ?? []);
        return rs.scopeSpans.flatMap((ss) =>
          ss.spans.map((span) => ({
            traceId: hex(span.traceId),
            spanId: hex(span.spanId),
            parentSpanId: hex(span.parentSpanId),
            name: span.name,
            attributes: attributesToObject(span.attributes),
            resource,
            scope: ss.scope?.name ?? '',
            statusCode: span.status?.code ?? 0,
            startTimeUnixNano: span.startTimeUnixNano,
            endTimeUnixNano: span.endTimeUnixNano,
            span,
          })),
        );
      }),
    );

  function waitFor<T>(read: () => T, predicate: (value: T) => boolean, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const value = read();
        if (predicate(value)) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`OTLP receiver: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  }

  return {
    url: `http://127.0.0.1:${port}`,
    traces,
    metrics,
    logs,
    spans,
    waitForSpans: (predicate, timeoutMs = 10_000) => waitFor(spans, predicate, timeoutMs),
    waitForMetrics: (predicate, timeoutMs = 10_000) => waitFor(() => metrics, predicate, timeoutMs),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
