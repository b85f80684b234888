import { createHash } from 'node:crypto';
import { cp, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { createStore } from '@vyr/artifact';
import { buildWatFixture, cleanupTempDirs, fixturePath, tempDir } from '@vyr/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode, runCli } from '../src/index.js';

afterAll(cleanupTempDirs);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `vyr …` in-process with captured output, in `cwd`, with the given environment. */
async function vyr(cwd: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on('data', (c: Buffer) => out.push(c.toString()));
  stderr.on('data', (c: Buffer) => err.push(c.toString()));
  const code = await runCli(args, {
    context: { stdout, stderr, stdin: new PassThrough(), env, cwd, setExitCode: () => undefined },
  });
  return { code, stdout: out.join(''), stderr: err.join('') };
}

const MANIFEST = {
  name: 'event-transform',
  version: '0.1.0',
  env: ['LOG_LEVEL'],
  state: [{ name: 'data', mount: '/data', access: 'rw', quotaBytes: 67108864 }],
  limits: { memoryBytes: 67108864, deadlineMs: 30000 },
};

describe('vyr key / pack / sign / verify / inspect', () => {
  it('runs the whole cycle with human output, and verifies on another "machine"', async () => {
    const a = await tempDir();
    await writeFile(join(a, 'hello.wasm'), await buildWatFixture('hello'));
    await writeFile(join(a, 'vyr.json'), JSON.stringify(MANIFEST));

    const key = await vyr(a, ['key', 'generate', '--out', 'keys']);
    expect(key.code).toBe(0);
    expect(key.stdout).toMatch(/key id +[0-9a-f]{64}/);
    expect((await stat(join(a, 'keys/vyr.key'))).mode & 0o777).toBe(0o600);

    const pack = await vyr(a, ['pack', 'hello.wasm', '--manifest', 'vyr.json', '--out', 'app.oci']);
    expect(pack.code).toBe(0);
    expect(pack.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    const digest = pack.stdout.trim();
    expect(pack.stderr).toContain('packed event-transform@0.1.0 (wasip1 module, adapted');

    const sign = await vyr(a, ['sign', 'app.oci', '--key', 'keys/vyr.key']);
    expect(sign.code).toBe(0);
    expect(sign.stdout).toContain(`signed ${digest} with key `);

    const b = await tempDir();
    await cp(join(a, 'app.oci'), join(b, 'app.oci'), { recursive: true });
    await cp(join(a, 'app.oci.sigstore.json'), join(b, 'app.oci.sigstore.json'));
    await cp(join(a, 'keys/vyr.pub'), join(b, 'vyr.pub'));
    const verify = await vyr(b, ['verify', 'app.oci', '--trust', 'vyr.pub']);
    expect(verify).toMatchObject({ code: 0, stderr: '' });
    expect(verify.stdout).toMatch(
      new RegExp(`^verified ${digest} event-transform@0\\.1\\.0: signed by trusted key [0-9a-f]{64}\\n$`),
    );

    const inspect = await vyr(b, ['inspect', 'app.oci']);
    expect(inspect.code).toBe(0);
    expect(inspect.stdout).toContain(`digest     ${digest}`);
    expect(inspect.stdout).toContain('os         wasip1 (adapted)');
    expect(inspect.stdout).toMatch(/world +wasi:cli\/command@0\.2\./);
    expect(inspect.stdout).toContain('  data at /data (rw, quota 64.0 MiB)');
    expect(inspect.stdout).toContain('env        LOG_LEVEL');
    expect(inspect.stdout).toContain('limits     memory 64.0 MiB, deadline 30000 ms');
    expect(inspect.stdout).toMatch(/signatures\n {2}key [0-9a-f]{64} \(layout\)/);
  });

  it('prints one JSON document per result with --json', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wasm'), await buildWatFixture('hello'));
    const key = JSON.parse((await vyr(dir, ['--json', 'key', 'generate', '--out', '.'])).stdout);
    const pack = JSON.parse((await vyr(dir, ['--json', 'pack', 'hello.wasm', '--out', 'hello.tar'])).stdout);
    expect(pack).toMatchObject({ name: 'hello', version: '0.0.0', source: 'wasip1-adapted' });
    const sign = JSON.parse((await vyr(dir, ['--json', 'sign', 'hello.tar', '--key', 'vyr.key'])).stdout);
    expect(sign).toMatchObject({ digest: pack.digest, keyId: key.keyId });
    const verify = JSON.parse((await vyr(dir, ['--json', 'verify', 'hello.tar', '--trust', 'vyr.pub'])).stdout);
    expect(verify).toMatchObject({ digest: pack.digest, verified: true, signed: true, trustedKeyIds: [key.keyId] });
    const info = JSON.parse((await vyr(dir, ['--json', 'inspect', 'hello.tar'])).stdout);
    expect(info).toMatchObject({ digest: pack.digest, os: 'wasip1 (adapted)', signatures: [{ keyId: key.keyId }] });
  });

  it('packs reproducibly and honours SOURCE_DATE_EPOCH', async () => {
    const dir = await tempDir();
    const c = fixturePath('hello-c');
    const one = (await vyr(dir, ['pack', c, '--out', 'one.oci'])).stdout;
    const two = (await vyr(dir, ['pack', c, '--out', 'two.tar'])).stdout;
    expect(two).toBe(one);
    const dated = await vyr(dir, ['pack', c, '--out', 'dated.oci'], { SOURCE_DATE_EPOCH: '1700000000' });
    expect(dated.stdout).not.toBe(one);
    expect((await vyr(dir, ['inspect', 'dated.oci'])).stdout).toContain('created    2023-11-14T22:13:20Z');
    const bad = await vyr(dir, ['pack', c, '--out', 'x.oci'], { SOURCE_DATE_EPOCH: 'yesterday' });
    expect(bad.code).toBe(ExitCode.INVALID_INPUT);
  });

  it('maps refusals to documented exit codes with a coded message', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wasm'), await buildWatFixture('hello'));
    await writeFile(join(dir, 'bad.wasm'), await buildWatFixture('bad-import'));
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await vyr(dir, ['key', 'generate', '--out', '.']);
    await vyr(dir, ['key', 'generate', '--out', 'other']);

    const exists = await vyr(dir, ['key', 'generate', '--out', '.']);
    expect(exists.code).toBe(ExitCode.ALREADY_EXISTS);
    expect(exists.stderr).toMatch(/^vyr: ALREADY_EXISTS: .*--force/);
    expect((await vyr(dir, ['key', 'generate', '--out', '.', '--force'])).code).toBe(0);

    expect((await vyr(dir, ['pack', 'notes.txt', '--out', 'x'])).stderr).toMatch(/^vyr: NOT_WASM: /);
    const badImport = await vyr(dir, ['pack', 'bad.wasm', '--out', 'x']);
    expect(badImport).toMatchObject({ code: ExitCode.INVALID_INPUT });
    expect(badImport.stderr).toContain('UNSUPPORTED_IMPORTS');
    const image = await vyr(dir, ['pack', 'nginx:1.27', '--out', 'x']);
    expect(image.code).toBe(ExitCode.INVALID_INPUT);
    expect(image.stderr).toContain(
      'vyr: CONTAINER_IMAGE: nginx:1.27 looks like a container image reference: container images are not an execution path in VYR MVO',
    );
    expect((await vyr(dir, ['pack', 'missing.wasm', '--out', 'x'])).code).toBe(ExitCode.NOT_FOUND);

    await vyr(dir, ['pack', 'hello.wasm', '--out', 'app.oci']);
    const unsigned = await vyr(dir, ['verify', 'app.oci', '--trust', 'vyr.pub']);
    expect(unsigned.code).toBe(ExitCode.VERIFY_FAILED);
    expect(unsigned.stderr).toMatch(/^vyr: UNSIGNED: /);
    expect((await vyr(dir, ['verify', 'app.oci', '--allow-unsigned'])).stdout).toContain(
      'UNSIGNED, accepted only because --allow-unsigned',
    );

    await vyr(dir, ['sign', 'app.oci', '--key', 'vyr.key']);
    const untrusted = await vyr(dir, ['verify', 'app.oci', '--trust', 'other/vyr.pub']);
    expect(untrusted.code).toBe(ExitCode.VERIFY_FAILED);
    expect(untrusted.stderr).toMatch(/^vyr: UNTRUSTED_KEY: /);

    const bundle = join(dir, 'app.oci.sigstore.json');
    const original = await readFile(bundle, 'utf8');
    await writeFile(bundle, original.replace('"SHA2_256"', '"SHA2_384"'));
    const malformed = await vyr(dir, ['--json', 'verify', 'app.oci', '--trust', 'vyr.pub']);
    expect(malformed.code).toBe(ExitCode.VERIFY_FAILED);
    expect(JSON.parse(malformed.stdout)).toMatchObject({ error: { code: 'MALFORMED_BUNDLE' } });
    await writeFile(bundle, original);

    await writeFile(join(dir, 'broken.pub'), '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
    expect((await vyr(dir, ['verify', 'app.oci', '--trust', 'broken.pub'])).code).toBe(ExitCode.INVALID_INPUT);
    expect((await vyr(dir, ['verify', 'app.oci', '--trust', 'vyr.pub'])).code).toBe(0);
    // No --trust: said as such (a usage error), not blamed on the signer.
    const noTrust = await vyr(dir, ['verify', 'app.oci']);
    expect(noTrust.code).toBe(ExitCode.USAGE);
    expect(noTrust.stderr).toMatch(/^vyr: NO_TRUSTED_KEYS: no trusted keys were given: pass .*--trust/);
    const signedNoTrust = await vyr(dir, ['verify', 'app.oci', '--allow-unsigned']);
    expect(signedNoTrust.code).toBe(ExitCode.USAGE);
    expect(signedNoTrust.stderr).toMatch(/^vyr: NO_TRUSTED_KEYS: sha256:[0-9a-f]{64} is signed, but no trusted keys/);
    // A directory given as a key: MALFORMED_KEY naming the file to give.
    const keyDir = await vyr(dir, ['verify', 'app.oci', '--trust', 'other']);
    expect(keyDir.code).toBe(ExitCode.INVALID_INPUT);
    expect(keyDir.stderr).toMatch(/^vyr: MALFORMED_KEY: .*other is a directory, not a key file; .*other\/vyr\.pub/);
    expect((await vyr(dir, ['sign', 'app.oci', '--key', 'other'])).stderr).toMatch(
      /^vyr: MALFORMED_KEY: .*other is a directory, not a key file; .*other\/vyr\.key/,
    );
    // key generate --out a file: not a directory.
    const notDir = await vyr(dir, ['key', 'generate', '--out', 'notes.txt']);
    expect(notDir.code).toBe(ExitCode.INVALID_INPUT);
    expect(notDir.stderr).toMatch(/^vyr: INVALID_ARGUMENT: .*notes\.txt is not a directory/);
    // WAT given to pack: compile it first.
    await writeFile(join(dir, 'hello.wat'), '(module)');
    expect((await vyr(dir, ['pack', 'hello.wat', '--out', 'x'])).stderr).toMatch(/^vyr: NOT_WASM: .*wat2wasm/);
    expect((await vyr(dir, ['sign', 'app.oci'])).code).toBe(ExitCode.USAGE);
  });

  it('pack --out never wipes an existing container image layout (exit 73 unless --force) nor a store', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wasm'), await buildWatFixture('hello'));
    // A copy of a container image layout (as `skopeo copy docker://… oci:img-copy` leaves it).
    const image = join(dir, 'img-copy');
    await mkdir(join(image, 'blobs/sha256'), { recursive: true });
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const configHex = createHash('sha256').update(config).digest('hex');
    await writeFile(join(image, 'blobs/sha256', configHex), config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: `sha256:${configHex}`,
          size: config.length,
        },
        layers: [],
      }),
    );
    const manifestHex = createHash('sha256').update(manifest).digest('hex');
    await writeFile(join(image, 'blobs/sha256', manifestHex), manifest);
    await writeFile(join(image, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    const index = JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: `sha256:${manifestHex}`,
          size: manifest.length,
        },
      ],
    });
    await writeFile(join(image, 'index.json'), index);

    const refused = await vyr(dir, ['pack', 'hello.wasm', '--out', 'img-copy']);
    expect(refused.code).toBe(ExitCode.ALREADY_EXISTS);
    expect(refused.stderr).toMatch(/^vyr: ALREADY_EXISTS: .*img-copy is an OCI layout .*--force/);
    expect((await readdir(join(image, 'blobs/sha256'))).sort()).toEqual([configHex, manifestHex].sort());
    expect(await readFile(join(image, 'index.json'), 'utf8')).toBe(index);

    const forced = await vyr(dir, ['pack', 'hello.wasm', '--out', 'img-copy', '--force']);
    expect(forced.code).toBe(0);
    expect((await vyr(dir, ['inspect', 'img-copy'])).stdout).toContain(`digest     ${forced.stdout.trim()}`);

    // A node's store directory is never a pack target, --force or not.
    const store = createStore({ dir: join(dir, 'data/artifacts') });
    await store.import(join(dir, 'img-copy'));
    const storeIndex = await readFile(join(store.dir, 'index.json'), 'utf8');
    for (const extra of [[], ['--force']]) {
      const run = await vyr(dir, ['pack', 'hello.wasm', '--out', 'data/artifacts', ...extra]);
      expect(run.code).toBe(ExitCode.ALREADY_EXISTS);
      expect(run.stderr).toContain('is a VYR artifact store');
    }
    expect(await readFile(join(store.dir, 'index.json'), 'utf8')).toBe(storeIndex);
  });

  it('reads index.json only to locate the manifest: exit 64 when it is malformed, 65 when it points at other bytes, 0 for a retagged copy', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wasm'), await buildWatFixture('hello'));
    await vyr(dir, ['key', 'generate', '--out', '.']);
    const digest = (await vyr(dir, ['pack', 'hello.wasm', '--out', 'app.oci'])).stdout.trim();
    await vyr(dir, ['sign', 'app.oci', '--key', 'vyr.key']);
    const index = join(dir, 'app.oci', 'index.json');
    const original = await readFile(index, 'utf8');
    const cases: [string, string, number, string][] = [
      ['index media type', 'image.index.v1', ExitCode.INVALID_INPUT, 'UNSUPPORTED_MEDIA_TYPE'],
      // A tag is not signed: other tools rewrite it (skopeo copy … oci:dir:TAG); the digest pins what runs.
      ['ref.name annotation', '"hello:0.0.0"', ExitCode.OK, 'verified'],
      // A decimal digit of the hex: flipped, it is still hex, so the index names a blob that is not there.
      ['manifest digest', digest.slice(7).match(/\d.{2}/)![0], ExitCode.VERIFY_FAILED, 'BLOB_MISSING'],
    ];
    for (const [what, needle, exit, code] of cases) {
      const at = original.indexOf(needle) + (what === 'manifest digest' ? 0 : 2);
      expect(at, what).toBeGreaterThan(1);
      const flipped = Buffer.from(original);
      flipped[at] = flipped[at]! ^ 0x01;
      await writeFile(index, flipped);
      const run = await vyr(dir, ['verify', 'app.oci', '--trust', 'vyr.pub']);
      const said = run.code === 0 ? run.stdout.split(' ')[0] : run.stderr.split(': ').slice(0, 2).join(': ');
      expect({ what, exit: run.code, said }).toEqual({
        what,
        exit,
        said: code === 'verified' ? code : `vyr: ${code}`,
      });
    }
    await writeFile(index, original);
    expect((await vyr(dir, ['verify', 'app.oci', '--trust', 'vyr.pub'])).code).toBe(0);
  });

  it('refuses a gzip-compressed artifact (exit 64, asking to gunzip) instead of reading it quietly', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'hello.wasm'), await buildWatFixture('hello'));
    await vyr(dir, ['key', 'generate', '--out', '.']);
    await vyr(dir, ['pack', 'hello.wasm', '--out', 'app.tar']);
    await vyr(dir, ['sign', 'app.tar', '--key', 'vyr.key']);
    await writeFile(join(dir, 'app.tar.gz'), gzipSync(await readFile(join(dir, 'app.tar'))));
    const run = await vyr(dir, ['verify', 'app.tar.gz', '--trust', 'vyr.pub', '--bundle', 'app.tar.sigstore.json']);
    expect(run.code).toBe(ExitCode.INVALID_INPUT);
    expect(run.stderr).toMatch(/^vyr: UNSUPPORTED_MEDIA_TYPE: .*app\.tar\.gz is gzip-compressed .*gunzip/);
    const pack = await vyr(dir, ['pack', 'app.tar.gz', '--out', 'x']);
    expect(pack.code).toBe(ExitCode.INVALID_INPUT);
    expect(pack.stderr).toMatch(/^vyr: INVALID_ARGUMENT: .*gzip-compressed VYR artifact/);
  });
});
