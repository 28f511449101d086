/**
 * `LLMDataDist`: one instance of the KV-cache manager (upstream
 * `LLMDataDist`), on the host backend or on CANN.
 *
 * @module
 */
import { LLMClusterInfo } from "./cluster_info.ts";
import { type LLMConfig, readEngineOptions } from "./config.ts";
import { Engine, finalizedError } from "./engine.ts";
import { LLMRole } from "./enums.ts";
import { LLMException, ValueError } from "./errors.ts";
import { type KvCacheManager, newKvCacheManager } from "./kv_cache_manager.ts";
import { type Backend, loadLibrary } from "./native/load.ts";
import { Operation } from "./operation.ts";
import { LLMStatusCode } from "./status.ts";
import {
  describe,
  INT32_MAX,
  requireArray,
  requireInstance,
  requireIntIn,
  requireString,
  requireUint64,
} from "./validate.ts";

/** Most clusters one `linkClusters` / `unlinkClusters` call takes (upstream's limit). */
export const MAX_CLUSTERS_PER_CALL = 16;

/** What `linkClusters` and `unlinkClusters` resolve to: the overall status and one per cluster. */
export type ClusterStatuses = [LLMStatusCode, LLMStatusCode[]];

/** Options of the {@link LLMDataDist} constructor. */
export interface LLMDataDistOptions {
  /** `"host"` (default): the embedded host backend; `"cann"`: the CANN adapter. */
  backend?: Backend;
  /** The native library file to load, instead of the usual search. */
  libraryPath?: string;
}

type State = "created" | "initializing" | "initialized" | "finalized";

const encoder = new TextEncoder();

function checkClusters(clusters: unknown, timeout: unknown): LLMClusterInfo[] {
  const list = requireArray(clusters, "clusters", "LLMClusterInfo")
    .map((cluster, i) => requireInstance(cluster, LLMClusterInfo, `clusters[${i}]`));
  requireIntIn(timeout, "timeout", 1, INT32_MAX);
  if (list.length > MAX_CLUSTERS_PER_CALL) {
    throw new LLMException(
      LLMStatusCode.LLM_CLUSTER_NUM_EXCEED_LIMIT,
      `${list.length} clusters given, at most ${MAX_CLUSTERS_PER_CALL} per call`,
    );
  }
  return list;
}

/** The overall status of per-cluster statuses: success, or the first failure. */
function overall(statuses: LLMStatusCode[]): ClusterStatuses {
  return [statuses.find((s) => s !== LLMStatusCode.LLM_SUCCESS) ?? LLMStatusCode.LLM_SUCCESS, statuses];
}

/**
 * One LLM-DataDist instance: a PROMPT (prefill), DECODER or MIX role in a
 * cluster. Create it, `init()` it with options, use its `kvCacheManager`,
 * and `finalize()` it (or `await using`).
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMConfig, LLMDataDist, LLMRole } from "./mod.ts";
 * const config = new LLMConfig();
 * config.deviceId = 0;
 * config.geOptions = { "ge.flowGraphMemMaxSize": String(16 << 20) };
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init(config.generateOptions());
 * const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT16));
 * const [k] = await dd.kvCacheManager.getCacheTensors(cache, 0);
 * console.log(k.shape, k.byteLength); // [ 4, 8 ] 64
 * ```
 */
export class LLMDataDist {
  /** The instance's role. */
  readonly role: LLMRole;
  /** The instance's cluster id (uint64). */
  readonly clusterId: bigint;
  readonly #backend: Backend;
  readonly #libraryPath: string | undefined;
  readonly #manager: KvCacheManager;
  #state: State = "created";
  #engine: Engine | undefined;

