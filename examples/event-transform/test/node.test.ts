import { type ChildProcess, execFile as execFileCb, spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEvents } from '../generate.mjs';
import { C_WASM, EXAMPLE_DIR, REFERENCE_DIR } from './run-wasi.js';

const execFile = promisify(execFileCb);
const VYR = join(EXAMPLE_DIR, '..', '..', 'vyr');

/**
 * The C build as a VYR node runs it: packed, signed, imported, bound to real state instances, under the limits its
 * vyr.json declares (256 MiB of linear memory).
 */
describe('event-transform on a VYR node', () => {
  let dir: string;
  let node: ChildProcess;
  let url: string;
  let digest: string;
  const vyr = async (...args: string[]) => {
    const r = await execFile(VYR, ['--json', ...args, '--node', url], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
    return JSON.parse(r.stdout);
  };

  beforeAll(async () => {
    dir = await tempDir('vyr-et-node-');
    await execFile(VYR, ['key', 'generate', '--out', 'keys'], { cwd: dir });
    const manifest = join(EXAMPLE_DIR, 'vyr.json');
    digest = (
      await execFile(VYR, ['pack', C_WASM, '--manifest', manifest, '--out', 'et.tar'], { cwd: dir })
    ).stdout.trim();
    await execFile(VYR, ['sign', 'et.tar', '--key', 'keys/vyr.key'], { cwd: dir });
    node = spawn(
      VYR,
      ['node', 'start', '--data-dir', 'data', '--listen', '127.0.0.1:0', '--trust', 'keys/vyr.pub'].concat([
        '--otlp',
        'none',
        '--pending-timeout-ms',
        '1500',
        '--max-seed-bytes',
        '268435456',
      ]),
      { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      node.stdout?.on('data', (chunk) => {
        out += chunk;
        const m = /"url":"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
      node.once('exit', (code) => reject(new Error(`node exited ${code}`)));
    });
    await execFile(VYR, ['import', 'et.tar', '--node', url], { cwd: dir });
  }, 180_000);

  afterAll(async () => {
    node?.kill('SIGTERM');
    await cleanupTempDirs();
  });

  it('processes a 100 MB input read from a bound state within its 256 MiB memory limit', async () => {
    const ref = join(dir, 'ref-100m');
    await mkdir(ref);
    await copyFile(join(REFERENCE_DIR, 'devices.json'), join(ref, 'devices.json'));
    const file = createWriteStream(join(ref, 'events.jsonl'));
    let bytes = 0;
    let lines = 0;
    for (const chunk of generateEvents({ seed: 100, bytes: 100e6 })) {
      bytes += chunk.length;
      for (const b of chunk) if (b === 10) lines++;
      if (!file.write(chunk)) await new Promise<void>((resolve) => file.once('drain', () => resolve()));
    }
    await new Promise<void>((resolve) => file.end(() => resolve()));
    const refId = (await vyr('state', 'create', '--name', 'big', '--from', ref, '--quota', '1GiB')).state.id;
    const aggId = (await vyr('state', 'create', '--name', 'big-agg')).state.id;
    // stdout (≈ 150 MB of events) goes to a file, as a user would redirect it.
    const stdoutPath = join(dir, 'big.out');
    const out = createWriteStream(stdoutPath);
    await new Promise((resolve) => out.once('open', resolve));
    const args = ['run', digest, '--state', `reference=${refId}:ro`, '--state', `aggregates=${aggId}`, '--node', url];
    // The manifest's 120 s deadline is for a normal machine; a loaded CI box gets more (limits are not timings).
    args.push('--deadline', '10m');
    const run = spawn(VYR, [...args, '--', '--input', '/ref/events.jsonl'], {
      cwd: dir,
      stdio: ['ignore', out, 'pipe'],
    });
    let stderr = '';
    run.stderr?.on('data', (chunk) => {
      stderr += chunk;
    });
    const code = await new Promise((resolve) => run.once('exit', resolve));
    out.close();
    expect({ code, stderr }).toMatchObject({ code: 0 });
    const summary = JSON.parse(stderr.split('\n').find((l) => l.startsWith('{"in":')) ?? 'null');
    expect(bytes).toBeGreaterThanOrEqual(100e6);
    // Every line but the blank ones (0.2 % of them) was read.
    expect(summary.in).toBeGreaterThan(lines * 0.99);
    expect(summary.in).toBeLessThanOrEqual(lines);
    expect(summary.out + summary.rejected).toBe(summary.in);
    let outLines = 0;
    for await (const chunk of createReadStream(stdoutPath)) for (const b of chunk as Buffer) if (b === 10) outLines++;
    expect(outLines).toBe(summary.out);
  }, 900_000);

  it('does not start without the reference state, and the failure names the unbound slot', async () => {
    const aggId = (await vyr('state', 'create', '--name', 'lonely-agg')).state.id;
    const ran = await execFile(VYR, ['--json', 'run', digest, '--state', `aggregates=${aggId}`, '--node', url], {
      cwd: dir,
    }).catch((err) => err);
    expect(ran.code).not.toBe(0);
    const [accepted, result] = ran.stdout
      .trim()
      .split('\n')
      .map((l: string) => JSON.parse(l));
    expect(accepted).toMatchObject({ event: 'accepted', task: { status: 'PENDING', unboundSlots: ['reference'] } });
    expect(result.task).toMatchObject({ status: 'FAILED', reason: 'PENDING_TIMEOUT' });
    expect(result.task.message).toContain('unbound slots: reference');
  }, 60_000);
});
