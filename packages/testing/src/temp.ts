import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const created = new Set<string>();

/**
 * Creates a fresh temporary directory (under the OS temp dir) and returns its absolute path. Remove them all
 * with {@link cleanupTempDirs} (e.g. in `afterAll`).
 *
 * @param prefix - directory name prefix. Default: `vyr-test-`.
 */
export async function tempDir(prefix = 'vyr-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}

/** Removes every directory made by {@link tempDir} in this process. */
export async function cleanupTempDirs(): Promise<void> {
  const dirs = [...created];
  created.clear();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}
