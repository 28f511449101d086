// Test-only (test/sim/run.sh): with the simulated toolkit's copies delayed past
// syncKvTimeout, getCacheTensors rejects with LLM_WAIT_PROCESS_TIMEOUT promptly,
// the cache can be freed, and the abandoned device copy is seen finished by
// polling (aclrtStreamQuery) before finalize.
import {
  CacheDesc,
  DataType,
  LLMConfig,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../../../../mod.ts";

const config = new LLMConfig();
config.syncKvTimeout = 100;
const dd = new LLMDataDist(LLMRole.DECODER, 2n, { backend: "cann" });
await dd.init(config);
const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8, Placement.DEVICE));
const start = performance.now();
try {
  await dd.kvCacheManager.getCacheTensors(cache, 0);
  throw new Error("expected a timeout");
} catch (err) {
  if (!(err instanceof LLMException) || err.statusCode !== LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT) throw err;
  console.log(`getCacheTensors rejected after ${(performance.now() - start).toFixed(1)} ms: ${err.message}`);
}
// Once the abandoned copy has ended (LLMDD_SIM_COPY_DELAY_MS), the adapter sees
// it by polling the stream and frees the cache's memory before finalize.
await new Promise((resolve) => setTimeout(resolve, 500));
await dd.kvCacheManager.deallocateCache(cache);
const used = dd.kvCacheManager.poolUsage()[0].usedBytes;
if (used !== 0) throw new Error(`the abandoned copy was never seen finished: ${used} bytes still in use`);
await dd.finalize();
console.log("abandoned device copy reclaimed by polling, then deallocate + finalize: ok");
