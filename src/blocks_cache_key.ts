/**
 * `BlocksCacheKey` (upstream V2): names a PROMPT's blocks cache for DECODERs.
 *
 * @module
 */
import { requireUint64 } from "./validate.ts";

/**
 * Names a blocks cache: the PROMPT's cluster id and a model id. A PROMPT gives
 * it to `allocateBlocksCache` / `registerBlocksCache`; a DECODER names the
 * PROMPT's cache with it.
 *
 * @example
 * ```ts
 * import { BlocksCacheKey } from "llm-datadist";
 * const key = new BlocksCacheKey(1n);          // model id 0
 * const other = new BlocksCacheKey(1n, 2n);
 * console.log(`${key}`, other.modelId);        // BlocksCacheKey(clusterId=1, modelId=0) 2n
 * ```
 */
export class BlocksCacheKey {
  /** The PROMPT's cluster id. */
  readonly clusterId: bigint;
  /** The model id (several models of one PROMPT, e.g. speculative decoding); default 0. */
  readonly modelId: bigint;

  /**
   * A key of `clusterId` and `modelId`; TypeError / ValueError unless both are uint64.
   *
   * @param clusterId the PROMPT's cluster id (uint64)
   * @param modelId the model id (uint64), default 0
   */
  constructor(clusterId: bigint | number, modelId: bigint | number = 0n) {
    this.clusterId = requireUint64(clusterId, "clusterId");
    this.modelId = requireUint64(modelId, "modelId");
  }

  /** Upstream's name of `clusterId`. */
  get promptClusterId(): bigint {
    return this.clusterId;
  }

  /** `BlocksCacheKey(clusterId=…, modelId=…)`. */
  toString(): string {
    return `BlocksCacheKey(clusterId=${this.clusterId}, modelId=${this.modelId})`;
  }
}
