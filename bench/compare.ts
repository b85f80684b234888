/**
 * Side by side: the event-transform workload run by VYR and by what a user would pick instead, interleaved in one
 * run on one machine. Run by bench/run.ts (`make bench`); alone: `node bench/compare.ts [--quick] [--json]`.
 *
 * Subjects (each skipped with the reason when its tool is absent or refuses to run here, never faked):
 *   process      the same C source built natively with clang-19 -O2 (static) and spawned directly: the floor
 *   runc, crun   that binary as the only file of a read-only rootfs in a minimal OCI bundle, `runc run`
 *   wasmtime     the same .wasm (WASI P1) through the Python `wasmtime` package (the wasmtime C API library):
 *                embedded (engine up, module compiled once; new Store + WasiConfig + instantiate + _start per run)
 *                and as a fresh process per run (import + compile + instantiate + run, like a CLI invocation)
 *   node:wasi    the same .wasm through Node's built-in WASI in this process (compiled once, instantiated per run)
 *   vyr          the artifact packed from that .wasm (preview1 adapter → component, jco transpile, V8), warm pool,
 *                in-process (`createRuntime`) and over RPC to a real node process (Connect, HTTP/1.1 and HTTP/2)
 *   vyr-js       the JS component (componentize-js) of the same transform, when the demo has built it
 *
 * Benchmarks, each one sample per subject per round, subjects in a rotating order inside every round so all see
 * the same moments of machine noise (ratios are computed pair by pair on the same round):
 *   startup      start → exit with a one-event input (ms)
 *   throughput   one run over the large input: wall ms, events/s, MB/s of input
 *   compile      compile of the module alone (wasmtime, node:wasi)
 *   cold         a first run of an artifact the runtime has never seen (VYR: import + verify + prepare + run on a
 *                node that is up; wasmtime: fresh process; node:wasi: compile + instantiate + run)
 *   memory       peak memory over the large input (cgroup memory peak for process/runc; getrusage for wasmtime;
 *                the guest's linear memory for VYR — different methods, named in each row)
 *   size         binary, bundle, module, artifact sizes (bytes)
 * Prints one JSON document (`{benchmarks, ratios, workload, notes}`) on stdout.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { WASI } from 'node:wasi';
import { createNodeClient, type NodeClient } from '@vyr/api/client';
import { createStore, loadTrustPolicy, packArtifact, signArtifact, writeKeyPair } from '@vyr/artifact';
import { Access, StateScope, TaskStatus } from '@vyr/proto';
import { artifactSourceFromStore, createRuntime, type Mount, type Runtime } from '@vyr/runtime';
import { generateEvents } from './lib/events.ts';
import { pairRatios, summarize } from './lib/stats.ts';
import { tarDirectory } from './lib/tar.ts';
import type { Benchmark, Ratio } from './lib/types.ts';

const execFileP = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const EXAMPLE = join(ROOT, 'examples/event-transform');
const NODE_MAIN = join(ROOT, 'apps/node/dist/main.js');
const DRIVER = fileURLToPath(new URL('wasmtime_driver.py', import.meta.url));

export interface CompareOptions {
  quick: boolean;
  python: string;
  progress: (text: string) => void;
}

/** What compare produced. */
export interface CompareResult {
  benchmarks: Benchmark[];
  ratios: Ratio[];
  workload: Record<string, unknown>;
  notes: string[];
}

/** The workload (examples/event-transform, issue 9): C source, its WASI P1 build, the JS component, the device table. */
function workloadFiles(): {
  cSource: string;
  wasm: string;
  js: string;
  reference: string;
  manifest: string;
  build: string;
} {
  const need = (p: string) => {
    if (!existsSync(p)) throw new Error(`${p} is missing: the side-by-side suite needs examples/event-transform`);
    return p;
  };
  return {
    cSource: need(join(EXAMPLE, 'src/event-transform.c')),
    wasm: need(join(EXAMPLE, 'event-transform.wasm')),
    js: join(EXAMPLE, 'event-transform-js.wasm'),
    reference: need(join(EXAMPLE, 'reference/devices.json')),
    manifest: need(join(EXAMPLE, 'vyr.json')),
    build: need(join(EXAMPLE, 'build.sh')),
  };
}

/** Spawns a command with stdin from a file and stdout to a file (or /dev/null); times spawn → exit. */
async function timedSpawn(
  cmd: string,
  args: readonly string[],
  stdinPath: string,
  stdoutPath = '/dev/null',
): Promise<{ ms: number; code: number | null; stderr: string; stdout: string }> {
  const input = await open(stdinPath, 'r');
  const output = await open(stdoutPath, 'w');
  try {
    let stderr = '';
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: [input.fd, output.fd, 'pipe'] });
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d;
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (c) => resolve(c));
    });
    const ms = performance.now() - t0;
    return { ms, code, stderr, stdout: stdoutPath };
  } finally {
    await input.close();
    await output.close();
  }
}

async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

// ---- cgroup memory peak --------------------------------------------------------------------------------------

/** A throwaway cgroup whose memory peak covers everything started inside it. */
interface MemCgroup {
  /** Path relative to the hierarchy root (for an OCI `cgroupsPath`). */
  rel: string;
  procs: string;
  peak(): Promise<number>;
  remove(): Promise<void>;
}

