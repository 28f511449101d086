// Where this library once differed from upstream LLM-DataDist (hicann/hixl:
// the v1 kv_cache_manager.py, v2/llm_datadist.py, the C++ CacheManager) and now
// behaves as upstream does, one test per rule. Runs on Deno, Bun and Node.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  Placement,
  ValueError,
} from "../mod.ts";
import { Operation } from "../src/operation.ts";
import { freshClusterId, openInstance, rejectsWith, rejectsWithStatus } from "./helpers.ts";

const PADDING = 2n ** 64n - 1n;
const invalid = LLMStatusCode.LLM_PARAM_INVALID;

async function openPrompt(): Promise<LLMDataDist> {
  const prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
  await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llm.listenIpInfo": "127.0.0.1:0" });
  return prompt;
}

function clusterOf(prompt: LLMDataDist): LLMClusterInfo {
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = prompt.clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
  return cluster;
}

describe("the padding key (reqId 2^64 - 1), as upstream's allocate_cache documents it", () => {
  test("is not registered: any number of rows and caches carry it, and it pins no memory", async () => {
    await using prompt = await openPrompt();
    const manager = prompt.kvCacheManager;
    const pad = new CacheKey(prompt.clusterId, PADDING);
    const desc = new CacheDesc(1, [4, 16], DataType.DT_UINT8);
    const a = await manager.allocateCache(desc, [pad, pad, pad, new CacheKey(prompt.clusterId, 3n)]);
    const b = await manager.allocateCache(desc, [pad, new CacheKey(prompt.clusterId, 1n)]);
    const c = await manager.allocateCache(desc, [pad]);
    await manager.deallocateCache(c); // its only key was padding: the memory is free at once
    await manager.deallocateCache(b);
    await manager.deallocateCache(a);
    await manager.removeCacheKey(new CacheKey(prompt.clusterId, 3n));
    await manager.removeCacheKey(new CacheKey(prompt.clusterId, 1n));
    assert.equal(manager.poolUsage()[0].usedBytes, 0);
  });

  test("rows after a padding row keep their keys: a pull finds the right row", async () => {
    await using prompt = await openPrompt();
    const desc = new CacheDesc(1, [3, 8], DataType.DT_UINT8, Placement.HOST);
    const key = new CacheKey(prompt.clusterId, 7n);
    const source = await prompt.kvCacheManager.allocateCache(desc, [new CacheKey(prompt.clusterId, PADDING), key]);
    const view = prompt.kvCacheManager.getCacheTensorViews(source, 0)[0].data as Uint8Array;
    view.forEach((_, i) => view[i] = Math.floor(i / 8) + 1); // row r holds r + 1
    await using decoder = await openInstance({ poolBytes: 1 << 20 });
    const [status] = await decoder.linkClusters([clusterOf(prompt)], 5000);
    assert.equal(status, LLMStatusCode.LLM_SUCCESS);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 8], DataType.DT_UINT8));
    await decoder.kvCacheManager.pullCache(key, target, 0);
    const [tensor] = await decoder.kvCacheManager.getCacheTensors(target, 0);
    assert.deepEqual([...tensor.data], new Array(8).fill(2), "row 1 of the source");
    await decoder.unlinkClusters([clusterOf(prompt)], 5000);
  });

  test("pulling it is LLM_PARAM_INVALID, as is pulling a key with both a request and a prefix", async () => {
    await using decoder = await openInstance();
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 8], DataType.DT_UINT8));
    await rejectsWithStatus(decoder.kvCacheManager.pullCache(new CacheKey(1n, PADDING), target), invalid, /padding/);
    await rejectsWithStatus(decoder.kvCacheManager.pullCache(new CacheKey(1n, 2n, 0n, 3n), target), invalid, /prefix/);
  });
});

describe("LLMDataDist, as v2/llm_datadist.py", () => {
  test("a second init() on an initialized instance returns without error", async () => {
    await using dd = await openInstance();
    await dd.init({});
    await dd.init({ "ge.exec.deviceId": "not even valid" });
    assert.equal(dd.kvCacheManager.isInitialized(), true);
  });

  test("linkClusters / unlinkClusters: a timeout of 0 or less is LLM_PARAM_INVALID, outside int32 a ValueError", async () => {
    await using decoder = await openInstance();
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = 1n;
    cluster.appendRemoteIpInfo("127.0.0.1", 1);
    for (const timeout of [0, -1, -(2 ** 31)]) {
      await rejectsWithStatus(decoder.linkClusters([cluster], timeout), invalid, /timeout/);
      await rejectsWithStatus(decoder.unlinkClusters([cluster], timeout), invalid, /timeout/);
    }
    await rejectsWith(decoder.unlinkClusters([cluster], 2 ** 31), ValueError, /timeout/);
  });

  test("a link's deadline names the limit it enforces", () => {
    const link = new Operation("linkClusters", 5, undefined, "timeout");
    assert.match(link.deadline.error(link.what).message, /linkClusters did not finish within timeout \(5 ms\)/);
    const read = new Operation("getCacheTensors", 7, undefined);
    assert.match(read.deadline.error(read.what).message, /within syncKvTimeout \(7 ms\)/);
  });
});

