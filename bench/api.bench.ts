/**
 * API benchmarks (issue 5). Run: `node bench/api.bench.ts [--json] [--quick]` (Node 24 strips the types) after
 * `pnpm build`. Everything goes through a real node started as a child process (apps/node) on loopback.
 *
 * - submit → exit over RPC: SubmitTask then WatchTask until the terminal status, one task at a time, warm pool,
 *   small WAT component (`hello`), on HTTP/1.1 and on HTTP/2 (h2c), Connect protocol, binary. Target p50 ≤ 5 ms.
 *   Reported per round (p50, p99), then median and spread (min–max) of the rounds' p50 and p99.
 * - StreamTraces throughput: (a) replay of the node's retained span batches (follow=false), spans/s; (b) live:
 *   spans/s delivered to a following subscriber while tasks run 4 at a time.
 * - node RSS (VmRSS of the child): idle after start, and with 1,000 finished tasks retained.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { packArtifact, signArtifact, writeKeyPair } from '@vyr/artifact';
import { TaskStatus } from '@vyr/proto';
import { watFixtureFile } from '@vyr/testing';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const NODE_MAIN = fileURLToPath(new URL('../apps/node/dist/main.js', import.meta.url));

interface Row {
  name: string;
  unit: string;
  median: number;
  min: number;
  max: number;
  samples: number;
  /** Every sample, in the order taken. */
  values: number[];
}

function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))] as number;
}

function row(name: string, unit: string, values: readonly number[]): Row {
  return {
    name,
    unit,
    median: quantile(values, 0.5),
    min: Math.min(...values),
    max: Math.max(...values),
    samples: values.length,
    values: [...values],
  };
}

async function startNode(dataDir: string, pub: string): Promise<{ url: string; pid: number; child: ChildProcess }> {
  const child = spawn(
    process.execPath,
    [
      NODE_MAIN,
      'node',
      'start',
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--trust',
      pub,
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));
  const ready = JSON.parse(line) as { url: string; pid: number };
  return { url: ready.url, pid: ready.pid, child };
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 'NaN');
  return kb * 1024;
}

async function runToExit(client: NodeClient, digest: string): Promise<void> {
  const { task } = await client.submitTask({ artifactDigest: digest });
  let last = task?.status ?? TaskStatus.UNSPECIFIED;
  for await (const ev of client.watchTask({ taskId: task!.id }))
    if (ev.event.case === 'task') last = ev.event.value.status;
  if (last !== TaskStatus.SUCCEEDED) throw new Error(`task ended ${TaskStatus[last]}`);
}

