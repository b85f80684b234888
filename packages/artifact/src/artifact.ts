import { readdir, rm, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { isDigest, sha256Digest } from './digest.js';
import { ArtifactError } from './errors.js';
import {
  checkDescriptor,
  containerImageError,
  encodeIndex,
  gzipContent,
  isGzip,
  isTarPath,
  isVyrLayout,
  type LayoutReader,
  openLayout,
  parseJson,
  pathExists,
  readBlobChecked,
  readFileOrThrow,
  writeLayout,
} from './layout.js';
import { STORE_LOCK_FILE } from './lock.js';
import { defaultVyrManifest, parseVyrManifest, validateVyrManifest } from './manifest.js';
import {
  type AttachedBundle,
  type ComponentInfo,
  type Descriptor,
  type Digest,
  type LoadedArtifact,
  MediaType,
  type OciManifest,
  type VyrManifest,
  type WasmConfig,
  type WasmSourceKind,
} from './types.js';
import { prepareComponent, wasmKind } from './wasm.js';

/** Manifest annotation recording how the component was produced. */
export const SOURCE_ANNOTATION = 'dev.vyr.source';
/** Index annotation on a signature referrer: the digest of the manifest it signs (saves reading every referrer). */
export const SUBJECT_ANNOTATION = 'dev.vyr.subject';
/** Index annotation on a signature referrer: the key id of the signer. */
export const KEY_ID_ANNOTATION = 'dev.vyr.key-id';
/** Annotation of a store's `index.json` marking the directory as an artifact store (never overwritten by pack). */
export const STORE_ANNOTATION = 'dev.vyr.store';
/** Files only a store directory holds: its lock (and the pid lock file of earlier versions). */
export const STORE_LOCK_FILES: readonly string[] = [STORE_LOCK_FILE, '.vyr-store.lock'];
const REF_NAME = 'org.opencontainers.image.ref.name';

/** Options of {@link packArtifact}. */
export interface PackOptions {
  /** VYR declarations: a path to `vyr.json`, or the object. Default: name from the input file name, version `0.0.0`. */
  manifest?: string | VyrManifest;
  /**
   * Seconds since the epoch to record as the creation time (`created` in the config,
   * `org.opencontainers.image.created` on the manifest, tar mtimes). Pass `SOURCE_DATE_EPOCH` here. Default: no
   * timestamp at all, so packing is reproducible.
   */
  sourceDateEpoch?: number;
  /**
   * Replace whatever OCI layout (directory or `.tar`) is at `out`, not only a single VYR artifact. Never
   * applies to an artifact store or to a directory that is not an OCI layout. Default: `false`.
   */
  force?: boolean;
  /**
   * Called as each step of the pack starts, for a progress display (the library never prints): `read` the input,
   * `prepare` (check the Wasm and, for a preview1 module, adapt it to a component), `write` the layout, with the
   * size in bytes of what that step works on. Default: none.
   */
  onProgress?: (step: 'read' | 'prepare' | 'write', bytes: number) => void;
}

/** What {@link packArtifact} produced. */
export interface PackResult {
  /** `sha256:<hex>` of the OCI manifest. */
  digest: Digest;
  /** Where the layout was written. */
  path: string;
  /** The normalised declarations. */
  manifest: VyrManifest;
  /** Native component or adapted preview1 module. */
  source: WasmSourceKind;
  /** The component's world. */
  component: ComponentInfo;
  /** Size of the component layer in bytes. */
  componentBytes: number;
}

/**
 * Packs a WASI P2 command component or a WASI P1 core module into a VYR artifact (OCI image layout) at `out`:
 * a directory, or a `.tar` file when `out` ends in `.tar`. Same inputs, same digest.
 *
 * A stale detached signature (`out.sigstore.json`) is removed, since it signs a previous manifest.
 *
 * @throws ArtifactError `NOT_FOUND`, `CONTAINER_IMAGE`, `NOT_WASM`, `INVALID_WASM`, `UNSUPPORTED_IMPORTS`,
 * `UNSUPPORTED_WORLD`, `INVALID_MANIFEST`, `ALREADY_EXISTS` (see {@link PackOptions.force}: `out` holds something
 * other than one VYR artifact with its signatures), `IO_ERROR`.
 */
export async function packArtifact(input: string, out: string, options: PackOptions = {}): Promise<PackResult> {
  const progress = options.onProgress ?? (() => {});
  progress('read', 0);
  const bytes = await readInput(input);
  await refuseContainerImage(input, bytes);
  const manifest = await resolveManifest(options.manifest, input);
  progress('prepare', bytes.byteLength);
  const prepared = await prepareComponent(bytes, input);
  const content = buildLayout(prepared.component, prepared.source, prepared.info, manifest, options.sourceDateEpoch);
  await assertWritableTarget(out, options.force ?? false);
  progress('write', prepared.component.byteLength);
  await writeLayout(out, { index: content.index, blobs: content.blobs }, options.sourceDateEpoch ?? 0);
  await rm(detachedBundlePath(out), { force: true });
  return {
    digest: content.digest,
    path: out,
    manifest,
    source: prepared.source,
    component: prepared.info,
    componentBytes: prepared.component.byteLength,
  };
}

/** Path of the detached bundle of an artifact: `ARTIFACT.sigstore.json` beside it. */
export function detachedBundlePath(artifactPath: string): string {
  return `${artifactPath.replace(/\/+$/, '')}.sigstore.json`;
}

/**
 * Whether `value` reads like a container image reference (`nginx:1.27`, `ghcr.io/org/app@sha256:…`) rather
 * than a file name; used to refuse an image given where a `.wasm` file was expected.
 */
export function isContainerImageReference(value: string): boolean {
  return /^[a-z0-9][a-z0-9._/-]*(?::[\w.-]+|@sha256:[0-9a-f]{64})$/i.test(value) && !value.endsWith('.wasm');
}

async function readInput(input: string): Promise<Uint8Array> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(input);
  } catch (cause) {
    if (isContainerImageReference(input)) {
      throw new ArtifactError(
        'CONTAINER_IMAGE',
        `${input} looks like a container image reference: container images are not an execution path in VYR MVO; pack a WASI command .wasm file instead`,
        { cause },
      );
    }
    throw new ArtifactError('NOT_FOUND', `input ${input} does not exist`, { cause });
  }
  if (info.isDirectory()) {
    let names: string[] = [];
    try {
      names = await readdir(input);
    } catch {
      // fall through to the generic message
    }
    if (names.includes('oci-layout') || names.includes('manifest.json')) {
      const reader = await openLayout(input).catch(() => undefined);
      if (reader !== undefined && isVyrLayout(reader)) {
        throw new ArtifactError('INVALID_ARGUMENT', `${input} is already a VYR artifact; sign or verify it instead`);
      }
      throw containerImageError(input);
    }
    throw new ArtifactError('NOT_WASM', `${input} is a directory; pack takes a .wasm file`);
  }
  return readFileOrThrow(input, 'input');
}

