// A PROMPT instance in cache-manager mode in its own process, for the
// two-process pullBlocks tests. Argument: JSON {clusterId, poolBytes, caches:
// [{numTensors, shape, dataType, seed, blocksModelId?, keys?: [[reqId, modelId], ...]}]}.
// A cache with blocksModelId is a blocks cache named by
// BlocksCacheKey(clusterId, blocksModelId); the others are caches named by
// CacheKeys from row 0. It fills each with the test pattern, prints
// {"ready": true, "port": N, "cacheIds": [...]} and serves until its stdin closes.
import process from "node:process";
import { BlocksCacheKey, type Cache, CacheDesc, CacheKey, type DataType, LLMDataDist, LLMRole } from "../../mod.ts";
import { fillPattern } from "./pattern.ts";

interface CacheSpec {
  numTensors: number;
  shape: number[];
  dataType: DataType;
  seed: number;
  blocksModelId?: number;
  keys?: [number, number][];
}
const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  poolBytes?: number;
  caches: CacheSpec[];
};
const clusterId = BigInt(config.clusterId);
const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
await prompt.init({
  "llm.EnableCacheManager": "1",
  "llm.MemPoolConfig": JSON.stringify({ memory_size: config.poolBytes ?? 16 << 20 }),
  "llm.listenIpInfo": "127.0.0.1:0",
  "llm.SyncKvCacheWaitTime": "30000",
});
const manager = prompt.cacheManager;
const caches: Cache[] = [];
for (const spec of config.caches) {
  const desc = new CacheDesc(spec.numTensors, spec.shape, spec.dataType);
  const cache = spec.blocksModelId !== undefined
    ? await manager.allocateBlocksCache(desc, new BlocksCacheKey(clusterId, spec.blocksModelId))
    : await manager.allocateCache(desc, (spec.keys ?? []).map(([req, model]) => new CacheKey(clusterId, req, model)));
  for (let t = 0; t < spec.numTensors; t++) {
    for (const view of manager.getCacheTensorViews(cache, t)) {
      fillPattern(new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength), spec.seed, t, view.deviceId);
    }
  }
  caches.push(cache);
}
console.log(JSON.stringify({ ready: true, port: prompt.listenPort, cacheIds: caches.map((c) => String(c.cacheId)) }));

process.stdin.resume();
process.stdin.on("end", async () => {
  for (const cache of caches) {
    if (cache.isBlocksCache) await manager.deallocateBlocksCache(cache);
    else await manager.deallocateCache(cache);
  }
  prompt.finalize();
  process.exit(0);
});
