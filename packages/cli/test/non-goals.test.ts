import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/index.js';
import { vyr } from './api-helpers.js';

/**
 * ARCHITECTURE.md §9: every non-goal a user may try is answered with a precise, coded error saying it is out of
 * scope and what to do instead (docs/cli.md "Out of scope"). No node is needed: the refusal comes first.
 */
describe('explicit non-goals answer with a coded error and what to do instead', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vyr-cli-non-goals-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const cases: [string, string[], string, RegExp][] = [
    ['an OCI container image', ['run', 'docker.io/library/busybox:latest'], 'CONTAINER_IMAGE', /WASI command/],
    ['a container image to pack', ['pack', 'busybox:1.36', '--out', 'x.tar'], 'CONTAINER_IMAGE', /WASI command/],
    ['a placement request', ['run', 'app.tar', '--replicas', '3'], 'OUT_OF_SCOPE', /placement .* --node URL/],
    ['a node selector', ['run', 'app.tar', '--node-selector=tier=edge'], 'OUT_OF_SCOPE', /--node URL/],
    ['a cluster command', ['deploy', 'app.tar'], 'OUT_OF_SCOPE', /multi-node/],
    ['joining nodes', ['node', 'start', '--join', 'http://other:7070'], 'OUT_OF_SCOPE', /one node per machine/],
    [
      'a replicated state class',
      ['state', 'create', '--class', 'replicated'],
      'OUT_OF_SCOPE',
      /only the state class "ephemeral"/,
    ],
    ['strong consistency', ['state', 'create', '--consistency', 'strong'], 'OUT_OF_SCOPE', /vyr state export/],
    ['a sidecar', ['run', 'app.tar', '--sidecar', 'envoy'], 'OUT_OF_SCOPE', /service-mesh/],
    ['inter-service mTLS', ['node', 'start', '--mtls'], 'OUT_OF_SCOPE', /--tls-cert/],
    ['a mesh command', ['mesh', 'route', 'a', 'b'], 'OUT_OF_SCOPE', /sidecars, L7 routing/],
  ];

  it.each(cases)('%s', async (_what, args, code, says) => {
    const r = await vyr(args, { VYR_NODE: 'http://127.0.0.1:9' }, dir);
    expect(r.code).toBe(ExitCode.INVALID_INPUT);
    expect(r.stderr).toMatch(new RegExp(`^vyr: ${code}: `));
    expect(r.stderr).toMatch(says);
    const json = await vyr(['--json', ...args], { VYR_NODE: 'http://127.0.0.1:9' }, dir);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code } });
  });

  it('leaves everything after -- to the task, and the one state class that exists alone', async () => {
    // `--replicas` after `--` is the task's argument: the refusal is not raised (the node is what is missing).
    const r = await vyr(['run', 'app.tar', '--', '--replicas', '3'], { VYR_NODE: 'http://127.0.0.1:9' }, dir);
    expect(r.stderr).not.toContain('OUT_OF_SCOPE');
    const eph = await vyr(['state', 'create', '--class', 'ephemeral'], { VYR_NODE: 'http://127.0.0.1:9' }, dir);
    expect(eph.code).toBe(ExitCode.UNAVAILABLE);
  });
});