/** Recognises container images given as a file: a tar of an OCI layout or `docker save`, or an image manifest. */
async function refuseContainerImage(input: string, bytes: Uint8Array): Promise<void> {
  if (wasmKind(bytes) !== undefined) return;
  const isTar = bytes.length >= 262 && Buffer.from(bytes.subarray(257, 262)).toString('latin1') === 'ustar';
  if (isTar) {
    const reader = await openLayout(bytes).catch((err: unknown) => {
      if (err instanceof ArtifactError && err.code === 'CONTAINER_IMAGE') throw containerImageError(input);
      return undefined;
    });
    if (reader !== undefined) {
      if (isVyrLayout(reader)) {
        throw new ArtifactError('INVALID_ARGUMENT', `${input} is already a VYR artifact; sign or verify it instead`);
      }
      throw containerImageError(input);
    }
    return;
  }
  if (isGzip(bytes)) {
    // Same rule as every reader (layout.ts): gzip is never accepted; what is inside decides the message.
    const content = await gzipContent(bytes);
    if (content === 'container-image') throw containerImageError(`${input} (gzip-compressed)`);
    if (content === 'vyr-artifact') {
      throw new ArtifactError(
        'INVALID_ARGUMENT',
        `${input} is a gzip-compressed VYR artifact; it is packed already: decompress it (gunzip) and sign or verify the .tar`,
      );
    }
    throw new ArtifactError(
      'NOT_WASM',
      `${input} is gzip-compressed${content === 'wasm' ? ' WebAssembly' : ', and not a container image'}; pack takes an uncompressed .wasm file: decompress it (gunzip) first`,
    );
  }
  if (bytes[0] === 0x7b) {
    try {
      const doc = JSON.parse(Buffer.from(bytes).toString('utf8')) as {
        mediaType?: unknown;
        config?: { mediaType?: unknown };
      };
      const types = [doc.mediaType, doc.config?.mediaType];
      if (
        types.some(
          (t) =>
            t === MediaType.ociImageConfig ||
            t === MediaType.dockerManifest ||
            t === MediaType.dockerManifestList ||
            t === 'application/vnd.docker.container.image.v1+json' ||
            t === MediaType.ociIndex ||
            t === MediaType.ociManifest,
        )
      ) {
        throw containerImageError(input);
      }
    } catch (err) {
      if (err instanceof ArtifactError) throw err;
    }
  }
}

async function resolveManifest(manifest: PackOptions['manifest'], input: string): Promise<VyrManifest> {
  if (manifest === undefined) return defaultVyrManifest(basename(input));
  if (typeof manifest === 'string') {
    const text = Buffer.from(await readFileOrThrow(manifest, 'manifest')).toString('utf8');
    return parseVyrManifest(text, manifest);
  }
  return validateVyrManifest(manifest, 'manifest');
}

/**
 * Pack replaces what is at `out` only when it is safe to: nothing, an empty directory, or a layout holding exactly
 * one VYR artifact plus its signature referrers (a previous pack). Writing a layout deletes every blob the new
 * index does not list, so anything else (a container image layout, a layout of several artifacts, an unreadable
 * one) needs `force`; an artifact store or a directory that is not an OCI layout is never overwritten.
 */
