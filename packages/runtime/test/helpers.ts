/**
 * Test helpers: WAT → WASI P1 core module (wabt) → command component (jco's preview1 adapter), and an in-memory
 * artifact source. The artifact layer's `pack` does the same adaptation for real artifacts.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentNew } from '@bytecodealliance/jco';
import initWabt from 'wabt';
import type { ArtifactSource, RuntimeArtifact, TaskLimits } from '../src/types.js';

let wabt: Awaited<ReturnType<typeof initWabt>> | undefined;
let adapter: Uint8Array | undefined;

/** Compiles WAT text to a WASI P1 core module. */
export async function watToWasm(wat: string): Promise<Uint8Array> {
  wabt ??= await initWabt();
  const module = wabt.parseWat('fixture.wat', wat, { multi_value: true, bulk_memory: true });
  try {
    return new Uint8Array(module.toBinary({}).buffer);
  } finally {
    module.destroy();
  }
}

/** Wraps a P1 core module into a WASI 0.2 command component with jco's preview1 command adapter. */
export async function p1ToComponent(core: Uint8Array): Promise<Uint8Array> {
  adapter ??= await readFile(
    new URL('../lib/wasi_snapshot_preview1.command.wasm', import.meta.resolve('@bytecodealliance/jco')),
  );
  return componentNew(core, [['wasi_snapshot_preview1', adapter]]);
}

/** WAT → command component. */
export async function watComponent(wat: string): Promise<Uint8Array> {
  return p1ToComponent(await watToWasm(wat));
}

/** An artifact whose digest is the SHA-256 of its component plus its declarations (stable across runs). */
export function makeArtifact(
  component: Uint8Array,
  manifest: { name?: string; env?: string[]; limits?: TaskLimits } = {},
): RuntimeArtifact {
  const m = { name: manifest.name ?? 'fixture', env: manifest.env ?? [], limits: manifest.limits ?? {} };
  const digest = `sha256:${createHash('sha256').update(component).update(JSON.stringify(m)).digest('hex')}`;
  return { digest, manifest: m, component };
}

/** An ArtifactSource over a fixed set of artifacts; `refuse` digests fail as untrusted. */
export function memorySource(artifacts: RuntimeArtifact[], refuse: string[] = []): ArtifactSource & { loads: number } {
  const byDigest = new Map(artifacts.map((a) => [a.digest, a]));
  const source = {
    loads: 0,
    async load(digest: string): Promise<RuntimeArtifact> {
      source.loads++;
      if (refuse.includes(digest)) {
        throw Object.assign(new Error('signed by a key outside the trust policy'), { code: 'UNTRUSTED_KEY' });
      }
      const a = byDigest.get(digest);
      if (!a) throw Object.assign(new Error(`artifact ${digest} not found`), { code: 'NOT_FOUND' });
      return a;
    },
  };
  return source;
}

/** A temp directory removed by the returned cleanup. */
export async function tempDir(prefix = 'vyr-runtime-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** UTF-8 decode. */
export const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** A WAT prelude: `$print(ptr, len)` writes to stdout using scratch memory at 0..16. */
export const PRINT = `
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))`;
