import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { CliContext } from '../src/index.js';
import { ttyProgress } from '../src/progress.js';

function ctxWith(isTTY: boolean): { ctx: CliContext; written: () => string } {
  const stderr = Object.assign(new PassThrough(), { isTTY });
  let out = '';
  stderr.on('data', (d: Buffer) => (out += d));
  const ctx = { stderr, env: {} } as unknown as CliContext;
  return { ctx, written: () => out };
}

describe('progress on a terminal', () => {
  it('redraws one line in place on a TTY and clears it when done', async () => {
    const { ctx, written } = ctxWith(true);
    const p = ttyProgress(ctx, 'pack');
    p.update('reading 12.0 MiB');
    p.update('hashing and writing 12.0 MiB');
    p.done();
    await new Promise((r) => setImmediate(r));
    expect(written()).toBe(
      '\r\u001b[2Kpack: reading 12.0 MiB…\r\u001b[2Kpack: hashing and writing 12.0 MiB…\r\u001b[2K',
    );
  });

  it('writes nothing at all when stderr is a pipe or a file', async () => {
    const { ctx, written } = ctxWith(false);
    const p = ttyProgress(ctx, 'pack');
    p.update('reading 12.0 MiB');
    p.done();
    await new Promise((r) => setImmediate(r));
    expect(written()).toBe('');
  });
});
