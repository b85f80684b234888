#!/usr/bin/env node
// Builds dist/vyr-linux-<arch>: ONE executable file, the `vyr` command for machines without Node.js, made with
// Node.js single executable applications (SEA, https://nodejs.org/api/single-executable-applications.html):
//
//   1. the SEA preparation blob: main script apps/cli/scripts/sea/main.cjs plus one asset, `vyr.tgz` — the npm
//      package `make release` builds (apps/cli/scripts/release.mjs), so both distributions carry the same code;
//   2. a copy of the Node.js binary running this script, with the blob injected by postject (the sentinel fuse
//      is Node's own `NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2`).
//
// At run time the executable unpacks the package once into a per-user cache directory and runs it with itself as
// the Node.js runtime (see sea/main.cjs), so worker threads, native addons and Wasm assets work as installed.
//
// usage: node apps/cli/scripts/sea.mjs TARBALL [OUT]   (OUT default: dist/vyr-<os>-<arch> beside TARBALL)
//        POSTJECT=path/to/postject overrides the postject found in .toolchain/postject (make sea installs it).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const tarball = process.argv[2] && resolve(process.argv[2]);
if (!tarball || !existsSync(tarball)) {
  process.stderr.write('usage: node apps/cli/scripts/sea.mjs dist/vyr-<version>.tgz [OUT] (make sea builds both)\n');
  process.exit(2);
}
const arch = process.arch;
const out = resolve(process.argv[3] ?? join(dirname(tarball), `vyr-${process.platform}-${arch}`));
const postject = process.env.POSTJECT ?? join(root, '.toolchain/postject/node_modules/.bin/postject');
if (!existsSync(postject)) {
  process.stderr.write(`sea: postject not found at ${postject}; run 'make sea' (installs it) or set POSTJECT\n`);
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'vyr-sea-'));
try {
  const blob = join(work, 'sea-prep.blob');
  const config = join(work, 'sea-config.json');
  const digestFile = join(work, 'vyr.tgz.sha256');
  writeFileSync(digestFile, `${createHash('sha256').update(readFileSync(tarball)).digest('hex')}\n`);
  writeFileSync(
    config,
    JSON.stringify({
      main: join(here, 'sea', 'main.cjs'),
      output: blob,
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: false,
      assets: { 'vyr.tgz': tarball, 'vyr.tgz.sha256': digestFile },
    }),
  );
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(out, { force: true });
  copyFileSync(process.execPath, out);
  chmodSync(out, 0o755);
  execFileSync(
    postject,
    [out, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  process.stderr.write(`sea: wrote ${out} (${(statSync(out).size / 1024 / 1024).toFixed(1)} MiB)\n`);
  process.stdout.write(`${out}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
