import { createHash, timingSafeEqual } from 'node:crypto';
import type { Interceptor } from '@connectrpc/connect';
import { ApiError, toConnectError } from './errors.js';

/**
 * A server interceptor that admits only requests carrying `Authorization: Bearer <token>` (RFC 6750) with the
 * node's token; everything else gets `unauthenticated` with code UNAUTHENTICATED. The comparison is constant-time.
 */
export function createBearerAuthInterceptor(token: string): Interceptor {
  if (token.length === 0) throw new ApiError('INVALID_ARGUMENT', 'the bearer token is empty');
  const expected = createHash('sha256').update(token).digest();
  return (next) => async (req) => {
    const header = req.header.get('authorization') ?? '';
    const match = /^Bearer ([^\s]+)$/i.exec(header.trim());
    const given = createHash('sha256')
      .update(match?.[1] ?? '')
      .digest();
    if (match === null || !timingSafeEqual(given, expected)) {
      throw toConnectError(
        new ApiError(
          'UNAUTHENTICATED',
          match === null
            ? 'this node requires a bearer token: pass --token-file or set VYR_TOKEN'
            : 'the bearer token is wrong',
        ),
      );
    }
    return next(req);
  };
}
