// A PROMPT instance in its own process, for the two-process tests and the demo.
// Argument: JSON {clusterId, devices, poolBytes, listen?, secret?, caches:
// [{numTensors, shape, dataType, seed, keys: [[reqId, modelId], ...]}]}. It
// listens on `listen` (default 127.0.0.1), any port, with llmdd.linkSecret
// `secret` if given, fills each cache with the test pattern, prints
// {"ready": true, "port": N, "cacheIds": [...]} and serves until its stdin closes.
import process from "node:process";
import { CacheDesc, CacheKey, type DataType, type KvCache, LLMDataDist, LLMRole } from "../../mod.ts";
import { fillPattern } from "./pattern.ts";

interface CacheSpec {
  numTensors: number;
  shape: number[];
  dataType: DataType;
  seed: number;
  keys?: [number, number][];
}
const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  devices?: number[];
  poolBytes?: number;
  caches: CacheSpec[];
  listen?: string;
  secret?: string;
};
const clusterId = BigInt(config.clusterId);
const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
await prompt.init({
  "ge.exec.deviceId": (config.devices ?? [0]).join(";"),
  "ge.flowGraphMemMaxSize": String(config.poolBytes ?? 64 << 20),
  "llm.listenIpInfo": `${config.listen ?? "127.0.0.1"}:0`,
  "llm.SyncKvCacheWaitTime": "30000",
  ...(config.secret ? { "llmdd.linkSecret": config.secret } : {}),
});
const manager = prompt.kvCacheManager;
// Kept until the end: a cache's id must be released (deallocateCache) for its
// memory to return to the pool, even after its keys were consumed by pulls.
const caches: KvCache[] = [];
const cacheIds: string[] = [];
for (const spec of config.caches) {
  const keys = (spec.keys ?? []).map(([req, model]) => new CacheKey(clusterId, req, model));
  const cache = await manager.allocateCache(new CacheDesc(spec.numTensors, spec.shape, spec.dataType), keys);
  for (let t = 0; t < spec.numTensors; t++) {
    for (const view of manager.getCacheTensorViews(cache, t)) {
      fillPattern(new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength), spec.seed, t, view.deviceId);
    }
  }
  caches.push(cache);
  cacheIds.push(String(cache.cacheId));
}
console.log(JSON.stringify({ ready: true, port: prompt.listenPort, cacheIds, pid: process.pid }));

// Serve until told to stop (stdin closes); report pool usage on request.
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk: string) => {
  for (const line of chunk.split("\n").filter(Boolean)) {
    const message = JSON.parse(line);
    if (message.cmd === "usage") {
      console.log(JSON.stringify({ usage: manager.poolUsage().map((pool) => pool.usedBytes) }));
    }
  }
});
process.stdin.on("end", async () => {
  for (const cache of caches) await manager.deallocateCache(cache);
  prompt.finalize();
  process.exit(0);
});
