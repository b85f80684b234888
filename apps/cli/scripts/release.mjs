#!/usr/bin/env node
// Builds dist/vyr-<version>.tgz: ONE npm package holding the `vyr` command (CLI, node daemon, collector) with every
// runtime dependency bundled (npm `bundleDependencies`), so `npm install -g ./vyr-<version>.tgz` needs Node >= 24
// and nothing else, and works offline (docs/cli.md "Install").
//
// How: `pnpm deploy --prod` of apps/cli with a hoisted (npm-style, symlink-free) node_modules, then everything the
// installed program never loads is left out. The one large cut is jco's toolchain: the node uses jco only for
// `transpile`, `componentNew`, `componentWit` and the preview1 adapter (packages/runtime/src/prepare.ts,
// packages/artifact/src/wasm.ts), which come from jco's `dist/api.js` -> `@bytecodealliance/jco-transpile` (+ its
// vendored Wasm, `oxc-minify`) and `@bytecodealliance/preview2-shim`. componentize-js, TypeScript, rolldown, binaryen
// (only run as a subprocess for `opt`/asm.js output, which VYR never asks for) and the rest of jco's CLI
// dependencies are dropped, and the kept package.json files no longer list them, so npm never looks for them. The
// code that runs is byte for byte the code of the workspace install: behaviour is identical.
//
// Native parts (`oxc-minify`'s and `jco-node-fs`'s bindings) are those of the build machine: the tarball is for
// the OS and CPU it was built on (linux-x64 here).
//
// usage: node apps/cli/scripts/release.mjs [OUT_DIR]   (default dist/; needs `pnpm build` first, pnpm and npm on PATH)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const out = resolve(process.argv[2] ?? join(root, 'dist'));
const app = JSON.parse(readFileSync(join(root, 'apps/cli/package.json'), 'utf8'));
const version = app.version;

/** Dependencies a kept package declares but the installed program never loads (see the header). */
const NOT_LOADED = {
  '@bytecodealliance/jco': [
    '@bytecodealliance/componentize-js',
    '@bytecodealliance/componentize-js-0-19-3',
    '@bytecodealliance/jco-std',
    'binaryen',
    'commander',
    'componentize-qjs',
    'mkdirp',
    'regexpu-core',
    'rolldown',
    'typescript',
    'typescript-compiler-api',
    'unenv',
  ],
  '@bytecodealliance/jco-transpile': ['binaryen', '@bytecodealliance/preview3-shim'],
};

function log(message) {
  process.stderr.write(`release: ${message}\n`);
}

for (const pkg of ['apps/cli', 'apps/node', 'packages/cli', 'packages/runtime', 'packages/artifact', 'proto']) {
  if (!existsSync(join(root, pkg, 'dist'))) {
    log(`${pkg} is not built; run 'make build' (or 'pnpm build') first`);
    process.exit(1);
  }
}

