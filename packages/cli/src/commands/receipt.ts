import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ExecutionPredicate, ReceiptErrorCode, StateExportCheck } from '@vyr/receipt';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode, type ExitCodeValue } from '../exit-codes.js';
import { readInputFile } from '../files.js';
import { type NodeFlags, withNode, withNodeOptions } from './node-client.js';

/**
 * `@vyr/receipt` (and the state kernel's digest code it pulls in) is loaded by the receipt commands only, so every
 * other command starts without it.
 */
const receiptLib = () => import('@vyr/receipt');

/** True for a ReceiptError (by name: the module is loaded lazily). */
function isReceiptError(err: unknown): err is Error & { code: ReceiptErrorCode } {
  return err instanceof Error && err.name === 'ReceiptError' && typeof (err as { code?: unknown }).code === 'string';
}

/** Exit code of each receipt refusal: a receipt that does not prove the claim is a verification failure (65). */
const RECEIPT_EXIT: Record<ReceiptErrorCode, ExitCodeValue> = {
  INVALID_ARGUMENT: ExitCode.USAGE,
  MALFORMED_RECEIPT: ExitCode.INVALID_INPUT,
  UNSUPPORTED_MEDIA_TYPE: ExitCode.INVALID_INPUT,
  UNSUPPORTED_PAYLOAD_TYPE: ExitCode.INVALID_INPUT,
  MALFORMED_KEY: ExitCode.INVALID_INPUT,
  MALFORMED_STATEMENT: ExitCode.INVALID_INPUT,
  UNSUPPORTED_PREDICATE: ExitCode.INVALID_INPUT,
  KEY_MISMATCH: ExitCode.VERIFY_FAILED,
  SIGNATURE_INVALID: ExitCode.VERIFY_FAILED,
  ARTIFACT_MISMATCH: ExitCode.VERIFY_FAILED,
  STDOUT_MISMATCH: ExitCode.VERIFY_FAILED,
  STDERR_MISMATCH: ExitCode.VERIFY_FAILED,
  STDIN_MISMATCH: ExitCode.VERIFY_FAILED,
  STATE_MISMATCH: ExitCode.VERIFY_FAILED,
  STORE_ERROR: ExitCode.IO_ERROR,
  IO_ERROR: ExitCode.IO_ERROR,
};

/** A receipt error as the CLI reports it (code printed, documented exit code); anything else unchanged. */
function asCliError(err: unknown): unknown {
  if (!isReceiptError(err)) return err;
  return new CliError(err.code, err.message, RECEIPT_EXIT[err.code] ?? ExitCode.FAILURE, { cause: err });
}

/** One-paragraph human summary of a receipt's predicate. */
export function describeReceipt(p: ExecutionPredicate): string {
  const outcome = `${p.outcome.status}${p.outcome.reason ? ` (${p.outcome.reason})` : ''}${p.outcome.exitCode !== null ? `, exit ${p.outcome.exitCode}` : ''}`;
  const lines = [
    `task      ${p.task.id} on node ${p.node.id} (${p.node.tier}), key ${p.node.keyId}`,
    `artifact  ${p.artifact.name}@${p.artifact.version} ${p.artifact.digest}`,
    `outcome   ${outcome}`,
    `stdout    ${p.output.stdout ? `${p.output.stdout.digest} (${p.output.stdout.bytes} bytes)` : 'not recorded'}`,
    `stderr    ${p.output.stderr ? `${p.output.stderr.digest} (${p.output.stderr.bytes} bytes)` : 'not recorded'}`,
  ];
  for (const s of p.state)
    lines.push(`state     ${s.slot} (${s.access}) ${s.before ?? 'unmeasured'} -> ${s.after ?? 'unmeasured'}`);
  lines.push(`time      ${p.time.startedAt ?? p.time.createdAt} .. ${p.time.endedAt}`);
  if (p.task.traceId) lines.push(`trace     ${p.task.traceId}`);
  return lines.join('\n');
}