async function makeMemCgroup(name: string): Promise<MemCgroup> {
  if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
    const dir = join('/sys/fs/cgroup', name);
    await mkdir(dir);
    return {
      rel: `/${name}`,
      procs: join(dir, 'cgroup.procs'),
      peak: async () => Number((await readFile(join(dir, 'memory.peak'), 'utf8')).trim()),
      remove: () => removeCgroupTree(['/sys/fs/cgroup'], name),
    };
  }
  const dir = join('/sys/fs/cgroup/memory', name);
  await mkdir(dir);
  return {
    rel: `/${name}`,
    procs: join(dir, 'cgroup.procs'),
    peak: async () => Number((await readFile(join(dir, 'memory.max_usage_in_bytes'), 'utf8')).trim()),
    // runc creates the path in every v1 hierarchy; remove it from each.
    remove: async () => {
      const roots = (await readdir('/sys/fs/cgroup')).map((c) => join('/sys/fs/cgroup', c));
      await removeCgroupTree(roots, name);
    },
  };
}

async function removeCgroupTree(roots: string[], name: string): Promise<void> {
  for (const root of roots) {
    const dir = join(root, name);
    if (!existsSync(dir)) continue;
    for (const e of await readdir(dir, { withFileTypes: true }))
      if (e.isDirectory()) await rmdir(join(dir, e.name)).catch(() => undefined);
    await rmdir(dir).catch(() => undefined);
  }
}

// ---- subjects ------------------------------------------------------------------------------------------------

/** One run of the workload: wall ms, and the phases a subject can report (ms). */
interface RunSample {
  ms: number;
  phases?: Record<string, number>;
  memoryBytes?: number;
}

interface Subject {
  id: string;
  label: string;
  /** Why it cannot run here; set during set-up. */
  skip?: string;
  run?: (input: string, output?: string) => Promise<RunSample>;
  memory?: (input: string) => Promise<RunSample>;
  memoryMethod?: string;
}