async function assertWritableTarget(out: string, force: boolean): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(out);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new ArtifactError('IO_ERROR', `cannot inspect --out ${out}: ${(cause as Error).message}`, { cause });
  }
  const wantTar = isTarPath(out);
  if (info.isDirectory() === wantTar || (!info.isDirectory() && !info.isFile())) {
    throw new ArtifactError(
      'ALREADY_EXISTS',
      `${out} exists and is ${info.isDirectory() ? 'a directory' : 'not a directory'}, but pack writes ${wantTar ? 'a .tar file' : 'a layout directory'} there; choose another --out`,
    );
  }
  let names: string[] = [];
  if (info.isDirectory()) {
    try {
      names = await readdir(out);
    } catch (cause) {
      throw new ArtifactError('IO_ERROR', `cannot list --out ${out}: ${(cause as Error).message}`, { cause });
    }
    if (names.length === 0) return;
    if (names.some((n) => STORE_LOCK_FILES.includes(n))) throw storeTargetError(out);
    if (!names.includes('oci-layout')) {
      throw new ArtifactError(
        'ALREADY_EXISTS',
        `${out} is a non-empty directory that is not an OCI layout; pack never writes into it (--force does not apply): choose another --out or empty it`,
      );
    }
  }
  let reader: LayoutReader;
  try {
    reader = await openLayout(out);
  } catch (cause) {
    if (force) return;
    throw new ArtifactError(
      'ALREADY_EXISTS',
      `${out} exists and is not a VYR artifact (${(cause as Error).message}); pass --force to replace it, or choose another --out`,
      { cause },
    );
  }
  if (reader.index.annotations?.[STORE_ANNOTATION] !== undefined) throw storeTargetError(out);
  if (await isSingleVyrArtifact(reader)) return;
  if (force) return;
  const count = reader.index.manifests.length;
  throw new ArtifactError(
    'ALREADY_EXISTS',
    `${out} is an OCI layout listing ${count} manifest${count === 1 ? '' : 's'} that ${count === 1 ? 'is' : 'are'} not one VYR artifact with its signatures (a container image?); packing would delete its blobs: pass --force to replace it, or choose another --out`,
  );
}

function storeTargetError(out: string): ArtifactError {
  return new ArtifactError(
    'ALREADY_EXISTS',
    `${out} is a VYR artifact store; pack never writes into a store (--force does not apply): choose another --out`,
  );
}

/** Exactly one VYR artifact manifest, and every other entry a signature referrer whose subject is that artifact. */
async function isSingleVyrArtifact(reader: LayoutReader): Promise<boolean> {
  const manifests = reader.index.manifests;
  const artifacts = manifests.filter(
    (d) => d.mediaType === MediaType.ociManifest && d.artifactType === MediaType.wasmConfig,
  );
  if (artifacts.length !== 1) return false;
  const subject = artifacts[0]!.digest;
  for (const d of manifests) {
    if (d === artifacts[0]) continue;
    if (d.mediaType !== MediaType.ociManifest || d.artifactType !== MediaType.sigstoreBundle) return false;
    const actual = await readReferrer(reader, d).then(
      (r) => r.subjectDigest,
      () => undefined,
    );
    if (actual !== subject) return false;
  }
  return true;
}

const encoder = new TextEncoder();

function descriptor(mediaType: string, bytes: Uint8Array): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.byteLength };
}

/** Builds every blob and the index of a fresh artifact layout. Pure: same inputs, same bytes. */
export function buildLayout(
  component: Uint8Array,
  source: WasmSourceKind,
  info: ComponentInfo,
  manifest: VyrManifest,
  sourceDateEpoch?: number,
): { digest: Digest; index: Uint8Array; blobs: Map<Digest, Uint8Array>; manifestBytes: Uint8Array } {
  const created =
    sourceDateEpoch === undefined ? undefined : new Date(sourceDateEpoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
  const vyrBytes = encoder.encode(JSON.stringify(manifest));
  const wasmDesc = descriptor(MediaType.wasm, component);
  const vyrDesc = descriptor(MediaType.vyrManifest, vyrBytes);
  const config: WasmConfig = {
    ...(created === undefined ? {} : { created }),
    architecture: 'wasm',
    os: 'wasip2',
    layerDigests: [wasmDesc.digest, vyrDesc.digest],
    component: { target: info.target, imports: info.imports, exports: info.exports },
  };
  const configBytes = encoder.encode(JSON.stringify(config));
  const annotations: Record<string, string> = {
    ...(created === undefined ? {} : { 'org.opencontainers.image.created': created }),
    'org.opencontainers.image.title': manifest.name,
    'org.opencontainers.image.version': manifest.version,
    [SOURCE_ANNOTATION]: source,
  };
  const oci: OciManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: MediaType.wasmConfig,
    config: descriptor(MediaType.wasmConfig, configBytes),
    layers: [wasmDesc, vyrDesc],
    annotations,
  };
  const manifestBytes = encoder.encode(JSON.stringify(oci));
  const manifestDesc: Descriptor = {
    ...descriptor(MediaType.ociManifest, manifestBytes),
    artifactType: MediaType.wasmConfig,
    annotations: { [REF_NAME]: `${manifest.name}:${manifest.version}` },
  };
  const blobs = new Map<Digest, Uint8Array>([
    [wasmDesc.digest, component],
    [vyrDesc.digest, vyrBytes],
    [oci.config.digest, configBytes],
    [manifestDesc.digest, manifestBytes],
  ]);
  return { digest: manifestDesc.digest, index: encodeIndex([manifestDesc]), blobs, manifestBytes };
}

/**
 * Checks that an artifact layout's `index.json` is exactly the one VYR writes for its content: the artifact
 * manifest (media type, artifact type, digest, size, and a `org.opencontainers.image.ref.name` of `name:version`
 * from the signed declarations), then one descriptor per signature referrer of that artifact, sorted by digest,
 * each annotated with the subject and key id its (hashed) referrer manifest records; nothing else.
 *
 * Why: `index.json` is the one file of a layout no digest covers. What runs is pinned by the manifest digest, and
 * every field the reader acts on is checked against hashed content; requiring the canonical index as well means an
 * altered index can never carry information (a misleading tag, a hint that hides a signature) past verification.
 * Called after the blobs are checked, so a descriptor pointing at other bytes reports the blob's code first.
 *
 * @throws ArtifactError `MALFORMED_LAYOUT` (naming the first difference); the integrity codes of the blobs read.
 */
