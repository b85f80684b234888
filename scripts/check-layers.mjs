#!/usr/bin/env node
// Enforces the dependency direction of ARCHITECTURE.md §1: which workspace package may import which, no cycles,
// no deep imports into another package's files, and libraries that depend on `@opentelemetry/api` only.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Allowed workspace dependencies (runtime `dependencies`), straight from the layer diagram. */
const ALLOWED = {
  '@vyr/proto': [],
  '@vyr/telemetry': [],
  '@vyr/artifact': ['@vyr/telemetry'],
  '@vyr/state': ['@vyr/telemetry'],
  '@vyr/runtime': ['@vyr/telemetry', '@vyr/artifact', '@vyr/state'],
  '@vyr/api': ['@vyr/proto', '@vyr/telemetry', '@vyr/artifact', '@vyr/runtime', '@vyr/state'],
  '@vyr/collector': ['@vyr/proto', '@vyr/telemetry'],
  // Execution receipts: signed with the artifact layer's signer, state digests re-measured with the state kernel's.
  '@vyr/receipt': ['@vyr/artifact', '@vyr/state'],
  '@vyr/cli': ['@vyr/api', '@vyr/artifact', '@vyr/proto', '@vyr/receipt'],
  '@vyr/node': [
    '@vyr/api',
    '@vyr/artifact',
    '@vyr/runtime',
    '@vyr/state',
    '@vyr/telemetry',
    '@vyr/proto',
    '@vyr/receipt',
  ],
  // The `vyr` binary is the composition root: CLI commands, plus `vyr node …` and `vyr collector …`.
  vyr: ['@vyr/cli', '@vyr/node', '@vyr/collector'],
  '@vyr/testing': ['@vyr/proto'],
  '@vyr/bench': null, // bench -> everything
};
/** Libraries may use the OpenTelemetry API only; the SDK is wired by the apps. */
const SDK_FORBIDDEN_IN = new Set([
  '@vyr/telemetry',
  '@vyr/artifact',
  '@vyr/state',
  '@vyr/runtime',
  '@vyr/api',
  '@vyr/collector',
  '@vyr/receipt',
  '@vyr/cli',
]);

const root = new URL('..', import.meta.url).pathname;
const dirs = [
  'proto',
  'bench',
  ...['packages', 'apps'].flatMap((d) => readdirSync(join(root, d)).map((n) => `${d}/${n}`)),
];
const problems = [];
const graph = new Map();

function* sourceFiles(dir) {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (name === 'node_modules' || name === 'dist' || name === 'gen') continue;
    if (statSync(path).isDirectory()) yield* sourceFiles(path);
    else if (/\.(ts|mts|js|mjs)$/.test(name)) yield path;
  }
}

for (const dir of dirs) {
  const pkgPath = join(root, dir, 'package.json');
  if (!existsSync(pkgPath)) continue;
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
  if (!(pkg.name in ALLOWED)) {
    problems.push(`${dir}: package ${pkg.name} has no entry in the layer table of scripts/check-layers.mjs`);
    continue;
  }
  const deps = Object.keys(pkg.dependencies ?? {});
  const workspaceDeps = deps.filter((d) => d.startsWith('@vyr/') || d === 'vyr');
  graph.set(pkg.name, workspaceDeps);
  const allowed = ALLOWED[pkg.name];
  for (const dep of workspaceDeps) {
    if (allowed !== null && !allowed.includes(dep))
      problems.push(`${pkg.name} must not depend on ${dep} (ARCHITECTURE.md §1)`);
  }
  if (SDK_FORBIDDEN_IN.has(pkg.name)) {
    for (const dep of deps) {
      if (dep.startsWith('@opentelemetry/') && dep !== '@opentelemetry/api') {
        problems.push(`${pkg.name} is a library and must depend on @opentelemetry/api only, not ${dep}`);
      }
    }
  }
  // Source imports: only declared workspace packages, never deep paths into them.
  for (const file of sourceFiles(join(root, dir, 'src'))) {
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](@vyr\/[^'"]+|vyr(?:\/[^'"]*)?)['"]/g)) {
      const spec = match[1];
      const [scope, name, ...rest] = spec.split('/');
      const target = spec.startsWith('@vyr/') ? `${scope}/${name}` : 'vyr';
      const sub = spec.startsWith('@vyr/') ? rest.join('/') : spec.split('/').slice(1).join('/');
      const rel = file.slice(root.length);
      if (target === pkg.name) continue;
      if (!workspaceDeps.includes(target))
        problems.push(`${rel}: imports ${spec} but ${pkg.name} does not declare ${target}`);
      if (/^(src|dist)\b/.test(sub)) problems.push(`${rel}: deep import ${spec}; use the package's exports`);
    }
  }
}

// Cycle check over the workspace graph.
const state = new Map();
function visit(node, path) {
  if (state.get(node) === 'done') return;
  if (state.get(node) === 'active') {
    problems.push(`dependency cycle: ${[...path.slice(path.indexOf(node)), node].join(' -> ')}`);
    return;
  }
  state.set(node, 'active');
  for (const dep of graph.get(node) ?? []) visit(dep, [...path, node]);
  state.set(node, 'done');
}
for (const node of graph.keys()) visit(node, []);

if (problems.length > 0) {
  process.stderr.write(`layering check failed:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write(`layering check passed: ${graph.size} packages, no cycles\n`);
