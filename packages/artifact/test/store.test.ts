import { spawn } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupTempDirs, tempDir, watFixtureFile } from '@vyr/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createStore,
  createTrustPolicy,
  loadTrustPolicy,
  packArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '../src/index.js';
import { codeOf, EVENT_TRANSFORM_MANIFEST, errorOf } from './helpers.js';

afterAll(cleanupTempDirs);

const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
/** The store lock module (internal), for child processes that hold the lock. */
const DIST_LOCK = fileURLToPath(new URL('../dist/lock.js', import.meta.url));

/** Spawns a Node child running `script` (an ES module) with `args`; resolves when it printed `ready`. */
function spawnNode(script: string, args: string[]) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const ready = new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready\n')) resolve();
    });
    void exited.then(() => reject(new Error(`child exited before it was ready: ${out}`)));
  });
  return { child, ready, exited };
}

async function signedArtifact(name: 'hello' | 'env' | 'cat' = 'hello') {
  const dir = await tempDir();
  const keys = await writeKeyPair(join(dir, 'keys'));
  const artifact = join(dir, `${name}.oci`);
  const { digest } = await packArtifact(await watFixtureFile(name, dir), artifact, {
    manifest: { ...EVENT_TRANSFORM_MANIFEST, name },
  });
  await signArtifact(artifact, { path: keys.privateKeyPath });
  return { dir, keys, artifact, digest };
}

