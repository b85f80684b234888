import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactError } from './errors.js';

/** File name of the private key written by {@link writeKeyPair}. */
export const PRIVATE_KEY_FILE = 'vyr.key';
/** File name of the public key written by {@link writeKeyPair}. */
export const PUBLIC_KEY_FILE = 'vyr.pub';

/** An ECDSA P-256 key pair as PEM text plus its key id. */
export interface KeyPairPem {
  /** PKCS#8 PEM private key. */
  privateKeyPem: string;
  /** SPKI PEM public key. */
  publicKeyPem: string;
  /** Hex SHA-256 of the SPKI DER encoding of the public key. */
  keyId: string;
}

/** Generates a fresh ECDSA P-256 key pair. */
export function generateKeyPair(): KeyPairPem {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem,
    keyId: keyIdOf(publicKey),
  };
}

/** The key id of a public key: lowercase hex SHA-256 of its SPKI DER encoding. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex');
}

const PUBLIC_PEM = /^-----BEGIN PUBLIC KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END PUBLIC KEY-----\r?\n?$/;
const PRIVATE_PEM = /^-----BEGIN PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END PRIVATE KEY-----\r?\n?$/;

function assertP256(key: KeyObject, what: string, source: string): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source}: ${what} is ${key.asymmetricKeyType ?? 'unknown'}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}, expected ECDSA P-256; create one with \`vyr key generate\``,
    );
  }
}

/**
 * Parses an SPKI PEM ECDSA P-256 public key. The PEM must be exactly one `PUBLIC KEY` block and its DER must
 * re-encode to the same bytes (so a single altered byte never yields a different, still-accepted key silently).
 *
 * @param source - names the key in error messages (e.g. its path).
 * @throws ArtifactError `MALFORMED_KEY`.
 */
export function parsePublicKeyPem(pem: string, source = 'public key'): KeyObject {
  if (/-----BEGIN (?:ENCRYPTED |EC )?PRIVATE KEY-----/.test(pem)) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source} is a private key; a trust set takes public keys (the ${PUBLIC_KEY_FILE} beside it, or \`openssl pkey -in ${source} -pubout\`), and a private key is never handed to a verifier`,
    );
  }
  if (!PUBLIC_PEM.test(pem)) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source}: not an SPKI PEM public key (expected one "-----BEGIN PUBLIC KEY-----" block)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new ArtifactError('MALFORMED_KEY', `${source}: the PEM does not decode to a public key`, { cause });
  }
  assertP256(key, 'the public key', source);
  assertCanonicalPem(pem, key.export({ type: 'spki', format: 'der' }), source);
  return key;
}

/**
 * Parses a PKCS#8 PEM ECDSA P-256 private key.
 *
 * @throws ArtifactError `MALFORMED_KEY`.
 */
export function parsePrivateKeyPem(pem: string, source = 'private key'): KeyObject {
  if (pem.includes('-----BEGIN EC PRIVATE KEY-----')) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source} is a SEC1 "EC PRIVATE KEY"; VYR reads PKCS#8: convert it with \`openssl pkcs8 -topk8 -nocrypt -in ${source} -out ${PRIVATE_KEY_FILE}\``,
    );
  }
  if (pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----')) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source} is an encrypted PKCS#8 key; VYR reads unencrypted PKCS#8 (protect it with file permissions, mode 0600): decrypt it with \`openssl pkey -in ${source} -out ${PRIVATE_KEY_FILE}\``,
    );
  }
  if (pem.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source} is a public key; signing takes the private key (the ${PRIVATE_KEY_FILE} made with it by \`vyr key generate\`)`,
    );
  }
  if (!PRIVATE_PEM.test(pem)) {
    throw new ArtifactError(
      'MALFORMED_KEY',
      `${source}: not a PKCS#8 PEM private key (expected one "-----BEGIN PRIVATE KEY-----" block)`,
    );
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new ArtifactError('MALFORMED_KEY', `${source}: the PEM does not decode to a private key`, { cause });
  }
  assertP256(key, 'the private key', source);
  return key;
}

/** Base64 body of a PEM must be the canonical encoding of the key's DER: no ignored bits, no junk. */
function assertCanonicalPem(pem: string, der: Buffer, source: string): void {
  const body = pem
    .split(/\r?\n/)
    .filter((line) => line.length > 0 && !line.startsWith('-----'))
    .join('');
  if (body !== der.toString('base64')) {
    throw new ArtifactError('MALFORMED_KEY', `${source}: the PEM body is not the canonical encoding of its key`);
  }
}

