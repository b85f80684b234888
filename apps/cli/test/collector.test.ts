import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startOtlpReceiver } from '@vyr/testing/otlp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

// The real `vyr` binary as built (`pnpm -F vyr build`).
const VYR = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/** Runs `vyr …` to completion. */
async function vyr(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [VYR, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

/** Starts `vyr collector start … --json` and resolves with the process and its receiver URL. */
async function startCollector(...args: string[]): Promise<{ child: ChildProcess; url: string; out: () => string }> {
  const child = spawn(process.execPath, [VYR, '--json', 'collector', 'start', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d;
      const first = stdout.split('\n')[0];
      if (stdout.includes('\n') && first) resolve(JSON.parse(first).url);
    });
    child.once('exit', (code) => reject(new Error(`vyr collector start exited ${code}: ${stderr}`)));
  });
  return { child, url, out: () => stdout };
}

const logsBody = JSON.stringify({
  resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: 'a' } }, { body: { stringValue: 'b' } }] }] }],
});

describe('vyr collector', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vyr-cli-collector-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('exports its own health metrics through its own spool to the upstream', async () => {
    const upstream = await startOtlpReceiver();
    const { child } = await startCollector(
      '--spool',
      join(dir, 'spool'),
      '--upstream',
      upstream.url,
      '--self-metrics-interval-ms',
      '200',
    );
    try {
      const requests = await upstream.waitForMetrics((reqs) => reqs.length >= 2, 20_000);
      const names = new Set(
        requests.flatMap((r) =>
          r.resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => m.name))),
        ),
      );
      for (const name of [
        'vyr.collector.spool.items',
        'vyr.collector.spool.bytes',
        'vyr.collector.spool.oldest_age',
        'vyr.collector.upstream.state',
      ]) {
        expect(names).toContain(name);
      }
      const service = requests[0]?.resourceMetrics[0]?.resource?.attributes.find((a) => a.key === 'service.name');
      expect(service?.value?.value).toEqual({ case: 'stringValue', value: 'vyr-collector' });
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
      await upstream.close();
    }
  });

  it('refuses a self-metrics interval that is not a whole number of milliseconds', async () => {
    const r = await vyr(
      'collector',
      'start',
      '--spool',
      join(dir, 's'),
      '--upstream',
      'http://127.0.0.1:9',
      '--self-metrics-interval-ms',
      'soon',
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--self-metrics-interval-ms soon must be a whole number/);
  });

  it.each(['0', '1.5', 'later'])('refuses a retry bound of %j milliseconds', async (value) => {
    const r = await vyr(
      'collector',
      'start',
      '--spool',
      join(dir, 's'),
      '--upstream',
      'http://127.0.0.1:9',
      '--retry-max-delay-ms',
      value,
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--retry-max-delay-ms ${value} must be a whole number of milliseconds, at least 1`);
  });

  it('start runs until SIGTERM, status --addr asks it, status --spool reads the backlog offline', async () => {
    const spool = join(dir, 'spool');
    // Upstream: a port with nothing behind it, so the data stays in the spool.
    const { child, url, out } = await startCollector('--spool', spool, '--upstream', 'http://127.0.0.1:9');
    try {
      const res = await fetch(`${url}/v1/logs`, {
        method: 'POST',
        body: logsBody,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(200);
      const live = await vyr('--json', 'collector', 'status', '--addr', url);
      expect(live.code).toBe(0);
      const st = JSON.parse(live.stdout);
      expect(st.spool.signals.logs.items).toBe(2);
      expect(st.counters.received.logs).toBe(2);
      const human = await vyr('collector', 'status', '--addr', url);
      expect(human.stdout).toMatch(/spool +2 item\(s\) in 1 request\(s\)/);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
    expect(out()).toMatch(/"event":"stopped"/);
    const offline = await vyr('--json', 'collector', 'status', '--spool', spool);
    expect(offline.code).toBe(0);
    const st = JSON.parse(offline.stdout);
    expect(st.signals.logs.items).toBe(2);
    expect(st.lock).toBeUndefined();
  });

  it('refuses a second collector on the same spool with SPOOL_LOCKED (exit 73)', async () => {
    const spool = join(dir, 'spool');
    const { child } = await startCollector('--spool', spool, '--upstream', 'http://127.0.0.1:9');
    try {
      const second = await vyr(
        'collector',
        'start',
        '--listen',
        '127.0.0.1:0',
        '--spool',
        spool,
        '--upstream',
        'http://127.0.0.1:9',
      );
      expect(second.code).toBe(73);
      expect(second.stderr).toMatch(/vyr: SPOOL_LOCKED: spool .* is in use by process \d+/);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('rejects bad flags with usage errors and an unreachable --addr with exit 69', async () => {
    const spool = join(dir, 'spool');
    const policy = await vyr(
      'collector',
      'start',
      '--spool',
      spool,
      '--upstream',
      'http://x:1',
      '--full-policy',
      'lifo',
    );
    expect(policy.code).toBe(2);
    expect(policy.stderr).toMatch(/--full-policy lifo must be drop-oldest or refuse/);
    const listen = await vyr('collector', 'start', '--spool', spool, '--upstream', 'http://x:1', '--listen', 'nope');
    expect(listen.code).toBe(2);
    const size = await vyr(
      'collector',
      'start',
      '--spool',
      spool,
      '--upstream',
      'http://x:1',
      '--max-spool-bytes',
      '12XB',
    );
    expect(size.code).toBe(2);
    const upstream = await vyr('collector', 'start', '--spool', spool, '--upstream', 'ftp://x');
    expect(upstream.code).toBe(2);
    expect(upstream.stderr).toMatch(/INVALID_OPTIONS: upstream ftp:\/\/x must be an http/);
    const neither = await vyr('collector', 'status');
    expect(neither.code).toBe(2);
    const dead = await vyr('collector', 'status', '--addr', 'http://127.0.0.1:9');
    expect(dead.code).toBe(69);
    expect(dead.stderr).toMatch(/UNAVAILABLE: no collector answers at http:\/\/127.0.0.1:9/);
    const missing = await vyr('collector', 'status', '--spool', join(dir, 'absent'));
    expect(missing.code).toBe(2);
  });

  it('exits 2 for every invalid option value, whether the CLI or the collector library finds it', async () => {
    const start = (...extra: string[]) =>
      vyr('collector', 'start', '--spool', join(dir, 'spool'), '--upstream', 'http://127.0.0.1:9', ...extra);
    const unparseable = await start('--max-spool-bytes', 'lots');
    expect(unparseable.code).toBe(2);
    expect(unparseable.stderr).toMatch(/--max-spool-bytes "lots" is not a size/);
    const tooSmall = await start('--max-spool-bytes', '10');
    expect(tooSmall.code).toBe(2);
    expect(tooSmall.stderr).toMatch(/INVALID_OPTIONS: maxSpoolBytes 10 must be an integer of at least 65536/);
    const inflight = await start('--max-request-bytes', '1MiB', '--max-inflight-bytes', '1KiB');
    expect(inflight.code).toBe(2);
    expect(inflight.stderr).toMatch(/maxInflightBytes 1024 must be an integer of at least maxRequestBytes/);
  });

  it('refuses a non-loopback --listen without --allow-remote (exit 2), and warns when it is allowed', async () => {
    const refused = await vyr(
      'collector',
      'start',
      '--listen',
      '0.0.0.0:0',
      '--spool',
      join(dir, 'spool'),
      '--upstream',
      'http://127.0.0.1:9',
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /INVALID_OPTIONS: refusing to listen on "0\.0\.0\.0": the receiver has no authentication or TLS/,
    );
    const child = spawn(
      process.execPath,
      [
        VYR,
        'collector',
        'start',
        '--listen',
        '0.0.0.0:0',
        '--allow-remote',
        '--spool',
        join(dir, 'spool'),
        '--upstream',
        'http://127.0.0.1:9',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', () => {
          if (/without authentication or TLS/.test(stderr)) resolve();
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
      });
      expect(stderr).toMatch(/warn +collector: the receiver listens beyond loopback without authentication or TLS/);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  it('exits 74 with SPOOL_IO when the spool directory cannot be created, naming the path and what to do', async () => {
    const file = join(dir, 'plain-file');
    await writeFile(file, 'x');
    const r = await vyr(
      'collector',
      'start',
      '--listen',
      '127.0.0.1:0',
      '--spool',
      join(file, 'spool'),
      '--upstream',
      'http://127.0.0.1:9',
    );
    expect(r.code).toBe(74);
    expect(r.stderr).toMatch(
      /vyr: SPOOL_IO: cannot use the spool directory .*plain-file\/spool \((ENOTDIR|EEXIST)\): a file that is not a directory is in the way/,
    );
  });

  it('never prints the credentials of --upstream: not on start, in logs or in status', async () => {
    const { child, url, out } = await startCollector(
      '--spool',
      join(dir, 'spool'),
      '--upstream',
      'http://user:s3cret@127.0.0.1:9',
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d));
    try {
      expect(JSON.parse(out().split('\n')[0] as string).upstream).toBe('http://***@127.0.0.1:9/');
      const human = await vyr('collector', 'status', '--addr', url);
      expect(human.stdout).toMatch(/upstream +http:\/\/\*\*\*@127\.0\.0\.1:9\//);
      const json = await vyr('--json', 'collector', 'status', '--addr', url);
      expect(`${human.stdout}${json.stdout}`).not.toMatch(/s3cret/);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
    expect(`${out()}${stderr}`).not.toMatch(/s3cret/);
  });
});
