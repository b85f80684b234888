import type { ExecutionPredicate } from './types.js';

/**
 * The parts of a receipt that describe the run itself: equal on every tier for the same artifact and inputs
 * (ARCHITECTURE.md §4 "Predictable"). Everything else (task, node, limits, time, state instance ids) may differ.
 */
export const RUN_FIELDS = [
  'artifact',
  'invocation.args',
  'invocation.env',
  'invocation.stdin',
  'outcome',
  'output.stdout',
  'output.stderr',
  'state',
] as const;

/**
 * The parts that say where and under which limits a run happened: they differ between nodes by design (a tier's
 * default memory limit and deadline apply unless the artifact or the request set them).
 */
export const CONTEXT_FIELDS = ['node.id', 'node.tier', 'node.keyId', 'task.id', 'limits'] as const;

/** One compared field: its value in each receipt (JSON text) and whether they are all equal. */
export interface ComparedField {
  field: string;
  equal: boolean;
  values: string[];
}

/** Result of {@link compareReceipts}. */
export interface ReceiptComparison {
  /** True when every {@link RUN_FIELDS} entry is equal across the receipts. */
  sameRun: boolean;
  run: ComparedField[];
  context: ComparedField[];
}

function pick(p: ExecutionPredicate, field: string): unknown {
  if (field === 'state') {
    // Instance ids are node-local; what must agree is each slot's access and content digests.
    return p.state.map((s) => ({ slot: s.slot, access: s.access, before: s.before, after: s.after }));
  }
  return field.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], p);
}

function compare(predicates: readonly ExecutionPredicate[], fields: readonly string[]): ComparedField[] {
  return fields.map((field) => {
    const values = predicates.map((p) => JSON.stringify(pick(p, field)) ?? 'undefined');
    return { field, equal: values.every((v) => v === values[0]), values };
  });
}

/**
 * Compares the predicates of several receipts (verify each first: comparing unverified receipts proves nothing):
 * which run fields agree, and where the runs happened. For the portability check: the same artifact and inputs on
 * a laptop, an edge and a cloud node must give `sameRun` with different `node.id`s.
 */
export function compareReceipts(predicates: readonly ExecutionPredicate[]): ReceiptComparison {
  const run = compare(predicates, RUN_FIELDS);
  return { sameRun: run.every((f) => f.equal), run, context: compare(predicates, CONTEXT_FIELDS) };
}
