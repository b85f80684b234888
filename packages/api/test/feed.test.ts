import { describe, expect, it } from 'vitest';
import { createFeed } from '../src/feed.js';

describe('telemetry feed: bounded per-subscriber buffers', () => {
  it('delivers retained items to a new subscriber, then live ones, in order', async () => {
    const feed = createFeed<number>({ retainItems: 3 });
    for (const n of [1, 2, 3, 4]) feed.publish(n);
    const abort = new AbortController();
    const got: number[] = [];
    const reading = (async () => {
      for await (const { item } of feed.subscribe({ signal: abort.signal })) {
        got.push(item);
        if (got.length === 5) abort.abort();
      }
    })();
    await new Promise((r) => setImmediate(r));
    feed.publish(5);
    feed.publish(6);
    await reading;
    expect(got).toEqual([2, 3, 4, 5, 6]);
    expect(feed.subscriberCount).toBe(0);
  });

  it('never blocks the publisher: a stalled subscriber loses the oldest items and is told how many', async () => {
    const feed = createFeed<number>({ retainItems: 0, bufferItems: 10 });
    const iterator = feed.subscribe({ bufferItems: 10 })[Symbol.asyncIterator]();
    const first = iterator.next(); // subscribes, then waits
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 10_000; i++) feed.publish(i); // synchronous: returns at once whatever the reader does
    const got = [(await first).value as { item: number; dropped: number }];
    for (let i = 0; i < 9; i++) got.push((await iterator.next()).value);
    // Only the newest 10 fit the buffer; the subscriber is told it missed the 9,990 before them.
    expect(got.map((r) => r.item)).toEqual([9990, 9991, 9992, 9993, 9994, 9995, 9996, 9997, 9998, 9999]);
    expect(got.every((r) => r.dropped === 9990)).toBe(true);
    expect(feed.droppedTotal).toBe(9990);
    feed.publish(10_000);
    expect((await iterator.next()).value).toEqual({ item: 10_000, dropped: 9990 });
    await iterator.return?.(undefined);
  });

  it('applies the filter at publish time, so unwanted items never cost a subscriber buffer space', async () => {
    const feed = createFeed<number>({ retainItems: 0 });
    const iterator = feed
      .subscribe({ bufferItems: 3, filter: (n) => (n % 1000 === 0 ? n : undefined) })
      [Symbol.asyncIterator]();
    const pending = iterator.next();
    await new Promise((r) => setImmediate(r));
    for (let i = 1; i <= 3000; i++) feed.publish(i);
    expect((await pending).value).toEqual({ item: 1000, dropped: 0 });
    expect((await iterator.next()).value).toEqual({ item: 2000, dropped: 0 });
    expect((await iterator.next()).value).toEqual({ item: 3000, dropped: 0 });
    await iterator.return?.(undefined);
  });

  it('ends after the replay when follow is false', async () => {
    const feed = createFeed<string>();
    feed.publish('a');
    feed.publish('b');
    const got: string[] = [];
    for await (const { item } of feed.subscribe({ follow: false })) got.push(item);
    expect(got).toEqual(['a', 'b']);
  });
});
