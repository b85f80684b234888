import {
  attachDetachedBundles,
  buildReferrer,
  canonicalIndexOrder,
  EMPTY_JSON_BLOB,
  loadArtifactWithBlobs,
  type ReadArtifactOptions,
  selectArtifactDescriptor,
} from './artifact.js';
import { ArtifactError } from './errors.js';
import { encodeIndex, encodeTar, openLayout } from './layout.js';
import { type Descriptor, type Digest, type LoadedArtifact, MediaType } from './types.js';
import { parseBundle } from './verify.js';

/** An artifact re-encoded as the canonical VYR layout `.tar` (see {@link exportArtifactTar}). */
export interface ExportedArtifact {
  /** The artifact as read (every blob re-hashed), bundles attached. */
  artifact: LoadedArtifact;
  /** The `.tar` bytes: the same manifest digest, one signature referrer per bundle. */
  tar: Uint8Array;
}

/**
 * Reads one artifact of any spec-valid layout (see `readArtifact`: a skopeo copy, a layout holding several
 * artifacts with `options.ref`) and re-encodes it as the layout VYR writes: its manifest, config and layers
 * byte for byte (so the digest is the same), and one signature referrer for every bundle found (in the layout,
 * or detached: `options.bundlePaths`, default `ARTIFACT.sigstore.json`). Used to upload such a layout to a node,
 * which then reads only what it would read from `vyr pack` + `vyr sign`. Checks integrity, not trust.
 *
 * @throws ArtifactError every code of `readArtifact`; `MALFORMED_BUNDLE`, `MESSAGE_DIGEST_MISMATCH` for a
 * bundle that does not sign this manifest.
 */
export async function exportArtifactTar(
  source: string | Uint8Array,
  options: ReadArtifactOptions = {},
): Promise<ExportedArtifact> {
  const reader = await openLayout(source);
  const desc = await selectArtifactDescriptor(reader, options.ref);
  const { artifact, blobs } = await loadArtifactWithBlobs(reader, desc);
  await attachDetachedBundles(artifact, source, options.bundlePaths);
  const subject: Descriptor = {
    mediaType: MediaType.ociManifest,
    artifactType: MediaType.wasmConfig,
    digest: artifact.digest,
    size: artifact.manifestBytes.byteLength,
    annotations: { 'org.opencontainers.image.ref.name': `${artifact.manifest.name}:${artifact.manifest.version}` },
  };
  const descriptors: Descriptor[] = [subject];
  const out = new Map<Digest, Uint8Array>(blobs);
  const manifestDigest = Buffer.from(artifact.digest.slice(7), 'hex');
  for (const attached of artifact.bundles) {
    const where =
      attached.location === 'layout' ? `signature bundle ${attached.bundleDigest}` : 'detached signature bundle';
    const parsed = parseBundle(attached.json, where);
    if (!parsed.messageDigest.equals(manifestDigest)) {
      throw new ArtifactError(
        'MESSAGE_DIGEST_MISMATCH',
        `${where} signs sha256:${parsed.messageDigest.toString('hex')}, not ${artifact.digest}; give the bundle made for this artifact`,
      );
    }
    const bundleBytes = new TextEncoder().encode(attached.json);
    const ref = buildReferrer(subject, bundleBytes, parsed.keyId);
    out.set(ref.bundleDesc.digest, bundleBytes);
    out.set(ref.referrer.config.digest, EMPTY_JSON_BLOB);
    out.set(ref.referrerDesc.digest, ref.referrerBytes);
    if (!descriptors.some((d) => d.digest === ref.referrerDesc.digest)) descriptors.push(ref.referrerDesc);
  }
  const tar = encodeTar({ index: encodeIndex(canonicalIndexOrder(descriptors)), blobs: out }, 0);
  return { artifact, tar };
}
