/** Types of portability.mjs (a plain ES module so `make demo` runs it without a build step). */
export interface DemoRow {
  tier: 'laptop' | 'edge' | 'cloud';
  implementation: string;
  node: string;
  artifactDigest: string;
  stdoutDigest: string;
  stateDigest: string;
  referenceDigest: string;
  eventsIn: number;
  eventsOut: number;
  rejected: number;
  durationMs: number;
  traceId: string;
  /** The task's signed execution receipt, relative to the work directory. */
  receipt: string;
  nodeSpans: number;
  receivedSpans: number;
}
export interface DemoResult {
  seed: number;
  inputBytes: number;
  inputDigest: string;
  netns: boolean;
  cut: string;
  spooledDuringCut: number;
  receivedDuringCut: number;
  /** Spans the receiver got more than once (store-and-forward is at-least-once); not a loss. */
  duplicateSpansReceived: number;
  wallMs: number;
  rows: DemoRow[];
  /** `vyr receipt compare` of each implementation's three receipts, verified against the three node keys. */
  receipts: Record<string, { agree: boolean; output: string }>;
  verdict: {
    receiptsAgree: boolean;
    artifactDigestsEqual: boolean;
    stdoutDigestsEqual: boolean;
    stateDigestsEqual: boolean;
    spansLost: number;
    ok: boolean;
  };
}
export interface DemoOptions {
  seed?: number;
  inputBytes?: number;
  /** false: never use network namespaces (stop and restart the upstream collector instead). */
  netns?: boolean;
  workDir?: string;
  keep?: boolean;
  resultFile?: string;
  drainTimeoutMs?: number;
  /** The vyr launcher; default the checkout's `./vyr`. */
  vyr?: string;
  log?: (line: string) => void;
}
export declare const IMPLEMENTATIONS: { id: string; label: string; wasm: string }[];
export declare function runPortabilityDemo(options?: DemoOptions): Promise<DemoResult>;
export declare function formatResult(result: DemoResult): string;
