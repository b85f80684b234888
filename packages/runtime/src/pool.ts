import { Worker } from 'node:worker_threads';
import type { Logger } from '@vyr/telemetry';
import { RuntimeError } from './errors.js';
import type { RunRequest, WorkerMessage } from './protocol.js';

/** One pool worker: a thread that runs one task at a time. */
export interface PoolWorker {
  readonly id: number;
  readonly worker: Worker;
  /** True once the worker loaded its WASI host and can take a task. */
  ready: boolean;
  /** The task it runs now. */
  taskId?: string;
  /** Set when the pool terminates it on purpose (cancel, deadline, close, recycling). */
  retired: boolean;
  /** `jsKey`s of the component modules this worker has imported (see protocol.ts). */
  readonly loaded: Set<string>;
}

/** Callbacks from the pool to the runtime. */
export interface PoolEvents {
  /** A worker became ready or finished a task: the runtime may dispatch. */
  onIdle(): void;
  /** A message of the task the worker runs. */
  onMessage(worker: PoolWorker, message: WorkerMessage): void;
  /** A worker died on its own (not retired): `error` is what it threw, if anything. */
  onCrash(worker: PoolWorker, taskId: string | undefined, error: Error | undefined): void;
  /** Workers kept dying before they were ready; the pool stopped starting them (see {@link WorkerPool.failure}). */
  onFailed(error: RuntimeError): void;
}

/** Options of {@link WorkerPool}. */
export interface PoolOptions {
  size: number;
  logger: Logger;
  /** JS heap limit of a worker, MiB (guest linear memory is limited separately, per task). */
  maxOldGenerationSizeMb: number;
  /** Distinct component modules a worker may have loaded; beyond that it is replaced once idle. */
  maxLoadedComponents: number;
  /** Consecutive deaths of workers before they were ready after which the pool gives up. Default 5. */
  maxStartupFailures?: number;
  /** Delay before restarting a worker that died at startup, doubled after each further death, ms. Default 100. */
  startupBackoffMs?: number;
  /** Upper bound of that delay, ms. Default 5000. */
  maxStartupBackoffMs?: number;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

interface Waiter {
  resolve: () => void;
  reject: (err: RuntimeError) => void;
}

/**
 * A fixed-size pool of warm worker threads. Workers start with an empty environment (`env: {}`), so nothing of the
 * node's environment is reachable from a worker even by accident, and their stdout/stderr go to the logger, never
 * to the node's stdio.
 *
 * A worker that dies before it is ready is restarted after an exponential back-off; after `maxStartupFailures`
 * consecutive such deaths the pool stops trying and fails every `start()` waiter with `UNAVAILABLE` (a broken
 * install or a heap limit too small to load the WASI host would otherwise respawn threads forever). A later
 * `start()` tries again.
 */
export class WorkerPool {
  readonly #options: PoolOptions;
  readonly #events: PoolEvents;
  readonly #workers = new Set<PoolWorker>();
  readonly #waiters: Waiter[] = [];
  readonly #maxStartupFailures: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  #nextId = 1;
  #started = false;
  #closed = false;
  #startupFailures = 0;
  readonly #respawnTimers = new Set<NodeJS.Timeout>();
  #failure: RuntimeError | undefined;
  /** Workers replaced after cancel, deadline or crash. */
  replaced = 0;
  /** Workers replaced because they had loaded too many distinct components. */
  recycled = 0;

  constructor(options: PoolOptions, events: PoolEvents) {
    this.#options = options;
    this.#events = events;
    this.#maxStartupFailures = options.maxStartupFailures ?? 5;
    this.#backoffMs = options.startupBackoffMs ?? 100;
    this.#maxBackoffMs = options.maxStartupBackoffMs ?? 5000;
  }

  /** Set when the pool gave up starting workers; cleared by the next {@link start}. */
  get failure(): RuntimeError | undefined {
    return this.#failure;
  }

