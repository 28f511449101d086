// Upstream's own rules for LLMConfig, LLMClusterInfo and the cache keys (hicann/hixl
// src/python/llm_datadist/llm_datadist/configs.py and v2/llm_types.py, and its
// tests/python/test_configs.py), one test per rule: value, error class and status code.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMConfig,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  ValueError,
} from "../mod.ts";
import { freshClusterId, openInstance, rejectsWith, rejectsWithStatus } from "./helpers.ts";

const PARAM_INVALID = LLMStatusCode.LLM_PARAM_INVALID;
const UINT64_MAX = 2n ** 64n - 1n;

describe("LLMClusterInfo: an integer address reads as upstream's (inet_aton bytes, little-endian)", () => {
  test("16777343 (0x0100007F) is 127.0.0.1", () => {
    const info = new LLMClusterInfo();
    info.appendRemoteIpInfo(16777343, 26000);
    info.appendLocalIpInfo(0x0100007F, 0);
    info.appendLocalIpInfo(0x0A01A8C0, 1); // 192.168.1.10
    assert.deepEqual(info.remoteIpInfoList, [{ ip: "127.0.0.1", port: 26000 }]);
    assert.deepEqual(info.localIpInfoList.map((i) => i.ip), ["127.0.0.1", "192.168.1.10"]);
  });
  test("0 and 2^32 - 1 are the ends; beyond is ValueError", async () => {
    const info = new LLMClusterInfo();
    info.appendRemoteIpInfo(0, 1);
    info.appendRemoteIpInfo(0xFFFFFFFF, 1);
    assert.deepEqual(info.remoteIpInfoList.map((i) => i.ip), ["0.0.0.0", "255.255.255.255"]);
    await rejectsWith(() => info.appendRemoteIpInfo(2 ** 32, 1), ValueError, /ip/);
    await rejectsWith(() => info.appendRemoteIpInfo(-1, 1), ValueError, /ip/);
    await rejectsWith(() => info.appendRemoteIpInfo(1.5, 1), TypeError, /ip/);
  });
});

describe("LLMConfig.deviceId (configs.py device_id setter)", () => {
  test("a negative id is LLMException(LLM_PARAM_INVALID), alone or in a list", async () => {
    const config = new LLMConfig();
    await rejectsWithStatus(() => (config.deviceId = -1), PARAM_INVALID, /deviceId/);
    await rejectsWithStatus(() => (config.deviceId = [0, -2]), PARAM_INVALID, /deviceId\[1\]/);
    assert.equal(config.deviceId, 0, "a refused value leaves the config as it was");
  });
  test("types first (TypeError), then sign, then int32 (ValueError)", async () => {
    const config = new LLMConfig();
    await rejectsWith(() => (config.deviceId = [-1, 0.5]), TypeError, /deviceId\[1\]/);
    await rejectsWith(() => (config.deviceId = "0" as unknown as number), TypeError, /deviceId/);
    await rejectsWithStatus(() => (config.deviceId = [2 ** 31, -1]), PARAM_INVALID);
    await rejectsWith(() => (config.deviceId = 2 ** 31), ValueError, /deviceId/);
    config.deviceId = 2 ** 31 - 1;
    assert.equal(config.deviceId, 2 ** 31 - 1);
  });
  test("ge.session_device_id is the first device id, emitted with ge.exec.deviceId", () => {
    const config = new LLMConfig();
    assert.equal(config.generateOptions()["ge.session_device_id"], "0");
    config.deviceId = [2, 1];
    assert.equal(config.generateOptions()["ge.exec.deviceId"], "2;1");
    assert.equal(config.generateOptions()["ge.session_device_id"], "2");
    config.deviceId = 3;
    assert.equal(config.generateOptions()["ge.session_device_id"], "3");
    const byHand = new LLMConfig();
    byHand.geOptions = { "ge.exec.deviceId": "5" };
    assert.equal(byHand.generateOptions()["ge.session_device_id"], undefined, "not invented for ids set by hand");
  });
});

