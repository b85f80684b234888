import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { CliContext } from './context.js';
import { CliError } from './errors.js';
import { ExitCode } from './exit-codes.js';

/**
 * Reads a file named by a flag, relative to the command's working directory.
 *
 * @param what how the error names it, e.g. `--stdin` or `--ca`.
 * @throws CliError `NOT_FOUND` (exit 66) when it does not exist, `IO_ERROR` (exit 74) when it cannot be read.
 */
export async function readInputFile(ctx: CliContext, path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(resolve(ctx.cwd, path));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new CliError('NOT_FOUND', `${what} ${path} does not exist`, ExitCode.NOT_FOUND, { cause: err });
    }
    throw new CliError('IO_ERROR', `cannot read ${what} ${path}: ${e.message}`, ExitCode.IO_ERROR, { cause: err });
  }
}

/**
 * Reads a secret (a bearer token) from a file: UTF-8, surrounding whitespace and the final newline removed —
 * the same rule the node applies to its `--token-file`.
 *
 * @throws CliError as {@link readInputFile}, and `INVALID_INPUT` (exit 64) when the file holds only whitespace
 * (an empty token would silently send no token at all).
 */
export async function readSecretFile(ctx: CliContext, path: string, what: string): Promise<string> {
  const text = (await readInputFile(ctx, path, what)).toString('utf8').trim();
  if (text.length === 0) {
    throw new CliError('INVALID_INPUT', `${what} ${path} is empty; put the token in it`, ExitCode.INVALID_INPUT);
  }
  return text;
}
