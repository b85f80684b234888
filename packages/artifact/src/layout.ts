import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { Header, Parser, type ReadEntry } from 'tar';
import { digestHex, isDigest, sha256Digest } from './digest.js';
import { ArtifactError } from './errors.js';
import { type Descriptor, type Digest, MediaType, type OciIndex } from './types.js';

const gunzipAsync = promisify(gunzip);

/** Content of the `oci-layout` file (image-spec `image-layout.md`). */
export const OCI_LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}';

/**
 * Read access to an OCI image layout, as a directory or as a tar archive. Blob reads return raw bytes;
 * callers hash them (see {@link readBlobChecked}).
 */
export interface LayoutReader {
  /** `dir` or `tar`. */
  readonly kind: 'dir' | 'tar';
  /** Path of the layout. */
  readonly path: string;
  /** The parsed, shape-checked `index.json`. */
  readonly index: OciIndex;
  /** Reads a blob's raw bytes, or `undefined` when absent. */
  readBlob(digest: Digest): Promise<Uint8Array | undefined>;
}

/** Whether `path` names a tar layout (by its extension). */
export function isTarPath(path: string): boolean {
  return path.toLowerCase().endsWith('.tar');
}

/** Reads a file, mapping errors to `ArtifactError` (`NOT_FOUND` for ENOENT, else `IO_ERROR`). */
export async function readFileOrThrow(path: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ArtifactError('NOT_FOUND', `${what} ${path} does not exist`, { cause });
    throw new ArtifactError('IO_ERROR', `cannot read ${what} ${path}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Opens an OCI image layout (a directory, or a `.tar` file, or tar bytes) and checks `oci-layout` and the shape
 * of `index.json`.
 *
 * @throws ArtifactError `NOT_FOUND`, `MALFORMED_LAYOUT`, `UNSUPPORTED_MEDIA_TYPE`.
 */
export async function openLayout(source: string | Uint8Array): Promise<LayoutReader> {
  if (typeof source !== 'string') return openTarBytes(source, 'tar archive');
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(source);
  } catch (cause) {
    throw new ArtifactError('NOT_FOUND', `artifact ${source} does not exist`, { cause });
  }
  if (info.isFile()) return openTarBytes(await readFileOrThrow(source, 'artifact'), source);
  if (!info.isDirectory()) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${source} is neither an OCI layout directory nor a .tar file`);
  }
  const layoutText = await readOptional(join(source, 'oci-layout'));
  const indexText = await readOptional(join(source, 'index.json'));
  const index = checkLayoutFiles(layoutText, indexText, source);
  return {
    kind: 'dir',
    path: source,
    index,
    readBlob: (digest) => readOptional(join(source, 'blobs', 'sha256', digestHex(digest))),
  };
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ArtifactError('IO_ERROR', `cannot read ${path}: ${(cause as Error).message}`, { cause });
  }
}

const BLOB_ENTRY = /^(?:\.\/)?blobs\/sha256\/([0-9a-f]{64})$/;
/** Blobs under another algorithm (image-layout "blobs": `blobs/<alg>/<encoded>`): allowed, never read. */
const OTHER_BLOB_ENTRY = /^(?:\.\/)?blobs\/[a-z0-9]+(?:[+._-][a-z0-9]+)*\/[a-zA-Z0-9=_-]+$/;

/**
 * Checks the framing of a tar archive strictly, before any parser sees it: every header's checksum (and the
 * checksum field's own format, the only header bytes the checksum does not cover), zero padding after every
 * entry's data, and an end-of-archive marker followed by zeros only. Tar readers skip padding and trailing bytes,
 * so without this check a changed byte there would go unnoticed; every byte of a VYR `.tar` counts.
 * Sizes in base-256 (GNU, for files ≥ 8 GiB) are refused: a Wasm artifact never needs them.
 *
 * @returns the first problem found, or `undefined`.
 */
