#!/usr/bin/env node
// The portability demo (`make demo`, docs/demo.md): one signed artifact per implementation of the event-transform
// workload, imported by digest into a laptop, an edge and a cloud node; the same reference state and input on each;
// the edge cut off from its upstream collector while its tasks run. Prints one table and a verdict; exits 1 when
// any digest differs or any span was lost, 2 when the demo itself could not run.
//
// Everything is a real process driven through the `vyr` CLI as a user would: nodes, collectors, imports, runs.
// The final OTLP receiver is the repository's test receiver (packages/testing), which decodes what arrives.
import { execFile as execFileCb, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, promisify } from 'node:util';

const execFile = promisify(execFileCb);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = join(ROOT, 'examples', 'event-transform');

/** The implementations the demo runs, when their artifact exists in the checkout. */
export const IMPLEMENTATIONS = [
  { id: 'c', label: 'C (WASI P1)', wasm: join(EXAMPLE, 'event-transform.wasm') },
  { id: 'js', label: 'JS (WASI P2)', wasm: join(EXAMPLE, 'event-transform-js.wasm') },
];

const sha256 = (data) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether this process may make network namespaces (root, `ip` present, `ip netns add` works). */
async function canUseNetns(name) {
  if (process.getuid?.() !== 0) return false;
  try {
    await execFile('ip', ['netns', 'add', name]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs the demo. `log(line)` receives the narration. Returns the result (also written to `resultFile` when given);
 * throws when the demo itself could not run.
 */
export async function runPortabilityDemo(options = {}) {
  const started = performance.now();
  const say = options.log ?? (() => {});
  const log = (line) => say(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}`);
  const seed = options.seed ?? 42;
  const inputBytes = options.inputBytes ?? 400_000;
  const vyrBin = options.vyr ?? join(ROOT, 'vyr');
  const work = options.workDir ?? (await mkdtemp(join(tmpdir(), 'vyr-portability-')));
  const children = [];
  const ns = `vyr-demo-${process.pid}`;
  const netns = options.netns === false ? false : await canUseNetns(ns);
  const cleanups = [];
  let edgeLink;
  let duplicates = 0;

  /** Runs `vyr ARGS` (inside the edge namespace when `edge`), returns stdout; throws with stderr on failure. */
  /** The command line of `vyr ARGS`: inside the edge's namespace for the edge when there is one. */
  const command = (args, edge) => (edge && netns ? ['ip', ['netns', 'exec', ns, vyrBin, ...args]] : [vyrBin, args]);
  const vyr = async (args, { edge = false, allowFail = false } = {}) => {
    const [file, argv] = command(args, edge);
    try {
      const { stdout } = await execFile(file, argv, { cwd: work, maxBuffer: 256 * 1024 * 1024 });
      return stdout;
    } catch (err) {
      if (allowFail) return err.stdout ?? '';
      throw new Error(`vyr ${args.join(' ')} failed (exit ${err.code}): ${String(err.stderr).trim()}`);
    }
  };
  const vyrJson = async (args, opts) => JSON.parse(await vyr(['--json', ...args], opts));

  /** Starts a long-running `vyr` daemon and resolves with the first stdout match of `ready`. */
  const daemon = async (name, args, ready, { edge = false } = {}) => {
    const [file, argv] = command(args, edge);
    const child = spawn(file, argv, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    const logFile = createWriteStream(join(work, `${name}.log`));
    child.stderr.pipe(logFile);
    const proc = { name, child, args, edge, stopped: false };
    children.push(proc);
    let out = '';
    const match = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start in 90 s; see ${name}.log`)), 90_000);
      child.stdout.on('data', (chunk) => {
        out += chunk;
        const m = ready.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before it was ready; see ${join(work, `${name}.log`)}`));
      });
    });
    return { ...proc, match };
  };
  const stop = async (proc) => {
    if (proc.child.exitCode !== null) return;
    proc.child.kill('SIGTERM');
    await new Promise((resolve) => proc.child.once('exit', resolve));
  };

  try {
    log(`work directory ${work}`);
    const { startOtlpReceiver } = await import(
      pathToFileURL(join(ROOT, 'packages', 'testing', 'dist', 'otlp-receiver.js')).href
    );
    const impls = [];
    for (const impl of IMPLEMENTATIONS) {
      if (existsSync(impl.wasm)) impls.push(impl);
      else log(`skipping ${impl.label}: ${impl.wasm} is not built`);
    }
    if (impls.length === 0) throw new Error('no event-transform artifact is built');

    // 1. Pack and sign once per implementation.
    log('1. pack and sign each implementation once');
    await vyr(['key', 'generate', '--out', 'keys']);
    await Promise.all(
      impls.map(async (impl) => {
        impl.tar = `event-transform-${impl.id}.tar`;
        impl.digest = (
          await vyr(['pack', impl.wasm, '--manifest', join(EXAMPLE, 'vyr.json'), '--out', impl.tar])
        ).trim();
        await vyr(['sign', impl.tar, '--key', 'keys/vyr.key']);
        log(`   ${impl.label}: ${impl.digest}`);
      }),
    );
    const input = Buffer.concat([
      ...(await import('../../examples/event-transform/generate.mjs')).generateEvents({
        seed,
        bytes: inputBytes,
      }),
    ]);
    await writeFile(join(work, 'input.jsonl'), input);
    log(`   input: ${input.length} bytes, seed ${seed} (${sha256(input).slice(0, 23)}…)`);

    // 2. Topology: final receiver <- cloud collector <- edge collector (in its own netns when possible).
    const receiver = await startOtlpReceiver();
    cleanups.push(() => receiver.close());
    const hostAddress = netns ? '198.18.0.1' : '127.0.0.1';
    if (netns) {
      cleanups.push(() => execFile('ip', ['netns', 'del', ns]).catch(() => {}));
      const veth = `vyrh${process.pid % 100000}`;
      const peer = `vyre${process.pid % 100000}`;
      const sh = async (...args) => execFile('ip', args);
      await sh('link', 'add', veth, 'type', 'veth', 'peer', 'name', peer);
      cleanups.push(() => execFile('ip', ['link', 'del', veth]).catch(() => {}));
      await sh('link', 'set', peer, 'netns', ns);
      await sh('addr', 'add', '198.18.0.1/30', 'dev', veth);
      await sh('link', 'set', veth, 'up');
      await sh('netns', 'exec', ns, 'ip', 'addr', 'add', '198.18.0.2/30', 'dev', peer);
      await sh('netns', 'exec', ns, 'ip', 'link', 'set', peer, 'up');
      edgeLink = peer;
      await sh('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      log(`2. edge in network namespace ${ns} (198.18.0.2), linked to the host (198.18.0.1) by a veth pair`);
    } else {
      log('2. no network namespaces here (needs root and iproute2): every process on loopback');
    }
    const cloudCollectorArgs = (port) => [
      'collector',
      'start',
      '--spool',
      'cloud-spool',
      '--upstream',
      receiver.url,
      '--listen',
      `${hostAddress}:${port}`,
      ...(netns ? ['--allow-remote'] : []),
      '--self-metrics-interval-ms',
      '0',
    ];
    let cloudCollector = await daemon('cloud-collector', cloudCollectorArgs(0), /listening on (http:\/\/\S+)/);
    const cloudCollectorUrl = cloudCollector.match[1];
    const edgeCollector = await daemon(
      'edge-collector',
      [
        'collector',
        'start',
        '--spool',
        'edge-spool',
        '--upstream',
        cloudCollectorUrl,
        '--listen',
        netns ? '127.0.0.1:4318' : '127.0.0.1:0',
        '--self-metrics-interval-ms',
        '0',
        // Back within 2 s of the link returning, not up to the default 30 s.
        '--retry-max-delay-ms',
        '2000',
      ],
      /listening on (http:\/\/\S+)/,
      { edge: true },
    );
    const edgeCollectorUrl = edgeCollector.match[1];
    log(`   collectors: edge ${edgeCollectorUrl} -> cloud ${cloudCollectorUrl} -> receiver ${receiver.url}`);

    // 3. Three nodes, three tier profiles.
    const tiers = [
      { tier: 'laptop', edge: false, otlp: cloudCollectorUrl },
      { tier: 'edge', edge: true, otlp: edgeCollectorUrl },
      { tier: 'cloud', edge: false, otlp: cloudCollectorUrl },
    ];
    await Promise.all(
      tiers.map(async (t) => {
        const listen = t.edge && netns ? '127.0.0.1:7070' : '127.0.0.1:0';
        const args = ['node', 'start', '--tier', t.tier, '--data-dir', `${t.tier}-data`, '--listen', listen];
        args.push('--trust', 'keys/vyr.pub', '--otlp', t.otlp);
        t.proc = await daemon(`${t.tier}-node`, args, /"url":"(http:\/\/[^"]+)"/, { edge: t.edge });
        t.url = t.proc.match[1];
        t.publicKey = `${t.tier}-node.pub`;
        const status = ['node', 'status', '--node', t.url, '--public-key-out', t.publicKey];
        t.status = await vyrJson(status, { edge: t.edge });
        log(
          `3. ${t.tier} node ${t.status.nodeId} at ${t.url}: ${t.status.poolSize} workers, queue ${t.status.maxQueueLength}`,
        );
      }),
    );

    // 4. The same digest into each node; the edge gets an air-gapped copy, verified on arrival.
    await Promise.all(
      tiers.map(async (t) => {
        for (const impl of impls) {
          let tar = impl.tar;
          if (t.edge) {
            await mkdir(join(work, 'edge-inbox'), { recursive: true });
            tar = join('edge-inbox', impl.tar);
            await copyFile(join(work, impl.tar), join(work, tar));
            await copyFile(join(work, `${impl.tar}.sigstore.json`), join(work, `${tar}.sigstore.json`));
            await vyr(['verify', tar, '--trust', 'keys/vyr.pub'], { edge: true });
          }
          const imported = await vyrJson(['import', tar, '--node', t.url], { edge: t.edge });
          const digest = imported.artifact.digest;
          if (digest !== impl.digest) throw new Error(`${t.tier} imported ${digest}, not ${impl.digest}`);
        }
        const ref = ['state', 'create', '--name', 'devices', '--from', join(EXAMPLE, 'reference'), '--node', t.url];
        t.reference = (await vyrJson(ref, { edge: t.edge })).state.id;
      }),
    );
    log(
      `4. imported ${impls.map((i) => i.digest.slice(0, 19)).join(', ')} into all three nodes (edge: from a carried .tar)`,
    );

    // 5. Run: laptop and cloud connected; the edge with its uplink cut.
    await mkdir(join(work, 'receipts'), { recursive: true });
    const rows = [];
    const runOn = async (t, impl) => {
      const agg = (await vyrJson(['state', 'create', '--name', `agg-${impl.id}`, '--node', t.url], { edge: t.edge }))
        .state.id;
      const args = ['run', impl.digest, '--stdin', 'input.jsonl', '--state', `reference=${t.reference}:ro`];
      // Each task's signed execution receipt (docs/receipts.md) lands beside the work directory's other files.
      const receipt = join('receipts', `${t.tier}-${impl.id}.json`);
      args.push('--state', `aggregates=${agg}`, '--node', t.url, '--receipt', receipt);
      const ran = await vyrJson(args, { edge: t.edge });
      const task = ran.task;
      if (task.status !== 'SUCCEEDED')
        throw new Error(`${t.tier}/${impl.id}: task ${task.id} ${task.status}: ${ran.stderr}`);
      const summary = JSON.parse(ran.stderr.trim().split('\n').pop());
      const spans = (await vyrJson(['traces', '--task', task.id, '--node', t.url], { edge: t.edge })).spans;
      const row = {
        tier: t.tier,
        implementation: impl.id,
        node: t.status.nodeId,
        artifactDigest: task.artifactDigest,
        stdoutDigest: sha256(ran.stdout),
        stateDigest: task.stateResults.find((s) => s.slot === 'aggregates').digest,
        referenceDigest: task.stateResults.find((s) => s.slot === 'reference').digest,
        eventsIn: summary.in,
        eventsOut: summary.out,
        rejected: summary.rejected,
        durationMs: task.endedAtUnixMs - task.startedAtUnixMs,
        traceId: task.traceId,
        receipt,
        nodeSpans: spans.length,
        receivedSpans: 0,
      };
      rows.push(row);
      return row;
    };
    // Laptop and cloud side by side (each node runs its implementations one after the other).
    await Promise.all(
      tiers
        .filter((x) => !x.edge)
        .map(async (t) => {
          for (const impl of impls) await runOn(t, impl);
        }),
    );
    // Fills each row's receivedSpans from the receiver; true once every row has all of its node's spans.
    // Store-and-forward is at-least-once: a batch whose acknowledgement was lost is sent again, so spans are
    // counted once per span id and the repeats reported apart.
    const count = () => {
      const byTrace = new Map();
      const ours = new Set(rows.map((r) => r.traceId));
      let total = 0;
      for (const s of receiver.spans()) {
        if (!ours.has(s.traceId)) continue;
        if (!byTrace.has(s.traceId)) byTrace.set(s.traceId, new Set());
        byTrace.get(s.traceId).add(s.spanId);
        total++;
      }
      let unique = 0;
      for (const r of rows) {
        r.receivedSpans = byTrace.get(r.traceId)?.size ?? 0;
        unique += r.receivedSpans;
      }
      duplicates = total - unique;
      return rows.every((r) => r.receivedSpans >= r.nodeSpans);
    };
    const drain = async (timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (!count() && Date.now() < deadline) await sleep(200);
    };
    // Their spans reach the receiver first, so that the cut below holds back only the edge's.
    await drain(options.drainTimeoutMs ?? 45_000);
    log('5. ran on laptop and cloud; their spans are at the receiver');

    const edge = tiers.find((x) => x.edge);
    let cut;
    if (netns) {
      await execFile('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', edgeLink, 'down']);
      cut = "the edge namespace's veth link was set down (its route to the cloud collector was gone)";
    } else {
      await stop(cloudCollector);
      cut = "the cloud collector (the edge's upstream) was stopped";
    }
    log(`   cut: ${cut}`);
    const edgeRows = [];
    for (const impl of impls) edgeRows.push(await runOn(edge, impl));
    // The edge collector holds the spans while the link is down: wait until its spool has every edge span.
    const edgeSpans = edgeRows.reduce((n, r) => n + r.nodeSpans, 0);
    let spooled = 0;
    const until = Date.now() + 20_000;
    while (Date.now() < until) {
      const status = await vyrJson(['collector', 'status', '--addr', edgeCollectorUrl], { edge: true });
      spooled = status.spool?.signals?.traces?.items ?? status.signals?.traces?.items ?? 0;
      if (spooled >= edgeSpans) break;
      await sleep(250);
    }
    const receivedDuringCut = receiver.spans().filter((s) => edgeRows.some((r) => r.traceId === s.traceId)).length;
    log(
      `   edge tasks done while cut; edge collector spooled ${spooled} span(s), receiver got ${receivedDuringCut} of them`,
    );
    if (netns) {
      await execFile('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', edgeLink, 'up']);
    } else {
      const port = new URL(cloudCollectorUrl).port;
      cloudCollector = await daemon('cloud-collector-2', cloudCollectorArgs(port), /listening on (http:\/\/\S+)/);
    }
    log('   link restored');

    // 6. Every span the nodes report must reach the final receiver.
    await drain(options.drainTimeoutMs ?? 45_000);

    // 7. The receipts: signed by three different node keys, they must claim the same run (artifact, inputs,
    // outcome, stdout and state digests) per implementation.
    const keys = tiers.flatMap((t) => ['--node-key', t.publicKey]);
    const receipts = {};
    for (const impl of impls) {
      const files = rows.filter((r) => r.implementation === impl.id).map((r) => r.receipt);
      const compared = await execFile(vyrBin, ['receipt', 'compare', ...files, ...keys], { cwd: work }).then(
        (r) => ({ agree: true, output: r.stdout.trim() }),
        (err) => ({ agree: false, output: `${String(err.stdout).trim()} ${String(err.stderr).trim()}`.trim() }),
      );
      receipts[impl.id] = compared;
      log(
        `   receipts of ${impl.label}: ${compared.agree ? 'same run on all three nodes' : `DIFFER: ${compared.output}`}`,
      );
    }
    const order = (r) =>
      tiers.findIndex((t) => t.tier === r.tier) * 10 + impls.findIndex((i) => i.id === r.implementation);
    rows.sort((a, b) => order(a) - order(b));
    const wallMs = Math.round(performance.now() - started);
    const same = (key) => new Set(rows.map((r) => r[key])).size === 1;
    const sameArtifacts = impls.every((impl) =>
      rows.filter((r) => r.implementation === impl.id).every((r) => r.artifactDigest === impl.digest),
    );
    const lost = rows.reduce((n, r) => n + Math.max(0, r.nodeSpans - r.receivedSpans), 0);
    const result = {
      seed,
      inputBytes: input.length,
      inputDigest: sha256(input),
      netns,
      cut,
      spooledDuringCut: spooled,
      receivedDuringCut,
      duplicateSpansReceived: duplicates,
      wallMs,
      rows,
      receipts,
      verdict: {
        receiptsAgree: Object.values(receipts).every((r) => r.agree),
        artifactDigestsEqual: sameArtifacts,
        stdoutDigestsEqual: same('stdoutDigest'),
        stateDigestsEqual: same('stateDigest'),
        spansLost: lost,
        ok:
          sameArtifacts &&
          same('stdoutDigest') &&
          same('stateDigest') &&
          lost === 0 &&
          receivedDuringCut === 0 &&
          Object.values(receipts).every((r) => r.agree),
      },
    };
    if (options.resultFile) {
      await mkdir(dirname(options.resultFile), { recursive: true });
      await writeFile(options.resultFile, `${JSON.stringify(result, null, 2)}\n`);
    }
    return result;
  } finally {
    for (const proc of children.reverse()) await stop(proc).catch(() => {});
    for (const cleanup of cleanups.reverse()) await cleanup();
    if (!options.keep && !options.workDir) await rm(work, { recursive: true, force: true });
  }
}

/** The result as the table and verdict lines the demo prints. */
export function formatResult(result) {
  const headers = [
    'tier',
    'impl',
    'artifact',
    'stdout',
    'state',
    'in',
    'out',
    'rejected',
    'ms',
    'spans node',
    'spans received',
  ];
  const short = (d) => `${d.slice(0, 19)}…`;
  const body = result.rows.map((r) => [
    r.tier,
    r.implementation,
    short(r.artifactDigest),
    short(r.stdoutDigest),
    short(r.stateDigest),
    String(r.eventsIn),
    String(r.eventsOut),
    String(r.rejected),
    String(r.durationMs),
    String(r.nodeSpans),
    String(r.receivedSpans),
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells) => cells.map((c, i) => (i >= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  const v = result.verdict;
  const verdict = v.ok
    ? `VERDICT: same output and same state digest on every tier and implementation, signed receipts agree; spans lost ${v.spansLost}`
    : `VERDICT: FAILED — artifact digests equal: ${v.artifactDigestsEqual}, stdout digests equal: ${v.stdoutDigestsEqual}, state digests equal: ${v.stateDigestsEqual}, receipts agree: ${v.receiptsAgree}, spans lost: ${v.spansLost}, spans that crossed the cut: ${result.receivedDuringCut}`;
  return [
    line(headers),
    ...body.map(line),
    '',
    `cut: ${result.cut}; ${result.spooledDuringCut} span(s) spooled at the edge meanwhile; ${result.duplicateSpansReceived} span(s) delivered twice (at-least-once)`,
    `wall time ${(result.wallMs / 1000).toFixed(1)} s`,
    verdict,
  ].join('\n');
}

async function main() {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string', default: '42' },
      bytes: { type: 'string', default: '400000' },
      'no-netns': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      result: { type: 'string', default: join(ROOT, '.vyr', 'demo', 'result.json') },
    },
  });
  const log = (line) => process.stdout.write(`${line}\n`);
  let result;
  try {
    result = await runPortabilityDemo({
      seed: Number(values.seed),
      inputBytes: Number(values.bytes),
      netns: values['no-netns'] ? false : undefined,
      keep: values.keep,
      resultFile: values.result,
      log,
    });
  } catch (err) {
    process.stderr.write(`demo: could not run: ${err.message}\n`);
    process.exit(2);
  }
  log('');
  log(formatResult(result));
  log(`(result: ${values.result})`);
  process.exit(result.verdict.ok ? 0 : 1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
