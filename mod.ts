/**
 * # llm-datadist
 *
 * The KV-cache manager of Huawei CANN's LLM-DataDist for TypeScript, on Deno,
 * Bun and Node through FFI. Allocate KV caches of equal tensors on devices,
 * read them with `getCacheTensors`, copy them, and (with a PROMPT and a
 * DECODER instance) move them between prefill and decode.
 *
 * The default "host" backend keeps each device's memory in a host pool and
 * needs no accelerator; the "cann" backend runs on Ascend NPUs.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
 *
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init({ "ge.exec.deviceId": "0", "llm.SyncKvCacheWaitTime": "1000" });
 * const manager = dd.kvCacheManager;
 *
 * const desc = new CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST);
 * await using cache = await manager.allocateCache(desc);
 * (manager.getCacheTensorViews(cache, 0)[0].data as Float32Array).fill(0.5); // write in place
 *
 * const tensors = await manager.getCacheTensors(cache, 0); // one copy per device
 * console.log(tensors[0].shape, tensors[0].data[0]); // [ 4, 8 ] 0.5
 * ```
 *
 * @module
 */
export { BlocksCacheKey } from "./src/blocks_cache_key.ts";
export { Cache } from "./src/cache.ts";
export { CacheDesc } from "./src/cache_desc.ts";
export { CacheKey, CacheKeyByIdAndIndex } from "./src/cache_key.ts";
export { type IpInfo, LLMClusterInfo } from "./src/cluster_info.ts";
export { LLMConfig, LlmddOptionKey, type Transport } from "./src/config.ts";
export { DataType, type TensorData } from "./src/data_type.ts";
export { LLMRole, Placement } from "./src/enums.ts";
export { LLMException, ValueError } from "./src/errors.ts";
export { KvCache } from "./src/kv_cache.ts";
export { type CallOptions, KvCacheManager, type PoolUsage } from "./src/kv_cache_manager.ts";
export {
  type BlockCopies,
  type BlockMapping,
  CacheManager,
  type LayerRange,
  type PullOptions,
  type PushOptions,
  type TensorMemory,
} from "./src/cache_manager.ts";
export { CacheTask, type LayerSynchronizer, TransferConfig, TransferWithCacheKeyConfig } from "./src/transfer.ts";
export { MemInfo, MemType } from "./src/mem_info.ts";
export { type ClusterStatuses, LLMDataDist, type LLMDataDistOptions } from "./src/llm_datadist.ts";
export type { Backend } from "./src/native/load.ts";
export { LLMStatusCode, statusName } from "./src/status.ts";
export { Tensor } from "./src/tensor.ts";
