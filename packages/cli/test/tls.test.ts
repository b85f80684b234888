import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ExitCode } from '@vyr/cli';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type NodeChild, startNodeChild, vyr } from './api-helpers.js';

describe('vyr against an https:// node with a self-signed certificate', () => {
  let dir: string;
  let node: NodeChild;
  let cert: string;

  beforeAll(async () => {
    dir = await tempDir('vyr-cli-tls-');
    cert = join(dir, 'node.crt');
    const key = join(dir, 'node.key');
    // A self-signed P-256 certificate for 127.0.0.1, as an operator would make one.
    execFileSync(
      'openssl',
      [
        ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
        ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert],
      ],
      { stdio: 'ignore' },
    );
    node = await startNodeChild(['--data-dir', join(dir, 'data'), '--tls-cert', cert, '--tls-key', key]);
  });

  afterAll(async () => {
    expect(await node?.stop()).toBe(0);
    await cleanupTempDirs();
  });

  it('says to pass --ca when the certificate is not trusted (UNTRUSTED_CERTIFICATE, exit 69), and works with it', async () => {
    expect(node.url).toMatch(/^https:\/\//);
    const refused = await vyr(['node', 'status', '--node', node.url], {}, dir);
    expect(refused.code).toBe(ExitCode.UNAVAILABLE);
    expect(refused.stderr).toMatch(
      new RegExp(
        `^vyr: UNTRUSTED_CERTIFICATE: the TLS certificate of ${node.url.replace(/\./g, '\\.')} is not trusted \\(DEPTH_ZERO_SELF_SIGNED_CERT\\): pass its CA, or the node's self-signed certificate, with --ca FILE\\n$`,
      ),
    );
    const json = await vyr(['--json', 'artifacts', 'ls', '--node', node.url], {}, dir);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: 'UNTRUSTED_CERTIFICATE' } });
    const trusted = await vyr(['--json', 'node', 'status', '--node', node.url, '--ca', cert], {}, dir);
    expect(trusted.code).toBe(0);
    expect(JSON.parse(trusted.stdout)).toMatchObject({ url: node.url, tier: 'laptop' });
  });
});
