import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type ArtifactErrorCode,
  loadTrustPolicy,
  packArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '../src/index.js';
import { blobRoles, codeOf, EVENT_TRANSFORM_MANIFEST } from './helpers.js';
import { disableNetwork } from './network.js';

afterAll(cleanupTempDirs);
afterEach(() => {
  vi.restoreAllMocks();
});

/** A refusal's code, or `SAME_ARTIFACT` for a change verification may ignore (see `outcomeOf`). */
type Outcome = ArtifactErrorCode | 'SAME_ARTIFACT';

/** Codes a flipped byte of each part may produce; anything else (or success) fails the suite. */
const EXPECTED: Record<string, readonly ArtifactErrorCode[]> = {
  manifest: ['MANIFEST_TAMPERED'],
  config: ['CONFIG_TAMPERED'],
  component: ['BLOB_DIGEST_MISMATCH'],
  declarations: ['BLOB_DIGEST_MISMATCH'],
  referrer: ['BLOB_DIGEST_MISMATCH'],
  referrerConfig: ['BLOB_DIGEST_MISMATCH'],
  bundle: ['BLOB_DIGEST_MISMATCH'],
  detachedBundle: ['MALFORMED_BUNDLE', 'UNSUPPORTED_MEDIA_TYPE', 'SIGNATURE_INVALID', 'MESSAGE_DIGEST_MISMATCH'],
  publicKey: ['MALFORMED_KEY', 'UNTRUSTED_KEY'],
  // index.json is not signed: it only locates the manifest (any tool may rewrite it, docs/artifact.md "Interop").
  // A change that breaks its JSON, its shape or a media type is a malformed layout (exit 64); a changed digest or
  // size points at bytes that are not there (exit 65); a change to an annotation or an unknown field verifies as
  // the same artifact (SAME_ARTIFACT).
  index: ['MALFORMED_LAYOUT', 'UNSUPPORTED_MEDIA_TYPE', 'BLOB_MISSING', 'MANIFEST_TAMPERED', 'BLOB_DIGEST_MISMATCH'],
};

