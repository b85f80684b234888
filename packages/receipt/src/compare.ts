import type { ExecutionPredicate } from './types.js';

/**
 * The parts of a receipt that describe the run itself: equal on every tier for the same artifact and inputs
 * (ARCHITECTURE.md §4 "Predictable"). Everything else (task, node, time, state instance ids) differs by design.
 */
export const RUN_FIELDS = [
  'artifact',
  'invocation.args',
  'invocation.env',
  'invocation.stdin',
  'limits',
  'outcome',
  'output.stdout',
  'output.stderr',
  'state',
] as const;

/** The parts that name where and when a run happened. */
export const PLACE_FIELDS = ['node.id', 'node.tier', 'node.keyId', 'task.id'] as const;

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
  place: ComparedField[];
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
  return { sameRun: run.every((f) => f.equal), run, place: compare(predicates, PLACE_FIELDS) };
}
