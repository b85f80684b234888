import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createStore,
  detachedBundlePath,
  loadTrustPolicy,
  packArtifact,
  readArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '../src/index.js';
import { blobRoles, codeOf } from './helpers.js';

const run = promisify(execFile);
afterAll(cleanupTempDirs);

/** A signed artifact `app.oci` (name hello, version 1.0.0) with its detached bundle and the public key. */
async function signedArtifact(): Promise<{
  dir: string;
  artifact: string;
  digest: string;
  bundle: string;
  pub: string;
}> {
  const dir = await tempDir('vyr-interop-');
  const keys = await writeKeyPair(join(dir, 'keys'));
  const artifact = join(dir, 'app.oci');
  const { digest } = await packArtifact(await watFixtureFile('hello', dir), artifact, {
    manifest: { name: 'hello', version: '1.0.0', env: [], state: [], limits: {} },
  });
  await signArtifact(artifact, { path: keys.privateKeyPath });
  return { dir, artifact, digest, bundle: detachedBundlePath(artifact), pub: keys.publicKeyPath };
}

type Index = { schemaVersion: number; mediaType?: string; manifests: Record<string, unknown>[] };

async function rewriteIndex(artifact: string, edit: (index: Index) => Index): Promise<void> {
  const path = join(artifact, 'index.json');
  await writeFile(path, JSON.stringify(edit(JSON.parse(await readFile(path, 'utf8')) as Index), null, 2));
}

/** Adds a blob to a directory layout and returns its descriptor. */
async function addBlob(artifact: string, mediaType: string, bytes: Buffer): Promise<Record<string, unknown>> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  await writeFile(join(artifact, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest: `sha256:${hex}`, size: bytes.length };
}

/** A minimal OCI container image manifest (image-spec manifest.md), its config and layer present as blobs. */
async function addContainerImage(artifact: string, tag: string): Promise<Record<string, unknown>> {
  const config = await addBlob(artifact, 'application/vnd.oci.image.config.v1+json', Buffer.from('{}'));
  const layer = await addBlob(artifact, 'application/vnd.oci.image.layer.v1.tar', Buffer.alloc(1024));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: [layer],
    }),
  );
  const desc = await addBlob(artifact, 'application/vnd.oci.image.manifest.v1+json', manifest);
  return { ...desc, annotations: { 'org.opencontainers.image.ref.name': tag } };
}

