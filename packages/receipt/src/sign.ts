import type { KeyObject } from 'node:crypto';
import { bundleToJSON } from '@sigstore/bundle';
import { DSSEBundleBuilder } from '@sigstore/sign';
import { LocalKeySigner } from '@vyr/artifact';
import { BUNDLE_MEDIA_TYPE, PAYLOAD_TYPE, type ReceiptStatement } from './types.js';

/**
 * Signs a receipt statement: the statement's JSON bytes become the payload of a DSSE envelope
 * (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md, payload type `application/vnd.in-toto+json`),
 * signed over its pre-authentication encoding with the node's ECDSA P-256 key (SHA-256), and wrapped in a Sigstore
 * bundle v0.3 (`dsseEnvelope` content; `verificationMaterial.publicKey.hint` = the key id). No network witness: no
 * transparency log, no timestamp authority — the receipt is verified offline against the node's public key.
 *
 * @returns the bundle JSON text (compact), the receipt file `vyr run --receipt` writes.
 * @throws ArtifactError `MALFORMED_KEY` when the key is not an ECDSA P-256 private key.
 */
export async function signReceipt(statement: ReceiptStatement, privateKey: KeyObject): Promise<string> {
  const signer = new LocalKeySigner(privateKey);
  const builder = new DSSEBundleBuilder({ signer, witnesses: [] });
  const bundle = await builder.create({ data: Buffer.from(JSON.stringify(statement)), type: PAYLOAD_TYPE });
  // The builder picks v0.2 for certificate chains; with a bare public key the current format is v0.3.
  bundle.mediaType = BUNDLE_MEDIA_TYPE;
  const json = bundleToJSON(bundle) as Record<string, unknown>;
  // An empty `timestampVerificationData` says nothing; the strict parser accepts only what a receipt needs.
  delete (json.verificationMaterial as Record<string, unknown>).timestampVerificationData;
  return JSON.stringify(json);
}
