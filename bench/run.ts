/**
 * `make bench`: runs every benchmark of the repo, one suite after another (they share the cores; running them
 * together would measure each other), and writes one results file, `bench/results/<date>-<host>.json`, holding
 * every raw sample, the machine (CPU, cores, memory, kernel, Node, load) and the tool versions. Then renders the
 * whitepaper (tables and SVG charts) from that file.
 *
 *   node bench/run.ts [--quick] [--only compare,runtime,…] [--out FILE] [--no-render]
 *
 * --quick    tiny inputs and few rounds (CI; a couple of minutes on 2 cores). Writes `<date>-<host>-quick.json`
 *            and does not re-render the committed whitepaper.
 * --only     a subset of suites: compare, runtime, api, collector, artifact, state, nongoals.
 * --out      where to write the results file.
 * --no-render  skip the whitepaper.
 * --demo FILE  the portability demo's result to copy into the results file (default .vyr/demo/result.json, which
 *            `make demo` writes).
 * A progress line per benchmark is drawn on stderr when it is a terminal, nothing otherwise.
 * Exit code 1 when a suite failed (its error is in the results file and on stderr).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineFacts, toolVersions } from './lib/machine.ts';
import { normalizeSuite, SUITES, type SuiteName, suiteRatios } from './lib/suites.ts';
import type { Benchmark, CitedFigure, Ratio } from './lib/types.ts';

const here = fileURLToPath(new URL('.', import.meta.url));
const root = join(here, '..');
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(name);
const option = (name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const quick = flag('--quick');
const only = option('--only')
  ?.split(',')
  .map((s) => s.trim());
const python = process.env.PYTHON ?? 'python3';
const tty = process.stderr.isTTY === true;

for (const name of only ?? [])
  if (!(SUITES as readonly string[]).includes(name)) {
    process.stderr.write(`bench: unknown suite ${JSON.stringify(name)}; known: ${SUITES.join(', ')}\n`);
    process.exit(2);
  }
const suites = SUITES.filter((s) => !only || only.includes(s));

/** Suite → script and arguments. Each prints one JSON document on stdout (collector: on its last line). */
function command(suite: SuiteName): string[] {
  const q = quick ? ['--quick'] : [];
  switch (suite) {
    case 'compare':
      return [join(here, 'compare.ts'), ...q];
    case 'collector':
      return [join(here, 'collector.bench.ts'), ...q];
    case 'nongoals':
      return [join(here, 'nongoals.ts')];
    default:
      return [join(here, `${suite}.bench.ts`), '--json', ...q];
  }
}

let status = '';
/** The suite running now: a signal to the harness is passed on, so no suite outlives it. */
let current: ChildProcess | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    if (!current) process.exit(130);
    current.once('exit', () => process.exit(130));
    current.kill(signal);
  });
function progress(text: string): void {
  if (!tty) return;
  status = text;
  process.stderr.write(`\r\x1b[2K${status.slice(0, (process.stderr.columns ?? 120) - 1)}`);
}

async function runSuite(
  suite: SuiteName,
  index: number,
): Promise<{ exitCode: number | null; seconds: number; stdout: string; stderr: string }> {
  const started = Date.now();
  const prefix = `[${index + 1}/${suites.length}] ${suite}`;
  progress(`${prefix}: starting`);
  const child: ChildProcess = spawn(process.execPath, ['--expose-gc', '--no-warnings', ...command(suite)], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, PYTHON: python },
  });
  current = child;
  const out: Buffer[] = [];
  let err = '';
  child.stdout?.on('data', (d: Buffer) => out.push(d));
  child.stderr?.on('data', (d: Buffer) => {
    err += d;
    const last = String(d).trim().split('\n').at(-1);
    if (last) progress(`${prefix}: ${last}`);
  });
  child.on('message', (m: { progress?: string }) => {
    if (m.progress) progress(`${prefix}: ${m.progress}`);
  });
  const ticker = setInterval(
    () => progress(status.replace(/ \(\d+ s\)$/, '') + ` (${Math.round((Date.now() - started) / 1000)} s)`),
    1000,
  );
  const exitCode = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  current = undefined;
  clearInterval(ticker);
  return { exitCode, seconds: (Date.now() - started) / 1000, stdout: Buffer.concat(out).toString('utf8'), stderr: err };
}