describe('artifact store', () => {
  it('imports an artifact and gets it back by digest, with its declarations, component and signature', async () => {
    const { artifact, digest, keys } = await signedArtifact();
    const store = createStore({ dir: await tempDir() });
    const stored = await store.import(artifact);
    expect(stored).toMatchObject({ digest, name: 'hello', version: '0.1.0', signatures: 1 });
    expect(await store.has(digest)).toBe(true);
    const loaded = await store.get(digest);
    expect(loaded.digest).toBe(digest);
    expect(loaded.manifest.state).toEqual(EVENT_TRANSFORM_MANIFEST.state);
    expect(loaded.component.subarray(0, 4)).toEqual(new Uint8Array([0, 0x61, 0x73, 0x6d]));
    expect(loaded.bundles).toHaveLength(1);
    // What the runtime does before running: verify the loaded artifact against the node's trust policy.
    const result = await verifyArtifact(loaded, await loadTrustPolicy([keys.publicKeyPath]));
    expect(result.trustedKeyIds).toEqual([keys.keyId]);
    // The store itself is an OCI image layout that the artifact reader accepts.
    expect(await readFile(join(store.dir, 'oci-layout'), 'utf8')).toBe('{"imageLayoutVersion":"1.0.0"}');
  });

  it('is idempotent: importing twice gives the same digest and the same files', async () => {
    const { artifact, digest } = await signedArtifact();
    const store = createStore({ dir: await tempDir() });
    await store.import(artifact);
    const indexBefore = await readFile(join(store.dir, 'index.json'));
    const blobsBefore = (await readdir(join(store.dir, 'blobs/sha256'))).sort();
    const again = await store.import(artifact);
    expect(again.digest).toBe(digest);
    expect(await readFile(join(store.dir, 'index.json'))).toEqual(indexBefore);
    expect((await readdir(join(store.dir, 'blobs/sha256'))).sort()).toEqual(blobsBefore);
    expect(await store.list()).toHaveLength(1);
  });

  it('imports a .tar artifact and tar bytes', async () => {
    const dir = await tempDir();
    const { digest } = await packArtifact(await watFixtureFile('hello', dir), join(dir, 'a.tar'));
    const store = createStore({ dir: await tempDir() });
    expect((await store.import(join(dir, 'a.tar'))).digest).toBe(digest);
    expect((await store.import(new Uint8Array(await readFile(join(dir, 'a.tar'))))).digest).toBe(digest);
    expect(await store.list()).toHaveLength(1);
  });

  it('keeps concurrent imports of the same artifact safe, in one process', async () => {
    const { artifact, digest } = await signedArtifact();
    const store = createStore({ dir: await tempDir() });
    const results = await Promise.all(Array.from({ length: 8 }, () => store.import(artifact)));
    expect(new Set(results.map((r) => r.digest))).toEqual(new Set([digest]));
    const index = JSON.parse(await readFile(join(store.dir, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(2); // the artifact and its one signature, once each
    expect((await store.get(digest)).digest).toBe(digest);
  });

  it('keeps concurrent imports safe across processes sharing the store directory', async () => {
    const a = await signedArtifact('hello');
    const b = await signedArtifact('env');
    const storeDir = await tempDir();
    const script = `import { createStore } from ${JSON.stringify(DIST)};
      const store = createStore({ dir: process.argv[1] });
      for (let i = 0; i < 3; i++) await store.import(process.argv[2]);`;
    const run = (artifact: string) =>
      new Promise<number>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script, storeDir, artifact], {
          stdio: ['ignore', 'ignore', 'inherit'],
        });
        child.on('error', reject);
        child.on('exit', (code) => resolve(code ?? -1));
      });
    const codes = await Promise.all([run(a.artifact), run(b.artifact), run(a.artifact), run(b.artifact)]);
    expect(codes).toEqual([0, 0, 0, 0]);
    const store = createStore({ dir: storeDir });
    expect((await store.list()).map((s) => s.digest).sort()).toEqual([a.digest, b.digest].sort());
    const index = JSON.parse(await readFile(join(storeDir, 'index.json'), 'utf8'));
    expect(index.manifests).toHaveLength(4);
    // No temp files left behind; the lock file stays (it is never removed, see lock.ts).
    expect((await readdir(storeDir)).sort()).toEqual(['.vyr-store.lockdb', 'blobs', 'index.json', 'oci-layout']);
    expect((await readdir(join(storeDir, 'blobs/sha256'))).every((n) => /^[0-9a-f]{64}$/.test(n))).toBe(true);
  });

  it('re-hashes blobs on read: a corrupted blob in the store is refused', async () => {
    const { artifact, digest } = await signedArtifact();
    const store = createStore({ dir: await tempDir() });
    await store.import(artifact);
    const loaded = await store.get(digest);
    const componentDigest = loaded.ociManifest.layers[0]!.digest;
    const path = join(store.dir, 'blobs/sha256', componentDigest.slice(7));
    const bytes = await readFile(path);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(path, bytes);
    expect(await codeOf(() => store.get(digest))).toBe('BLOB_DIGEST_MISMATCH');
    // Importing again repairs the damaged blob.
    await store.import(artifact);
    expect((await store.get(digest)).digest).toBe(digest);
  });

  it('refuses tampered input without changing the store', async () => {
    const { artifact } = await signedArtifact();
    const store = createStore({ dir: await tempDir() });
    const index = JSON.parse(await readFile(join(artifact, 'index.json'), 'utf8'));
    const manifestPath = join(artifact, 'blobs/sha256', index.manifests[0].digest.slice(7));
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'));
    await writeFile(join(artifact, 'blobs/sha256', manifest.config.digest.slice(7)), '{}');
    expect(await codeOf(() => store.import(artifact))).toBe('CONFIG_TAMPERED');
    expect(await store.list()).toEqual([]);
  });

  it('lists, removes and garbage-collects unreferenced blobs', async () => {
    const a = await signedArtifact('hello');
    const b = await signedArtifact('cat');
    const store = createStore({ dir: await tempDir() });
    await store.import(a.artifact);
    await store.import(b.artifact);
    const listed = await store.list();
    expect(listed.map((s) => s.name)).toEqual(['cat', 'hello']);
    expect(listed.every((s) => s.signatures === 1 && s.sizeBytes > 0)).toBe(true);

    const blobsBefore = await readdir(join(store.dir, 'blobs/sha256'));
    expect(await store.remove(a.digest)).toBe(true);
    expect(await store.remove(a.digest)).toBe(false);
    expect(await store.has(a.digest)).toBe(false);
    expect(await codeOf(() => store.get(a.digest))).toBe('NOT_FOUND');
    const gc = await store.gc();
    // hello's manifest, config, component, declarations, bundle, referrer (the empty config `{}` is shared).
    expect(gc.removedBlobs).toBe(6);
    expect(gc.freedBytes).toBeGreaterThan(0);
    expect(await readdir(join(store.dir, 'blobs/sha256'))).toHaveLength(blobsBefore.length - 6);
    expect((await store.get(b.digest)).manifest.name).toBe('cat');
    expect(await store.gc()).toEqual({ removedBlobs: 0, freedBytes: 0 });
  });

  it('attaches extra detached bundles given at import time', async () => {
    const dir = await tempDir();
    const { digest } = await packArtifact(await watFixtureFile('hello', dir), join(dir, 'a.oci'));
    const keys = await writeKeyPair(join(dir, 'k'));
    // Sign a copy, then import the unsigned original plus the copy's detached bundle.
    await packArtifact(await watFixtureFile('hello', dir), join(dir, 'b.oci'));
    const signed = await signArtifact(join(dir, 'b.oci'), { path: keys.privateKeyPath });
    const store = createStore({ dir: await tempDir() });
    await store.import(join(dir, 'a.oci'), { bundlePaths: [signed.detachedPath] });
    const loaded = await store.get(digest);
    const policy = createTrustPolicy({ keys: [await readFile(keys.publicKeyPath, 'utf8')] });
    expect((await verifyArtifact(loaded, policy)).signed).toBe(true);
  });

  it('lists from metadata only (manifest and declarations): a damaged component still lists, get refuses it', async () => {
    const { artifact, digest } = await signedArtifact('cat');
    const store = createStore({ dir: await tempDir() });
    const stored = await store.import(artifact);
    const componentDigest = (await store.get(digest)).ociManifest.layers[0]!.digest;
    const path = join(store.dir, 'blobs/sha256', componentDigest.slice(7));
    const bytes = await readFile(path);
    bytes[100] = bytes[100]! ^ 0x01;
    await writeFile(path, bytes);
    // list() does not read the component (12 MB for a large artifact): it reports what the store holds...
    expect(await store.list()).toEqual([stored]);
    // ...and get() is where every blob is re-hashed.
    expect(await codeOf(() => store.get(digest))).toBe('BLOB_DIGEST_MISMATCH');
    // The metadata it does read is still checked.
    const manifestPath = join(store.dir, 'blobs/sha256', digest.slice(7));
    const manifest = await readFile(manifestPath);
    manifest[10] = manifest[10]! ^ 0x01;
    await writeFile(manifestPath, manifest);
    expect(await codeOf(() => store.list())).toBe('MANIFEST_TAMPERED');
  });

  it('never lets get() race remove() + gc() into BLOB_MISSING: get answers the artifact or NOT_FOUND', async () => {
    const { artifact, digest } = await signedArtifact('cat');
    const store = createStore({ dir: await tempDir() });
    await store.import(artifact);
    // Another process removes, garbage-collects and re-imports the artifact, over and over...
    const CHURN = `import { createStore } from ${JSON.stringify(DIST)};
      const [dir, artifact, digest] = process.argv.slice(1);
      const store = createStore({ dir });
      process.stdout.write('ready\\n');
      for (let i = 0; i < 30; i++) {
        await store.remove(digest);
        await store.gc();
        await store.import(artifact);
      }`;
    const churn = spawnNode(CHURN, [store.dir, artifact, digest]);
    await churn.ready;
    let done = false;
    const exited = churn.exited.finally(() => {
      done = true;
    });
    // ...while three readers here call get() back to back.
    const outcomes = new Map<string, number>();
    const readers = Array.from({ length: 3 }, async () => {
      do {
        let outcome: string;
        try {
          outcome = (await store.get(digest)).digest === digest ? 'found' : 'wrong digest';
        } catch (err) {
          outcome = (err as { code?: string }).code ?? String(err);
        }
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      } while (!done);
    });
    await Promise.all(readers);
    expect((await exited).code).toBe(0);
    expect([...outcomes.keys()].filter((o) => o !== 'found' && o !== 'NOT_FOUND')).toEqual([]);
    expect(outcomes.get('found')).toBeGreaterThan(0);
    // A blob that is really gone (no writer involved) is still reported as such.
    const loaded = await store.get(digest);
    await rm(join(store.dir, 'blobs/sha256', loaded.ociManifest.layers[0]!.digest.slice(7)));
    expect(await codeOf(() => store.get(digest))).toBe('BLOB_MISSING');
  });

  it('refuses malformed digests with INVALID_ARGUMENT', async () => {
    const store = createStore({ dir: await tempDir() });
    expect(await codeOf(() => store.get('sha256:xyz'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => store.get(`sha256:${'0'.repeat(64)}`))).toBe('NOT_FOUND');
  });
});

