/**
 * Cache keys: how a PROMPT instance names the rows of its caches so that a
 * DECODER can pull them (upstream `CacheKey`, `CacheKeyByIdAndIndex`).
 *
 * @module
 */
import { requireInt32, requireUint64 } from "./validate.ts";
import { ValueError } from "./errors.ts";

/**
 * Names one request's batch row: the PROMPT cluster that computed it, the
 * request id and the model id. Ids are uint64, held as bigint.
 *
 * @example
 * ```ts
 * import { CacheKey } from "./mod.ts";
 * const key = new CacheKey(1n, 42n);
 * console.log(key.promptClusterId, key.reqId, key.modelId); // 1n 42n 0n
 * ```
 */
export class CacheKey {
  /** Cluster id of the PROMPT instance that holds the cache. */
  readonly promptClusterId: bigint;
  /** Request id. */
  readonly reqId: bigint;
  /** Model id. */
  readonly modelId: bigint;

  /** Creates a key; ids are bigint or non-negative safe integers. */
  constructor(promptClusterId: bigint | number, reqId: bigint | number, modelId: bigint | number = 0n) {
    this.promptClusterId = requireUint64(promptClusterId, "promptClusterId");
    this.reqId = requireUint64(reqId, "reqId");
    this.modelId = requireUint64(modelId, "modelId");
  }

  /** `CacheKey(cluster, req, model)`. */
  toString(): string {
    return `CacheKey(${this.promptClusterId}, ${this.reqId}, ${this.modelId})`;
  }
}

/**
 * Names a batch row by cache id: cluster `clusterId`'s cache `cacheId`, row
 * `batchIndex`.
 *
 * @example
 * ```ts
 * import { CacheKeyByIdAndIndex } from "./mod.ts";
 * const key = new CacheKeyByIdAndIndex(1n, 7n, 2);
 * console.log(key.cacheId, key.batchIndex); // 7n 2
 * ```
 */
export class CacheKeyByIdAndIndex {
  /** Cluster id of the instance that holds the cache. */
  readonly clusterId: bigint;
  /** The cache's id. */
  readonly cacheId: bigint;
  /** The batch row. */
  readonly batchIndex: number;

  /** Creates a key; `batchIndex` is a non-negative int32. */
  constructor(clusterId: bigint | number, cacheId: bigint | number, batchIndex = 0) {
    this.clusterId = requireUint64(clusterId, "clusterId");
    this.cacheId = requireUint64(cacheId, "cacheId");
    this.batchIndex = requireInt32(batchIndex, "batchIndex");
    if (this.batchIndex < 0) throw new ValueError(`batchIndex must be >= 0, got ${batchIndex}`);
  }

  /** `CacheKeyByIdAndIndex(cluster, cache, index)`. */
  toString(): string {
    return `CacheKeyByIdAndIndex(${this.clusterId}, ${this.cacheId}, ${this.batchIndex})`;
  }
}
