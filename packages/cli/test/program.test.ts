import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CliContext,
  createStreamLogger,
  ExitCode,
  exitCodeFor,
  parseListen,
  parseSize,
  readSecretFile,
  toCliError,
} from '../src/index.js';
import { vyr } from './api-helpers.js';

describe('usage errors and --json', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vyr-cli-program-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reports a parser error as {"error":{"code":"USAGE"}} on stdout with --json, and exits 2', async () => {
    for (const args of [
      ['--json', 'state', 'ls', '--no-such-flag'],
      ['--json', 'task', 'get'],
      ['--json', 'frobnicate'],
      ['state', 'ls', '--json', '--bogus'],
    ]) {
      const r = await vyr(args, {}, dir);
      expect(r.code).toBe(ExitCode.USAGE);
      const doc = JSON.parse(r.stdout) as { error: { code: string; message: string } };
      expect(doc.error.code).toBe('USAGE');
      expect(doc.error.message).toMatch(/unknown option|missing required argument|unknown command/);
      expect(r.stderr).toBe(`vyr: USAGE: ${doc.error.message}\n`);
    }
  });

  it('keeps the parser error and help text on stderr without --json', async () => {
    const r = await vyr(['state', 'ls', '--no-such-flag'], {}, dir);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: unknown option '--no-such-flag'/);
  });

  it('treats --json after -- as a task argument, not as the output mode', async () => {
    // The node is unreachable: the error comes in human form, since --json belongs to the task.
    const r = await vyr(['run', `sha256:${'a'.repeat(64)}`, '--node', 'http://127.0.0.1:1', '--', '--json'], {}, dir);
    expect(r.code).toBe(ExitCode.UNAVAILABLE);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vyr: UNAVAILABLE: cannot reach the node at http:\/\/127\.0\.0\.1:1/);
  });

  it('refuses an empty or missing --token-file before calling the node (64, 66)', async () => {
    const empty = join(dir, 'empty-token');
    await writeFile(empty, '  \n');
    const r = await vyr(['--json', 'state', 'ls', '--token-file', empty], {}, dir);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(JSON.parse(r.stdout)).toEqual({
      error: { code: 'INVALID_INPUT', message: `--token-file ${empty} is empty; put the token in it` },
    });
    const missing = await vyr(['state', 'ls', '--token-file', join(dir, 'nope')], {}, dir);
    expect(missing.code).toBe(ExitCode.NOT_FOUND);
    expect(missing.stderr).toMatch(/^vyr: NOT_FOUND: --token-file .*nope does not exist/);
  });
});

