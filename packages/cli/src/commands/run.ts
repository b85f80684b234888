import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import { describeCallError } from '@vyr/api/client';
import { readArtifact } from '@vyr/artifact';
import { Access, type StateBinding, StateBindingSchema, type Task, TaskStatus } from '@vyr/proto';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { uploadArtifact } from './artifacts.js';
import { formatBytes, type NodeFlags, parseDuration, parseSize, withNode, withNodeOptions } from './node-client.js';

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
      .option('--idempotency-key <key>', 'retrying with the same key returns the same task instead of running again'),
  ).action(async (target: string, args: string[], flags: RunFlags) =>
    withNode(ctx, flags, async ({ client }) => {
      const json = output().json;
      const env: Record<string, string> = {};
      for (const kv of flags.env) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new CliError('INVALID_ARGUMENT', `--env ${JSON.stringify(kv)} is not K=V`, ExitCode.USAGE);
        env[kv.slice(0, i)] = kv.slice(i + 1);
      }
      let stdin: Uint8Array = new Uint8Array();
      if (flags.stdin === '-') stdin = await readAll(ctx.stdin);
      else if (flags.stdin !== undefined) {
        try {
          stdin = await readFile(resolve(ctx.cwd, flags.stdin));
        } catch (err) {
          throw new CliError(
            'NOT_FOUND',
            `cannot read --stdin ${flags.stdin}: ${(err as Error).message}`,
            ExitCode.NOT_FOUND,
          );
        }
      }
      const deadlineMs = flags.deadline ? parseDuration(flags.deadline, '--deadline') : 0;
      const memoryBytes = flags.memory ? parseSize(flags.memory, '--memory') : 0;
      const bindings = flags.state.map(parseStateFlag);

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
        digest = (await readArtifact(localPath)).digest;
      }
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
        });
      let submitted: Awaited<ReturnType<typeof submit>>;
      try {
        submitted = await submit();
      } catch (err) {
        const e = describeCallError(err);
        if (localPath === undefined || e.errorCode !== 'NOT_FOUND' || e.domain !== 'artifact') throw err;
        await uploadArtifact(ctx, client, localPath, { quiet: json });
        submitted = await submit();
      }
      let task = submitted.task as Task;
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let announcedPending = false;
      for await (const ev of client.watchTask({ taskId: task.id })) {
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
          if (json) out.push(Buffer.from(e.value));
          else ctx.stdout.write(e.value);
        } else if (e.case === 'stderr') {
          if (json) err.push(Buffer.from(e.value));
          else ctx.stderr.write(e.value);
        }
      }
      if (!isTerminal(task.status)) task = (await client.getTask({ taskId: task.id })).task as Task;
      if (json) {
        emit(
          ctx,
          output(),
          {
            task: taskJson(task),
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
      ctx.setExitCode(runExitCode(task));
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
