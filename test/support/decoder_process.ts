// A DECODER in its own process that pulls a cache by id from a PROMPT over and
// over, for the test that kills a DECODER in the middle of a pull.
// Argument: JSON {clusterId, promptClusterId, port, numTensors, shape, dataType, cacheId}.
import process from "node:process";
import {
  CacheDesc,
  CacheKeyByIdAndIndex,
  type DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
} from "../../mod.ts";

const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  promptClusterId: string;
  port: number;
  numTensors: number;
  shape: number[];
  dataType: DataType;
  cacheId: string;
  poolBytes?: number;
};
const decoder = new LLMDataDist(LLMRole.DECODER, BigInt(config.clusterId));
await decoder.init({
  "ge.flowGraphMemMaxSize": String(config.poolBytes ?? 64 << 20),
  "llm.SyncKvCacheWaitTime": "60000",
});
const cluster = new LLMClusterInfo();
cluster.remoteClusterId = BigInt(config.promptClusterId);
cluster.appendRemoteIpInfo("127.0.0.1", config.port);
const [status] = await decoder.linkClusters([cluster], 5000);
if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: ${status}`);
const cache = await decoder.kvCacheManager.allocateCache(
  new CacheDesc(config.numTensors, config.shape, config.dataType),
);
const key = new CacheKeyByIdAndIndex(BigInt(config.promptClusterId), BigInt(config.cacheId), 0);
console.log(JSON.stringify({ pulling: true }));
for (;;) await decoder.kvCacheManager.pullCache(key, cache, 0);
