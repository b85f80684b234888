import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { createStateKernel, digestTree, type StateSlot } from '../src/index.js';
import { expectCode, expectThrowsCode } from './expect.js';
import { onCleanup, openKernel, tempDir } from './helpers.js';

const CHILD = new URL('./fixtures/crash-child.mjs', import.meta.url).pathname;
/** Preload that makes the child run src/*.ts (Node 24 type stripping), so the test never checks a stale dist/. */
const RUN_SOURCE = new URL('./fixtures/run-source.mjs', import.meta.url).pathname;

interface ChildReport {
  namedId: string;
  scratchId: string;
  scratchPath: string;
  digestBefore: string;
}

/** Starts the child node process and resolves with its report once it holds its bindings. */
async function startHolder(dataDir: string): Promise<{ child: ChildProcess; report: ChildReport }> {
  const child = spawn(process.execPath, ['--import', RUN_SOURCE, CHILD, dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: child.stdout! });
  const report = await new Promise<ChildReport>((resolve, reject) => {
    lines.once('line', (line) => resolve(JSON.parse(line) as ChildReport));
    child.once('exit', (code) => reject(new Error(`child exited ${code} before reporting: ${stderr}`)));
  });
  return { child, report };
}

describe('crash safety with a real process killed by SIGKILL', () => {
  it('fails the running tasks (node_restart), deletes their task-scoped state, keeps named state bindable', async () => {
    const dataDir = await tempDir();
    const { child, report } = await startHolder(dataDir);

    // While the holder lives, the data directory is locked to it.
    expectThrowsCode(() => createStateKernel({ dataDir }), 'DATA_DIR_LOCKED');

    const exited = new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    const kernel = await openKernel({ dataDir });
    const recovery = await kernel.recover();
    expect(recovery.failedTaskIds).toEqual(['task-pending', 'task-running']);
    // The registry kept what each task ran, so the restarted node can still report its artifact.
    expect(recovery.failedTasks).toEqual([
      { taskId: 'task-pending', createdAtMs: expect.any(Number) },
      { taskId: 'task-running', artifactDigest: `sha256:${'ab'.repeat(32)}`, createdAtMs: expect.any(Number) },
    ]);
    expect(recovery.deletedInstanceIds).toEqual([report.scratchId]);
    expect(recovery.interruptedInstanceIds).toEqual([report.namedId]);

    // Task-scoped state is gone, from the registry and the disk.
    expectThrowsCode(() => kernel.get(report.scratchId), 'NOT_FOUND');
    expect(existsSync(report.scratchPath)).toBe(false);

    // The named instance is intact with its last content, re-measured, unbound, and bindable again.
    const named = kernel.get(report.namedId);
    expect(named).toMatchObject({ name: 'ledger', bindings: [], bytes: 16, entries: 1 });
    expect(await readFile(join(named.hostPath, 'entries.log'), 'utf8')).toBe('entry 1\nentry 2\n');
    expect(named.digest).toBe((await digestTree(named.hostPath)).digest);
    expect(named.digest).not.toBe(report.digestBefore);

    // The dead tasks cannot come back; a new task binds rw at once.
    const slots: StateSlot[] = [{ name: 'ledger', mount: '/ledger', access: 'rw' }];
    await expectCode(
      kernel.bind({ instanceId: report.namedId, taskId: 'task-running', slot: 'ledger', declaredSlots: slots }),
      'TASK_TERMINATED',
      /node_restart/,
    );
    const mount = await kernel.bind({
      instanceId: report.namedId,
      taskId: 'task-after',
      slot: 'ledger',
      declaredSlots: slots,
    });
    expect(mount.readOnly).toBe(false);
    expect(mount.usedBytes).toBe(16);
    await writeFile(join(mount.hostPath, 'entries.log'), 'entry 1\nentry 2\nentry 3\n');
    const { releases } = await kernel.releaseTask('task-after');
    expect(releases[0]).toMatchObject({ bytes: 24, destroyed: false });
  });
});
