import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { vi } from 'vitest';

/**
 * Makes the network unavailable for the current test: `fetch`, `http(s).request`/`get`, `net` socket connects
 * and DNS lookups throw. Returns a function that reports how many attempts were made.
 */
export function disableNetwork(): { attempts: () => number } {
  let attempts = 0;
  const refuse = (): never => {
    attempts++;
    throw new Error('network is unavailable in this test');
  };
  vi.spyOn(globalThis, 'fetch').mockImplementation(async () => refuse());
  vi.spyOn(http, 'request').mockImplementation(refuse);
  vi.spyOn(http, 'get').mockImplementation(refuse);
  vi.spyOn(https, 'request').mockImplementation(refuse);
  vi.spyOn(https, 'get').mockImplementation(refuse);
  vi.spyOn(net.Socket.prototype, 'connect').mockImplementation(refuse);
  vi.spyOn(dns, 'lookup').mockImplementation(refuse as never);
  vi.spyOn(dns.promises, 'lookup').mockImplementation(async () => refuse());
  return { attempts: () => attempts };
}
