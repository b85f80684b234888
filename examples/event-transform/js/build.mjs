#!/usr/bin/env node
// Builds ../event-transform-js.wasm (a WASI 0.2 command component) from event-transform.js with componentize-js:
// SpiderMonkey (StarlingMonkey) compiled to Wasm, the source pre-initialised into its heap by wizer.
//
// Usage: node js/build.mjs            rebuild event-transform-js.wasm in place
//        node js/build.mjs --check    rebuild into a temp file and compare with the committed one (see below)
//        node js/build.mjs --out FILE build to FILE
//
// Reproducibility: componentize-js builds in `$TMPDIR/<12 hex of sha256(Math.random())>/`, and that path ends up in
// the output. This script pins it (the source is passed as text, so no path of the checkout is embedded; TMPDIR is
// a fixed directory; Math.random is constant while componentize runs), yet two builds still differ in about 3.6 MB
// of the 14 MB and in their size: the wizer snapshot of the engine's heap is not deterministic. So `--check` cannot
// compare bytes. It checks what can be checked instead: the committed component holds this exact source (the engine
// keeps it verbatim), and a fresh build and the committed one give identical stdout, stderr and state on generated
// input, run through VYR's runtime (test/js-vs-c.test.ts compares the committed one with the C build).
//
// The engine's own WASI features: `http` and `fetch-event` are left out (no network), and so are `random` and
// `clocks` (the program needs neither); `stdio` stays, so an uncaught error still reaches stderr.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
process.chdir(here); // componentize-js shortens paths under the cwd: keep that the same on every run
const example = dirname(here);
const committed = join(example, 'event-transform-js.wasm');
const WORLD = 'event-transform';
const DISABLED_FEATURES = ['http', 'fetch-event', 'random', 'clocks'];
/** Fixed work directory root (not a path of any checkout; the same on every machine). */
const WORK_ROOT = '/tmp/vyr-event-transform-js-build';

const args = process.argv.slice(2);
const check = args[0] === '--check';
const out = args[0] === '--out' ? args[1] : check ? join(WORK_ROOT, 'check.wasm') : committed;
if ((args[0] === '--out' && !args[1]) || (args.length > 0 && !check && args[0] !== '--out')) {
  console.error('usage: build.mjs [--check | --out FILE]');
  process.exit(64);
}

const componentizeJs = dirname(dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/componentize-js'))));
const version = JSON.parse(await readFile(join(componentizeJs, 'package.json'), 'utf8')).version;

// preview2-shim 0.26.1 no longer preopens `/` by default, and componentize-js runs its own check of the result
// through the shim in this process: preopen `/` before it loads (TOOLCHAIN.md).
const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem');
_setPreopens({ '/': '/' });

await rm(WORK_ROOT, { recursive: true, force: true });
await mkdir(WORK_ROOT, { recursive: true });
process.env.TMPDIR = WORK_ROOT;
const { componentize } = await import(pathToFileURL(join(componentizeJs, 'src', 'componentize.js')).href);
const started = Date.now();
const random = Math.random;
Math.random = () => 0.5; // the name of componentize-js's work directory
let component;
try {
  // The (source, options) form: the source goes into the work directory, so no path of this checkout is embedded.
  ({ component } = await componentize(await readFile(join(here, 'event-transform.js'), 'utf8'), {
    sourceName: 'event-transform.js',
    witPath: join(here, 'wit'),
    worldName: WORLD,
    disableFeatures: DISABLED_FEATURES,
  }));
} finally {
  Math.random = random;
}
await writeFile(out, component);
const sha = (b) => createHash('sha256').update(b).digest('hex');
const took = ((Date.now() - started) / 1000).toFixed(1);
console.log(
  `built ${out} (${component.length} bytes, sha256 ${sha(component).slice(0, 16)}…, componentize-js ${version}, ${took} s)`,
);
if (check) {
  const old = await readFile(committed);
  const source = await readFile(join(here, 'event-transform.js'));
  const fail = (why) => {
    console.error(`build.mjs: ${why} (run node js/build.mjs and commit event-transform-js.wasm)`);
    process.exit(1);
  };
  if (Buffer.compare(old, component) === 0) console.log('event-transform-js.wasm reproduces byte for byte');
  if (old.indexOf(source) < 0) fail('event-transform-js.wasm was not built from js/event-transform.js as it is now');
  const [a, b] = [await runOnGenerated(old), await runOnGenerated(component)];
  await rm(WORK_ROOT, { recursive: true, force: true });
  for (const key of Object.keys(a))
    if (a[key] !== b[key]) fail(`a fresh build differs from the committed one in ${key}`);
  console.log(
    `event-transform-js.wasm holds js/event-transform.js and behaves as a fresh build does (${a.summary.trim()})`,
  );
}

/** Runs a build on 200 kB of generated input (seed 1) through VYR's runtime: what it wrote, hashed. */
async function runOnGenerated(wasm) {
  const { createRuntime } = await import('@vyr/runtime');
  const { generateEvents } = await import('../generate.mjs');
  const digest = `sha256:${sha(wasm)}`;
  const artifact = { digest, manifest: { name: 'event-transform', env: [] }, component: wasm };
  const runtime = createRuntime({ artifacts: { load: async () => artifact }, cacheDir: join(WORK_ROOT, 'cache') });
  const agg = join(WORK_ROOT, `agg-${digest.slice(7, 19)}`);
  await mkdir(agg);
  try {
    const task = await runtime.submit({
      digest,
      stdin: Buffer.concat([...generateEvents({ seed: 1, bytes: 200_000 })]),
      mounts: [
        { guestPath: '/ref', hostPath: join(example, 'reference'), readOnly: true },
        { guestPath: '/agg', hostPath: agg },
      ],
    });
    const status = await runtime.wait(task.id);
    const { stdout, stderr } = runtime.output(task.id);
    const files = {};
    for (const name of (await readdir(agg, { recursive: true })).sort()) {
      const path = join(agg, name);
      if ((await stat(path)).isFile()) files[name] = sha(await readFile(path));
    }
    return {
      exit: `${status.state} ${status.exitCode}`,
      stdout: sha(stdout),
      stderr: sha(stderr),
      files: JSON.stringify(files),
      summary: Buffer.from(stderr).toString(),
    };
  } finally {
    await runtime.close();
  }
}