describe('one size parser: binary K/M/G and KiB/MiB/GiB, decimal KB/MB/GB', () => {
  it('parses every documented unit, in any case', () => {
    expect(parseSize('4096', '--x')).toBe(4096);
    expect(parseSize('10B', '--x')).toBe(10);
    expect(parseSize('64M', '--memory')).toBe(64 * 1024 * 1024);
    expect(parseSize('64MiB', '--memory')).toBe(64 * 1024 * 1024);
    expect(parseSize('64mib', '--memory')).toBe(64 * 1024 * 1024);
    expect(parseSize('64MB', '--memory')).toBe(64_000_000);
    expect(parseSize('512k', '--x')).toBe(512 * 1024);
    expect(parseSize('2KB', '--x')).toBe(2000);
    expect(parseSize('1G', '--x')).toBe(1024 ** 3);
    expect(parseSize('1GB', '--x')).toBe(1e9);
    expect(parseSize('1.5KiB', '--x')).toBe(1536);
  });

  it('refuses other units, zero and negative sizes as usage errors naming the flag', () => {
    for (const bad of ['lots', '64 MiBs', '-1', '0', '1TB', '', '0.1B']) {
      let err: unknown;
      try {
        parseSize(bad, '--memory');
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', exitCode: ExitCode.USAGE });
      expect((err as Error).message).toContain(`--memory ${JSON.stringify(bad)}`);
    }
  });
});

describe('one listen parser', () => {
  it('accepts HOST:PORT and [IPv6]:PORT, port 0 included', () => {
    expect(parseListen('127.0.0.1:4318')).toEqual({ host: '127.0.0.1', port: 4318 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('localhost:7070')).toEqual({ host: 'localhost', port: 7070 });
  });

  it('refuses a missing host or port, a port over 65535 and bare IPv6', () => {
    for (const bad of [':4318', '127.0.0.1', '127.0.0.1:65536', '::1:80', 'host:port']) {
      expect(() => parseListen(bad, '--listen')).toThrow(/--listen ".*" is not HOST:PORT/);
    }
  });
});

describe('one exit-code mapping', () => {
  it('maps verification refusals to 65 wherever they come from', () => {
    expect(exitCodeFor('UNTRUSTED_KEY')).toBe(65);
    expect(exitCodeFor('UNTRUSTED_KEY', 'permission_denied')).toBe(65);
    expect(exitCodeFor('BLOB_DIGEST_MISMATCH', 'invalid_argument')).toBe(65);
    expect(exitCodeFor('MALFORMED_BUNDLE')).toBe(65);
  });

  it("maps a node's answer by its precise code first, then by its Connect code", () => {
    expect(exitCodeFor('TOO_LARGE', 'invalid_argument')).toBe(64);
    expect(exitCodeFor('IDEMPOTENCY_MISMATCH', 'failed_precondition')).toBe(77);
    expect(exitCodeFor('BINDING_CONFLICT', 'failed_precondition')).toBe(77);
    expect(exitCodeFor('UNAUTHENTICATED', 'unauthenticated')).toBe(77);
    expect(exitCodeFor('NOT_FOUND', 'not_found')).toBe(66);
    expect(exitCodeFor('RESOURCE_EXHAUSTED', 'resource_exhausted')).toBe(75);
    // A node's own I/O failure is not a local file problem.
    expect(exitCodeFor('IO_ERROR', 'internal')).toBe(1);
  });

  it('maps local package and system errors by code', () => {
    expect(exitCodeFor('NOT_WASM')).toBe(64);
    expect(exitCodeFor('INVALID_MANIFEST')).toBe(64);
    expect(exitCodeFor('NOT_FOUND')).toBe(66);
    expect(exitCodeFor('ALREADY_EXISTS')).toBe(73);
    expect(exitCodeFor('IO_ERROR')).toBe(74);
    expect(exitCodeFor('SPOOL_IO')).toBe(74);
    expect(exitCodeFor('SPOOL_LOCKED')).toBe(73);
    expect(exitCodeFor('INVALID_OPTIONS')).toBe(2);
    expect(exitCodeFor('LISTEN_FAILED')).toBe(69);
    expect(exitCodeFor('ENOENT')).toBe(66);
    expect(exitCodeFor('EACCES')).toBe(74);
    expect(exitCodeFor('SOMETHING_ELSE')).toBe(1);
  });

  it('keeps the code of an error with one, and says INTERNAL otherwise', () => {
    const enoent = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    expect(toCliError(enoent)).toMatchObject({ code: 'ENOENT', exitCode: 66, message: 'no such file' });
    expect(toCliError('boom')).toMatchObject({ code: 'INTERNAL', exitCode: 1, message: 'boom' });
  });
});

describe('shared helpers', () => {
  it('createStreamLogger writes one line per event at or above its level, human or JSON', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => {
      text += d;
    });
    const human = createStreamLogger(out, false, 'info');
    human.debug('hidden');
    human.warn('spool nearly full', { bytes: 10, path: '/s' });
    expect(text).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z warn {2}spool nearly full bytes=10 path=\/s\n$/);
    text = '';
    createStreamLogger(out, true).error('failed', { code: 'X' });
    expect(JSON.parse(text)).toMatchObject({ level: 'error', message: 'failed', code: 'X' });
  });

  it('readSecretFile trims the token and refuses an unreadable path with 74', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vyr-cli-secret-'));
    try {
      const ctx = { cwd: dir } as CliContext;
      await writeFile(join(dir, 'token'), '  s3cret\n');
      expect(await readSecretFile(ctx, 'token', '--token-file')).toBe('s3cret');
      // A directory cannot be read as a file (EISDIR), even by root.
      await expect(readSecretFile(ctx, '.', '--token-file')).rejects.toMatchObject({ code: 'IO_ERROR', exitCode: 74 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
