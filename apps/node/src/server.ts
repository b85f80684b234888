import { createPrivateKey, X509Certificate } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { connectNodeAdapter } from '@connectrpc/connect-node';

/** A request handler for both `http` and `http2` servers. */
type NodeHandlerFn = ReturnType<typeof connectNodeAdapter>;

import { NodeError } from './errors.js';

/** A listening server speaking HTTP/1.1 and HTTP/2 on one port. */
export interface DualServer {
  /** The bound address, e.g. `{ host: '127.0.0.1', port: 7070 }`. */
  readonly address: { host: string; port: number };
  /**
   * `http://…` or `https://…`, usable by a client on this host: a wildcard address (`0.0.0.0`, `::`) is given as the
   * loopback address of its family (the node still listens on every interface).
   */
  readonly url: string;
  /** Stops accepting, ends idle connections, and destroys the rest after `graceMs`. */
  close(graceMs?: number): Promise<void>;
}

/** Options of {@link listenDual}. */
export interface ListenOptions {
  host: string;
  port: number;
  handler: NodeHandlerFn;
  /** PEM certificate and key: HTTPS with ALPN (h2, http/1.1). Absent: cleartext. */
  tls?: { cert: Buffer; key: Buffer };
}

// RFC 9113 §3.4: an HTTP/2 client with prior knowledge starts with this preface.
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');

/**
 * Serves `handler` on HTTP/1.1 and HTTP/2 on one port. With TLS, ALPN picks the protocol
 * (`http2.createSecureServer({ allowHTTP1: true })`). Cleartext HTTP/2 ("h2c", what gRPC clients use without TLS)
 * has no negotiation, and Node's h2c server refuses HTTP/1.1; so a plain TCP listener peeks at the first bytes and
 * hands the socket to an HTTP/2 or an HTTP/1.1 server.
 */
export async function listenDual(options: ListenOptions): Promise<DualServer> {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let outer: net.Server;
  let h1: http.Server | undefined;
  let h2: http2.Http2Server | http2.Http2SecureServer;
  if (options.tls) {
    h2 = http2.createSecureServer({ allowHTTP1: true, cert: options.tls.cert, key: options.tls.key }, options.handler);
    outer = h2;
  } else {
    h1 = http.createServer(options.handler);
    h1.keepAliveTimeout = 65_000;
    h2 = http2.createServer(options.handler);
    const h1s = h1;
    const h2s = h2;
    outer = net.createServer({ noDelay: true }, (socket) => {
      // Peek without switching the socket to flowing mode, then push the bytes back for the real server.
      const onReadable = (): void => {
        const available = socket.readableLength;
        if (available < PREFACE.length) {
          const peek = socket.read() as Buffer | null;
          if (peek === null) return;
          socket.unshift(peek);
          if (!PREFACE.subarray(0, peek.length).equals(peek)) dispatch(false);
          return; // otherwise it could still be HTTP/2: wait for more bytes
        }
        const head = socket.read(PREFACE.length) as Buffer;
        socket.unshift(head);
        dispatch(head.equals(PREFACE));
      };
      const dispatch = (isH2: boolean): void => {
        socket.off('readable', onReadable);
        (isH2 ? h2s : h1s).emit('connection', socket);
      };
      socket.on('readable', onReadable);
    });
  }
  outer.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  h2.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(
        new NodeError('LISTEN_FAILED', `cannot listen on ${options.host}:${options.port}: ${err.code ?? err.message}`, {
          cause: err,
        }),
      );
    outer.once('error', onError);
    outer.listen(options.port, options.host, () => {
      outer.off('error', onError);
      resolve();
    });
  });
  const addr = outer.address() as net.AddressInfo;
  const host = addr.address;
  // 0.0.0.0 and :: are where to listen, not where to connect.
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  const urlHost = reachable.includes(':') ? `[${reachable}]` : reachable;
  return {
    address: { host, port: addr.port },
    url: `${options.tls ? 'https' : 'http'}://${urlHost}:${addr.port}`,
    async close(graceMs = 2000) {
      const closed = new Promise<void>((resolve) => outer.close(() => resolve()));
      h1?.closeIdleConnections();
      for (const s of sessions) s.close();
      const timer = setTimeout(() => {
        for (const s of sessions) s.destroy();
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
    },
  };
}

/** True for 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

/** Parses `HOST:PORT` (IPv6 in brackets). @throws NodeError INVALID_ARGUMENT. */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new NodeError('INVALID_ARGUMENT', `--listen ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:7070)`);
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * Checks a PEM certificate and private key before the node starts: both parse, and the key is the certificate's.
 * `names` say which files they came from (for the message).
 * @throws NodeError INVALID_FILE naming the file.
 */
export function checkTlsPair(tls: { cert: Buffer; key: Buffer }, names: { cert: string; key: string }): void {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(tls.cert);
  } catch (cause) {
    throw new NodeError('INVALID_FILE', `${names.cert} is not a PEM X.509 certificate: ${(cause as Error).message}`, {
      cause,
    });
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(tls.key);
  } catch (cause) {
    throw new NodeError('INVALID_FILE', `${names.key} is not a PEM private key: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new NodeError('INVALID_FILE', `${names.key} is not the private key of the certificate ${names.cert}`);
  }
}
