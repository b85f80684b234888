import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExitCode } from '@vyr/cli';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCliFixtures, type CliFixtures, type NodeChild, startNodeChild, vyr } from './api-helpers.js';

describe('vyr run --receipt, vyr receipt verify|show|get, vyr node status --public-key-out', () => {
  let fx: CliFixtures;
  let node: NodeChild;
  let env: Record<string, string>;
  const run = (...args: string[]) => vyr(args, env, fx.dir);

  beforeAll(async () => {
    fx = await buildCliFixtures(await tempDir('vyr-cli-receipt-'));
    node = await startNodeChild(['--data-dir', join(fx.dir, 'data'), '--trust', fx.pub]);
    env = { VYR_NODE: node.url };
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('writes the receipt of a run, which verifies against the node key, the artifact, stdin and stdout', async () => {
    const status = await run('node', 'status', '--public-key-out', 'node.pub');
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/receipts {3}signed with key [0-9a-f]{64}/);
    expect((await readFile(join(fx.dir, 'node.pub'), 'utf8')).startsWith('-----BEGIN PUBLIC KEY-----')).toBe(true);
    await writeFile(join(fx.dir, 'in.txt'), 'hello receipts\n');
    const ran = await run('run', fx.tars.cat?.path as string, '--stdin', 'in.txt', '--receipt', 'cat.receipt.json');
    expect(ran).toMatchObject({ code: 0, stdout: 'hello receipts\n' });
    expect(ran.stderr).toContain('vyr: receipt written to cat.receipt.json');
    await writeFile(join(fx.dir, 'out.txt'), ran.stdout);

    const ok = await run(
      'receipt',
      'verify',
      'cat.receipt.json',
      '--node-key',
      'node.pub',
      '--artifact',
      fx.tars.cat?.path as string,
      '--stdin',
      'in.txt',
      '--stdout',
      'out.txt',
    );
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('receipt verified: signature, artifact, stdin, stdout');
    expect(ok.stdout).toContain('outcome   SUCCEEDED, exit 0');

    const json = await run('--json', 'receipt', 'verify', 'cat.receipt.json', '--node-key', 'node.pub');
    const value = JSON.parse(json.stdout) as { verified: boolean; statement: { predicate: { task: { id: string } } } };
    expect(value.verified).toBe(true);
    const taskId = value.statement.predicate.task.id;
    expect((await run('receipt', 'get', taskId, '--out', 'again.json')).code).toBe(0);
    expect(await readFile(join(fx.dir, 'again.json'), 'utf8')).toBe(
      await readFile(join(fx.dir, 'cat.receipt.json'), 'utf8'),
    );
    expect((await run('receipt', 'show', 'again.json')).stdout).toContain('receipt NOT verified');
  });

  it('refuses altered output, another artifact, a flipped receipt byte and a malformed key with codes and exit codes', async () => {
    await writeFile(join(fx.dir, 'wrong.txt'), 'hello receipts!\n');
    const base = ['receipt', 'verify', 'cat.receipt.json', '--node-key', 'node.pub'];
    const stdout = await run(...base, '--stdout', 'wrong.txt');
    expect(stdout.code).toBe(ExitCode.VERIFY_FAILED);
    expect(stdout.stderr).toContain('STDOUT_MISMATCH');
    const artifact = await run(...base, '--artifact', fx.tars.hello?.path as string);
    expect(artifact.code).toBe(ExitCode.VERIFY_FAILED);
    expect(artifact.stderr).toContain('ARTIFACT_MISMATCH');

    const receipt = JSON.parse(await readFile(join(fx.dir, 'cat.receipt.json'), 'utf8'));
    const sig: string = receipt.dsseEnvelope.signatures[0].sig;
    receipt.dsseEnvelope.signatures[0].sig = `${sig.slice(0, 20)}${sig[20] === 'A' ? 'B' : 'A'}${sig.slice(21)}`;
    await writeFile(join(fx.dir, 'forged.json'), JSON.stringify(receipt));
    const forged = await run('receipt', 'verify', 'forged.json', '--node-key', 'node.pub');
    expect(forged.code).toBe(ExitCode.VERIFY_FAILED);
    expect(forged.stderr).toContain('SIGNATURE_INVALID');

    const key = await run('receipt', 'verify', 'cat.receipt.json', '--node-key', 'in.txt');
    expect(key.code).toBe(ExitCode.INVALID_INPUT);
    expect(key.stderr).toContain('MALFORMED_KEY');
    const other = await run('receipt', 'verify', 'cat.receipt.json', '--node-key', fx.pub);
    expect(other.code).toBe(ExitCode.VERIFY_FAILED);
    expect(other.stderr).toContain('KEY_MISMATCH');
  });

  it('compares receipts: two runs with the same input are the same run, another input is not', async () => {
    expect((await run('run', fx.tars.cat?.path as string, '--stdin', 'in.txt', '--receipt', 'b.json')).code).toBe(0);
    await writeFile(join(fx.dir, 'other.txt'), 'other input\n');
    expect((await run('run', fx.tars.cat?.path as string, '--stdin', 'other.txt', '--receipt', 'c.json')).code).toBe(0);
    const same = await run('receipt', 'compare', 'cat.receipt.json', 'b.json', '--node-key', 'node.pub');
    expect(same.code).toBe(0);
    expect(same.stdout).toMatch(/^same run on nd_/);
    expect(same.stdout).toContain('DIFFERENT task.id');
    const differ = await run('--json', 'receipt', 'compare', 'cat.receipt.json', 'c.json', '--node-key', 'node.pub');
    expect(differ.code).toBe(ExitCode.FAILURE);
    const value = JSON.parse(differ.stdout) as { sameRun: boolean; run: { field: string; equal: boolean }[] };
    expect(value.sameRun).toBe(false);
    expect(value.run.filter((f) => !f.equal).map((f) => f.field)).toEqual(['invocation.stdin', 'output.stdout']);
    const unverified = await run('receipt', 'compare', 'cat.receipt.json', 'b.json');
    expect(unverified.stdout).toContain('signatures NOT checked');
    const wrongKey = await run('receipt', 'compare', 'cat.receipt.json', 'b.json', '--node-key', fx.pub);
    expect(wrongKey.code).toBe(ExitCode.VERIFY_FAILED);
    expect(wrongKey.stderr).toContain('KEY_MISMATCH');
  });
});
