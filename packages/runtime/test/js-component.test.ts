import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRuntime, type Runtime, type RuntimeArtifact } from '../dist/index.js';
import { buildJsComponent, makeArtifact, memorySource, tempDir } from './helpers.js';

/** A busy JavaScript component (componentize-js: SpiderMonkey compiled to Wasm, ≈12 MB) whose `run` never returns. */
const SOURCE = 'export const run = { run() { let x = 0; for (;;) { x = (x + 1) | 0; } } };\n';
const WIT = `package local:busy;
package wasi:cli@0.2.3 { interface run { run: func() -> result; } }
world busy { export wasi:cli/run@0.2.3; }`;

const buildBusyJs = () =>
  buildJsComponent({
    source: SOURCE,
    wit: WIT,
    worldName: 'busy',
    disableFeatures: ['http', 'fetch-event', 'random', 'stdio', 'clocks'],
  });

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
