/**
 * The CANN backend on an Ascend machine: KV caches in device memory, read back
 * with getCacheTensors (one host copy per device), copied on the device with
 * copyCache, and pulled from a PROMPT process by CacheKeyByIdAndIndex.
 *
 *   node --import ./test/support/register.mjs ffi/cann/example/device_cache.ts            one process
 *   ... device_cache.ts prompt  <hostIp:port>                                            PROMPT: allocates, waits
 *   ... device_cache.ts decoder <promptHostIp:port> <promptCacheId>                      DECODER: links, pulls
 * (or `deno run --allow-ffi --allow-env --allow-read ffi/cann/example/device_cache.ts ...`,
 *  or `bun ffi/cann/example/device_cache.ts ...`)
 *
 * Environment: LLMDD_DEVICE_ID (default 0); LLMDD_LOCAL_IP (this host's IP, which a V2
 * DECODER's link needs unless llm.LocalCommRes is set); LLMDD_EXAMPLE_BACKEND=host runs the
 * same steps on the embedded host backend (for trying it without an NPU).
 * Device memory is not host-accessible, so the caches hold whatever the device
 * memory held: on a real deployment the model writes them through
 * `perDeviceTensorAddrs`. What is shown is the data path and its timings.
 */
import process from "node:process";
import {
  type Backend,
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMConfig,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../../../mod.ts";

const backend: Backend = process.env.LLMDD_EXAMPLE_BACKEND === "host" ? "host" : "cann";
const deviceId = Number(process.env.LLMDD_DEVICE_ID ?? "0");
const PROMPT_CLUSTER = 1n;
const DECODER_CLUSTER = 2n;
const ms = (start: number) => `${(performance.now() - start).toFixed(3)} ms`;
// K and V of one layer: [batch 4, seq 128, hidden 512] FP16 = 512 KiB per tensor.
const desc = new CacheDesc(2, [4, 128, 512], DataType.DT_FLOAT16, Placement.DEVICE);

function config(listen?: string): LLMConfig {
  const c = new LLMConfig();
  c.deviceId = deviceId;
  c.syncKvTimeout = 3000;
  if (listen !== undefined) c.listenIpInfo = listen;
  c.geOptions = { "ge.flowGraphMemMaxSize": String(256 << 20) };
  // V2 links need this side's address unless llm.LocalCommRes is set (upstream's local_ip_infos).
  const localIp = process.env.LLMDD_LOCAL_IP;
  if (localIp) c.geOptions["llmdd.cann.localIpInfo"] = localIp;
  return c;
}

const [mode = "single", address = "", cacheIdText = "1"] = process.argv.slice(2).filter((a) => !a.endsWith(".ts"));

if (mode === "prompt") {
  await using dd = new LLMDataDist(LLMRole.PROMPT, PROMPT_CLUSTER, { backend });
  await dd.init(config(address));
  await using cache = await dd.kvCacheManager.allocateCache(desc);
  console.log(`PROMPT ${backend}: listening on ${address}, cache ${cache.cacheId} at`, cache.perDeviceTensorAddrs);
  console.log("waiting for a DECODER to pull; Ctrl-C to stop");
  // A timer keeps the event loop (and so the engine) alive until Ctrl-C.
  const alive = setInterval(() => {}, 1 << 30);
  await new Promise((resolve) => process.once("SIGINT", resolve));
  clearInterval(alive);
} else {
  await using dd = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER, { backend });
  await dd.init(config());
  const manager = dd.kvCacheManager;
  console.log(`${backend} backend, device ${deviceId}, options ${JSON.stringify(config().generateOptions())}`);

  let start = performance.now();
  await using cache = await manager.allocateCache(desc);
  console.log(
    `allocateCache(${desc}) → cache ${cache.cacheId} in ${ms(start)}; tensor addresses`,
    cache.perDeviceTensorAddrs,
  );

  // getCacheTensors: one host copy per device (device → pinned staging → JS memory).
  for (const index of [0, 1]) {
    start = performance.now();
    const tensors = await manager.getCacheTensors(cache, index);
    for (const t of tensors) {
      console.log(
        `getCacheTensors(cache, ${index}) device ${t.deviceId}: ${t.shape} ${t.byteLength} bytes in ${ms(start)}`,
      );
    }
  }

  // Views need host-accessible memory: on CANN they are refused with a clear error.
  try {
    manager.getCacheTensorViews(cache, 0);
    console.log("getCacheTensorViews: views are available on this backend");
  } catch (err) {
    if (!(err instanceof LLMException) || err.statusCode !== LLMStatusCode.LLM_FEATURE_NOT_ENABLED) throw err;
    console.log(`getCacheTensorViews: ${err.message}`);
  }

  // copyCache: row 0 of a 1-batch cache into row 2 of the 4-batch cache, on the device.
  await using one = await manager.allocateCache(new CacheDesc(2, [1, 128, 512], DataType.DT_FLOAT16, Placement.DEVICE));
  start = performance.now();
  await manager.copyCache(cache, one, 2, 0);
  console.log(`copyCache(cache row 2 ← one row 0) in ${ms(start)}`);

  if (mode === "decoder") {
    const prompt = new LLMClusterInfo();
    prompt.remoteClusterId = PROMPT_CLUSTER;
    const [ip, port] = address.split(":");
    prompt.appendRemoteIpInfo(ip, Number(port));
    const [status] = await dd.linkClusters([prompt], 5000);
    if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`linkClusters failed: 0x${status.toString(16)}`);
    start = performance.now();
    await manager.pullCache(new CacheKeyByIdAndIndex(PROMPT_CLUSTER, BigInt(cacheIdText), 0), cache, 1);
    console.log(`pullCache(cluster ${PROMPT_CLUSTER}, cache ${cacheIdText}, row 0 → row 1) in ${ms(start)}`);
    await dd.unlinkClusters([prompt], 5000);
  }
  console.log("pool usage", manager.poolUsage());
}
