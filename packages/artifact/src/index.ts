// Public API of @vyr/artifact: end-user symbols first, named re-exports only.
export {
  detachedBundlePath,
  isContainerImageReference,
  type PackOptions,
  type PackResult,
  packArtifact,
  type ReadArtifactOptions,
  readArtifact,
} from './artifact.js';
export { isDigest, parseDigest, sha256Digest } from './digest.js';
export { ArtifactError, type ArtifactErrorCode, isArtifactError, VERIFICATION_CODES } from './errors.js';
export { type ExportedArtifact, exportArtifactTar } from './export.js';
export { type ArtifactInspection, inspectArtifact } from './inspect.js';
export {
  generateKeyPair,
  type KeyPairPem,
  keyIdOf,
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  parsePrivateKeyPem,
  parsePublicKeyPem,
  readPrivateKey,
  readPublicKey,
  type WriteKeyPairOptions,
  type WrittenKeyPair,
  writeKeyPair,
} from './keys.js';
export { defaultVyrManifest, parseVyrManifest, validateVyrManifest } from './manifest.js';
export { createBundle, LocalKeySigner, type SignResult, signArtifact } from './sign.js';
export { createStore, type StoreOptions } from './store.js';
export {
  createTrustPolicy,
  loadTrustPolicy,
  type TrustedKey,
  type TrustedKeyInput,
  type TrustPolicy,
  type TrustPolicyOptions,
} from './trust.js';
export {
  type ArtifactStore,
  type AttachedBundle,
  type ComponentInfo,
  type Descriptor,
  type Digest,
  type GcResult,
  type ImportOptions,
  type InterfaceName,
  type Limits,
  type LoadedArtifact,
  MediaType,
  type OciIndex,
  type OciManifest,
  type SignatureInfo,
  type StateAccess,
  type StateSlotDeclaration,
  type StoredArtifact,
  type VerificationResult,
  type VyrManifest,
  type WasmConfig,
  type WasmSourceKind,
} from './types.js';
export { type ParsedBundle, parseBundle, type VerifyOptions, verifyArtifact, verifyLoaded } from './verify.js';
export { componentInfo, type PreparedComponent, prepareComponent } from './wasm.js';
