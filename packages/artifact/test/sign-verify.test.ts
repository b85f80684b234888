import { cp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  createTrustPolicy,
  detachedBundlePath,
  generateKeyPair,
  inspectArtifact,
  loadTrustPolicy,
  packArtifact,
  parsePublicKeyPem,
  readArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '../src/index.js';
import { blobRoles, codeOf, errorOf } from './helpers.js';
import { disableNetwork } from './network.js';

afterAll(cleanupTempDirs);
afterEach(() => {
  vi.restoreAllMocks();
});

async function packed(
  name: 'hello' | 'env' = 'hello',
  out = 'app.oci',
): Promise<{ dir: string; artifact: string; digest: string }> {
  const dir = await tempDir();
  const artifact = join(dir, out);
  const { digest } = await packArtifact(await watFixtureFile(name, dir), artifact);
  return { dir, artifact, digest };
}

describe('keys', () => {
  it('writes a PKCS#8 private key with mode 0600 and an SPKI public key; key id = sha256(SPKI DER)', async () => {
    const dir = await tempDir();
    const written = await writeKeyPair(join(dir, 'keys'));
    const priv = await readFile(written.privateKeyPath, 'utf8');
    const pub = await readFile(written.publicKeyPath, 'utf8');
    expect(priv).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(pub).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    expect((await stat(written.privateKeyPath)).mode & 0o777).toBe(0o600);
    const key = parsePublicKeyPem(pub);
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const { createHash } = await import('node:crypto');
    expect(written.keyId).toBe(
      createHash('sha256')
        .update(key.export({ type: 'spki', format: 'der' }))
        .digest('hex'),
    );
  });

  it('refuses to overwrite an existing key without force, and replaces it with force', async () => {
    const dir = await tempDir();
    const first = await writeKeyPair(dir);
    expect(await codeOf(() => writeKeyPair(dir))).toBe('ALREADY_EXISTS');
    expect(await readFile(first.privateKeyPath, 'utf8')).toBeTruthy();
    const second = await writeKeyPair(dir, { force: true });
    expect(second.keyId).not.toBe(first.keyId);
  });

  it('refuses a half-existing pair without writing the other half', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'vyr.pub'), 'x');
    expect(await codeOf(() => writeKeyPair(dir))).toBe('ALREADY_EXISTS');
    await expect(stat(join(dir, 'vyr.key'))).rejects.toThrow();
  });

  it('says a key path is a directory (MALFORMED_KEY), and that --out of key generate is not a directory', async () => {
    const dir = await tempDir();
    const keys = await writeKeyPair(join(dir, 'keys'));
    const pub = await errorOf(() => loadTrustPolicy([join(dir, 'keys')]));
    expect(pub.code).toBe('MALFORMED_KEY');
    expect(pub.message).toContain(`${join(dir, 'keys')} is a directory, not a key file`);
    expect(pub.message).toContain(keys.publicKeyPath);
    const priv = await errorOf(() => signArtifact(join(dir, 'none.oci'), { path: join(dir, 'keys') }));
    expect(priv.code).toBe('MALFORMED_KEY');
    expect(priv.message).toContain(keys.privateKeyPath);

    await writeFile(join(dir, 'file'), 'x');
    for (const out of [join(dir, 'file'), join(dir, 'file', 'sub')]) {
      const err = await errorOf(() => writeKeyPair(out));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toContain(`${out} is not a directory`);
      expect(err.message).not.toContain('already exists');
    }
  });

  it('names the conversion for a SEC1 or encrypted private key, and a key of the wrong kind', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const dir = await tempDir();
    const sec1 = join(dir, 'ec.key');
    await writeFile(sec1, pair.privateKey.export({ type: 'sec1', format: 'pem' }));
    const err = await errorOf(() => signArtifact(join(dir, 'none.oci'), { path: sec1 }));
    expect(err.code).toBe('MALFORMED_KEY');
    expect(err.message).toContain(`SEC1 "EC PRIVATE KEY"`);
    expect(err.message).toContain(`openssl pkcs8 -topk8 -nocrypt -in ${sec1}`);
    const encrypted = join(dir, 'enc.key');
    await writeFile(
      encrypted,
      pair.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }),
    );
    expect((await errorOf(() => signArtifact(join(dir, 'none.oci'), { path: encrypted }))).message).toContain(
      `openssl pkey -in ${encrypted}`,
    );
    // A public key where the private one is expected, and the reverse.
    const keys = await writeKeyPair(join(dir, 'keys'));
    expect((await errorOf(() => signArtifact(join(dir, 'none.oci'), { path: keys.publicKeyPath }))).message).toContain(
      'is a public key; signing takes the private key',
    );
    const swapped = await errorOf(() => loadTrustPolicy([keys.privateKeyPath]));
    expect(swapped.code).toBe('MALFORMED_KEY');
    expect(swapped.message).toContain('is a private key; a trust set takes public keys');
  });

  it('refuses keys that are not ECDSA P-256 PEM with MALFORMED_KEY', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    for (const pem of [ed, p384, 'not a key', generateKeyPair().privateKeyPem]) {
      expect(() => createTrustPolicy({ keys: [pem] })).toThrow(expect.objectContaining({ code: 'MALFORMED_KEY' }));
    }
  });
});