describe("LLMConfig.syncKvTimeout (configs.py sync_kv_timeout setter)", () => {
  test("0 and negatives are LLMException(LLM_PARAM_INVALID)", async () => {
    const config = new LLMConfig();
    await rejectsWithStatus(() => (config.syncKvTimeout = 0), PARAM_INVALID, /syncKvTimeout/);
    await rejectsWithStatus(() => (config.syncKvTimeout = -5), PARAM_INVALID, /syncKvTimeout/);
    await rejectsWithStatus(() => (config.syncKvTimeout = "0" as unknown as number), PARAM_INVALID);
    assert.equal(config.syncKvTimeout, 1000);
  });
  test("a string must be digits (LLMException); a non-integer is TypeError; past int32 is ValueError", async () => {
    const config = new LLMConfig();
    for (const text of ["abc", "-5", " 5", "5 ", "", "1e3", "2.5"]) {
      await rejectsWithStatus(() => (config.syncKvTimeout = text as unknown as number), PARAM_INVALID);
    }
    await rejectsWith(() => (config.syncKvTimeout = 2.5), TypeError, /syncKvTimeout/);
    await rejectsWith(() => (config.syncKvTimeout = null as unknown as number), TypeError, /syncKvTimeout/);
    await rejectsWith(() => (config.syncKvTimeout = 2 ** 31), ValueError, /syncKvTimeout/);
    await rejectsWith(() => (config.syncKvTimeout = "2147483648" as unknown as number), ValueError);
    config.syncKvTimeout = "300" as unknown as number;
    assert.equal(config.syncKvTimeout, 300);
    config.syncKvTimeout = 2 ** 31 - 1;
    assert.equal(config.generateOptions()["llm.SyncKvCacheWaitTime"], "2147483647");
  });
});

describe("LLMConfig.memUtilization (llm.MemoryUtilization)", () => {
  test("default 0.95, emitted even when not set (as upstream)", () => {
    const config = new LLMConfig();
    assert.equal(config.memUtilization, 0.95);
    assert.equal(config.generateOptions()["llm.MemoryUtilization"], "0.95");
  });
  test("[0, 1] accepted and written as Python writes a float", () => {
    const config = new LLMConfig();
    const written: [number, string][] = [[0.5, "0.5"], [0, "0.0"], [1, "1.0"], [0.00005, "5e-05"], [0.0001, "0.0001"]];
    for (const [value, text] of written) {
      config.memUtilization = value;
      assert.equal(config.memUtilization, value);
      assert.equal(config.generateOptions()["llm.MemoryUtilization"], text);
    }
  });
  test("outside [0, 1] is LLMException(LLM_PARAM_INVALID); not a number is TypeError", async () => {
    const config = new LLMConfig();
    for (const value of [1.5, -0.1, NaN, Infinity]) {
      await rejectsWithStatus(() => (config.memUtilization = value), PARAM_INVALID, /memUtilization/);
    }
    await rejectsWith(() => (config.memUtilization = "0.5" as unknown as number), TypeError, /memUtilization/);
    assert.equal(config.memUtilization, 0.95);
  });
  test("geOptions may carry the key while memUtilization is unset; a value set here wins", () => {
    const config = new LLMConfig();
    config.geOptions = { "llm.MemoryUtilization": "0.8" };
    assert.equal(config.generateOptions()["llm.MemoryUtilization"], "0.8");
    config.memUtilization = 0.25;
    assert.equal(config.generateOptions()["llm.MemoryUtilization"], "0.25");
  });
});

describe("LLMConfig.globalResourceConfig (llm.GlobalResourceConfig)", () => {
  test("'' until set, and left out of the options until set", () => {
    const config = new LLMConfig();
    assert.equal(config.globalResourceConfig, "");
    assert.ok(!("llm.GlobalResourceConfig" in config.generateOptions()));
  });
  test("set, it is emitted as it is, even empty", () => {
    const config = new LLMConfig();
    config.globalResourceConfig = "";
    assert.equal(config.generateOptions()["llm.GlobalResourceConfig"], "");
    const json = '{"comm_resource_config.listen_port": 26666}';
    config.globalResourceConfig = json;
    assert.equal(config.globalResourceConfig, json);
    assert.equal(config.generateOptions()["llm.GlobalResourceConfig"], json);
  });
  test("not a string is TypeError", async () => {
    const config = new LLMConfig();
    for (const value of [123, { key: "value" }, [1, 2]]) {
      await rejectsWith(() => (config.globalResourceConfig = value as unknown as string), TypeError, /globalResource/);
    }
  });
  test("the host backend's init() takes every key generateOptions() writes", async () => {
    const config = new LLMConfig();
    config.deviceId = [0, 1];
    config.memUtilization = 0.5;
    config.globalResourceConfig = "{}";
    config.geOptions = { "ge.flowGraphMemMaxSize": String(1 << 20) };
    const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await dd.init(config);
    try {
      assert.equal(dd.kvCacheManager.isInitialized(), true);
    } finally {
      await dd.finalize();
    }
  });
});

