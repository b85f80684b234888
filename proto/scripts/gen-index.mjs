#!/usr/bin/env node
// Writes src/index.ts (vyr.v1) and src/otlp.ts (OpenTelemetry) as named re-exports of the generated code, so
// the package keeps "named re-exports only" without hand-maintained lists. Run by `pnpm generate` after buf.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = process.argv[2] ?? new URL('..', import.meta.url).pathname;

function reexports(files) {
  let out = '';
  for (const file of files) {
    const text = readFileSync(join(root, 'src/gen', `${file}.ts`), 'utf8');
    const values = [...text.matchAll(/^export (?:const|function|enum) (\w+)/gm)].map((m) => m[1]);
    const types = [...text.matchAll(/^export type (\w+)/gm)].map((m) => m[1]).filter((t) => !values.includes(t));
    const items = [...values, ...types.map((t) => `type ${t}`)];
    out += `export {\n${items.map((i) => `  ${i},`).join('\n')}\n} from './gen/${file}.js';\n`;
  }
  return out;
}

writeFileSync(
  join(root, 'src/index.ts'),
  `// vyr.v1: the NodeService API (proto/vyr/v1/node.proto). OTLP types are on the \`@vyr/proto/otlp\` subpath.\n${reexports(['vyr/v1/node_pb'])}`,
);
const otel = [
  'common/v1/common_pb',
  'resource/v1/resource_pb',
  'trace/v1/trace_pb',
  'metrics/v1/metrics_pb',
  'logs/v1/logs_pb',
  'collector/trace/v1/trace_service_pb',
  'collector/metrics/v1/metrics_service_pb',
  'collector/logs/v1/logs_service_pb',
].map((f) => `opentelemetry/proto/${f}`);
writeFileSync(
  join(root, 'src/otlp.ts'),
  `// OpenTelemetry protocol messages generated from the official opentelemetry-proto files (proto/opentelemetry).\n${reexports(otel)}`,
);
