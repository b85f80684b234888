/** Types of generate.mjs (the input generator is plain JavaScript so it runs with any Node.js, no build). */
export declare const DEFAULT_REFERENCE: string;
/** 2026-12-07T00:00:00Z in epoch ms: where generated time starts. */
export declare const START_MS: number;
/** Parses `1m`, `100MiB`, `1g`, `4096`… into bytes. */
export declare function parseSize(text: string): number;
/** Yields the input as Buffers of about 64 KiB until at least `bytes` bytes are out. */
export declare function generateEvents(options?: {
  seed?: number;
  bytes?: number;
  devices?: string[];
}): Generator<Buffer>;