describe('sign', () => {
  it('stores a Sigstore v0.3 messageSignature bundle in the layout (OCI referrer) and beside it', async () => {
    const { dir, artifact, digest } = await packed();
    const keys = await writeKeyPair(join(dir, 'keys'));
    const result = await signArtifact(artifact, { path: keys.privateKeyPath });
    expect(result.digest).toBe(digest);
    expect(result.keyId).toBe(keys.keyId);
    expect(result.detachedPath).toBe(`${artifact}.sigstore.json`);
    const detached = await readFile(result.detachedPath, 'utf8');
    expect(detached).toBe(result.bundleJson);
    const bundle = JSON.parse(detached);
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.verificationMaterial.publicKey.hint).toBe(keys.keyId);
    const manifestBytes = await readFile(join(artifact, 'blobs/sha256', digest.slice(7)));
    const { createHash } = await import('node:crypto');
    expect(bundle.messageSignature.messageDigest).toEqual({
      algorithm: 'SHA2_256',
      digest: createHash('sha256').update(manifestBytes).digest('base64'),
    });
    const roles = await blobRoles(artifact);
    expect(await readFile(roles.bundle!, 'utf8')).toBe(detached);
    const referrer = JSON.parse(await readFile(roles.referrer!, 'utf8'));
    expect(referrer).toMatchObject({
      artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: manifestBytes.length },
    });
    // Signing does not change the artifact's digest.
    expect((await readArtifact(artifact)).digest).toBe(digest);
  });

  it("replaces its own earlier signature and keeps other keys' signatures", async () => {
    const { dir, artifact } = await packed();
    const alice = await writeKeyPair(join(dir, 'alice'));
    const bob = await writeKeyPair(join(dir, 'bob'));
    await signArtifact(artifact, { path: alice.privateKeyPath });
    await signArtifact(artifact, { path: alice.privateKeyPath });
    await signArtifact(artifact, { path: bob.privateKeyPath });
    const info = await inspectArtifact(artifact);
    const layoutKeys = info.signatures.filter((s) => s.location === 'layout').map((s) => s.keyId);
    expect(layoutKeys.sort()).toEqual([alice.keyId, bob.keyId].sort());
    expect((await verifyArtifact(artifact, await loadTrustPolicy([alice.publicKeyPath]))).trustedKeyIds).toEqual([
      alice.keyId,
    ]);
    expect((await verifyArtifact(artifact, await loadTrustPolicy([bob.publicKeyPath]))).trustedKeyIds).toEqual([
      bob.keyId,
    ]);
  });

  it('signs a .tar artifact in place', async () => {
    const { dir, artifact, digest } = await packed('hello', 'app.tar');
    const keys = await writeKeyPair(join(dir, 'keys'));
    await signArtifact(artifact, { path: keys.privateKeyPath });
    expect(await stat(`${artifact}.sigstore.json`)).toBeTruthy();
    await rm(`${artifact}.sigstore.json`);
    // The signature inside the tar is enough.
    const result = await verifyArtifact(artifact, await loadTrustPolicy([keys.publicKeyPath]));
    expect(result).toMatchObject({ digest, signed: true, trustedKeyIds: [keys.keyId] });
  });

  it('refuses to sign a tampered artifact', async () => {
    const { dir, artifact } = await packed();
    const roles = await blobRoles(artifact);
    await writeFile(roles.component!, 'tampered');
    const keys = await writeKeyPair(join(dir, 'keys'));
    expect(await codeOf(() => signArtifact(artifact, { path: keys.privateKeyPath }))).toBe('BLOB_DIGEST_MISMATCH');
  });

  it('refuses a malformed private key', async () => {
    const { dir, artifact } = await packed();
    await writeFile(join(dir, 'bad.key'), '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
    expect(await codeOf(() => signArtifact(artifact, { path: join(dir, 'bad.key') }))).toBe('MALFORMED_KEY');
    expect(await codeOf(() => signArtifact(artifact, { path: join(dir, 'missing.key') }))).toBe('NOT_FOUND');
  });
});

