import { join } from 'node:path';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliFixtures, type CliFixtures, type NodeChild, startNodeChild, vyr } from './api-helpers.js';

describe('vyr traces / metrics / node status', () => {
  let fx: CliFixtures;
  let node: NodeChild;
  let env: Record<string, string>;
  const run = (...args: string[]) => vyr(args, env, fx.dir);

  beforeAll(async () => {
    fx = await buildCliFixtures(await tempDir('vyr-cli-tel-'));
    node = await startNodeChild(['--data-dir', join(fx.dir, 'data'), '--trust', fx.pub, '--metric-interval-ms', '200']);
    env = { VYR_NODE: node.url };
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('prints the spans of one task as a tree under its vyr.task root', async () => {
    const ran = JSON.parse((await run('--json', 'run', fx.tars.hello?.path as string)).stdout) as {
      task: { id: string; traceId: string };
    };
    let tree = '';
    for (let i = 0; i < 40 && !tree.includes('vyr.task '); i++) {
      await new Promise((r) => setTimeout(r, 50));
      tree = (await run('traces', '--task', ran.task.id)).stdout;
    }
    const lines = tree.trimEnd().split('\n');
    expect(lines[0]).toBe(`trace ${ran.task.traceId}`);
    expect(lines[1]).toMatch(/^ {2}vyr\.task\s+\d+\.\d{3} ms/);
    expect(lines.slice(2).every((l) => l.startsWith('    vyr.'))).toBe(true);
    expect(tree).toContain('vyr.run');
    const json = JSON.parse((await run('--json', 'traces', '--task', ran.task.id)).stdout) as {
      spans: { traceId: string }[];
    };
    expect(json.spans.every((s) => s.traceId === ran.task.traceId)).toBe(true);
  });

  it('prints metric points and the node status, in human and JSON form', async () => {
    let points: { name: string }[] = [];
    for (let i = 0; i < 40 && !points.some((p) => p.name === 'vyr.task.duration'); i++) {
      await run('run', fx.tars.hello?.digest as string);
      points = (JSON.parse((await run('--json', 'metrics')).stdout) as { points: { name: string }[] }).points;
    }
    expect(points.map((p) => p.name)).toContain('vyr.task.duration');
    const status = JSON.parse((await run('--json', 'node', 'status')).stdout);
    expect(status).toMatchObject({
      url: node.url,
      tier: 'laptop',
      poolSize: 2,
      artifacts: 1,
      telemetry: { spansDropped: 0 },
    });
    expect(status.nodeId).toMatch(/^nd_/);
    const human = (await run('node', 'status')).stdout;
    expect(human).toMatch(/^node {7}nd_\w+ \(laptop, vyr 0\.1\.0\)/);
    expect(human).toContain('OTLP export off');
  });
});