export async function assertCanonicalIndex(reader: LayoutReader): Promise<void> {
  const desc = findArtifactDescriptor(reader);
  const { manifest: vyr } = await readArtifactMetadata(reader, desc);
  const referrers: Descriptor[] = [];
  for (const d of reader.index.manifests) {
    if (d === desc) continue;
    const ref = await readReferrer(reader, d);
    referrers.push({
      mediaType: MediaType.ociManifest,
      artifactType: MediaType.sigstoreBundle,
      digest: d.digest,
      size: d.size,
      annotations: {
        [SUBJECT_ANNOTATION]: ref.subjectDigest,
        [KEY_ID_ANNOTATION]: String(ref.manifest.annotations?.[KEY_ID_ANNOTATION]),
      },
    });
  }
  const expected = {
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: [
      {
        mediaType: MediaType.ociManifest,
        artifactType: MediaType.wasmConfig,
        digest: desc.digest,
        size: desc.size,
        annotations: { [REF_NAME]: `${vyr.name}:${vyr.version}` },
      },
      ...referrers.sort(byDigest),
    ],
  };
  const difference = firstDifference(reader.index, expected, 'index.json');
  if (difference !== undefined) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${reader.path}: ${difference}; index.json is not signed, so it must be exactly the index VYR writes for the artifact it names: it was altered, obtain the artifact again (or re-pack and re-sign it)`,
    );
  }
}

/**
 * Reads an artifact's metadata only: its OCI manifest and its declarations layer (both a few hundred bytes,
 * re-hashed), not the config or the component.
 *
 * @throws ArtifactError `BLOB_MISSING`, `MANIFEST_TAMPERED`, `BLOB_DIGEST_MISMATCH`, `MALFORMED_LAYOUT`,
 * `UNSUPPORTED_MEDIA_TYPE`, `CONTAINER_IMAGE`, `INVALID_MANIFEST`.
 */
export async function readArtifactMetadata(
  reader: LayoutReader,
  desc: Descriptor,
): Promise<{ manifestBytes: Uint8Array; oci: OciManifest; manifest: VyrManifest }> {
  const manifestBytes = await readBlobChecked(reader, desc, 'manifest', 'manifest');
  const oci = parseOciManifest(manifestBytes, `manifest ${desc.digest}`, reader.path);
  const vyrLayer = oci.layers.find((l) => l.mediaType === MediaType.vyrManifest)!;
  const vyrBytes = await readBlobChecked(reader, vyrLayer, 'layer', 'VYR manifest layer');
  const manifest = parseVyrManifest(Buffer.from(vyrBytes).toString('utf8'), `VYR manifest layer ${vyrLayer.digest}`);
  return { manifestBytes, oci, manifest };
}

/**
 * Orders index descriptors the one way VYR writes them: artifact manifests, then signature referrers, each group
 * sorted by digest.
 */
export function canonicalIndexOrder(manifests: readonly Descriptor[]): Descriptor[] {
  const isSignature = (d: Descriptor): boolean => d.artifactType === MediaType.sigstoreBundle;
  return [...manifests.filter((d) => !isSignature(d)).sort(byDigest), ...manifests.filter(isSignature).sort(byDigest)];
}

function byDigest(a: Descriptor, b: Descriptor): number {
  return a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0;
}

/** Where two JSON values first differ, as a readable path, or `undefined` when they are equal. */
function firstDifference(actual: unknown, expected: unknown, path: string): string | undefined {
  if (isDeepStrictEqual(actual, expected)) return undefined;
  if (Array.isArray(expected) && Array.isArray(actual)) {
    if (actual.length !== expected.length) {
      return `${path} lists ${actual.length} entries, expected ${expected.length}`;
    }
    for (const [i, e] of expected.entries()) {
      const d = firstDifference(actual[i], e, `${path}[${i}]`);
      if (d !== undefined) return d;
    }
  }
  if (
    typeof expected === 'object' &&
    expected !== null &&
    !Array.isArray(expected) &&
    typeof actual === 'object' &&
    actual !== null &&
    !Array.isArray(actual)
  ) {
    const a = actual as Record<string, unknown>;
    const e = expected as Record<string, unknown>;
    for (const key of new Set([...Object.keys(e), ...Object.keys(a)])) {
      if (!(key in e)) return `${path} has unexpected field ${JSON.stringify(key)}`;
      if (!(key in a)) return `${path} lacks ${JSON.stringify(key)}`;
      const d = firstDifference(a[key], e[key], `${path}.${key}`);
      if (d !== undefined) return d;
    }
  }
  return `${path} is ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`;
}

/** Options of {@link readArtifact}. */
export interface ReadArtifactOptions {
  /**
   * Detached bundle files to attach. Default: `ARTIFACT.sigstore.json` beside the artifact when it exists and
   * differs from every bundle already inside the layout.
   */
  bundlePaths?: readonly string[];
  /**
   * Which manifest of the layout to read when it holds more than one VYR artifact: a manifest digest
   * (`sha256:…`) or an `org.opencontainers.image.ref.name` (`hello:1.0.0`, the tag skopeo and oras write).
   * Default: the layout's only VYR artifact.
   */
  ref?: string;
}

/**
 * Reads one artifact of a layout (directory, `.tar`, or tar bytes), re-hashing every blob, and collects its
 * signatures (referrers in the layout plus the detached bundle). Checks integrity, not trust: see
 * `verifyArtifact`.
 *
 * Any spec-valid OCI image layout is read, whichever tool wrote it (VYR, skopeo, oras, crane): `index.json` is not
 * signed, so it only *locates* the manifest (see {@link selectArtifactDescriptor}); everything acted on comes from
 * blobs re-hashed against the manifest digest, and trust rests on that digest and the bundles.
 *
 * @throws ArtifactError `NOT_FOUND`, `INVALID_ARGUMENT` (several artifacts and no `ref`), `MALFORMED_LAYOUT`,
 * `UNSUPPORTED_MEDIA_TYPE`, `CONTAINER_IMAGE`, `BLOB_MISSING`, `MANIFEST_TAMPERED`, `CONFIG_TAMPERED`,
 * `BLOB_DIGEST_MISMATCH`, `INVALID_MANIFEST`.
 */
export async function readArtifact(
  source: string | Uint8Array,
  options: ReadArtifactOptions = {},
): Promise<LoadedArtifact> {
  const reader = await openLayout(source);
  const descriptor = await selectArtifactDescriptor(reader, options.ref);
  const artifact = await loadArtifact(reader, descriptor);
  await attachDetachedBundles(artifact, source, options.bundlePaths);
  return artifact;
}

/** What a manifest listed in a layout's index is, as far as VYR cares. */
type ListedKind = 'artifact' | 'signature' | 'container-image' | 'index' | 'other';

/**
 * Classifies an index entry. The descriptor's `mediaType`/`artifactType` are used when they say enough (VYR's own
 * indexes, and other tools that copy `artifactType`); otherwise the manifest blob is read and re-hashed (skopeo
 * drops `artifactType` from the index, image-spec 1.1 makes it optional there).
 */
async function classifyListed(reader: LayoutReader, d: Descriptor): Promise<ListedKind> {
  if (d.mediaType === MediaType.dockerManifest || d.mediaType === MediaType.dockerManifestList) {
    return 'container-image';
  }
  if (d.mediaType === MediaType.ociIndex) return 'index';
  if (d.mediaType !== MediaType.ociManifest) return 'other';
  if (d.artifactType === MediaType.wasmConfig) return 'artifact';
  if (d.artifactType === MediaType.sigstoreBundle) return 'signature';
  if (d.artifactType !== undefined) return 'other';
  const bytes = await readBlobChecked(reader, d, 'manifest', 'manifest');
  const m = parseJson(bytes, `manifest ${d.digest}`) as {
    artifactType?: unknown;
    config?: { mediaType?: unknown };
  } | null;
  if (typeof m !== 'object' || m === null) return 'other';
  const type = m.artifactType ?? m.config?.mediaType;
  if (type === MediaType.wasmConfig) return 'artifact';
  if (type === MediaType.sigstoreBundle) return 'signature';
  if (m.config?.mediaType === MediaType.ociImageConfig) return 'container-image';
  return 'other';
}

/**
 * Chooses the artifact manifest of a layout written by any tool. With `ref`, the entry whose digest or
 * `org.opencontainers.image.ref.name` it is; without, the one VYR artifact the layout lists. Entries that are not
 * VYR artifacts (signature referrers, other tools' manifests, the same manifest under several tags) are skipped;
 * a layout with no VYR artifact but a container image is refused as one.
 *
 * @throws ArtifactError `NOT_FOUND` (no entry matches `ref`), `INVALID_ARGUMENT` (several artifacts, no `ref`),
 * `CONTAINER_IMAGE`, `UNSUPPORTED_MEDIA_TYPE`, `MALFORMED_LAYOUT`; the integrity codes of manifests read.
 */
export async function selectArtifactDescriptor(reader: LayoutReader, ref?: string): Promise<Descriptor> {
  const listed = reader.index.manifests.filter(
    (d) => ref === undefined || (isDigest(ref) ? d.digest === ref : d.annotations?.[REF_NAME] === ref),
  );
  if (ref !== undefined && listed.length === 0) {
    const names = reader.index.manifests.map((d) => d.annotations?.[REF_NAME]).filter((n) => n !== undefined);
    throw new ArtifactError(
      'NOT_FOUND',
      `${reader.path} lists no manifest ${isDigest(ref) ? 'with digest' : 'tagged'} ${ref}${names.length > 0 ? ` (its tags: ${[...new Set(names)].join(', ')})` : ''}`,
    );
  }
  const artifacts = new Map<Digest, Descriptor>();
  const kinds = new Set<ListedKind>();
  for (const d of listed) {
    const kind = await classifyListed(reader, d);
    kinds.add(kind);
    if (kind === 'artifact' && !artifacts.has(d.digest)) artifacts.set(d.digest, d);
  }
  if (artifacts.size === 1) return [...artifacts.values()][0]!;
  if (artifacts.size > 1) {
    const refs = [...artifacts.values()].map((d) => d.annotations?.[REF_NAME] ?? d.digest);
    throw new ArtifactError(
      'INVALID_ARGUMENT',
      `${reader.path} holds ${artifacts.size} VYR artifacts (${refs.join(', ')}); choose one with --ref NAME or --ref sha256:DIGEST`,
    );
  }
  if (kinds.has('container-image')) throw containerImageError(reader.path);
  if (kinds.has('index')) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${reader.path}: nested image indexes (multi-platform images) are not supported; a VYR artifact is one Wasm manifest`,
    );
  }
  throw new ArtifactError(
    'MALFORMED_LAYOUT',
    `${reader.path} lists no VYR artifact (a manifest with config ${MediaType.wasmConfig})${ref === undefined ? '' : ` under ${ref}`}; pack one with \`vyr pack\``,
  );
}

