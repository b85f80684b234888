// Minimal types for the part of @elastic/mockotlpserver (CommonJS, untyped entry point) the tests use.
declare module '@elastic/mockotlpserver' {
  export interface MockOtlpServerOptions {
    logLevel?: string;
    services?: Array<'http' | 'grpc' | 'ui'>;
    httpHostname?: string;
    httpPort?: number;
    onTrace?: (trace: unknown) => void;
    onMetrics?: (metrics: unknown) => void;
    onLogs?: (logs: unknown) => void;
  }
  export class MockOtlpServer {
    constructor(opts?: MockOtlpServerOptions);
    httpUrl: string | null;
    start(): Promise<void>;
    close(): Promise<void>;
  }
}
