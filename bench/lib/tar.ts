/** A tar archive of a directory's contents (for seeding a state instance over the API), made by the system tar. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The bytes of `tar -c` over the entries of `dir` (paths relative to it, numeric owner 0, no PAX times). */
export async function tarDirectory(dir: string): Promise<Uint8Array> {
  const { stdout } = await run(
    'tar',
    ['-c', '--format=ustar', '--owner=0', '--group=0', '--numeric-owner', '-C', dir, '.'],
    {
      encoding: 'buffer',
      maxBuffer: 256 * 1024 * 1024,
    },
  );
  return new Uint8Array(stdout);
}