describe('OCI image layouts written by other tools (image-spec image-layout.md: index.json only locates manifests)', () => {
  it('verifies a layout whose index has no mediaType, no artifactType, other annotations and no signature referrer', async () => {
    const { artifact, digest, bundle, pub } = await signedArtifact();
    // What `skopeo copy` writes: a bare index, artifactType dropped, the tag kept, referrers not copied.
    await rewriteIndex(artifact, (index) => ({
      schemaVersion: 2,
      manifests: index.manifests
        .filter((d) => d.digest === digest)
        .map((d) => ({
          mediaType: d.mediaType,
          digest: d.digest,
          size: d.size,
          annotations: { 'org.opencontainers.image.ref.name': 'copied', 'org.example.other': 'x' },
        })),
    }));
    await writeFile(join(artifact, 'oci-layout'), '{"imageLayoutVersion": "1.0.0", "x-tool": "y"}');
    const policy = await loadTrustPolicy([pub]);
    await expect(verifyArtifact(artifact, policy, { bundlePaths: [bundle] })).resolves.toMatchObject({
      digest,
      signed: true,
    });
    // Without the bundle, nothing vouches for it: trust rests on the bundle, never on the index.
    await rm(bundle);
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('UNSIGNED');
  });

  it('finds a referrer the index lists without artifactType, by reading the (re-hashed) referrer manifest', async () => {
    const { artifact, digest, bundle, pub } = await signedArtifact();
    await rm(bundle);
    await rewriteIndex(artifact, (index) => ({
      schemaVersion: 2,
      manifests: index.manifests.map((d) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size })),
    }));
    await expect(verifyArtifact(artifact, await loadTrustPolicy([pub]))).resolves.toMatchObject({
      digest,
      signatures: [{ location: 'layout' }],
    });
  });

  it('skips other manifests and duplicate tags beside the artifact, and stays strict about every byte of content', async () => {
    const { artifact, digest, pub } = await signedArtifact();
    const roles = await blobRoles(artifact);
    const image = await addContainerImage(artifact, 'busybox:latest');
    await rewriteIndex(artifact, (index) => ({
      ...index,
      manifests: [
        image,
        ...index.manifests,
        { ...index.manifests[0], annotations: { 'org.opencontainers.image.ref.name': 'latest' } },
      ],
    }));
    const policy = await loadTrustPolicy([pub]);
    await expect(verifyArtifact(artifact, policy)).resolves.toMatchObject({ digest, signed: true });
    const manifest = await readFile(roles.manifest!);
    const flipped = Buffer.from(manifest);
    flipped[10] = flipped[10]! ^ 0x01;
    await writeFile(roles.manifest!, flipped);
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('MANIFEST_TAMPERED');
  });

  it('chooses among several artifacts by tag or digest, and says which exist when none or several match', async () => {
    const a = await signedArtifact();
    const b = await signedArtifact();
    // Copy b's artifact blobs into a's layout under another tag: two artifacts in one layout.
    const bIndex = JSON.parse(await readFile(join(b.artifact, 'index.json'), 'utf8')) as Index;
    for (const name of await readdir(join(b.artifact, 'blobs', 'sha256'))) {
      await writeFile(
        join(a.artifact, 'blobs', 'sha256', name),
        await readFile(join(b.artifact, 'blobs', 'sha256', name)),
      );
    }
    const other = await packArtifact(await watFixtureFile('env', b.dir), join(b.dir, 'env.oci'), {
      manifest: { name: 'env', version: '2.0.0', env: [], state: [], limits: {} },
    });
    for (const name of await readdir(join(b.dir, 'env.oci', 'blobs', 'sha256'))) {
      await writeFile(
        join(a.artifact, 'blobs', 'sha256', name),
        await readFile(join(b.dir, 'env.oci', 'blobs', 'sha256', name)),
      );
    }
    const envIndex = JSON.parse(await readFile(join(b.dir, 'env.oci', 'index.json'), 'utf8')) as Index;
    await rewriteIndex(a.artifact, (index) => ({
      ...index,
      manifests: [...index.manifests, ...envIndex.manifests, ...bIndex.manifests.slice(1)],
    }));
    const err = await readArtifact(a.artifact).catch((e: Error & { code: string }) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((err as Error).message).toContain('hello:1.0.0, env:2.0.0');
    expect((await readArtifact(a.artifact, { ref: 'env:2.0.0' })).digest).toBe(other.digest);
    expect((await readArtifact(a.artifact, { ref: a.digest })).manifest.name).toBe('hello');
    expect(await codeOf(() => readArtifact(a.artifact, { ref: 'nope:1' }))).toBe('NOT_FOUND');
    // The store imports the chosen one and writes its own canonical index.
    const store = createStore({ dir: join(a.dir, 'store') });
    expect((await store.import(a.artifact, { ref: 'env:2.0.0', bundlePaths: [] })).digest).toBe(other.digest);
  });

  it('refuses a layout that holds only a container image with CONTAINER_IMAGE, even when the index hides its kind', async () => {
    const { artifact } = await signedArtifact();
    const image = await addContainerImage(artifact, 'busybox:latest');
    await rewriteIndex(artifact, () => ({ schemaVersion: 2, manifests: [image] }));
    expect(await codeOf(() => readArtifact(artifact))).toBe('CONTAINER_IMAGE');
    expect(await codeOf(() => readArtifact(artifact, { ref: 'busybox:latest' }))).toBe('CONTAINER_IMAGE');
  });
});

const skopeo = await run('skopeo', ['--version']).then(
  () => true,
  () => false,
);

describe.skipIf(!skopeo)('skopeo round trip (skopeo from Debian; skipped when it is not installed)', () => {
  it('skopeo copy to a directory and to an oci-archive .tar keeps the manifest digest and every blob, and both verify', async () => {
    const { dir, artifact, digest, bundle, pub } = await signedArtifact();
    const policy = await loadTrustPolicy([pub]);
    const copy = join(dir, 'copy');
    const archive = join(dir, 'copy.tar');
    await run('skopeo', ['copy', '--quiet', `oci:${artifact}:hello:1.0.0`, `oci:${copy}:hello:1.0.0`]);
    await run('skopeo', ['copy', '--quiet', `oci:${artifact}:hello:1.0.0`, `oci-archive:${archive}:hello:1.0.0`]);
    // The index is rewritten (that is what made verify refuse it before), the content is not.
    expect(await readFile(join(copy, 'index.json'), 'utf8')).not.toBe(
      await readFile(join(artifact, 'index.json'), 'utf8'),
    );
    const roles = await blobRoles(artifact);
    for (const role of ['manifest', 'config', 'component', 'declarations']) {
      const name = roles[role]!.split('/').pop()!;
      expect(await readFile(join(copy, 'blobs', 'sha256', name)), role).toEqual(await readFile(roles[role]!));
    }
    for (const target of [copy, archive]) {
      await expect(verifyArtifact(target, policy, { bundlePaths: [bundle] })).resolves.toMatchObject({
        digest,
        signed: true,
      });
    }
    // Without the bundle the copy carries no signature (skopeo copies one image, not its referrers).
    expect(await codeOf(() => verifyArtifact(copy, policy))).toBe('UNSIGNED');
  });
});
