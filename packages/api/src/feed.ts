/**
 * A broadcast feed with a bounded buffer per subscriber: the publisher (a span processor, a metric reader) never
 * waits for a subscriber, and a subscriber that reads too slowly loses the oldest items it has not read, counted
 * in `dropped` (ARCHITECTURE.md §5 "a slow subscriber never slows tasks").
 */

/** Options of {@link createFeed}. */
export interface FeedOptions {
  /** Items kept for replay to new subscribers; default 4,096. `0` keeps none. */
  retainItems?: number;
  /** Default per-subscriber buffer of unread live items; default 1,024. */
  bufferItems?: number;
}

/** Options of {@link Feed.subscribe}. */
export interface SubscribeOptions<T> {
  /** Deliver retained items first. Default true. */
  replay?: boolean;
  /** Keep delivering live items; when false the subscription ends after the replay. Default true. */
  follow?: boolean;
  /** Unread live items held for this subscriber before the oldest is dropped; default the feed's `bufferItems`. */
  bufferItems?: number;
  /**
   * Keeps, narrows or rejects an item for this subscriber; runs at publish time, so items the subscriber does not
   * want never take buffer space. Return `undefined` to skip.
   */
  filter?: (item: T) => T | undefined;
  /** Ends the subscription. */
  signal?: AbortSignal;
}

/** One delivered item and how many this subscriber has missed so far (cumulative). */
export interface FeedDelivery<T> {
  item: T;
  dropped: number;
}

/** A broadcast feed; see {@link createFeed}. */
export interface Feed<T> {
  /** Hands `item` to every subscriber without waiting; never throws. */
  publish(item: T): void;
  /** Subscribes; iterate the result. */
  subscribe(options?: SubscribeOptions<T>): AsyncIterable<FeedDelivery<T>>;
  /** Current subscribers. */
  readonly subscriberCount: number;
  /** Items dropped for slow subscribers since the feed was created, over all subscribers. */
  readonly droppedTotal: number;
  /** Items published since the feed was created. */
  readonly publishedTotal: number;
}

interface Subscriber<T> {
  buffer: T[];
  head: number;
  cap: number;
  dropped: number;
  filter?: (item: T) => T | undefined;
  wake?: () => void;
}

/** Creates a {@link Feed}. */
export function createFeed<T>(options: FeedOptions = {}): Feed<T> {
  const retainItems = options.retainItems ?? 4096;
  const defaultBuffer = options.bufferItems ?? 1024;
  const retained: T[] = [];
  const subscribers = new Set<Subscriber<T>>();
  let droppedTotal = 0;
  let publishedTotal = 0;

  function publish(item: T): void {
    publishedTotal++;
    if (retainItems > 0) {
      retained.push(item);
      if (retained.length > retainItems) retained.splice(0, retained.length - retainItems);
    }
    for (const sub of subscribers) {
      let value: T | undefined = item;
      if (sub.filter) {
        try {
          value = sub.filter(item);
        } catch {
          value = undefined;
        }
      }
      if (value === undefined) continue;
      sub.buffer.push(value);
      if (sub.buffer.length - sub.head > sub.cap) {
        sub.head++;
        sub.dropped++;
        droppedTotal++;
      }
      // Compact now and then so the array does not grow without bound.
      if (sub.head > 1024 && sub.head * 2 > sub.buffer.length) {
        sub.buffer = sub.buffer.slice(sub.head);
        sub.head = 0;
      }
      const wake = sub.wake;
      sub.wake = undefined;
      wake?.();
    }
  }

  function subscribe(opts: SubscribeOptions<T> = {}): AsyncIterable<FeedDelivery<T>> {
    return {
      [Symbol.asyncIterator]: () => iterate(opts)[Symbol.asyncIterator](),
    };
  }

  async function* iterate(opts: SubscribeOptions<T>): AsyncGenerator<FeedDelivery<T>> {
    const follow = opts.follow ?? true;
    const filter = opts.filter;
    // Snapshot and register in the same synchronous step: no item is both replayed and delivered live, none lost.
    const replay = (opts.replay ?? true) ? retained.slice() : [];
    const sub: Subscriber<T> = {
      buffer: [],
      head: 0,
      cap: Math.max(1, opts.bufferItems ?? defaultBuffer),
      dropped: 0,
      filter,
    };
    if (follow) subscribers.add(sub);
    const signal = opts.signal;
    const onAbort = (): void => {
      const wake = sub.wake;
      sub.wake = undefined;
      wake?.();
    };
    signal?.addEventListener('abort', onAbort);
    try {
      for (const raw of replay) {
        if (signal?.aborted) return;
        const item = filter ? filter(raw) : raw;
        if (item !== undefined) yield { item, dropped: sub.dropped };
      }
      if (!follow) return;
      for (;;) {
        if (signal?.aborted) return;
        if (sub.head < sub.buffer.length) {
          const item = sub.buffer[sub.head] as T;
          sub.buffer[sub.head] = undefined as T;
          sub.head++;
          if (sub.head === sub.buffer.length) {
            sub.buffer = [];
            sub.head = 0;
          }
          yield { item, dropped: sub.dropped };
          continue;
        }
        await new Promise<void>((resolve) => {
          sub.wake = resolve;
        });
      }
    } finally {
      subscribers.delete(sub);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  return {
    publish,
    subscribe,
    get subscriberCount() {
      return subscribers.size;
    },
    get droppedTotal() {
      return droppedTotal;
    },
    get publishedTotal() {
      return publishedTotal;
    },
  };
}
