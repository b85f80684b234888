import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  artifactDescriptors,
  attachDetachedBundles,
  buildReferrer,
  canonicalIndexOrder,
  EMPTY_JSON_BLOB,
  loadArtifact,
  loadArtifactWithBlobs,
  readArtifactMetadata,
  readReferrer,
  STORE_ANNOTATION,
  SUBJECT_ANNOTATION,
  selectArtifactDescriptor,
} from './artifact.js';
import { digestHex, parseDigest, sha256Digest } from './digest.js';
import { ArtifactError, isArtifactError } from './errors.js';
import {
  encodeIndex,
  type LayoutReader,
  OCI_LAYOUT_FILE,
  openLayout,
  parseJson,
  pathExists,
  writeFileAtomic,
} from './layout.js';
import { acquireStoreLock } from './lock.js';
import type {
  ArtifactStore,
  Descriptor,
  Digest,
  GcResult,
  ImportOptions,
  LoadedArtifact,
  OciManifest,
  StoredArtifact,
} from './types.js';
import { MediaType, type VyrManifest } from './types.js';
import { parseBundle } from './verify.js';

/** Options of {@link createStore}. */
export interface StoreOptions {
  /** Root directory of the store (created if absent); itself an OCI image layout. Required. */
  dir: string;
  /** How long to wait for the store lock held by another process before failing, in ms. Default: 30000. */
  lockTimeoutMs?: number;
}

/** The store marks its index so that `pack --out` never mistakes it for an artifact layout to replace. */
const STORE_INDEX_ANNOTATIONS = { [STORE_ANNOTATION]: '1' };
const TEMP_PREFIX = '.tmp-';

/** In-process serialisation per store directory (the file lock covers other processes). */
const localQueues = new Map<string, Promise<unknown>>();

/**
 * Opens (creating on first write) a local content-addressed artifact store under `options.dir`. The directory is
 * an OCI image layout: `oci-layout`, `index.json` listing every stored artifact and its signature referrers, and
 * `blobs/sha256/`. Writes are atomic (temp file, fsync, rename) and serialised by a lock file, so imports from
 * several processes are safe; reads re-hash every blob.
 */