function ociConfig(args: string[], rootPath: string, cgroupsPath?: string): unknown {
  // The minimal config `runc spec` writes, trimmed to what a one-shot batch process needs: no terminal, read-only
  // rootfs holding the static binary and the device table, the default namespaces, no network.
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/'],
      cwd: '/',
      capabilities: { bounding: [], effective: [], permitted: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: rootPath, readonly: true },
    hostname: 'bench',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      // The aggregates slot: a fresh, writable tmpfs per container (256 MiB, the slot's quota).
      {
        destination: '/agg',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', 'mode=755', 'size=268435456'],
      },
    ],
    linux: {
      ...(cgroupsPath ? { cgroupsPath } : {}),
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** The wasmtime driver process (embedded mode), answering one JSON line per command. */
class WasmtimeServer {
  readonly child: ChildProcess;
  readonly #lines: AsyncIterator<string>;
  #spawnError: Error | undefined;
  ready!: { importMs: number; compileMs: number; wasmtime: string };

  constructor(python: string, module: string) {
    this.child = spawn(python, [DRIVER, 'serve', module], { stdio: ['pipe', 'pipe', 'inherit'] });
    // No Python at all: spawn reports it as an 'error' event; keep it for the first read instead of crashing.
    this.child.once('error', (err) => {
      this.#spawnError = err;
    });
    this.#lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  async start(): Promise<void> {
    this.ready = (await this.#next()) as typeof this.ready;
  }

  async #next(): Promise<Record<string, unknown>> {
    const r = await this.#lines.next();
    if (r.done) throw new Error(`wasmtime driver exited${this.#spawnError ? `: ${this.#spawnError.message}` : ''}`);
    const v = JSON.parse(r.value) as Record<string, unknown>;
    if (typeof v.error === 'string') throw new Error(`wasmtime driver: ${v.error}`);
    return v;
  }

  async call(cmd: Record<string, unknown>): Promise<Record<string, number>> {
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return (await this.#next()) as Record<string, number>;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.#spawnError) return;
    const done = new Promise((r) => this.child.once('exit', r));
    this.child.stdin!.end();
    await done;
  }
}

async function startNode(dataDir: string, pub: string): Promise<{ url: string; child: ChildProcess; pid: number }> {
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
  const line = await new Promise<string>((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`vyr node exited ${c} before it was ready`)));
    createInterface({ input: child.stdout! }).once('line', resolve);
  });
  const ready = JSON.parse(line) as { url: string; pid: number };
  return { url: ready.url, child, pid: ready.pid };
}

async function rpcRun(
  client: NodeClient,
  digest: string,
  stdin: Uint8Array,
  bindings: { slot: string; stateId: string; access: Access }[],
): Promise<number> {
  const { task } = await client.submitTask({ artifactDigest: digest, stdin, bindings });
  let last = task?.status ?? TaskStatus.UNSPECIFIED;
  let out = 0;
  for await (const ev of client.watchTask({ taskId: task!.id })) {
    if (ev.event.case === 'task') last = ev.event.value.status;
    else if (ev.event.case === 'stdout') out += ev.event.value.byteLength;
  }
  if (last !== TaskStatus.SUCCEEDED) throw new Error(`task over RPC ended ${TaskStatus[last]}`);
  return out;
}

async function vyrRun(runtime: Runtime, digest: string, stdin: Uint8Array, mounts: Mount[]): Promise<RunSample> {
  const t0 = performance.now();
  const t = await runtime.submit({ digest, stdin, mounts });
  const s = await runtime.wait(t.id);
  const ms = performance.now() - t0;
  if (s.state !== 'SUCCEEDED') throw new Error(`VYR task ended ${s.state} ${s.reason ?? ''} ${s.message ?? ''}`);
  return { ms, memoryBytes: s.memoryBytes };
}

async function vyrOutput(
  runtime: Runtime,
  digest: string,
  stdin: Uint8Array,
  path: string,
  mounts: Mount[],
): Promise<void> {
  const t = await runtime.submit({ digest, stdin, mounts, holdOutput: true });
  const chunks: Uint8Array[] = [];
  let end: string | undefined;
  for await (const e of runtime.watch(t.id)) {
    if (e.type === 'stdout') chunks.push(e.data);
    if (e.type === 'status' && ['SUCCEEDED', 'FAILED', 'CANCELLED', 'DEADLINE_EXCEEDED'].includes(e.status.state))
      end = e.status.state;
  }
  if (end !== 'SUCCEEDED') throw new Error(`VYR output run ended ${end}`);
  await writeFile(path, Buffer.concat(chunks));
}

function push(map: Record<string, number[]>, key: string, value: number): void {
  const list = map[key] ?? [];
  list.push(value);
  map[key] = list;
}

function bench(
  id: string,
  group: string,
  subject: string,
  title: string,
  unit: string,
  better: 'lower' | 'higher',
  samples: number[],
  method: string,
  skip?: string,
): Benchmark {
  if (skip || samples.length === 0)
    return { id, group, subject, title, unit, better, samples: [], method, skipped: skip ?? 'no samples' };
  return { id, group, subject, title, unit, better, samples, summary: summarize(samples), method };
}

export async function runCompare(opts: CompareOptions): Promise<CompareResult> {
  const { quick } = opts;
  const rounds = { startup: quick ? 2 : 30, throughput: quick ? 2 : 20, cold: quick ? 1 : 8, memory: quick ? 1 : 5 };
  const largeBytes = quick ? 64 * 1024 : 4 * 1024 * 1024;
  const work = await mkdtemp(join(tmpdir(), 'vyr-bench-compare-'));
  const files = workloadFiles();
  const notes: string[] = [];
  const closers: (() => Promise<void>)[] = [];
  const uid = `${process.pid}-${Date.now().toString(36)}`;
  let seq = 0;
  // Stopped from outside (the harness got a signal): stop the node, the driver and the pool before exiting.
  const onSignal = () => {
    void (async () => {
      for (const close of closers.reverse()) await close().catch(() => undefined);
      await rm(work, { recursive: true, force: true });
      process.exit(130);
    })();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    // ---- inputs --------------------------------------------------------------------------------------------------
    opts.progress('compare: generating inputs');
    const tiny = await generateEvents(join(work, 'tiny.jsonl'), 1, 1); // one line
    const large = await generateEvents(join(work, 'large.jsonl'), 42, largeBytes);
    const tinyBytes = await readFile(tiny.path);
    const largeInput = await readFile(large.path);
    const wasmBytes = await readFile(files.wasm);

    // ---- per-run aggregates state ----------------------------------------------------------------------------------
    // event-transform refuses an aggregates directory that is not empty ("bind a fresh state"), so every run gets a
    // fresh one, made before and removed after the timed part, for every subject alike.
    const refDir = dirname(files.reference);
    const freshAgg = async (): Promise<string> => {
      const d = join(work, `agg-${seq++}`);
      await mkdir(d);
      return d;
    };
    const dropAgg = (d: string) => rm(d, { recursive: true, force: true });

    // ---- the process floor -----------------------------------------------------------------------------------------
    opts.progress('compare: building the native binary (build.sh --native: clang-19 -O2, static)');
    const native = join(work, 'event-transform');
    const subjects: Subject[] = [];
    const processSubject: Subject = { id: 'process', label: 'native process (clang-19 -O2, static)' };
    try {
      await execFileP('bash', [files.build, '--native', native], { cwd: EXAMPLE });
      processSubject.run = async (input, output) => {
        const agg = await freshAgg();
        const r = await timedSpawn(native, ['--reference', files.reference, '--out', agg], input, output);
        await dropAgg(agg);
        if (r.code !== 0) throw new Error(`native event-transform exited ${r.code}: ${r.stderr}`);
        return { ms: r.ms };
      };
      processSubject.memoryMethod = 'cgroup memory peak of a fresh cgroup the process runs in (sh → exec)';
      processSubject.memory = async (input) => {
        const cg = await makeMemCgroup(`vyr-bench-${uid}-${seq++}`);
        const agg = await freshAgg();
        try {
          const r = await timedSpawn(
            'sh',
            ['-c', `echo $$ > ${cg.procs} && exec "$0" "$@"`, native, '--reference', files.reference, '--out', agg],
            input,
          );
          if (r.code !== 0) throw new Error(`native event-transform exited ${r.code}: ${r.stderr}`);
          return { ms: r.ms, memoryBytes: await cg.peak() };
        } finally {
          await cg.remove();
          await dropAgg(agg);
        }
      };
    } catch (err) {
      processSubject.skip = `build.sh --native failed: ${String((err as Error).message).split('\n')[0]}`;
    }
    subjects.push(processSubject);

    // ---- containers --------------------------------------------------------------------------------------------------
    // rootfs: the static binary, /ref/devices.json, and an empty /agg on which a fresh tmpfs is mounted per container.
    const bundle = join(work, 'bundle');
    let bundleBytes: number | undefined;
    for (const runtimeName of ['runc', 'crun'] as const) {
      const s: Subject = { id: runtimeName, label: `${runtimeName} run (minimal OCI bundle, static binary)` };
      subjects.push(s);
      if (processSubject.skip) {
        s.skip = `no native binary (${processSubject.skip})`;
        continue;
      }
      if (process.getuid?.() !== 0) {
        s.skip = `${runtimeName} needs root here (rootless containers are not set up by the bench)`;
        continue;
      }
      try {
        await execFileP(runtimeName, ['--version']);
      } catch {
        s.skip = `${runtimeName} is not installed (apt-get install ${runtimeName})`;
        continue;
      }
      if (!existsSync(bundle)) {
        await mkdir(join(bundle, 'rootfs/ref'), { recursive: true });
        await mkdir(join(bundle, 'rootfs/agg'));
        await cp(native, join(bundle, 'rootfs/event-transform'));
        await cp(files.reference, join(bundle, 'rootfs/ref/devices.json'));
        await writeFile(
          join(bundle, 'config.json'),
          JSON.stringify(ociConfig(['/event-transform'], 'rootfs'), null, 1),
        );
        bundleBytes = await dirBytes(bundle);
      }
      const runOne = async (b: string, input: string, output?: string) => {
        const r = await timedSpawn(runtimeName, ['run', '--bundle', b, `vyrb-${uid}-${seq++}`], input, output);
        if (r.code !== 0) throw new Error(`${runtimeName} run exited ${r.code}: ${r.stderr.trim()}`);
        return { ms: r.ms };
      };
      try {
        await runOne(bundle, tiny.path);
      } catch (err) {
        s.skip = `a first ${runtimeName} run failed on this machine: ${(err as Error).message}`;
        continue;
      }
      s.run = (input, output) => runOne(bundle, input, output);
      s.memoryMethod = 'cgroup memory peak of the parent of the container cgroup (runc init + the process + its tmpfs)';
      s.memory = async (input) => {
        const cg = await makeMemCgroup(`vyr-bench-${uid}-${seq++}`);
        const b = join(work, `bundle-mem-${seq++}`);
        try {
          await mkdir(b);
          await writeFile(
            join(b, 'config.json'),
            JSON.stringify(ociConfig(['/event-transform'], join(bundle, 'rootfs'), `${cg.rel}/ct`)),
          );
          const r = await runOne(b, input);
          return { ...r, memoryBytes: await cg.peak() };
        } finally {
          await cg.remove();
          await rm(b, { recursive: true, force: true });
        }
      };
    }

    // ---- wasmtime ------------------------------------------------------------------------------------------------------
    const wt: Subject = { id: 'wasmtime', label: 'wasmtime (embedded, module compiled once)' };
    const wtCli: Subject = { id: 'wasmtime-process', label: 'wasmtime, fresh process per run (import+compile+run)' };
    subjects.push(wt, wtCli);
    let wtServer: WasmtimeServer | undefined;
    try {
      wtServer = new WasmtimeServer(opts.python, files.wasm);
      const server = wtServer;
      closers.push(() => server.close());
      await server.start();
      wt.run = async (input, output) => {
        const agg = await freshAgg();
        // /ref preopened read-only, /agg read-write: what the artifact declares.
        const r = await server.call({
          op: 'run',
          stdin: input,
          stdout: output ?? '/dev/null',
          preopens: [
            [refDir, '/ref', false],
            [agg, '/agg', true],
          ],
        });
        await dropAgg(agg);
        if (r.exitCode !== 0) throw new Error(`wasmtime run exited ${r.exitCode}`);
        return {
          ms: (r.instantiateMs as number) + (r.runMs as number),
          phases: { instantiate: r.instantiateMs as number, run: r.runMs as number },
        };
      };
      wt.memoryMethod = 'getrusage max RSS of the driver process (Python + wasmtime, module compiled)';
      wt.memory = async (input) => {
        const r = await wt.run!(input);
        return { ...r, memoryBytes: (await server.call({ op: 'rss' })).maxRssBytes };
      };
      wtCli.run = async (input, output) => {
        const agg = await freshAgg();
        const r = await timedSpawn(
          opts.python,
          [DRIVER, 'once', files.wasm, input, output ?? '/dev/null', refDir, agg],
          input,
        );
        await dropAgg(agg);
        if (r.code !== 0) throw new Error(`wasmtime once exited ${r.code}: ${r.stderr}`);
        return { ms: r.ms };
      };
    } catch (err) {
      const why = `the Python wasmtime package is not usable (${opts.python}): ${(err as Error).message}`;
      wt.skip = why;
      wtCli.skip = why;
    }

    // ---- node:wasi -----------------------------------------------------------------------------------------------------
    const nw: Subject = { id: 'node-wasi', label: 'node:wasi (this process, module compiled once)' };
    subjects.push(nw);
    const nodeModule = await WebAssembly.compile(wasmBytes);
    const nodeWasiRun = async (module: WebAssembly.Module, input: string, output?: string): Promise<RunSample> => {
      const inFd = await open(input, 'r');
      const outFd = await open(output ?? '/dev/null', 'w');
      const errFd = await open('/dev/null', 'w');
      const agg = await freshAgg();
      try {
        const t0 = performance.now();
        const wasi = new WASI({
          version: 'preview1',
          args: ['event-transform'],
          env: {},
          preopens: { '/ref': refDir, '/agg': agg },
          stdin: inFd.fd,
          stdout: outFd.fd,
          stderr: errFd.fd,
          returnOnExit: true,
        });
        const instance = await WebAssembly.instantiate(module, wasi.getImportObject() as WebAssembly.Imports);
        const t1 = performance.now();
        const code = wasi.start(instance);
        const t2 = performance.now();
        if (code !== 0) throw new Error(`node:wasi run exited ${code}`);
        return { ms: t2 - t0, phases: { instantiate: t1 - t0, run: t2 - t1 } };
      } finally {
        await inFd.close();
        await outFd.close();
        await errFd.close();
        await dropAgg(agg);
      }
    };
    nw.run = (input, output) => nodeWasiRun(nodeModule, input, output);

    // ---- VYR -------------------------------------------------------------------------------------------------------------
    opts.progress('compare: packing and signing the VYR artifacts, starting a node');
    const keys = await writeKeyPair(join(work, 'keys'));
    const cArtifact = join(work, 'event-transform.oci.tar');
    const packed = await packArtifact(files.wasm, cArtifact, { manifest: files.manifest });
    await signArtifact(cArtifact, { path: keys.privateKeyPath });
    const storeDir = join(work, 'store');
    const store = createStore({ dir: storeDir });
    await store.import(cArtifact);
    let jsPacked: Awaited<ReturnType<typeof packArtifact>> | undefined;
    let jsSkip: string | undefined;
    const jsArtifact = join(work, 'event-transform-js.oci.tar');
    if (existsSync(files.js)) {
      try {
        const manifest = {
          ...(JSON.parse(await readFile(files.manifest, 'utf8')) as object),
          name: 'event-transform-js',
        };
        jsPacked = await packArtifact(files.js, jsArtifact, { manifest: manifest as never });
        await signArtifact(jsArtifact, { path: keys.privateKeyPath });
        await store.import(jsArtifact);
      } catch (err) {
        jsSkip = `packing ${files.js} failed: ${(err as Error).message}`;
      }
    } else {
      jsSkip =
        'examples/event-transform/event-transform-js.wasm is not in this checkout (the JS component is built by the demo, issue 9)';
    }
    // Signed by the bench's key and verified against it, as on a node (no allowUnsigned).
    const policy = await loadTrustPolicy([keys.publicKeyPath]);
    const runtime = createRuntime({
      artifacts: artifactSourceFromStore(store, policy),
      cacheDir: join(work, 'cache'),
      poolSize: 2,
    });
    closers.push(() => runtime.close());
    await runtime.warmUp();
    // In-process, the declared slots are host directories given as mounts (the node's state kernel is measured over
    // RPC below and by the state suite): /ref read-only, a fresh /agg with the slot's quota.
    const vyrMounts = (agg: string): Mount[] => [
      { guestPath: '/ref', hostPath: refDir, readOnly: true },
      { guestPath: '/agg', hostPath: agg, quotaBytes: 256 * 1024 * 1024 },
    ];
    const vyrSubject = (id: string, label: string, digest: string): Subject => ({
      id,
      label,
      run: async (input, output) => {
        const bytes = input === tiny.path ? tinyBytes : largeInput;
        const agg = await freshAgg();
        try {
          if (output) {
            await vyrOutput(runtime, digest, bytes, output, vyrMounts(agg));
            return { ms: 0 };
          }
          return await vyrRun(runtime, digest, bytes, vyrMounts(agg));
        } finally {
          await dropAgg(agg);
        }
      },
    });
    const vyr = vyrSubject('vyr', 'VYR in-process (createRuntime, warm pool of 2)', packed.digest);
    vyr.memoryMethod = 'the guest linear memory at exit (TaskStatus.memoryBytes); the node process is measured by api';
    vyr.memory = (input) => vyr.run!(input);
    const vyrJs: Subject = jsPacked
      ? vyrSubject('vyr-js', 'VYR in-process, JS component (componentize-js)', jsPacked.digest)
      : { id: 'vyr-js', label: 'VYR in-process, JS component (componentize-js)', skip: jsSkip };
    subjects.push(vyr, vyrJs);

    const node = await startNode(join(work, 'node-data'), keys.publicKeyPath);
    closers.push(async () => {
      const exited = new Promise((r) => node.child.once('exit', r));
      node.child.kill('SIGTERM');
      await exited;
    });
    const clients = {
      'vyr-rpc-h1': createNodeClient({ baseUrl: node.url, httpVersion: '1.1' }),
      'vyr-rpc-h2': createNodeClient({ baseUrl: node.url, httpVersion: '2' }),
    };
    const admin = clients['vyr-rpc-h1'];
    const artifactTar = await readFile(cArtifact);
    await admin.importArtifact(
      (async function* () {
        yield { part: { case: 'header' as const, value: { sizeBytes: BigInt(artifactTar.length) } } };
        yield { part: { case: 'chunk' as const, value: artifactTar } };
      })(),
    );
    // Over RPC the node's state kernel binds the slots: the device table as a named instance seeded once from a tar,
    // bound ro to every task; a fresh, empty aggregates instance per run (created before, deleted after the timing).
    const devices = await admin.createState({ scope: StateScope.NAMED, seedTar: await tarDirectory(refDir) });
    const devicesId = devices.state!.id;
    for (const [id, client] of Object.entries(clients)) {
      const s: Subject = {
        id,
        label: `VYR over RPC (Connect, ${id.endsWith('h1') ? 'HTTP/1.1' : 'HTTP/2'}, separate node process, state kernel)`,
      };
      s.run = async (input) => {
        const agg = (await admin.createState({ scope: StateScope.NAMED })).state!.id;
        const t0 = performance.now();
        await rpcRun(client, packed.digest, input === tiny.path ? tinyBytes : largeInput, [
          { slot: 'reference', stateId: devicesId, access: Access.RO },
          { slot: 'aggregates', stateId: agg, access: Access.RW },
        ]);
        const ms = performance.now() - t0;
        await admin.deleteState({ stateId: agg });
        return { ms };
      };
      subjects.push(s);
    }

    // ---- same output everywhere ---------------------------------------------------------------------------------------
    opts.progress('compare: checking every subject writes the same output');
    const outputs: Record<string, string> = {};
    for (const s of subjects) {
      if (s.skip || !s.run || s.id.startsWith('vyr-rpc')) continue;
      const out = join(work, `out-${s.id}.jsonl`);
      await s.run(large.path, out);
      outputs[s.id] = await sha256File(out);
    }
    const reference = outputs.process ?? outputs.wasmtime;
    const sameOutput = Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v === reference]));

    // ---- warm-up -------------------------------------------------------------------------------------------------------
    const runnable = subjects.filter((s) => !s.skip && s.run);
    for (const s of runnable) for (let i = 0; i < (quick ? 1 : 5); i++) await s.run!(tiny.path);

    // ---- interleaved rounds ----------------------------------------------------------------------------------------------
    const startup: Record<string, number[]> = {};
    const through: Record<string, number[]> = {};
    const phases: Record<string, Record<string, number[]>> = {};
    const compile: Record<string, number[]> = { wasmtime: [], 'node-wasi': [] };
    const rotate = <T>(xs: T[], r: number): T[] => xs.map((_, i) => xs[(i + r) % xs.length] as T);
    for (let r = 0; r < rounds.startup; r++) {
      opts.progress(`compare: startup round ${r + 1}/${rounds.startup}`);
      for (const s of rotate(runnable, r)) push(startup, s.id, (await s.run!(tiny.path)).ms);
    }
    const throughSubjects = runnable.filter((s) => s.id !== 'vyr-rpc-h1');
    for (let r = 0; r < rounds.throughput; r++) {
      opts.progress(`compare: throughput round ${r + 1}/${rounds.throughput}`);
      for (const s of rotate(throughSubjects, r)) {
        const sample = await s.run!(large.path);
        push(through, s.id, sample.ms);
        const ph = phases[s.id] ?? {};
        phases[s.id] = ph;
        for (const [k, v] of Object.entries(sample.phases ?? {})) push(ph, k, v);
      }
      if (wtServer && !wt.skip) compile.wasmtime!.push((await wtServer.call({ op: 'compile' })).compileMs as number);
      const t0 = performance.now();
      await WebAssembly.compile(wasmBytes);
      compile['node-wasi']!.push(performance.now() - t0);
    }

    // ---- cold first run ---------------------------------------------------------------------------------------------------
    const cold: Record<string, number[]> = { vyr: [], 'wasmtime-process': [], 'node-wasi': [] };
    for (let r = 0; r < rounds.cold; r++) {
      opts.progress(`compare: cold first run round ${r + 1}/${rounds.cold}`);
      const dir = join(work, `cold-${r}`);
      const coldStore = createStore({ dir: join(dir, 'store') });
      const coldRuntime = createRuntime({
        artifacts: artifactSourceFromStore(coldStore, policy),
        cacheDir: join(dir, 'cache'),
        poolSize: 1,
      });
      await coldRuntime.warmUp(); // the node is up; the artifact is new to it
      const t0 = performance.now();
      const agg = await freshAgg();
      await coldStore.import(cArtifact);
      await vyrRun(coldRuntime, packed.digest, tinyBytes, vyrMounts(agg));
      cold.vyr!.push(performance.now() - t0);
      await dropAgg(agg);
      await coldRuntime.close();
      await rm(dir, { recursive: true, force: true });
      if (!wtCli.skip) cold['wasmtime-process']!.push((await wtCli.run!(tiny.path)).ms);
      const t1 = performance.now();
      await nodeWasiRun(await WebAssembly.compile(wasmBytes), tiny.path);
      cold['node-wasi']!.push(performance.now() - t1);
    }

    // ---- memory --------------------------------------------------------------------------------------------------------------
    const memory: Record<string, number[]> = {};
    const memSkip: Record<string, string> = {};
    for (let r = 0; r < rounds.memory; r++) {
      opts.progress(`compare: memory round ${r + 1}/${rounds.memory}`);
      for (const s of subjects) {
        if (s.skip || !s.memory) continue;
        try {
          const m = await s.memory(large.path);
          if (m.memoryBytes !== undefined) push(memory, s.id, m.memoryBytes);
        } catch (err) {
          memSkip[s.id] = `memory could not be measured: ${(err as Error).message}`;
        }
      }
    }

    // ---- results ------------------------------------------------------------------------------------------------------------
    const benchmarks: Benchmark[] = [];
    const mb = large.bytes / 1e6;
    for (const s of subjects) {
      const why = s.skip;
      benchmarks.push(
        bench(
          `startup.${s.id}`,
          'startup',
          s.id,
          `start → exit, one event: ${s.label}`,
          'ms',
          'lower',
          startup[s.id] ?? [],
          s.id.startsWith('vyr-rpc')
            ? 'SubmitTask + WatchTask to the terminal status, client in the bench process'
            : s.id === 'wasmtime' || s.id === 'node-wasi'
              ? 'instantiate + _start, timed inside the engine host'
              : s.id === 'vyr'
                ? 'runtime.submit → runtime.wait'
                : 'spawn → exit seen by a Node parent',
          why,
        ),
      );
      if (s.id === 'vyr-rpc-h1') continue;
      const ms = through[s.id] ?? [];
      const tSkip = why;
      benchmarks.push(
        bench(
          `throughput.${s.id}.ms`,
          'throughput',
          s.id,
          `one run over ${large.events} events: ${s.label}`,
          'ms',
          'lower',
          ms,
          'wall time of one whole run (start included), output discarded (RPC: streamed to the client)',
          tSkip,
        ),
        bench(
          `throughput.${s.id}.events`,
          'throughput',
          s.id,
          `events/s: ${s.label}`,
          'events/s',
          'higher',
          ms.map((v) => large.events / (v / 1000)),
          'events of the large input / wall time of the run',
          tSkip,
        ),
        bench(
          `throughput.${s.id}.mbps`,
          'throughput',
          s.id,
          `MB/s of input: ${s.label}`,
          'MB/s',
          'higher',
          ms.map((v) => mb / (v / 1000)),
          'input bytes (10^6) / wall time of the run',
          tSkip,
        ),
      );
      for (const [k, v] of Object.entries(phases[s.id] ?? {}))
        benchmarks.push(
          bench(
            `phase.${s.id}.${k}`,
            'phase',
            s.id,
            `${k} phase over the large input: ${s.label}`,
            'ms',
            'lower',
            v,
            'timed inside the engine host',
          ),
        );
      if (s.memory || why) {
        benchmarks.push(
          bench(
            `memory.${s.id}`,
            'memory',
            s.id,
            `peak memory over the large input: ${s.label}`,
            'bytes',
            'lower',
            memory[s.id] ?? [],
            s.memoryMethod ?? 'n/a',
            why ?? memSkip[s.id],
          ),
        );
      }
    }
    benchmarks.push(
      bench(
        'compile.wasmtime',
        'compile',
        'wasmtime',
        'compile the module: wasmtime (Cranelift)',
        'ms',
        'lower',
        compile.wasmtime!,
        'wasmtime.Module(engine, bytes)',
        wt.skip,
      ),
      bench(
        'compile.node-wasi',
        'compile',
        'node-wasi',
        'compile the module: V8 (WebAssembly.compile)',
        'ms',
        'lower',
        compile['node-wasi']!,
        'WebAssembly.compile(bytes)',
      ),
      bench(
        'cold.vyr',
        'cold',
        'vyr',
        'first run of a new artifact: VYR import + verify + prepare (jco transpile + compile) + run',
        'ms',
        'lower',
        cold.vyr!,
        'store.import → submit → wait on a runtime whose pool is already up',
      ),
      bench(
        'cold.wasmtime-process',
        'cold',
        'wasmtime-process',
        'first run: fresh wasmtime process (Python start, import, compile, instantiate, run)',
        'ms',
        'lower',
        cold['wasmtime-process']!,
        'spawn → exit',
        wtCli.skip,
      ),
      bench(
        'cold.node-wasi',
        'cold',
        'node-wasi',
        'first run: node:wasi compile + instantiate + run',
        'ms',
        'lower',
        cold['node-wasi']!,
        'in this process',
      ),
    );
    const sizes: [string, string, number | undefined, string?][] = [
      [
        'size.native',
        'native static binary',
        processSubject.skip ? undefined : (await stat(native)).size,
        processSubject.skip,
      ],
      [
        'size.bundle',
        'OCI bundle (rootfs + config.json)',
        bundleBytes,
        bundleBytes === undefined ? 'no bundle was built' : undefined,
      ],
      ['size.wasm', 'WASI P1 module (.wasm)', wasmBytes.length],
      ['size.component', 'VYR component layer (P1 adapted)', packed.componentBytes],
      ['size.artifact', 'VYR signed artifact (OCI layout .tar)', (await stat(cArtifact)).size],
      ['size.component-js', 'VYR JS component layer', jsPacked?.componentBytes, jsSkip],
    ];
    for (const [id, title, v, skip] of sizes)
      benchmarks.push(
        bench(id, 'size', id.slice(5), title, 'bytes', 'lower', v === undefined ? [] : [v], 'file size', skip),
      );

    const ratios: Ratio[] = [];
    const ratio = (id: string, title: string, num: string, den: string) => {
      const a = benchmarks.find((b) => b.id === num);
      const b = benchmarks.find((x) => x.id === den);
      if (!a || !b || a.skipped || b.skipped) {
        ratios.push({
          id,
          title,
          numerator: num,
          denominator: den,
          pairs: [],
          skipped: `${a?.skipped ?? ''}${b?.skipped ? ` / ${b.skipped}` : ''}` || 'missing',
        });
        return;
      }
      const pairs = pairRatios(a.samples, b.samples);
      ratios.push({ id, title, numerator: num, denominator: den, pairs, summary: summarize(pairs) });
    };
    ratio('startup.vyr/process', 'start→exit: VYR in-process ÷ native process', 'startup.vyr', 'startup.process');
    ratio('startup.vyr/runc', 'start→exit: VYR in-process ÷ runc', 'startup.vyr', 'startup.runc');
    ratio('startup.vyr-rpc-h2/runc', 'start→exit: VYR over RPC (HTTP/2) ÷ runc', 'startup.vyr-rpc-h2', 'startup.runc');
    ratio('startup.vyr/wasmtime', 'start→exit: VYR in-process ÷ wasmtime embedded', 'startup.vyr', 'startup.wasmtime');
    ratio('startup.vyr/node-wasi', 'start→exit: VYR in-process ÷ node:wasi', 'startup.vyr', 'startup.node-wasi');
    ratio(
      'startup.vyr-rpc-h2/vyr-rpc-h1',
      'start→exit over RPC: HTTP/2 ÷ HTTP/1.1',
      'startup.vyr-rpc-h2',
      'startup.vyr-rpc-h1',
    );
    ratio('startup.runc/process', 'start→exit: runc ÷ native process', 'startup.runc', 'startup.process');
    ratio(
      'throughput.vyr/process',
      'large input, wall time: VYR ÷ native process',
      'throughput.vyr.ms',
      'throughput.process.ms',
    );
    ratio('throughput.vyr/runc', 'large input, wall time: VYR ÷ runc', 'throughput.vyr.ms', 'throughput.runc.ms');
    ratio(
      'throughput.vyr/wasmtime',
      'large input, wall time: VYR ÷ wasmtime embedded',
      'throughput.vyr.ms',
      'throughput.wasmtime.ms',
    );
    ratio(
      'throughput.vyr/node-wasi',
      'large input, wall time: VYR ÷ node:wasi',
      'throughput.vyr.ms',
      'throughput.node-wasi.ms',
    );
    ratio(
      'throughput.wasmtime/process',
      'large input, wall time: wasmtime ÷ native process',
      'throughput.wasmtime.ms',
      'throughput.process.ms',
    );
    ratio(
      'throughput.vyr-rpc-h2/vyr',
      'large input, wall time: VYR over RPC (HTTP/2) ÷ in-process',
      'throughput.vyr-rpc-h2.ms',
      'throughput.vyr.ms',
    );
    ratio(
      'throughput.vyr-js/vyr',
      'large input, wall time: JS component ÷ C component',
      'throughput.vyr-js.ms',
      'throughput.vyr.ms',
    );
    ratio(
      'cold.vyr/wasmtime-process',
      'first run: VYR cold ÷ fresh wasmtime process',
      'cold.vyr',
      'cold.wasmtime-process',
    );

    const workload = {
      origin: 'examples/event-transform',
      cSource: files.cSource.slice(ROOT.length),
      wasm: files.wasm.slice(ROOT.length),
      js: existsSync(files.js) ? files.js.slice(ROOT.length) : null,
      inputs: {
        tiny: { bytes: tiny.bytes, events: tiny.events, generator: tiny.generator, seed: tiny.seed },
        large: { bytes: large.bytes, events: large.events, generator: large.generator, seed: large.seed },
      },
      sameOutputAsProcess: sameOutput,
      rounds,
      subjects: subjects.map((s) => ({ id: s.id, label: s.label, skipped: s.skip ?? null })),
      wasmtimeDriver: wtServer?.ready ?? null,
    };
    if (Object.values(sameOutput).some((v) => !v))
      notes.push(`outputs differ from the native process: ${JSON.stringify(sameOutput)}`);
    return { benchmarks, ratios, workload, notes };
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const quick = process.argv.includes('--quick');
  const python = process.env.PYTHON ?? 'python3';
  const result = await runCompare({
    quick,
    python,
    progress: (t) => (process.send ? process.send({ progress: t }) : process.stderr.write(`${t}\n`)),
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  // The node:wasi module and the runtime's pool are closed; exit explicitly in case a handle lingers.
  process.exit(0);
}
