import { readArtifact } from './artifact.js';
import {
  type Digest,
  type Limits,
  type LoadedArtifact,
  MediaType,
  type StateSlotDeclaration,
  type WasmSourceKind,
} from './types.js';
import { parseBundle } from './verify.js';

/** What `vyr inspect` shows: everything an operator needs to decide whether to run an artifact. */
export interface ArtifactInspection {
  /** `sha256:<hex>` of the manifest. */
  digest: Digest;
  /** Declared name. */
  name: string;
  /** Declared version. */
  version: string;
  /** Sizes in bytes: manifest, config, component layer, VYR manifest layer, and their total. */
  sizes: {
    manifestBytes: number;
    configBytes: number;
    componentBytes: number;
    declarationsBytes: number;
    totalBytes: number;
  };
  /** `wasip2` for a native component, `wasip1 (adapted)` for an adapted preview1 module. */
  os: 'wasip2' | 'wasip1 (adapted)';
  /** How the component was produced. */
  source: WasmSourceKind;
  /** The component's world, imports and exports. */
  component: { world: string; imports: string[]; exports: string[] };
  /** Declared state slots. */
  state: StateSlotDeclaration[];
  /** Declared env keys. */
  env: string[];
  /** Declared limits. */
  limits: Limits;
  /** Creation time, when the artifact was packed with SOURCE_DATE_EPOCH. */
  created?: string;
  /** Attached signatures (not verified: use verify for that). Malformed bundles are listed with `error`. */
  signatures: { keyId?: string; location: 'layout' | 'detached'; bundleDigest?: Digest; error?: string }[];
}

/**
 * Describes an artifact (path to a layout, or an already loaded artifact). Integrity is checked (blobs
 * re-hashed); signatures are listed, not verified.
 *
 * @throws ArtifactError any integrity code of `readArtifact`.
 */
export async function inspectArtifact(source: string | LoadedArtifact): Promise<ArtifactInspection> {
  const a = typeof source === 'string' ? await readArtifact(source) : source;
  const layer = (t: string): number => a.ociManifest.layers.find((l) => l.mediaType === t)?.size ?? 0;
  const componentBytes = layer(MediaType.wasm);
  const declarationsBytes = layer(MediaType.vyrManifest);
  const sizes = {
    manifestBytes: a.manifestBytes.byteLength,
    configBytes: a.ociManifest.config.size,
    componentBytes,
    declarationsBytes,
    totalBytes: a.manifestBytes.byteLength + a.ociManifest.config.size + componentBytes + declarationsBytes,
  };
  const signatures = a.bundles.map((b) => {
    const base = { location: b.location, ...(b.bundleDigest === undefined ? {} : { bundleDigest: b.bundleDigest }) };
    try {
      return { ...base, keyId: parseBundle(b.json).keyId };
    } catch (err) {
      return { ...base, error: (err as Error).message };
    }
  });
  return {
    digest: a.digest,
    name: a.manifest.name,
    version: a.manifest.version,
    sizes,
    os: a.source === 'wasip1-adapted' ? 'wasip1 (adapted)' : 'wasip2',
    source: a.source,
    component: {
      world: a.config.component.target,
      imports: a.config.component.imports,
      exports: a.config.component.exports,
    },
    state: a.manifest.state,
    env: a.manifest.env,
    limits: a.manifest.limits,
    ...(a.config.created === undefined ? {} : { created: a.config.created }),
    signatures,
  };
}
