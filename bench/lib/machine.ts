/**
 * Machine facts and tool versions recorded in every results file, so a number is never read without the
 * machine and the software that produced it.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, hostname, loadavg, release, totalmem, version } from 'node:os';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** What the machine was when the run started. */
export interface MachineFacts {
  hostname: string;
  cpuModel: string;
  /** Logical CPUs the OS reports, and how many this process may use. */
  cpus: number;
  availableParallelism: number;
  memoryBytes: number;
  memoryAvailableBytes: number | null;
  kernel: string;
  kernelVersion: string;
  arch: string;
  node: string;
  /** 1, 5 and 15 minute load averages at the start of the run. */
  loadavgAtStart: [number, number, number];
  /** cgroup version the container baselines ran under ("v2", "v1 (hybrid)"), for the memory method. */
  cgroup: string;
}

async function memAvailable(): Promise<number | null> {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(await readFile('/proc/meminfo', 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function cgroupVersion(): Promise<string> {
  try {
    await readFile('/sys/fs/cgroup/cgroup.controllers', 'utf8');
    return 'v2';
  } catch {
    try {
      await readFile('/sys/fs/cgroup/memory/memory.limit_in_bytes', 'utf8');
      return 'v1 (hybrid)';
    } catch {
      return 'unknown';
    }
  }
}

/** Facts of this machine now. */
export async function machineFacts(): Promise<MachineFacts> {
  const la = loadavg();
  return {
    hostname: hostname(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cpus: cpus().length,
    availableParallelism: availableParallelism(),
    memoryBytes: totalmem(),
    memoryAvailableBytes: await memAvailable(),
    kernel: release(),
    kernelVersion: version(),
    arch: process.arch,
    node: process.version,
    loadavgAtStart: [la[0] ?? 0, la[1] ?? 0, la[2] ?? 0],
    cgroup: await cgroupVersion(),
  };
}

/** First line of a command's output, or null when it cannot run (the tool is absent). */
async function firstLine(cmd: string, args: string[]): Promise<string | null> {
  try {
    const { stdout, stderr } = await run(cmd, args, { timeout: 10_000 });
    return (stdout || stderr).split('\n')[0]?.trim() || null;
  } catch {
    return null;
  }
}

/** Versions of every tool a benchmark used; null means not installed (its benchmarks are skipped with a reason). */
export async function toolVersions(python: string): Promise<Record<string, string | null>> {
  const [runc, crun, clang, py, wasmtimePy] = await Promise.all([
    firstLine('runc', ['--version']),
    firstLine('crun', ['--version']),
    firstLine('clang-19', ['--version']),
    firstLine(python, ['--version']),
    firstLine(python, ['-c', 'from importlib.metadata import version; print(version("wasmtime"))']),
  ]);
  return {
    node: process.version,
    v8: process.versions.v8,
    runc,
    crun,
    'clang-19': clang,
    python: py,
    'wasmtime-py': wasmtimePy,
  };
}
