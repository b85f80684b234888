// Benchmarks of the disconnected collector (@vyr/collector), with durability on (every 200 follows an fsync).
//
//   node bench/collector.bench.ts [--runs N] [--backlog-mb MB] [--quick]
//
// Measures, with the collector in its own process and the load generator in this one (2 cores):
//   1. ingest rate: spans/s acknowledged, 500-span protobuf requests, 8 concurrent clients and 1 client;
//   2. spool bytes per span;
//   3. drain rate after reconnect: spans/s from a backlog to an upstream that just came up (gzip and none);
//   4. memory (RSS) while holding a large backlog, and the restart (recovery) time over it.
// Prints a human summary and one JSON document (last line) with median, min and max of every number.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);

if (process.argv[2] === '--child') {
  await runChild(process.argv.slice(3));
} else {
  await main();
}

/** Child mode: one collector, printing `{url}` when ready, stopping on SIGTERM. */
async function runChild([spoolDir, port, upstream, compression, maxSpool]: string[]): Promise<void> {
  const { createCollector } = await import('@vyr/collector');
  const c = createCollector({
    port: Number(port),
    spoolDir: spoolDir as string,
    upstream: upstream as string,
    compression: compression as 'gzip' | 'none',
    maxSpoolBytes: Number(maxSpool),
    backoff: { initialDelayMs: 20, maxDelayMs: 100 },
  });
  const info = await c.start();
  process.stdout.write(`${JSON.stringify(info)}\n`);
  process.once('SIGTERM', () => void c.stop().then(() => process.exit(0)));
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal protobuf writer for ExportTraceServiceRequest (the bench depends on no protobuf library).

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  while (v > 127n) {
    out.push(Number((v & 127n) | 128n));
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}
function field(no: number, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((no << 3) | 2), ...varint(payload.length)]), payload]);
}
function fixed64(no: number, v: bigint): Buffer {
  const b = Buffer.alloc(9);
  b[0] = (no << 3) | 1;
  b.writeBigUInt64LE(v, 1);
  return b;
}
function str(no: number, s: string): Buffer {
  return field(no, Buffer.from(s));
}
function kvString(key: string, value: string): Buffer {
  return Buffer.concat([str(1, key), field(2, str(1, value))]);
}
function kvInt(key: string, value: number): Buffer {
  return Buffer.concat([str(1, key), field(2, Buffer.from([3 << 3, ...varint(value)]))]);
}

/** A 500-span request shaped like an instrumented HTTP service's export (ids, name, kind, times, 2 attributes). */
function traceRequest(batch: number, spans: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < spans; i++) {
    const traceId = Buffer.alloc(16);
    traceId.writeUInt32BE(batch, 0);
    traceId.writeUInt32BE(i + 1, 12);
    const spanId = Buffer.alloc(8);
    spanId.writeUInt32BE(i + 1, 4);
    parts.push(
      field(
        2,
        Buffer.concat([
          field(1, traceId),
          field(2, spanId),
          str(5, `GET /api/items/${i % 20}`),
          Buffer.from([6 << 3, 2]),
          fixed64(7, 1_700_000_000_000_000_000n + BigInt(i)),
          fixed64(8, 1_700_000_000_000_400_000n + BigInt(i)),
          field(9, kvString('http.route', '/api/items/:id')),
          field(9, kvInt('http.status_code', 200)),
        ]),
      ),
    );
  }
  const scopeSpans = Buffer.concat([field(1, str(1, 'bench')), ...parts]);
  const resource = Buffer.concat([
    field(1, kvString('service.name', 'bench')),
    field(1, kvString('host.name', 'edge-1')),
  ]);
  return field(1, Buffer.concat([field(1, resource), field(2, scopeSpans)]));
}

// ---------------------------------------------------------------------------------------------------------------

interface Stat {
  median: number;
  min: number;
  max: number;
  runs: number;
  /** Every sample, in the order taken. */
  values: number[];
}
function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { median, min: s[0] as number, max: s[s.length - 1] as number, runs: s.length, values: [...xs] };
}
function fmt(s: Stat, unit: string, digits = 0): string {
  const f = (n: number): string => n.toLocaleString('en-US', { maximumFractionDigits: digits });
  return `${f(s.median)} ${unit} (min ${f(s.min)}, max ${f(s.max)}, n=${s.runs})`;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function startChild(
  spool: string,
  upstream: string,
  compression: string,
  maxSpool: number,
): Promise<{ child: ChildProcess; url: string; startMs: number }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [SELF, '--child', spool, '0', upstream, compression, String(maxSpool)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string).url);
    });
    child.once('exit', (c) => reject(new Error(`collector exited ${c}`)));
  });
  return { child, url, startMs: performance.now() - t0 };
}

async function stopChild(child: ChildProcess): Promise<void> {
  const done = once(child, 'exit');
  child.kill('SIGTERM');
  await done;
}

async function status(url: string): Promise<{ spool: { records: number; items: number; bytes: number } }> {
  return (await (await fetch(`${url}/status`)).json()) as { spool: { records: number; items: number; bytes: number } };
}

async function rssBytes(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(s)?.[1] ?? 0) * 1024;
}

/** Sends `requests` bodies with `concurrency` clients; every one must get a 200. Returns elapsed ms. */
async function ingest(url: string, body: Buffer, requests: number, concurrency: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < requests) {
        next++;
        const res = await fetch(`${url}/v1/traces`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/x-protobuf' },
        });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`ingest got HTTP ${res.status}`);
      }
    }),
  );
  return performance.now() - t0;
}

