// What test/security.test.ts runs in a child process, where a crash (SIGBUS)
// would otherwise end the test runner. Argument: JSON {action, clusterId}; prints
// one JSON line with what happened.
//   fill:     a PROMPT with a 64 MiB pool allocates 1 MiB caches and writes each
//             whole through its view until allocateCache throws (run inside a
//             mount namespace whose /dev/shm is a 4 MiB tmpfs). Before issue 10
//             the write past the tmpfs's end killed the process with SIGBUS.
//   truncate: a PROMPT and a linked DECODER; every pool object this process can
//             reach is truncated to 0 bytes (by its old name in /dev/shm, or
//             through /proc/self/fd), then the DECODER pulls. Before, SIGBUS.
import { readdirSync, readlinkSync, truncateSync } from "node:fs";
import process from "node:process";
import {
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../../mod.ts";

const config = JSON.parse(process.argv[process.argv.length - 1]) as { action: string; clusterId: string };
const clusterId = BigInt(config.clusterId);
const say = (message: Record<string, unknown>) => console.log(JSON.stringify(message));

if (config.action === "fill") {
  const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
  await prompt.init({ "ge.flowGraphMemMaxSize": String(64 << 20) });
  let caches = 0;
  try {
    for (;;) {
      const cache = await prompt.kvCacheManager.allocateCache(
        new CacheDesc(1, [1 << 20], DataType.DT_UINT8, Placement.HOST),
      );
      (prompt.kvCacheManager.getCacheTensorViews(cache, 0)[0].data as Uint8Array).fill(0xa5);
      caches++;
    }
  } catch (e) {
    say({ caches, status: e instanceof LLMException ? e.statusCode : -1, message: String(e) });
  }
  prompt.finalize();
} else if (config.action === "truncate") {
  const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
  await prompt.init({ "ge.flowGraphMemMaxSize": String(4 << 20), "llm.listenIpInfo": "127.0.0.1:0" });
  const decoder = new LLMDataDist(LLMRole.DECODER, clusterId + 1n);
  await decoder.init({ "ge.flowGraphMemMaxSize": String(4 << 20) });
  const desc = new CacheDesc(1, [2 << 20], DataType.DT_UINT8, Placement.HOST);
  const src = await prompt.kvCacheManager.allocateCache(desc);
  (prompt.kvCacheManager.getCacheTensorViews(src, 0)[0].data as Uint8Array).fill(0x42);
  const dst = await decoder.kvCacheManager.allocateCache(desc);
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
  const [linked] = await decoder.linkClusters([cluster], 5000);
  let truncated = 0;
  const paths = [`/dev/shm/llmdd.${clusterId}.0`];
  try {
    for (const fd of readdirSync("/proc/self/fd")) {
      try {
        if (readlinkSync(`/proc/self/fd/${fd}`).startsWith("/memfd:")) paths.push(`/proc/self/fd/${fd}`);
      } catch { /* closed meanwhile */ }
    }
  } catch { /* no /proc */ }
  for (const path of paths) {
    try {
      truncateSync(path, 0);
      truncated++;
    } catch { /* refused: sealed, or no such name */ }
  }
  let pulled: number = LLMStatusCode.LLM_SUCCESS;
  try {
    await decoder.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(clusterId, src.cacheId, 0), dst);
  } catch (e) {
    pulled = e instanceof LLMException ? e.statusCode : -1;
  }
  const first = (decoder.kvCacheManager.getCacheTensorViews(dst, 0)[0].data as Uint8Array)[0];
  say({ linked, truncated, tried: paths.length, pulled, first });
  decoder.finalize();
  prompt.finalize();
}