export function tarFramingProblem(bytes: Uint8Array): string | undefined {
  if (bytes.byteLength % 512 !== 0) return `its length ${bytes.byteLength} is not a multiple of 512`;
  let pos = 0;
  while (pos + 512 <= bytes.byteLength) {
    const header = bytes.subarray(pos, pos + 512);
    const field = (start: number, length: number): string =>
      Buffer.from(header.buffer, header.byteOffset + start, length).toString('latin1');
    if (header.every((b) => b === 0)) {
      const rest = bytes.subarray(pos);
      const nonZero = rest.findIndex((b) => b !== 0);
      if (nonZero >= 0) return `byte ${pos + nonZero} after the end-of-archive marker is not zero`;
      if (rest.byteLength < 1024) return 'the end-of-archive marker (two zero blocks) is cut short';
      return undefined;
    }
    // Octal digits, then NUL/space terminators only: a changed terminator is caught although no sum covers it.
    const checksum = /^ *([0-7]+)[\0 ]*$/.exec(field(148, 8));
    if (checksum === null) return `the header at byte ${pos} has a malformed checksum field`;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
    if (Number.parseInt(checksum[1]!, 8) !== sum) return `the header at byte ${pos} does not match its checksum`;
    const sizeField = /^ *([0-7]*)[\0 ]*$/.exec(field(124, 12));
    if (sizeField === null) return `the header at byte ${pos} has a malformed (or base-256) size field`;
    const size = Number.parseInt(sizeField[1] || '0', 8);
    const type = field(156, 1);
    const dataBytes = '123456'.includes(type) ? 0 : size;
    if (dataBytes !== size) return `the ${type === '5' ? 'directory' : 'link'} entry at byte ${pos} has a size`;
    const dataEnd = pos + 512 + dataBytes;
    const next = pos + 512 + Math.ceil(dataBytes / 512) * 512;
    if (next > bytes.byteLength) return `the entry at byte ${pos} runs past the end of the archive`;
    const padding = bytes.subarray(dataEnd, next).findIndex((b) => b !== 0);
    if (padding >= 0) return `padding byte ${dataEnd + padding} after the entry at byte ${pos} is not zero`;
    pos = next;
  }
  return 'it has no end-of-archive marker';
}

/** Whether a layout's index lists a VYR artifact (a manifest whose artifactType is the Wasm config). */
export function isVyrLayout(reader: LayoutReader): boolean {
  return reader.index.manifests.some((d) => d.artifactType === MediaType.wasmConfig);
}

/** Whether `bytes` start with the gzip magic (RFC 1952). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** What a gzip file holds, as far as VYR cares. */
export type GzipContent = 'container-image' | 'vyr-artifact' | 'wasm' | 'other';

/** Decompressed bytes beyond this are not looked at (a gzip bomb is "other"). */
const GZIP_PEEK_LIMIT = 1024 * 1024 * 1024;

/**
 * Decompresses gzip input only to say what it holds, so that a refusal can be precise: VYR never accepts
 * compressed input (see docs/artifact.md, "Compressed input"). A container image inside (an OCI layout tar or a
 * `docker save` tarball) is a container image whether compressed or not.
 */
export async function gzipContent(bytes: Uint8Array): Promise<GzipContent> {
  let inner: Uint8Array;
  try {
    inner = new Uint8Array(await gunzipAsync(bytes, { maxOutputLength: GZIP_PEEK_LIMIT }));
  } catch {
    return 'other';
  }
  if (inner.length >= 4 && inner[0] === 0 && inner[1] === 0x61 && inner[2] === 0x73 && inner[3] === 0x6d) return 'wasm';
  if (isGzip(inner) || tarFramingProblem(inner) !== undefined) return 'other';
  try {
    return isVyrLayout(await openTarBytes(inner, 'the decompressed archive')) ? 'vyr-artifact' : 'container-image';
  } catch (err) {
    return err instanceof ArtifactError && err.code === 'CONTAINER_IMAGE' ? 'container-image' : 'other';
  }
}

