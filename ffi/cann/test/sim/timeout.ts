// Test-only (test/sim/run.sh): with the simulated toolkit's copies delayed past
// syncKvTimeout, getCacheTensors rejects with LLM_WAIT_PROCESS_TIMEOUT promptly,
// the cache can be freed, and finalize waits for the abandoned device copy.
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
await dd.kvCacheManager.deallocateCache(cache);
await dd.finalize();
console.log("deallocate + finalize after an abandoned device copy: ok");