/** Parses `--state-export [SLOT=]DIR`. */
function parseStateExport(ctx: CliContext, value: string): StateExportCheck {
  const m = /^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$/.exec(value);
  return m ? { slot: m[1] as string, dir: resolve(ctx.cwd, m[2] as string) } : { dir: resolve(ctx.cwd, value) };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface VerifyFlags {
  nodeKey: string;
  artifact?: string;
  stdout?: string;
  stderr?: string;
  stdin?: string;
  stateExport: string[];
}

/** `vyr receipt verify|get|show`. */
export function registerReceiptCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  const group = program.command('receipt').description('signed execution receipts of tasks (docs/receipts.md)');

  group
    .command('verify')
    .description(
      "check a receipt's signature against a node key, offline, and that the given artifact, output and state match it",
    )
    .argument('<file>', 'receipt file (vyr run --receipt, vyr receipt get)')
    .requiredOption('--node-key <pub>', "the node's public key, SPKI PEM (vyr node status --public-key-out)")
    .option('--artifact <path|digest>', 'the artifact (directory or .tar, re-hashed) or its sha256 digest')
    .option('--stdout <file>', "the task's captured stdout")
    .option('--stderr <file>', "the task's captured stderr")
    .option('--stdin <file>', 'the bytes given to the task on stdin')
    .option(
      '--state-export <[slot=]dir|tar>',
      'a state export (vyr state export --out DIR or FILE.tar); repeatable',
      collect,
      [],
    )
    .action(async (file: string, flags: VerifyFlags) => {
      const json = (await readInputFile(ctx, file, 'receipt')).toString('utf8');
      const key = (await readInputFile(ctx, flags.nodeKey, '--node-key')).toString('utf8');
      const { verifyReceipt } = await receiptLib();
      try {
        const verified = await verifyReceipt(json, key, {
          ...(flags.artifact !== undefined
            ? { artifact: flags.artifact.startsWith('sha256:') ? flags.artifact : resolve(ctx.cwd, flags.artifact) }
            : {}),
          ...(flags.stdout !== undefined ? { stdout: { path: resolve(ctx.cwd, flags.stdout) } } : {}),
          ...(flags.stderr !== undefined ? { stderr: { path: resolve(ctx.cwd, flags.stderr) } } : {}),
          ...(flags.stdin !== undefined ? { stdin: { path: resolve(ctx.cwd, flags.stdin) } } : {}),
          stateExports: flags.stateExport.map((v) => parseStateExport(ctx, v)),
        });
        const checked = ['signature', ...verified.checked];
        emit(
          ctx,
          output(),
          { verified: true, keyId: verified.keyId, checked, statement: verified.statement },
          `receipt verified: ${checked.join(', ')}\n${describeReceipt(verified.predicate)}`,
        );
      } catch (err) {
        throw asCliError(err);
      }
    });

  group
    .command('show')
    .description('print what a receipt claims, WITHOUT checking its signature (use verify for that)')
    .argument('<file>', 'receipt file')
    .action(async (file: string) => {
      const json = (await readInputFile(ctx, file, 'receipt')).toString('utf8');
      const { parseReceipt } = await receiptLib();
      try {
        const parsed = parseReceipt(json);
        emit(
          ctx,
          output(),
          { verified: false, keyId: parsed.keyId, statement: parsed.statement },
          `receipt NOT verified (signed by key ${parsed.keyId})\n${describeReceipt(parsed.statement.predicate)}`,
        );
      } catch (err) {
        throw asCliError(err);
      }
    });

  group
    .command('compare')
    .description(
      'compare receipts of the same run on several nodes: artifact, inputs, outcome, output and state digests must agree',
    )
    .argument('<files...>', 'two or more receipt files')
    .option('--node-key <pub>', 'verify each receipt against one of these node keys first; repeatable', collect, [])
    .action(async (files: string[], flags: { nodeKey: string[] }) => {
      if (files.length < 2) throw new CliError('USAGE', 'compare needs at least two receipts', ExitCode.USAGE);
      const keys = await Promise.all(
        flags.nodeKey.map(async (k) => (await readInputFile(ctx, k, '--node-key')).toString('utf8')),
      );
      const { compareReceipts, parseReceipt, verifyReceipt } = await receiptLib();
      const predicates: ExecutionPredicate[] = [];
      try {
        for (const file of files) {
          const json = (await readInputFile(ctx, file, 'receipt')).toString('utf8');
          if (keys.length === 0) {
            predicates.push(parseReceipt(json).statement.predicate);
            continue;
          }
          // Each receipt must verify with one of the given keys (the one its hint names).
          const keyId = parseReceipt(json).keyId;
          let verified: ExecutionPredicate | undefined;
          let lastError: unknown;
          for (const key of keys) {
            try {
              verified = (await verifyReceipt(json, key)).predicate;
              break;
            } catch (err) {
              lastError = err;
              if (!isReceiptError(err) || err.code !== 'KEY_MISMATCH') throw err;
            }
          }
          if (!verified) {
            throw isReceiptError(lastError)
              ? Object.assign(lastError, {
                  message: `${file} is signed by node key ${keyId}, none of the --node-key keys`,
                })
              : lastError;
          }
          predicates.push(verified);
        }
      } catch (err) {
        throw asCliError(err);
      }
      const result = compareReceipts(predicates);
      const rows = [...result.run, ...result.context].map(
        (f) => `${f.equal ? 'same     ' : 'DIFFERENT'} ${f.field}${f.equal ? '' : `: ${f.values.join(' | ')}`}`,
      );
      const verdict = result.sameRun
        ? `same run on ${predicates.map((p) => `${p.node.id} (${p.node.tier})`).join(', ')}`
        : 'NOT the same run';
      emit(
        ctx,
        output(),
        { sameRun: result.sameRun, verified: keys.length > 0, run: result.run, context: result.context },
        `${verdict}${keys.length > 0 ? '' : ' (signatures NOT checked: pass --node-key)'}\n${rows.join('\n')}`,
      );
      if (!result.sameRun) ctx.setExitCode(ExitCode.FAILURE);
    });

  withNodeOptions(
    group
      .command('get')
      .description("download an ended task's signed receipt from the node")
      .argument('<task>', 'task id')
      .requiredOption('--out <file>', 'where to write the receipt'),
  ).action(async (taskId: string, flags: NodeFlags & { out: string }) =>
    withNode(ctx, flags, async ({ client }) => {
      const { receiptJson, nodeKeyId } = await client.getTaskReceipt({ taskId });
      await writeReceipt(ctx, flags.out, receiptJson);
      emit(ctx, output(), { taskId, out: flags.out, nodeKeyId }, `receipt of ${taskId} written to ${flags.out}`);
    }),
  );
}

/** Writes a receipt file (`vyr run --receipt`, `vyr receipt get`). @throws CliError `IO_ERROR` (exit 74). */
export async function writeReceipt(ctx: CliContext, path: string, receiptJson: string): Promise<void> {
  try {
    await writeFile(resolve(ctx.cwd, path), receiptJson);
  } catch (err) {
    throw new CliError(
      'IO_ERROR',
      `cannot write the receipt to ${path}: ${(err as Error).message}`,
      ExitCode.IO_ERROR,
      {
        cause: err,
      },
    );
  }
}
