import { createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { bundleToJSON } from '@sigstore/bundle';
import { MessageSignatureBundleBuilder, type Signature, type Signer } from '@sigstore/sign';
import {
  assertCanonicalIndex,
  buildReferrer,
  canonicalIndexOrder,
  collectLayoutBlobs,
  detachedBundlePath,
  EMPTY_JSON_BLOB,
  findArtifactDescriptor,
  KEY_ID_ANNOTATION,
  readReferrer,
} from './artifact.js';
import { ArtifactError } from './errors.js';
import { keyIdOf, parsePrivateKeyPem, readPrivateKey } from './keys.js';
import { encodeIndex, openLayout, writeFileAtomic, writeLayout } from './layout.js';
import { type Descriptor, type Digest, MediaType } from './types.js';

/** Bundle v0.3 media type (sigstore protobuf-specs `bundle.proto`). */
export const BUNDLE_V03_MEDIA_TYPE = MediaType.sigstoreBundle;

/**
 * A Sigstore `Signer` backed by a local ECDSA P-256 private key: signs the message with SHA-256 and names the key
 * by its key id (hex SHA-256 of the SPKI DER) in `verificationMaterial.publicKey.hint`.
 */
export class LocalKeySigner implements Signer {
  readonly #privateKey: KeyObject;
  /** Key id of the matching public key. */
  readonly keyId: string;

  constructor(privateKey: KeyObject) {
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new ArtifactError('MALFORMED_KEY', 'the signing key must be an ECDSA P-256 private key');
    }
    this.#privateKey = privateKey;
    this.keyId = keyIdOf(createPublicKey(privateKey));
  }

  async sign(data: Buffer): Promise<Signature> {
    const signature = cryptoSign('sha256', data, this.#privateKey);
    return { signature, key: { $case: 'publicKey', publicKey: '', hint: this.keyId } };
  }
}

/**
 * Builds a Sigstore bundle v0.3 (`messageSignature`, ECDSA P-256, SHA-256) over `message`, without any network
 * witness (no transparency log, no timestamp authority). Returns the bundle JSON text (compact).
 */
export async function createBundle(
  message: Uint8Array,
  privateKey: KeyObject,
): Promise<{ json: string; keyId: string }> {
  const signer = new LocalKeySigner(privateKey);
  const builder = new MessageSignatureBundleBuilder({ signer, witnesses: [] });
  const bundle = await builder.create({ data: Buffer.from(message.buffer, message.byteOffset, message.byteLength) });
  // The builder picks v0.2 for certificate chains; with a bare public key the current format is v0.3.
  bundle.mediaType = BUNDLE_V03_MEDIA_TYPE;
  return { json: JSON.stringify(bundleToJSON(bundle)), keyId: signer.keyId };
}

/** What {@link signArtifact} produced. */
export interface SignResult {
  /** Digest of the signed artifact (its manifest). */
  digest: Digest;
  /** Key id of the signer. */
  keyId: string;
  /** The bundle JSON text. */
  bundleJson: string;
  /** Digest of the bundle blob inside the layout. */
  bundleDigest: Digest;
  /** Digest of the referrer manifest that attaches the bundle to the artifact. */
  referrerDigest: Digest;
  /** Path of the detached copy (`ARTIFACT.sigstore.json`). */
  detachedPath: string;
}

/**
 * Signs an artifact in place: creates a Sigstore bundle over the manifest bytes, stores it inside the layout as
 * an OCI referrer (a manifest with `artifactType` `application/vnd.dev.sigstore.bundle.v0.3+json` whose
 * `subject` is the artifact manifest, listed in `index.json`), and writes the same bytes beside the artifact as
 * `ARTIFACT.sigstore.json`. A previous signature by the same key is replaced; other keys' signatures are kept.
 *
 * The artifact is integrity-checked (every blob re-hashed) before anything is signed.
 *
 * @param key - PKCS#8 PEM text, a private `KeyObject`, or `{ path }` of a `vyr.key` file.
 * @throws ArtifactError `MALFORMED_KEY`, `NOT_FOUND`, any integrity code of `readArtifact`, `IO_ERROR`.
 */
export async function signArtifact(
  path: string,
  key: string | KeyObject | { path: string },
  options: { sourceDateEpoch?: number } = {},
): Promise<SignResult> {
  const privateKey =
    typeof key === 'string' ? parsePrivateKeyPem(key) : 'path' in key ? await readPrivateKey(key.path) : key;
  const reader = await openLayout(path);
  const artifactDesc = findArtifactDescriptor(reader);
  // Keep the artifact and other keys' signatures; this key's previous signature is replaced below.
  const signer = new LocalKeySigner(privateKey);
  const kept: Descriptor[] = [];
  for (const d of reader.index.manifests) {
    if (d.artifactType === MediaType.sigstoreBundle) {
      const ref = await readReferrer(reader, d);
      if (ref.manifest.annotations?.[KEY_ID_ANNOTATION] === signer.keyId && ref.subjectDigest === artifactDesc.digest) {
        continue;
      }
    }
    kept.push(d);
  }
  // One integrity pass: every kept blob is read and re-hashed once, the artifact's included.
  const blobs = await collectLayoutBlobs({ ...reader, index: { ...reader.index, manifests: kept } });
  // An altered index.json is refused here as verify would refuse it, rather than carried into the signed layout.
  await assertCanonicalIndex(reader);
  const verified = new Set(blobs.keys());
  const { json, keyId } = await createBundle(blobs.get(artifactDesc.digest)!, privateKey);
  const bundleBytes = new TextEncoder().encode(json);
  const { bundleDesc, referrer, referrerBytes, referrerDesc } = buildReferrer(artifactDesc, bundleBytes, keyId);

  blobs.set(bundleDesc.digest, bundleBytes);
  blobs.set(referrer.config.digest, EMPTY_JSON_BLOB);
  blobs.set(referrerDesc.digest, referrerBytes);
  await writeLayout(
    path,
    { index: encodeIndex(canonicalIndexOrder([...kept, referrerDesc])), blobs },
    options.sourceDateEpoch ?? 0,
    verified,
  );
  const detachedPath = detachedBundlePath(path);
  try {
    await writeFileAtomic(detachedPath, bundleBytes);
  } catch (cause) {
    throw new ArtifactError('IO_ERROR', `cannot write ${detachedPath}: ${(cause as Error).message}`, { cause });
  }
  return {
    digest: artifactDesc.digest,
    keyId,
    bundleJson: json,
    bundleDigest: bundleDesc.digest,
    referrerDigest: referrerDesc.digest,
    detachedPath,
  };
}