describe('verify', () => {
  async function signedArtifact() {
    const base = await packed();
    const keys = await writeKeyPair(join(base.dir, 'keys'));
    await signArtifact(base.artifact, { path: keys.privateKeyPath });
    return { ...base, keys, policy: await loadTrustPolicy([keys.publicKeyPath]) };
  }

  it('accepts an artifact signed by a trusted key, without touching the network', async () => {
    const { artifact, digest, keys, policy } = await signedArtifact();
    const network = disableNetwork();
    const result = await verifyArtifact(artifact, policy);
    expect(result).toEqual({
      digest,
      signed: true,
      trustedKeyIds: [keys.keyId],
      signatures: [expect.objectContaining({ keyId: keys.keyId, location: 'layout' })],
      allowedUnsigned: false,
    });
    expect(network.attempts()).toBe(0);
    // The stubs really are in place.
    await expect(fetch('https://example.com')).rejects.toThrow('network is unavailable');
    expect(network.attempts()).toBe(1);
  });

  it('refuses an unsigned artifact with UNSIGNED, unless the policy explicitly allows unsigned', async () => {
    const { artifact, digest } = await packed();
    const keys = generateKeyPair();
    expect(await codeOf(() => verifyArtifact(artifact, createTrustPolicy({ keys: [keys.publicKeyPem] })))).toBe(
      'UNSIGNED',
    );
    expect(await codeOf(() => verifyArtifact(artifact, createTrustPolicy()))).toBe('UNSIGNED');
    const dev = createTrustPolicy({ allowUnsigned: true });
    expect(await verifyArtifact(artifact, dev)).toMatchObject({ digest, signed: false, allowedUnsigned: true });
  });

  it('refuses an artifact signed only by an untrusted key, naming the key, even with allowUnsigned', async () => {
    const { artifact, keys } = await signedArtifact();
    const other = createTrustPolicy({ keys: [generateKeyPair().publicKeyPem], allowUnsigned: true });
    const err = await errorOf(() => verifyArtifact(artifact, other));
    expect(err.code).toBe('UNTRUSTED_KEY');
    expect(err.message).toContain(keys.keyId);
    expect(await codeOf(() => verifyArtifact(artifact, createTrustPolicy()))).toBe('UNTRUSTED_KEY');
  });

  it('refuses a bundle that signs another artifact with MESSAGE_DIGEST_MISMATCH', async () => {
    const { artifact, keys, policy } = await signedArtifact();
    const other = await packed('env');
    await signArtifact(other.artifact, { path: keys.privateKeyPath });
    // Put the other artifact's (valid) bundle beside ours.
    await cp(detachedBundlePath(other.artifact), detachedBundlePath(artifact));
    const err = await errorOf(() => verifyArtifact(artifact, policy));
    expect(err.code).toBe('MESSAGE_DIGEST_MISMATCH');
  });

  it('refuses a bundle whose signature was changed with SIGNATURE_INVALID', async () => {
    const { artifact, keys, policy } = await signedArtifact();
    const bundle = JSON.parse(await readFile(detachedBundlePath(artifact), 'utf8'));
    const forged = await signArtifact((await packed('env')).artifact, { path: keys.privateKeyPath });
    // A real signature by the same key, but over different bytes, with our messageDigest kept.
    bundle.messageSignature.signature = JSON.parse(forged.bundleJson).messageSignature.signature;
    await writeFile(detachedBundlePath(artifact), JSON.stringify(bundle));
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('SIGNATURE_INVALID');
  });

  it('refuses a bundle whose key hint was changed to hide a trusted signer (SIGNATURE_INVALID)', async () => {
    const { artifact, policy } = await signedArtifact();
    const bundle = JSON.parse(await readFile(detachedBundlePath(artifact), 'utf8'));
    bundle.verificationMaterial.publicKey.hint = '0'.repeat(64);
    await writeFile(detachedBundlePath(artifact), JSON.stringify(bundle));
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('SIGNATURE_INVALID');
  });

  it('refuses a manifest re-written consistently (index updated) because the signature no longer matches', async () => {
    const { artifact, policy } = await signedArtifact();
    const roles = await blobRoles(artifact);
    // Re-point the index at a re-written manifest: integrity holds, the signature does not.
    const manifest = JSON.parse(await readFile(roles.manifest!, 'utf8'));
    manifest.annotations['org.opencontainers.image.version'] = '9.9.9';
    const bytes = Buffer.from(JSON.stringify(manifest));
    const { createHash } = await import('node:crypto');
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(artifact, 'blobs/sha256', hex), bytes);
    const index = JSON.parse(await readFile(join(artifact, 'index.json'), 'utf8'));
    const oldDigest = index.manifests[0].digest;
    index.manifests[0] = { ...index.manifests[0], digest: `sha256:${hex}`, size: bytes.length };
    await writeFile(join(artifact, 'index.json'), JSON.stringify(index));
    // The in-layout referrer names the old subject, so only the detached bundle is attached, and it signs the old manifest.
    const err = await errorOf(() => verifyArtifact(artifact, policy));
    expect(err.code).toBe('MESSAGE_DIGEST_MISMATCH');
    expect(err.message).toContain(`sha256:${oldDigest.slice(7)}`);
  });

  it('reports malformed bundles, unsupported bundle media types and malformed layouts precisely', async () => {
    const { artifact, policy } = await signedArtifact();
    const path = detachedBundlePath(artifact);
    const good = JSON.parse(await readFile(path, 'utf8'));
    await writeFile(path, '{not json');
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('MALFORMED_BUNDLE');
    await writeFile(path, JSON.stringify({ ...good, mediaType: 'application/vnd.dev.sigstore.bundle.v0.1+json' }));
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('UNSUPPORTED_MEDIA_TYPE');
    await writeFile(path, JSON.stringify({ ...good, extra: true }));
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('MALFORMED_BUNDLE');
    await rm(path);
    await writeFile(join(artifact, 'index.json'), '{"schemaVersion":2,"manifests":');
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('MALFORMED_LAYOUT');
    await writeFile(join(artifact, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('refuses an unsupported layer media type with UNSUPPORTED_MEDIA_TYPE', async () => {
    const { artifact, policy } = await signedArtifact();
    const roles = await blobRoles(artifact);
    const manifest = JSON.parse(await readFile(roles.manifest!, 'utf8'));
    manifest.layers[1].mediaType = 'application/x-something';
    const bytes = Buffer.from(JSON.stringify(manifest));
    const { createHash } = await import('node:crypto');
    const hex = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(artifact, 'blobs/sha256', hex), bytes);
    const index = JSON.parse(await readFile(join(artifact, 'index.json'), 'utf8'));
    index.manifests[0] = { ...index.manifests[0], digest: `sha256:${hex}`, size: bytes.length };
    await writeFile(join(artifact, 'index.json'), JSON.stringify(index));
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('UNSUPPORTED_MEDIA_TYPE');
  });

  it('reports a missing blob with BLOB_MISSING and a missing artifact with NOT_FOUND', async () => {
    const { dir, artifact, policy } = await signedArtifact();
    const roles = await blobRoles(artifact);
    await rm(roles.declarations!);
    expect(await codeOf(() => verifyArtifact(artifact, policy))).toBe('BLOB_MISSING');
    expect(await codeOf(() => verifyArtifact(join(dir, 'nothing.oci'), policy))).toBe('NOT_FOUND');
  });
});
