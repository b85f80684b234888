import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime } from '../dist/index.js';
import { buildJsComponent, makeArtifact, memorySource, tempDir, text, writeCacheEntry } from './helpers.js';

const FETCH_PORT = 9;

/**
 * A JavaScript component (componentize-js, with its `http` feature: `fetch` over `wasi:http/outgoing-handler`) that
 * tries an HTTP request to a server the test runs, and prints what it got.
 */
const fetchSource = (url: string) => `export const run = {
  async run() {
    try {
      const response = await fetch(${JSON.stringify(url)});
      console.log('http: status ' + response.status);
    } catch (e) {
      console.log('http: ' + (e && e.message ? e.message : String(e)));
    }
  },
};
`;
const FETCH_WIT = `package local:fetcher;
package wasi:cli@0.2.3 { interface run { run: func() -> result; } }
world fetcher { export wasi:cli/run@0.2.3; }`;

/**
 * Host JS standing in for a transpiled component (installed as a prepare-cache entry): it receives exactly the
 * import object the worker hands every component and calls the network interfaces the way jco's glue would for a
 * guest, printing each refusal to the task's stdout. `wasi:sockets` refusals are the WASI `error-code` strings.
 */
const probeJs = (port: number) => `export async function instantiate(getCoreModule, imports) {
  const out = imports['wasi:cli/stdout'].getStdout();
  const say = (line) => out.blockingWriteAndFlush(new TextEncoder().encode(line + '\\n'));
  const attempt = (name, fn) => {
    try {
      fn();
      say(name + ': allowed');
    } catch (e) {
      const code = typeof e === 'string' ? e : e && e.tag !== undefined ? e.tag : String(e);
      say(name + ': ' + code);
    }
  };
  const net = imports['wasi:sockets/instance-network'].instanceNetwork();
  const loopback = { tag: 'ipv4', val: { port: ${port}, address: [127, 0, 0, 1] } };
  attempt('tcp connect', () => imports['wasi:sockets/tcp-create-socket'].createTcpSocket('ipv4').startConnect(net, loopback));
  attempt('tcp bind', () =>
    imports['wasi:sockets/tcp-create-socket'].createTcpSocket('ipv4').startBind(net, { tag: 'ipv4', val: { port: 0, address: [127, 0, 0, 1] } }),
  );
  attempt('udp bind', () =>
    imports['wasi:sockets/udp-create-socket'].createUdpSocket('ipv4').startBind(net, { tag: 'ipv4', val: { port: 0, address: [127, 0, 0, 1] } }),
  );
  attempt('dns', () => imports['wasi:sockets/ip-name-lookup'].resolveAddresses(net, 'localhost'));
  attempt('http', () => {
    const { Fields, OutgoingRequest } = imports['wasi:http/types'];
    const request = new OutgoingRequest(new Fields());
    request.setAuthority('127.0.0.1:${port}');
    imports['wasi:http/outgoing-handler'].handle(request);
  });
  return { 'wasi:cli/run@0.2.3': { run() {} } };
}
`;

describe('no network for guests', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let server: Server;
  let port: number;
  let connections = 0;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    // A real server on loopback: any connection a guest manages to open is counted.
    server = createServer((_req, res) => res.end('reached'));
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await cleanup();
  });

  it('refuses fetch from a JavaScript component with an error the guest can catch (not a trap)', async () => {
    // Port 9 on loopback: nothing listens there (a host with network would answer connection refused). The URL is
    // part of the cached build's key, so it is fixed; the probe below targets the test's server.
    const component = await buildJsComponent({
      source: fetchSource(`http://127.0.0.1:${FETCH_PORT}/`),
      wit: FETCH_WIT,
      worldName: 'fetcher',
      disableFeatures: ['fetch-event'],
    });
    const fetcher = makeArtifact(component, { name: 'fetcher' });
    const runtime = createRuntime({ artifacts: memorySource([fetcher]), cacheDir: join(dir, 'fetch') });
    try {
      const task = await runtime.submit({ digest: fetcher.digest });
      const status = await runtime.wait(task.id);
      const stdout = text(runtime.output(task.id).stdout);
      // Before the host answered with a wasi:http error-code, the guest's binding trapped on the shim's
      // sockets-style `access-denied` string.
      expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0 });
      expect(stdout).toMatch(/^http: fetch_https: An error occurred while using the host API\.$/m);
      expect(stdout).not.toMatch(/status \d+/);
    } finally {
      await runtime.close();
    }
  }, 240_000);

  it('the host refuses every socket, name lookup and outgoing HTTP request a component can make', async () => {
    const probe = makeArtifact(new Uint8Array([0, 97, 115, 109, 13, 0, 1, 0]), { name: 'net-probe' });
    const cacheDir = join(dir, 'probe');
    await writeCacheEntry(cacheDir, probe.digest, probeJs(port));
    const runtime = createRuntime({ artifacts: memorySource([probe]), cacheDir });
    try {
      const task = await runtime.submit({ digest: probe.digest });
      const status = await runtime.wait(task.id);
      const stdout = text(runtime.output(task.id).stdout);
      expect(status.state).toBe('SUCCEEDED');
      expect(stdout.trim().split('\n')).toEqual([
        'tcp connect: access-denied',
        'tcp bind: access-denied',
        'udp bind: access-denied',
        // What wasmtime answers too when name lookup is not allowed.
        'dns: permanent-resolver-failure',
        'http: HTTP-request-denied',
      ]);
      expect(connections).toBe(0);
    } finally {
      await runtime.close();
    }
  });
});
