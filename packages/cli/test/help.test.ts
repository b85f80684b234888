import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vyr } from './api-helpers.js';

describe('vyr --help', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vyr-cli-help-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('groups the commands by what a user does, in the order of the full cycle', async () => {
    const help = await vyr(['--help'], {}, dir);
    expect(help.code).toBe(0);
    const headings = help.stdout.split('\n').filter((l) => /^\S.*:$/.test(l));
    expect(headings).toEqual([
      'Options:',
      'Build and sign artifacts (offline):',
      'Run work on a node:',
      'Observe and prove:',
      'Operate:',
      'Commands:',
    ]);
    const section = (heading: string): string[] => {
      const lines = help.stdout.split('\n');
      const from = lines.indexOf(heading) + 1;
      const to = lines.findIndex((l, i) => i >= from && /^\S/.test(l));
      return lines
        .slice(from, to === -1 ? undefined : to)
        .map((l) => /^ {2}(\S+)/.exec(l)?.[1])
        .filter((n): n is string => n !== undefined);
    };
    expect(section('Build and sign artifacts (offline):')).toEqual(['key', 'pack', 'sign', 'verify', 'inspect']);
    expect(section('Run work on a node:')).toEqual(['import', 'artifacts', 'run', 'cancel', 'task', 'state']);
    // The test CLI composes the node commands; apps/cli adds `collector` to the same group.
    expect(section('Operate:')).toContain('node');
    expect(section('Commands:')).toEqual(['help']);
  });
});
