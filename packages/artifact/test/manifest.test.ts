import { describe, expect, it } from 'vitest';
import { ArtifactError, defaultVyrManifest, parseVyrManifest, validateVyrManifest } from '../src/index.js';
import { EVENT_TRANSFORM_MANIFEST } from './helpers.js';

function messageOf(value: unknown): string {
  try {
    validateVyrManifest(value, 'vyr.json');
  } catch (err) {
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as ArtifactError).code).toBe('INVALID_MANIFEST');
    return (err as ArtifactError).message;
  }
  throw new Error('expected INVALID_MANIFEST');
}

describe('VYR manifest (vyr.json)', () => {
  it('accepts the issue example and returns it normalised', () => {
    expect(validateVyrManifest(EVENT_TRANSFORM_MANIFEST)).toEqual(EVENT_TRANSFORM_MANIFEST);
  });

  it('needs only name and version; env, state and limits default to empty', () => {
    expect(parseVyrManifest('{"name":"a","version":"1.2.3-rc.1+build.5"}')).toEqual({
      name: 'a',
      version: '1.2.3-rc.1+build.5',
      env: [],
      state: [],
      limits: {},
    });
  });

  it('derives name from the file name and version 0.0.0 without a manifest', () => {
    expect(defaultVyrManifest('Event_Transform.wasm')).toMatchObject({ name: 'event_transform', version: '0.0.0' });
    expect(defaultVyrManifest('...wasm')).toMatchObject({ name: 'artifact' });
  });

  it.each([
    [[], '$: must be a JSON object, got an array'],
    [{ version: '1.0.0' }, 'name: must match'],
    [{ name: 'Bad Name', version: '1.0.0' }, 'got "Bad Name"'],
    [{ name: 'a', version: '1.0' }, 'version: must be a SemVer 2.0 version like "0.1.0", got "1.0"'],
    [{ name: 'a', version: '1.0.0', extra: 1 }, 'unknown field "extra"'],
    [{ name: 'a', version: '1.0.0', env: 'LOG' }, 'env: must be an array'],
    [{ name: 'a', version: '1.0.0', env: ['1BAD'] }, 'env[0]: must be a variable name'],
    [{ name: 'a', version: '1.0.0', env: ['A', 'A'] }, 'env[1]: duplicate key "A"'],
    [
      { name: 'a', version: '1.0.0', state: [{ name: 'd', mount: 'data', access: 'rw' }] },
      'state[0].mount: must be a normalised absolute path',
    ],
    [{ name: 'a', version: '1.0.0', state: [{ name: 'd', mount: '/a/../b', access: 'rw' }] }, 'state[0].mount'],
    [
      { name: 'a', version: '1.0.0', state: [{ name: 'd', mount: '/d', access: 'rwx' }] },
      'state[0].access: must be "ro" or "rw", got "rwx"',
    ],
    [
      { name: 'a', version: '1.0.0', state: [{ name: 'd', mount: '/d', access: 'ro', quotaBytes: -1 }] },
      'state[0].quotaBytes: must be a positive integer, got -1',
    ],
    [
      { name: 'a', version: '1.0.0', state: [{ name: 'd', mount: '/d', access: 'ro', quota: 1 }] },
      'state[0]: unknown field "quota"',
    ],
    [
      {
        name: 'a',
        version: '1.0.0',
        state: [
          { name: 'd', mount: '/d', access: 'ro' },
          { name: 'd', mount: '/e', access: 'ro' },
        ],
      },
      'state[1].name: duplicate slot name "d"',
    ],
    [
      {
        name: 'a',
        version: '1.0.0',
        state: [
          { name: 'd', mount: '/d', access: 'ro' },
          { name: 'e', mount: '/d', access: 'ro' },
        ],
      },
      'state[1].mount: duplicate mount path "/d"',
    ],
    [{ name: 'a', version: '1.0.0', limits: { memoryBytes: 1000 } }, 'limits.memoryBytes: must be a multiple of 65536'],
    [
      { name: 'a', version: '1.0.0', limits: { deadlineMs: 1.5 } },
      'limits.deadlineMs: must be a positive integer, got 1.5',
    ],
    [{ name: 'a', version: '1.0.0', limits: { cpu: 1 } }, 'limits: unknown field "cpu"'],
  ])('refuses %j with a message naming the field (%s)', (value, expected) => {
    const message = messageOf(value);
    expect(message).toContain('vyr.json: ');
    expect(message).toContain(expected);
  });

  it('accepts "/" as a mount path', () => {
    const m = validateVyrManifest({ name: 'a', version: '1.0.0', state: [{ name: 'root', mount: '/', access: 'ro' }] });
    expect(m.state[0]!.mount).toBe('/');
  });

  it('reports JSON syntax errors as INVALID_MANIFEST', () => {
    expect(() => parseVyrManifest('{"name":', 'vyr.json')).toThrow(/vyr.json: not valid JSON/);
  });
});
