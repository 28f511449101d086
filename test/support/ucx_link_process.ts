// A DECODER in its own process, for test/ucx.test.ts: run with an environment
// (LLMDD_UCX_LIBRARY naming a missing file shows what a machine without UCX
// answers) or in a network namespace of the test's choosing. It links to a
// PROMPT, optionally pulls one row of a cache by id and checks it against the
// test pattern, and says how it went.
// Argument: JSON {clusterId, promptClusterId, address?, port, transport?,
// secret?, pull?: {cacheId, numTensors, shape, dataType, seed}}; prints
// {"status": N, "message": "...", "checked": bytes}.
import process from "node:process";
import { CacheDesc, CacheKeyByIdAndIndex, type DataType, LLMClusterInfo, LLMDataDist, LLMRole } from "../../mod.ts";
import { firstMismatch } from "./pattern.ts";

const config = JSON.parse(process.argv[process.argv.length - 1]) as {
  clusterId: string;
  promptClusterId: string;
  address?: string;
  port: number;
  transport?: string;
  secret?: string;
  pull?: { cacheId: string; numTensors: number; shape: number[]; dataType: DataType; seed: number };
};
const say = (m: Record<string, unknown>) => console.log(JSON.stringify(m));
const decoder = new LLMDataDist(LLMRole.DECODER, BigInt(config.clusterId));
try {
  // With llmdd.transport=ucx a missing UCX is reported by init (linkClusters
  // answers statuses only); with auto, by the link to a remote PROMPT.
  await decoder.init({
    "ge.flowGraphMemMaxSize": String(16 << 20),
    "llm.SyncKvCacheWaitTime": "10000",
    "llmdd.transport": config.transport ?? "ucx",
    ...(config.secret ? { "llmdd.linkSecret": config.secret } : {}),
  });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = BigInt(config.promptClusterId);
  cluster.appendRemoteIpInfo(config.address ?? "127.0.0.1", config.port);
  const [status] = await decoder.linkClusters([cluster], 10_000);
  let checked = 0;
  if (status === 0 && config.pull) {
    const p = config.pull;
    const m = decoder.kvCacheManager;
    const target = await m.allocateCache(new CacheDesc(p.numTensors, p.shape, p.dataType));
    await m.pullCache(new CacheKeyByIdAndIndex(cluster.remoteClusterId, BigInt(p.cacheId), 0), target);
    const row = target.cacheDesc.size / target.cacheDesc.batchSize;
    for (let t = 0; t < p.numTensors; t++) {
      const view = m.getCacheTensorViews(target, t)[0];
      const bytes = new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
      const bad = firstMismatch(bytes, 0, row, p.seed, t, 0, 0);
      if (bad !== -1) throw new Error(`tensor ${t}: byte ${bad} differs`);
      checked += row;
    }
    await m.deallocateCache(target);
  }
  say({ status, message: "linkClusters", checked });
  decoder.finalize();
} catch (e) {
  const err = e as { statusCode?: number; message?: string };
  say({ status: err.statusCode ?? -1, message: err.message ?? String(e) });
}