async function openTarBytes(bytes: Uint8Array, label: string): Promise<LayoutReader> {
  if (isGzip(bytes)) {
    const content = await gzipContent(bytes);
    if (content === 'container-image') throw containerImageError(`${label} (gzip-compressed)`);
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${label} is gzip-compressed${content === 'vyr-artifact' ? ' (a VYR artifact inside)' : ''}; VYR reads an artifact only as an uncompressed OCI layout .tar or directory, so that the bytes verified are the bytes stored: decompress it (gunzip) and retry`,
    );
  }
  const framing = tarFramingProblem(bytes);
  if (framing !== undefined) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label} is not a well-formed tar archive: ${framing}`);
  }
  const files = new Map<string, Uint8Array>();
  const problems: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const name = entry.path.replace(/^\.\//, '');
        if (entry.type === 'Directory') {
          entry.resume();
          return;
        }
        if (entry.type !== 'File' && entry.type !== 'OldFile') {
          problems.push(`${name} is a ${entry.type}, only regular files are allowed`);
          entry.resume();
          return;
        }
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => files.set(name, new Uint8Array(Buffer.concat(chunks))));
      },
    });
    parser.on('error', reject);
    parser.on('warn', (_code: string, message: string | Error) => problems.push(String(message)));
    parser.on('end', () => resolve());
    parser.end(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }).catch((cause) => {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label} is not a readable tar archive: ${String(cause)}`, { cause });
  });
  if (files.size === 0 && problems.length === 0) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label} is not a tar archive of an OCI layout (no entries found)`);
  }
  for (const name of files.keys()) {
    if (name !== 'oci-layout' && name !== 'index.json' && !BLOB_ENTRY.test(name) && !OTHER_BLOB_ENTRY.test(name)) {
      // A container image saved by `docker save` has manifest.json and per-layer tarballs.
      if (name === 'manifest.json' || name === 'repositories') throw containerImageError(label);
      problems.push(`unexpected entry ${name}`);
    }
  }
  if (problems.length > 0) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label}: ${problems.slice(0, 3).join('; ')}`);
  }
  const index = checkLayoutFiles(files.get('oci-layout'), files.get('index.json'), label);
  return {
    kind: 'tar',
    path: label,
    index,
    readBlob: async (digest) => files.get(`blobs/sha256/${digestHex(digest)}`),
  };
}

/** The refusal for OCI/Docker container images (ARCHITECTURE.md §9). */
export function containerImageError(label: string): ArtifactError {
  return new ArtifactError(
    'CONTAINER_IMAGE',
    `${label} is an OCI container image: container images are not an execution path in VYR MVO; build the workload as a WASI command (Wasm) and pack that`,
  );
}

/** Parses JSON, mapping failures to `MALFORMED_LAYOUT`. */
export function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (cause) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
}

function checkLayoutFiles(layout: Uint8Array | undefined, index: Uint8Array | undefined, label: string): OciIndex {
  if (layout === undefined) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label} is not an OCI image layout: no oci-layout file`);
  }
  const layoutJson = parseJson(layout, `${label}/oci-layout`) as { imageLayoutVersion?: unknown };
  if (typeof layoutJson !== 'object' || layoutJson === null || typeof layoutJson.imageLayoutVersion !== 'string') {
    throw new ArtifactError('MALFORMED_LAYOUT', `${label}/oci-layout has no imageLayoutVersion`);
  }
  if (layoutJson.imageLayoutVersion !== '1.0.0') {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${label}/oci-layout: imageLayoutVersion ${JSON.stringify(layoutJson.imageLayoutVersion)} is not supported (expected "1.0.0")`,
    );
  }
  if (index === undefined) throw new ArtifactError('MALFORMED_LAYOUT', `${label} has no index.json`);
  const value = parseJson(index, `${label}/index.json`);
  return checkIndex(value, `${label}/index.json`);
}

/** Shape-checks an image index. @throws ArtifactError `MALFORMED_LAYOUT`, `UNSUPPORTED_MEDIA_TYPE`. */
export function checkIndex(value: unknown, what: string): OciIndex {
  const v = value as Partial<OciIndex> | null;
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what} is not a JSON object`);
  }
  if (v.schemaVersion !== 2) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${what}: schemaVersion must be 2, got ${JSON.stringify(v.schemaVersion)}`,
    );
  }
  if (v.mediaType !== undefined && v.mediaType !== MediaType.ociIndex) {
    throw new ArtifactError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: mediaType ${JSON.stringify(v.mediaType)} is not ${MediaType.ociIndex}`,
    );
  }
  if (!Array.isArray(v.manifests)) throw new ArtifactError('MALFORMED_LAYOUT', `${what}: manifests must be an array`);
  v.manifests.forEach((d, i) => {
    checkDescriptor(d, `${what}: manifests[${i}]`);
  });
  return v as OciIndex;
}

