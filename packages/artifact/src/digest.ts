import { createHash } from 'node:crypto';
import { ArtifactError } from './errors.js';
import type { Digest } from './types.js';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** `sha256:<hex>` of `bytes`. */
export function sha256Digest(bytes: Uint8Array): Digest {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Whether `value` is a well-formed `sha256:<64 lowercase hex>` digest. */
export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST.test(value);
}

/**
 * Checks and returns `value` as a digest. Accepts a bare 64-hex string as shorthand.
 * @throws ArtifactError `INVALID_ARGUMENT`.
 */
export function parseDigest(value: string): Digest {
  const candidate = /^[0-9a-f]{64}$/.test(value) ? `sha256:${value}` : value;
  if (!isDigest(candidate)) {
    throw new ArtifactError(
      'INVALID_ARGUMENT',
      `${JSON.stringify(value)} is not a digest; expected sha256:<64 lowercase hex characters>`,
    );
  }
  return candidate;
}

/** The hex part of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}
