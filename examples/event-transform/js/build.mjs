#!/usr/bin/env node
// Builds ../event-transform-js.wasm (a WASI 0.2 command component) from event-transform.js with componentize-js:
// SpiderMonkey (StarlingMonkey) compiled to Wasm, the source pre-initialised into its heap by wizer.
//
// Usage: node js/build.mjs            rebuild event-transform-js.wasm in place
//        node js/build.mjs --check    rebuild into a temp file and compare with the committed one (see below)
//        node js/build.mjs --out FILE build to FILE
//
// Reproducibility: componentize-js works in `$TMPDIR/<12 hex of sha256(Math.random())>/` and that path ends up in
// the output (wizer's arguments and the initializer's script name are in the snapshot). This script pins it: the
// source is passed as text (so no path of this checkout is embedded), TMPDIR is a fixed directory, and Math.random
// returns a constant while componentize runs. What `--check` finds is reported as it is: "reproduces byte for
// byte", or the byte count that differs (then the committed file is still checked by behaviour, in
// test/js-vs-c.test.ts, which compares it with the C build on the same inputs).
//
// The engine's own WASI features: `http` and `fetch-event` are left out (no network), and so are `random` and
// `clocks` (the program needs neither); `stdio` stays, so an uncaught error still reaches stderr.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
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
console.log(`built ${out} (${component.length} bytes, sha256 ${sha(component).slice(0, 16)}…, componentize-js ${version}, ${took} s)`);
if (check) {
  const old = await readFile(committed);
  await rm(WORK_ROOT, { recursive: true, force: true });
  if (Buffer.compare(old, component) === 0) {
    console.log('event-transform-js.wasm reproduces byte for byte');
  } else {
    let differing = Math.abs(old.length - component.length);
    for (let i = 0; i < Math.min(old.length, component.length); i++) if (old[i] !== component[i]) differing++;
    console.error(
      `build.mjs: event-transform-js.wasm does not reproduce byte for byte (${differing} bytes differ; sizes ` +
        `${old.length} and ${component.length}): its behaviour is checked by test/js-vs-c.test.ts instead`,
    );
    process.exit(1);
  }
}
