import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse as parseComponentWat } from '@bytecodealliance/jco';
import { C_FIXTURES, cleanupTempDirs, fixturePath, tempDir, watFixtureFile, watSource } from '@vyr/testing';
import { create as createTar } from 'tar';
import { afterAll, describe, expect, it } from 'vitest';
import { createStore, inspectArtifact, packArtifact, readArtifact, signArtifact, writeKeyPair } from '../src/index.js';
import { codeOf, EVENT_TRANSFORM_MANIFEST, errorOf, writeContainerImageLayout } from './helpers.js';

afterAll(cleanupTempDirs);

describe('pack', () => {
  it('adapts a WASI P1 module into a wasi:cli/command component in an OCI image layout', async () => {
    const dir = await tempDir();
    const input = await watFixtureFile('hello', dir);
    const result = await packArtifact(input, join(dir, 'hello.oci'));
    expect(result.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(result.source).toBe('wasip1-adapted');
    expect(result.component.target).toMatch(/^wasi:cli\/command@0\.2\.\d+$/);
    expect(result.component.exports).toEqual([result.component.target.replace('command', 'run')]);
    expect(result.manifest).toEqual({ name: 'hello', version: '0.0.0', env: [], state: [], limits: {} });

    const layout = join(dir, 'hello.oci');
    expect(await readFile(join(layout, 'oci-layout'), 'utf8')).toBe('{"imageLayoutVersion":"1.0.0"}');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0]).toMatchObject({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/vnd.wasm.config.v0+json',
      digest: result.digest,
    });
    const manifestBytes = await readFile(join(layout, 'blobs/sha256', result.digest.slice(7)));
    // The address is the SHA-256 of the manifest bytes.
    expect(`sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`).toBe(result.digest);
    const manifest = JSON.parse(manifestBytes.toString('utf8'));
    expect(manifest.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(manifest.config.mediaType).toBe('application/vnd.wasm.config.v0+json');
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([
      'application/wasm',
      'application/vnd.vyr.manifest.v1+json',
    ]);
    expect(manifest.annotations['org.opencontainers.image.created']).toBeUndefined();
    const config = JSON.parse(await readFile(join(layout, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'));
    expect(config).toMatchObject({ architecture: 'wasm', os: 'wasip2' });
    expect(config.layerDigests).toEqual(manifest.layers.map((l: { digest: string }) => l.digest));
    expect(config.component.imports).toContain(
      config.component.imports.find((i: string) => i.startsWith('wasi:cli/stdout')),
    );
    const component = await readFile(join(layout, 'blobs/sha256', manifest.layers[0].digest.slice(7)));
    expect([...component.subarray(0, 8)]).toEqual([0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]);
  });

  it('is reproducible: same inputs give the same digest, as a directory and as a .tar', async () => {
    const dir = await tempDir();
    const input = await watFixtureFile('env', dir);
    const manifest = join(dir, 'vyr.json');
    await writeFile(manifest, JSON.stringify(EVENT_TRANSFORM_MANIFEST));
    const a = await packArtifact(input, join(dir, 'a.oci'), { manifest });
    const b = await packArtifact(input, join(dir, 'b.oci'), { manifest });
    const t1 = await packArtifact(input, join(dir, 't1.tar'), { manifest });
    const t2 = await packArtifact(input, join(dir, 't2.tar'), { manifest });
    expect(t2.digest).toBe(a.digest);
    expect(b.digest).toBe(a.digest);
    expect(t1.digest).toBe(a.digest);
    // The tar files themselves are byte-identical (fixed order, mtime, owners, modes).
    expect(await readFile(join(dir, 't2.tar'))).toEqual(await readFile(join(dir, 't1.tar')));
    expect((await readArtifact(join(dir, 't1.tar'))).digest).toBe(a.digest);
  });

  it('records SOURCE_DATE_EPOCH as the creation time, and only then', async () => {
    const dir = await tempDir();
    const input = await watFixtureFile('hello', dir);
    const plain = await packArtifact(input, join(dir, 'plain.oci'));
    const dated = await packArtifact(input, join(dir, 'dated.oci'), { sourceDateEpoch: 1_700_000_000 });
    const again = await packArtifact(input, join(dir, 'again.oci'), { sourceDateEpoch: 1_700_000_000 });
    expect(dated.digest).not.toBe(plain.digest);
    expect(again.digest).toBe(dated.digest);
    const info = await inspectArtifact(join(dir, 'dated.oci'));
    expect(info.created).toBe('2023-11-14T22:13:20Z');
  });

  it('packs the issue manifest and keeps the declarations as the second layer', async () => {
    const dir = await tempDir();
    const manifest = join(dir, 'vyr.json');
    await writeFile(manifest, JSON.stringify(EVENT_TRANSFORM_MANIFEST));
    await packArtifact(await watFixtureFile('fs', dir), join(dir, 'et.oci'), { manifest });
    const artifact = await readArtifact(join(dir, 'et.oci'));
    expect(artifact.manifest).toEqual(EVENT_TRANSFORM_MANIFEST);
    expect(artifact.source).toBe('wasip1-adapted');
  });

  it('accepts a WASI P2 command component as is', async () => {
    const dir = await tempDir();
    await packArtifact(await watFixtureFile('hello', dir), join(dir, 'p1.oci'));
    const component = (await readArtifact(join(dir, 'p1.oci'))).component;
    await writeFile(join(dir, 'hello-p2.wasm'), component);
    const result = await packArtifact(join(dir, 'hello-p2.wasm'), join(dir, 'p2.oci'));
    expect(result.source).toBe('wasip2');
    const reread = await readArtifact(join(dir, 'p2.oci'));
    expect(reread.component).toEqual(component);
    expect((await inspectArtifact(reread)).os).toBe('wasip2');
  });

  it.each(C_FIXTURES)('packs the C fixture %s (clang-19 + wasi-libc) as an adapted command', async (name) => {
    const dir = await tempDir();
    const result = await packArtifact(fixturePath(name), join(dir, `${name}.oci`));
    expect(result.source).toBe('wasip1-adapted');
    expect(result.manifest.name).toBe(name);
    expect(result.component.imports).toEqual(
      expect.arrayContaining([expect.stringMatching(/^wasi:filesystem\/preopens@/)]),
    );
  });

  it('refuses a file that is not Wasm with NOT_WASM', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'script.sh'), '#!/bin/sh\necho hi\n');
    const err = await errorOf(() => packArtifact(join(dir, 'script.sh'), join(dir, 'out')));
    expect(err.code).toBe('NOT_WASM');
    expect(err.message).toContain('script.sh is not WebAssembly');
  });

  it('recognises WebAssembly text (WAT) and says to compile it with wat2wasm', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wat'), `;; a comment\n(; a block ;)\n${await watSource('hello')}`);
    const err = await errorOf(() => packArtifact(join(dir, 'hello.wat'), join(dir, 'out')));
    expect(err.code).toBe('NOT_WASM');
    expect(err.message).toContain('is WebAssembly text format (WAT), not a binary');
    expect(err.message).toContain(`wat2wasm ${join(dir, 'hello.wat')} -o ${join(dir, 'hello')}.wasm`);
    await writeFile(join(dir, 'c.wat'), '  (component)');
    expect((await errorOf(() => packArtifact(join(dir, 'c.wat'), join(dir, 'out')))).message).toContain('wat2wasm');
  });

  it('refuses Wasm bytes that do not validate with INVALID_WASM', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'broken.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1]));
    expect(await codeOf(() => packArtifact(join(dir, 'broken.wasm'), join(dir, 'out')))).toBe('INVALID_WASM');
  });

  it('refuses a core module importing outside wasi_snapshot_preview1, naming the import', async () => {
    const dir = await tempDir();
    const err = await errorOf(async () => packArtifact(await watFixtureFile('bad-import', dir), join(dir, 'out')));
    expect(err.code).toBe('UNSUPPORTED_IMPORTS');
    expect(err.message).toContain('env::host_call');
  });

  it('refuses a preview1 module that is not a command (no _start)', async () => {
    const dir = await tempDir();
    const err = await errorOf(async () => packArtifact(await watFixtureFile('reactor', dir), join(dir, 'out')));
    expect(err.code).toBe('UNSUPPORTED_WORLD');
    expect(err.message).toContain('_start');
  });

  it('refuses a component whose world is not wasi:cli/command', async () => {
    const dir = await tempDir();
    const component = await parseComponentWat(`(component
      (core module $m (func (export "f") (result i32) i32.const 42))
      (core instance $i (instantiate $m))
      (func (export "answer") (result u32) (canon lift (core func $i "f"))))`);
    await writeFile(join(dir, 'lib.wasm'), component);
    const err = await errorOf(() => packArtifact(join(dir, 'lib.wasm'), join(dir, 'out')));
    expect(err.code).toBe('UNSUPPORTED_WORLD');
    expect(err.message).toContain('not a wasi:cli/command component');
    expect(err.message).toContain('answer');
  });

  describe('container images (the compatibility stub)', () => {
    const expected = 'container images are not an execution path in VYR MVO';

    it('refuses an OCI image layout directory', async () => {
      const dir = await tempDir();
      const image = join(dir, 'image');
      await writeContainerImageLayout(image);
      const err = await errorOf(() => packArtifact(image, join(dir, 'out')));
      expect(err.code).toBe('CONTAINER_IMAGE');
      expect(err.message).toContain(expected);
      // Verification and inspection refuse it the same way.
      expect(await codeOf(() => readArtifact(image))).toBe('CONTAINER_IMAGE');
    });

    it('refuses a `docker save` tarball', async () => {
      const dir = await tempDir();
      const src = join(dir, 'src');
      await mkdir(src);
      await writeFile(join(src, 'manifest.json'), '[{"Config":"c.json","RepoTags":["nginx:latest"],"Layers":[]}]');
      await writeFile(join(src, 'c.json'), '{}');
      await createTar({ file: join(dir, 'nginx.tar'), cwd: src, portable: true }, ['manifest.json', 'c.json']);
      const err = await errorOf(() => packArtifact(join(dir, 'nginx.tar'), join(dir, 'out')));
      expect(err.code).toBe('CONTAINER_IMAGE');
      expect(err.message).toContain(expected);
    });

    it('treats gzip the same way in pack and in every reader: never accepted, named by what it holds', async () => {
      const dir = await tempDir();
      const gz = async (name: string, bytes: Uint8Array): Promise<string> => {
        await writeFile(join(dir, name), gzipSync(bytes));
        return join(dir, name);
      };
      // A gzipped `docker save` tarball and a gzipped OCI image layout tar: container images, for pack and readers.
      const src = join(dir, 'src');
      await mkdir(src);
      await writeFile(join(src, 'manifest.json'), '[{"Config":"c.json","RepoTags":["nginx:latest"],"Layers":[]}]');
      await writeFile(join(src, 'c.json'), '{}');
      await createTar({ file: join(dir, 'nginx.tar'), cwd: src, portable: true }, ['manifest.json', 'c.json']);
      const image = join(dir, 'image');
      await writeContainerImageLayout(image);
      await createTar({ file: join(dir, 'oci.tar'), cwd: image, portable: true }, [
        'oci-layout',
        'index.json',
        'blobs',
      ]);
      for (const name of ['nginx.tar', 'oci.tar']) {
        const path = await gz(`${name}.gz`, await readFile(join(dir, name)));
        const err = await errorOf(() => packArtifact(path, join(dir, 'out')));
        expect(err.code).toBe('CONTAINER_IMAGE');
        expect(err.message).toContain('(gzip-compressed)');
        expect(await codeOf(() => readArtifact(path))).toBe('CONTAINER_IMAGE');
      }
      // A gzipped VYR artifact: pack says it is packed already; readers refuse it (exit 64), asking to gunzip.
      const input = await watFixtureFile('hello', dir);
      await packArtifact(input, join(dir, 'app.tar'));
      const appGz = await gz('app.tar.gz', await readFile(join(dir, 'app.tar')));
      expect(await codeOf(() => packArtifact(appGz, join(dir, 'out')))).toBe('INVALID_ARGUMENT');
      const read = await errorOf(() => readArtifact(appGz));
      expect(read.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      expect(read.message).toContain('gzip-compressed (a VYR artifact inside)');
      expect(read.message).toContain('gunzip');
      const appGzBytes = new Uint8Array(await readFile(appGz));
      expect(await codeOf(() => readArtifact(appGzBytes))).toBe('UNSUPPORTED_MEDIA_TYPE');
      // Gzipped Wasm, or anything else gzipped: pack says NOT_WASM and to decompress; readers refuse it the same way.
      const wasmGz = await gz('hello.wasm.gz', await readFile(input));
      const notWasm = await errorOf(() => packArtifact(wasmGz, join(dir, 'out')));
      expect(notWasm.code).toBe('NOT_WASM');
      expect(notWasm.message).toContain('gzip-compressed WebAssembly');
      const textGz = await gz('notes.gz', new TextEncoder().encode('notes'));
      expect(await codeOf(() => packArtifact(textGz, join(dir, 'out')))).toBe('NOT_WASM');
      expect(await codeOf(() => readArtifact(textGz))).toBe('UNSUPPORTED_MEDIA_TYPE');
    });

    it('refuses an image reference given instead of a file', async () => {
      const err = await errorOf(() => packArtifact('docker.io/library/nginx:1.27', '/nonexistent/out'));
      expect(err.code).toBe('CONTAINER_IMAGE');
      expect(err.message).toContain(expected);
    });

    it('refuses an image manifest JSON file', async () => {
      const dir = await tempDir();
      await writeFile(
        join(dir, 'manifest.json'),
        JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json' }),
      );
      expect(await codeOf(() => packArtifact(join(dir, 'manifest.json'), join(dir, 'out')))).toBe('CONTAINER_IMAGE');
    });
  });

  it('reports a missing input or manifest as NOT_FOUND and a bad manifest as INVALID_MANIFEST', async () => {
    const dir = await tempDir();
    const input = await watFixtureFile('hello', dir);
    expect(await codeOf(() => packArtifact(join(dir, 'nope.wasm'), join(dir, 'o')))).toBe('NOT_FOUND');
    expect(await codeOf(() => packArtifact(input, join(dir, 'o'), { manifest: join(dir, 'nope.json') }))).toBe(
      'NOT_FOUND',
    );
    await writeFile(join(dir, 'vyr.json'), '{"name":"x","version":"one"}');
    const err = await errorOf(() => packArtifact(input, join(dir, 'o'), { manifest: join(dir, 'vyr.json') }));
    expect(err.code).toBe('INVALID_MANIFEST');
    expect(err.message).toContain('version');
    // Nothing was written for a refused input.
    await expect(stat(join(dir, 'o'))).rejects.toThrow();
  });

  describe('--out over something that exists', () => {
    it('repacks over a VYR artifact (and its signatures) it wrote before', async () => {
      const dir = await tempDir();
      const out = join(dir, 'out.oci');
      await packArtifact(await watFixtureFile('env', dir), out);
      const keys = await writeKeyPair(join(dir, 'keys'));
      await signArtifact(out, { path: keys.privateKeyPath });
      const second = await packArtifact(await watFixtureFile('hello', dir), out);
      expect((await readArtifact(out)).digest).toBe(second.digest);
      // Blobs of the previous artifact and its signature are gone, and so is its detached bundle.
      expect(await readdir(join(out, 'blobs/sha256'))).toHaveLength(4);
      await expect(stat(`${out}.sigstore.json`)).rejects.toThrow();
      // Same for a .tar.
      await packArtifact(await watFixtureFile('env', dir), join(dir, 'out.tar'));
      expect((await packArtifact(await watFixtureFile('hello', dir), join(dir, 'out.tar'))).digest).toBe(second.digest);
    });

    it('never writes into a non-empty directory that is not an OCI layout, even with force', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      await mkdir(join(dir, 'docs'));
      await writeFile(join(dir, 'docs', 'notes.txt'), 'mine');
      expect(await codeOf(() => packArtifact(input, join(dir, 'docs')))).toBe('ALREADY_EXISTS');
      expect(await codeOf(() => packArtifact(input, join(dir, 'docs'), { force: true }))).toBe('ALREADY_EXISTS');
      expect(await readdir(join(dir, 'docs'))).toEqual(['notes.txt']);
    });

    it('refuses to replace a container image layout unless forced, and leaves its blobs alone', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      const image = join(dir, 'img-copy');
      const blobs = await writeContainerImageLayout(image);
      const index = await readFile(join(image, 'index.json'));
      const err = await errorOf(() => packArtifact(input, image));
      expect(err.code).toBe('ALREADY_EXISTS');
      expect(err.message).toContain('--force');
      expect((await readdir(join(image, 'blobs/sha256'))).sort()).toEqual(blobs.sort());
      expect(await readFile(join(image, 'index.json'))).toEqual(index);
      // With force it is replaced by the artifact.
      const forced = await packArtifact(input, image, { force: true });
      expect((await readArtifact(image)).digest).toBe(forced.digest);
    });

    it('refuses to replace a layout holding several VYR artifacts, or an unreadable one, unless forced', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      const two = join(dir, 'two.oci');
      await packArtifact(await watFixtureFile('env', dir), two);
      await packArtifact(input, join(dir, 'one.oci'));
      // Graft a second artifact into the first layout's index.
      const a = JSON.parse(await readFile(join(two, 'index.json'), 'utf8'));
      const b = JSON.parse(await readFile(join(dir, 'one.oci', 'index.json'), 'utf8'));
      await writeFile(join(two, 'index.json'), JSON.stringify({ ...a, manifests: [...a.manifests, ...b.manifests] }));
      expect(await codeOf(() => packArtifact(input, two))).toBe('ALREADY_EXISTS');
      const broken = join(dir, 'broken.oci');
      await packArtifact(input, broken);
      await writeFile(join(broken, 'index.json'), '{not json');
      expect(await codeOf(() => packArtifact(input, broken))).toBe('ALREADY_EXISTS');
      await packArtifact(input, broken, { force: true });
      expect((await readArtifact(broken)).manifest.name).toBe('hello');
    });

    it('refuses to replace a .tar that is not a single VYR artifact unless forced', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      const src = join(dir, 'src');
      await writeContainerImageLayout(src);
      await createTar({ file: join(dir, 'image.tar'), cwd: src, portable: true }, [
        'oci-layout',
        'index.json',
        'blobs',
      ]);
      const before = await readFile(join(dir, 'image.tar'));
      expect(await codeOf(() => packArtifact(input, join(dir, 'image.tar')))).toBe('ALREADY_EXISTS');
      expect(await readFile(join(dir, 'image.tar'))).toEqual(before);
      await writeFile(join(dir, 'notes.tar'), 'not a tar');
      expect(await codeOf(() => packArtifact(input, join(dir, 'notes.tar')))).toBe('ALREADY_EXISTS');
      const forced = await packArtifact(input, join(dir, 'image.tar'), { force: true });
      expect((await readArtifact(join(dir, 'image.tar'))).digest).toBe(forced.digest);
    });

    it('never overwrites an artifact store, even with force', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      await packArtifact(input, join(dir, 'a.oci'));
      const store = createStore({ dir: join(dir, 'store') });
      // A store holding exactly one artifact looks like an artifact layout but for its marker.
      await store.import(join(dir, 'a.oci'));
      const index = await readFile(join(store.dir, 'index.json'));
      for (const force of [false, true]) {
        const err = await errorOf(() => packArtifact(input, store.dir, { force }));
        expect(err.code).toBe('ALREADY_EXISTS');
        expect(err.message).toContain('artifact store');
      }
      expect(await readFile(join(store.dir, 'index.json'))).toEqual(index);
      expect(await store.list()).toHaveLength(1);
    });

    it('refuses an --out whose kind does not match: a file where a directory is meant, or the reverse', async () => {
      const dir = await tempDir();
      const input = await watFixtureFile('hello', dir);
      await writeFile(join(dir, 'file.oci'), 'x');
      expect(await codeOf(() => packArtifact(input, join(dir, 'file.oci'), { force: true }))).toBe('ALREADY_EXISTS');
      await packArtifact(input, join(dir, 'dir.tar.d'));
      await mkdir(join(dir, 'odd.tar'));
      await writeFile(join(dir, 'odd.tar', 'x'), 'x');
      expect(await codeOf(() => packArtifact(input, join(dir, 'odd.tar'), { force: true }))).toBe('ALREADY_EXISTS');
    });
  });
});
