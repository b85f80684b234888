/**
 * `make bench QUICK=1` as a specification: one run of the harness on tiny inputs writes a results file in which
 * every benchmark has raw samples (or the reason it was not measured), with the machine and the tools; and the
 * whitepaper is what its results file renders, table for table. No timing is asserted anywhere.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Benchmark, fmt, fmtRatio, type Ratio, type Results, render } from '../../whitepaper/render.ts';
import { summarize } from '../lib/stats.ts';
import { SUITES } from '../lib/suites.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TEMPLATE = join(ROOT, 'whitepaper/v0.1.template.md');

/** Every table row of a rendered paper, by the id in its first cell. */
function tableRows(markdown: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of markdown.split('\n')) {
    const m = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (m)
      rows.set(
        m[1] as string,
        (m[2] as string).split(' | ').map((c) => c.trim()),
      );
  }
  return rows;
}

/** The cells a benchmark or ratio row must show, generated from the results file alone. */
function expectedCells(x: Benchmark | Ratio, f: (v: number) => string): string[] {
  if (!x.summary) return [];
  const s = x.summary;
  return [String(s.n), f(s.min), `**${f(s.median)}**`, f(s.p95), f(s.max)];
}

describe('make bench QUICK=1 (tiny inputs)', () => {
  let work: string;
  let results: Results;
  let markdown: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'vyr-bench-test-'));
    const out = join(work, 'results.json');
    await run(process.execPath, [join(ROOT, 'bench/run.ts'), '--quick', '--out', out], {
      cwd: ROOT,
      maxBuffer: 64 * 1024 * 1024,
    });
    results = JSON.parse(await readFile(out, 'utf8')) as Results;
    markdown = render(await readFile(TEMPLATE, 'utf8'), results, 'results.json').markdown;
  }, 900_000); // minutes on a loaded 2-CPU machine; the assertions below never look at a duration

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('records the machine, the load at start and the tool versions', () => {
    expect(results.schema).toBe('vyr-bench-results/1');
    expect(results.mode).toBe('quick');
    for (const key of ['cpuModel', 'cpus', 'memoryBytes', 'kernel', 'node', 'loadavgAtStart'])
      expect(results.machine).toHaveProperty(key);
    expect(results.machine.loadavgAtStart).toHaveLength(3);
    for (const tool of ['node', 'runc', 'crun', 'clang-19', 'wasmtime-py', 'jco'])
      expect(results.tools).toHaveProperty(tool);
  });

  it('runs every suite to completion', () => {
    expect(Object.keys(results.suiteRuns).sort()).toEqual([...SUITES].sort());
    for (const [suite, r] of Object.entries(results.suiteRuns))
      expect({ suite, exitCode: r.exitCode }).toEqual({ suite, exitCode: 0 });
  });

  it('gives every benchmark raw samples, or the reason it was not measured', () => {
    expect(results.benchmarks.length).toBeGreaterThan(0);
    for (const b of results.benchmarks) {
      if (b.skipped !== undefined) {
        expect({ id: b.id, samples: b.samples.length }).toEqual({ id: b.id, samples: 0 });
        expect(b.skipped.length, `${b.id} names why it was skipped`).toBeGreaterThan(10);
      } else {
        expect(b.samples.length, `${b.id} has samples`).toBeGreaterThan(0);
        expect(b.summary, `${b.id} summary`).toEqual(summarize(b.samples));
      }
    }
  });

  it('puts each baseline beside VYR in the side-by-side suite, measured or skipped with a reason', () => {
    const ids = new Set(results.benchmarks.map((b) => b.id));
    for (const subject of [
      'process',
      'runc',
      'crun',
      'wasmtime',
      'wasmtime-process',
      'node-wasi',
      'vyr',
      'vyr-js',
      'vyr-rpc-h1',
      'vyr-rpc-h2',
    ])
      expect(ids, `startup.${subject}`).toContain(`startup.${subject}`);
    for (const subject of ['process', 'runc', 'wasmtime', 'node-wasi', 'vyr', 'vyr-js', 'vyr-rpc-h2'])
      for (const unit of ['ms', 'events', 'mbps']) expect(ids).toContain(`throughput.${subject}.${unit}`);
    for (const id of [
      'cold.vyr',
      'cold.wasmtime-process',
      'cold.node-wasi',
      'compile.wasmtime',
      'compile.node-wasi',
      'memory.process',
      'memory.runc',
      'size.bundle',
      'size.artifact',
    ])
      expect(ids).toContain(id);
    // VYR itself is always measured: it needs nothing outside the repo.
    for (const id of [
      'startup.vyr',
      'startup.vyr-rpc-h1',
      'startup.vyr-rpc-h2',
      'throughput.vyr.events',
      'cold.vyr',
      'size.artifact',
    ])
      expect(results.benchmarks.find((b) => b.id === id)?.summary, id).toBeDefined();
  });

  it("covers VYR's own figures: warm latency, cold path, throughput with telemetry on and off, cancel, RSS, collector ingest and drain", () => {
    const measured = new Set(results.benchmarks.filter((b) => b.summary).map((b) => b.id));
    for (const id of [
      'runtime.warm',
      'runtime.cold.hello-c',
      'runtime.throughput.telemetry-off',
      'runtime.throughput.telemetry-on',
      'runtime.cancel',
      'runtime.rss.idle',
      'api.rss.idle',
      'api.rss.loaded',
      'api.rpc.h1.p50',
      'api.rpc.h2.p50',
      'collector.ingestspanspersec8clients',
      'collector.drainspanspersecgzip',
    ])
      expect(measured, id).toContain(id);
  });

  it('computes ratios pair by pair from the samples of the same rounds', () => {
    for (const r of results.ratios.filter((x) => x.summary)) {
      const a = results.benchmarks.find((b) => b.id === r.numerator) as Benchmark;
      const b = results.benchmarks.find((x) => x.id === r.denominator) as Benchmark;
      const n = Math.min(a.samples.length, b.samples.length);
      expect(r.pairs).toEqual(a.samples.slice(0, n).map((v, i) => v / (b.samples[i] as number)));
    }
  });

  it('records what a user gets when trying each non-goal', () => {
    const probes = results.nongoals ?? [];
    expect(probes.map((p) => p.id).sort()).toEqual([
      'container-pack',
      'container-run',
      'host-imports',
      'multi-node',
      'reactor',
      'two-writers',
    ]);
    expect(probes.find((p) => p.id === 'container-pack')?.output).toContain('CONTAINER_IMAGE');
    expect(probes.find((p) => p.id === 'host-imports')?.output).toContain('UNSUPPORTED_IMPORTS');
    expect(probes.find((p) => p.id === 'reactor')?.output).toContain('UNSUPPORTED_WORLD');
    expect(probes.find((p) => p.id === 'two-writers')?.output).toContain('BINDING_CONFLICT');
  });

  it('renders a paper whose every table row matches the results file', () => {
    const rows = tableRows(markdown);
    for (const b of results.benchmarks) {
      const row = rows.get(b.id);
      if (!row) continue; // a group the template does not show
      if (b.summary) expect(row.slice(1), b.id).toEqual(expectedCells(b, (v) => fmt(v, b.unit)));
      else expect(row.join(' '), b.id).toContain('not measured');
    }
    for (const r of results.ratios) {
      const row = rows.get(r.id);
      expect(row, `ratio ${r.id} is in the paper`).toBeDefined();
      if (r.summary) expect(row?.slice(1), r.id).toEqual(expectedCells(r, fmtRatio));
    }
    // Every side-by-side and VYR benchmark is in some table.
    for (const b of results.benchmarks) expect(rows.has(b.id), `${b.id} is in a table`).toBe(true);
    expect(markdown).not.toMatch(/\{\{[a-z]/);
  });
});

describe('whitepaper/v0.1.md', () => {
  it('is exactly what its results file renders (tables, numbers and charts are generated, never typed)', async () => {
    const paper = await readFile(join(ROOT, 'whitepaper/v0.1.md'), 'utf8');
    const source = /`(bench\/results\/[^`]+\.json)`/.exec(paper)?.[1];
    expect(source, 'the paper names its results file').toBeDefined();
    expect(existsSync(join(ROOT, source as string)), `${source} is committed`).toBe(true);
    const results = JSON.parse(await readFile(join(ROOT, source as string), 'utf8')) as Results;
    expect(results.mode).toBe('full');
    const { markdown, charts } = render(await readFile(TEMPLATE, 'utf8'), results, source as string);
    expect(paper).toBe(markdown);
    for (const [name, svg] of Object.entries(charts))
      expect(await readFile(join(ROOT, 'whitepaper/charts', `${name}.svg`), 'utf8'), `charts/${name}.svg`).toBe(svg);
  });
});
