import { createPublicKey, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { keyIdOf, PRIVATE_KEY_FILE, readPrivateKey, writeKeyPair } from '@vyr/artifact';
import { NodeError } from './errors.js';

/** The key a node signs its execution receipts with (docs/receipts.md). */
export interface NodeKey {
  privateKey: KeyObject;
  /** SPKI PEM of the public key, as GetNodeInfo and `vyr node status` show it. */
  publicKeyPem: string;
  /** Hex SHA-256 of the SPKI DER: the receipts' `publicKey.hint`. */
  keyId: string;
  /** Where the private key is. */
  path: string;
}

/** Directory of the generated node key under the data directory. */
export const NODE_KEY_DIR = 'node-key';

/**
 * Loads the node's receipt signing key: `keyPath` when given (`--node-key`, a PKCS#8 PEM ECDSA P-256 private key),
 * otherwise `DATA_DIR/node-key/vyr.key`, generated on first start (mode 0600, with `vyr.pub` beside it).
 *
 * @throws NodeError `FILE_NOT_FOUND` (a given key file is missing), `INVALID_FILE` (not a P-256 private key),
 *   `DATA_DIR_UNUSABLE` (the generated key cannot be written).
 */
export async function loadNodeKey(dataDir: string, keyPath?: string): Promise<NodeKey> {
  const path = keyPath ?? join(dataDir, NODE_KEY_DIR, PRIVATE_KEY_FILE);
  const load = async (): Promise<NodeKey> => {
    const privateKey = await readPrivateKey(path);
    const publicKey = createPublicKey(privateKey);
    return {
      privateKey,
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      keyId: keyIdOf(publicKey),
      path,
    };
  };
  try {
    return await load();
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    const message = (cause as Error).message;
    if (code === 'NOT_FOUND' && keyPath === undefined) {
      try {
        await writeKeyPair(join(dataDir, NODE_KEY_DIR));
        return await load();
      } catch (err) {
        throw new NodeError(
          'DATA_DIR_UNUSABLE',
          `cannot create the node key in ${dataDir}: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    }
    if (code === 'NOT_FOUND') throw new NodeError('FILE_NOT_FOUND', `--node-key: ${message}`, { cause });
    if (code === 'MALFORMED_KEY') throw new NodeError('INVALID_FILE', `--node-key: ${message}`, { cause });
    throw new NodeError('FILE_UNREADABLE', `node key ${path}: ${message}`, { cause });
  }
}