/** A fast upstream sink: reads each body and answers 200 with an empty response. */
async function sink(port: number): Promise<Server> {
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
      res.end();
    });
  });
  await new Promise<void>((r) => s.listen(port, '127.0.0.1', r));
  return s;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const runs = args.includes('--runs') ? Number(args[args.indexOf('--runs') + 1]) : quick ? 2 : 5;
  const backlogMb = Number(args.includes('--backlog-mb') ? args[args.indexOf('--backlog-mb') + 1] : quick ? 8 : 1024);
  const SPANS = 500;
  const REQUESTS = quick ? 80 : 400;
  const body = traceRequest(1, SPANS);
  const base = await mkdtemp(join(tmpdir(), 'vyr-bench-collector-'));
  const results: Record<string, unknown> = { spansPerRequest: SPANS, requestBytes: body.length };
  process.stdout.write(`collector bench: ${SPANS} spans/request (${body.length} bytes), ${runs} runs\n`);
  try {
    // 1–3. Ingest (8 clients and 1 client), bytes per span, drain after reconnect.
    const ingest8: number[] = [];
    const ingest1: number[] = [];
    const perSpan: number[] = [];
    const drain: Record<'gzip' | 'none', number[]> = { gzip: [], none: [] };
    for (let r = 0; r < runs; r++) {
      for (const compression of ['gzip', 'none'] as const) {
        const dir = join(base, `run-${r}-${compression}`);
        const port = await freePort();
        const { child, url } = await startChild(dir, `http://127.0.0.1:${port}`, compression, 4 * 1024 ** 3);
        if (compression === 'gzip') {
          const ms8 = await ingest(url, body, REQUESTS, 8);
          ingest8.push((REQUESTS * SPANS) / (ms8 / 1000));
          const ms1 = await ingest(url, body, REQUESTS / 4, 1);
          ingest1.push(((REQUESTS / 4) * SPANS) / (ms1 / 1000));
        } else {
          await ingest(url, body, REQUESTS * 1.25, 8);
        }
        const st = await status(url);
        perSpan.push(st.spool.bytes / st.spool.items);
        const up = await sink(port);
        const t0 = performance.now();
        while ((await status(url)).spool.records > 0) await new Promise((res) => setTimeout(res, 5));
        drain[compression].push(st.spool.items / ((performance.now() - t0) / 1000));
        await stopChild(child);
        await new Promise<void>((res) => up.close(() => res()));
        await rm(dir, { recursive: true, force: true });
      }
      process.stdout.write(`  run ${r + 1}/${runs} done\n`);
    }
    results.ingestSpansPerSec8Clients = stat(ingest8);
    results.ingestSpansPerSec1Client = stat(ingest1);
    results.spoolBytesPerSpan = stat(perSpan);
    results.drainSpansPerSecGzip = stat(drain.gzip);
    results.drainSpansPerSecNone = stat(drain.none);
    process.stdout.write(`ingest, durable, 8 clients: ${fmt(stat(ingest8), 'spans/s')}\n`);
    process.stdout.write(`ingest, durable, 1 client:  ${fmt(stat(ingest1), 'spans/s')}\n`);
    process.stdout.write(`spool bytes per span:       ${fmt(stat(perSpan), 'B', 1)}\n`);
    process.stdout.write(`drain after reconnect, gzip: ${fmt(stat(drain.gzip), 'spans/s')}\n`);
    process.stdout.write(`drain after reconnect, none: ${fmt(stat(drain.none), 'spans/s')}\n`);

    // 4. Memory while holding a large backlog, and restart time over it.
    const target = backlogMb * 1024 * 1024;
    const dir = join(base, 'backlog');
    const port = await freePort();
    let { child, url } = await startChild(dir, `http://127.0.0.1:${port}`, 'gzip', target * 2);
    const idleRss = await rssBytes(child.pid as number);
    const rss: number[] = [];
    const t0 = performance.now();
    let bytes = 0;
    while (bytes < target) {
      await ingest(url, body, 200, 8);
      bytes = (await status(url)).spool.bytes;
      rss.push(await rssBytes(child.pid as number));
    }
    const fillSec = (performance.now() - t0) / 1000;
    const held = await status(url);
    await new Promise((res) => setTimeout(res, 1000));
    const heldRss = await rssBytes(child.pid as number);
    await stopChild(child);
    const restarted = await startChild(dir, `http://127.0.0.1:${port}`, 'gzip', target * 2);
    child = restarted.child;
    url = restarted.url;
    const afterRestart = await status(url);
    const restartRss = await rssBytes(child.pid as number);
    await stopChild(child);
    results.backlog = {
      bytes: held.spool.bytes,
      spans: held.spool.items,
      fillSeconds: fillSec,
      rssIdleBytes: idleRss,
      rssWhileFillingBytes: stat(rss),
      rssHoldingBytes: heldRss,
      restartMs: restarted.startMs,
      rssAfterRestartBytes: restartRss,
      recoveredSpans: afterRestart.spool.items,
    };
    const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`;
    process.stdout.write(
      `backlog ${mb(held.spool.bytes)} (${held.spool.items.toLocaleString('en-US')} spans, filled in ${fillSec.toFixed(1)} s): ` +
        `RSS idle ${mb(idleRss)}, while filling median ${mb(stat(rss).median)} (max ${mb(stat(rss).max)}), holding ${mb(heldRss)}; ` +
        `restart over it ${restarted.startMs.toFixed(0)} ms, RSS after restart ${mb(restartRss)}\n`,
    );
    process.stdout.write(`${JSON.stringify({ collector: results })}\n`);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}
