/**
 * `KvCache`: a handle to one allocated cache (upstream `KvCache`).
 *
 * @module
 */
import type { CacheDesc } from "./cache_desc.ts";
import type { CacheRecord } from "./engine.ts";

const CONSTRUCT = Symbol("KvCache.construct");
const NO_ADDRS: readonly (readonly bigint[])[] = Object.freeze([]);

let recordOf: (cache: KvCache) => CacheRecord;

/**
 * A cache allocated by `KvCacheManager.allocateCache`. Release it with
 * `deallocateCache` or `await using`. After release it is inert: calls that
 * take it reject with `LLMException(LLM_KV_CACHE_NOT_EXIST)`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
 * await using cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT16));
 * console.log(cache.cacheId, cache.perDeviceTensorAddrs[0].length); // 1n 2
 * ```
 */
export class KvCache {
  /** The cache's id: from 1, never reused within an instance. */
  readonly cacheId: bigint;
  /** What the cache holds. */
  readonly cacheDesc: CacheDesc;
  readonly #record: CacheRecord;
  readonly #dispose: (cache: KvCache) => Promise<void>;

  static {
    recordOf = (cache) => cache.#record;
  }

  /** @internal Caches come from `KvCacheManager.allocateCache`; this throws for anyone else. */
  constructor(token: unknown, record: CacheRecord, dispose: (cache: KvCache) => Promise<void>) {
    if (token !== CONSTRUCT) {
      throw new TypeError("KvCache objects are made by KvCacheManager.allocateCache()");
    }
    this.cacheId = record.cacheId;
    this.cacheDesc = record.desc;
    this.#record = record;
    this.#dispose = dispose;
  }

  /**
   * Tensor addresses, `[device][tensor]`, as the native side reports them;
   * empty once the cache is deallocated or its instance finalized (as upstream,
   * which empties them in deallocate_cache), so no stale address is handed on.
   */
  get perDeviceTensorAddrs(): readonly (readonly bigint[])[] {
    return this.#record.lease.revoked ? NO_ADDRS : this.#record.addrs;
  }

  /** Deallocates the cache unless it was already released (or its instance finalized). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.#dispose(this);
  }

  /** `KvCache(id, desc)`. */
  toString(): string {
    return `KvCache(${this.cacheId}, ${this.cacheDesc})`;
  }
}

/** Makes the public handle of a cache record. */
export function newKvCache(record: CacheRecord, dispose: (cache: KvCache) => Promise<void>): KvCache {
  return new KvCache(CONSTRUCT, record, dispose);
}

/** The engine's record of a cache handle. */
export function cacheRecord(cache: KvCache): CacheRecord {
  return recordOf(cache);
}
