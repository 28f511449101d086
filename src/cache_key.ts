/**
 * Cache keys: how a PROMPT instance names the rows of its caches so that a
 * DECODER can pull them (upstream `CacheKey`, `CacheKeyByIdAndIndex`).
 *
 * @module
 */
import { describe, requireIntIn, requireUint64 } from "./validate.ts";
import { LLMException, ValueError } from "./errors.ts";
import { LLMStatusCode } from "./status.ts";

/**
 * Upstream's "no id" (`_INVALID_ID = 2**64 - 1` in `v2/llm_types.py`): the
 * default `prefixId`, and a `reqId` that names no request.
 */
export const INVALID_ID: bigint = 0xFFFF_FFFF_FFFF_FFFFn;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Upstream check_int64: an int in [-2^63, 2^63 - 1].
function requireInt64(value: unknown, name: string): bigint {
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === "number" && Number.isInteger(value)) {
    throw new ValueError(`${name} must be a safe integer (or a bigint), got ${value}`);
  }
  if (typeof value !== "bigint") throw new TypeError(`${name} must be a bigint or an integer, got ${describe(value)}`);
  if (value < INT64_MIN || value > INT64_MAX) {
    throw new ValueError(`${name} must be in [-2^63, 2^63 - 1], got ${value}n`);
  }
  return value;
}

/**
 * Names one request's batch row: the PROMPT cluster that computed it, the
 * request id, the model id and, as upstream, a prefix id (default 2^64 - 1,
 * upstream's "none"). Ids are uint64, held as bigint.
 *
 * @example
 * ```ts
 * import { CacheKey } from "llm-datadist";
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
  /** Prefix id (upstream `prefix_id`); 2^64 - 1 (upstream's "none") when the key names no prefix. */
  readonly prefixId: bigint;

  /**
   * Creates a key; ids are bigint or non-negative safe integers. As upstream,
   * leaving out `promptClusterId` or `reqId`, or passing more than four
   * arguments, is `LLMException(LLM_PARAM_INVALID)`.
   */
  constructor(
    promptClusterId: bigint | number,
    reqId: bigint | number,
    modelId: bigint | number = 0n,
    prefixId: bigint | number = INVALID_ID,
  ) {
    // Upstream (v2/llm_types.py CacheKey.__init__) counts its arguments and
    // requires the first two before it checks any type.
    if (arguments.length > 4) {
      throw new LLMException(
        LLMStatusCode.LLM_PARAM_INVALID,
        `CacheKey takes at most 4 arguments, got ${arguments.length}`,
      );
    }
    for (const [name, value] of [["promptClusterId", promptClusterId], ["reqId", reqId]] as const) {
      if (value === undefined) throw new LLMException(LLMStatusCode.LLM_PARAM_INVALID, `CacheKey: ${name} is required`);
    }
    this.promptClusterId = requireUint64(promptClusterId, "promptClusterId");
    this.reqId = requireUint64(reqId, "reqId");
    this.modelId = requireUint64(modelId, "modelId");
    this.prefixId = requireUint64(prefixId, "prefixId");
  }

  /** `CacheKey(cluster, req, model)`, with `, prefix` when a prefix id is set. */
  toString(): string {
    const prefix = this.prefixId === INVALID_ID ? "" : `, ${this.prefixId}`;
    return `CacheKey(${this.promptClusterId}, ${this.reqId}, ${this.modelId}${prefix})`;
  }
}

/**
 * Names a batch row by cache id: cluster `clusterId`'s cache `cacheId`, row
 * `batchIndex`. As upstream, `clusterId` is uint64, `cacheId` int64 and
 * `batchIndex` uint32.
 *
 * @example
 * ```ts
 * import { CacheKeyByIdAndIndex } from "llm-datadist";
 * const key = new CacheKeyByIdAndIndex(1n, 7n, 2);
 * console.log(key.cacheId, key.batchIndex); // 7n 2
 * ```
 */
export class CacheKeyByIdAndIndex {
  /** Cluster id of the instance that holds the cache. */
  readonly clusterId: bigint;
  /** The cache's id (int64 as upstream; a cache's own id is from 1). */
  readonly cacheId: bigint;
  /** The batch row (uint32). */
  readonly batchIndex: number;

  /** Creates a key; `cacheId` is an int64, `batchIndex` a uint32 (upstream `check_int64`, `check_uint32`). */
  constructor(clusterId: bigint | number, cacheId: bigint | number, batchIndex = 0) {
    this.clusterId = requireUint64(clusterId, "clusterId");
    this.cacheId = requireInt64(cacheId, "cacheId");
    this.batchIndex = requireIntIn(batchIndex, "batchIndex", 0, 0xFFFFFFFF);
  }

  /** `CacheKeyByIdAndIndex(cluster, cache, index)`. */
  toString(): string {
    return `CacheKeyByIdAndIndex(${this.clusterId}, ${this.cacheId}, ${this.batchIndex})`;
  }
}
