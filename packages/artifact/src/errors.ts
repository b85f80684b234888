/**
 * Every way the artifact layer refuses something. Stable strings: the CLI prints them, the API keeps them in
 * error details, and the docs (docs/artifact.md) list them.
 */
export type ArtifactErrorCode =
  /** A caller-supplied argument is unusable (empty name, bad option). */
  | 'INVALID_ARGUMENT'
  /** The input file is not WebAssembly (bad magic or version). */
  | 'NOT_WASM'
  /** The input is an OCI container image: refused, containers are not an execution path in the VYR MVO. */
  | 'CONTAINER_IMAGE'
  /** The bytes start like Wasm but do not parse, or the preview1 adapter could not be applied. */
  | 'INVALID_WASM'
  /** A core module imports something other than `wasi_snapshot_preview1`. */
  | 'UNSUPPORTED_IMPORTS'
  /** A component whose world is not `wasi:cli/command` (no `wasi:cli/run` export, or non-WASI imports). */
  | 'UNSUPPORTED_WORLD'
  /** The VYR manifest (vyr.json or the declarations blob) is invalid. */
  | 'INVALID_MANIFEST'
  /** A JSON document of the layout (`oci-layout`, `index.json`, manifest, config) does not parse or has the wrong shape. */
  | 'MALFORMED_LAYOUT'
  /** A media type VYR does not handle (manifest, config, layer, bundle or layout version). */
  | 'UNSUPPORTED_MEDIA_TYPE'
  /** A blob named by a descriptor is absent from `blobs/sha256/`. */
  | 'BLOB_MISSING'
  /** A blob's bytes (or size) do not match its descriptor: the blob was altered. */
  | 'BLOB_DIGEST_MISMATCH'
  /** The OCI manifest's bytes do not hash to the digest that names it. */
  | 'MANIFEST_TAMPERED'
  /** The config blob's bytes do not hash to the digest the manifest pins. */
  | 'CONFIG_TAMPERED'
  /** A Sigstore bundle is not valid JSON or not a v0.3 `messageSignature` bundle. */
  | 'MALFORMED_BUNDLE'
  /** A bundle's signature does not verify with the trusted key: the bundle or the manifest was altered. */
  | 'SIGNATURE_INVALID'
  /** A bundle's `messageDigest` is not the SHA-256 of the manifest it is attached to. */
  | 'MESSAGE_DIGEST_MISMATCH'
  /** The artifact is signed, but by no key of the trust policy. */
  | 'UNTRUSTED_KEY'
  /** The artifact carries no signature and the trust policy does not allow unsigned artifacts. */
  | 'UNSIGNED'
  /** A key file is not a PEM ECDSA P-256 key of the expected kind. */
  | 'MALFORMED_KEY'
  /** A file that would be overwritten exists (e.g. a key pair without `force`). */
  | 'ALREADY_EXISTS'
  /** A path or a digest does not exist (input file, artifact in the store). */
  | 'NOT_FOUND'
  /** A filesystem operation failed for a reason other than the above. */
  | 'IO_ERROR';

/** Codes that mean "verification refused this artifact" (as opposed to malformed input or I/O). */
export const VERIFICATION_CODES: ReadonlySet<ArtifactErrorCode> = new Set<ArtifactErrorCode>([
  'BLOB_MISSING',
  'BLOB_DIGEST_MISMATCH',
  'MANIFEST_TAMPERED',
  'CONFIG_TAMPERED',
  'SIGNATURE_INVALID',
  'MESSAGE_DIGEST_MISMATCH',
  'UNTRUSTED_KEY',
  'UNSIGNED',
]);

/**
 * The one error class of `@vyr/artifact`. `code` is stable and machine-readable; `message` names the offending
 * value and what to do; `cause` keeps the underlying error when there is one.
 *
 * @example
 * throw new ArtifactError('BLOB_DIGEST_MISMATCH', `blob ${digest} hashes to ${actual}`);
 */
export class ArtifactError extends Error {
  override readonly name = 'ArtifactError';
  /** Stable code, see {@link ArtifactErrorCode}. */
  readonly code: ArtifactErrorCode;

  constructor(code: ArtifactErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `err` is an {@link ArtifactError}, optionally with the given code. */
export function isArtifactError(err: unknown, code?: ArtifactErrorCode): err is ArtifactError {
  return err instanceof ArtifactError && (code === undefined || err.code === code);
}