export function createStore(options: StoreOptions): ArtifactStore {
  const dir = resolve(options.dir);
  const lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
  const blobDir = join(dir, 'blobs', 'sha256');

  async function ensureLayout(): Promise<void> {
    try {
      await mkdir(blobDir, { recursive: true });
      if (!(await pathExists(join(dir, 'oci-layout')))) {
        await writeFileAtomic(join(dir, 'oci-layout'), new TextEncoder().encode(OCI_LAYOUT_FILE));
      }
      if (!(await pathExists(join(dir, 'index.json')))) {
        await writeFileAtomic(join(dir, 'index.json'), encodeIndex([], STORE_INDEX_ANNOTATIONS));
      }
    } catch (cause) {
      throw new ArtifactError('IO_ERROR', `cannot initialise artifact store ${dir}: ${(cause as Error).message}`, {
        cause,
      });
    }
  }

  async function reader(): Promise<LayoutReader> {
    if (!(await pathExists(join(dir, 'index.json')))) await withLock(ensureLayout);
    return openLayout(dir);
  }

  /** Runs `fn` holding both the in-process queue and the cross-process lock file. */
  async function withLock<T>(fn: () => Promise<T>): Promise<T> {
    const previous = localQueues.get(dir) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((r) => (release = r));
    const chained = previous.then(() => current);
    localQueues.set(dir, chained);
    await previous.catch(() => undefined);
    try {
      await mkdir(dir, { recursive: true });
      const unlock = await acquireStoreLock(dir, lockTimeoutMs);
      try {
        return await fn();
      } finally {
        await unlock();
      }
    } finally {
      release();
      if (localQueues.get(dir) === chained) localQueues.delete(dir);
    }
  }

  async function putBlob(digest: Digest, bytes: Uint8Array): Promise<void> {
    const target = join(blobDir, digestHex(digest));
    // Content-addressed: an intact existing blob is the same bytes. A damaged one is replaced.
    try {
      const existing = await readFile(target);
      if (existing.byteLength === bytes.byteLength && sha256Digest(existing) === digest) return;
    } catch {
      // absent: write it
    }
    await writeFileAtomic(target, bytes);
  }

  async function readIndexDescriptors(): Promise<Descriptor[]> {
    return [...(await openLayout(dir)).index.manifests];
  }

  async function writeIndex(manifests: Descriptor[]): Promise<void> {
    await writeFileAtomic(
      join(dir, 'index.json'),
      encodeIndex(canonicalIndexOrder(manifests), STORE_INDEX_ANNOTATIONS),
    );
  }

  async function importArtifact(
    source: string | Uint8Array,
    importOptions: ImportOptions = {},
  ): Promise<StoredArtifact> {
    // Read and re-hash everything before taking the lock: a bad input never touches the store.
    const sourceReader = await openLayout(source);
    const loaded = await loadArtifactWithBlobs(
      sourceReader,
      await selectArtifactDescriptor(sourceReader, importOptions.ref),
    );
    const artifact = loaded.artifact;
    await attachDetachedBundles(artifact, source, importOptions.bundlePaths);
    const newBlobs = new Map<Digest, Uint8Array>(loaded.blobs);
    const newDescriptors: Descriptor[] = [];
    const subjectDesc: Descriptor = {
      mediaType: MediaType.ociManifest,
      artifactType: MediaType.wasmConfig,
      digest: artifact.digest,
      size: artifact.manifestBytes.byteLength,
      annotations: { 'org.opencontainers.image.ref.name': `${artifact.manifest.name}:${artifact.manifest.version}` },
    };
    newDescriptors.push(subjectDesc);
    const manifestDigest = Buffer.from(digestHex(artifact.digest), 'hex');
    for (const attached of artifact.bundles) {
      const where =
        attached.location === 'layout' ? `signature bundle ${attached.bundleDigest}` : 'detached signature bundle';
      const parsed = parseBundle(attached.json, where);
      if (!parsed.messageDigest.equals(manifestDigest)) {
        throw new ArtifactError('MESSAGE_DIGEST_MISMATCH', `${where} does not sign ${artifact.digest}; not imported`);
      }
      const bundleBytes = new TextEncoder().encode(attached.json);
      const ref = buildReferrer(subjectDesc, bundleBytes, parsed.keyId);
      newBlobs.set(ref.bundleDesc.digest, bundleBytes);
      newBlobs.set(ref.referrer.config.digest, EMPTY_JSON_BLOB);
      newBlobs.set(ref.referrerDesc.digest, ref.referrerBytes);
      newDescriptors.push(ref.referrerDesc);
    }
    return withLock(async () => {
      await ensureLayout();
      try {
        for (const [digest, bytes] of newBlobs) await putBlob(digest, bytes);
      } catch (cause) {
        throw new ArtifactError('IO_ERROR', `cannot write blobs to store ${dir}: ${(cause as Error).message}`, {
          cause,
        });
      }
      const manifests = await readIndexDescriptors();
      let changed = false;
      for (const d of newDescriptors) {
        if (!manifests.some((m) => m.digest === d.digest)) {
          manifests.push(d);
          changed = true;
        }
      }
      if (changed) await writeIndex(manifests);
      return summarize(artifact, manifests);
    });
  }

  /**
   * Runs a read of the store without the lock; if it meets a missing blob, runs it once more holding the lock.
   * Blobs are deleted only by `gc`, under the lock, and only once no listed manifest references them: a lock-free
   * read that found an artifact in `index.json` and then missed one of its blobs raced a `remove` + `gc` (and
   * maybe a re-import of the same bytes, so comparing index contents would not tell). Under the lock no writer
   * runs, so the second answer is the store's current state: the artifact, `NOT_FOUND`, or a `BLOB_MISSING` that
   * means the store is damaged.
   */
  async function readConsistently<T>(fn: (r: LayoutReader) => Promise<T>): Promise<T> {
    try {
      return await fn(await reader());
    } catch (err) {
      if (!isArtifactError(err, 'BLOB_MISSING')) throw err;
    }
    return withLock(async () => fn(await openLayout(dir)));
  }

  async function get(digestInput: string): Promise<LoadedArtifact> {
    const digest = parseDigest(digestInput);
    return readConsistently(async (r) => {
      const desc = artifactDescriptors(r).find((d) => d.digest === digest);
      if (desc === undefined) {
        throw new ArtifactError('NOT_FOUND', `artifact ${digest} is not in the store ${dir}; import it first`);
      }
      return loadArtifact(r, desc);
    });
  }

  async function list(): Promise<StoredArtifact[]> {
    const out = await readConsistently(async (r) => {
      const found: StoredArtifact[] = [];
      for (const desc of artifactDescriptors(r)) found.push(await readMetadata(r, desc));
      return found;
    });
    return out.sort((a, b) =>
      a.name !== b.name
        ? a.name < b.name
          ? -1
          : 1
        : a.version !== b.version
          ? a.version < b.version
            ? -1
            : 1
          : a.digest < b.digest
            ? -1
            : 1,
    );
  }

  async function remove(digestInput: string): Promise<boolean> {
    const digest = parseDigest(digestInput);
    return withLock(async () => {
      await ensureLayout();
      const r = await openLayout(dir);
      const keep: Descriptor[] = [];
      let found = false;
      for (const d of r.index.manifests) {
        if (d.digest === digest && d.artifactType !== MediaType.sigstoreBundle) {
          found = true;
          continue;
        }
        if (d.artifactType === MediaType.sigstoreBundle && (await referrerSubject(r, d)) === digest) continue;
        keep.push(d);
      }
      if (found) await writeIndex(keep);
      return found;
    });
  }

  async function gc(): Promise<GcResult> {
    return withLock(async () => {
      await ensureLayout();
      const r = await openLayout(dir);
      const live = new Set<string>();
      for (const d of r.index.manifests) {
        live.add(digestHex(d.digest));
        const bytes = await r.readBlob(d.digest);
        if (bytes === undefined) continue;
        const m = parseJson(bytes, `manifest ${d.digest}`) as Partial<OciManifest>;
        if (m.config?.digest) live.add(digestHex(m.config.digest));
        for (const l of m.layers ?? []) if (l?.digest) live.add(digestHex(l.digest));
      }
      let removedBlobs = 0;
      let freedBytes = 0;
      for (const name of await readdir(blobDir)) {
        if (live.has(name)) continue;
        const path = join(blobDir, name);
        const size = (await stat(path).catch(() => undefined))?.size ?? 0;
        await rm(path, { force: true });
        if (!name.startsWith(TEMP_PREFIX)) removedBlobs++;
        freedBytes += size;
      }
      for (const name of await readdir(dir)) {
        if (name.startsWith(TEMP_PREFIX)) await rm(join(dir, name), { force: true });
      }
      return { removedBlobs, freedBytes };
    });
  }

  return {
    dir,
    import: importArtifact,
    get,
    has: async (digest) => {
      const d = parseDigest(digest);
      return artifactDescriptors(await reader()).some((m) => m.digest === d);
    },
    list,
    remove,
    gc,
  };
}

