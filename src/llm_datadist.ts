/**
 * `LLMDataDist`: one instance of the KV-cache manager (upstream
 * `LLMDataDist`), on the host backend or on CANN.
 *
 * @module
 */
import { LLMClusterInfo } from "./cluster_info.ts";
import { type CacheManager, newCacheManager } from "./cache_manager.ts";
import { type EngineOptions, type LLMConfig, OptionKey, readEngineOptions } from "./config.ts";
import { Engine, finalizedError } from "./engine.ts";
import { LLMRole } from "./enums.ts";
import { LLMException, ValueError } from "./errors.ts";
import { type KvCacheManager, newKvCacheManager } from "./kv_cache_manager.ts";
import { NativeLibrary } from "./native_library.ts";
import { type Backend, loadLibrary } from "./native/load.ts";
import { MAX_LINKS } from "./native/symbols.ts";
import { Operation } from "./operation.ts";
import { LLMStatusCode } from "./status.ts";
import { describe, requireArray, requireInstance, requireInt32, requireString, requireUint64 } from "./validate.ts";

/** Most clusters one `linkClusters` / `unlinkClusters` call takes (upstream's limit). */
export const MAX_CLUSTERS_PER_CALL: number = MAX_LINKS;

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

function checkClusters(clusters: unknown, timeout: unknown): LLMClusterInfo[] {
  const list = requireArray(clusters, "clusters", "LLMClusterInfo")
    .map((cluster, i) => requireInstance(cluster, LLMClusterInfo, `clusters[${i}]`));
  // Upstream: check_int32 (TypeError, ValueError), then timeout > 0 (LLM_PARAM_INVALID).
  const ms = requireInt32(timeout, "timeout");
  if (ms <= 0) throw new LLMException(LLMStatusCode.LLM_PARAM_INVALID, `timeout must be positive, got ${ms} ms`);
  if (list.length > MAX_CLUSTERS_PER_CALL) {
    throw new LLMException(
      LLMStatusCode.LLM_CLUSTER_NUM_EXCEED_LIMIT,
      `${list.length} clusters given, at most ${MAX_CLUSTERS_PER_CALL} per call`,
    );
  }
  return list;
}

