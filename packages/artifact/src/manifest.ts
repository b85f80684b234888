import { ArtifactError } from './errors.js';
import type { Limits, StateSlotDeclaration, VyrManifest } from './types.js';

const NAME = /^[a-z0-9][a-z0-9._-]{0,127}$/;
const SLOT_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
// SemVer 2.0.0 (semver.org), the official regular expression.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
const TOP_KEYS = new Set(['name', 'version', 'env', 'state', 'limits']);
const SLOT_KEYS = new Set(['name', 'mount', 'access', 'quotaBytes']);
const LIMIT_KEYS = new Set(['memoryBytes', 'deadlineMs']);

function fail(source: string, path: string, message: string): never {
  throw new ArtifactError('INVALID_MANIFEST', `${source}: ${path}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(source: string, path: string, obj: Record<string, unknown>, allowed: Set<string>): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.has(key)) {
      fail(source, path, `unknown field "${key}" (allowed: ${[...allowed].join(', ')})`);
    }
  }
}

function positiveInt(source: string, path: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    fail(source, path, `must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Validates VYR declarations (the JSON of `vyr.json`) and returns them normalised: `env`, `state` and `limits`
 * always present, env keys and slots in the given order. Unknown fields are refused, so a typo never silently
 * drops a limit.
 *
 * Rules: `name` `[a-z0-9][a-z0-9._-]{0,127}`; `version` SemVer 2.0; `env` unique POSIX-style names; `state`
 * slots with unique names `[a-z0-9][a-z0-9_-]{0,62}`, unique absolute normalised `mount` paths (no `.`/`..`
 * segments, no trailing `/` except `/` itself), `access` `ro`|`rw`, optional positive `quotaBytes`; `limits`
 * optional positive `memoryBytes` (a multiple of the 64 KiB Wasm page) and `deadlineMs`.
 *
 * @param source - names the document in messages (e.g. `vyr.json`).
 * @throws ArtifactError `INVALID_MANIFEST` naming the offending field and value.
 */
export function validateVyrManifest(value: unknown, source = 'manifest'): VyrManifest {
  if (!isObject(value)) fail(source, '$', `must be a JSON object, got ${describe(value)}`);
  checkKeys(source, '$', value, TOP_KEYS);
  const { name, version } = value;
  if (typeof name !== 'string' || !NAME.test(name)) {
    fail(source, 'name', `must match [a-z0-9][a-z0-9._-]{0,127}, got ${JSON.stringify(name)}`);
  }
  if (typeof version !== 'string' || !SEMVER.test(version)) {
    fail(source, 'version', `must be a SemVer 2.0 version like "0.1.0", got ${JSON.stringify(version)}`);
  }
  const env: string[] = [];
  if (value.env !== undefined) {
    if (!Array.isArray(value.env))
      fail(source, 'env', `must be an array of variable names, got ${describe(value.env)}`);
    for (const [i, key] of value.env.entries()) {
      if (typeof key !== 'string' || !ENV_KEY.test(key)) {
        fail(source, `env[${i}]`, `must be a variable name [A-Za-z_][A-Za-z0-9_]*, got ${JSON.stringify(key)}`);
      }
      if (env.includes(key)) fail(source, `env[${i}]`, `duplicate key "${key}"`);
      env.push(key);
    }
  }
  const state: StateSlotDeclaration[] = [];
  if (value.state !== undefined) {
    if (!Array.isArray(value.state)) fail(source, 'state', `must be an array of slots, got ${describe(value.state)}`);
    for (const [i, slot] of value.state.entries()) {
      const at = `state[${i}]`;
      if (!isObject(slot)) fail(source, at, `must be an object, got ${describe(slot)}`);
      checkKeys(source, at, slot, SLOT_KEYS);
      if (typeof slot.name !== 'string' || !SLOT_NAME.test(slot.name)) {
        fail(source, `${at}.name`, `must match [a-z0-9][a-z0-9_-]{0,62}, got ${JSON.stringify(slot.name)}`);
      }
      if (state.some((s) => s.name === slot.name)) fail(source, `${at}.name`, `duplicate slot name "${slot.name}"`);
      const mount = slot.mount;
      if (typeof mount !== 'string' || !isNormalAbsolutePath(mount)) {
        fail(
          source,
          `${at}.mount`,
          `must be a normalised absolute path like "/data" (no "." or ".." segments, no trailing "/"), got ${JSON.stringify(mount)}`,
        );
      }
      if (state.some((s) => s.mount === mount)) fail(source, `${at}.mount`, `duplicate mount path "${mount}"`);
      if (slot.access !== 'ro' && slot.access !== 'rw') {
        fail(source, `${at}.access`, `must be "ro" or "rw", got ${JSON.stringify(slot.access)}`);
      }
      const decl: StateSlotDeclaration = { name: slot.name, mount, access: slot.access };
      if (slot.quotaBytes !== undefined) decl.quotaBytes = positiveInt(source, `${at}.quotaBytes`, slot.quotaBytes);
      state.push(decl);
    }
  }
  const limits: Limits = {};
  if (value.limits !== undefined) {
    if (!isObject(value.limits)) fail(source, 'limits', `must be an object, got ${describe(value.limits)}`);
    checkKeys(source, 'limits', value.limits, LIMIT_KEYS);
    if (value.limits.memoryBytes !== undefined) {
      const bytes = positiveInt(source, 'limits.memoryBytes', value.limits.memoryBytes);
      if (bytes % 65536 !== 0) {
        fail(source, 'limits.memoryBytes', `must be a multiple of 65536 (one Wasm page), got ${bytes}`);
      }
      limits.memoryBytes = bytes;
    }
    if (value.limits.deadlineMs !== undefined) {
      limits.deadlineMs = positiveInt(source, 'limits.deadlineMs', value.limits.deadlineMs);
    }
  }
  return { name, version, env, state, limits };
}

/** Parses and validates VYR declarations from JSON text. @throws ArtifactError `INVALID_MANIFEST`. */
export function parseVyrManifest(text: string, source = 'manifest'): VyrManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new ArtifactError('INVALID_MANIFEST', `${source}: not valid JSON: ${(cause as Error).message}`, { cause });
  }
  return validateVyrManifest(value, source);
}

/** Declarations for an input packed without a manifest: name from the file name, version `0.0.0`. */
export function defaultVyrManifest(fileName: string): VyrManifest {
  const base = fileName
    .replace(/\.wasm$/i, '')
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 128);
  return { name: base.length > 0 ? base : 'artifact', version: '0.0.0', env: [], state: [], limits: {} };
}

function isNormalAbsolutePath(p: string): boolean {
  if (p === '/') return true;
  if (!p.startsWith('/') || p.endsWith('/') || p.includes('\0')) return false;
  return p
    .slice(1)
    .split('/')
    .every((seg) => seg.length > 0 && seg !== '.' && seg !== '..');
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}
