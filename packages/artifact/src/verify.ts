import { verify as cryptoVerify, type KeyObject, timingSafeEqual } from 'node:crypto';
import { bundleFromJSON } from '@sigstore/bundle';
import { type TrustMaterial, toSignedEntity, Verifier } from '@sigstore/verify';
import { readArtifact } from './artifact.js';
import { sha256Digest } from './digest.js';
import { ArtifactError } from './errors.js';
import type { TrustPolicy } from './trust.js';
import {
  type AttachedBundle,
  type LoadedArtifact,
  MediaType,
  type SignatureInfo,
  type VerificationResult,
} from './types.js';

/** Bundle media types accepted: v0.3 and its legacy spelling (sigstore protobuf-specs). */
const ACCEPTED_BUNDLE_TYPES = new Set<string>([
  MediaType.sigstoreBundle,
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
]);
const KEY_ID = /^[0-9a-f]{64}$/;

/** A bundle after the strict shape check. */
export interface ParsedBundle {
  /** The JSON value, for `@sigstore/bundle`. */
  value: Record<string, unknown>;
  /** Key id named by `verificationMaterial.publicKey.hint`. */
  keyId: string;
  /** Decoded `messageSignature.messageDigest.digest`. */
  messageDigest: Buffer;
  /** Decoded `messageSignature.signature` (DER ECDSA). */
  signature: Buffer;
}

function malformed(where: string, message: string): ArtifactError {
  return new ArtifactError('MALFORMED_BUNDLE', `${where}: ${message}; re-sign the artifact with \`vyr sign\``);
}

function exactKeys(
  value: unknown,
  required: string[],
  optional: string[],
  where: string,
  path: string,
): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw malformed(where, `${path} must be an object`);
  const obj = value as Record<string, unknown>;
  for (const key of required) if (!(key in obj)) throw malformed(where, `${path}.${key} is missing`);
  for (const key of Object.keys(obj)) {
    if (!required.includes(key) && !optional.includes(key))
      throw malformed(where, `${path} has unknown field "${key}"`);
  }
  return obj;
}

/** Base64 that decodes and re-encodes to itself (no ignored bits or characters that a lenient decoder skips). */
function canonicalBase64(value: unknown, where: string, path: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    throw malformed(where, `${path} is not base64`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw malformed(where, `${path} is not canonical base64`);
  return bytes;
}

/**
 * Parses a Sigstore bundle JSON strictly: v0.3 media type, `messageSignature` content with a SHA2_256 digest,
 * a `publicKey` verification material naming a key id, no transparency-log entries or timestamps (VYR verifies
 * offline, against keys only). Unknown fields are refused, so no byte of a bundle is unchecked.
 *
 * @throws ArtifactError `MALFORMED_BUNDLE`, `UNSUPPORTED_MEDIA_TYPE`.
 */
export function parseBundle(json: string, where = 'bundle'): ParsedBundle {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new ArtifactError('MALFORMED_BUNDLE', `${where} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  const top = exactKeys(value, ['mediaType', 'verificationMaterial'], ['messageSignature', 'dsseEnvelope'], where, '$');
  if (typeof top.mediaType !== 'string' || !ACCEPTED_BUNDLE_TYPES.has(top.mediaType)) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${where}: bundle media type ${JSON.stringify(top.mediaType)} is not supported (expected application/vnd.dev.sigstore.bundle.v0.3+json)`,
    );
  }
  if (top.messageSignature === undefined) {
    throw malformed(where, 'only messageSignature bundles are supported (found no messageSignature)');
  }
  if ('dsseEnvelope' in top) throw malformed(where, 'DSSE envelopes are not supported; VYR signs manifest bytes');
  const material = exactKeys(
    top.verificationMaterial,
    ['publicKey'],
    ['tlogEntries', 'timestampVerificationData'],
    where,
    '$.verificationMaterial',
  );
  const publicKey = exactKeys(material.publicKey, ['hint'], [], where, '$.verificationMaterial.publicKey');
  if (typeof publicKey.hint !== 'string' || !KEY_ID.test(publicKey.hint)) {
    throw malformed(
      where,
      `$.verificationMaterial.publicKey.hint ${JSON.stringify(publicKey.hint)} is not a key id (64 hex)`,
    );
  }
  if (material.tlogEntries !== undefined && (!Array.isArray(material.tlogEntries) || material.tlogEntries.length > 0)) {
    throw malformed(where, 'transparency-log entries are not supported (VYR verifies offline against trusted keys)');
  }
  if (material.timestampVerificationData !== undefined) {
    const tsv = exactKeys(
      material.timestampVerificationData,
      [],
      ['rfc3161Timestamps'],
      where,
      '$.verificationMaterial.timestampVerificationData',
    );
    if (
      tsv.rfc3161Timestamps !== undefined &&
      (!Array.isArray(tsv.rfc3161Timestamps) || tsv.rfc3161Timestamps.length > 0)
    ) {
      throw malformed(where, 'RFC 3161 timestamps are not supported (VYR verifies offline against trusted keys)');
    }
  }
  const ms = exactKeys(top.messageSignature, ['messageDigest', 'signature'], [], where, '$.messageSignature');
  const md = exactKeys(ms.messageDigest, ['algorithm', 'digest'], [], where, '$.messageSignature.messageDigest');
  if (md.algorithm !== 'SHA2_256') {
    throw malformed(where, `message digest algorithm ${JSON.stringify(md.algorithm)} is not SHA2_256`);
  }
  const messageDigest = canonicalBase64(md.digest, where, '$.messageSignature.messageDigest.digest');
  if (messageDigest.length !== 32) throw malformed(where, 'the SHA-256 message digest is not 32 bytes');
  const signature = canonicalBase64(ms.signature, where, '$.messageSignature.signature');
  if (signature.length === 0) throw malformed(where, 'the signature is empty');
  return { value: top, keyId: publicKey.hint, messageDigest, signature };
}