/** jco's version, read from the package the runtime resolves (its exports map hides package.json). */
function jcoVersion(): string | null {
  try {
    let dir = dirname(createRequire(join(root, 'packages/runtime/package.json')).resolve('@bytecodealliance/jco'));
    while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

// ---- run --------------------------------------------------------------------------------------------------------
const startedAt = new Date();
const machine = await machineFacts();
const tools = { ...(await toolVersions(python)), jco: jcoVersion() };
const loadSamples: { atS: number; load1: number }[] = [];
const loadTimer = setInterval(() => {
  loadSamples.push({ atS: Math.round((Date.now() - startedAt.getTime()) / 1000), load1: loadavg()[0] ?? 0 });
}, 5000);

const benchmarks: Benchmark[] = [];
const ratios: Ratio[] = [];
const suiteRecords: Record<string, unknown> = {};
let workload: unknown = null;
let nongoals: unknown[] = [];
const notes: string[] = [];
let failed = 0;
for (const [i, suite] of suites.entries()) {
  const r = await runSuite(suite, i);
  const record: Record<string, unknown> = { exitCode: r.exitCode, seconds: Math.round(r.seconds * 10) / 10 };
  try {
    if (r.exitCode !== 0) throw new Error(`exited ${r.exitCode}`);
    const n = normalizeSuite(suite, r.stdout);
    benchmarks.push(...n.benchmarks);
    ratios.push(...n.ratios, ...suiteRatios(suite, n.benchmarks));
    if (n.workload) workload = n.workload;
    if (n.nongoals) nongoals = n.nongoals;
    if (n.notes.length > 0) record.notes = n.notes;
  } catch (e) {
    failed++;
    record.error = `${(e as Error).message}; stderr tail: ${r.stderr.slice(-2000)}`;
    if (tty) process.stderr.write('\n');
    process.stderr.write(`bench: suite ${suite} failed (${(e as Error).message})\n${r.stderr.slice(-2000)}\n`);
  }
  suiteRecords[suite] = record;
  if (tty)
    process.stderr.write(
      `\r\x1b[2K[${i + 1}/${suites.length}] ${suite}: ${r.exitCode === 0 ? 'done' : 'FAILED'} in ${r.seconds.toFixed(0)} s\n`,
    );
}
clearInterval(loadTimer);

const cited = JSON.parse(await readFile(join(here, 'cited.json'), 'utf8')) as { note: string; figures: CitedFigure[] };
// The portability demo (`make demo`, issue 9) writes its own JSON; the paper's demo table is generated from a copy.
const demoPath = join(root, '.vyr/demo/result.json');
const demoFile = option('--demo') ?? demoPath;
const demo = existsSync(demoFile) ? (JSON.parse(await readFile(demoFile, 'utf8')) as unknown) : null;
const finishedAt = new Date();
const la = loadavg();
const day = startedAt.toISOString().slice(0, 10);
const host = machine.hostname.replace(/[^A-Za-z0-9.-]/g, '_');
const out = option('--out') ?? join(here, 'results', `${day}-${host}${quick ? '-quick' : ''}.json`);
const results = {
  schema: 'vyr-bench-results/1',
  mode: quick ? 'quick' : 'full',
  command: quick ? 'make bench QUICK=1' : 'make bench',
  suites: suites,
  startedAt: startedAt.toISOString(),
  finishedAt: finishedAt.toISOString(),
  durationS: Math.round((finishedAt.getTime() - startedAt.getTime()) / 100) / 10,
  machine,
  load: {
    atStart: machine.loadavgAtStart,
    atEnd: [la[0] ?? 0, la[1] ?? 0, la[2] ?? 0],
    samples: loadSamples,
    note: `load average of the whole machine (${machine.cpus} CPUs), sampled every 5 s; other users of the machine are not controlled by the bench`,
  },
  tools,
  workload,
  benchmarks,
  ratios,
  nongoals,
  demo,
  cited: cited.figures,
  citedNote: cited.note,
  suiteRuns: suiteRecords,
  notes,
};
await mkdir(dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify(results, null, 1)}\n`);
process.stdout.write(
  `bench: ${benchmarks.filter((b) => !b.skipped).length} benchmarks measured, ${benchmarks.filter((b) => b.skipped).length} skipped with a reason, ${failed} suite(s) failed; ${relative(process.cwd(), out)}\n`,
);

if (!flag('--no-render') && !quick) {
  const render = join(root, 'whitepaper/render.ts');
  if (existsSync(render)) {
    const code = await new Promise<number | null>((resolve) =>
      spawn(process.execPath, [render, '--results', out], { stdio: 'inherit' }).on('exit', resolve),
    );
    if (code !== 0) failed++;
  }
}
process.exitCode = failed > 0 ? 1 : 0;