  /**
   * Creates an instance; nothing is loaded until `init()`. Throws `TypeError` /
   * `ValueError` for a bad role, cluster id or option.
   */
  constructor(role: LLMRole, clusterId: bigint | number, options: LLMDataDistOptions = {}) {
    if (typeof role !== "number") throw new TypeError(`role must be an LLMRole, got ${describe(role)}`);
    if (role !== LLMRole.PROMPT && role !== LLMRole.DECODER && role !== LLMRole.MIX) {
      throw new ValueError(`role ${role} is not an LLMRole (PROMPT=1, DECODER=2, MIX=3)`);
    }
    this.role = role;
    this.clusterId = requireUint64(clusterId, "clusterId");
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    const backend = options.backend ?? "host";
    requireString(backend, "options.backend");
    if (backend !== "host" && backend !== "cann") {
      throw new ValueError(`options.backend must be "host" or "cann", got ${describe(backend)}`);
    }
    this.#backend = backend;
    this.#libraryPath = options.libraryPath === undefined
      ? undefined
      : requireString(options.libraryPath, "options.libraryPath");
    this.#manager = newKvCacheManager({
      current: () => this.#current(),
      initialized: () => this.#state === "initialized",
    });
  }

  /**
   * Loads the native library and initializes the engine with `options`
   * (an `LLMConfig`, or its `generateOptions()` dictionary with upstream keys).
   * Rejects with `LLMException(LLM_FAILED)` naming every file tried when the
   * library cannot be loaded.
   */
  async init(options: LLMConfig | Record<string, string>): Promise<void> {
    if (this.#state === "finalized") throw finalizedError();
    if (this.#state !== "created") {
      throw new LLMException(LLMStatusCode.LLM_FAILED, "init() was already called on this LLMDataDist");
    }
    const engineOptions = readEngineOptions(options);
    this.#state = "initializing";
    try {
      const lib = await loadLibrary(this.#backend, this.#libraryPath);
      const text = encoder.encode(engineOptions.text);
      const out = lib.outBuffer;
      lib.check(
        lib.fn.llmdd_engine_init(this.role, this.clusterId, text, text.length, out),
        "init failed",
      );
      const handle = out[0];
      let engine: Engine;
      try {
        engine = new Engine(lib, handle, engineOptions.deviceIds, engineOptions.syncKvTimeout);
      } catch (err) {
        lib.fn.llmdd_engine_finalize(handle); // never leave a native engine (and its cluster id) behind
        throw err;
      }
      if (this.#state !== "initializing") {
        engine.finalize(); // finalize() was called while the library loaded
        throw finalizedError();
      }
      this.#engine = engine;
      this.#state = "initialized";
    } catch (err) {
      if (this.#state === "initializing") this.#state = "created";
      throw err;
    }
  }

  /** The instance's cache manager (calls on it fail until `init()`). */
  get kvCacheManager(): KvCacheManager {
    return this.#manager;
  }

  /**
   * Releases everything: waiting and running cache calls reject with
   * `LLM_ENGINE_FINALIZED`, views are revoked, memory is freed. Later calls
   * reject with `LLM_ENGINE_FINALIZED`. Calling it again does nothing.
   */
  finalize(): void {
    const engine = this.#engine;
    this.#state = "finalized";
    this.#engine = undefined;
    engine?.finalize();
  }

  /**
   * Links this DECODER (or MIX) instance to PROMPT clusters so that it can pull
   * their caches, each at its first remote address, all within `timeout` ms.
   * Resolves to `[status, perClusterStatus]` as upstream: `LLM_SUCCESS` or the
   * first failure, e.g. `LLM_LINK_FAILED` when nobody answers, `LLM_ALREADY_LINK`.
   * Throws `LLMException(LLM_CLUSTER_NUM_EXCEED_LIMIT)` for more than 16 clusters
   * and `LLMException(LLM_PARAM_INVALID)` on a PROMPT instance.
   *
   * @example
   * ```ts
   * import { LLMClusterInfo, LLMDataDist, LLMRole, LLMStatusCode } from "./mod.ts";
   * const decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init({});
   * const prompt = new LLMClusterInfo();
   * prompt.remoteClusterId = 1n;
   * prompt.appendRemoteIpInfo("127.0.0.1", 26000);
   * const [status, perCluster] = await decoder.linkClusters([prompt], 3000);
   * if (status !== LLMStatusCode.LLM_SUCCESS) console.log("link failed:", perCluster);
   * ```
   */
  async linkClusters(clusters: LLMClusterInfo[], timeout = 3000): Promise<ClusterStatuses> {
    const list = checkClusters(clusters, timeout);
    const addresses = list.map((cluster) => {
      const remote = cluster.remoteIpInfoList[0];
      if (remote === undefined) {
        throw new ValueError(`cluster ${cluster.remoteClusterId} has no remote ip info: call appendRemoteIpInfo`);
      }
      return encoder.encode(`${remote.ip}:${remote.port}`);
    });
    const engine = this.#linker("linkClusters");
    const statuses = await Promise.all(list.map((cluster, i) => {
      const address = addresses[i];
      return this.#clusterCall(
        "linkClusters",
        timeout,
        LLMStatusCode.LLM_LINK_FAILED,
        (op) =>
          engine.lib.runLong(
            "llmdd_link",
            [engine.handle, cluster.remoteClusterId, address, address.length],
            op,
            `link to cluster ${cluster.remoteClusterId} failed`,
          ),
      );
    }));
    return overall(statuses);
  }

  /**
   * Unlinks from clusters linked with `linkClusters`, within `timeout` ms.
   * With `force`, a peer that does not answer is dropped anyway. Resolves to
   * `[status, perClusterStatus]`; `LLM_NOT_YET_LINK` for a cluster not linked.
   */
  async unlinkClusters(clusters: LLMClusterInfo[], timeout = 3000, force = false): Promise<ClusterStatuses> {
    const list = checkClusters(clusters, timeout);
    if (typeof force !== "boolean") throw new TypeError(`force must be a boolean, got ${describe(force)}`);
    const engine = this.#linker("unlinkClusters");
    const statuses = await Promise.all(list.map((cluster) =>
      this.#clusterCall(
        "unlinkClusters",
        timeout,
        LLMStatusCode.LLM_UNLINK_FAILED,
        (op) =>
          engine.lib.runLong(
            "llmdd_unlink",
            [engine.handle, cluster.remoteClusterId, force ? 1 : 0],
            op,
            `unlink from cluster ${cluster.remoteClusterId} failed`,
          ),
      )
    ));
    return overall(statuses);
  }

  /**
   * The TCP port a PROMPT instance listens on for links (`llm.listenIpInfo`;
   * with port 0 the system picks one), or 0. Not in upstream's API.
   */
  get listenPort(): number {
    return this.#engine?.listenPort ?? 0;
  }

  /** Finalizes the instance (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.finalize();
    return Promise.resolve();
  }

  #linker(what: string): Engine {
    const engine = this.#current();
    if (engine.role === LLMRole.PROMPT) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        `${what}: a PROMPT instance is linked to, it does not link`,
      );
    }
    return engine;
  }

  // Links are not cache calls: they run beside them, bounded by their own
  // timeout. Running out of it is reported as the call's own failure status
  // (upstream has no timeout status for links).
  async #clusterCall(
    what: string,
    timeout: number,
    timeoutStatus: LLMStatusCode,
    call: (op: Operation) => Promise<void>,
  ): Promise<LLMStatusCode> {
    try {
      await call(new Operation(what, timeout, undefined));
      return LLMStatusCode.LLM_SUCCESS;
    } catch (err) {
      if (!(err instanceof LLMException) || err.statusCode === LLMStatusCode.LLM_ENGINE_FINALIZED) throw err;
      return err.statusCode === LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT ? timeoutStatus : err.statusCode;
    }
  }

  #current(): Engine {
    if (this.#engine) return this.#engine;
    if (this.#state === "finalized") throw finalizedError();
    throw new LLMException(LLMStatusCode.LLM_FAILED, "this LLMDataDist is not initialized: call init() first");
  }
}