describe('store lock (across processes)', () => {
  const HOLD = `import { acquireStoreLock } from ${JSON.stringify(DIST_LOCK)};
    await acquireStoreLock(process.argv[1], 5000);
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1 << 30);`;

  it('is released by the kernel when its holder is killed: the store is writable at once, no stale file to judge', async () => {
    const { artifact, digest } = await signedArtifact();
    const storeDir = await tempDir();
    const holder = spawnNode(HOLD, [storeDir]);
    await holder.ready;
    const err = await errorOf(() => createStore({ dir: storeDir, lockTimeoutMs: 200 }).import(artifact));
    expect(err.code).toBe('IO_ERROR');
    expect(err.message).toContain(`locked by process ${holder.child.pid}`);
    holder.child.kill('SIGKILL');
    expect((await holder.exited).signal).toBe('SIGKILL');
    const stored = await createStore({ dir: storeDir, lockTimeoutMs: 2000 }).import(artifact);
    expect(stored.digest).toBe(digest);
  });

  it('is not blocked by leftovers of a crash: an empty lock file, or a pid lock file of an earlier version', async () => {
    const { artifact, digest } = await signedArtifact();
    const storeDir = await tempDir();
    await writeFile(join(storeDir, '.vyr-store.lock'), '');
    await writeFile(join(storeDir, '.vyr-store.lockdb'), '');
    const stored = await createStore({ dir: storeDir, lockTimeoutMs: 2000 }).import(artifact);
    expect(stored.digest).toBe(digest);
    await writeFile(join(storeDir, '.vyr-store.lock'), '999999999');
    expect(await createStore({ dir: storeDir, lockTimeoutMs: 2000 }).remove(digest)).toBe(true);
  });

  it('is held by one process at a time, also while holders die holding it (real processes, SIGKILL)', async () => {
    const storeDir = await tempDir();
    const log = join(storeDir, 'critical.log');
    // Each child takes the lock 6 times; inside, it logs enter/exit around a short pause. Five children kill
    // themselves while holding the lock (after logging "crash"), so the others must take over a dead owner's lock.
    const WORKER = `import { appendFileSync } from 'node:fs';
      import { acquireStoreLock } from ${JSON.stringify(DIST_LOCK)};
      const [dir, log, crashAt] = process.argv.slice(1);
      process.stdout.write('ready\\n');
      for (let i = 0; i < 6; i++) {
        const release = await acquireStoreLock(dir, 60000);
        appendFileSync(log, 'enter ' + process.pid + '\\n');
        await new Promise((r) => setTimeout(r, 3));
        if (String(i) === crashAt) {
          appendFileSync(log, 'crash ' + process.pid + '\\n');
          process.kill(process.pid, 'SIGKILL');
        }
        appendFileSync(log, 'exit ' + process.pid + '\\n');
        await release();
      }`;
    const holder = spawnNode(HOLD, [storeDir]);
    await holder.ready;
    const crashes = ['2', '-1', '4', '-1', '0', '-1', '1', '-1', '3', '-1'];
    const workers = crashes.map((crashAt) => spawnNode(WORKER, [storeDir, log, crashAt]));
    await Promise.all(workers.map((w) => w.ready));
    // The first owner dies while every worker is waiting for it.
    holder.child.kill('SIGKILL');
    const results = await Promise.all(workers.map((w) => w.exited));
    expect(results.map((r) => r.signal ?? r.code)).toEqual(crashes.map((c) => (c === '-1' ? 0 : 'SIGKILL')));
    const lines = (await readFile(log, 'utf8')).trim().split('\n');
    let holderPid: string | undefined;
    for (const [i, line] of lines.entries()) {
      const [event, pid] = line.split(' ');
      if (event === 'enter') {
        expect(holderPid, `line ${i}: ${pid} entered while ${holderPid} held the lock`).toBeUndefined();
        holderPid = pid;
      } else {
        expect(pid, `line ${i}: ${line}`).toBe(holderPid);
        holderPid = undefined;
      }
    }
    // 5 workers × 6 rounds, plus the crashed ones' rounds up to their crash (3 + 5 + 1 + 2 + 4).
    expect(lines.filter((l) => l.startsWith('enter'))).toHaveLength(30 + 15);
  });
});
