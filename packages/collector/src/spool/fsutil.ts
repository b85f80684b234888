import { type FileHandle, open } from 'node:fs/promises';

/**
 * Makes a directory's entries durable (a created, renamed or removed file). POSIX requires an fsync of the
 * directory itself for that; a file's own fsync covers only its contents.
 */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } finally {
    await fh?.close();
  }
}

/** Zero-padded segment file name for a first sequence number, so names sort in sequence order. */
export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.seg`;
}

/** The first sequence number encoded in a segment file name, or `undefined` for other files. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^(\d{16})\.seg$/.exec(name);
  return m ? Number(m[1]) : undefined;
}
