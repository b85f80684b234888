import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { create } from '@bufbuild/protobuf';
import type { NodeClient } from '@vyr/api/client';
import { exportArtifactTar } from '@vyr/artifact';
import { type Artifact, type ImportArtifactRequest, ImportArtifactRequestSchema } from '@vyr/proto';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes, table } from '../format.js';
import { PROGRESS_MIN_BYTES, ttyProgress } from '../progress.js';
import { type NodeFlags, withNode, withNodeOptions } from './node-client.js';

/** Chunk size of an upload. */
const CHUNK_BYTES = 256 * 1024;

/** Result of {@link uploadArtifact}. */
export interface UploadResult {
  artifact: Artifact;
  alreadyPresent: boolean;
}

/** Which artifact of a layout to upload, and which detached bundles to send with it. */
export interface ArtifactChoice {
  /** `--ref`: a tag (`org.opencontainers.image.ref.name`) or `sha256:DIGEST`; default the layout's one artifact. */
  ref?: string;
  /** `--bundle`: detached bundle files; default `ARTIFACT.sigstore.json` beside the artifact when present. */
  bundlePaths?: string[];
}

/** The `@vyr/artifact` read options for a choice made on the command line. */
export function readOptions(choice: ArtifactChoice): { ref?: string; bundlePaths?: string[] } {
  return {
    ...(choice.ref === undefined ? {} : { ref: choice.ref }),
    ...(choice.bundlePaths === undefined ? {} : { bundlePaths: choice.bundlePaths }),
  };
}

/**
 * Uploads an artifact (an OCI layout directory or a `.tar` of one, written by VYR or any OCI tool, e.g. skopeo)
 * with ImportArtifact. The artifact is read and re-hashed here first, then re-encoded as the layout VYR writes
 * (same manifest digest, one signature referrer per bundle found in the layout or beside it) into a temp file,
 * which is streamed in 256 KiB chunks. Reports progress on stderr for big uploads unless `quiet`; `signal`
 * abandons the upload.
 */