describe('exit criterion: a Wasm file packed and signed on one machine verifies offline on another, and any changed byte of artifact, bundle or key is refused with a coded error', () => {
  let machineB: string;
  let artifactB: string;
  let tarB: string;
  let publicKeyB: string;
  let digest: string;

  beforeAll(async () => {
    // Machine A: key, pack, sign.
    const machineA = await tempDir('vyr-machine-a-');
    const keys = await writeKeyPair(join(machineA, 'keys'));
    const manifest = join(machineA, 'vyr.json');
    await writeFile(manifest, JSON.stringify(EVENT_TRANSFORM_MANIFEST));
    const artifactA = join(machineA, 'event-transform.oci');
    digest = (await packArtifact(await watFixtureFile('cat', machineA), artifactA, { manifest })).digest;
    await signArtifact(artifactA, { path: keys.privateKeyPath });

    // Machine B receives only the artifact, its bundle and the public key.
    machineB = await tempDir('vyr-machine-b-');
    artifactB = join(machineB, basename(artifactA));
    publicKeyB = join(machineB, 'vyr.pub');
    await cp(artifactA, artifactB, { recursive: true });
    await cp(`${artifactA}.sigstore.json`, `${artifactB}.sigstore.json`);
    await cp(keys.publicKeyPath, publicKeyB);

    // The same, as a .tar.
    const tarA = join(machineA, 'event-transform.tar');
    expect((await packArtifact(await watFixtureFile('cat', machineA), tarA, { manifest })).digest).toBe(digest);
    await signArtifact(tarA, { path: keys.privateKeyPath });
    tarB = join(machineB, basename(tarA));
    await cp(tarA, tarB);
    await cp(`${tarA}.sigstore.json`, `${tarB}.sigstore.json`);
  });

  async function verifyOnB(artifact = artifactB): Promise<unknown> {
    return verifyArtifact(artifact, await loadTrustPolicy([publicKeyB]));
  }

  it('verifies on machine B, offline, with only artifact + bundle + public key', async () => {
    const network = disableNetwork();
    const result = await verifyOnB();
    expect(result).toMatchObject({ digest, signed: true });
    expect(network.attempts()).toBe(0);
  });

  /**
   * Flips one byte at each position in `positions` (XOR 0x01, the subtlest change: ASCII stays ASCII, hex stays
   * almost hex), verifies, restores. Collects the code per position.
   */
  async function flipEach(
    path: string,
    positions: Iterable<number>,
    verify: () => Promise<unknown> = verifyOnB,
  ): Promise<Map<number, Outcome>> {
    const original = await readFile(path);
    const codes = new Map<number, Outcome>();
    try {
      for (const i of positions) {
        const copy = Buffer.from(original);
        copy[i] = copy[i]! ^ 0x01;
        await writeFile(path, copy);
        codes.set(i, await outcomeOf(verify));
      }
    } finally {
      await writeFile(path, original);
    }
    return codes;
  }

  /**
   * The code a verification fails with, or `SAME_ARTIFACT` when it succeeds for the very digest packed on machine
   * A (possible only where a byte no digest covers was changed: `index.json`, which merely locates the manifest).
   */
  async function outcomeOf(verify: () => Promise<unknown>): Promise<Outcome> {
    let result: unknown;
    try {
      result = await verify();
    } catch {
      return codeOf(verify);
    }
    expect(result).toMatchObject({ digest, signed: true });
    return 'SAME_ARTIFACT';
  }

  function every(length: number): number[] {
    return Array.from({ length }, (_, i) => i);
  }

  /** For the component layer: every byte of the preamble and the last 64, plus 256 spread positions. */
  function sample(length: number): number[] {
    const set = new Set<number>([...every(64), ...every(64).map((i) => length - 1 - i)]);
    for (let k = 0; k < 256; k++) set.add(Math.floor((k * length) / 256));
    return [...set].filter((i) => i >= 0 && i < length).sort((a, b) => a - b);
  }

  it.each(['manifest', 'config', 'declarations', 'referrer', 'referrerConfig', 'bundle', 'component'])(
    'refuses every single-byte change of the %s blob',
    async (role) => {
      const network = disableNetwork();
      const roles = await blobRoles(artifactB);
      const path = roles[role]!;
      const size = (await readFile(path)).length;
      const codes = await flipEach(path, role === 'component' ? sample(size) : every(size));
      expect(codes.size).toBeGreaterThan(0);
      expect(new Set(codes.values())).toEqual(new Set(EXPECTED[role]));
      expect(network.attempts()).toBe(0);
      await expect(verifyOnB()).resolves.toMatchObject({ digest });
    },
  );

  it('reads index.json only to locate the manifest: every single-byte change is refused with a coded error or still verifies as the very same signed artifact', async () => {
    const network = disableNetwork();
    const path = join(artifactB, 'index.json');
    const text = await readFile(path, 'utf8');
    const codes = await flipEach(path, every(text.length));
    expect(codes.size).toBe(text.length);
    expect(new Set(codes.values())).toEqual(new Set([...EXPECTED.index, 'SAME_ARTIFACT']));
    // A tag is not signed (other tools rewrite it: skopeo, oras): changing it changes nothing that is trusted.
    const tag = text.indexOf('"event-transform:');
    for (let i = tag + 1; i < tag + '"event-transform:'.length; i++) expect(codes.get(i)).toBe('SAME_ARTIFACT');
    // The index's own media type: a layout VYR cannot read, not a verification failure (exit 64, see docs).
    const mediaType = text.indexOf('application/vnd.oci.image.index.v1+json');
    for (let i = mediaType; i < mediaType + 'application/vnd.oci.image.index.v1+json'.length; i++) {
      expect(codes.get(i)).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    // Every byte of the manifest digest's hex names a blob that is not there (exit 65).
    const hex = text.indexOf(digest.slice(7));
    for (let i = hex; i < hex + 64; i++) expect(['BLOB_MISSING', 'MALFORMED_LAYOUT']).toContain(codes.get(i));
    expect(network.attempts()).toBe(0);
    await expect(verifyOnB()).resolves.toMatchObject({ digest });
  });

  it('refuses every single-byte change of the .tar form: headers, padding, end marker and every small file', async () => {
    const network = disableNetwork();
    const tar = await readFile(tarB);
    // Walk the archive VYR wrote: 512-byte headers, data, zero padding, two zero blocks at the end.
    const headers: number[] = [];
    const padding: number[] = [];
    const smallData: number[] = [];
    let componentData: [number, number] = [0, 0];
    const indexData: number[] = [];
    let pos = 0;
    while (tar.subarray(pos, pos + 512).some((b) => b !== 0)) {
      headers.push(pos);
      const isIndex = tar.subarray(pos, pos + 11).toString('latin1') === 'index.json\0';
      const size = Number.parseInt(
        tar
          .subarray(pos + 124, pos + 136)
          .toString('latin1')
          .replace(/[\0 ]/g, ''),
        8,
      );
      const data = pos + 512;
      const next = data + Math.ceil(size / 512) * 512;
      if (size > 4096) componentData = [data, size];
      else for (let i = data; i < data + size; i++) (isIndex ? indexData : smallData).push(i);
      for (let i = data + size; i < next; i++) padding.push(i);
      pos = next;
    }
    expect(headers).toHaveLength(11); // oci-layout, index.json, blobs/, blobs/sha256/, 7 blobs
    const end = every(tar.length - pos).map((i) => pos + i);
    expect(end.length).toBe(1024);
    const positions = [
      ...headers.flatMap((h) => every(512).map((i) => h + i)),
      ...padding,
      ...end,
      ...smallData,
      ...indexData,
      ...sample(componentData[1]).map((i) => componentData[0] + i),
    ];
    const codes = await flipEach(tarB, positions, () => verifyOnB(tarB));
    expect(codes.size).toBe(positions.length);
    const framing = [...headers.flatMap((h) => every(512).map((i) => h + i)), ...padding, ...end];
    for (const i of framing) expect(codes.get(i), `byte ${i}`).toBe('MALFORMED_LAYOUT');
    // Every byte outside index.json is covered by a digest or the framing check; index.json only locates.
    for (const i of positions) if (!indexData.includes(i)) expect(codes.get(i), `byte ${i}`).not.toBe('SAME_ARTIFACT');
    expect(new Set(indexData.map((i) => codes.get(i)))).toContain('SAME_ARTIFACT');
    expect(new Set(codes.values())).toEqual(
      new Set([
        'MALFORMED_LAYOUT',
        'UNSUPPORTED_MEDIA_TYPE',
        'BLOB_MISSING',
        'BLOB_DIGEST_MISMATCH',
        'MANIFEST_TAMPERED',
        'CONFIG_TAMPERED',
        'SAME_ARTIFACT',
      ]),
    );
    expect(network.attempts()).toBe(0);
    await expect(verifyOnB(tarB)).resolves.toMatchObject({ digest });
  });

  it('refuses every single-byte change of the detached bundle', async () => {
    const path = `${artifactB}.sigstore.json`;
    const size = (await readFile(path)).length;
    const codes = await flipEach(path, every(size));
    expect(codes.size).toBe(size);
    for (const code of codes.values()) expect(EXPECTED.detachedBundle).toContain(code);
    // Each kind of damage is reported by its own code.
    expect(new Set(codes.values())).toEqual(new Set(EXPECTED.detachedBundle));
    await expect(verifyOnB()).resolves.toMatchObject({ digest });
  });

  it('refuses every single-byte change of the public key', async () => {
    const size = (await readFile(publicKeyB)).length;
    const codes = await flipEach(publicKeyB, every(size));
    expect(codes.size).toBe(size);
    for (const code of codes.values()) expect(EXPECTED.publicKey).toContain(code);
    await expect(verifyOnB()).resolves.toMatchObject({ digest });
  });

  it('refuses the artifact when the bundle is missing entirely (UNSIGNED) on a copy without signatures', async () => {
    const bare = join(machineB, 'bare');
    await mkdir(bare);
    // A fresh pack of the same input reproduces the same digest, but carries no signature.
    const again = await packArtifact(await watFixtureFile('cat', bare), join(bare, 'x.oci'), {
      manifest: EVENT_TRANSFORM_MANIFEST,
    });
    expect(again.digest).toBe(digest);
    expect(await codeOf(async () => verifyArtifact(join(bare, 'x.oci'), await loadTrustPolicy([publicKeyB])))).toBe(
      'UNSIGNED',
    );
  });
});
