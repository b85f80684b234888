import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Interceptor } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import {
  answerMalformedAsInvalid,
  createBearerAuthInterceptor,
  createFeed,
  createMalformedMessageInterceptor,
  maxMessageBytes,
  type NodeStatusView,
  type RequestLimits,
  registerNodeService,
  resolveLimits,
  type TelemetryFeeds,
} from '@vyr/api';
import { createStore, loadTrustPolicy, type TrustPolicy } from '@vyr/artifact';
import type { ResourceMetrics, ResourceSpans } from '@vyr/proto/otlp';
import { openReceiptStore, type ReceiptStore } from '@vyr/receipt';
import { createRuntime } from '@vyr/runtime';
import { type ConflictPolicy, createStateKernel, type StateKernel } from '@vyr/state';
import { type Logger, silentLogger } from '@vyr/telemetry';
import { NodeError } from './errors.js';
import { openIdempotencyStore } from './idempotency.js';
import { createNodeLayers, type NodeLayers } from './layers.js';
import { loadNodeKey, type NodeKey } from './node-key.js';
import { completeRestartedDrafts, createReceiptRecorder, type ReceiptSigner } from './receipts.js';
import { checkTlsPair, type DualServer, isLoopback, listenDual, parseListen } from './server.js';
import { createNodeTelemetry, type NodeTelemetry } from './telemetry.js';
import { TIERS, type Tier } from './tiers.js';

/** Version reported by GetNodeInfo. */
export const NODE_VERSION = '0.1.0';

/** Default listen address: loopback, port 7070 (docs/cli.md). */
export const DEFAULT_LISTEN = '127.0.0.1:7070';

/** Default of {@link NodeOptions.statePendingTimeoutMs}: 5 minutes. */
export const DEFAULT_PENDING_TIMEOUT_MS = 300_000;

/** Default of {@link NodeOptions.outputHoldMs}: 60 seconds. */
export const DEFAULT_OUTPUT_HOLD_MS = 60_000;

/** Checks an OTLP/HTTP base URL before anything starts. @throws NodeError INVALID_ARGUMENT. */
function checkOtlpEndpoint(endpoint: string | undefined): string | undefined {
  if (endpoint === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new NodeError(
      'INVALID_ARGUMENT',
      `--otlp ${JSON.stringify(endpoint)} is not an http(s) URL (e.g. http://127.0.0.1:4318), nor "none"`,
    );
  }
  return endpoint.replace(/\/+$/, '');
}

/** Loads the trusted keys, naming the file that is missing or malformed. */
async function loadTrust(paths: readonly string[], allowUnsigned: boolean): Promise<TrustPolicy> {
  try {
    return await loadTrustPolicy(paths, { allowUnsigned });
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    const message = (cause as Error).message;
    if (code === 'NOT_FOUND') throw new NodeError('FILE_NOT_FOUND', `--trust: ${message}`, { cause });
    if (code === 'MALFORMED_KEY') throw new NodeError('INVALID_FILE', `--trust: ${message}`, { cause });
    throw new NodeError('FILE_UNREADABLE', `--trust: ${message}`, { cause });
  }
}

/** Options of {@link createNode}. Tier defaults apply to every field left out. */
export interface NodeOptions {
  /** Profile of defaults; default `laptop`. */
  tier?: Tier;
  /** Data directory: artifact store, state, prepare cache, node id. Required. */
  dataDir: string;
  /** `HOST:PORT`; default `127.0.0.1:7070`. Port 0 picks a free port. */
  listen?: string;
  /** Paths of trusted SPKI PEM public keys; default none (then only `allowUnsigned` artifacts run). */
  trust?: readonly string[];
  /** Accept unsigned artifacts: laptop tier only, never a default. */
  allowUnsigned?: boolean;
  /** OTLP/HTTP endpoint; default: the tier's (edge: a collector on 127.0.0.1:4318). `null` turns export off. */
  otlpEndpoint?: string | null;
  /** Bearer token; required to listen on a non-loopback address. */
  token?: string;
  /** PEM certificate and key for HTTPS. */
  tls?: { cert: Buffer; key: Buffer };
  /** Worker threads; default: the tier's. */
  poolSize?: number;
  /** Queue admission limit; default: the tier's. */
  maxQueueLength?: number;
  /** Finished tasks kept for GetTask; default 1,000. */
  maxFinishedTasks?: number;
  /** Request size limits; default: {@link RequestLimits} defaults with the tier's artifact size. */
  limits?: RequestLimits;
  /** Metric collection period, ms; default: the tier's. */
  metricIntervalMs?: number;
  /** Per-subscriber buffer of StreamTraces / StreamMetrics, in batches; default 1,024. */
  streamBufferItems?: number;
  /**
   * What a state binding that conflicts with the single-writer rule does (an `rw` bind of a held instance, an `ro`
   * bind of one a writer holds): `refuse` (default) answers `failed_precondition` / `BINDING_CONFLICT` at once, so
   * the caller decides when to retry; `wait` queues the binding in FIFO order (SubmitTask and BindState answer at
   * once with the task PENDING, and the task runs once the holder releases). docs/state.md.
   */
  stateConflictPolicy?: ConflictPolicy;
  /**
   * How long a task may stay PENDING waiting for its state (a declared slot never bound, a queued binding never
   * granted) before it ends `FAILED(PENDING_TIMEOUT)`, ms; counted from the start of the state bind, after prepare.
   * Default 300,000 (5 min).
   */
  statePendingTimeoutMs?: number;
  /**
   * How long the output of a task submitted with `hold_output` is held for its first watcher (from the first held
   * chunk) before it is dropped as for any task, ms. Default 60,000.
   */
  outputHoldMs?: number;
  /**
   * PKCS#8 PEM ECDSA P-256 private key the node signs its execution receipts with (docs/receipts.md). Default:
   * `DATA_DIR/node-key/vyr.key`, generated on first start (mode 0600).
   */
  nodeKeyPath?: string;
  /** Logger; default silent. */
  logger?: Logger;
}