/** The overall status of per-cluster statuses: success, or the first failure. */
function roleName(role: LLMRole): string {
  return role === LLMRole.PROMPT ? "PROMPT" : role === LLMRole.DECODER ? "DECODER" : "MIX";
}

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
 * import { CacheDesc, DataType, LLMConfig, LLMDataDist, LLMRole } from "llm-datadist";
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
  #role: LLMRole;
  /** The instance's cluster id (uint64). */
  readonly clusterId: bigint;
  readonly #backend: Backend;
  readonly #libraryPath: string | undefined;
  readonly #manager: KvCacheManager;
  #state: State = "created";
  #initializing: Promise<void> | undefined;
  #engine: Engine | undefined;
  #settings: EngineOptions | undefined;
  readonly #cacheManager: CacheManager;
  // Clusters this instance is linked to, and whether it ever linked (the
  // cache manager's rules on registration and unregistration).
  readonly #linked = new Set<bigint>();
  #callLinked = false;

  /**
   * Creates an instance; nothing is loaded until `init()`. Throws `TypeError` /
   * `ValueError` for a bad role, cluster id or option.
   */
  constructor(role: LLMRole, clusterId: bigint | number, options: LLMDataDistOptions = {}) {
    if (typeof role !== "number") throw new TypeError(`role must be an LLMRole, got ${describe(role)}`);
    if (role !== LLMRole.PROMPT && role !== LLMRole.DECODER && role !== LLMRole.MIX) {
      throw new ValueError(`role ${role} is not an LLMRole (PROMPT=1, DECODER=2, MIX=3)`);
    }
    this.#role = role;
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
    this.#cacheManager = newCacheManager({
      current: () => this.#current(),
      initialized: () => this.#state === "initialized",
      settings: () => this.#settings ?? { memPool: false, hostMemPool: false },
      isCallLinked: () => this.#callLinked,
      hasLinks: () => this.#linked.size > 0,
    });
  }

  /**
   * Loads the native library and initializes the engine with `options`
   * (an `LLMConfig`, or its `generateOptions()` dictionary with upstream keys).
   * Rejects with `LLMException(LLM_FAILED)` naming every file tried when the
   * library cannot be loaded. On an instance already initialized it returns at
   * once without looking at `options`, as upstream.
   *
   * @example
   * ```ts
   * import { LLMConfig, LLMDataDist, LLMRole } from "llm-datadist";
   * const config = new LLMConfig();
   * config.deviceId = [0, 1];
   * config.syncKvTimeout = 500;
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init(config); // or its option dictionary: config.generateOptions()
   * console.log(dd.kvCacheManager.isInitialized()); // true
   * ```
   */
  init(options: LLMConfig | Record<string, string>): Promise<void> {
    if (this.#state === "finalized") return Promise.reject(finalizedError());
    // As upstream, init() on an initialized instance returns at once (its
    // options are not looked at); one still running is the same init.
    if (this.#state === "initialized") return Promise.resolve();
    if (this.#state === "initializing") return this.#initializing!;
    this.#initializing = this.#init(options);
    return this.#initializing;
  }

  async #init(options: LLMConfig | Record<string, string>): Promise<void> {
    const engineOptions = readEngineOptions(options);
    this.#state = "initializing";
    try {
      const lib = new NativeLibrary(await loadLibrary(this.#backend, this.#libraryPath));
      const engine = Engine.open(lib, this.#role, this.clusterId, engineOptions);
      if (this.#state !== "initializing") {
        engine.finalize(); // finalize() was called while the library loaded
        throw finalizedError();
      }
      this.#engine = engine;
      this.#settings = engineOptions;
      this.#state = "initialized";
    } catch (err) {
      if (this.#state === "initializing") this.#state = "created";
      throw err;
    }
  }

  /** The instance's role (changed by `switchRole`). */
  get role(): LLMRole {
    return this.#role;
  }

  /**
   * The instance's cache manager (calls on it fail until `init()`). An
   * instance initialized with `llm.EnableCacheManager` = "1" has a
   * `cacheManager` instead, and this throws `LLM_PARAM_INVALID`, as upstream.
   */
  get kvCacheManager(): KvCacheManager {
    if (this.#settings?.cacheManager) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        "kvCacheManager is not supported when llm.EnableCacheManager is configured.",
      );
    }
    return this.#manager;
  }

  /**
   * The cache manager of upstream's V2 mode: an instance initialized with
   * `llm.EnableCacheManager` = "1" (`LLMConfig.enableCacheManager`). As
   * upstream, it throws before `init()` (`LLM_FAILED`) and in the default mode
   * (`LLM_PARAM_INVALID`; use `kvCacheManager` there).
   *
   * @example
   * ```ts
   * import { LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * console.log(dd.cacheManager.isInitialized()); // true
   * ```
   */
  get cacheManager(): CacheManager {
    this.#current();
    if (!this.#settings?.cacheManager) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        "cacheManager is not supported when llm.EnableCacheManager is not configured.",
      );
    }
    return this.#cacheManager;
  }

  /**
   * Switches the instance's role (upstream `switch_role`), which needs
   * `llm.EnableSwitchRole` = "1" at `init()` (`LLMConfig.enableSwitchRole`;
   * else `LLM_FEATURE_NOT_ENABLED`). `options` may carry `llm.listenIpInfo`,
   * where a PROMPT or MIX then listens. Without the cache manager, as upstream:
   * the role must change, and a switch to PROMPT needs `llm.listenIpInfo`.
   *
   * @example
   * ```ts
   * import { LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 7n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.EnableSwitchRole": "1" });
   * await dd.switchRole(LLMRole.PROMPT, { "llm.listenIpInfo": "127.0.0.1:0" });
   * console.log(dd.role === LLMRole.PROMPT, dd.listenPort > 0); // true true
   * ```
   */
  async switchRole(role: LLMRole, options?: Record<string, string>): Promise<void> {
    const engine = this.#current();
    if (role !== LLMRole.PROMPT && role !== LLMRole.DECODER && role !== LLMRole.MIX) {
      throw new TypeError(`role must be an LLMRole, got ${describe(role)}`);
    }
    if (options !== undefined && (typeof options !== "object" || options === null || Array.isArray(options))) {
      throw new TypeError(`switch options must be an object of string values, got ${describe(options)}`);
    }
    const record = { ...(options ?? {}) };
    const cacheManagerMode = this.#settings?.cacheManager ?? false;
    if (!cacheManagerMode) {
      if (role === this.#role) {
        throw new LLMException(LLMStatusCode.LLM_PARAM_INVALID, `role not changed, role = ${roleName(role)}`);
      }
      if (role === LLMRole.PROMPT && record[OptionKey.LISTEN_IP_INFO] === undefined) {
        throw new LLMException(
          LLMStatusCode.LLM_PARAM_INVALID,
          'Failed to switch to Prompt, option "llm.listenIpInfo" must be specified',
        );
      }
    }
    const listen = record[OptionKey.LISTEN_IP_INFO];
    if (listen !== undefined && !/^[0-9.]+:\d{1,5}$/.test(requireString(listen, "llm.listenIpInfo"))) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        `llm.listenIpInfo "${listen}" is invalid, format should be "ip:port"`,
      );
    }
    const text = readEngineOptions(record).text;
    await engine.mutex.lock(
      engine.syncKvTimeout,
      undefined,
      () =>
        new LLMException(
          LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT,
          "switchRole: waiting for running cache calls timed out",
        ),
    );
    try {
      engine.assertLive();
      engine.setRole(role, text);
      this.#role = role;
    } finally {
      engine.mutex.unlock();
    }
  }

  /**
   * Releases everything: waiting and running cache calls reject with
   * `LLM_ENGINE_FINALIZED`, views are revoked, memory is freed. Later calls
   * reject with `LLM_ENGINE_FINALIZED`. Calling it again does nothing.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMException, LLMRole, LLMStatusCode } from "llm-datadist";
   * const dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const manager = dd.kvCacheManager;
   * await manager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
   * dd.finalize(); // frees the cache above too
   * try {
   *   await manager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
   * } catch (err) {
   *   console.log(err instanceof LLMException && err.statusCode === LLMStatusCode.LLM_ENGINE_FINALIZED); // true
   * }
   * ```
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
   * and `LLMException(LLM_PARAM_INVALID)` on a PROMPT instance or for a
   * `timeout` of 0 or less.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMClusterInfo, LLMDataDist, LLMRole, LLMStatusCode, Placement } from "llm-datadist";
   * // A PROMPT and a DECODER in one process (the host backend allows it; usually they are two)
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ "llm.listenIpInfo": "127.0.0.1:0", "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const desc = new CacheDesc(1, [1, 16], DataType.DT_INT32, Placement.HOST);
   * const kv = await prompt.kvCacheManager.allocateCache(desc, [new CacheKey(1n, 42n)]);
   * (prompt.kvCacheManager.getCacheTensorViews(kv, 0)[0].data as Int32Array).fill(42);
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * const [status, perCluster] = await decoder.linkClusters([cluster], 3000);
   * console.log(status === LLMStatusCode.LLM_SUCCESS, perCluster); // true [ 0 ]
   * await decoder.unlinkClusters([cluster], 3000);
   * await prompt.kvCacheManager.deallocateCache(kv);
   * ```
   */
  async linkClusters(clusters: LLMClusterInfo[], timeout = 3000): Promise<ClusterStatuses> {
    const list = checkClusters(clusters, timeout);
    const addresses = list.map((cluster) => {
      const remote = cluster.remoteIpInfoList[0];
      if (remote === undefined) {
        throw new ValueError(`cluster ${cluster.remoteClusterId} has no remote ip info: call appendRemoteIpInfo`);
      }
      return `${remote.ip}:${remote.port}`;
    });
    return await this.#eachCluster(
      "linkClusters",
      list,
      timeout,
      LLMStatusCode.LLM_LINK_FAILED,
      async (engine, cluster, op, i) => {
        await engine.link(cluster.remoteClusterId, addresses[i], op);
        this.#linked.add(cluster.remoteClusterId);
        this.#callLinked = true;
      },
    );
  }

  /**
   * Unlinks from clusters linked with `linkClusters`, within `timeout` ms.
   * With `force`, a peer that does not answer is dropped anyway. Resolves to
   * `[status, perClusterStatus]`; `LLM_NOT_YET_LINK` for a cluster not linked.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMClusterInfo, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * // A PROMPT and a DECODER in one process (the host backend allows it; usually they are two)
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ "llm.listenIpInfo": "127.0.0.1:0", "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const desc = new CacheDesc(1, [1, 16], DataType.DT_INT32, Placement.HOST);
   * const kv = await prompt.kvCacheManager.allocateCache(desc, [new CacheKey(1n, 42n)]);
   * (prompt.kvCacheManager.getCacheTensorViews(kv, 0)[0].data as Int32Array).fill(42);
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * const [status, perCluster] = await decoder.unlinkClusters([cluster], 3000);
   * console.log(status, perCluster); // 0 [ 0 ]  (LLM_SUCCESS)
   * await prompt.kvCacheManager.deallocateCache(kv);
   * ```
   */
  async unlinkClusters(clusters: LLMClusterInfo[], timeout = 3000, force = false): Promise<ClusterStatuses> {
    const list = checkClusters(clusters, timeout);
    if (typeof force !== "boolean") throw new TypeError(`force must be a boolean, got ${describe(force)}`);
    return await this.#eachCluster(
      "unlinkClusters",
      list,
      timeout,
      LLMStatusCode.LLM_UNLINK_FAILED,
      async (engine, cluster, op) => {
        try {
          await engine.unlink(cluster.remoteClusterId, force, op);
        } finally {
          // The native side drops the link whatever the peer answered.
          this.#linked.delete(cluster.remoteClusterId);
        }
      },
    );
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

  // Links are not cache calls: they run beside them, one per cluster at once,
  // each bounded by the call's own `timeout`. Running out of it is reported as
  // the call's own failure status (upstream has no timeout status for links).
  async #eachCluster(
    what: string,
    clusters: LLMClusterInfo[],
    timeout: number,
    timeoutStatus: LLMStatusCode,
    call: (engine: Engine, cluster: LLMClusterInfo, op: Operation, index: number) => Promise<void>,
  ): Promise<ClusterStatuses> {
    const engine = this.#current();
    if (engine.role === LLMRole.PROMPT) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        `${what}: a PROMPT instance is linked to, it does not link`,
      );
    }
    const statuses = await Promise.all(clusters.map(async (cluster, i) => {
      try {
        await call(engine, cluster, new Operation(what, timeout, undefined, "timeout"), i);
        return LLMStatusCode.LLM_SUCCESS;
      } catch (err) {
        if (!(err instanceof LLMException) || err.statusCode === LLMStatusCode.LLM_ENGINE_FINALIZED) throw err;
        return err.statusCode === LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT ? timeoutStatus : err.statusCode;
      }
    }));
    return overall(statuses);
  }

  #current(): Engine {
    if (this.#engine) return this.#engine;
    if (this.#state === "finalized") throw finalizedError();
    throw new LLMException(LLMStatusCode.LLM_FAILED, "this LLMDataDist is not initialized: call init() first");
  }
}