async function readKeyFile(path: string, fileName: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code;
    if (errno === 'EISDIR') {
      throw new ArtifactError(
        'MALFORMED_KEY',
        `${path} is a directory, not a key file; give the key file itself (e.g. ${join(path, fileName)})`,
        { cause },
      );
    }
    const code = errno === 'ENOENT' ? 'NOT_FOUND' : 'IO_ERROR';
    throw new ArtifactError(code, `cannot read key file ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Reads and parses a public key file (SPKI PEM). @throws ArtifactError `NOT_FOUND`, `MALFORMED_KEY`. */
export async function readPublicKey(path: string): Promise<KeyObject> {
  return parsePublicKeyPem(await readKeyFile(path, PUBLIC_KEY_FILE), path);
}

/** Reads and parses a private key file (PKCS#8 PEM). @throws ArtifactError `NOT_FOUND`, `MALFORMED_KEY`. */
export async function readPrivateKey(path: string): Promise<KeyObject> {
  return parsePrivateKeyPem(await readKeyFile(path, PRIVATE_KEY_FILE), path);
}

/** Options of {@link writeKeyPair}. */
export interface WriteKeyPairOptions {
  /** Overwrite existing `vyr.key` / `vyr.pub`. Default: `false` (refuse with `ALREADY_EXISTS`). */
  force?: boolean;
}

/** Paths and key id of a key pair written by {@link writeKeyPair}. */
export interface WrittenKeyPair {
  privateKeyPath: string;
  publicKeyPath: string;
  keyId: string;
}

/**
 * Generates a key pair into `dir` as `vyr.key` (PKCS#8 PEM, mode 0600) and `vyr.pub` (SPKI PEM, mode 0644).
 * Creates `dir` if needed.
 *
 * @throws ArtifactError `ALREADY_EXISTS` when a key file exists and `force` is not set; `INVALID_ARGUMENT` when
 * `dir` is not a directory; `IO_ERROR`.
 */
export async function writeKeyPair(dir: string, options: WriteKeyPairOptions = {}): Promise<WrittenKeyPair> {
  const force = options.force ?? false;
  const pair = generateKeyPair();
  const privateKeyPath = join(dir, PRIVATE_KEY_FILE);
  const publicKeyPath = join(dir, PUBLIC_KEY_FILE);
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    const errno = (cause as NodeJS.ErrnoException).code;
    if (errno === 'EEXIST' || errno === 'ENOTDIR') {
      throw new ArtifactError(
        'INVALID_ARGUMENT',
        `${dir} is not a directory${errno === 'EEXIST' ? ' (a file of that name exists)' : ' (a part of its path is a file)'}; key generate --out takes a directory to hold ${PRIVATE_KEY_FILE} and ${PUBLIC_KEY_FILE}`,
        { cause },
      );
    }
    throw new ArtifactError('IO_ERROR', `cannot create ${dir}: ${(cause as Error).message}`, { cause });
  }
  try {
    if (force) {
      await rm(privateKeyPath, { force: true });
      await rm(publicKeyPath, { force: true });
    } else {
      // Check both first so a half-existing pair is refused without writing anything.
      for (const path of [privateKeyPath, publicKeyPath]) {
        if (await exists(path)) throw Object.assign(new Error(`${path} exists`), { code: 'EEXIST', path });
      }
    }
    // O_EXCL: never clobber a key by accident, and create the private key with 0600 from the first byte.
    await writeNewFile(privateKeyPath, pair.privateKeyPem, 0o600);
    await writeNewFile(publicKeyPath, pair.publicKeyPem, 0o644);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new ArtifactError(
        'ALREADY_EXISTS',
        `a key already exists in ${dir} (${(cause as NodeJS.ErrnoException).path}); pass --force to replace it`,
        { cause },
      );
    }
    throw new ArtifactError('IO_ERROR', `cannot write key pair to ${dir}: ${(cause as Error).message}`, { cause });
  }
  return { privateKeyPath, publicKeyPath, keyId: pair.keyId };
}

/** Creates `path` (O_EXCL: fails with EEXIST if it exists) with `mode`, writes `text` and fsyncs it. */
async function writeNewFile(path: string, text: string, mode: number): Promise<void> {
  const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
