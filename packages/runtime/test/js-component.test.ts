import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { makeArtifact, memorySource, tempDir } from './helpers.js';

/**
 * A busy JavaScript component (componentize-js: SpiderMonkey compiled to Wasm, ≈12 MB) whose `run` never returns.
 * Building it takes 10–40 s, so the component is cached in the OS temp dir by a hash of its inputs.
 */
const SOURCE = 'export const run = { run() { let x = 0; for (;;) { x = (x + 1) | 0; } } };\n';
const WIT = `package local:busy;
package wasi:cli@0.2.3 { interface run { run: func() -> result; } }
world busy { export wasi:cli/run@0.2.3; }`;

async function buildBusyJs(): Promise<Uint8Array> {
  // componentize-js and the shim it runs on sit beside jco in the store.
  const scope = dirname(dirname(dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/jco')))));
  const componentize = join(scope, 'componentize-js', 'src', 'componentize.js');
  const version = JSON.parse(await readFile(join(scope, 'componentize-js', 'package.json'), 'utf8')).version as string;
  const key = createHash('sha256').update(SOURCE).update(WIT).update(version).digest('hex').slice(0, 16);
  const cacheDir = join(tmpdir(), 'vyr-runtime-test-cache');
  const out = join(cacheDir, `busy-js-${key}.wasm`);
  try {
    return await readFile(out);
  } catch {
    // build below
  }
  await mkdir(cacheDir, { recursive: true });
  const work = join(cacheDir, `build-${key}-${process.pid}`);
  await mkdir(work, { recursive: true });
  await writeFile(join(work, 'busy.js'), SOURCE);
  // jco componentize with shim 0.26.1 needs `/` preopened in the building process (TOOLCHAIN.md).
  const preload = join(work, 'preload.mjs');
  const shimFs = pathToFileURL(join(scope, 'preview2-shim', 'dist', 'nodejs', 'filesystem.js')).href;
  await writeFile(preload, `import { _setPreopens } from ${JSON.stringify(shimFs)};\n_setPreopens({ '/': '/' });\n`);
  const build = join(work, 'build.mjs');
  await writeFile(
    build,
    `import { componentize } from ${JSON.stringify(pathToFileURL(componentize).href)};
import { writeFile } from 'node:fs/promises';
const { component } = await componentize({
  sourcePath: ${JSON.stringify(join(work, 'busy.js'))},
  witWorld: ${JSON.stringify(WIT)},
  worldName: 'busy',
  disableFeatures: ['http', 'fetch-event', 'random', 'stdio', 'clocks'],
});
await writeFile(${JSON.stringify(`${out}.tmp-${process.pid}`)}, component);
`,
  );
  await promisify(execFile)(process.execPath, ['--import', preload, build], { timeout: 200_000 });
  await rename(`${out}.tmp-${process.pid}`, out);
  return readFile(out);
}

describe('a busy JavaScript component', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  let runtime: Runtime;
  let busy: RuntimeArtifact;

  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    busy = makeArtifact(await buildBusyJs(), { name: 'busy-js' });
    runtime = createRuntime({ artifacts: memorySource([busy]), cacheDir: join(dir, 'cache') });
  }, 240_000);
  afterAll(async () => {
    await runtime?.close();
    await cleanup();
  });

  it('is stopped by cancel and by its deadline while its JS engine spins', async () => {
    const task = await runtime.submit({ digest: busy.digest });
    for await (const e of runtime.watch(task.id)) if (e.type === 'status' && e.status.state === 'RUNNING') break;
    await new Promise((r) => setTimeout(r, 300));
    expect(runtime.get(task.id).state).toBe('RUNNING');
    expect(await runtime.cancel(task.id)).toMatchObject({ state: 'CANCELLED', reason: 'CANCELLED' });

    const timed = await runtime.submit({ digest: busy.digest, limits: { deadlineMs: 1500 } });
    expect(await runtime.wait(timed.id)).toMatchObject({ state: 'DEADLINE_EXCEEDED', reason: 'DEADLINE_EXCEEDED' });
    expect(runtime.stats().workersReplaced).toBe(2);
  });
});
