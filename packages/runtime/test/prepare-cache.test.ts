import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, appendFile, mkdir, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { buildWatFixture } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type RuntimeArtifact, type RuntimeOptions } from '../dist/index.js';
import { cacheEntryDir, makeArtifact, memorySource, p1ToComponent, tempDir, text } from './helpers.js';

/** Whether strace is installed and allowed to trace here (ptrace can be forbidden in containers). */
function straceWorks(): boolean {
  try {
    execFileSync('strace', ['-qq', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The prepare cache on disk is checked, not trusted: every file's SHA-256 is recorded in meta.json and re-hashed on
 * load, and a damaged entry is deleted and transpiled again instead of failing the digest forever.
 */
describe('prepare cache integrity', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let hello: RuntimeArtifact;
  let exit33: RuntimeArtifact;
  const spans = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    hello = makeArtifact(await p1ToComponent(await buildWatFixture('hello')), { name: 'hello' });
    exit33 = makeArtifact(await p1ToComponent(await buildWatFixture('exit-33')), { name: 'exit-33' });
  });
  afterAll(async () => {
    await provider.shutdown();
    await cleanup();
  });

  /** Runs `artifact` once in a fresh runtime (empty memory cache) and returns the status and the prepare span. */
  async function runFresh(cacheDir: string, artifact: RuntimeArtifact, extra: Partial<RuntimeOptions> = {}) {
    spans.reset();
    const runtime = createRuntime({
      artifacts: memorySource([artifact]),
      cacheDir,
      tracer: provider.getTracer('test'),
      ...extra,
    });
    try {
      const task = await runtime.submit({ digest: artifact.digest });
      const status = await runtime.wait(task.id);
      const prepare = spans.getFinishedSpans().find((s) => s.name === 'vyr.prepare')!;
      return { status, stdout: text(runtime.output(task.id).stdout), prepare: prepare.attributes };
    } finally {
      await runtime.close();
    }
  }

  /** Whether meta.json's hashes match the files of the entry. */
  async function entryIsSound(entry: string): Promise<boolean> {
    const meta = JSON.parse(await readFile(join(entry, 'meta.json'), 'utf8')) as { sha256: Record<string, string> };
    const names = (await readdir(entry)).filter((n) => n !== 'meta.json').sort();
    if (names.join() !== Object.keys(meta.sha256).sort().join()) return false;
    for (const name of names) {
      const actual = createHash('sha256')
        .update(await readFile(join(entry, name)))
        .digest('hex');
      if (actual !== meta.sha256[name]) return false;
    }
    return true;
  }

  async function largestWasm(entry: string): Promise<string> {
    let best = '';
    let size = -1;
    for (const name of await readdir(entry)) {
      if (!name.endsWith('.wasm')) continue;
      const s = (await stat(join(entry, name))).size;
      if (s > size) {
        size = s;
        best = name;
      }
    }
    return best;
  }

  it('records a SHA-256 for every file and is reused from disk by a new runtime', async () => {
    const cacheDir = join(dir, 'sound');
    expect((await runFresh(cacheDir, hello)).prepare['vyr.prepare.cache']).toBe('miss');
    const entry = await cacheEntryDir(cacheDir, hello.digest);
    expect(await entryIsSound(entry)).toBe(true);
    const again = await runFresh(cacheDir, hello);
    expect(again.status.state).toBe('SUCCEEDED');
    expect(again.prepare['vyr.prepare.cache']).toBe('disk');
    expect(again.prepare['vyr.prepare.repaired']).toBeUndefined();
  });

  it('repairs an emptied cached core module instead of failing the digest forever', async () => {
    const cacheDir = join(dir, 'emptied');
    await runFresh(cacheDir, hello);
    const entry = await cacheEntryDir(cacheDir, hello.digest);
    const wasm = await largestWasm(entry);
    await truncate(join(entry, wasm), 0);

    const repaired = await runFresh(cacheDir, hello);
    expect(repaired.status.state).toBe('SUCCEEDED');
    expect(repaired.stdout).toBe('hello from vyr\n');
    expect(repaired.prepare['vyr.prepare.cache']).toBe('miss');
    expect(repaired.prepare['vyr.prepare.repaired']).toMatch(new RegExp(`${wasm.replace('.', '\\.')} has SHA-256`));
    expect((await stat(join(entry, wasm))).size).toBeGreaterThan(0);
    expect(await entryIsSound(entry)).toBe(true);
    // And it stays repaired.
    expect((await runFresh(cacheDir, hello)).prepare['vyr.prepare.cache']).toBe('disk');
  });

  it('never runs a tampered component.js: the entry is rejected and transpiled again', async () => {
    const cacheDir = join(dir, 'tampered');
    await runFresh(cacheDir, hello);
    const entry = await cacheEntryDir(cacheDir, hello.digest);
    const marker = join(dir, 'tampered-js-ran');
    // Code appended to the cached JS would run with the worker's full privileges if it were loaded.
    await appendFile(
      join(entry, 'component.js'),
      `\nimport('node:fs').then((fs) => fs.writeFileSync(${JSON.stringify(marker)}, 'ran'));\n`,
    );
    const run = await runFresh(cacheDir, hello);
    expect(run.status.state).toBe('SUCCEEDED');
    expect(run.prepare['vyr.prepare.repaired']).toMatch(/component\.js has SHA-256/);
    await expect(access(marker)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(join(entry, 'component.js'), 'utf8')).not.toContain(marker);
  });

  it('repairs an entry whose meta.json is missing or not JSON, or whose files are gone', async () => {
    const cacheDir = join(dir, 'meta');
    await runFresh(cacheDir, exit33);
    const entry = await cacheEntryDir(cacheDir, exit33.digest);
    const damage: [string, () => Promise<void>, RegExp][] = [
      ['garbage meta.json', () => writeFile(join(entry, 'meta.json'), '{not json'), /not JSON/],
      ['no meta.json', () => rm(join(entry, 'meta.json')), /no meta\.json/],
      ['a missing module', async () => rm(join(entry, await largestWasm(entry))), /ENOENT/],
    ];
    for (const [what, damageIt, reason] of damage) {
      await damageIt();
      const run = await runFresh(cacheDir, exit33);
      expect(run.status, what).toMatchObject({ state: 'FAILED', reason: 'EXIT_CODE', exitCode: 33 });
      expect(run.prepare['vyr.prepare.repaired'], what).toMatch(reason);
      expect(await entryIsSound(entry), what).toBe(true);
    }
  });

  it.skipIf(!straceWorks())(
    'fsyncs every file of a new entry before renaming it into place, and the parent directory after (strace)',
    async () => {
      const work = join(dir, 'strace');
      const cacheDir = join(work, 'cache');
      const componentPath = join(work, 'hello.component.wasm');
      await mkdir(work, { recursive: true });
      await writeFile(componentPath, hello.component);
      // A child process prepares and runs the component once with the built runtime.
      const child = join(work, 'prepare-once.mjs');
      await writeFile(
        child,
        `import { readFile } from 'node:fs/promises';
import { createRuntime } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
const component = new Uint8Array(await readFile(${JSON.stringify(componentPath)}));
const artifact = { digest: ${JSON.stringify(hello.digest)}, manifest: { name: 'hello', env: [] }, component };
const runtime = createRuntime({ artifacts: { load: async () => artifact }, cacheDir: ${JSON.stringify(cacheDir)} });
const task = await runtime.submit({ digest: artifact.digest });
const status = await runtime.wait(task.id);
await runtime.close();
if (status.state !== 'SUCCEEDED') throw new Error(JSON.stringify(status));
`,
      );
      const log = join(work, 'strace.log');
      // -f: libuv runs fs calls on its thread pool; -y: print the path behind each fd.
      execFileSync('strace', [
        '-f',
        '-y',
        '-qq',
        '-o',
        log,
        '-e',
        'trace=fsync,fdatasync,rename,renameat,renameat2',
        process.execPath,
        child,
      ]);
      const calls = (await readFile(log, 'utf8')).split('\n');
      const entry = await cacheEntryDir(cacheDir, hello.digest);
      const renamed = calls.findIndex((line) => /rename(at2?)?\(/.test(line) && line.includes(`"${entry}"`));
      expect(renamed, calls.join('\n')).toBeGreaterThan(0);
      const tmp = /"([^"]+\.tmp-[0-9a-f]+)"/.exec(calls[renamed]!)![1]!;
      for (const name of await readdir(entry)) {
        const synced = calls.findIndex((line) => /f(data)?sync\(/.test(line) && line.includes(`<${tmp}/${name}>`));
        expect(synced, `${name}\n${calls.join('\n')}`).toBeGreaterThanOrEqual(0);
        expect(synced).toBeLessThan(renamed);
      }
      const tmpSynced = calls.findIndex((line) => line.includes('fsync(') && line.includes(`<${tmp}>`));
      expect(tmpSynced).toBeGreaterThanOrEqual(0);
      expect(tmpSynced).toBeLessThan(renamed);
      const parent = entry.slice(0, entry.lastIndexOf('/'));
      const parentSynced = calls.findIndex(
        (line, i) => i > renamed && line.includes('fsync(') && line.includes(`<${parent}>`),
      );
      expect(parentSynced, calls.join('\n')).toBeGreaterThan(renamed);
    },
  );

  it('keeps at most maxPreparedArtifacts compiled in memory, reloading an evicted one from disk', async () => {
    const cacheDir = join(dir, 'lru');
    spans.reset();
    const runtime = createRuntime({
      artifacts: memorySource([hello, exit33]),
      cacheDir,
      tracer: provider.getTracer('test'),
      maxPreparedArtifacts: 1,
      poolSize: 1,
    });
    try {
      const sources: unknown[] = [];
      for (const a of [hello, hello, exit33, hello]) {
        spans.reset();
        await runtime.wait((await runtime.submit({ digest: a.digest })).id);
        sources.push(spans.getFinishedSpans().find((s) => s.name === 'vyr.prepare')!.attributes['vyr.prepare.cache']);
      }
      // hello is dropped from memory when exit33 is prepared, and comes back from the disk cache.
      expect(sources).toEqual(['miss', 'memory', 'miss', 'disk']);
      // The one worker had loaded two components' JS (more than 1) after the third task: replaced once idle.
      expect(runtime.stats().workersRecycled).toBe(1);
      expect(runtime.stats().workersReplaced).toBe(0);
    } finally {
      await runtime.close();
    }
    expect(() => createRuntime({ artifacts: memorySource([]), cacheDir, maxPreparedArtifacts: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/maxPreparedArtifacts/) }),
    );
  });
});
