// A PROMPT instance in cache-manager mode in its own process that changes its
// caches when told, for the repeat-pull tests (pull_repeat.test.ts). Argument:
// JSON {clusterId, poolBytes?}. Prints {"ready": true, "port": N}, then reads
// one JSON command per line from stdin and answers each with one line:
//   {op: "blocks", model, numTensors, shape, seed}  a blocks cache named by
//       BlocksCacheKey(clusterId, model), filled with the pattern of seed
//       (the one that held that key is deallocated first) → {cacheId}
//   {op: "cache", numTensors, shape, seed}          a cache without keys → {cacheId}
//   {op: "fill", cacheId, seed}                     new contents → {}
//   {op: "free", cacheId}                           deallocated → {}
// Shapes are [blocks or rows, bytes] of DT_UINT8. It ends when stdin closes.
import process from "node:process";
import { createInterface } from "node:readline";
import { BlocksCacheKey, type Cache, CacheDesc, DataType, LLMDataDist, LLMRole } from "../../mod.ts";
import { fillPattern } from "./pattern.ts";

const config = JSON.parse(process.argv[process.argv.length - 1]) as { clusterId: string; poolBytes?: number };
const clusterId = BigInt(config.clusterId);
const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
await prompt.init({
  "llm.EnableCacheManager": "1",
  "llm.MemPoolConfig": JSON.stringify({ memory_size: config.poolBytes ?? 4 << 20 }),
  "llm.listenIpInfo": "127.0.0.1:0",
  "llm.SyncKvCacheWaitTime": "30000",
  // Its pool taken whole at init (and resident): pulls must work the same.
  "llmdd.reservePools": "1",
});
const manager = prompt.cacheManager;
const caches = new Map<string, Cache>();
const byModel = new Map<number, Cache>();

function fill(cache: Cache, seed: number): void {
  for (let t = 0; t < cache.cacheDesc.numTensors; t++) {
    for (const view of manager.getCacheTensorViews(cache, t)) {
      fillPattern(new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength), seed, t, view.deviceId);
    }
  }
}

async function handle(command: Record<string, unknown>): Promise<Record<string, unknown>> {
  switch (command.op) {
    case "blocks": {
      const model = command.model as number;
      const old = byModel.get(model);
      if (old !== undefined) {
        await manager.deallocateBlocksCache(old);
        caches.delete(String(old.cacheId));
      }
      const desc = new CacheDesc(command.numTensors as number, command.shape as number[], DataType.DT_UINT8);
      const cache = await manager.allocateBlocksCache(desc, new BlocksCacheKey(clusterId, model));
      fill(cache, command.seed as number);
      byModel.set(model, cache);
      caches.set(String(cache.cacheId), cache);
      return { cacheId: String(cache.cacheId) };
    }
    case "cache": {
      const desc = new CacheDesc(command.numTensors as number, command.shape as number[], DataType.DT_UINT8);
      const cache = await manager.allocateCache(desc);
      fill(cache, command.seed as number);
      caches.set(String(cache.cacheId), cache);
      return { cacheId: String(cache.cacheId) };
    }
    case "fill": {
      fill(caches.get(command.cacheId as string)!, command.seed as number);
      return {};
    }
    case "free": {
      const cache = caches.get(command.cacheId as string)!;
      caches.delete(command.cacheId as string);
      for (const [model, c] of byModel) if (c === cache) byModel.delete(model);
      if (cache.isBlocksCache) await manager.deallocateBlocksCache(cache);
      else await manager.deallocateCache(cache);
      return {};
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
}

console.log(JSON.stringify({ ready: true, port: prompt.listenPort }));
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    try {
      console.log(JSON.stringify({ ok: true, ...(await handle(JSON.parse(line))) }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e) }));
    }
  });
});
lines.on("close", () => {
  queue.then(() => {
    prompt.finalize();
    process.exit(0);
  });
});
