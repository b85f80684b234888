import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { packArtifact, signArtifact, writeKeyPair } from '@vyr/artifact';
import { buildWatFixture, cleanupTempDirs, tempDir } from '@vyr/testing';
import { afterAll, describe, expect, it } from 'vitest';

afterAll(cleanupTempDirs);

/** The built `vyr` binary (`pnpm -F vyr build`), run as a real child process. */
const MAIN = fileURLToPath(new URL('../../../apps/cli/dist/main.js', import.meta.url));

/** Whether this machine lets us create a network namespace (root, or unprivileged user namespaces). */
function unshareUnavailable(): string | undefined {
  const probe = spawnSync('unshare', ['-n', 'true'], { encoding: 'utf8' });
  if (probe.error !== undefined) return `unshare cannot run: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -n failed: ${probe.stderr.trim() || `exit ${probe.status}`}`;
  return undefined;
}
const skipReason = unshareUnavailable();

/**
 * Inside the namespace, first a probe: the interfaces Node sees and the error of a TCP connect to a public
 * address, as one JSON line; then `vyr` itself.
 */
const PROBE = `const os = require('node:os'); const net = require('node:net');
const s = net.connect({ host: '1.1.1.1', port: 443 });
s.on('connect', () => { console.log(JSON.stringify({ interfaces: Object.keys(os.networkInterfaces()), connect: 'connected' })); s.destroy(); });
s.on('error', (e) => console.log(JSON.stringify({ interfaces: Object.keys(os.networkInterfaces()), connect: e.code })));`;

function runOffline(cwd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const script = `node -e "$VYR_PROBE" && exec node "$VYR_MAIN" "$@"`;
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['-n', 'sh', '-c', script, 'sh', ...args], {
      cwd,
      env: { ...process.env, VYR_PROBE: PROBE, VYR_MAIN: MAIN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('exit criterion: vyr verify needs no network at all', () => {
  it.skipIf(skipReason !== undefined)(
    `verifies a dir and a .tar artifact in a network namespace with no interfaces (unshare -n)${skipReason === undefined ? '' : ` — SKIPPED: ${skipReason}`}`,
    async () => {
      expect(existsSync(MAIN), `${MAIN} is missing: build the CLI first (pnpm -F vyr build)`).toBe(true);
      // Machine A: key, pack, sign (in-process, with the network available).
      const a = await tempDir();
      await writeFile(join(a, 'hello.wasm'), await buildWatFixture('hello'));
      const keys = await writeKeyPair(join(a, 'keys'));
      const { digest } = await packArtifact(join(a, 'hello.wasm'), join(a, 'app.oci'));
      await packArtifact(join(a, 'hello.wasm'), join(a, 'app.tar'));
      for (const artifact of ['app.oci', 'app.tar'])
        await signArtifact(join(a, artifact), { path: keys.privateKeyPath });

      // Machine B gets the artifacts, their bundles and the public key, and has no network.
      const b = await tempDir();
      for (const name of ['app.oci', 'app.oci.sigstore.json', 'app.tar', 'app.tar.sigstore.json']) {
        await cp(join(a, name), join(b, name), { recursive: true });
      }
      await cp(keys.publicKeyPath, join(b, 'vyr.pub'));

      for (const artifact of ['app.oci', 'app.tar']) {
        const run = await runOffline(b, ['verify', artifact, '--trust', 'vyr.pub']);
        const [probeLine, ...rest] = run.stdout.split('\n');
        // The namespace really has no network: no interface is up, and a connect fails at once.
        expect(JSON.parse(probeLine!)).toEqual({ interfaces: [], connect: 'ENETUNREACH' });
        expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
        expect(rest.join('\n')).toMatch(
          new RegExp(`^verified ${digest} hello@0\\.0\\.0: signed by trusted key ${keys.keyId}\\n$`),
        );
      }

      // And a refusal is still the coded one, not a network error.
      const refused = await runOffline(b, [
        'verify',
        'app.oci',
        '--trust',
        join(a, 'keys', 'vyr.pub'),
        '--bundle',
        'none.json',
      ]);
      expect(refused.code).toBe(66);
      expect(refused.stderr).toMatch(/^vyr: NOT_FOUND: /);
    },
  );
});
