/**
 * `Cache`: a handle to one cache of the cache manager (upstream V2 `Cache`):
 * allocated, registered, or a blocks (paged) cache.
 *
 * @module
 */
import type { CacheDesc } from "./cache_desc.ts";
import type { CacheRecord } from "./engine.ts";

const CONSTRUCT = Symbol("Cache.construct");
const NO_ADDRS: readonly bigint[] = Object.freeze([]);

let recordOf: (cache: Cache) => CacheRecord;

/**
 * A cache made by `CacheManager`: `allocateCache`, `allocateBlocksCache`,
 * `registerCache` or `registerBlocksCache`. Upstream's users do not construct
 * it, nor do ours. Once deallocated or unregistered it is inert: calls that
 * take it reject with `LLMException(LLM_KV_CACHE_NOT_EXIST)`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
 * const cache = await dd.cacheManager.allocateBlocksCache(new CacheDesc(2, [8, 64], DataType.DT_FLOAT16));
 * console.log(cache.cacheId, cache.isBlocksCache, cache.tensorAddrs.length); // 1n true 2
 * ```
 */
export class Cache {
  /** The cache's id: from 1, never reused within an instance. */
  readonly cacheId: bigint;
  /** What the cache holds (a blocks cache: dimension `batchDimIndex` counts blocks). */
  readonly cacheDesc: CacheDesc;
  /** Whether the cache is a blocks cache (`allocateBlocksCache`, `registerBlocksCache`). */
  readonly isBlocksCache: boolean;
  readonly #record: CacheRecord;

  static {
    recordOf = (cache) => cache.#record;
  }

  /** @internal Caches come from `CacheManager`; this throws for anyone else. */
  constructor(token: unknown, record: CacheRecord) {
    if (token !== CONSTRUCT) throw new TypeError("Cache objects are made by CacheManager");
    this.cacheId = record.cacheId;
    this.cacheDesc = record.desc;
    this.isBlocksCache = record.isBlocksCache ?? false;
    this.#record = record;
  }

  /**
   * The tensors' addresses on the first device (upstream's `tensor_addrs`);
   * empty once the cache is deallocated, unregistered or its instance
   * finalized, as upstream empties them.
   */
  get tensorAddrs(): readonly bigint[] {
    return this.#record.lease.revoked ? NO_ADDRS : this.#record.addrs[0];
  }

  /** Whether the cache is memory the program registered (`registerCache`, `registerBlocksCache`). */
  get isRegistered(): boolean {
    return this.#record.registered !== undefined;
  }

  /** `Cache(id, desc, blocks)`. */
  toString(): string {
    return `Cache(cacheId = ${this.cacheId}, ${this.cacheDesc}, isBlocksCache = ${this.isBlocksCache})`;
  }
}

/** Makes the public handle of a cache record. */
export function newCache(record: CacheRecord): Cache {
  return new Cache(CONSTRUCT, record);
}

/** The engine's record of a cache handle. */
export function recordOfCache(cache: Cache): CacheRecord {
  return recordOf(cache);
}
