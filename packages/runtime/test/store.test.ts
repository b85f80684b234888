import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStore, createTrustPolicy, generateKeyPair, packArtifact, signArtifact } from '@vyr/artifact';
import { watFixtureFile } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactSourceFromStore, createRuntime, type Runtime } from '../dist/index.js';
import { tempDir, text } from './helpers.js';

describe('verification gate over the artifact store', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  let signedDigest: string;
  let unsignedDigest: string;
  let otherKeyDigest: string;
  let storeDir: string;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    const trusted = generateKeyPair();
    const stranger = generateKeyPair();
    const env = await watFixtureFile('env', dir);
    const pack = async (name: string, key?: string) => {
      const out = join(dir, `${name}.oci`);
      const result = await packArtifact(env, out, {
        manifest: { name, version: '1.0.0', env: ['GREETING'], state: [], limits: { memoryBytes: 16 * 1024 * 1024 } },
      });
      if (key) await signArtifact(out, key);
      return { out, digest: result.digest };
    };
    const signed = await pack('signed', trusted.privateKeyPem);
    const unsigned = await pack('unsigned');
    const other = await pack('other-key', stranger.privateKeyPem);
    storeDir = join(dir, 'store');
    const store = createStore({ dir: storeDir });
    for (const a of [signed, unsigned, other]) await store.import(a.out);
    signedDigest = signed.digest;
    unsignedDigest = unsigned.digest;
    otherKeyDigest = other.digest;
    runtime = createRuntime({
      artifacts: artifactSourceFromStore(store, createTrustPolicy({ keys: [trusted.publicKeyPem] })),
      cacheDir: join(dir, 'cache'),
    });
  });
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  it('runs a packed, signed, imported artifact with its declared env and memory limit', async () => {
    const task = await runtime.submit({ digest: signedDigest, env: { GREETING: 'signed hello' } });
    const status = await runtime.wait(task.id);
    expect(status).toMatchObject({ state: 'SUCCEEDED', exitCode: 0, limits: { memoryBytes: 16 * 1024 * 1024 } });
    expect(text(runtime.output(task.id).stdout)).toBe('GREETING=signed hello\n');
  });

  it('refuses unsigned and untrusted artifacts with UNTRUSTED and the artifact error as cause', async () => {
    await expect(runtime.submit({ digest: unsignedDigest })).rejects.toMatchObject({
      code: 'UNTRUSTED',
      cause: { code: 'UNSIGNED' },
    });
    await expect(runtime.submit({ digest: otherKeyDigest })).rejects.toMatchObject({
      code: 'UNTRUSTED',
      cause: { code: 'UNTRUSTED_KEY' },
    });
  });

  it('re-hashes blobs before execution: a flipped byte in the stored component is refused', async () => {
    const blobs = join(storeDir, 'blobs', 'sha256');
    // The component is the largest blob of the store.
    let largest = '';
    let size = -1;
    for (const name of await readdir(blobs)) {
      const bytes = await readFile(join(blobs, name));
      if (bytes.length > size) {
        size = bytes.length;
        largest = name;
      }
    }
    const bytes = await readFile(join(blobs, largest));
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    await writeFile(join(blobs, largest), bytes);
    await expect(runtime.submit({ digest: signedDigest })).rejects.toMatchObject({
      code: 'UNTRUSTED',
      cause: { code: 'BLOB_DIGEST_MISMATCH' },
    });
  });

  it('reports a store failure such as a missing blob as INTERNAL, not as a verification verdict', async () => {
    const blobs = join(storeDir, 'blobs', 'sha256');
    // The signed artifact's component is gone from the store (disk damage, an operator's rm).
    let largest = '';
    let size = -1;
    for (const name of await readdir(blobs)) {
      const { size: s } = await stat(join(blobs, name));
      if (s > size) {
        size = s;
        largest = name;
      }
    }
    await rm(join(blobs, largest));
    await expect(runtime.submit({ digest: signedDigest })).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringMatching(/could not be loaded \(BLOB_MISSING\)/),
      cause: { code: 'BLOB_MISSING' },
    });
  });
});
