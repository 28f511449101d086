// A PROMPT instance in cache-manager mode in its own process, for the
// two-process push tests. Argument: JSON {clusterId, remote, poolBytes?,
// caches: [{numTensors, shape, dataType, seed?, blocksModelId?, registered?,
// remoteAccessible?, host?}]}: pooled caches (allocateCache / allocateBlocksCache;
// host: in the host pool, llm.HostMemPoolConfig of 8 MiB)
// or memory this process registers (ArrayBuffers), blocks caches named by
// BlocksCacheKey(clusterId, blocksModelId); each filled with the test pattern
// of `seed`, or zeros. Prints {"ready": true, "port", "cacheIds", "addrs"}
// (addrs: each cache's tensor addresses), then answers lines
// {"dump": cache, "tensor": t} with {"bytes": base64}, until stdin closes.
import { Buffer } from "node:buffer";
import process from "node:process";
import { createInterface } from "node:readline";
import { BlocksCacheKey, type Cache, CacheDesc, type DataType, LLMDataDist, LLMRole, Placement } from "../../mod.ts";
import { fillPattern } from "./pattern.ts";

interface CacheSpec {
  numTensors: number;
  shape: number[];
  dataType: DataType;
  seed?: number;
  blocksModelId?: number;
  registered?: boolean;
  remoteAccessible?: boolean;
  host?: boolean;
}
const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  remote: boolean;
  poolBytes?: number;
  caches: CacheSpec[];
};
const clusterId = BigInt(config.clusterId);
const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
await prompt.init({
  "llm.EnableCacheManager": "1",
  "llm.EnableRemoteCacheAccessible": config.remote ? "1" : "0",
  "llm.MemPoolConfig": JSON.stringify({ memory_size: config.poolBytes ?? 16 << 20 }),
  "llm.listenIpInfo": "127.0.0.1:0",
  "llm.SyncKvCacheWaitTime": "30000",
  ...(config.caches.some((c) => c.host) ? { "llm.HostMemPoolConfig": JSON.stringify({ memory_size: 8 << 20 }) } : {}),
});
const manager = prompt.cacheManager;
const caches: Cache[] = [];
const memory: Uint8Array[][] = [];
for (const spec of config.caches) {
  const desc = new CacheDesc(spec.numTensors, spec.shape, spec.dataType, spec.host ? Placement.HOST : undefined);
  const key = spec.blocksModelId !== undefined ? new BlocksCacheKey(clusterId, spec.blocksModelId) : undefined;
  let cache: Cache;
  let tensors: Uint8Array[];
  if (spec.registered) {
    tensors = Array.from({ length: spec.numTensors }, () => new Uint8Array(desc.size));
    cache = key
      ? await manager.registerBlocksCache(desc, tensors, key, spec.remoteAccessible)
      : await manager.registerCache(desc, tensors, undefined, spec.remoteAccessible);
  } else {
    cache = key ? await manager.allocateBlocksCache(desc, key) : await manager.allocateCache(desc);
    tensors = Array.from({ length: spec.numTensors }, (_, t) => {
      const view = manager.getCacheTensorViews(cache, t)[0];
      return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
    });
  }
  tensors.forEach((bytes, t) => spec.seed === undefined ? bytes.fill(0) : fillPattern(bytes, spec.seed, t, 0));
  caches.push(cache);
  memory.push(tensors);
}
console.log(JSON.stringify({
  ready: true,
  port: prompt.listenPort,
  cacheIds: caches.map((c) => String(c.cacheId)),
  addrs: caches.map((c) => c.tensorAddrs.map(String)),
}));

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const request = JSON.parse(line) as { dump: number; tensor: number };
  const bytes = memory[request.dump][request.tensor];
  console.log(
    JSON.stringify({ bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64") }),
  );
});
lines.on("close", async () => {
  for (const [i, cache] of caches.entries()) {
    if (config.caches[i].registered) await manager.unregisterCache(cache.cacheId);
    else if (cache.isBlocksCache) await manager.deallocateBlocksCache(cache);
    else await manager.deallocateCache(cache);
  }
  prompt.finalize();
  process.exit(0);
});
