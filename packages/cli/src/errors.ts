import { ConnectError } from '@connectrpc/connect';
import { describeCallError } from '@vyr/api/client';
import { ExitCode, type ExitCodeValue, exitCodeFor } from './exit-codes.js';
import { formatBytes } from './format.js';

/**
 * An error the CLI reports to the user: a stable `code` (printed, and in `--json` output), a message that says
 * what was wrong and what to do, and the process exit code to end with.
 */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: string;
  readonly exitCode: ExitCodeValue;

  constructor(
    code: string,
    message: string,
    exitCode: ExitCodeValue = ExitCode.FAILURE,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Where an error happened, so {@link toCliError} can say more than the error itself. */
export interface ErrorContext {
  /** URL of the node the failed call went to. */
  nodeUrl?: string;
}

// TLS verification failures (OpenSSL codes as Node.js reports them): the fix is --ca.
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

// connect-es refuses a message over readMaxBytes/writeMaxBytes (the node's or ours) with resource_exhausted.
const SIZE_LIMIT = /larger than configured (?:read|write)MaxBytes/;

function errorCodes(err: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  for (let e = err; e instanceof Error && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') codes.push(code);
  }
  return codes;
}

/**
 * Maps anything a command throws to a {@link CliError} with a documented exit code ({@link exitCodeFor}):
 * CliErrors pass through; errors of a node call keep the node's precise code (e.g. `UNTRUSTED_KEY`,
 * `BINDING_CONFLICT`); package and Node.js errors keep their `code`.
 *
 * Transport failures get a message that says what to do: `UNAVAILABLE` (exit 69) when the node cannot be
 * reached, `UNTRUSTED_CERTIFICATE` (exit 69, "pass --ca") when its TLS certificate is not trusted, and
 * `TOO_LARGE` (exit 64) when a message is over the node's or the client's size limit.
 */
export function toCliError(err: unknown, context: ErrorContext = {}): CliError {
  if (err instanceof CliError) return err;
  const where = context.nodeUrl ?? 'the node';
  if (err instanceof ConnectError || (err instanceof Error && err.name === 'ConnectError')) {
    const tlsCode = errorCodes(err).find((c) => TLS_TRUST_CODES.has(c));
    if (tlsCode !== undefined) {
      return new CliError(
        'UNTRUSTED_CERTIFICATE',
        `the TLS certificate of ${where} is not trusted (${tlsCode}): pass its CA, or the node's self-signed certificate, with --ca FILE`,
        ExitCode.UNAVAILABLE,
        { cause: err },
      );
    }
    const e = describeCallError(err);
    const limit = SIZE_LIMIT.exec(e.message);
    if (limit) {
      const bytes = /(\d+)\s*$/.exec(e.message)?.[1];
      return new CliError(
        'TOO_LARGE',
        `a message is over the limit of ${bytes === undefined ? 'the connection' : formatBytes(Number(bytes))} per message (${e.message}): send less (e.g. a smaller --stdin or --from), or raise the node's limits`,
        ExitCode.INVALID_INPUT,
        { cause: err },
      );
    }
    if (e.connectCode === 'unavailable' && e.domain === 'transport') {
      return new CliError(
        'UNAVAILABLE',
        `cannot reach the node at ${where}: ${e.message}; is \`vyr node start\` running?`,
        ExitCode.UNAVAILABLE,
        { cause: err },
      );
    }
    return new CliError(e.errorCode, e.message, exitCodeFor(e.errorCode, e.connectCode), { cause: err });
  }
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return new CliError(code, message, exitCodeFor(code), { cause: err });
}
