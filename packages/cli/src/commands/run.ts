import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { describeCallError } from '@vyr/api/client';
import { isContainerImageReference, readArtifact } from '@vyr/artifact';
import { Access, type StateBinding, StateBindingSchema, type Task, TaskStatus } from '@vyr/proto';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { readInputFile } from '../files.js';
import { formatBytes } from '../format.js';
import { parseDuration, parseSize } from '../parse.js';
import { ttyProgress } from '../progress.js';
import { choiceOf, readOptions, uploadArtifact } from './artifacts.js';
import { type NodeFlags, withNode, withNodeOptions } from './node-client.js';
import { writeReceipt } from './receipt.js';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

const STATUS_NAMES: Record<number, string> = {
  [TaskStatus.UNSPECIFIED]: 'UNSPECIFIED',
  [TaskStatus.PENDING]: 'PENDING',
  [TaskStatus.QUEUED]: 'QUEUED',
  [TaskStatus.RUNNING]: 'RUNNING',
  [TaskStatus.SUCCEEDED]: 'SUCCEEDED',
  [TaskStatus.FAILED]: 'FAILED',
  [TaskStatus.CANCELLED]: 'CANCELLED',
  [TaskStatus.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
};

/** True for the four terminal statuses. */
export function isTerminal(status: TaskStatus): boolean {
  return status >= TaskStatus.SUCCEEDED;
}

/** The task as `--json` prints it. */
export function taskJson(t: Task): Record<string, unknown> {
  return {
    id: t.id,
    artifactDigest: t.artifactDigest,
    status: STATUS_NAMES[t.status] ?? String(t.status),
    ...(t.reason ? { reason: t.reason } : {}),
    ...(t.message ? { message: t.message } : {}),
    ...(t.exitCode !== undefined ? { exitCode: t.exitCode } : {}),
    createdAtUnixMs: Number(t.createdAtUnixMs),
    ...(t.startedAtUnixMs > 0n ? { startedAtUnixMs: Number(t.startedAtUnixMs) } : {}),
    ...(t.endedAtUnixMs > 0n ? { endedAtUnixMs: Number(t.endedAtUnixMs) } : {}),
    stateResults: t.stateResults.map((r) => ({
      slot: r.slot,
      stateId: r.stateId,
      digest: r.digest,
      bytes: Number(r.bytes),
      entries: Number(r.entries),
    })),
    ...(t.traceId ? { traceId: t.traceId } : {}),
    ...(t.unboundSlots.length > 0 ? { unboundSlots: t.unboundSlots } : {}),
    ...(t.droppedOutputBytes > 0n ? { droppedOutputBytes: Number(t.droppedOutputBytes) } : {}),
  };
}

/** Multi-line human description of a task. */
export function describeTask(t: Task): string {
  const lines = [
    `task      ${t.id}`,
    `artifact  ${t.artifactDigest}`,
    `status    ${STATUS_NAMES[t.status] ?? t.status}`,
  ];
  if (t.reason) lines.push(`reason    ${t.reason}${t.message ? `: ${t.message}` : ''}`);
  if (t.exitCode !== undefined) lines.push(`exit code ${t.exitCode}`);
  if (t.startedAtUnixMs > 0n && t.endedAtUnixMs > 0n) lines.push(`duration  ${t.endedAtUnixMs - t.startedAtUnixMs} ms`);
  if (t.unboundSlots.length > 0) lines.push(`waiting   for state in slot(s) ${t.unboundSlots.join(', ')}`);
  for (const r of t.stateResults) lines.push(`state     ${r.slot} ${r.stateId} ${r.digest} (${formatBytes(r.bytes)})`);
  if (t.traceId) lines.push(`trace     ${t.traceId}`);
  return lines.join('\n');
}

/**
 * The exit code `vyr run` ends with: the task's own exit code when it exited; 124 for a passed deadline; 130 when
 * cancelled; 125 when it failed without an exit code of its own (trap, memory limit, node restart).
 */
export function runExitCode(t: Task): number {
  switch (t.status) {
    case TaskStatus.SUCCEEDED:
      return t.exitCode ?? 0;
    case TaskStatus.DEADLINE_EXCEEDED:
      return ExitCode.DEADLINE_EXCEEDED;
    case TaskStatus.CANCELLED:
      return ExitCode.CANCELLED;
    default:
      return t.exitCode !== undefined && t.exitCode !== 0 ? t.exitCode : ExitCode.TASK_FAILED;
  }
}

/** Parses `SLOT=ID[:ro|:rw]`. */
export function parseStateFlag(value: string): StateBinding {
  const m = /^([^=\s]+)=([A-Za-z0-9_-]+)(?::(ro|rw))?$/.exec(value);
  if (!m) {
    throw new CliError(
      'INVALID_ARGUMENT',
      `--state ${JSON.stringify(value)} is not SLOT=ID[:ro] (e.g. data=st_…:ro)`,
      ExitCode.USAGE,
    );
  }
  const access = m[3] === 'ro' ? Access.RO : m[3] === 'rw' ? Access.RW : Access.UNSPECIFIED;
  return create(StateBindingSchema, { slot: m[1] as string, stateId: m[2] as string, access });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface RunFlags extends NodeFlags {
  env: string[];
  stdin?: string;
  deadline?: string;
  memory?: string;
  state: string[];
  idempotencyKey?: string;
  receipt?: string;
  ref?: string;
  bundle?: string;
}

/** Writes a chunk and waits while `out` is full, so a slow reader of our stdout slows the task, not our memory. */
async function write(out: NodeJS.WritableStream, chunk: Uint8Array): Promise<void> {
  if (!out.write(chunk)) await once(out, 'drain');
}

// Connect codes of a call that broke without an answer from the node (no ErrorInfo): the connection is gone.
const LOST_CODES = new Set(['aborted', 'unavailable', 'internal', 'unknown', 'canceled']);

/** The error for a watch that broke off: the node went away mid-task (exit 69), or a plain mapped error. */
function nodeLost(cause: unknown, url: string, task: Task): unknown {
  const e = describeCallError(cause);
  const answered = e.errorCode !== e.connectCode.toUpperCase();
  if (answered || !LOST_CODES.has(e.connectCode)) return cause;
  return new CliError(
    'NODE_LOST',
    `lost the node at ${url} while task ${task.id} was ${STATUS_NAMES[task.status] ?? 'running'} (${e.connectCode}: ${e.message}); the node stopped or the network failed — once it is back, \`vyr task get ${task.id}\` tells how the task ended`,
    ExitCode.UNAVAILABLE,
    { cause },
  );
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

/** `vyr run`, `vyr cancel`, `vyr task get`. */
export function registerRunCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  withNodeOptions(
    program
      .command('run')
      .description('run an artifact on a node: import it if it is a path, stream its output, exit with its exit code')
      .argument('<artifact>', 'artifact directory or .tar, or the digest of an imported artifact')
      .argument('[args...]', 'arguments for the task (after --)')
      .option('--env <K=V>', 'environment value for a key the artifact declares; repeatable', collect, [])
      .option('--stdin <file>', "file to give the task on stdin; - reads this process's stdin")
      .option('--deadline <duration>', 'stop the task after this long (e.g. 5s, 2m)')
      .option('--memory <size>', 'linear memory limit (e.g. 64MiB)')
      .option('--state <SLOT=ID[:ro]>', 'bind a state instance to a declared slot; repeatable', collect, [])
      .option('--idempotency-key <key>', 'retrying with the same key returns the same task instead of running again')
      .option('--ref <name|digest>', 'which artifact of a layout holding several: a tag (ref name) or sha256:DIGEST')
      .option('--bundle <file>', 'detached bundle to send on import (default: ARTIFACT.sigstore.json when present)')
      .option('--receipt <file>', "write the task's signed execution receipt here once it ends (docs/receipts.md)"),
  ).action(async (target: string, args: string[], flags: RunFlags) =>
    withNode(ctx, flags, async ({ client, url }) => {
      const json = output().json;
      const env: Record<string, string> = {};
      for (const kv of flags.env) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new CliError('INVALID_ARGUMENT', `--env ${JSON.stringify(kv)} is not K=V`, ExitCode.USAGE);
        env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      const deadlineMs = flags.deadline ? parseDuration(flags.deadline, '--deadline') : 0;
      const memoryBytes = flags.memory ? parseSize(flags.memory, '--memory') : 0;
      const bindings = flags.state.map(parseStateFlag);
      let stdin: Uint8Array = new Uint8Array();
      if (flags.stdin === '-') stdin = await readAll(ctx.stdin);
      else if (flags.stdin !== undefined) stdin = await readInputFile(ctx, flags.stdin, '--stdin');

      let digest = target;
      let localPath: string | undefined;
      if (!DIGEST_RE.test(target)) {
        if (target.startsWith('sha256:')) {
          throw new CliError(
            'INVALID_ARGUMENT',
            `${target} is not a digest: expected sha256:<64 lowercase hex>`,
            ExitCode.INVALID_INPUT,
          );
        }
        // The digest is known locally; upload only when the node does not have the artifact yet.
        localPath = resolve(ctx.cwd, target);
        if (isContainerImageReference(target) && !existsSync(localPath)) {
          throw new CliError(
            'CONTAINER_IMAGE',
            `${target} looks like a container image reference: container images are not an execution path in VYR MVO; build the workload as a WASI command (Wasm), then \`vyr pack\` and \`vyr sign\` it and run the artifact`,
            ExitCode.INVALID_INPUT,
          );
        }
        digest = (await readArtifact(localPath, readOptions(choiceOf(ctx, flags)))).digest;
      }

      // SIGINT/SIGTERM: cancel the task on the node (its CANCELLED status then ends the watch), exit 130. Before
      // the task exists, an upload is abandoned; a submit in flight completes and its task is cancelled at once.
      const interrupt = new AbortController();
      let interrupted: string | undefined;
      let taskId: string | undefined;
      let cancelled: Promise<void> | undefined;
      const cancel = (id: string): Promise<void> =>
        client.cancelTask({ taskId: id }, { timeoutMs: 10_000 }).then(
          () => undefined,
          (err: unknown) => {
            ctx.stderr.write(`vyr: could not cancel task ${id}: ${describeCallError(err).message}\n`);
            interrupt.abort();
          },
        );
      const stopHandling = ctx.onSignal?.((signal) => {
        interrupted = signal;
        if (taskId === undefined) {
          ctx.stderr.write(`vyr: ${signal}: stopping\n`);
          interrupt.abort();
        } else {
          ctx.stderr.write(`vyr: ${signal}: cancelling task ${taskId}\n`);
          cancelled = cancel(taskId);
        }
      });
      try {
        // Our own trace context, so the task's trace and this invocation share a trace id.
        const traceparent = `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
        const submit = () =>
          client.submitTask({
            artifactDigest: digest,
            args,
            env,
            stdin,
            deadlineMs: BigInt(deadlineMs),
            memoryBytes: BigInt(memoryBytes),
            bindings,
            idempotencyKey: flags.idempotencyKey ?? '',
            traceparent,
            // We watch the task at once: the node keeps all of its output for us and paces the guest to our reading.
            holdOutput: true,
          });
        let submitted: Awaited<ReturnType<typeof submit>>;
        try {
          submitted = await submit();
        } catch (err) {
          const e = describeCallError(err);
          if (localPath === undefined || e.errorCode !== 'NOT_FOUND' || e.domain !== 'artifact') throw err;
          await uploadArtifact(ctx, client, localPath, {
            quiet: json,
            signal: interrupt.signal,
            ...choiceOf(ctx, flags),
          });
          submitted = await submit();
        }
        let task = submitted.task as Task;
        taskId = task.id;
        if (interrupted !== undefined) {
          ctx.stderr.write(`vyr: ${interrupted}: cancelling task ${task.id}\n`);
          cancelled = cancel(task.id);
        }
        if (json) {
          // A task waiting for state: scripts need its id now, to bind state to it.
          if (task.status === TaskStatus.PENDING && task.unboundSlots.length > 0) {
            emit(ctx, output(), { event: 'accepted', task: taskJson(task) }, '');
          }
        } else {
          ctx.stderr.write(`vyr: task ${task.id}\n`);
        }

        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let droppedSeen = 0n;
        let receiptJson = '';
        let announcedPending = false;
        // On a terminal, a task that takes a while before its first output (the first run of an artifact prepares
        // it: seconds for a big component) shows its status and elapsed time on one redrawn stderr line, cleared as
        // soon as the task writes anything. Never in --json, never into a pipe.
        const status = json ? undefined : ttyProgress(ctx, 'vyr');
        const watchStarted = Date.now();
        let ticker: NodeJS.Timeout | undefined;
        if (status !== undefined) {
          ticker = setInterval(() => {
            const seconds = Math.round((Date.now() - watchStarted) / 1000);
            // PENDING with every slot bound is the node verifying and preparing (transpiling) the artifact.
            const doing =
              task.status === TaskStatus.PENDING && task.unboundSlots.length === 0
                ? 'preparing'
                : (STATUS_NAMES[task.status]?.toLowerCase() ?? 'waiting');
            status.update(`task ${task.id} ${doing} for ${seconds} s`);
          }, 1000);
          ticker.unref();
        }
        const quietStatus = (): void => {
          if (ticker !== undefined) clearInterval(ticker);
          ticker = undefined;
          status?.done();
        };
        try {
          const watch = { taskId: task.id, includeReceipt: flags.receipt !== undefined };
          for await (const ev of client.watchTask(watch, { signal: interrupt.signal })) {
            if (ev.receiptJson) receiptJson = ev.receiptJson;
            const e = ev.event;
            if (e.case === 'task') {
              task = e.value;
              if (!json && !announcedPending && task.status === TaskStatus.PENDING && task.unboundSlots.length > 0) {
                announcedPending = true;
                ctx.stderr.write(
                  `vyr: task ${task.id} waits for state in slot(s) ${task.unboundSlots.join(', ')}: bind with \`vyr state bind ID ${task.id} --slot NAME\`\n`,
                );
              }
            } else if (e.case === 'stdout') {
              quietStatus();
              if (json) out.push(Buffer.from(e.value));
              else await write(ctx.stdout, e.value);
            } else if (e.case === 'stderr') {
              quietStatus();
              if (json) err.push(Buffer.from(e.value));
              else await write(ctx.stderr, e.value);
            } else if (e.case === 'dropped') {
              droppedSeen += e.value;
              if (!json) ctx.stderr.write(`vyr: warning: ${e.value} byte(s) of output lost here\n`);
            }
          }
        } catch (cause) {
          if (interrupted === undefined) throw nodeLost(cause, url, task);
        } finally {
          quietStatus();
        }
        if (interrupted !== undefined) await cancelled;
        if (!isTerminal(task.status)) {
          try {
            task = (await client.getTask({ taskId: task.id }, { timeoutMs: 10_000 })).task as Task;
          } catch (cause) {
            if (interrupted === undefined) throw nodeLost(cause, url, task);
          }
        }
        if (flags.receipt !== undefined && isTerminal(task.status)) {
          // The watch's last message carries it; a watch that broke off after the end asks once more.
          if (!receiptJson)
            receiptJson = (await client.getTaskReceipt({ taskId: task.id }, { timeoutMs: 10_000 })).receiptJson;
          await writeReceipt(ctx, flags.receipt, receiptJson);
          if (!json) ctx.stderr.write(`vyr: receipt written to ${flags.receipt}\n`);
        }
        // What this invocation missed: the node marks every gap in our stream with a `dropped` event. (The task's
        // droppedOutputBytes sums the gaps of all its watchers, e.g. of an earlier `vyr run` of the same task.)
        const lost = droppedSeen;
        if (json) {
          emit(
            ctx,
            output(),
            {
              task: taskJson(task),
              lostOutputBytes: Number(lost),
              ...(flags.receipt !== undefined && receiptJson ? { receipt: flags.receipt } : {}),
              stdout: Buffer.concat(out).toString('utf8'),
              stderr: Buffer.concat(err).toString('utf8'),
            },
            '',
          );
        } else {
          for (const r of task.stateResults)
            ctx.stderr.write(`vyr: state ${r.slot} ${r.stateId} ${r.digest} (${formatBytes(r.bytes)})\n`);
          if (
            task.status !== TaskStatus.SUCCEEDED &&
            !(task.status === TaskStatus.FAILED && task.reason === 'EXIT_CODE')
          ) {
            ctx.stderr.write(
              `vyr: task ${task.id} ${STATUS_NAMES[task.status]}${task.reason ? ` (${task.reason})` : ''}${task.message ? `: ${task.message}` : ''}\n`,
            );
          }
        }
        if (lost > 0n) {
          ctx.stderr.write(
            `vyr: warning: the node dropped ${lost} byte(s) of task ${task.id}'s output (this reader was too slow or attached late); the output above is incomplete\n`,
          );
        }
        const code = interrupted !== undefined ? ExitCode.CANCELLED : runExitCode(task);
        ctx.setExitCode(code === 0 && lost > 0n ? ExitCode.OUTPUT_LOST : code);
      } finally {
        stopHandling?.();
      }
    }),
  );

  withNodeOptions(program.command('cancel').description('cancel a task').argument('<task>', 'task id')).action(
    async (taskId: string, flags: NodeFlags) =>
      withNode(ctx, flags, async ({ client }) => {
        const { task } = await client.cancelTask({ taskId });
        const t = task as Task;
        emit(ctx, output(), { task: taskJson(t) }, `${t.id} ${STATUS_NAMES[t.status]}`);
      }),
  );

  const taskGroup = program.command('task').description('inspect tasks');
  withNodeOptions(
    taskGroup.command('get').description("show a task's status and result").argument('<task>', 'task id'),
  ).action(async (taskId: string, flags: NodeFlags) =>
    withNode(ctx, flags, async ({ client }) => {
      const { task } = await client.getTask({ taskId });
      emit(ctx, output(), { task: taskJson(task as Task) }, describeTask(task as Task));
    }),
  );
}