/** Options of {@link verifyArtifact}. */
export interface VerifyOptions {
  /** Detached bundle files to check in addition to the layout's. Default: `ARTIFACT.sigstore.json` if present. */
  bundlePaths?: readonly string[];
  /** Which artifact of a layout holding several (digest or ref name); see `ReadArtifactOptions.ref`. */
  ref?: string;
}

/**
 * Verifies an artifact offline against a trust policy:
 *
 * 1. integrity — every blob re-hashed against its descriptor (done by `readArtifact` / `store.get`);
 * 2. every attached bundle (layout referrers and the detached `.sigstore.json`) must be well-formed and its
 *    `messageDigest` must equal the SHA-256 of the manifest bytes (`@sigstore/verify` does not check this);
 * 3. a bundle naming a trusted key must verify with `@sigstore/verify` (trust material holding only the
 *    policy's keys, all thresholds 0); a bundle naming an unknown key whose signature nevertheless verifies
 *    with a trusted key had its key hint altered and is refused too;
 * 4. at least one signature by a trusted key, or no signature at all and `policy.allowUnsigned`.
 *
 * Never touches the network.
 *
 * @param source - an artifact path (dir or `.tar`) or a {@link LoadedArtifact} (e.g. from the store).
 * @throws ArtifactError `SIGNATURE_INVALID`, `MESSAGE_DIGEST_MISMATCH`, `UNTRUSTED_KEY`, `UNSIGNED`,
 * `MALFORMED_BUNDLE`, `UNSUPPORTED_MEDIA_TYPE`, and every integrity code of `readArtifact`.
 */
export async function verifyArtifact(
  source: string | LoadedArtifact,
  policy: TrustPolicy,
  options: VerifyOptions = {},
): Promise<VerificationResult> {
  const artifact =
    typeof source === 'string'
      ? await readArtifact(source, {
          ...(options.bundlePaths === undefined ? {} : { bundlePaths: options.bundlePaths }),
          ...(options.ref === undefined ? {} : { ref: options.ref }),
        })
      : source;
  return verifyLoaded(artifact, policy);
}