/** A running node; see {@link createNode}. */
export interface VyrNode {
  /** `http://host:port` a client on this host can use (a wildcard listen address is given as loopback). */
  readonly url: string;
  /** `HOST:PORT` the node is bound to (e.g. `0.0.0.0:7070`). */
  readonly listen: string;
  /** Stable node id (`nd_…`) kept in the data directory. */
  readonly nodeId: string;
  readonly tier: Tier;
  /** Tasks that were live when the previous process died, now FAILED(NODE_RESTART). */
  readonly restartedTaskIds: readonly string[];
  /** The node's receipt signing key: SPKI PEM and key id. */
  readonly nodeKey: { publicKeyPem: string; keyId: string };
  /** Identity and counters, as GetNodeInfo reports them. */
  status(): Promise<NodeStatusView>;
  /**
   * Graceful stop: stops accepting requests, cancels live tasks (they end CANCELLED / RUNTIME_CLOSED with their
   * state released), flushes telemetry, closes the state kernel. Idempotent.
   */
  stop(): Promise<void>;
}

/** Reads the node id from `dataDir/node-id`, creating it on first start (written atomically). */
export async function loadNodeId(dataDir: string): Promise<string> {
  const path = join(dataDir, 'node-id');
  try {
    const id = (await readFile(path, 'utf8')).trim();
    if (/^nd_[a-z0-9]{20,64}$/.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const id = `nd_${randomBytes(13).toString('hex')}`;
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${id}\n`, { mode: 0o644 });
  await rename(tmp, path);
  return id;
}

/**
 * Starts a node: opens the store, state kernel (recovering after a crash) and runtime, wires telemetry, and
 * serves NodeService on HTTP/1.1 and HTTP/2 (Connect, gRPC, gRPC-Web).
 *
 * @throws NodeError INSECURE_LISTEN (non-loopback without a token), UNSIGNED_NOT_ALLOWED, LISTEN_FAILED, …
 */
export async function createNode(options: NodeOptions): Promise<VyrNode> {
  const tier = options.tier ?? 'laptop';
  const profile = TIERS[tier];
  const logger = options.logger ?? silentLogger;
  // Everything that can be checked without the data directory is checked first: a refused start leaves no trace.
  const listen = parseListen(options.listen ?? DEFAULT_LISTEN);
  if (!isLoopback(listen.host) && !options.token) {
    throw new NodeError(
      'INSECURE_LISTEN',
      `refusing to listen on ${listen.host} without a bearer token: pass --token-file (and --tls-cert/--tls-key), or listen on 127.0.0.1`,
    );
  }
  if (options.allowUnsigned && tier !== 'laptop') {
    throw new NodeError('UNSIGNED_NOT_ALLOWED', `--allow-unsigned is for the laptop tier only, not ${tier}`);
  }
  const otlpEndpoint = checkOtlpEndpoint(
    options.otlpEndpoint === null ? undefined : (options.otlpEndpoint ?? profile.otlpEndpoint),
  );
  if (options.tls) checkTlsPair(options.tls, { cert: 'TLS certificate', key: 'TLS key' });
  const policy = await loadTrust(options.trust ?? [], options.allowUnsigned ?? false);
  if (options.token && !options.tls && !isLoopback(listen.host)) {
    logger.warn('the bearer token travels in cleartext: serve HTTPS with --tls-cert/--tls-key off loopback', {
      listen: `${listen.host}:${listen.port}`,
    });
  }

  const dataDir = resolve(options.dataDir);
  try {
    await mkdir(dataDir, { recursive: true });
  } catch (cause) {
    throw new NodeError(
      'DATA_DIR_UNUSABLE',
      `cannot create the data directory ${dataDir}: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
  // The state kernel takes the data directory's lock: before anything a live node on the same directory uses (its
  // temp files, its node id) is touched. A second node on it stops here.
  const conflictPolicy: ConflictPolicy = options.stateConflictPolicy ?? 'refuse';
  const pendingTimeoutMs = options.statePendingTimeoutMs ?? DEFAULT_PENDING_TIMEOUT_MS;
  const outputHoldMs = options.outputHoldMs ?? DEFAULT_OUTPUT_HOLD_MS;
  let kernel: StateKernel;
  try {
    // Default `refuse`: a conflicting bind answers failed_precondition at once, a predictable answer for scripts;
    // `wait` is for pipelines that hand one instance from task to task.
    kernel = createStateKernel({
      dataDir: join(dataDir, 'state'),
      logger,
      conflictPolicy,
      pendingTimeoutMs,
    });
  } catch (cause) {
    if ((cause as { code?: string }).code === 'DATA_DIR_LOCKED') {
      throw new NodeError(
        'DATA_DIR_LOCKED',
        `another node is running on the data directory ${dataDir} (${(cause as Error).message}); stop it or use another --data-dir`,
        { cause },
      );
    }
    throw new NodeError('DATA_DIR_UNUSABLE', `cannot open the state of ${dataDir}: ${(cause as Error).message}`, {
      cause,
    });
  }
  const cleanups: (() => Promise<unknown>)[] = [() => kernel.close()];
  try {
    return await startLocked();
  } catch (err) {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    throw err;
  }

  async function startLocked(): Promise<VyrNode> {
    const nodeId = await loadNodeId(dataDir);
    const tempDir = join(dataDir, 'tmp');
    await rm(tempDir, { recursive: true, force: true });
    await mkdir(tempDir, { recursive: true });

    const feeds: TelemetryFeeds = {
      traces: createFeed<ResourceSpans>({ retainItems: 4096 }),
      metrics: createFeed<ResourceMetrics>({ retainItems: 64 }),
    };
    const telemetry: NodeTelemetry = createNodeTelemetry({
      nodeId,
      tier,
      version: NODE_VERSION,
      ...(otlpEndpoint ? { otlpEndpoint } : {}),
      feeds,
      metricIntervalMs: options.metricIntervalMs ?? profile.metricIntervalMs,
      logger,
    });
    cleanups.push(() => telemetry.shutdown());

    const store = createStore({ dir: join(dataDir, 'artifacts') });
    const recovery = await kernel.recover();
    if (recovery.failedTaskIds.length > 0) {
      logger.warn('tasks were live when the node stopped; marked FAILED(NODE_RESTART)', {
        tasks: recovery.failedTaskIds.length,
      });
    }
    const nodeKey: NodeKey = await loadNodeKey(dataDir, options.nodeKeyPath);
    let receiptStore: ReceiptStore;
    try {
      receiptStore = openReceiptStore({ path: join(dataDir, 'receipts.db') });
    } catch (cause) {
      throw new NodeError('DATA_DIR_UNUSABLE', (cause as Error).message, { cause });
    }
    cleanups.push(async () => receiptStore.close());
    let idempotency: ReturnType<typeof openIdempotencyStore>;
    try {
      idempotency = openIdempotencyStore(join(dataDir, 'idempotency.db'), 10_000);
    } catch (cause) {
      throw new NodeError('DATA_DIR_UNUSABLE', (cause as Error).message, { cause });
    }
    cleanups.push(async () => idempotency.close());
    const signer: ReceiptSigner = { key: nodeKey, nodeId, tier, version: NODE_VERSION };
    // Drafts left open by a crash: the tasks the kernel just marked FAILED(NODE_RESTART) get their signed receipts.
    const restartedReceipts = await completeRestartedDrafts(
      receiptStore,
      signer,
      (stateId) => {
        try {
          const info = kernel.get(stateId);
          return {
            ...(info.digest !== undefined ? { digest: info.digest } : {}),
            bytes: info.bytes,
            entries: info.entries,
          };
        } catch {
          return undefined;
        }
      },
      Date.now(),
    );
    if (restartedReceipts.length > 0) {
      logger.warn('signed FAILED(NODE_RESTART) receipts for tasks live when the node stopped', {
        tasks: restartedReceipts.length,
      });
    }
    const receipts = createReceiptRecorder(receiptStore, signer, logger);
    const poolSize = options.poolSize ?? profile.poolSize;
    const maxQueueLength = options.maxQueueLength ?? profile.maxQueueLength;
    const layers: NodeLayers = createNodeLayers({
      store,
      policy,
      kernel,
      tempDir,
      restartedTasks: recovery.failedTasks,
      receipts,
      createRuntime: (artifacts, hooks) =>
        createRuntime({
          artifacts,
          hooks,
          cacheDir: join(dataDir, 'cache'),
          poolSize,
          maxQueueLength,
          maxFinishedTasks: options.maxFinishedTasks ?? 1000,
          defaultLimits: {
            memoryBytes: profile.defaultMemoryBytes,
            ...(profile.defaultDeadlineMs !== undefined ? { deadlineMs: profile.defaultDeadlineMs } : {}),
          },
          outputHoldMs,
          nodeId,
          tier,
          logger,
        }),
    });
    const runtime = layers.runtime;
    cleanups.push(() => runtime.close());
    void runtime.warmUp().catch((err: Error) => logger.error('worker pool warm-up failed', { error: err.message }));

    const startedAtMs = Date.now();
    const status = async (): Promise<NodeStatusView> => {
      const s = runtime.stats();
      return {
        nodeId,
        tier,
        version: NODE_VERSION,
        startedAtMs,
        queueLength: s.queued + s.pending,
        maxQueueLength,
        poolSize: s.workers || poolSize,
        runningTasks: s.running,
        retainedTasks: layers.retainedTaskCount(),
        artifacts: await layers.artifactCount(),
        states: kernel.list().length,
        telemetry: telemetry.health(),
        stateConflictPolicy: conflictPolicy,
        outputHoldMs,
        pendingTimeoutMs,
        nodePublicKeyPem: nodeKey.publicKeyPem,
        nodeKeyId: nodeKey.keyId,
      };
    };

    const limits = resolveLimits({ maxArtifactBytes: profile.maxArtifactBytes, ...options.limits });
    const shutdown = new AbortController();
    const interceptors: Interceptor[] = options.token ? [createBearerAuthInterceptor(options.token)] : [];
    interceptors.push(createMalformedMessageInterceptor());
    const handler = answerMalformedAsInvalid(
      connectNodeAdapter({
        routes: (router) =>
          registerNodeService(router, {
            tasks: layers.tasks,
            states: layers.states,
            artifacts: layers.artifacts,
            telemetry: feeds,
            status,
            tempDir,
            limits,
            idempotencyStore: idempotency,
            ...(options.streamBufferItems ? { streamBufferItems: options.streamBufferItems } : {}),
          }),
        interceptors,
        // One message may be a whole stdin or seed; anything larger is refused by connect with resource_exhausted
        // before it is buffered. Field limits below this give the precise TOO_LARGE error.
        readMaxBytes: maxMessageBytes(limits),
        shutdownSignal: shutdown.signal,
      }),
    );

    const server: DualServer = await listenDual({
      host: listen.host,
      port: listen.port,
      handler,
      ...(options.tls ? { tls: options.tls } : {}),
    });
    logger.info('node listening', { url: server.url, nodeId, tier });

    let stopping: Promise<void> | undefined;
    const bound = server.address;
    return {
      url: server.url,
      listen: `${bound.host.includes(':') ? `[${bound.host}]` : bound.host}:${bound.port}`,
      nodeId,
      tier,
      restartedTaskIds: recovery.failedTaskIds,
      nodeKey: { publicKeyPem: nodeKey.publicKeyPem, keyId: nodeKey.keyId },
      status,
      stop() {
        stopping ??= (async () => {
          // Stop accepting first; then end live tasks (RUNTIME_CLOSED; the release hook records their state digests),
          // so watchers still receive each task's terminal status; then end the remaining streams (follow mode).
          const closing = server.close(3000);
          await runtime.close();
          // The tasks the close ended get their receipts before the store closes.
          await layers.flushReceipts();
          shutdown.abort(new Error('the node is shutting down'));
          await closing;
          await telemetry.shutdown();
          await kernel.close();
          receiptStore.close();
          idempotency.close();
          await rm(tempDir, { recursive: true, force: true });
          logger.info('node stopped', { nodeId });
        })();
        return stopping;
      },
    };
  }
}

/** Options of {@link startNode} beyond {@link NodeOptions}. */
export interface StartNodeHooks {
  /** Called once the node listens (e.g. to print its address). */
  onListening?(node: VyrNode): void;
  /** Resolves when the node should stop; default: the first SIGTERM or SIGINT of this process. */
  until?: Promise<unknown>;
}

/**
 * Runs a node as a daemon: {@link createNode}, then waits for `hooks.until` (SIGTERM/SIGINT by default) and stops
 * it gracefully. Resolves once the node has stopped; this is what `vyr node start` does.
 */
export async function startNode(options: NodeOptions, hooks: StartNodeHooks = {}): Promise<VyrNode> {
  const until = hooks.until ?? untilSignal();
  const node = await createNode(options);
  hooks.onListening?.(node);
  await until;
  await node.stop();
  return node;
}

/** Resolves with the first SIGTERM or SIGINT this process receives. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolvePromise) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolvePromise(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}
