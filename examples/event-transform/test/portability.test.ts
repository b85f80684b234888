import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IMPLEMENTATIONS, runPortabilityDemo } from '../../../scripts/demo/portability.mjs';

/**
 * The exit criterion of the proof (ARCHITECTURE.md, docs/demo.md): one signed artifact per implementation, three
 * nodes with three tier profiles, the edge cut off from its upstream while its tasks run — same artifact, stdout and
 * state digests on every row, and every span the nodes report at the final receiver. `make demo` runs the same code
 * with a larger input.
 */
const built = IMPLEMENTATIONS.filter((impl) => existsSync(impl.wasm)).map((impl) => impl.id);
const root = process.getuid?.() === 0;

describe('portability demo', () => {
  it(`gives equal digests on laptop, edge and cloud for ${built.join(' and ')}, and loses no span across the edge's cut${root ? ' (network namespace)' : ''}`, async () => {
    const result = await runPortabilityDemo({ seed: 7, inputBytes: 60_000 });
    expect(result.rows.map((r) => `${r.tier}/${r.implementation}`).sort()).toEqual(
      ['laptop', 'edge', 'cloud'].flatMap((tier) => built.map((impl) => `${tier}/${impl}`)).sort(),
    );
    expect(result.netns).toBe(root);
    expect(new Set(result.rows.map((r) => r.stdoutDigest)).size).toBe(1);
    expect(new Set(result.rows.map((r) => r.stateDigest)).size).toBe(1);
    expect(new Set(result.rows.map((r) => r.node)).size).toBe(3);
    for (const row of result.rows) {
      expect(row.eventsIn).toBeGreaterThan(500);
      expect(row.eventsOut + row.rejected).toBe(row.eventsIn);
      expect(row.nodeSpans).toBeGreaterThan(5);
      expect(row.receivedSpans).toBe(row.nodeSpans);
    }
    // The cut held the edge's spans back (nothing crossed it) and the edge collector kept them.
    expect(result.receivedDuringCut).toBe(0);
    const edgeSpans = result.rows.filter((r) => r.tier === 'edge').reduce((n, r) => n + r.nodeSpans, 0);
    expect(result.spooledDuringCut).toBeGreaterThanOrEqual(edgeSpans);
    // Three node keys, one claim: the signed receipts of each implementation describe the same run.
    for (const impl of built) expect(result.receipts[impl]).toMatchObject({ agree: true });
    expect(result.verdict).toEqual({
      receiptsAgree: true,
      artifactDigestsEqual: true,
      stdoutDigestsEqual: true,
      stateDigestsEqual: true,
      spansLost: 0,
      ok: true,
    });
  }, 900_000);

  it.runIf(root)(
    'falls back to stopping and restarting the upstream collector when told not to use namespaces',
    async () => {
      const result = await runPortabilityDemo({ seed: 8, inputBytes: 30_000, netns: false });
      expect(result.netns).toBe(false);
      expect(result.cut).toContain('stopped');
      expect(result.verdict.ok).toBe(true);
      expect(result.rows.every((r) => r.receivedSpans === r.nodeSpans)).toBe(true);
    },
    900_000,
  );
});
