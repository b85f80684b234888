import { mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Access, type StateInstance, StateScope } from '@vyr/proto';
import type { Command } from 'commander';
import { create as createTar, extract as extractTar } from 'tar';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes, table } from '../format.js';
import { STATE_CLASSES, stateClassError } from '../non-goals.js';
import { parseDuration, parseSize } from '../parse.js';
import { type NodeFlags, withNode, withNodeOptions } from './node-client.js';
import { describeTask, taskJson } from './run.js';

/** The state instance as `--json` prints it. */
export function stateJson(s: StateInstance): Record<string, unknown> {
  return {
    id: s.id,
    ...(s.name ? { name: s.name } : {}),
    scope: s.scope === StateScope.TASK ? 'task' : 'named',
    stateClass: s.stateClass,
    bytes: Number(s.bytes),
    entries: Number(s.entries),
    quotaBytes: Number(s.quotaBytes),
    quotaEntries: Number(s.quotaEntries),
    createdAtUnixMs: Number(s.createdAtUnixMs),
    ...(s.expiresAtUnixMs > 0n ? { expiresAtUnixMs: Number(s.expiresAtUnixMs) } : {}),
    ...(s.taskId ? { taskId: s.taskId } : {}),
    ...(s.lastDigest ? { lastDigest: s.lastDigest } : {}),
    boundTaskIds: s.boundTaskIds,
  };
}