  /**
   * Spawns the workers (idempotent); resolves when all are ready.
   * @throws RuntimeError `UNAVAILABLE` when workers keep dying at startup.
   */
  start(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#failure) {
      // An explicit start after a failure is a retry.
      this.#failure = undefined;
      this.#startupFailures = 0;
      this.#fill();
    } else if (!this.#started) {
      this.#started = true;
      this.#fill();
    }
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#settleWaiters();
    });
  }

  #fill(): void {
    while (this.#workers.size + this.#respawnTimers.size < this.#options.size) this.#spawn();
  }

  #settleWaiters(): void {
    if (this.#waiters.length === 0) return;
    const failure = this.#failure;
    const allReady =
      this.#workers.size === this.#options.size &&
      this.#respawnTimers.size === 0 &&
      [...this.#workers].every((w) => w.ready);
    if (!failure && !this.#closed && !allReady) return;
    for (const w of this.#waiters.splice(0)) {
      if (failure) w.reject(failure);
      else w.resolve();
    }
  }

  /** An idle, ready worker, or undefined. */
  idle(): PoolWorker | undefined {
    if (!this.#started) this.start().catch(() => {});
    for (const w of this.#workers) if (w.ready && w.taskId === undefined && !w.retired) return w;
    return undefined;
  }

  /** Assigns `request` to `worker`. */
  run(worker: PoolWorker, request: RunRequest): void {
    worker.taskId = request.taskId;
    worker.loaded.add(request.jsKey);
    // Idle workers do not keep the process alive; a running task does.
    worker.worker.ref();
    worker.worker.postMessage(request);
  }

  /** Marks the worker free after its task reported `done`. */
  release(worker: PoolWorker): void {
    worker.taskId = undefined;
    worker.worker.unref();
    if (worker.loaded.size > this.#options.maxLoadedComponents) {
      // Loaded ES modules cannot be unloaded: a fresh thread bounds the memory they hold.
      this.recycled++;
      this.#retire(worker);
    }
    this.#events.onIdle();
  }

  /** Terminates a worker (the only way to stop a guest in a tight loop) and starts a replacement. */
  async replace(worker: PoolWorker): Promise<void> {
    if (worker.retired) return;
    this.replaced++;
    await this.#retire(worker);
  }

  async #retire(worker: PoolWorker): Promise<void> {
    if (worker.retired) return;
    worker.retired = true;
    this.#workers.delete(worker);
    if (!this.#closed && !this.#failure) this.#spawn();
    await worker.worker.terminate();
  }

  /** Counters. */
  counts(): { workers: number; idle: number } {
    let idle = 0;
    for (const w of this.#workers) if (w.ready && w.taskId === undefined) idle++;
    return { workers: this.#workers.size, idle };
  }

  /** Terminates every worker. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#respawnTimers) clearTimeout(t);
    this.#respawnTimers.clear();
    const all = [...this.#workers];
    this.#workers.clear();
    for (const w of all) w.retired = true;
    this.#settleWaiters();
    await Promise.all(all.map((w) => w.worker.terminate()));
  }

  #spawn(): void {
    const worker = new Worker(WORKER_URL, {
      env: {},
      argv: [],
      execArgv: [],
      stdin: false,
      stdout: true,
      stderr: true,
      resourceLimits: { maxOldGenerationSizeMb: this.#options.maxOldGenerationSizeMb },
    });
    const pw: PoolWorker = { id: this.#nextId++, worker, ready: false, retired: false, loaded: new Set() };
    this.#workers.add(pw);
    worker.unref();
    const log = (stream: string) => (chunk: Buffer) =>
      this.#options.logger.debug('worker output', { worker: pw.id, stream, text: chunk.toString('utf8') });
    worker.stdout.on('data', log('stdout'));
    worker.stderr.on('data', log('stderr'));
    let lastError: Error | undefined;
    worker.on('message', (msg: WorkerMessage) => {
      if (pw.retired) return;
      if (msg.type === 'ready') {
        pw.ready = true;
        this.#startupFailures = 0;
        this.#settleWaiters();
        this.#events.onIdle();
        return;
      }
      this.#events.onMessage(pw, msg);
    });
    worker.on('error', (err) => {
      lastError = err;
    });
    worker.on('exit', (code) => {
      if (pw.retired) return;
      pw.retired = true;
      this.#workers.delete(pw);
      this.replaced++;
      this.#options.logger.warn('runtime worker exited unexpectedly', {
        worker: pw.id,
        code,
        ready: pw.ready,
        error: lastError?.message,
      });
      const taskId = pw.taskId;
      if (!pw.ready) this.#onStartupDeath(code, lastError);
      else if (!this.#closed && !this.#failure) this.#spawn();
      this.#events.onCrash(pw, taskId, lastError);
    });
  }

  /** A worker died before it was ready: back off, then retry, or give up after too many in a row. */
  #onStartupDeath(code: number, error: Error | undefined): void {
    if (this.#closed || this.#failure) return;
    this.#startupFailures++;
    if (this.#startupFailures >= this.#maxStartupFailures) {
      this.#failure = new RuntimeError(
        'UNAVAILABLE',
        `runtime workers died ${this.#startupFailures} times in a row before they were ready (last: exit code ${code}${error ? `, ${error.message}` : ''}); check the installation and the worker heap limit (${this.#options.maxOldGenerationSizeMb} MiB), then call warmUp() again`,
        { cause: error },
      );
      this.#options.logger.error('runtime workers cannot start; the pool stopped starting them', {
        failures: this.#startupFailures,
        error: error?.message,
      });
      for (const t of this.#respawnTimers) clearTimeout(t);
      this.#respawnTimers.clear();
      this.#settleWaiters();
      this.#events.onFailed(this.#failure);
      return;
    }
    const delay = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (this.#startupFailures - 1));
    const timer = setTimeout(() => {
      this.#respawnTimers.delete(timer);
      if (!this.#closed && !this.#failure) this.#fill();
    }, delay);
    this.#respawnTimers.add(timer);
  }
}