/** Verifies the bundles of an already integrity-checked artifact. See {@link verifyArtifact}. */
export function verifyLoaded(artifact: LoadedArtifact, policy: TrustPolicy): VerificationResult {
  const manifestDigest = Buffer.from(sha256Digest(artifact.manifestBytes).slice(7), 'hex');
  if (`sha256:${manifestDigest.toString('hex')}` !== artifact.digest) {
    throw new ArtifactError('MANIFEST_TAMPERED', `manifest bytes do not hash to ${artifact.digest}`);
  }
  const signatures: SignatureInfo[] = [];
  const trusted = new Set<string>();
  for (const attached of artifact.bundles) {
    const where = describeBundle(attached);
    const parsed = parseBundle(attached.json, where);
    if (!equalBytes(parsed.messageDigest, manifestDigest)) {
      throw new ArtifactError(
        'MESSAGE_DIGEST_MISMATCH',
        `${where} signs sha256:${parsed.messageDigest.toString('hex')}, not this artifact's manifest ${artifact.digest}; it belongs to another artifact or was altered`,
      );
    }
    signatures.push({
      keyId: parsed.keyId,
      location: attached.location,
      ...(attached.bundleDigest === undefined ? {} : { bundleDigest: attached.bundleDigest }),
    });
    const key = policy.get(parsed.keyId);
    if (key !== undefined) {
      sigstoreVerify(parsed, artifact.manifestBytes, key.publicKey, where);
      trusted.add(parsed.keyId);
      continue;
    }
    // The hint is not authenticated: a signature that verifies with a trusted key under another name was altered.
    for (const candidate of policy.keys.values()) {
      if (rawVerify(artifact.manifestBytes, candidate.publicKey, parsed.signature)) {
        throw new ArtifactError(
          'SIGNATURE_INVALID',
          `${where} names key ${parsed.keyId} but its signature was made by trusted key ${candidate.keyId}: the bundle was altered`,
        );
      }
    }
  }
  if (trusted.size > 0) {
    return {
      digest: artifact.digest,
      signed: true,
      trustedKeyIds: [...trusted].sort(),
      signatures,
      allowedUnsigned: false,
    };
  }
  if (artifact.bundles.length > 0) {
    const ids = [...new Set(signatures.map((s) => s.keyId))];
    throw new ArtifactError(
      'UNTRUSTED_KEY',
      `${artifact.digest} is signed only by untrusted key${ids.length > 1 ? 's' : ''} ${ids.join(', ')}; add the signer's public key to the trust set (--trust) if you trust it`,
    );
  }
  if (policy.allowUnsigned) {
    return { digest: artifact.digest, signed: false, trustedKeyIds: [], signatures, allowedUnsigned: true };
  }
  throw new ArtifactError(
    'UNSIGNED',
    `${artifact.digest} carries no signature; sign it with \`vyr sign\` (unsigned artifacts are accepted only with the explicit allow-unsigned developer flag)`,
  );
}

function describeBundle(b: AttachedBundle): string {
  return b.location === 'layout' ? `signature bundle ${b.bundleDigest}` : 'detached signature bundle';
}

function sigstoreVerify(parsed: ParsedBundle, message: Uint8Array, publicKey: KeyObject, where: string): void {
  let entity: ReturnType<typeof toSignedEntity>;
  try {
    const bundle = bundleFromJSON(parsed.value);
    entity = toSignedEntity(bundle, Buffer.from(message.buffer, message.byteOffset, message.byteLength));
  } catch (cause) {
    throw new ArtifactError(
      'MALFORMED_BUNDLE',
      `${where} is not a valid Sigstore bundle: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  const trustMaterial: TrustMaterial = {
    certificateAuthorities: [],
    timestampAuthorities: [],
    tlogs: [],
    ctlogs: [],
    publicKey: (hint: string) => {
      if (hint !== parsed.keyId) throw new Error(`key ${hint} is not trusted`);
      return { publicKey, validFor: () => true };
    },
  };
  const verifier = new Verifier(trustMaterial, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 });
  try {
    verifier.verify(entity);
  } catch (cause) {
    throw new ArtifactError(
      'SIGNATURE_INVALID',
      `${where}: the signature does not verify with trusted key ${parsed.keyId}: the bundle or the manifest was altered`,
      { cause },
    );
  }
}

function rawVerify(message: Uint8Array, publicKey: KeyObject, signature: Buffer): boolean {
  try {
    return cryptoVerify('sha256', message, publicKey, signature);
  } catch {
    return false;
  }
}

function equalBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