describe("CacheKey.prefixId (v2/llm_types.py CacheKey)", () => {
  test("the 4th argument is kept; its default is 2^64 - 1 (upstream's no-id)", () => {
    const key = new CacheKey(1, 2, 3, 4);
    assert.deepEqual([key.promptClusterId, key.reqId, key.modelId, key.prefixId], [1n, 2n, 3n, 4n]);
    assert.equal(String(key), "CacheKey(1, 2, 3, 4)");
    const plain = new CacheKey(1n, 2n);
    assert.equal(plain.prefixId, UINT64_MAX);
    assert.equal(String(plain), "CacheKey(1, 2, 0)");
    assert.equal(new CacheKey(1, 2, 0, UINT64_MAX).prefixId, UINT64_MAX);
  });
  test("prefixId is a uint64: TypeError, ValueError as the other ids", async () => {
    await rejectsWith(() => new CacheKey(1, 2, 0, -1), ValueError, /prefixId/);
    await rejectsWith(() => new CacheKey(1, 2, 0, 2n ** 64n), ValueError, /prefixId/);
    await rejectsWith(() => new CacheKey(1, 2, 0, "1" as unknown as number), TypeError, /prefixId/);
  });
  test("a missing cluster or request id, or a 5th argument, is LLMException(LLM_PARAM_INVALID)", async () => {
    type Loose = new (...args: unknown[]) => CacheKey;
    const Key = CacheKey as unknown as Loose;
    await rejectsWithStatus(() => new Key(1), PARAM_INVALID, /reqId is required/);
    await rejectsWithStatus(() => new Key(), PARAM_INVALID, /promptClusterId is required/);
    await rejectsWithStatus(() => new Key(1, 2, 3, 4, 5), PARAM_INVALID, /at most 4/);
    await rejectsWith(() => new Key(null, 2), TypeError, /promptClusterId/);
  });
});

describe("CacheKeyByIdAndIndex ranges: cacheId int64, batchIndex uint32", () => {
  test("batchIndex 2^31 … 2^32 - 1 accepted; -1, 2^32 ValueError; 1.5 TypeError", async () => {
    assert.equal(new CacheKeyByIdAndIndex(1, 1, 2 ** 31).batchIndex, 2 ** 31);
    assert.equal(new CacheKeyByIdAndIndex(1, 1, 2 ** 32 - 1).batchIndex, 2 ** 32 - 1);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, 1, 2 ** 32), ValueError, /batchIndex/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, 1, -1), ValueError, /batchIndex/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, 1, 1.5), TypeError, /batchIndex/);
  });
  test("cacheId in [-2^63, 2^63 - 1]; 2^63 is ValueError", async () => {
    assert.equal(new CacheKeyByIdAndIndex(1, 2n ** 63n - 1n).cacheId, 2n ** 63n - 1n);
    assert.equal(new CacheKeyByIdAndIndex(1, -1).cacheId, -1n);
    assert.equal(new CacheKeyByIdAndIndex(1, -(2n ** 63n)).cacheId, -(2n ** 63n));
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, 2n ** 63n), ValueError, /cacheId/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, UINT64_MAX), ValueError, /cacheId/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, -(2n ** 63n) - 1n), ValueError, /cacheId/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, 2 ** 60), ValueError, /safe integer/);
    await rejectsWith(() => new CacheKeyByIdAndIndex(1, "1" as unknown as number), TypeError, /cacheId/);
  });
  test("pulls with those keys reach the PROMPT and fail as a missing cache or row would", async () => {
    const prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
    await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llm.listenIpInfo": "127.0.0.1:0" });
    const decoder = await openInstance({ poolBytes: 1 << 20 });
    try {
      const cluster = new LLMClusterInfo();
      cluster.remoteClusterId = prompt.clusterId;
      cluster.appendRemoteIpInfo(16777343, prompt.listenPort); // 127.0.0.1, upstream's integer form
      const [status] = await decoder.linkClusters([cluster], 5000);
      assert.equal(status, LLMStatusCode.LLM_SUCCESS);
      const desc = new CacheDesc(1, [2, 8], DataType.DT_INT8);
      const source = await prompt.kvCacheManager.allocateCache(desc);
      const target = await decoder.kvCacheManager.allocateCache(desc);
      const manager = decoder.kvCacheManager;
      await rejectsWithStatus(
        manager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, -1n), target),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
      await rejectsWithStatus(
        manager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 2 ** 32 - 1), target),
        PARAM_INVALID,
        /batch index 4294967295/,
      );
      await manager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 1), target);
    } finally {
      await decoder.finalize();
      await prompt.finalize();
    }
  });
});