/**
 * Adds detached signature bundles to `artifact.bundles`, skipping any whose JSON is already there: the files
 * `bundlePaths`, or by default `ARTIFACT.sigstore.json` beside a `source` path when it exists.
 *
 * @throws ArtifactError `NOT_FOUND`, `IO_ERROR` (a bundle file cannot be read).
 */
export async function attachDetachedBundles(
  artifact: LoadedArtifact,
  source: string | Uint8Array,
  bundlePaths?: readonly string[],
): Promise<void> {
  const detached = bundlePaths ?? (typeof source === 'string' ? await existing(detachedBundlePath(source)) : []);
  for (const path of detached) {
    const json = Buffer.from(await readFileOrThrow(path, 'signature bundle')).toString('utf8');
    if (artifact.bundles.some((b) => b.json === json)) continue;
    artifact.bundles.push({ json, location: 'detached' });
  }
}

async function existing(path: string): Promise<string[]> {
  return (await pathExists(path)) ? [path] : [];
}

/**
 * The descriptor of the single VYR artifact in a layout.
 * @throws ArtifactError `CONTAINER_IMAGE`, `UNSUPPORTED_MEDIA_TYPE`, `MALFORMED_LAYOUT`.
 */
export function findArtifactDescriptor(reader: LayoutReader): Descriptor {
  const candidates = artifactDescriptors(reader);
  if (candidates.length !== 1) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${reader.path} holds ${candidates.length} artifacts; an artifact layout holds exactly one (a store holds many: use the store API)`,
    );
  }
  return candidates[0]!;
}

/** Artifact (non-signature) manifests listed by a layout's index, after refusing foreign media types. */
export function artifactDescriptors(reader: LayoutReader): Descriptor[] {
  const out: Descriptor[] = [];
  for (const d of reader.index.manifests) {
    if (d.mediaType === MediaType.dockerManifest || d.mediaType === MediaType.dockerManifestList) {
      throw containerImageError(reader.path);
    }
    if (d.mediaType === MediaType.ociIndex) {
      throw new ArtifactError(
        'UNSUPPORTED_MEDIA_TYPE',
        `${reader.path}: nested image indexes (multi-platform images) are not supported; a VYR artifact is one Wasm manifest`,
      );
    }
    if (d.mediaType !== MediaType.ociManifest) {
      throw new ArtifactError(
        'UNSUPPORTED_MEDIA_TYPE',
        `${reader.path}: index lists unsupported media type ${JSON.stringify(d.mediaType)}`,
      );
    }
    if (d.artifactType === MediaType.sigstoreBundle) continue;
    if (d.artifactType !== undefined && d.artifactType !== MediaType.wasmConfig) {
      throw new ArtifactError(
        'UNSUPPORTED_MEDIA_TYPE',
        `${reader.path}: artifactType ${JSON.stringify(d.artifactType)} is not a Wasm artifact (${MediaType.wasmConfig})`,
      );
    }
    out.push(d);
  }
  return out;
}

function requireObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Loads one artifact of a layout by its index descriptor: manifest, config, layers and attached signature
 * referrers, every blob re-hashed.
 */
export async function loadArtifact(reader: LayoutReader, desc: Descriptor): Promise<LoadedArtifact> {
  return (await loadArtifactWithBlobs(reader, desc)).artifact;
}

/** {@link loadArtifact}, also returning the checked bytes of the manifest, config and layers by digest. */
export async function loadArtifactWithBlobs(
  reader: LayoutReader,
  desc: Descriptor,
): Promise<{ artifact: LoadedArtifact; blobs: Map<Digest, Uint8Array> }> {
  const manifestBytes = await readBlobChecked(reader, desc, 'manifest', 'manifest');
  const oci = parseOciManifest(manifestBytes, `manifest ${desc.digest}`, reader.path);
  const configBytes = await readBlobChecked(reader, oci.config, 'config', 'config');
  const config = parseConfig(configBytes, oci);
  const wasmLayer = oci.layers.find((l) => l.mediaType === MediaType.wasm)!;
  const vyrLayer = oci.layers.find((l) => l.mediaType === MediaType.vyrManifest)!;
  const component = await readBlobChecked(reader, wasmLayer, 'layer', 'component layer');
  if (wasmKind(component) !== 'component') {
    throw new ArtifactError('INVALID_WASM', `component layer ${wasmLayer.digest} is not a Wasm component`);
  }
  const vyrBytes = await readBlobChecked(reader, vyrLayer, 'layer', 'VYR manifest layer');
  const manifest = parseVyrManifest(Buffer.from(vyrBytes).toString('utf8'), `VYR manifest layer ${vyrLayer.digest}`);
  const source = oci.annotations?.[SOURCE_ANNOTATION] === 'wasip1-adapted' ? 'wasip1-adapted' : 'wasip2';
  const bundles = await loadReferrerBundles(reader, desc.digest);
  const blobs = new Map<Digest, Uint8Array>([
    [desc.digest, manifestBytes],
    [oci.config.digest, configBytes],
    [wasmLayer.digest, component],
    [vyrLayer.digest, vyrBytes],
  ]);
  return {
    artifact: { digest: desc.digest, manifest, component, config, ociManifest: oci, manifestBytes, source, bundles },
    blobs,
  };
}

/** Reads the signature referrers of `subject` listed in the layout's index (each blob re-hashed). */
export async function loadReferrerBundles(reader: LayoutReader, subject: Digest): Promise<AttachedBundle[]> {
  const bundles: AttachedBundle[] = [];
  const seen = new Set<Digest>();
  for (const d of reader.index.manifests) {
    if (d.digest === subject || seen.has(d.digest)) continue;
    // Other tools may list a referrer without artifactType (skopeo drops it): read those to see what they are.
    if (d.artifactType === undefined && d.mediaType === MediaType.ociManifest) {
      if ((await classifyListed(reader, d)) !== 'signature') continue;
    } else if (d.artifactType !== MediaType.sigstoreBundle) continue;
    seen.add(d.digest);
    // The hint only ever skips a referrer (its hashed subject is checked below): it cannot add a signature.
    const hinted = d.annotations?.[SUBJECT_ANNOTATION];
    if (hinted !== undefined && hinted !== subject) continue;
    const { bundleDesc, configDesc, subjectDigest } = await readReferrer(reader, d);
    if (subjectDigest !== subject) continue;
    // Every blob of the artifact is re-hashed, the referrer's (empty) config included.
    await readBlobChecked(reader, configDesc, 'signature', 'signature config');
    const bytes = await readBlobChecked(reader, bundleDesc, 'signature', 'signature bundle');
    bundles.push({ json: Buffer.from(bytes).toString('utf8'), location: 'layout', bundleDigest: bundleDesc.digest });
  }
  return bundles.sort((a, b) => ((a.bundleDigest ?? '') < (b.bundleDigest ?? '') ? -1 : 1));
}

/** Reads and checks a signature referrer manifest. */
export async function readReferrer(
  reader: LayoutReader,
  d: Descriptor,
): Promise<{
  manifest: OciManifest;
  manifestBytes: Uint8Array;
  configDesc: Descriptor;
  bundleDesc: Descriptor;
  subjectDigest: Digest;
}> {
  const manifestBytes = await readBlobChecked(reader, d, 'signature', 'signature manifest');
  const m = requireObject(parseJson(manifestBytes, `signature manifest ${d.digest}`), `signature manifest ${d.digest}`);
  if (m.mediaType !== MediaType.ociManifest || m.artifactType !== MediaType.sigstoreBundle) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `signature manifest ${d.digest}: expected ${MediaType.ociManifest} with artifactType ${MediaType.sigstoreBundle}`,
    );
  }
  const layers = Array.isArray(m.layers) ? m.layers : [];
  if (layers.length !== 1) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `signature manifest ${d.digest} must have exactly one layer (the bundle)`,
    );
  }
  const bundleDesc = checkDescriptor(layers[0], `signature manifest ${d.digest}: layers[0]`);
  if (bundleDesc.mediaType !== MediaType.sigstoreBundle) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `signature manifest ${d.digest}: layer media type ${bundleDesc.mediaType} is not ${MediaType.sigstoreBundle}`,
    );
  }
  const subject = checkDescriptor(m.subject, `signature manifest ${d.digest}: subject`);
  const configDesc = checkDescriptor(m.config, `signature manifest ${d.digest}: config`);
  if (configDesc.mediaType !== MediaType.ociEmpty) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `signature manifest ${d.digest}: config media type ${configDesc.mediaType} is not ${MediaType.ociEmpty}`,
    );
  }
  return {
    manifest: m as unknown as OciManifest,
    manifestBytes,
    configDesc,
    bundleDesc,
    subjectDigest: subject.digest,
  };
}

/** Parses and checks a VYR OCI manifest. @throws ArtifactError `MALFORMED_LAYOUT`, `UNSUPPORTED_MEDIA_TYPE`, `CONTAINER_IMAGE`. */
export function parseOciManifest(bytes: Uint8Array, what: string, label: string): OciManifest {
  const m = requireObject(parseJson(bytes, what), what);
  if (m.schemaVersion !== 2) throw new ArtifactError('MALFORMED_LAYOUT', `${what}: schemaVersion must be 2`);
  if (m.mediaType !== MediaType.ociManifest) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: mediaType ${JSON.stringify(m.mediaType)} is not ${MediaType.ociManifest}`,
    );
  }
  const config = checkDescriptor(m.config, `${what}: config`);
  if (
    config.mediaType === MediaType.ociImageConfig ||
    config.mediaType === 'application/vnd.docker.container.image.v1+json'
  ) {
    throw containerImageError(label);
  }
  if (config.mediaType !== MediaType.wasmConfig) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: config media type ${JSON.stringify(config.mediaType)} is not ${MediaType.wasmConfig}`,
    );
  }
  if (m.artifactType !== undefined && m.artifactType !== MediaType.wasmConfig) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: artifactType ${JSON.stringify(m.artifactType)} is not ${MediaType.wasmConfig}`,
    );
  }
  if (!Array.isArray(m.layers)) throw new ArtifactError('MALFORMED_LAYOUT', `${what}: layers must be an array`);
  const layers = m.layers.map((l, i) => checkDescriptor(l, `${what}: layers[${i}]`));
  for (const l of layers) {
    if (
      l.mediaType.startsWith('application/vnd.oci.image.layer.') ||
      l.mediaType.startsWith('application/vnd.docker.image.rootfs.')
    ) {
      throw containerImageError(label);
    }
    if (l.mediaType !== MediaType.wasm && l.mediaType !== MediaType.vyrManifest) {
      throw new ArtifactError(
        'UNSUPPORTED_MEDIA_TYPE',
        `${what}: layer media type ${JSON.stringify(l.mediaType)} is not supported (expected ${MediaType.wasm} and ${MediaType.vyrManifest})`,
      );
    }
  }
  const count = (t: string): number => layers.filter((l) => l.mediaType === t).length;
  if (count(MediaType.wasm) !== 1 || count(MediaType.vyrManifest) !== 1) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${what}: expected exactly one ${MediaType.wasm} layer and one ${MediaType.vyrManifest} layer`,
    );
  }
  if (m.annotations !== undefined) {
    const a = requireObject(m.annotations, `${what}: annotations`);
    if (Object.values(a).some((v) => typeof v !== 'string')) {
      throw new ArtifactError('MALFORMED_LAYOUT', `${what}: annotation values must be strings`);
    }
  }
  return { ...(m as unknown as OciManifest), config, layers };
}

function parseConfig(bytes: Uint8Array, oci: OciManifest): WasmConfig {
  const what = `config ${oci.config.digest}`;
  const c = requireObject(parseJson(bytes, what), what);
  if (c.architecture !== 'wasm')
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${what}: architecture must be "wasm", got ${JSON.stringify(c.architecture)}`,
    );
  if (c.os !== 'wasip2') {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: os ${JSON.stringify(c.os)} is not supported (VYR executes wasip2 components)`,
    );
  }
  const layerDigests = c.layerDigests;
  if (
    !Array.isArray(layerDigests) ||
    !layerDigests.every(isDigest) ||
    layerDigests.length !== oci.layers.length ||
    layerDigests.some((d, i) => d !== oci.layers[i]!.digest)
  ) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what}: layerDigests does not list the manifest's layers in order`);
  }
  const comp = requireObject(c.component, `${what}: component`);
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (typeof comp.target !== 'string' || !strings(comp.imports) || !strings(comp.exports)) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what}: component must have target, imports and exports`);
  }
  return c as unknown as WasmConfig;
}

/** Every blob (digest → bytes) the layout's index references, checked. Used to rewrite a layout. */
export async function collectLayoutBlobs(reader: LayoutReader): Promise<Map<Digest, Uint8Array>> {
  const blobs = new Map<Digest, Uint8Array>();
  for (const d of reader.index.manifests) {
    if (d.artifactType === MediaType.sigstoreBundle) {
      const ref = await readReferrer(reader, d);
      blobs.set(d.digest, ref.manifestBytes);
      blobs.set(ref.configDesc.digest, await readBlobChecked(reader, ref.configDesc, 'signature', 'signature config'));
      blobs.set(ref.bundleDesc.digest, await readBlobChecked(reader, ref.bundleDesc, 'signature', 'signature bundle'));
      continue;
    }
    for (const [digest, bytes] of (await loadArtifactWithBlobs(reader, d)).blobs) blobs.set(digest, bytes);
  }
  return blobs;
}

/** The OCI empty JSON blob `{}` (image-spec `manifest.md`, "Guidance for an Empty Descriptor"). */
export const EMPTY_JSON_BLOB = new TextEncoder().encode('{}');

/**
 * Builds the OCI referrer that attaches a Sigstore bundle to a manifest (the layout used by cosign and
 * sigstore-js for bundles in OCI 1.1 registries): `artifactType` = bundle media type, empty config, the bundle as
 * the single layer, `subject` = the signed manifest.
 */
export function buildReferrer(
  subject: Descriptor,
  bundleBytes: Uint8Array,
  keyId: string,
): { bundleDesc: Descriptor; referrer: OciManifest; referrerBytes: Uint8Array; referrerDesc: Descriptor } {
  const bundleDesc: Descriptor = {
    mediaType: MediaType.sigstoreBundle,
    digest: sha256Digest(bundleBytes),
    size: bundleBytes.byteLength,
  };
  const referrer: OciManifest = {
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    artifactType: MediaType.sigstoreBundle,
    config: {
      mediaType: MediaType.ociEmpty,
      digest: sha256Digest(EMPTY_JSON_BLOB),
      size: EMPTY_JSON_BLOB.byteLength,
      data: 'e30=',
    },
    layers: [bundleDesc],
    subject: { mediaType: MediaType.ociManifest, digest: subject.digest, size: subject.size },
    annotations: { 'dev.sigstore.bundle.content': 'message-signature', [KEY_ID_ANNOTATION]: keyId },
  };
  const referrerBytes = encoder.encode(JSON.stringify(referrer));
  const referrerDesc: Descriptor = {
    mediaType: MediaType.ociManifest,
    artifactType: MediaType.sigstoreBundle,
    digest: sha256Digest(referrerBytes),
    size: referrerBytes.byteLength,
    annotations: { [SUBJECT_ANNOTATION]: subject.digest, [KEY_ID_ANNOTATION]: keyId },
  };
  return { bundleDesc, referrer, referrerBytes, referrerDesc };
}
