import { type ArtifactStore, type TrustPolicy, verifyLoaded } from '@vyr/artifact';
import type { ArtifactSource, RuntimeArtifact } from './types.js';

/**
 * The verification gate over the `@vyr/artifact` store: every load re-hashes the blobs it reads (`store.get`) and
 * checks the signatures against `policy` (`verifyLoaded`), so only a trusted, unaltered artifact reaches a worker.
 * Errors are the store's and verifier's `ArtifactError`s (`NOT_FOUND`, `UNTRUSTED_KEY`, `UNSIGNED`,
 * `BLOB_DIGEST_MISMATCH`, …); the runtime reports them as `NOT_FOUND`, `UNTRUSTED` (verification verdicts) or
 * `INTERNAL` (store failures such as `BLOB_MISSING` or `IO_ERROR`) with the cause attached.
 */
export function artifactSourceFromStore(store: ArtifactStore, policy: TrustPolicy): ArtifactSource {
  return {
    async load(digest: string): Promise<RuntimeArtifact> {
      const loaded = await store.get(digest);
      verifyLoaded(loaded, policy);
      return { digest: loaded.digest, manifest: loaded.manifest, component: loaded.component };
    },
  };
}
