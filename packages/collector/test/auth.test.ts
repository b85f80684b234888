import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { type Collector, createCollector } from '@vyr/collector';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deadUpstream, post, tempDir, traceBody } from './helpers.js';

const TOKEN = 'edge-collector-token-0123456789';

/** Decodes the google.rpc.Status of a protobuf error body: field 1 code (varint < 128), field 2 message. */
function statusOf(body: Uint8Array): { code: number; message: string } {
  const b = Buffer.from(body);
  const code = b[0] === 0x08 ? (b[1] as number) : 0;
  const at = b.indexOf(0x12);
  return { code, message: at < 0 ? '' : b.subarray(at + 2, at + 2 + (b[at + 1] as number)).toString('utf8') };
}

describe('collector receiver security: bearer token, TLS, and the listen rule of the node', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let dead: Awaited<ReturnType<typeof deadUpstream>>;
  let collector: Collector | undefined;

  beforeEach(async () => {
    tmp = await tempDir();
    dead = await deadUpstream();
  });
  afterEach(async () => {
    await collector?.stop();
    collector = undefined;
    await dead.close();
    await tmp.cleanup();
  });

  it('with a token, refuses a request without it or with another one (401, Bearer challenge) before reading it', async () => {
    collector = createCollector({ port: 0, spoolDir: tmp.dir, upstream: dead.url, token: TOKEN });
    const { url } = await collector.start();
    const none = await post(`${url}/v1/traces`, traceBody(1, 1, 3));
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer /);
    expect(statusOf(none.body)).toEqual({
      code: 16,
      message: 'this collector requires a bearer token: send Authorization: Bearer <token>',
    });
    const wrong = await post(`${url}/v1/traces`, traceBody(1, 1, 3), {
      'content-type': 'application/x-protobuf',
      authorization: `Bearer ${TOKEN}x`,
    });
    expect(wrong.status).toBe(401);
    expect(statusOf(wrong.body).message).toBe('the bearer token is wrong');
    expect((await fetch(`${url}/status`)).status).toBe(401);
    // Nothing of the refused requests reached the spool.
    const status = collector.status() as { spool: { signals: { traces: { items: number } } } };
    expect(status.spool.signals.traces.items).toBe(0);

    const right = await post(`${url}/v1/traces`, traceBody(1, 1, 3), {
      'content-type': 'application/x-protobuf',
      authorization: `Bearer ${TOKEN}`,
    });
    expect(right.status).toBe(200);
    expect((await fetch(`${url}/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    const after = collector.status() as {
      spool: { signals: { traces: { items: number } } };
      counters: { requests: { unauthenticated: number } };
    };
    expect(after.spool.signals.traces.items).toBe(3);
    expect(after.counters.requests.unauthenticated).toBe(3);
  });

  it('refuses a non-loopback listen address without a token; accepts it with one', async () => {
    expect(() => createCollector({ host: '0.0.0.0', port: 0, spoolDir: tmp.dir, upstream: dead.url })).toThrow(
      /no bearer token/,
    );
    collector = createCollector({ host: '0.0.0.0', port: 0, spoolDir: tmp.dir, upstream: dead.url, token: TOKEN });
    const { url } = await collector.start();
    const res = await post(url.replace('0.0.0.0', '127.0.0.1'), traceBody(1, 1, 1));
    expect(res.status).toBe(401);
  });

  it('serves HTTPS with --tls-cert/--tls-key material: the token travels encrypted', async () => {
    const key = join(tmp.dir, 'c.key');
    const cert = join(tmp.dir, 'c.crt');
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
        ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
      ],
      { stdio: 'ignore' },
    );
    const pem = readFileSync(cert);
    collector = createCollector({
      port: 0,
      spoolDir: join(tmp.dir, 'spool'),
      upstream: dead.url,
      token: TOKEN,
      tls: { cert: pem, key: readFileSync(key) },
    });
    const { url } = await collector.start();
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const body = traceBody(2, 1, 4);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${url}/v1/traces`,
        {
          method: 'POST',
          ca: pem,
          headers: { 'content-type': 'application/x-protobuf', authorization: `Bearer ${TOKEN}` },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end(Buffer.from(body));
    });
    expect(status).toBe(200);
    // Plain HTTP to the TLS port gets no OTLP answer.
    await expect(post(`${url.replace('https', 'http')}/v1/traces`, body)).rejects.toThrow();
  });
});