/** Reads a seed: a `.tar` file as is, a directory tarred (deterministic order, portable headers). */
async function seedBytes(ctx: CliContext, from: string): Promise<Uint8Array> {
  const abs = resolve(ctx.cwd, from);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(abs);
  } catch {
    throw new CliError('NOT_FOUND', `--from ${from} does not exist`, ExitCode.NOT_FOUND);
  }
  if (info.isFile()) return readFile(abs);
  if (!info.isDirectory())
    throw new CliError(
      'INVALID_ARGUMENT',
      `--from ${from} is neither a directory nor a tar file`,
      ExitCode.INVALID_INPUT,
    );
  const scratch = await mkdtemp(join(tmpdir(), 'vyr-seed-'));
  try {
    const file = join(scratch, 'seed.tar');
    const entries = (await readdir(abs)).sort();
    if (entries.length === 0) return new Uint8Array();
    await createTar({ cwd: abs, file, portable: true }, entries);
    return await readFile(file);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

interface CreateFlags extends NodeFlags {
  from?: string;
  quota?: string;
  entries?: string;
  ttl?: string;
  name?: string;
}

/** `vyr state create|bind|ls|export|rm`. */
export function registerStateCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  const group = program.command('state').description('ephemeral state instances on a node');

  withNodeOptions(
    group
      .command('create')
      .description('create a named state instance, optionally seeded from a directory or tar; prints its id')
      .option('--from <dir|tar>', 'seed content')
      .option('--quota <size>', "byte quota (e.g. 64MiB); default: the node's")
      .option('--entries <n>', "entry quota; default: the node's")
      .option('--ttl <duration>', "time to live (e.g. 1h); default: the node's")
      .option('--name <name>', 'unique name on the node')
      .option('--class <class>', 'state class: ephemeral, the only one of VYR MVO', 'ephemeral'),
  ).action(async (flags: CreateFlags & { class: string }) =>
    withNode(ctx, flags, async ({ client }) => {
      if (!STATE_CLASSES.includes(flags.class)) throw stateClassError(flags.class);
      const quotaBytes = flags.quota ? parseSize(flags.quota, '--quota') : 0;
      const ttlMs = flags.ttl ? parseDuration(flags.ttl, '--ttl') : 0;
      let quotaEntries = 0;
      if (flags.entries !== undefined) {
        if (!/^[1-9]\d*$/.test(flags.entries))
          throw new CliError(
            'INVALID_ARGUMENT',
            `--entries ${JSON.stringify(flags.entries)} is not a positive integer`,
            ExitCode.USAGE,
          );
        quotaEntries = Number(flags.entries);
      }
      const seedTar = flags.from ? await seedBytes(ctx, flags.from) : new Uint8Array();
      const { state } = await client.createState({
        scope: StateScope.NAMED,
        name: flags.name ?? '',
        ttlMs: BigInt(ttlMs),
        quotaBytes: BigInt(quotaBytes),
        quotaEntries: BigInt(quotaEntries),
        seedTar,
      });
      const s = state as StateInstance;
      emit(ctx, output(), { state: stateJson(s) }, s.id);
    }),
  );

  withNodeOptions(
    group
      .command('bind')
      .description('bind a state instance to a declared slot of a PENDING task')
      .argument('<id>', 'state instance id')
      .argument('<task>', 'task id')
      .requiredOption('--slot <name>', 'slot name the artifact declares')
      .option('--ro', 'read-only binding', false),
  ).action(async (stateId: string, taskId: string, flags: NodeFlags & { slot: string; ro: boolean }) =>
    withNode(ctx, flags, async ({ client }) => {
      const { task } = await client.bindState({
        stateId,
        taskId,
        slot: flags.slot,
        access: flags.ro ? Access.RO : Access.UNSPECIFIED,
      });
      if (!task) throw new CliError('INTERNAL', 'the node answered BindState without a task');
      emit(ctx, output(), { task: taskJson(task) }, describeTask(task));
    }),
  );

  withNodeOptions(group.command('ls').description('list state instances with their sizes')).action(
    async (flags: NodeFlags) =>
      withNode(ctx, flags, async ({ client }) => {
        const { states } = await client.listStates({});
        emit(
          ctx,
          output(),
          { states: states.map(stateJson) },
          states.length === 0
            ? 'no state instances; create one with `vyr state create`'
            : table(
                ['ID', 'NAME', 'SCOPE', 'SIZE', 'ENTRIES', 'QUOTA', 'EXPIRES', 'BOUND TO', 'DIGEST'],
                states.map((s) => [
                  s.id,
                  s.name || '-',
                  s.scope === StateScope.TASK ? `task ${s.taskId}` : 'named',
                  formatBytes(s.bytes),
                  String(s.entries),
                  formatBytes(s.quotaBytes),
                  s.expiresAtUnixMs > 0n ? new Date(Number(s.expiresAtUnixMs)).toISOString() : '-',
                  s.boundTaskIds.join(',') || '-',
                  s.lastDigest ? s.lastDigest.slice(0, 19) : '-',
                ]),
              ),
        );
      }),
  );

  withNodeOptions(
    group
      .command('export')
      .description('download a state instance: into a new directory, or as a .tar file when --out ends in .tar')
      .argument('<id>', 'state instance id')
      .requiredOption('--out <dir|file.tar>', 'destination'),
  ).action(async (stateId: string, flags: NodeFlags & { out: string }) =>
    withNode(ctx, flags, async ({ client }) => {
      const out = resolve(ctx.cwd, flags.out);
      const asTar = out.endsWith('.tar');
      // Check the destination before opening the stream, and abort the call on any local failure, so a refused
      // destination never leaves a half-read stream (and an open connection) behind.
      const abort = new AbortController();
      let bytes = 0;
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for await (const c of client.exportState({ stateId }, { signal: abort.signal })) {
          bytes += c.chunk.byteLength;
          yield c.chunk;
        }
      }
      const download = async (path: string): Promise<void> => {
        const file = await open(path, 'wx').catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'EEXIST') {
            throw new CliError('ALREADY_EXISTS', `${flags.out} exists; choose another --out`, ExitCode.ALREADY_EXISTS);
          }
          throw err;
        });
        try {
          for await (const chunk of chunks()) await file.write(chunk);
        } catch (err) {
          await rm(path, { force: true });
          throw err;
        } finally {
          abort.abort();
          await file.close();
        }
      };
      if (asTar) {
        await download(out);
      } else {
        const existing = await readdir(out).catch(() => undefined);
        if (existing && existing.length > 0) {
          throw new CliError(
            'ALREADY_EXISTS',
            `${flags.out} is not empty; export into a new directory`,
            ExitCode.ALREADY_EXISTS,
          );
        }
        // Download to a temp tar, then unpack: the archive is checked whole before anything lands in --out.
        const scratch = await mkdtemp(join(tmpdir(), 'vyr-export-'));
        try {
          const tarPath = join(scratch, 'state.tar');
          await download(tarPath);
          await mkdir(out, { recursive: true });
          await extractTar({ file: tarPath, cwd: out, strict: true });
        } finally {
          await rm(scratch, { recursive: true, force: true });
        }
      }
      emit(
        ctx,
        output(),
        { stateId, out, format: asTar ? 'tar' : 'dir', bytes },
        `exported ${stateId} to ${flags.out}`,
      );
    }),
  );

  withNodeOptions(
    group.command('rm').description('delete a state instance no task holds').argument('<id>', 'state instance id'),
  ).action(async (stateId: string, flags: NodeFlags) =>
    withNode(ctx, flags, async ({ client }) => {
      await client.deleteState({ stateId });
      emit(ctx, output(), { deleted: stateId }, `deleted ${stateId}`);
    }),
  );
}
