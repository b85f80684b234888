/**
 * Runs every benchmark of the repo, one after another (they share two cores; running them together would
 * measure each other), and keeps each one's raw output in `bench/results/<name>.txt` with the machine it ran
 * on. `make bench` calls this after a build. Pass names to run a subset: `node bench/run.ts runtime state`.
 */
import { spawn } from 'node:child_process';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const resultsDir = join(here, 'results');
const wanted = new Set(process.argv.slice(2));
const files = (await readdir(here))
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.size === 0 || wanted.has(basename(f, '.bench.ts')))
  .sort();

function machine(): string {
  return [
    `date        ${new Date().toISOString()}`,
    `node        ${process.version}`,
    `cpus        ${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}`,
    `memory      ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `load (1m)   ${loadavg()[0]?.toFixed(2)} at start`,
  ].join('\n');
}

await mkdir(resultsDir, { recursive: true });
let failed = 0;
for (const file of files) {
  const name = basename(file, '.bench.ts');
  process.stdout.write(`\n== bench ${name}\n`);
  const header = machine();
  const started = Date.now();
  const output: Buffer[] = [];
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', join(here, file)], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d: Buffer) => {
      output.push(d);
      process.stdout.write(d);
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    child.on('exit', resolve);
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (code !== 0) failed++;
  await writeFile(
    join(resultsDir, `${name}.txt`),
    `${header}\nduration    ${seconds} s, exit ${code}\n\n${Buffer.concat(output).toString('utf8')}`,
  );
}
process.stdout.write(`\n${files.length - failed} benchmark(s) done, ${failed} failed; raw results in bench/results/\n`);
process.exitCode = failed > 0 ? 1 : 0;