async function referrerSubject(r: LayoutReader, d: Descriptor): Promise<Digest | undefined> {
  const hinted = d.annotations?.[SUBJECT_ANNOTATION];
  if (hinted !== undefined) return hinted as Digest;
  try {
    return (await readReferrer(r, d)).subjectDigest;
  } catch {
    return undefined;
  }
}

function summarize(artifact: LoadedArtifact, manifests: readonly Descriptor[]): StoredArtifact {
  return summary(
    artifact.digest,
    artifact.manifest,
    artifact.ociManifest,
    artifact.manifestBytes.byteLength,
    manifests,
  );
}

function summary(
  digest: Digest,
  manifest: VyrManifest,
  o: OciManifest,
  manifestSize: number,
  manifests: readonly Descriptor[],
): StoredArtifact {
  return {
    digest,
    name: manifest.name,
    version: manifest.version,
    sizeBytes: manifestSize + o.config.size + o.layers.reduce((n, l) => n + l.size, 0),
    signatures: manifests.filter(
      (d) => d.artifactType === MediaType.sigstoreBundle && d.annotations?.[SUBJECT_ANNOTATION] === digest,
    ).length,
  };
}

/**
 * What `list` reports for one artifact, from its metadata only: the manifest and the declarations layer (both a
 * few hundred bytes, re-hashed). The component, megabytes, is re-hashed by `get`, before anything runs it.
 */
async function readMetadata(r: LayoutReader, desc: Descriptor): Promise<StoredArtifact> {
  const { manifestBytes, oci, manifest } = await readArtifactMetadata(r, desc);
  return summary(desc.digest, manifest, oci, manifestBytes.byteLength, r.index.manifests);
}
