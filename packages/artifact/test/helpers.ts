import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactError, type ArtifactErrorCode, type VyrManifest } from '../src/index.js';

/** The example manifest of issue 2. */
export const EVENT_TRANSFORM_MANIFEST: VyrManifest = {
  name: 'event-transform',
  version: '0.1.0',
  env: ['LOG_LEVEL'],
  state: [{ name: 'data', mount: '/data', access: 'rw', quotaBytes: 67108864 }],
  limits: { memoryBytes: 67108864, deadlineMs: 30000 },
};

/** Runs `fn` and returns the ArtifactError code it throws; fails the test if it resolves or throws anything else. */
export async function codeOf(fn: () => Promise<unknown>): Promise<ArtifactErrorCode> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ArtifactError) return err.code;
    throw new Error(`expected an ArtifactError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected an ArtifactError, but the call succeeded');
}

/** Runs `fn` and returns the ArtifactError it throws. */
export async function errorOf(fn: () => Promise<unknown>): Promise<ArtifactError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof ArtifactError) return err;
    throw new Error(`expected an ArtifactError, got ${String(err)}`, { cause: err });
  }
  throw new Error('expected an ArtifactError, but the call succeeded');
}

/** Reads index.json and the manifest of a dir layout, returning role → blob path. */
export async function blobRoles(layout: string): Promise<Record<string, string>> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; artifactType?: string }[];
  };
  const path = (digest: string): string => join(layout, 'blobs', 'sha256', digest.slice(7));
  const roles: Record<string, string> = {};
  for (const d of index.manifests) {
    const m = JSON.parse(await readFile(path(d.digest), 'utf8')) as {
      config: { digest: string };
      layers: { digest: string; mediaType: string }[];
    };
    if (d.artifactType === 'application/vnd.dev.sigstore.bundle.v0.3+json') {
      roles.referrer = path(d.digest);
      roles.referrerConfig = path(m.config.digest);
      roles.bundle = path(m.layers[0]!.digest);
    } else {
      roles.manifest = path(d.digest);
      roles.config = path(m.config.digest);
      for (const l of m.layers)
        roles[l.mediaType === 'application/wasm' ? 'component' : 'declarations'] = path(l.digest);
    }
  }
  const files = await readdir(join(layout, 'blobs', 'sha256'));
  if (files.length !== Object.keys(roles).length) throw new Error(`unexpected blobs in ${layout}: ${files.join(', ')}`);
  return roles;
}

/**
 * Writes a minimal OCI container image layout (image config + manifest with no layers) at `path`, as `skopeo
 * copy … oci:DIR` would lay it out. Returns the digests of its blobs.
 */
export async function writeContainerImageLayout(path: string): Promise<string[]> {
  await mkdir(join(path, 'blobs/sha256'), { recursive: true });
  const put = async (bytes: Buffer): Promise<string> => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(path, 'blobs/sha256', hex), bytes);
    return hex;
  };
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const cd = await put(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${cd}`, size: config.length },
      layers: [],
    }),
  );
  const md = await put(manifest);
  await writeFile(join(path, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(
    join(path, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${md}`, size: manifest.length },
      ],
    }),
  );
  return [cd, md];
}
