#!/usr/bin/env node
// Regenerates the protobuf code into a scratch copy and fails if it differs from what is committed.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const protoDir = join(root, 'proto');
const scratch = mkdtempSync(join(tmpdir(), 'vyr-gen-'));
try {
  cpSync(protoDir, scratch, { recursive: true, filter: (src) => !/node_modules|dist/.test(relative(protoDir, src)) });
  const buf = join(protoDir, 'node_modules', '.bin', 'buf');
  execFileSync(buf, ['generate'], {
    cwd: scratch,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, PATH: `${join(protoDir, 'node_modules', '.bin')}:${process.env.PATH}` },
  });
  execFileSync(buf, ['lint'], { cwd: scratch, stdio: ['ignore', 'inherit', 'inherit'] });
  execFileSync(process.execPath, [join(protoDir, 'scripts', 'gen-index.mjs'), scratch], { stdio: 'inherit' });
  const list = (dir) => {
    const out = [];
    const walk = (d) => {
      if (!existsSync(d)) return;
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        if (statSync(p).isDirectory()) walk(p);
        else out.push(relative(dir, p));
      }
    };
    walk(dir);
    return out.sort();
  };
  const committed = list(join(protoDir, 'src'));
  const fresh = list(join(scratch, 'src'));
  const drift = [];
  for (const f of new Set([...committed, ...fresh])) {
    const a = join(protoDir, 'src', f);
    const b = join(scratch, 'src', f);
    if (!existsSync(a) || !existsSync(b) || !readFileSync(a).equals(readFileSync(b))) drift.push(f);
  }
  if (drift.length > 0) {
    process.stderr.write(`generated code drift (run 'make generate' and commit):\n  ${drift.join('\n  ')}\n`);
    process.exit(1);
  }
  process.stdout.write(`generated code up to date: ${fresh.length} files, buf lint clean\n`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
