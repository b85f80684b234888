import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  inspectArtifact,
  isArtifactError,
  isContainerImageReference,
  loadTrustPolicy,
  packArtifact,
  readArtifact,
  signArtifact,
  verifyArtifact,
  writeKeyPair,
} from '@vyr/artifact';
import type { Command } from 'commander';
import { type CliContext, emit, type OutputOptions } from '../context.js';
import { CliError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../format.js';
import { PROGRESS_MIN_BYTES, ttyProgress } from '../progress.js';

function sourceDateEpoch(ctx: CliContext): number | undefined {
  const raw = ctx.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) {
    throw new CliError(
      'INVALID_ARGUMENT',
      `SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01, got ${JSON.stringify(raw)}`,
      ExitCode.INVALID_INPUT,
    );
  }
  return Number(raw);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Registers `vyr key generate`, `vyr pack`, `vyr sign`, `vyr verify` and `vyr inspect`: the artifact cycle, all
 * local and offline.
 */
export function registerArtifactCommands(program: Command, ctx: CliContext, output: () => OutputOptions): void {
  const at = (path: string): string => resolve(ctx.cwd, path);

  const key = program.command('key').description('signing keys (ECDSA P-256)');
  key
    .command('generate')
    .description('create DIR/vyr.key (PKCS#8 PEM, mode 0600) and DIR/vyr.pub (SPKI PEM)')
    .requiredOption('--out <dir>', 'directory to write the key pair to')
    .option('--force', 'replace an existing key pair', false)
    .action(async (opts: { out: string; force: boolean }) => {
      const written = await writeKeyPair(at(opts.out), { force: opts.force });
      emit(
        ctx,
        output(),
        { privateKey: written.privateKeyPath, publicKey: written.publicKeyPath, keyId: written.keyId },
        `private key ${written.privateKeyPath} (keep it secret; mode 0600)\n` +
          `public key  ${written.publicKeyPath} (give it to nodes: --trust)\n` +
          `key id      ${written.keyId}`,
      );
    });

  program
    .command('pack')
    .description('pack a WASI P2 command component or a WASI P1 module into a Wasm OCI artifact; prints its digest')
    .argument('<input>', 'the .wasm file')
    .requiredOption('--out <artifact>', 'artifact to write: a directory (OCI image layout), or a .tar file')
    .option('--manifest <file>', 'VYR declarations (vyr.json): name, version, env, state, limits')
    .option(
      '--force',
      'replace an OCI layout or .tar at --out that is not one VYR artifact (never a store or a non-layout directory)',
      false,
    )
    .action(async (input: string, opts: { out: string; manifest?: string; force: boolean }) => {
      // An image reference (`nginx:1.27`) is passed as typed so the refusal names it, unless such a file exists.
      const inputPath = isContainerImageReference(input) && !existsSync(at(input)) ? input : at(input);
      const progress = ttyProgress(ctx, 'pack');
      const result = await packArtifact(inputPath, at(opts.out), {
        ...(opts.manifest === undefined ? {} : { manifest: at(opts.manifest) }),
        ...sourceDateEpochOption(ctx),
        force: opts.force,
        onProgress: (step, bytes) => {
          // Only big inputs take long enough to be worth a line: a JS component (MBs), not a C hello.
          if (bytes < PROGRESS_MIN_BYTES) return;
          const what = { read: 'reading', prepare: 'checking and adapting', write: 'hashing and writing' }[step];
          progress.update(`${what} ${formatBytes(bytes)}`);
        },
      }).finally(() => progress.done());
      emit(
        ctx,
        output(),
        {
          digest: result.digest,
          path: result.path,
          name: result.manifest.name,
          version: result.manifest.version,
          source: result.source,
          world: result.component.target,
          componentBytes: result.componentBytes,
        },
        result.digest,
      );
      if (!output().json) {
        ctx.stderr.write(
          `packed ${result.manifest.name}@${result.manifest.version} (${result.source === 'wasip2' ? 'wasip2 component' : 'wasip1 module, adapted'}, ${formatBytes(result.componentBytes)}) into ${opts.out}\n`,
        );
      }
    });

  program
    .command('sign')
    .description('sign an artifact (Sigstore bundle v0.3, stored in the layout and as ARTIFACT.sigstore.json)')
    .argument('<artifact>', 'the artifact (directory or .tar)')
    .requiredOption('--key <file>', 'private key (vyr.key)')
    .action(async (artifact: string, opts: { key: string }) => {
      const result = await signArtifact(at(artifact), { path: at(opts.key) }, sourceDateEpochOption(ctx));
      emit(
        ctx,
        output(),
        {
          digest: result.digest,
          keyId: result.keyId,
          bundle: result.detachedPath,
          bundleDigest: result.bundleDigest,
        },
        `signed ${result.digest} with key ${result.keyId}\nbundle ${result.detachedPath}`,
      );
    });

  program
    .command('verify')
    .description('verify an artifact offline: every blob digest, the Sigstore bundle, and the trust set')
    .argument('<artifact>', 'the artifact (directory or .tar)')
    .option('--trust <file>', 'trusted public key (vyr.pub); repeat for several', collect, [] as string[])
    .option('--bundle <file>', 'detached bundle to check (default: ARTIFACT.sigstore.json when present)')
    .option('--allow-unsigned', 'developer flag: accept an artifact with no signature at all', false)
    .option('--ref <name|digest>', 'which artifact of a layout holding several: a tag (ref name) or sha256:DIGEST')
    .action(
      async (artifact: string, opts: { trust: string[]; bundle?: string; allowUnsigned: boolean; ref?: string }) => {
        // Default deny would refuse every artifact; say what is missing rather than blame the signer.
        if (opts.trust.length === 0 && !opts.allowUnsigned) {
          throw new CliError(
            'NO_TRUSTED_KEYS',
            "no trusted keys were given: pass the signer's public key with --trust vyr.pub (repeat for several); verify trusts nobody by default",
            ExitCode.USAGE,
          );
        }
        const policy = await loadTrustPolicy(opts.trust.map(at), { allowUnsigned: opts.allowUnsigned });
        const path = at(artifact);
        const loaded = await readArtifact(path, {
          ...(opts.bundle === undefined ? {} : { bundlePaths: [at(opts.bundle)] }),
          ...(opts.ref === undefined ? {} : { ref: opts.ref }),
        });
        let result: Awaited<ReturnType<typeof verifyArtifact>>;
        try {
          result = await verifyArtifact(loaded, policy);
        } catch (err) {
          if (opts.trust.length === 0 && isArtifactError(err, 'UNTRUSTED_KEY')) {
            throw new CliError(
              'NO_TRUSTED_KEYS',
              `${loaded.digest} is signed, but no trusted keys were given (--allow-unsigned admits only artifacts with no signature): pass the signer's public key with --trust`,
              ExitCode.USAGE,
              { cause: err },
            );
          }
          throw err;
        }
        const who = result.signed
          ? `signed by trusted key ${result.trustedKeyIds.join(', ')}`
          : 'UNSIGNED, accepted only because --allow-unsigned was given';
        emit(
          ctx,
          output(),
          { ...result, name: loaded.manifest.name, version: loaded.manifest.version, verified: true },
          `verified ${result.digest} ${loaded.manifest.name}@${loaded.manifest.version}: ${who}`,
        );
      },
    );

  program
    .command('inspect')
    .description('show an artifact: digest, sizes, os, component world, state slots, env keys, limits, signatures')
    .argument('<artifact>', 'the artifact (directory or .tar)')
    .action(async (artifact: string) => {
      const info = await inspectArtifact(at(artifact));
      const lines = [
        `digest     ${info.digest}`,
        `name       ${info.name}@${info.version}`,
        `os         ${info.os}`,
        `world      ${info.component.world}`,
        `exports    ${info.component.exports.join(', ')}`,
        `imports    ${info.component.imports.join(', ')}`,
        `size       ${formatBytes(info.sizes.totalBytes)} (component ${formatBytes(info.sizes.componentBytes)}, manifest ${info.sizes.manifestBytes} B, config ${info.sizes.configBytes} B, declarations ${info.sizes.declarationsBytes} B)`,
        ...(info.created === undefined ? [] : [`created    ${info.created}`]),
        `env        ${info.env.length === 0 ? '(none)' : info.env.join(', ')}`,
        `state      ${info.state.length === 0 ? '(none)' : ''}`.trimEnd(),
        ...info.state.map(
          (s) =>
            `  ${s.name} at ${s.mount} (${s.access}${s.quotaBytes === undefined ? '' : `, quota ${formatBytes(s.quotaBytes)}`})`,
        ),
        `limits     ${
          info.limits.memoryBytes === undefined && info.limits.deadlineMs === undefined
            ? '(node defaults)'
            : [
                info.limits.memoryBytes === undefined ? undefined : `memory ${formatBytes(info.limits.memoryBytes)}`,
                info.limits.deadlineMs === undefined ? undefined : `deadline ${info.limits.deadlineMs} ms`,
              ]
                .filter(Boolean)
                .join(', ')
        }`,
        `signatures ${info.signatures.length === 0 ? '(none)' : ''}`.trimEnd(),
        ...info.signatures.map(
          (s) => `  key ${s.keyId ?? '?'} (${s.location}${s.error ? `; unreadable: ${s.error}` : ''})`,
        ),
      ];
      emit(ctx, output(), info, lines.join('\n'));
    });
}

function sourceDateEpochOption(ctx: CliContext): { sourceDateEpoch?: number } {
  const epoch = sourceDateEpoch(ctx);
  return epoch === undefined ? {} : { sourceDateEpoch: epoch };
}
