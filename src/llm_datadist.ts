/**
 * `LLMDataDist`: one instance of the KV-cache manager (upstream
 * `LLMDataDist`), on the host backend or on CANN.
 *
 * @module
 */
import { type LLMConfig, readEngineOptions } from "./config.ts";
import { Engine } from "./engine.ts";
import { LLMRole } from "./enums.ts";
import { LLMException, ValueError } from "./errors.ts";
import { type KvCacheManager, newKvCacheManager } from "./kv_cache_manager.ts";
import { type Backend, loadLibrary } from "./native/load.ts";
import { LLMStatusCode } from "./status.ts";
import { describe, requireString, requireUint64 } from "./validate.ts";

/** Options of the {@link LLMDataDist} constructor. */
export interface LLMDataDistOptions {
  /** `"host"` (default): the embedded host backend; `"cann"`: the CANN adapter. */
  backend?: Backend;
  /** The native library file to load, instead of the usual search. */
  libraryPath?: string;
}

type State = "created" | "initializing" | "initialized" | "finalized";

const encoder = new TextEncoder();

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
    if (this.#state === "finalized") throw this.#finalizedError();
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
      const engine = new Engine(lib, out[0], engineOptions.deviceIds, engineOptions.syncKvTimeout);
      if (this.#state !== "initializing") {
        engine.finalize(); // finalize() was called while the library loaded
        throw this.#finalizedError();
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

  /** Finalizes the instance (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    this.finalize();
    return Promise.resolve();
  }

  #current(): Engine {
    if (this.#engine) return this.#engine;
    if (this.#state === "finalized") throw this.#finalizedError();
    throw new LLMException(LLMStatusCode.LLM_FAILED, "this LLMDataDist is not initialized: call init() first");
  }

  #finalizedError(): LLMException {
    return new LLMException(LLMStatusCode.LLM_ENGINE_FINALIZED, "this LLMDataDist was finalized");
  }
}
