import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArtifactError,
  createTrustPolicy,
  exportArtifactTar,
  generateKeyPair,
  loadTrustPolicy,
  packArtifact,
  parseBundle,
  parseDigest,
  parsePublicKeyPem,
  parseVyrManifest,
  readArtifact,
  signArtifact,
  type TrustPolicy,
  validateVyrManifest,
  verifyLoaded,
  writeKeyPair,
} from '../src/index.js';
import { EVENT_TRANSFORM_MANIFEST } from './helpers.js';

afterAll(cleanupTempDirs);

/**
 * Calls `fn` on fuzzed input: it may succeed or throw an ArtifactError with a code and a message; anything else (a
 * TypeError, a RangeError, a raw JSON/tar/crypto exception) fails the property.
 */
async function coded<T>(fn: () => T | Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: string }> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    if (!(err instanceof ArtifactError)) {
      throw new Error(`not an ArtifactError: ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, {
        cause: err,
      });
    }
    expect(err.code).toMatch(/^[A-Z_]+$/);
    expect(err.message.length).toBeGreaterThan(0);
    return { ok: false, code: err.code };
  }
}

/**
 * One mutation of a byte string: flip bits, overwrite, truncate, insert or duplicate a slice. Positions are drawn for
 * the original length and clamped to the bytes a mutation gets (mutations compose).
 */
function mutation(length: number): fc.Arbitrary<(bytes: Uint8Array) => Uint8Array> {
  const at = fc.nat({ max: Math.max(0, length - 1) });
  const clamp = (i: number, b: Uint8Array) => Math.min(i, b.length);
  return fc.oneof(
    fc.tuple(at, fc.integer({ min: 1, max: 255 })).map(([i, x]) => (b: Uint8Array) => {
      const out = b.slice();
      if (i < out.length) out[i] = out[i]! ^ x;
      return out;
    }),
    fc.tuple(at, fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([i, chunk]) => (b: Uint8Array) => {
      const out = b.slice();
      const p = clamp(i, b);
      out.set(chunk.subarray(0, out.length - p), p);
      return out;
    }),
    at.map((i) => (b: Uint8Array) => b.slice(0, clamp(i, b))),
    fc.tuple(at, fc.uint8Array({ minLength: 1, maxLength: 1024 })).map(([i, chunk]) => (b: Uint8Array) => {
      const p = clamp(i, b);
      const out = new Uint8Array(b.length + chunk.length);
      out.set(b.subarray(0, p));
      out.set(chunk, p);
      out.set(b.subarray(p), p + chunk.length);
      return out;
    }),
    fc.tuple(at, at).map(([i, j]) => (b: Uint8Array) => {
      const [from, to] = i < j ? [clamp(i, b), clamp(j, b)] : [clamp(j, b), clamp(i, b)];
      const out = new Uint8Array(b.length + (to - from));
      out.set(b.subarray(0, to));
      out.set(b.subarray(from, to), to);
      out.set(b.subarray(to), to + (to - from));
      return out;
    }),
  );
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Property-based fuzzing (fast-check) of every edge of @vyr/artifact that parses outside input: artifact `.tar`s
 * (framing, index, manifests, config, declarations, bundles), `vyr.json`, bundle JSON, PEM keys, trust policy files
 * and digests. Every refusal must be a coded ArtifactError; a mutated artifact must never verify as the original.
 */
describe('fuzzed bad input: artifact parsers refuse with a coded error, never crash', () => {
  let tar: Uint8Array;
  let digest: string;
  let policy: TrustPolicy;
  let bundleJson: string;
  let publicPem: string;

  beforeAll(async () => {
    const dir = await tempDir();
    const artifact = join(dir, 'app.oci');
    ({ digest } = await packArtifact(await watFixtureFile('hello', dir), artifact, {
      manifest: EVENT_TRANSFORM_MANIFEST,
    }));
    const keys = await writeKeyPair(join(dir, 'keys'));
    await signArtifact(artifact, { path: keys.privateKeyPath });
    ({ tar } = await exportArtifactTar(artifact));
    publicPem = await readFile(keys.publicKeyPath, 'utf8');
    policy = createTrustPolicy({ keys: [publicPem] });
    const loaded = await readArtifact(tar);
    expect(verifyLoaded(loaded, policy).digest).toBe(digest);
    bundleJson = loaded.bundles[0]!.json;
  });

  it('a mutated artifact .tar is refused with a code, or (a no-op mutation) verifies as the same digest', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(mutation(tar.length), { minLength: 1, maxLength: 3 }), async (mutations) => {
        const bytes = mutations.reduce((b, m) => m(b), tar);
        const read = await coded(() => readArtifact(bytes));
        if (!read.ok) return;
        const verified = await coded(() => verifyLoaded(read.value, policy));
        if (verified.ok) expect(verified.value.digest).toBe(digest);
      }),
      { numRuns: 150 },
    );
  });

  it('random bytes as an artifact .tar are refused with a code', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (bytes) => {
        expect((await coded(() => readArtifact(bytes))).ok).toBe(false);
      }),
      { numRuns: 100 },
    );
  });

  it('vyr.json: any text, any JSON value and mutated valid manifests parse or fail with a code', async () => {
    const valid = JSON.stringify(EVENT_TRANSFORM_MANIFEST);
    const texts = fc.oneof(
      fc.string(),
      fc.json(),
      fc.jsonValue().map((v) => JSON.stringify({ ...EVENT_TRANSFORM_MANIFEST, limits: v })),
      fc.jsonValue().map((v) => JSON.stringify({ ...EVENT_TRANSFORM_MANIFEST, state: [v] })),
      fc.jsonValue().map((v) => JSON.stringify({ ...EVENT_TRANSFORM_MANIFEST, env: v })),
      mutation(valid.length).map((m) => decoder.decode(m(encoder.encode(valid)))),
    );
    await fc.assert(
      fc.asyncProperty(texts, async (text) => {
        await coded(() => parseVyrManifest(text, 'vyr.json'));
      }),
      { numRuns: 300 },
    );
    await fc.assert(
      fc.asyncProperty(fc.anything(), async (value) => {
        await coded(() => validateVyrManifest(value));
      }),
      { numRuns: 100 },
    );
  });

  it('bundle JSON: any text and mutated valid bundles parse or fail with a code', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.json(),
          mutation(bundleJson.length).map((m) => decoder.decode(m(encoder.encode(bundleJson)))),
        ),
        async (text) => {
          await coded(() => parseBundle(text));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('public keys and trust policy files: any text or mutated PEM is a key or a coded refusal', async () => {
    const dir = await tempDir();
    const path = join(dir, 'key.pub');
    const pems = fc.oneof(
      fc.string(),
      mutation(publicPem.length).map((m) => decoder.decode(m(encoder.encode(publicPem)))),
      fc
        .uint8Array({ maxLength: 200 })
        .map((b) => `-----BEGIN PUBLIC KEY-----\n${Buffer.from(b).toString('base64')}\n-----END PUBLIC KEY-----\n`),
    );
    await fc.assert(
      fc.asyncProperty(pems, async (pem) => {
        await coded(() => parsePublicKeyPem(pem));
        await coded(() => createTrustPolicy({ keys: [pem] }));
        await writeFile(path, pem);
        await coded(() => loadTrustPolicy([path]));
      }),
      { numRuns: 150 },
    );
    // A private key, or any other key type, is never accepted as a trusted public key.
    expect((await coded(() => parsePublicKeyPem(generateKeyPair().privateKeyPem))).ok).toBe(false);
  });

  it('digests: any string is a sha256 digest or a coded refusal', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string(),
          fc.string({ unit: fc.constantFrom(...'0123456789abcdefA'), maxLength: 70 }).map((h) => `sha256:${h}`),
        ),
        async (value) => {
          const parsed = await coded(() => parseDigest(value));
          if (parsed.ok) expect(parsed.value).toMatch(/^sha256:[0-9a-f]{64}$/);
        },
      ),
      { numRuns: 200 },
    );
  });
});
