/**
 * Non-goals, tried for real: each thing a user might attempt that VYR MVO refuses (ARCHITECTURE.md §9), run
 * through the installed CLI (apps/cli) or the library a node uses, with the exact exit code and message captured,
 * so the whitepaper quotes what a user really sees. Not a benchmark: no timings.
 * Run by bench/run.ts; alone: `node bench/nongoals.ts` (one JSON document on stdout).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStateKernel, type StateError } from '@vyr/state';
import { watFixtureFile } from '@vyr/testing';

const CLI = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));

/** One attempt and what the user got back. */
export interface NonGoalProbe {
  id: string;
  attempt: string;
  /** The command as a user types it (paths shortened to their file name). */
  command: string;
  exitCode: number | null;
  /** The first line the user sees (stderr, else stdout). */
  output: string;
}

async function cli(args: string[], cwd: string): Promise<{ exitCode: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd, timeout: 30_000 }, (err, stdout, stderr) => {
      const code =
        err && typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : err ? null : 0;
      const text = (stderr || stdout).trim().split('\n')[0] ?? '';
      resolve({ exitCode: code, output: text });
    });
  });
}

export async function runNonGoals(): Promise<NonGoalProbe[]> {
  const work = await mkdtemp(join(tmpdir(), 'vyr-bench-nongoals-'));
  const probes: NonGoalProbe[] = [];
  try {
    const probe = async (id: string, attempt: string, args: string[], shown: string) => {
      const r = await cli(args, work);
      // The temp dir is this run's, not the user's: show paths relative to it.
      probes.push({ id, attempt, command: shown, exitCode: r.exitCode, output: r.output.split(`${work}/`).join('') });
    };
    await probe(
      'container-pack',
      'pack a container image',
      ['pack', 'nginx:1.27', '--out', 'nginx.tar'],
      'vyr pack nginx:1.27 --out nginx.tar',
    );
    await probe('container-run', 'run a container image', ['run', 'nginx:1.27'], 'vyr run nginx:1.27');
    const badImport = await watFixtureFile('bad-import', work);
    await probe(
      'host-imports',
      'pack a module that imports host functions beyond WASI (env::host_call)',
      ['pack', badImport, '--out', 'bad.tar'],
      'vyr pack bad-import.wasm --out bad.tar',
    );
    const reactor = await watFixtureFile('reactor', work);
    await probe(
      'reactor',
      'pack a library/reactor module (no _start): long-running services are not a task',
      ['pack', reactor, '--out', 'reactor.tar'],
      'vyr pack reactor.wasm --out reactor.tar',
    );
    await probe(
      'multi-node',
      'join a node to a cluster (multi-node, placement, scheduling)',
      ['node', 'start', '--data-dir', join(work, 'node'), '--join', '10.0.0.2:7070'],
      'vyr node start --data-dir node --join 10.0.0.2:7070',
    );

    // Two writers of one state instance (shared/replicated state): the kernel a node runs, with the node's default
    // policy `refuse` (`vyr node start --state-conflict refuse`).
    const kernel = createStateKernel({ dataDir: join(work, 'state'), sweepIntervalMs: 0, conflictPolicy: 'refuse' });
    await kernel.recover();
    const inst = await kernel.create({ scope: 'named' });
    const slots = [{ name: 'data', mount: '/data', access: 'rw' as const }];
    await kernel.bind({ instanceId: inst.id, taskId: 'task-a', slot: 'data', declaredSlots: slots });
    try {
      await kernel.bind({ instanceId: inst.id, taskId: 'task-b', slot: 'data', declaredSlots: slots });
      probes.push({
        id: 'two-writers',
        attempt: 'bind one state instance rw to two running tasks',
        command: 'bind(instance, task-b, rw) while task-a holds it rw',
        exitCode: 0,
        output: 'accepted (unexpected)',
      });
    } catch (err) {
      const e = err as StateError;
      probes.push({
        id: 'two-writers',
        attempt: 'bind one state instance rw to two running tasks (shared or replicated state)',
        command: 'state kernel bind(instance, task-b, rw) while task-a holds it rw (SubmitTask/BindState over the API)',
        exitCode: null,
        output: `${e.code}: ${e.message}`.replace(/\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\bst_[A-Za-z0-9]+\b/g, '<id>'),
      });
    }
    await kernel.close();
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return probes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(`${JSON.stringify({ nongoals: await runNonGoals() })}\n`);
}
