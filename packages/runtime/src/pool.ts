import { Worker } from 'node:worker_threads';
import type { Logger } from '@vyr/telemetry';
import type { RunRequest, WorkerMessage } from './protocol.js';

/** One pool worker: a thread that runs one task at a time. */
export interface PoolWorker {
  readonly id: number;
  readonly worker: Worker;
  /** True once the worker loaded its WASI host and can take a task. */
  ready: boolean;
  /** The task it runs now. */
  taskId?: string;
  /** Set when the pool terminates it on purpose (cancel, deadline, close). */
  retired: boolean;
}

/** Callbacks from the pool to the runtime. */
export interface PoolEvents {
  /** A worker became ready or finished a task: the runtime may dispatch. */
  onIdle(): void;
  /** A message of the task the worker runs. */
  onMessage(worker: PoolWorker, message: WorkerMessage): void;
  /** A worker died on its own (not retired): `error` is what it threw, if anything. */
  onCrash(worker: PoolWorker, taskId: string | undefined, error: Error | undefined): void;
}

/** Options of {@link WorkerPool}. */
export interface PoolOptions {
  size: number;
  logger: Logger;
  /** JS heap limit of a worker, MiB (guest linear memory is limited separately, per task). */
  maxOldGenerationSizeMb: number;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

/**
 * A fixed-size pool of warm worker threads. Workers start with an empty environment (`env: {}`), so nothing of the
 * node's environment is reachable from a worker even by accident, and their stdout/stderr go to the logger, never
 * to the node's stdio.
 */
export class WorkerPool {
  readonly #options: PoolOptions;
  readonly #events: PoolEvents;
  readonly #workers = new Set<PoolWorker>();
  #nextId = 1;
  #started = false;
  #closed = false;
  /** Workers replaced after cancel, deadline or crash. */
  replaced = 0;

  constructor(options: PoolOptions, events: PoolEvents) {
    this.#options = options;
    this.#events = events;
  }

  /** Spawns the workers (idempotent); resolves when all are ready. */
  start(): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      for (let i = 0; i < this.#options.size; i++) this.#spawn();
    }
    return this.#whenAllReady();
  }

  async #whenAllReady(): Promise<void> {
    while (!this.#closed && [...this.#workers].some((w) => !w.ready)) {
      await new Promise((r) => setTimeout(r, 5));
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
    // Idle workers do not keep the process alive; a running task does.
    worker.worker.ref();
    worker.worker.postMessage(request);
  }

  /** Marks the worker free after its task reported `done`. */
  release(worker: PoolWorker): void {
    worker.taskId = undefined;
    worker.worker.unref();
    this.#events.onIdle();
  }

  /** Terminates a worker (the only way to stop a guest in a tight loop) and starts a replacement. */
  async replace(worker: PoolWorker): Promise<void> {
    if (worker.retired) return;
    worker.retired = true;
    this.#workers.delete(worker);
    this.replaced++;
    if (!this.#closed) this.#spawn();
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
    const all = [...this.#workers];
    this.#workers.clear();
    for (const w of all) w.retired = true;
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
    const pw: PoolWorker = { id: this.#nextId++, worker, ready: false, retired: false };
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
        error: lastError?.message,
      });
      const taskId = pw.taskId;
      if (!this.#closed) this.#spawn();
      this.#events.onCrash(pw, taskId, lastError);
    });
  }
}
