/**
 * A request message that is not valid protobuf is the client's error, `invalid_argument` (as connect-es already
 * answers for malformed JSON), not `internal`: connect-es's binary serialization reports every parse failure as
 * `internal` ("parse binary: …"). Found by fuzzing NodeService (apps/node/test/fuzz.test.ts). Two places see such
 * a failure: an interceptor, for messages parsed while the handler reads a stream, and the HTTP response of a unary
 * call, whose message connect-es parses before any interceptor runs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { malformedAsInvalid } from './errors.js';

async function* remapStream<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw err instanceof ConnectError ? malformedAsInvalid(err) : err;
  }
}

/** Interceptor turning a stream's "parse binary" `internal` errors into `invalid_argument`. */
export function createMalformedMessageInterceptor(): Interceptor {
  return (next) => async (req) => {
    const request = req.stream ? { ...req, message: remapStream(req.message) } : req;
    try {
      const res = await next(request as typeof req);
      return res.stream ? { ...res, message: remapStream(res.message) } : res;
    } catch (err) {
      throw err instanceof ConnectError ? malformedAsInvalid(err) : err;
    }
  };
}

type Handler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
  next?: () => void,
) => void;

/**
 * Wraps a connect-node handler so a unary error response `500 {"code":"internal","message":"parse binary: …"}`
 * goes out as `400 {"code":"invalid_argument", …}`. Only 500 responses are held back (they are small JSON bodies);
 * every other response is written through unchanged.
 */
export function answerMalformedAsInvalid<H extends Handler>(handler: H): H {
  return ((req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse, next?: () => void) => {
    const out = res as ServerResponse;
    const writeHead = out.writeHead.bind(out) as (status: number, headers?: Record<string, unknown>) => ServerResponse;
    const write = out.write.bind(out) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const end = out.end.bind(out) as (...args: unknown[]) => ServerResponse;
    let held: { headers: Record<string, unknown>; chunks: Buffer[] } | undefined;
    (out as { writeHead: unknown }).writeHead = (status: number, headers?: unknown) => {
      // connect-node calls writeHead again at the end when headersSent is still false (it is, while held).
      if (held) return out;
      if (status === 500 && headers && typeof headers === 'object' && !Array.isArray(headers)) {
        held = { headers: { ...(headers as Record<string, unknown>) }, chunks: [] };
        return out;
      }
      return writeHead(status, headers as Record<string, unknown>);
    };
    (out as { write: unknown }).write = (chunk: unknown, ...rest: unknown[]) => {
      if (!held) return write(chunk, ...rest);
      held.chunks.push(Buffer.from(chunk as Uint8Array));
      return true;
    };
    (out as { end: unknown }).end = (...args: unknown[]) => {
      if (!held) return end(...args);
      const [chunk] = args;
      if (chunk !== undefined && typeof chunk !== 'function') held.chunks.push(Buffer.from(chunk as Uint8Array));
      let status = 500;
      let body = Buffer.concat(held.chunks);
      try {
        const parsed = JSON.parse(body.toString('utf8')) as { code?: string; message?: string };
        if (parsed.code === 'internal' && typeof parsed.message === 'string') {
          const remapped = malformedAsInvalid(new ConnectError(parsed.message, Code.Internal));
          if (remapped.code === Code.InvalidArgument) {
            status = 400;
            body = Buffer.from(JSON.stringify({ code: 'invalid_argument', message: remapped.rawMessage }));
          }
        }
      } catch {
        // not JSON: pass it on as it was
      }
      const headers = { ...held.headers };
      for (const key of Object.keys(headers)) if (key.toLowerCase() === 'content-length') delete headers[key];
      headers['content-length'] = String(body.length);
      held = undefined;
      writeHead(status, headers);
      return end(body);
    };
    handler(req, res, next);
  }) as H;
}