describe("KvCacheManager, as v1 kv_cache_manager.py", () => {
  test("copyCache and pullCache: size 0 or below -1 is LLM_PARAM_INVALID", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8));
    for (const size of [0, -2, -(2 ** 40)]) {
      await rejectsWithStatus(manager.copyCache(cache, cache, 0, 1, 0, size), invalid, /size/);
      await rejectsWithStatus(manager.pullCache(new CacheKey(1n, 1n), cache, 0, size), invalid, /size/);
    }
  });

  test("a negative batch index is a ValueError (uint32), one past the batch LLM_PARAM_INVALID", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8));
    await rejectsWith(manager.copyCache(cache, cache, -1, 0), ValueError, /dstBatchIndex/);
    await rejectsWith(manager.copyCache(cache, cache, 0, -1), ValueError, /srcBatchIndex/);
    await rejectsWith(manager.pullCache(new CacheKey(1n, 1n), cache, -1), ValueError, /batchIndex/);
    await rejectsWith(manager.pullCache(new CacheKeyByIdAndIndex(1n, 1n), cache, -1), ValueError, /batchIndex/);
    await rejectsWithStatus(manager.copyCache(cache, cache, 2, 0), invalid, /dstBatchIndex/);
    await rejectsWithStatus(manager.pullCache(new CacheKey(1n, 1n), cache, 2 ** 32 - 1), invalid, /batchIndex/);
  });

  test("removeCacheKey is for PROMPT instances: LLM_PARAM_INVALID on a DECODER or a MIX", async () => {
    for (const role of [LLMRole.DECODER, LLMRole.MIX]) {
      await using dd = await openInstance({ role });
      await rejectsWithStatus(dd.kvCacheManager.removeCacheKey(new CacheKey(1n, 1n)), invalid, /PROMPT/);
    }
  });

  test("a MIX instance neither holds cache keys nor pulls (LLM_PARAM_INVALID)", async () => {
    await using mix = await openInstance({ role: LLMRole.MIX });
    const manager = mix.kvCacheManager;
    const desc = new CacheDesc(1, [2, 8], DataType.DT_UINT8);
    await rejectsWithStatus(manager.allocateCache(desc, [new CacheKey(mix.clusterId, 1n)]), invalid, /PROMPT/);
    const cache = await manager.allocateCache(desc);
    await rejectsWithStatus(manager.pullCache(new CacheKey(1n, 1n), cache), invalid, /DECODER/);
  });

  test("memory before keys: a full pool is LLM_DEVICE_OUT_OF_MEMORY even when a key is already held", async () => {
    // Upstream's CacheManager::Allocate takes the memory, then CheckCacheKeys.
    await using prompt = await openPrompt();
    const manager = prompt.kvCacheManager;
    const key = new CacheKey(prompt.clusterId, 1n);
    const half = new CacheDesc(1, [1, 512 << 10], DataType.DT_UINT8);
    await manager.allocateCache(half, [key]);
    await manager.allocateCache(half);
    await rejectsWithStatus(manager.allocateCache(half, [key]), LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY);
    const small = new CacheDesc(1, [1, 64], DataType.DT_UINT8);
    await rejectsWithStatus(manager.allocateCache(small, [key]), LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY);
  });

  test("deallocateCache empties the cache's addresses", async () => {
    await using dd = await openInstance();
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [2, 8], DataType.DT_UINT8));
    assert.equal(cache.perDeviceTensorAddrs[0].length, 2);
    await dd.kvCacheManager.deallocateCache(cache);
    assert.deepEqual(cache.perDeviceTensorAddrs, []);
  });

  test("HOST placement stays allowed on the host backend (a documented difference: upstream v1 refuses it)", async () => {
    // The README's zero-copy views need host-accessible memory; upstream v2
    // registers host caches too.
    await using dd = await openInstance();
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8, Placement.HOST));
    assert.equal(dd.kvCacheManager.getCacheTensorViews(cache, 0)[0].byteLength, 16);
  });
});
