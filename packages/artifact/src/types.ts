/**
 * Public data types of a VYR artifact. The on-disk format follows the OCI image-layout and image-manifest
 * specifications (v1.1) and the CNCF "Wasm OCI artifact" layout used by wkg, Spin and wasmCloud.
 */

/** Media types VYR writes and accepts. */
export const MediaType = {
  /** OCI image manifest (image-spec v1.1 `manifest.md`). */
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  /** OCI image index (the layout's `index.json`). */
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  /** Wasm OCI artifact config (CNCF TAG Runtime Wasm OCI artifact). Also the manifest's `artifactType`. */
  wasmConfig: 'application/vnd.wasm.config.v0+json',
  /** The component layer. */
  wasm: 'application/wasm',
  /** VYR's declarations (name, version, env keys, state slots, limits): the second layer. */
  vyrManifest: 'application/vnd.vyr.manifest.v1+json',
  /** Sigstore bundle v0.3; also the `artifactType` of the signature referrer manifest. */
  sigstoreBundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  /** The OCI empty descriptor's media type (config of the signature referrer). */
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  /** Docker/OCI container image configs: recognised only to refuse them. */
  ociImageConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** A `sha256:<64 lowercase hex>` content address. */
export type Digest = `sha256:${string}`;

/** Access mode of a state slot. */
export type StateAccess = 'ro' | 'rw';

/** One state slot an artifact declares (ARCHITECTURE.md §4). */
export interface StateSlotDeclaration {
  /** Slot name, `[a-z0-9][a-z0-9_-]{0,62}`; unique within the artifact. */
  name: string;
  /** Absolute guest path where the slot is mounted (`/` allowed). */
  mount: string;
  /** `ro` or `rw`. */
  access: StateAccess;
  /** Maximum bytes the slot may hold; absent means the node's default quota. */
  quotaBytes?: number;
}

/** Resource limits an artifact declares; absent fields mean the node tier's defaults. */
export interface Limits {
  /** Maximum linear memory of the task in bytes. */
  memoryBytes?: number;
  /** Wall-clock deadline of one task in milliseconds. */
  deadlineMs?: number;
}

/**
 * VYR's declarations for an artifact: the JSON of `vyr.json` and of the `application/vnd.vyr.manifest.v1+json`
 * layer. Always normalised: `env` and `state` are present (possibly empty), `limits` is present (possibly `{}`).
 */
export interface VyrManifest {
  /** Artifact name, `[a-z0-9][a-z0-9._-]{0,127}`. */
  name: string;
  /** Version (SemVer 2.0 syntax). */
  version: string;
  /** Names of environment variables the task may receive; values are given at submit time. */
  env: string[];
  /** Declared state slots. */
  state: StateSlotDeclaration[];
  /** Declared resource limits. */
  limits: Limits;
}

/** Where the component came from: a native WASI 0.2 component, or a WASI P1 core module adapted by `pack`. */
export type WasmSourceKind = 'wasip2' | 'wasip1-adapted';

/** One interface a component imports or exports, e.g. `wasi:cli/environment@0.2.3`. */
export type InterfaceName = string;

/** The component's world as recorded in the config blob (field names from the Wasm OCI artifact spec). */
export interface ComponentInfo {
  /** The world the component targets, e.g. `wasi:cli/command@0.2.12`; VYR accepts only `wasi:cli/command`. */
  target: string;
  /** Imported interfaces, sorted. */
  imports: InterfaceName[];
  /** Exported interfaces, sorted. */
  exports: InterfaceName[];
}

/** The `application/vnd.wasm.config.v0+json` config blob. */
export interface WasmConfig {
  /** Always `wasm`. */
  architecture: 'wasm';
  /** Always `wasip2`: what executes is a WASI 0.2 component. */
  os: 'wasip2';
  /** Digests of the manifest's layers, in order. */
  layerDigests: Digest[];
  /** The component's world, imports and exports. */
  component: ComponentInfo;
  /** Creation time (RFC 3339), present only when `SOURCE_DATE_EPOCH` was set at pack time. */
  created?: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
  /** Embedded content (base64), used only for the empty descriptor. */
  data?: string;
}

/** An OCI image manifest (schemaVersion 2). */
export interface OciManifest {
  schemaVersion: 2;
  mediaType: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An OCI image index (`index.json`). */
export interface OciIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** A signature found with an artifact, as reported by `inspect` and `verify`. */
export interface SignatureInfo {
  /** Key id the bundle names (hex SHA-256 of the signer's SPKI DER). */
  keyId: string;
  /** Where the bundle was found: the layout (a referrer manifest) or the detached `.sigstore.json` file. */
  location: 'layout' | 'detached';
  /** Digest of the bundle blob inside the layout, when `location` is `layout`. */
  bundleDigest?: Digest;
}

/**
 * An artifact read back with every blob re-hashed: what the runtime executes. Obtained from
 * `ArtifactStore.get(digest)` or `readArtifact(path)`; integrity is checked, trust is not (use `verifyArtifact`).
 */
export interface LoadedArtifact {
  /** `sha256:<hex>` of the OCI manifest bytes: the artifact's address. */
  digest: Digest;
  /** VYR declarations. */
  manifest: VyrManifest;
  /** The WASI 0.2 command component. */
  component: Uint8Array;
  /** The Wasm config blob. */
  config: WasmConfig;
  /** The parsed OCI manifest. */
  ociManifest: OciManifest;
  /** The exact OCI manifest bytes (what signatures cover). */
  manifestBytes: Uint8Array;
  /** How the component was produced (manifest annotation `dev.vyr.source`). */
  source: WasmSourceKind;
  /** Sigstore bundles attached to the artifact (JSON text each), in a stable order. */
  bundles: AttachedBundle[];
}

/** One Sigstore bundle attached to an artifact. */
export interface AttachedBundle {
  /** The bundle JSON text. */
  json: string;
  /** Where it came from. */
  location: 'layout' | 'detached';
  /** Digest of the bundle blob when it lives in the layout. */
  bundleDigest?: Digest;
}

/** Result of a successful verification. */
export interface VerificationResult {
  /** Digest of the verified artifact. */
  digest: Digest;
  /** `true` when at least one signature by a trusted key verified. */
  signed: boolean;
  /** Key ids of trusted keys whose signatures verified. */
  trustedKeyIds: string[];
  /** Every signature found (trusted or not) with its key id. */
  signatures: SignatureInfo[];
  /** `true` when the artifact passed only because the policy allows unsigned artifacts. */
  allowedUnsigned: boolean;
}

/** A stored artifact as listed by the store. */
export interface StoredArtifact {
  /** Manifest digest. */
  digest: Digest;
  /** `name` from the VYR declarations. */
  name: string;
  /** `version` from the VYR declarations. */
  version: string;
  /** Total bytes of the manifest, config and layers. */
  sizeBytes: number;
  /** Number of signatures stored with it. */
  signatures: number;
}

/** Options of `ArtifactStore.import`. */
export interface ImportOptions {
  /** Extra detached bundles (`.sigstore.json` paths) to store with the artifact. Default: the file beside the
   * artifact (`ARTIFACT.sigstore.json`) when it exists. */
  bundlePaths?: readonly string[];
  /**
   * Which artifact of a layout holding several to import: a manifest digest or an
   * `org.opencontainers.image.ref.name`. Default: the layout's only VYR artifact.
   */
  ref?: string;
}

/** What garbage collection removed. */
export interface GcResult {
  /** Blobs deleted. */
  removedBlobs: number;
  /** Bytes freed. */
  freedBytes: number;
}

/**
 * A local content-addressed artifact store: an OCI image layout under a data directory. Every method is safe to
 * call concurrently, from this process and from others sharing the directory.
 */
export interface ArtifactStore {
  /** The store's root directory (an OCI image layout). */
  readonly dir: string;
  /**
   * Imports an artifact (layout directory or `.tar` path, or the bytes of a `.tar`) after re-hashing every blob.
   * Idempotent: importing the same artifact again returns the same digest and adds only new signatures.
   * @throws ArtifactError for malformed or tampered input.
   */
  import(source: string | Uint8Array, options?: ImportOptions): Promise<StoredArtifact>;
  /**
   * Reads an artifact by digest, re-hashing every blob it reads. Safe against a concurrent `remove` + `gc`: the
   * answer is then the artifact or `NOT_FOUND`, never a spurious `BLOB_MISSING`.
   * @throws ArtifactError `NOT_FOUND`, `BLOB_DIGEST_MISMATCH`, `MANIFEST_TAMPERED`, …
   */
  get(digest: string): Promise<LoadedArtifact>;
  /** Whether the store lists `digest`. */
  has(digest: string): Promise<boolean>;
  /**
   * All stored artifacts, sorted by name, version, digest. Reads metadata only (manifest and declarations,
   * re-hashed); components are re-hashed by `get`.
   * @throws ArtifactError `MANIFEST_TAMPERED`, `BLOB_DIGEST_MISMATCH`, `BLOB_MISSING` for damaged metadata.
   */
  list(): Promise<StoredArtifact[]>;
  /** Unlists an artifact and its signatures; blobs go on the next `gc()`. Returns whether it was listed. */
  remove(digest: string): Promise<boolean>;
  /** Deletes blobs no listed artifact references, and stale temp files. */
  gc(): Promise<GcResult>;
}
