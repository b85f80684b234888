import type { KeyObject } from 'node:crypto';
import { ArtifactError } from './errors.js';
import { keyIdOf, parsePublicKeyPem, readPublicKey } from './keys.js';

/** One key a node trusts. */
export interface TrustedKey {
  /** Hex SHA-256 of the SPKI DER. */
  keyId: string;
  /** The ECDSA P-256 public key. */
  publicKey: KeyObject;
  /** Where the key came from (a path, or a caller label), for messages. */
  source: string;
}

/**
 * Which artifacts a node accepts: those signed by one of `keys`. Default deny: an empty policy accepts nothing,
 * and unsigned artifacts are refused unless `allowUnsigned` was set explicitly (a developer/laptop flag, never
 * a default).
 */
export interface TrustPolicy {
  /** Trusted keys by key id. */
  readonly keys: ReadonlyMap<string, TrustedKey>;
  /** Accept artifacts carrying no signature at all. Signed-but-untrusted artifacts are still refused. */
  readonly allowUnsigned: boolean;
  /** The trusted key with this id, if any. */
  get(keyId: string): TrustedKey | undefined;
}

/** A key given to {@link createTrustPolicy}: PEM text or a `KeyObject`. */
export type TrustedKeyInput = string | KeyObject | { pem: string; source?: string };

/** Options of {@link createTrustPolicy}. */
export interface TrustPolicyOptions {
  /** Trusted public keys (SPKI PEM text or `KeyObject`s). Default: none (deny everything). */
  keys?: readonly TrustedKeyInput[];
  /** Accept artifacts without any signature. Default: `false`. */
  allowUnsigned?: boolean;
}

/**
 * Builds a {@link TrustPolicy}. Keys that are not ECDSA P-256 are refused.
 *
 * @throws ArtifactError `MALFORMED_KEY`.
 */
export function createTrustPolicy(options: TrustPolicyOptions = {}): TrustPolicy {
  const keys = new Map<string, TrustedKey>();
  for (const [index, input] of (options.keys ?? []).entries()) {
    const key = toTrustedKey(input, `trusted key #${index + 1}`);
    keys.set(key.keyId, key);
  }
  return freezePolicy(keys, options.allowUnsigned ?? false);
}

/**
 * Builds a {@link TrustPolicy} from SPKI PEM files (`vyr.pub`).
 *
 * @throws ArtifactError `NOT_FOUND`, `MALFORMED_KEY`.
 */
export async function loadTrustPolicy(
  publicKeyPaths: readonly string[],
  options: { allowUnsigned?: boolean } = {},
): Promise<TrustPolicy> {
  const keys = new Map<string, TrustedKey>();
  for (const path of publicKeyPaths) {
    const publicKey = await readPublicKey(path);
    const keyId = keyIdOf(publicKey);
    keys.set(keyId, { keyId, publicKey, source: path });
  }
  return freezePolicy(keys, options.allowUnsigned ?? false);
}

function toTrustedKey(input: TrustedKeyInput, label: string): TrustedKey {
  if (typeof input === 'string') {
    const publicKey = parsePublicKeyPem(input, label);
    return { keyId: keyIdOf(publicKey), publicKey, source: label };
  }
  if ('pem' in input) {
    const source = input.source ?? label;
    const publicKey = parsePublicKeyPem(input.pem, source);
    return { keyId: keyIdOf(publicKey), publicKey, source };
  }
  if (input.type !== 'public' || input.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ArtifactError('MALFORMED_KEY', `${label}: expected an ECDSA P-256 public KeyObject`);
  }
  return { keyId: keyIdOf(input), publicKey: input, source: label };
}

function freezePolicy(keys: Map<string, TrustedKey>, allowUnsigned: boolean): TrustPolicy {
  return Object.freeze({
    keys,
    allowUnsigned,
    get: (keyId: string) => keys.get(keyId),
  });
}
