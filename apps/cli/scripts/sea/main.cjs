'use strict';
// The injected main script of the single executable `vyr-linux-<arch>` (Node.js SEA; apps/cli/scripts/sea.mjs).
//
// The executable embeds, as the SEA asset `vyr.tgz`, the very npm package `make release` builds (the CLI, node and
// collector with their dependencies and Wasm assets: jco's transpiler, the preview1 adapter, native bindings). A
// SEA main script can `require` builtins only, while VYR is an ES module graph that starts worker threads from
// files and loads native addons, so on first use the package is unpacked once into a per-user cache directory
// keyed by its SHA-256 (recorded at build time, checked when unpacking) (`$XDG_CACHE_HOME/vyr/sea-<hash>`, else `~/.cache/vyr/…`, else the temp dir; override with
// `VYR_SEA_CACHE`), atomically (a temp directory, then rename), and then imported from there with this very
// executable as the Node.js runtime. Later starts only check that the directory is there.
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const sea = require('node:sea');
const { gunzipSync } = require('node:zlib');

const asset = () => Buffer.from(sea.getRawAsset('vyr.tgz'));
// Computed when the executable was built (sea.mjs), so a start does not hash the package again.
const hash = sea.getAsset('vyr.tgz.sha256', 'utf8').trim().slice(0, 16);

function cacheRoot() {
  if (process.env.VYR_SEA_CACHE) return process.env.VYR_SEA_CACHE;
  if (process.env.XDG_CACHE_HOME) return path.join(process.env.XDG_CACHE_HOME, 'vyr');
  const home = os.homedir();
  return home ? path.join(home, '.cache', 'vyr') : path.join(os.tmpdir(), `vyr-${process.getuid?.() ?? 'user'}`);
}

/** Unpacks an npm package tarball (gzip, ustar/GNU/pax entries under `package/`) into `dir`. */
function unpack(tgz, dir) {
  const tar = gunzipSync(tgz);
  let pos = 0;
  let longName;
  let paxPath;
  const text = (start, length) => {
    const raw = tar.subarray(start, start + length);
    const nul = raw.indexOf(0);
    return raw.subarray(0, nul === -1 ? raw.length : nul).toString('utf8');
  };
  while (pos + 512 <= tar.length) {
    const header = pos;
    if (tar.subarray(header, header + 512).every((b) => b === 0)) break;
    const size = Number.parseInt(text(header + 124, 12).trim() || '0', 8);
    const type = String.fromCharCode(tar[header + 156] || 0x30);
    const data = tar.subarray(header + 512, header + 512 + size);
    pos = header + 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = data.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    if (type === 'x') {
      const m = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxPath = m ? m[1] : undefined;
      continue;
    }
    if (type === 'g') continue;
    const prefix = text(header + 345, 155);
    let name = longName ?? paxPath ?? (prefix ? `${prefix}/${text(header, 100)}` : text(header, 100));
    longName = undefined;
    paxPath = undefined;
    name = name.replace(/^package\/?/, '');
    if (name === '' || name.split('/').includes('..')) continue;
    const target = path.join(dir, name);
    const mode = Number.parseInt(text(header + 100, 8).trim() || '644', 8) & 0o777;
    if (type === '5') fs.mkdirSync(target, { recursive: true });
    else if (type === '2') {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.symlinkSync(text(header + 157, 100), target);
    } else if (type === '0' || type === '\0' || type === '7') {
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, data, { mode });
    }
  }
}

/** Written beside the unpacked package: a file-based CommonJS module, which may import() the CLI's ES modules. */
const ENTRY = `'use strict';
// Written by the vyr single executable (apps/cli/scripts/sea/main.cjs). In a single executable, process.argv is
// [executable, executable, ...arguments], as dist/main.js expects.
const path = require('node:path');
const { pathToFileURL } = require('node:url');
import(pathToFileURL(path.join(__dirname, 'dist', 'main.js')).href).catch((err) => {
  process.stderr.write('vyr: INTERNAL: ' + (err && err.stack ? err.stack : String(err)) + '\\n');
  process.exit(70);
});
`;

function ensureUnpacked() {
  const root = cacheRoot();
  const dir = path.join(root, `sea-${hash}`);
  if (fs.existsSync(path.join(dir, '.complete'))) return dir;
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const temp = fs.mkdtempSync(path.join(root, `.unpack-${hash}-`));
  try {
    const tgz = asset();
    if (createHash('sha256').update(tgz).digest('hex').slice(0, 16) !== hash)
      throw new Error('vyr: the embedded package is damaged');
    unpack(tgz, temp);
    fs.writeFileSync(path.join(temp, 'sea-entry.cjs'), ENTRY);
    fs.writeFileSync(path.join(temp, '.complete'), '');
    try {
      fs.renameSync(temp, dir);
    } catch (err) {
      // Another vyr unpacked the same package first: use that one.
      if (!fs.existsSync(path.join(dir, '.complete'))) throw err;
    }
  } finally {
    fs.rmSync(temp, { recursive: true, force: true });
  }
  return dir;
}

const dir = ensureUnpacked();
// A file-based CommonJS module may import() ES modules; the injected main script may not.
require('node:module').createRequire(path.join(dir, 'package.json'))(path.join(dir, 'sea-entry.cjs'));
