import type { DescMessage } from '@bufbuild/protobuf';
import { createNodeClient } from '@vyr/api/client';
import {
  BindStateRequestSchema,
  CancelTaskRequestSchema,
  CreateStateRequestSchema,
  DeleteStateRequestSchema,
  ExportStateRequestSchema,
  GetNodeInfoRequestSchema,
  GetTaskReceiptRequestSchema,
  GetTaskRequestSchema,
  ImportArtifactRequestSchema,
  ListArtifactsRequestSchema,
  ListStatesRequestSchema,
  SubmitTaskRequestSchema,
  WatchTaskRequestSchema,
} from '@vyr/proto';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NodeProcess, startNode } from './helpers.js';

const UNARY: Record<string, DescMessage> = {
  SubmitTask: SubmitTaskRequestSchema,
  CancelTask: CancelTaskRequestSchema,
  GetTask: GetTaskRequestSchema,
  CreateState: CreateStateRequestSchema,
  BindState: BindStateRequestSchema,
  DeleteState: DeleteStateRequestSchema,
  ListStates: ListStatesRequestSchema,
  ListArtifacts: ListArtifactsRequestSchema,
  GetNodeInfo: GetNodeInfoRequestSchema,
  GetTaskReceipt: GetTaskReceiptRequestSchema,
};
/** Streams that end on their own (a follow stream such as StreamTraces would run until the client leaves). */
const STREAMING: Record<string, DescMessage> = {
  WatchTask: WatchTaskRequestSchema,
  ExportState: ExportStateRequestSchema,
  ImportArtifact: ImportArtifactRequestSchema,
};

/** A JSON object with a random subset of the message's fields set to arbitrary JSON values. */
function jsonFieldsOf(schema: DescMessage): fc.Arbitrary<string> {
  const names = schema.fields.map((f) => f.jsonName);
  return fc
    .dictionary(fc.constantFrom(...names, 'unknownField'), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 })
    .map((o) => JSON.stringify(o));
}

/** A Connect streaming envelope: flags byte, big-endian length, payload (the length may lie). */
function envelope(payload: Uint8Array, flags = 0, length = payload.length): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, length >>> 0);
  out.set(payload, 5);
  return out;
}

const encoder = new TextEncoder();

/**
 * Property-based fuzzing (fast-check) of every NodeService request a client can send, in binary and JSON, over a
 * real socket to a real node process: malformed protobuf, JSON of any shape, wrong field types, unknown fields,
 * broken streaming envelopes. Every refusal must be a Connect error with a precise code (never `internal` or
 * `unknown`, which would mean a handler failed on input it did not check), and the node keeps serving.
 */
describe('fuzzed bad input: NodeService answers every malformed request with a coded error', () => {
  let node: NodeProcess;
  let base: string;

  beforeAll(async () => {
    const dir = await tempDir('vyr-node-fuzz-');
    node = await startNode(['--data-dir', `${dir}/data`]);
    base = `${node.url}/vyr.v1.NodeService`;
  });
  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('unary requests: 300 fuzzed bodies in binary and JSON get a 200 or a coded Connect error', async () => {
    const methods = Object.keys(UNARY);
    const request = fc.oneof(
      fc.record({
        method: fc.constantFrom(...methods),
        type: fc.constant('application/proto'),
        body: fc.uint8Array({ maxLength: 512 }),
      }),
      fc.constantFrom(...methods).chain((method) =>
        fc.record({
          method: fc.constant(method),
          type: fc.constant('application/json'),
          body: fc.oneof(fc.json(), fc.string(), jsonFieldsOf(UNARY[method]!)).map((t) => encoder.encode(t)),
        }),
      ),
    );
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(request, async ({ method, type, body }) => {
        const res = await fetch(`${base}/${method}`, {
          method: 'POST',
          headers: { 'content-type': type },
          body: Buffer.from(body),
        });
        const text = await res.text();
        if (res.status === 200) return;
        const error = JSON.parse(text) as { code?: string; message?: string };
        codes.set(error.code ?? '?', (codes.get(error.code ?? '?') ?? 0) + 1);
        expect(error.code, `${method} ${type}: ${text}`).toMatch(/^[a-z_]+$/);
        expect(['internal', 'unknown'], `${method} ${type}: ${text}`).not.toContain(error.code);
        expect(error.message?.length ?? 0).toBeGreaterThan(0);
      }),
      { numRuns: 300 },
    );
    expect(codes.get('invalid_argument') ?? 0).toBeGreaterThan(0);
  });

  it('streaming requests: 100 fuzzed envelopes end with a coded error or a clean end of stream', async () => {
    const methods = Object.keys(STREAMING);
    const request = fc.constantFrom(...methods).chain((method) =>
      fc.record({
        method: fc.constant(method),
        json: fc.boolean(),
        body: fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          jsonFieldsOf(STREAMING[method]!).map((t) => envelope(encoder.encode(t))),
          fc
            .tuple(fc.uint8Array({ maxLength: 64 }), fc.nat(), fc.integer({ min: 0, max: 255 }))
            .map(([p, len, flags]) => envelope(p, flags, len)),
        ),
      }),
    );
    await fc.assert(
      fc.asyncProperty(request, async ({ method, json, body }) => {
        const res = await fetch(`${base}/${method}`, {
          method: 'POST',
          headers: { 'content-type': json ? 'application/connect+json' : 'application/connect+proto' },
          body: Buffer.from(body),
          signal: AbortSignal.timeout(20_000),
        });
        const bytes = new Uint8Array(await res.arrayBuffer());
        // Refused before the stream started: a plain HTTP error; otherwise the last envelope is the end of stream.
        if (res.status !== 200) {
          expect([400, 404, 408, 409, 412, 413, 415, 429]).toContain(res.status);
          return;
        }
        let i = 0;
        let end: { error?: { code?: string } } | undefined;
        while (i + 5 <= bytes.length) {
          const flags = bytes[i]!;
          const len = new DataView(bytes.buffer, bytes.byteOffset + i + 1, 4).getUint32(0);
          const payload = bytes.subarray(i + 5, i + 5 + len);
          if (flags & 0x02) end = JSON.parse(new TextDecoder().decode(payload));
          i += 5 + len;
        }
        expect(end, `${method}: the stream did not end with an end-stream message`).toBeDefined();
        if (end?.error) expect(['internal', 'unknown']).not.toContain(end.error.code);
      }),
      { numRuns: 100 },
    );
  });

  it('still serves a well-formed request afterwards', async () => {
    const client = createNodeClient({ baseUrl: node.url });
    const info = await client.getNodeInfo({});
    expect(info.nodeId).toBe(node.nodeId);
  });
});