const stage = mkdtempSync(join(tmpdir(), 'vyr-release-'));
const pkgDir = join(stage, 'vyr');
try {
  log(`deploying apps/cli with a hoisted node_modules into ${pkgDir}`);
  execFileSync('pnpm', ['--filter', 'vyr', 'deploy', '--prod', '--config.node-linker=hoisted', pkgDir], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const modules = join(pkgDir, 'node_modules');

  /** Where `dep` resolves from package directory `from` (Node's lookup, up to the top-level node_modules). */
  const resolveFrom = (from, dep) => {
    for (let dir = from; dir.startsWith(modules); dir = dirname(dir)) {
      if (existsSync(join(dir, 'node_modules', dep, 'package.json'))) return join(dir, 'node_modules', dep);
      if (dir === modules) break;
    }
    return existsSync(join(modules, dep, 'package.json')) ? join(modules, dep) : undefined;
  };

  // The closure of what is loaded: follow dependencies (and installed optional ones) from the app's own, the way
  // Node resolves them (a package nested in another's node_modules first). Top-level names reached are kept.
  const rootManifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const keep = new Set();
  const seen = new Set();
  const queue = Object.keys(rootManifest.dependencies ?? {}).map((dep) => join(modules, dep));
  while (queue.length > 0) {
    const dir = queue.pop();
    if (seen.has(dir) || !existsSync(join(dir, 'package.json'))) continue;
    seen.add(dir);
    const name = dir.slice(modules.length + 1);
    if (!name.includes('/node_modules/')) keep.add(name);
    const m = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const skip = new Set(NOT_LOADED[m.name] ?? []);
    for (const dep of skip) rmSync(join(dir, 'node_modules', dep), { recursive: true, force: true });
    for (const dep of [...Object.keys(m.dependencies ?? {}), ...Object.keys(m.optionalDependencies ?? {})]) {
      if (skip.has(dep)) continue;
      const found = resolveFrom(dir, dep);
      if (found !== undefined) queue.push(found);
    }
  }

  // Remove everything else from the top level of node_modules (nested node_modules belong to kept packages).
  let removed = 0;
  for (const entry of readdirSync(modules)) {
    if (entry === '.bin' || entry.startsWith('.')) {
      rmSync(join(modules, entry), { recursive: true, force: true });
      continue;
    }
    const names = entry.startsWith('@') ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry];
    for (const name of names) {
      if (!keep.has(name)) {
        rmSync(join(modules, name), { recursive: true, force: true });
        removed++;
      }
    }
    if (entry.startsWith('@') && readdirSync(join(modules, entry)).length === 0)
      rmSync(join(modules, entry), { recursive: true });
  }
  log(`kept ${keep.size} packages, left out ${removed} the installed program never loads`);

  // npm reads every bundled package.json: give it exact versions (no workspace:/catalog: specs) and no entries for
  // what was left out.
  const exact = (from, deps, skip) => {
    if (deps === undefined) return undefined;
    const outDeps = {};
    for (const [dep, spec] of Object.entries(deps)) {
      const found = skip.has(dep) ? undefined : resolveFrom(from, dep);
      if (found === undefined) continue;
      const installed = JSON.parse(readFileSync(join(found, 'package.json'), 'utf8')).version;
      outDeps[dep] = /^(workspace:|catalog:|file:|@vyr\/)/.test(spec) ? installed : spec;
    }
    return outDeps;
  };
  for (const dir of seen) {
    const file = join(dir, 'package.json');
    const m = JSON.parse(readFileSync(file, 'utf8'));
    const skip = new Set(NOT_LOADED[m.name] ?? []);
    m.dependencies = exact(dir, m.dependencies, skip);
    if (m.optionalDependencies) m.optionalDependencies = exact(dir, m.optionalDependencies, skip);
    delete m.devDependencies;
    delete m.scripts;
    writeFileSync(file, `${JSON.stringify(m, null, 2)}\n`);
  }

  const manifest = {
    name: 'vyr',
    version,
    description: app.description,
    license: app.license,
    type: 'module',
    bin: { vyr: './bin/vyr.js' },
    files: ['bin', 'dist'],
    engines: { node: '>=24' },
    os: [process.platform],
    cpu: [process.arch],
    dependencies: exact(pkgDir, rootManifest.dependencies, new Set()),
  };
  manifest.bundleDependencies = Object.keys(manifest.dependencies);
  writeFileSync(join(pkgDir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // The bin checks the Node.js version before anything is linked: dist/main.js imports node:sqlite, and an older
  // Node.js found first on PATH would otherwise die with ERR_UNKNOWN_BUILTIN_MODULE instead of saying what to do.
  execFileSync('mkdir', ['-p', join(pkgDir, 'bin')]);
  writeFileSync(
    join(pkgDir, 'bin', 'vyr.js'),
    `#!/usr/bin/env node
// The vyr command (npm package built by apps/cli/scripts/release.mjs).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    \`vyr: NODE_TOO_OLD: vyr needs Node.js 24 or newer, but \${process.execPath} is \${process.version}; put a Node.js >= 24 first on PATH (or use the single executable vyr-linux-\${process.arch}, which needs no Node.js)\\n\`,
  );
  process.exit(127);
}
await import('../dist/main.js');
`,
    { mode: 0o755 },
  );
  for (const file of ['pnpm-lock.yaml', 'pnpm-workspace.yaml']) rmSync(join(pkgDir, file), { force: true });

  execFileSync('mkdir', ['-p', out]);
  // An npm package is a gzipped tar of `package/`. `npm pack` is not used: npm 11's packlist walk of bundled
  // dependencies dies here ("Exit handler never called") on the OpenTelemetry packages. GNU tar with fixed owner,
  // mode and mtime writes what `npm install` reads: package.json, dist/ and the bundled node_modules/. Hard links
  // (pnpm's store links identical files) are written as files: npm's extraction drops link entries.
  log(`packing ${manifest.name}@${version}`);
  const packed = `${manifest.name}-${version}.tgz`;
  execFileSync(
    'tar',
    [
      '--sort=name',
      '--hard-dereference',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '--mode=u+rwX,go+rX,go-w',
      '--transform=s,^vyr,package,',
      '--use-compress-program=gzip -n',
      '-cf',
      join(out, packed),
      '-C',
      stage,
      'vyr',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const file = join(out, packed);
  log(`wrote ${file} (${(statSync(file).size / 1024 / 1024).toFixed(1)} MiB)`);
  process.stdout.write(`${file}\n`);
} finally {
  if (process.env.VYR_RELEASE_KEEP_STAGE) log(`stage kept in ${stage}`);
  else rmSync(stage, { recursive: true, force: true });
}
