import { copyFile, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildWatFixture, fixturePath } from '@vyr/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killLeftovers, type NodeProc, type Ran, runProc, type SpawnOptions, spawnProc, startNode } from './helpers.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const RELEASE_SCRIPT = join(REPO, 'apps/cli/scripts/release.mjs');
const SEA_SCRIPT = join(REPO, 'apps/cli/scripts/sea.mjs');
const POSTJECT = process.env.POSTJECT ?? join(REPO, '.toolchain/postject/node_modules/.bin/postject');
const postject = await stat(POSTJECT).then(
  () => true,
  () => false,
);
const npm = await runProc('npm', ['--version'], { cwd: tmpdir(), env: process.env }).then(
  (r) => r.code === 0,
  () => false,
);

/**
 * `make release` (apps/cli/scripts/release.mjs): one npm package, installed with `npm install -g` into a temp
 * prefix, offline, with an empty npm cache, HOME and cwd outside the checkout, and Node.js (>= 24) the only thing
 * on PATH besides /usr/bin:/bin. Then the full cycle with the installed `vyr` alone.
 */
describe.skipIf(!npm)(
  'exit criterion: `npm install -g ./vyr-<version>.tgz` (offline, Node >= 24 only) runs the full cycle',
  () => {
    let root: string;
    let home: string;
    let tarball: string;
    let vyrBin: string;
    let env: NodeJS.ProcessEnv;
    let node: NodeProc | undefined;

    const opts = (stdin?: string): SpawnOptions => ({ cwd: home, env, ...(stdin === undefined ? {} : { stdin }) });
    const vyr = (args: readonly string[], stdin?: string): Promise<Ran> => runProc(vyrBin, args, opts(stdin));

    beforeAll(async () => {
      root = await realpath(await mkdtemp(join(tmpdir(), 'vyr-release-test-')));
      home = join(root, 'home');
      await mkdir(home);
      const built = await runProc(process.execPath, [RELEASE_SCRIPT, join(root, 'dist')], {
        cwd: REPO,
        env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` },
      });
      expect(built.code, built.stderr).toBe(0);
      tarball = built.stdout.trim();
      // The user's machine: Node.js and the system's own tools, nothing of the checkout, no registry.
      env = {
        HOME: home,
        PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
        LANG: 'C.UTF-8',
        npm_config_cache: join(home, '.npm'),
        npm_config_offline: 'true',
        npm_config_audit: 'false',
        npm_config_fund: 'false',
        npm_config_update_notifier: 'false',
      };
      const prefix = join(root, 'prefix');
      const installed = await runProc('npm', ['install', '-g', '--prefix', prefix, tarball], opts());
      expect(installed.code, installed.stderr).toBe(0);
      vyrBin = join(prefix, 'bin', 'vyr');
      // The user's own Wasm: one that writes into its state slot, one that prints a greeting.
      await writeFile(join(home, 'notes.wasm'), await buildWatFixture('fs'));
      await writeFile(
        join(home, 'vyr.json'),
        JSON.stringify({ name: 'notes', version: '1.0.0', state: [{ name: 'data', mount: '/data', access: 'rw' }] }),
      );
      await copyFile(fixturePath('hello-c'), join(home, 'hello.wasm'));
    }, 600_000);

    afterAll(async () => {
      if (node && node.proc.child.exitCode === null) {
        try {
          process.kill(node.pid, 'SIGKILL');
        } catch {}
      }
      killLeftovers();
      if (root) await rm(root, { recursive: true, force: true });
    });

    it('is one package of at most 40 MB, named vyr-<version>.tgz, with the vyr bin', async () => {
      const version = JSON.parse(await readFile(join(REPO, 'apps/cli/package.json'), 'utf8')).version as string;
      expect(tarball.endsWith(`/vyr-${version}.tgz`)).toBe(true);
      expect((await stat(tarball)).size).toBeLessThanOrEqual(40 * 1000 * 1000);
      expect(await vyr(['--version'])).toMatchObject({ code: 0, stdout: `${version}\n` });
      // jco's build-time toolchain is not shipped: the node needs only its transpiler.
      const modules = join(root, 'prefix', 'lib', 'node_modules', 'vyr', 'node_modules');
      expect(await readdir(join(modules, '@bytecodealliance'))).not.toContain('componentize-js');
      expect(await readdir(modules)).not.toContain('typescript');
    });

    it('runs key → pack → sign → verify → node start → import → run with a bound state → traces → state export → node stop', async () => {
      expect((await vyr(['key', 'generate', '--out', 'keys'])).code).toBe(0);
      const pack = await vyr(['pack', 'notes.wasm', '--manifest', 'vyr.json', '--out', 'notes.tar']);
      expect(pack.code).toBe(0);
      const digest = pack.stdout.trim();
      expect((await vyr(['sign', 'notes.tar', '--key', 'keys/vyr.key'])).code).toBe(0);
      const verify = await vyr(['verify', 'notes.tar', '--trust', 'keys/vyr.pub']);
      expect(verify.stdout).toContain(`verified ${digest}`);

      node = await startNode(
        { file: vyrBin, prefix: [] },
        ['--data-dir', 'node-data', '--trust', 'keys/vyr.pub'],
        opts(),
      );
      const at = ['--node', node.url];
      expect(await vyr(['import', 'notes.tar', ...at])).toMatchObject({ code: 0 });
      const stateId = (await vyr(['state', 'create', '--name', 'data', ...at])).stdout.trim();
      expect(stateId).toMatch(/^st_/);
      const ran = await vyr(['run', 'notes.tar', '--state', `data=${stateId}`, ...at]);
      expect(ran.code, ran.stderr).toBe(0);
      expect(ran.stdout).toBe('vyr state\nescape refused\n');
      const taskId = /^vyr: task (\S+)$/m.exec(ran.stderr)?.[1] as string;

      let tree = '';
      for (let i = 0; i < 40 && !tree.includes('vyr.task'); i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 100));
        tree = (await vyr(['traces', '--task', taskId, ...at])).stdout;
      }
      expect(tree).toMatch(/vyr\.task/);
      expect(tree).toMatch(/vyr\.prepare/);

      const exported = await vyr(['state', 'export', stateId, '--out', 'data-out', ...at]);
      expect(exported.code, exported.stderr).toBe(0);
      expect((await readdir(join(home, 'data-out'))).length).toBeGreaterThan(0);

      const stopped = await node.stop();
      expect(stopped.code).toBe(0);
    }, 300_000);

    // `make sea` installs postject into .toolchain/; without it this test reports itself skipped.
    it.runIf(postject)(
      'the single executable (Node.js SEA, built from the same package) runs the artifact commands, a node and a collector with no Node.js on PATH',
      async () => {
        const sea = await runProc(process.execPath, [SEA_SCRIPT, tarball, join(root, 'vyr-sea')], {
          cwd: REPO,
          env: { ...process.env, POSTJECT },
        });
        expect(sea.code, sea.stderr).toBe(0);
        const exe = join(root, 'vyr-sea');
        const bare: SpawnOptions = { cwd: home, env: { HOME: home, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' } };
        const run = (args: readonly string[], stdin?: string): Promise<Ran> =>
          runProc(exe, args, stdin === undefined ? bare : { ...bare, stdin });
        expect(await run(['--version'])).toMatchObject({ code: 0 });
        expect((await run(['pack', 'hello.wasm', '--out', 'sea.tar'])).code).toBe(0);
        expect((await run(['sign', 'sea.tar', '--key', 'keys/vyr.key'])).code).toBe(0);
        expect((await run(['verify', 'sea.tar', '--trust', 'keys/vyr.pub'])).code).toBe(0);
        expect((await run(['inspect', 'sea.tar'])).stdout).toContain('hello@0.0.0');

        const seaNode = await startNode(
          { file: exe, prefix: [] },
          ['--data-dir', 'sea-data', '--trust', 'keys/vyr.pub'],
          bare,
        );
        const ran = await run(['run', 'sea.tar', '--node', seaNode.url]);
        expect(ran.code, ran.stderr).toBe(0);
        expect(ran.stdout).toBe('hello from C\n');
        expect((await seaNode.stop()).code).toBe(0);

        const collector = spawnProc(
          exe,
          [
            '--json',
            'collector',
            'start',
            '--listen',
            '127.0.0.1:0',
            '--spool',
            'spool',
            '--upstream',
            'http://127.0.0.1:9',
          ],
          bare,
        );
        const [line] = await collector.waitFor(/^\{.*\}$/m, 'stdout');
        expect(JSON.parse(line).url).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
        collector.child.kill('SIGTERM');
        expect((await collector.exited).code).toBe(0);
      },
      600_000,
    );
  },
);