/** Shape-checks a content descriptor. @throws ArtifactError `MALFORMED_LAYOUT`. */
export function checkDescriptor(value: unknown, what: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (typeof d !== 'object' || d === null || Array.isArray(d)) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what} is not a descriptor object`);
  }
  if (typeof d.mediaType !== 'string' || d.mediaType.length === 0) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what}: mediaType must be a non-empty string`);
  }
  if (!isDigest(d.digest)) {
    throw new ArtifactError('MALFORMED_LAYOUT', `${what}: digest ${JSON.stringify(d.digest)} is not sha256:<64 hex>`);
  }
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ArtifactError(
      'MALFORMED_LAYOUT',
      `${what}: size ${JSON.stringify(d.size)} is not a non-negative integer`,
    );
  }
  return d as Descriptor;
}

/** The per-role code used when a blob does not match its descriptor. */
export type BlobRole = 'manifest' | 'config' | 'layer' | 'signature';

/**
 * Reads a blob and checks its size and SHA-256 against the descriptor.
 *
 * @throws ArtifactError `BLOB_MISSING`; `MANIFEST_TAMPERED` / `CONFIG_TAMPERED` / `BLOB_DIGEST_MISMATCH` by role.
 */
export async function readBlobChecked(
  reader: LayoutReader,
  descriptor: Descriptor,
  role: BlobRole,
  what: string,
): Promise<Uint8Array> {
  const bytes = await reader.readBlob(descriptor.digest);
  if (bytes === undefined) {
    throw new ArtifactError(
      'BLOB_MISSING',
      `${what} ${descriptor.digest} is missing from ${reader.path}/blobs/sha256/`,
    );
  }
  const actual = sha256Digest(bytes);
  if (actual !== descriptor.digest || bytes.byteLength !== descriptor.size) {
    const code =
      role === 'manifest' ? 'MANIFEST_TAMPERED' : role === 'config' ? 'CONFIG_TAMPERED' : 'BLOB_DIGEST_MISMATCH';
    throw new ArtifactError(
      code,
      `${what} ${descriptor.digest} was altered: its ${bytes.byteLength} bytes hash to ${actual} (descriptor size ${descriptor.size}); the artifact is corrupt or tampered, obtain it again`,
    );
  }
  return bytes;
}

/** Serialises an image index the one way VYR writes it (stable key order, no whitespace). */
export function encodeIndex(manifests: readonly Descriptor[], annotations?: Record<string, string>): Uint8Array {
  const index: OciIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...manifests] };
  if (annotations !== undefined) index.annotations = annotations;
  return new TextEncoder().encode(JSON.stringify(index));
}

/** A full layout to write: index bytes plus every blob. */
export interface LayoutContent {
  /** `index.json` bytes. */
  index: Uint8Array;
  /** Blobs by digest. */
  blobs: ReadonlyMap<Digest, Uint8Array>;
}

