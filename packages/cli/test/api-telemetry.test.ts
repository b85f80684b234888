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

  it('prints the spans of one task as a tree under its vyr.task root, and --task keeps only that task', async () => {
    const runTask = async () =>
      JSON.parse((await run('--json', 'run', fx.tars.hello?.path as string)).stdout) as {
        task: { id: string; traceId: string };
      };
    const a = await runTask();
    const b = await runTask();
    expect(a.task.id).not.toBe(b.task.id);
    type Span = { traceId: string; name: string; attributes: Record<string, unknown> };
    const spansOf = async (...filter: string[]) =>
      (JSON.parse((await run('--json', 'traces', ...filter)).stdout) as { spans: Span[] }).spans;
    const roots = (spans: Span[]) => spans.filter((s) => s.name === 'vyr.task').map((s) => s.attributes['vyr.task.id']);
    let all: Span[] = [];
    for (let i = 0; i < 40 && !(roots(all).includes(a.task.id) && roots(all).includes(b.task.id)); i++) {
      await new Promise((r) => setTimeout(r, 50));
      all = await spansOf();
    }
    expect(roots(all)).toEqual(expect.arrayContaining([a.task.id, b.task.id]));

    const onlyA = await spansOf('--task', a.task.id);
    expect(roots(onlyA)).toEqual([a.task.id]);
    expect(onlyA.length).toBeGreaterThan(5);
    // Every span of the filtered stream belongs to task A: its trace, tagged with its id; none of task B.
    expect(onlyA.every((s) => s.traceId === a.task.traceId && s.attributes['vyr.task.id'] === a.task.id)).toBe(true);
    expect(onlyA.filter((s) => s.attributes['vyr.task.id'] === b.task.id)).toEqual([]);

    const tree = (await run('traces', '--task', a.task.id)).stdout;
    const lines = tree.trimEnd().split('\n');
    expect(lines[0]).toBe(`trace ${a.task.traceId}`);
    expect(lines[1]).toMatch(/^ {2}vyr\.task\s+\d+\.\d{3} ms/);
    expect(lines.slice(2).length).toBeGreaterThan(4);
    expect(lines.slice(2).every((l) => l.startsWith('    vyr.'))).toBe(true);
    expect(tree).toContain('vyr.run');
    expect(tree).not.toContain(b.task.id);
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
