import { expect } from 'vitest';
import { StateError } from '../src/index.js';

/** Asserts that `promise` rejects with a StateError of `code` (and a message matching `message`). */
export async function expectCode(promise: Promise<unknown>, code: string, message?: RegExp): Promise<StateError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected StateError ${code}`).toBeInstanceOf(StateError);
  expect((err as StateError).code).toBe(code);
  if (message) expect((err as StateError).message).toMatch(message);
  return err as StateError;
}

/** Asserts that `fn` throws a StateError of `code` synchronously. */
export function expectThrowsCode(fn: () => unknown, code: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected StateError ${code}`).toBeInstanceOf(StateError);
  expect((err as StateError).code).toBe(code);
}

/** Whether a promise has settled, without waiting for it. */
export async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  // Let every already-queued continuation run.
  await new Promise((r) => setImmediate(r));
  return done;
}