/**
 * Writes a complete layout to `path`: a directory, or a reproducible `.tar` when `path` ends in `.tar`.
 * Directory writes put blobs first, then `index.json`, each atomically (temp file, fsync, rename), and then
 * remove blobs the new index no longer needs. Tar writes replace the file atomically.
 *
 * @param mtimeSeconds - mtime of tar entries (SOURCE_DATE_EPOCH or 0).
 * @param verified - digests whose files in this layout the caller has just re-hashed (skipped if present).
 */
export async function writeLayout(
  path: string,
  content: LayoutContent,
  mtimeSeconds = 0,
  verified: ReadonlySet<Digest> = new Set(),
): Promise<void> {
  try {
    if (isTarPath(path)) {
      await mkdir(dirname(path), { recursive: true });
      await writeFileAtomic(path, encodeTar(content, mtimeSeconds));
      return;
    }
    const blobDir = join(path, 'blobs', 'sha256');
    await mkdir(blobDir, { recursive: true });
    for (const [digest, bytes] of content.blobs) {
      const target = join(blobDir, digestHex(digest));
      if (await sameSize(target, bytes.byteLength)) {
        // `verified`: the caller has just read and re-hashed this very file; no need to read it again.
        if (verified.has(digest)) continue;
        const existing = await readOptional(target);
        if (existing !== undefined && sha256Digest(existing) === digest) continue;
      }
      await writeFileAtomic(target, bytes);
    }
    await writeFileAtomic(join(path, 'oci-layout'), new TextEncoder().encode(OCI_LAYOUT_FILE));
    await writeFileAtomic(join(path, 'index.json'), content.index);
    const keep = new Set([...content.blobs.keys()].map(digestHex));
    for (const name of await readdir(blobDir)) {
      if (!keep.has(name)) await rm(join(blobDir, name), { force: true });
    }
  } catch (cause) {
    if (cause instanceof ArtifactError) throw cause;
    throw new ArtifactError('IO_ERROR', `cannot write artifact ${path}: ${(cause as Error).message}`, { cause });
  }
}

/** Whether `path` exists (`stat` succeeds). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function sameSize(path: string, size: number): Promise<boolean> {
  try {
    return (await stat(path)).size === size;
  } catch {
    return false;
  }
}

/**
 * Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, then fsync of the
 * directory so the rename itself is durable.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array, mode = 0o644): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.tmp-${basename(path)}-${process.pid}-${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** fsync a directory (durability of renames); ignored where the platform refuses it. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(dir, constants.O_RDONLY);
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await handle?.close();
  }
}

/**
 * Encodes a layout as a reproducible ustar archive: fixed entry order (oci-layout, index.json, blobs sorted by
 * digest), fixed mtime, uid/gid 0, no user names, modes 0644/0755.
 */
export function encodeTar(content: LayoutContent, mtimeSeconds: number): Uint8Array {
  const mtime = new Date(mtimeSeconds * 1000);
  const parts: Buffer[] = [];
  const dirEntry = (name: string): void => {
    const header = new Header({
      path: name,
      mode: 0o755,
      uid: 0,
      gid: 0,
      size: 0,
      mtime,
      type: 'Directory',
      uname: '',
      gname: '',
    });
    header.encode();
    parts.push(header.block!);
  };
  const fileEntry = (name: string, bytes: Uint8Array): void => {
    const header = new Header({
      path: name,
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: bytes.byteLength,
      mtime,
      type: 'File',
      uname: '',
      gname: '',
    });
    header.encode();
    parts.push(header.block!, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const pad = (512 - (bytes.byteLength % 512)) % 512;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  };
  fileEntry('oci-layout', new TextEncoder().encode(OCI_LAYOUT_FILE));
  fileEntry('index.json', content.index);
  dirEntry('blobs/');
  dirEntry('blobs/sha256/');
  for (const digest of [...content.blobs.keys()].sort()) {
    fileEntry(`blobs/sha256/${digestHex(digest)}`, content.blobs.get(digest)!);
  }
  parts.push(Buffer.alloc(1024));
  return new Uint8Array(Buffer.concat(parts));
}
