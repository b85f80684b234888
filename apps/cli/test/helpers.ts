// Helpers for tests that run `vyr` as a real process: the built binary (dist/main.js) or an installed one.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The `vyr` binary as built in this checkout (`pnpm -F vyr build`). */
export const VYR_MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** How to start `vyr`: the program and the arguments before the command's own. */
export interface VyrCommand {
  file: string;
  prefix: readonly string[];
}

/** `node dist/main.js` of this checkout, with the Node.js running the tests. */
export const BUILT_VYR: VyrCommand = { file: process.execPath, prefix: [VYR_MAIN] };

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running process with its output collected as it comes. */
export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
  /** Resolves with the first match of `re` in the stream's output so far or to come; rejects if the process ends first. */
  waitFor(re: RegExp, stream?: 'stdout' | 'stderr'): Promise<RegExpExecArray>;
}

const live = new Set<ChildProcess>();

/** Options of {@link spawnProc}. */
export interface SpawnOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Written to the process's stdin, which is then closed; default: stdin closed at once. */
  stdin?: string | Buffer;
}

/** Starts a process; {@link killLeftovers} ends it if a test does not. */
export function spawnProc(file: string, args: readonly string[], options: SpawnOptions): Proc {
  const child = spawn(file, [...args], { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  const changed = (): void => {
    for (const l of listeners) l();
  };
  child.stdout?.on('data', (d: Buffer) => {
    out += d;
    changed();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d;
    changed();
  });
  child.stdin?.on('error', () => {}); // a process that exits before reading stdin
  child.stdin?.end(options.stdin ?? '');
  const exited = new Promise<Exit>((resolve) =>
    child.once('close', (code, signal) => {
      live.delete(child);
      changed();
      resolve({ code, signal });
    }),
  );
  let done = false;
  void exited.then(() => {
    done = true;
    changed();
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, stream = 'stderr') {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = re.exec(stream === 'stdout' ? out : err);
          if (m) {
            listeners.delete(check);
            resolve(m);
          } else if (done) {
            listeners.delete(check);
            reject(new Error(`process ended before ${re} appeared on ${stream}; stdout: ${out}\nstderr: ${err}`));
          }
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** Output and exit of one finished command. */
export interface Ran extends Exit {
  stdout: string;
  stderr: string;
}

/** Runs a process to its end. */
export async function runProc(file: string, args: readonly string[], options: SpawnOptions): Promise<Ran> {
  const p = spawnProc(file, args, options);
  const exit = await p.exited;
  return { ...exit, stdout: p.stdout(), stderr: p.stderr() };
}

/** Runs `vyr ARGS` with `cmd`. */
export function vyr(cmd: VyrCommand, args: readonly string[], options: SpawnOptions): Promise<Ran> {
  return runProc(cmd.file, [...cmd.prefix, ...args], options);
}

/** A node daemon started as `vyr node start`. */
export interface NodeProc {
  url: string;
  /** The node's own process id (from its listening line), which may differ from the child's (a wrapper). */
  pid: number;
  proc: Proc;
  /** SIGTERM to the node; resolves with how it ended. */
  stop(): Promise<Exit>;
}

/** Starts `vyr node start --listen 127.0.0.1:0 ARGS` and waits for its listening line. */
export async function startNode(cmd: VyrCommand, args: readonly string[], options: SpawnOptions): Promise<NodeProc> {
  const proc = spawnProc(cmd.file, [...cmd.prefix, 'node', 'start', '--listen', '127.0.0.1:0', ...args], options);
  const [line] = await proc.waitFor(/^\{.*\}$/m, 'stdout');
  const listening = JSON.parse(line) as { event: string; url: string; pid: number };
  if (listening.event !== 'listening') throw new Error(`unexpected first line of vyr node start: ${line}`);
  return {
    url: listening.url,
    pid: listening.pid,
    proc,
    async stop() {
      if (proc.child.exitCode === null && proc.child.signalCode === null) process.kill(listening.pid, 'SIGTERM');
      return proc.exited;
    },
  };
}

/** Kills every process a test started and left running (after a failure or a timeout), except `keep`. */
export function killLeftovers(keep: readonly Proc[] = []): void {
  const kept = new Set(keep.map((p) => p.child));
  for (const child of live) {
    if (kept.has(child)) continue;
    child.kill('SIGKILL');
    live.delete(child);
  }
}