const rows: Row[] = [];
const notes: string[] = [];
const work = await mkdtemp(join(tmpdir(), 'vyr-api-bench-'));
const keys = await writeKeyPair(join(work, 'keys'));
const hello = join(work, 'hello.tar');
const { digest } = await packArtifact(await watFixtureFile('hello', work), hello, {
  manifest: { name: 'hello', version: '1.0.0', env: [], state: [], limits: {} },
});
await signArtifact(hello, { path: keys.privateKeyPath });
const node = await startNode(join(work, 'data'), keys.publicKeyPath);
try {
  await new Promise((r) => setTimeout(r, 1500)); // let the pool warm up
  rows.push(row('node RSS, idle after start', 'MiB', [(await rssBytes(node.pid)) / 2 ** 20]));
  const c1 = createNodeClient({ baseUrl: node.url, httpVersion: '1.1' });
  const c2 = createNodeClient({ baseUrl: node.url, httpVersion: '2' });
  const bytes = await readFile(hello);
  await c1.importArtifact(
    (async function* () {
      yield { part: { case: 'header' as const, value: { sizeBytes: BigInt(bytes.length) } } };
      yield { part: { case: 'chunk' as const, value: bytes } };
    })(),
  );
  for (let i = 0; i < (quick ? 20 : 100); i++) await runToExit(i % 2 ? c1 : c2, digest); // warm: prepare cache, JIT, connections

  const rounds = quick ? 2 : 5;
  const perRound = quick ? 20 : 300;
  for (const [label, client] of [
    ['HTTP/1.1', c1],
    ['HTTP/2', c2],
  ] as const) {
    const p50s: number[] = [];
    const p99s: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const lat: number[] = [];
      for (let i = 0; i < perRound; i++) {
        const t0 = performance.now();
        await runToExit(client, digest);
        lat.push(performance.now() - t0);
      }
      p50s.push(quantile(lat, 0.5));
      p99s.push(quantile(lat, 0.99));
    }
    rows.push(row(`submit→exit over RPC, ${label}, p50 (${rounds} rounds × ${perRound})`, 'ms', p50s));
    rows.push(row(`submit→exit over RPC, ${label}, p99 (${rounds} rounds × ${perRound})`, 'ms', p99s));
  }

  // Retain 1,000 finished tasks (the node's default retention; 300 in quick mode), then measure.
  const retain = quick ? 100 : 1000;
  const info0 = await c1.getNodeInfo({});
  for (let i = info0.retainedTasks; i < retain; i++) await runToExit(c2, digest);
  const info = await c1.getNodeInfo({});
  notes.push(`retained tasks when measured: ${info.retainedTasks}; spans dropped: ${info.telemetry?.spansDropped}`);
  const rss: number[] = [];
  for (let i = 0; i < 3; i++) {
    rss.push((await rssBytes(node.pid)) / 2 ** 20);
    await new Promise((r) => setTimeout(r, 300));
  }
  rows.push(row(`node RSS with ${retain.toLocaleString('en-US')} finished tasks retained`, 'MiB', rss));

  // StreamTraces (a): replay of everything retained.
  const replay: number[] = [];
  for (let r = 0; r < (quick ? 2 : 5); r++) {
    let spans = 0;
    const t0 = performance.now();
    for await (const batch of c2.streamTraces({})) {
      for (const ss of batch.resourceSpans?.scopeSpans ?? []) spans += ss.spans.length;
    }
    replay.push(spans / ((performance.now() - t0) / 1000));
    if (r === 0) notes.push(`StreamTraces replay: ${spans} spans retained`);
  }
  rows.push(row('StreamTraces replay (follow=false), HTTP/2', 'spans/s', replay));

  // StreamTraces (b): live, while tasks run 4 at a time.
  const live: number[] = [];
  for (let r = 0; r < (quick ? 1 : 3); r++) {
    const abort = new AbortController();
    let spans = 0;
    let dropped = 0n;
    const reading = (async () => {
      try {
        for await (const batch of c1.streamTraces(
          { follow: true, sinceUnixNano: BigInt(Date.now()) * 1_000_000n },
          { signal: abort.signal },
        )) {
          for (const ss of batch.resourceSpans?.scopeSpans ?? []) spans += ss.spans.length;
          dropped = batch.dropped;
        }
      } catch {
        // aborted
      }
    })();
    const t0 = performance.now();
    const tasks = quick ? 40 : 600;
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < tasks) {
          next++;
          await runToExit(c2, digest);
        }
      }),
    );
    await new Promise((r) => setTimeout(r, 200)); // last batch
    const seconds = (performance.now() - t0) / 1000;
    abort.abort();
    await reading;
    live.push(spans / seconds);
    notes.push(
      `live round ${r + 1}: ${tasks} tasks, ${spans} spans streamed, dropped ${dropped}, ${(tasks / seconds).toFixed(0)} tasks/s`,
    );
  }
  rows.push(row('StreamTraces live (follow=true) during 4-way task load', 'spans/s', live));
} finally {
  node.child.kill('SIGTERM');
  await new Promise((r) => node.child.once('exit', r));
  await rm(work, { recursive: true, force: true });
}

if (args.has('--json')) {
  process.stdout.write(`${JSON.stringify({ rows, notes }, null, 2)}\n`);
} else {
  for (const r of rows) {
    const fmt = (n: number) => (r.unit === 'spans/s' ? n.toFixed(0) : n.toFixed(2));
    process.stdout.write(
      `${r.name}: median ${fmt(r.median)} ${r.unit} (min ${fmt(r.min)}, max ${fmt(r.max)}, n=${r.samples})\n`,
    );
  }
  for (const n of notes) process.stdout.write(`  note: ${n}\n`);
}
