import { generateKeyPairSync } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { createNodeClient } from '@vyr/api/client';
import { cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildFixtures,
  type Fixtures,
  selfSignedCert,
  startNode,
  startNodeExpectingFailure,
  writeText,
} from './helpers.js';

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

let fx: Fixtures;

beforeAll(async () => {
  fx = await buildFixtures(await tempDir('vyr-node-start-'));
});

afterAll(async () => {
  await cleanupTempDirs();
});

describe('one node per data directory', () => {
  it('a second `vyr node start` on a live data dir exits 73 (DATA_DIR_LOCKED) and leaves the live node and its temp files alone', async () => {
    const dir = await tempDir();
    const data = join(dir, 'data');
    const first = await startNode(['--data-dir', data, '--trust', fx.trustedPub]);
    try {
      // A file of the live node's in its temp dir (an upload or export in progress looks like this).
      const inFlight = join(data, 'tmp', 'upload-in-progress.artifact.tar');
      await writeFile(inFlight, 'partial upload');
      const second = await startNodeExpectingFailure(['--data-dir', data, '--listen', '127.0.0.1:0']);
      expect(second.code).toBe(73);
      expect(second.stderr).toContain('DATA_DIR_LOCKED');
      expect(second.stderr).toContain(data);
      expect(await readFile(inFlight, 'utf8')).toBe('partial upload');
      const info = await createNodeClient({ baseUrl: first.url }).getNodeInfo({});
      expect(info.nodeId).toBe(first.nodeId);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  });
});

describe('`vyr node start` refuses bad flags and files with the documented exit codes, before creating anything', () => {
  let dir: string;
  let n = 0;
  const fresh = () => join(dir, `data-${n++}`);

  beforeAll(async () => {
    dir = await tempDir();
  });

  /** Runs a start that must fail; checks the exit code, the error code, and that the data dir was not created. */
  async function refused(args: string[], code: number, errorCode: string): Promise<string> {
    const data = fresh();
    const r = await startNodeExpectingFailure(['--data-dir', data, '--listen', '127.0.0.1:0', ...args]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code, stderr: expect.stringContaining(errorCode) });
    expect(await exists(data)).toBe(false);
    return r.stderr;
  }

  it('usage errors exit 2: a malformed --listen, --pool-size 0, an --otlp that is not a URL', async () => {
    await refused(['--listen', 'nowhere'], 2, 'INVALID_ARGUMENT');
    await refused(['--pool-size', '0'], 2, 'INVALID_ARGUMENT');
    const otlp = await refused(['--otlp', 'not-a-url'], 2, 'INVALID_ARGUMENT');
    expect(otlp).toContain('--otlp');
    await refused(['--tls-cert', join(dir, 'cert.pem')], 2, 'INVALID_ARGUMENT');
  });

  it('a missing --trust or --token-file exits 66 naming the file; an empty token file exits 64', async () => {
    const missing = join(dir, 'nope.pub');
    expect(await refused(['--trust', missing], 66, 'FILE_NOT_FOUND')).toContain(missing);
    expect(await refused(['--token-file', join(dir, 'no-token')], 66, 'FILE_NOT_FOUND')).toContain('no-token');
    const empty = await writeText(dir, 'empty-token', '\n');
    expect(await refused(['--token-file', empty], 64, 'INVALID_FILE')).toContain(empty);
    const notKey = await writeText(dir, 'not-a-key.pub', 'hello\n');
    expect(await refused(['--trust', notKey], 64, 'INVALID_FILE')).toContain(notKey);
  });

  it('a TLS certificate or key that is not PEM, or a key of another certificate, exits 64 naming the file', async () => {
    const garbage = await writeText(
      dir,
      'garbage.pem',
      '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n',
    );
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const key = await writeText(dir, 'key.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    const stderr = await refused(['--tls-cert', garbage, '--tls-key', key], 64, 'INVALID_FILE');
    expect(stderr).toContain(garbage);
    expect(stderr).not.toContain('ERR_OSSL');
    // A real certificate with a key that is not its own.
    const { cert } = selfSignedCert(dir);
    const mismatch = await refused(['--tls-cert', cert, '--tls-key', key], 64, 'INVALID_FILE');
    expect(mismatch).toContain(`${key} is not the private key of the certificate`);
    const badKey = await writeText(dir, 'bad-key.pem', 'not a key\n');
    expect(await refused(['--tls-cert', cert, '--tls-key', badKey], 64, 'INVALID_FILE')).toContain(badKey);
  });

  it('an address in use exits 69 (LISTEN_FAILED)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const data = fresh();
      await mkdir(data);
      const r = await startNodeExpectingFailure(['--data-dir', data, '--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(69);
      expect(r.stderr).toContain('LISTEN_FAILED');
      // It released the data directory on the way out: a node starts on it now.
      const node = await startNode(['--data-dir', data]);
      expect(await node.stop()).toBe(0);
    } finally {
      blocker.close();
    }
  });
});

describe('listening address', () => {
  it('on 0.0.0.0 prints a URL clients on the host can use, and warns that the token travels in cleartext', async () => {
    const dir = await tempDir();
    const token = await writeText(dir, 'token', 'tok-123\n');
    const node = await startNode(['--data-dir', join(dir, 'data'), '--listen', '0.0.0.0:0', '--token-file', token]);
    try {
      expect(node.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const info = await createNodeClient({ baseUrl: node.url, token: 'tok-123' }).getNodeInfo({});
      expect(info.nodeId).toBe(node.nodeId);
      expect(node.stderr()).toMatch(/warn .*cleartext/);
    } finally {
      expect(await node.stop()).toBe(0);
    }
  });
});