export async function uploadArtifact(
  ctx: CliContext,
  client: NodeClient,
  path: string,
  options: { quiet?: boolean; signal?: AbortSignal } & ArtifactChoice = {},
): Promise<UploadResult> {
  const abs = resolve(ctx.cwd, path);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(abs);
  } catch {
    throw new CliError('NOT_FOUND', `artifact ${path} does not exist`, ExitCode.NOT_FOUND);
  }
  let tarPath = abs;
  let scratch: string | undefined;
  try {
    if (info.isDirectory()) {
      const entries = await readdir(abs);
      if (!entries.includes('oci-layout') || !entries.includes('index.json')) {
        throw new CliError(
          'MALFORMED_LAYOUT',
          `${path} is not an OCI image layout (no oci-layout or index.json); pack it with \`vyr pack\``,
          ExitCode.INVALID_INPUT,
        );
      }
    } else if (!info.isFile()) {
      throw new CliError(
        'INVALID_ARGUMENT',
        `artifact ${path} is neither a directory nor a file`,
        ExitCode.INVALID_INPUT,
      );
    }
    const { tar } = await exportArtifactTar(abs, readOptions(options));
    scratch = await mkdtemp(join(tmpdir(), 'vyr-import-'));
    tarPath = join(scratch, 'artifact.tar');
    await writeFile(tarPath, tar, { mode: 0o600 });
    const size = (await stat(tarPath)).size;
    const showProgress = !options.quiet && size >= PROGRESS_MIN_BYTES;
    const tty = (ctx.stderr as { isTTY?: boolean }).isTTY === true ? ttyProgress(ctx, 'import') : undefined;
    async function* requests(): AsyncGenerator<ImportArtifactRequest> {
      yield create(ImportArtifactRequestSchema, { part: { case: 'header', value: { sizeBytes: BigInt(size) } } });
      let sent = 0;
      let lastTenth = 0;
      for await (const chunk of createReadStream(tarPath, { highWaterMark: CHUNK_BYTES })) {
        yield create(ImportArtifactRequestSchema, { part: { case: 'chunk', value: chunk as Buffer } });
        sent += (chunk as Buffer).byteLength;
        const tenth = Math.floor((sent / size) * 10);
        if (showProgress && tenth > lastTenth) {
          lastTenth = tenth;
          // A terminal gets one line redrawn in place; a pipe or log file one line per 10 %.
          if (tty) tty.update(`${tenth * 10}% (${formatBytes(sent)} of ${formatBytes(size)})`);
          else ctx.stderr.write(`import: ${tenth * 10}% (${formatBytes(sent)} of ${formatBytes(size)})\n`);
        }
      }
      tty?.done();
    }
    const res = await client.importArtifact(requests(), options.signal ? { signal: options.signal } : {});
    if (!res.artifact) throw new CliError('INTERNAL', 'the node answered ImportArtifact without an artifact');
    return { artifact: res.artifact, alreadyPresent: res.alreadyPresent };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/** The {@link ArtifactChoice} of `--ref` / `--bundle` flags (a bundle path relative to the working directory). */
export function choiceOf(ctx: CliContext, flags: { ref?: string; bundle?: string }): ArtifactChoice {
  return {
    ...(flags.ref === undefined ? {} : { ref: flags.ref }),
    ...(flags.bundle === undefined ? {} : { bundlePaths: [resolve(ctx.cwd, flags.bundle)] }),
  };
}

function artifactJson(a: Artifact): Record<string, unknown> {
  return {
    digest: a.digest,
    name: a.name,
    version: a.version,
    sizeBytes: Number(a.sizeBytes),
    signerKeyIds: a.signerKeyIds,
    stateSlots: a.stateSlots,
    envKeys: a.envKeys,
  };
}

/** `vyr import` and `vyr artifacts ls`. */
export function registerArtifactsCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  withNodeOptions(
    program
      .command('import')
      .description(
        'upload an artifact (OCI layout directory or .tar) to a node, which verifies it against its trust set',
      )
      .argument('<artifact>', 'artifact directory or .tar')
      .option('--ref <name|digest>', 'which artifact of a layout holding several: a tag (ref name) or sha256:DIGEST')
      .option('--bundle <file>', 'detached bundle to send (default: ARTIFACT.sigstore.json when present)'),
  ).action(async (path: string, flags: NodeFlags & { ref?: string; bundle?: string }) =>
    withNode(ctx, flags, async ({ client }) => {
      const { artifact, alreadyPresent } = await uploadArtifact(ctx, client, path, {
        quiet: output().json,
        ...choiceOf(ctx, flags),
      });
      emit(
        ctx,
        output(),
        { artifact: artifactJson(artifact), alreadyPresent },
        `${artifact.digest}  ${artifact.name}@${artifact.version}${alreadyPresent ? '  (already present)' : '  imported'}`,
      );
    }),
  );

  const group = program.command('artifacts').description("artifacts in a node's store");
  withNodeOptions(group.command('ls').description('list the artifacts a node has imported')).action(
    async (flags: NodeFlags) =>
      withNode(ctx, flags, async ({ client }) => {
        const { artifacts } = await client.listArtifacts({});
        emit(
          ctx,
          output(),
          { artifacts: artifacts.map(artifactJson) },
          artifacts.length === 0
            ? 'no artifacts; import one with `vyr import ARTIFACT`'
            : table(
                ['DIGEST', 'NAME', 'VERSION', 'SIZE', 'SIGNED BY', 'STATE SLOTS'],
                artifacts.map((a) => [
                  a.digest.slice(0, 19),
                  a.name,
                  a.version,
                  formatBytes(a.sizeBytes),
                  a.signerKeyIds.map((k) => k.slice(0, 12)).join(',') || '-',
                  a.stateSlots.join(',') || '-',
                ]),
              ),
        );
      }),
  );
}
