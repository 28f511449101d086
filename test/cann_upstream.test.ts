// The CANN backend over upstream's own LLM-DataDist: everything that runs in one
// process (init, allocateCache, getCacheTensors, copyCache, deallocateCache,
// finalize, upstream's rules and errors; with the two-engine build of the
// adapter, a PROMPT and a DECODER side by side: link and pullBlocks), through the
// adapter built against the toolkit named by LLMDD_CANN_TOOLKIT:
//
//   LLMDD_CANN_TOOLKIT=/path/to/toolkit sh ffi/cann/upstream_check.sh   (builds the adapter)
//   LLMDD_CANN_TOOLKIT=/path/to/toolkit node --import ./test/support/register.mjs --test test/cann_upstream.test.ts
//
// The toolkit is a CANN toolkit, or the stand-in built from upstream's public
// sources (ffi/cann/README.md, "Running over upstream's own LLM-DataDist"). Where
// LLMDD_CANN_TOOLKIT is not set the tests are skipped, and say why.
//
// With the stand-in toolkit "device" memory is host memory (upstream's ACL stub),
// so the tests also write and check the bytes of caches; with a real toolkit they
// check statuses and shapes only.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  BlocksCacheKey,
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  type KvCache,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../mod.ts";
import { loadLibrary } from "../src/native/load.ts";
import { rejectsWithStatus } from "./helpers.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const toolkit = process.env.LLMDD_CANN_TOOLKIT;
const library = join(root, "ffi", "build", "cann-upstream", "libllmdd_cann.so");
// The same adapter allowing two engines per process (upstream_check.sh builds both).
const twoEngines = join(root, "ffi", "build", "cann-upstream", "two", "libllmdd_cann.so");
// Upstream's ACL stub (libruntime_stub.so beside it) gives host memory for aclrtMalloc.
const hostMemory = toolkit !== undefined && existsSync(join(toolkit, "lib64", "libruntime_stub.so"));

if (toolkit === undefined) {
  console.warn(
    "\n*** test/cann_upstream.test.ts SKIPPED: LLMDD_CANN_TOOLKIT is not set, so the CANN backend is not run" +
      " over upstream's LLM-DataDist. Set it to a CANN toolkit (or the stand-in of ffi/cann/README.md) and" +
      " run ffi/cann/upstream_check.sh first. ***\n",
  );
}

let port = 20000 + (process.pid % 20000);
const options = (extra: Record<string, string> = {}): Record<string, string> => ({
  "ge.exec.deviceId": "0",
  "llm.SyncKvCacheWaitTime": "2000",
  "ge.flowGraphMemMaxSize": String(64 << 20),
  ...extra,
});

async function open(role: LLMRole = LLMRole.DECODER, extra: Record<string, string> = {}): Promise<LLMDataDist> {
  const dd = new LLMDataDist(role, role === LLMRole.PROMPT ? 1n : 2n, { backend: "cann", libraryPath: library });
  await dd.init(options(extra));
  return dd;
}

// The bytes of tensor `index` of a cache, in place (stand-in toolkit only).
let view: ((address: bigint, byteLength: number) => ArrayBuffer) | undefined;
async function tensorBytes(cache: KvCache, index: number): Promise<Uint8Array> {
  if (!view) {
    const raw = await loadLibrary("cann", library);
    view = (address, byteLength) => raw.view(address, byteLength);
  }
  const bytes = cache.cacheDesc.size;
  return new Uint8Array(view(cache.perDeviceTensorAddrs[0][index], bytes));
}

function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

describe("CANN backend over upstream LLM-DataDist (LLMDD_CANN_TOOLKIT)", () => {
  if (toolkit === undefined) {
    test("skipped: LLMDD_CANN_TOOLKIT is not set", { skip: "LLMDD_CANN_TOOLKIT is not set" }, () => {});
    return;
  }
  if (!existsSync(library) || !existsSync(twoEngines)) {
    test("the adapter is built against the toolkit", () => {
      assert.fail(
        `${library} or ${twoEngines} does not exist: run LLMDD_CANN_TOOLKIT=${toolkit} sh ffi/cann/upstream_check.sh`,
      );
    });
    return;
  }

  test("init and finalize: a DECODER, and a PROMPT listening on a host address", async () => {
    const decoder = await open();
    assert.ok(decoder.kvCacheManager.isInitialized());
    await decoder.finalize();
    assert.ok(!decoder.kvCacheManager.isInitialized());
    const prompt = await open(LLMRole.PROMPT, { "llm.listenIpInfo": `127.0.0.1:${port++}` });
    await prompt.finalize();
  });

  test("allocateCache, getCacheTensors, deallocateCache over RegisterKvCache", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(2, [4, 8, 16], DataType.DT_FLOAT16, Placement.DEVICE);
    const cache = await manager.allocateCache(desc);
    assert.ok(cache.cacheId >= 1n, `upstream's cache id ${cache.cacheId}`);
    assert.equal(cache.perDeviceTensorAddrs.length, 1);
    assert.equal(cache.perDeviceTensorAddrs[0].length, 2);
    assert.equal(manager.poolUsage()[0].usedBytes, 2 * desc.size);
    if (hostMemory) (await tensorBytes(cache, 1)).forEach((_, i, a) => (a[i] = (i * 7 + 3) & 0xff));
    const [tensor] = await manager.getCacheTensors(cache, 1);
    assert.deepEqual(tensor.shape, [4, 8, 16]);
    assert.equal(tensor.dataType, DataType.DT_FLOAT16);
    assert.equal(tensor.byteLength, desc.size);
    if (hostMemory) assert.deepEqual(bytesOf(tensor.data), await tensorBytes(cache, 1));
    await manager.deallocateCache(cache);
    assert.equal(manager.poolUsage()[0].usedBytes, 0);
    await rejectsWithStatus(manager.getCacheTensors(cache, 0), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    const again = await manager.allocateCache(desc);
    assert.ok(again.cacheId !== cache.cacheId, "a new id for a new registration");
  });

  test("a read larger than one staging chunk (3 MiB)", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [3, 1 << 20], DataType.DT_UINT8));
    if (hostMemory) (await tensorBytes(cache, 0)).forEach((_, i, a) => (a[i] = (i >> 12) & 0xff));
    const [tensor] = await manager.getCacheTensors(cache, 0);
    assert.equal(tensor.byteLength, 3 << 20);
    if (hostMemory) assert.deepEqual(bytesOf(tensor.data), await tensorBytes(cache, 0));
  });

  test("copyCache: the upstream sample ([1,4,8] FP16 into row 1 of [4,4,8]), by ACL copies per tensor row", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    const dst = await manager.allocateCache(new CacheDesc(2, [4, 4, 8], DataType.DT_FLOAT16));
    const src = await manager.allocateCache(new CacheDesc(2, [1, 4, 8], DataType.DT_FLOAT16));
    if (hostMemory) {
      for (let t = 0; t < 2; t++) (await tensorBytes(src, t)).forEach((_, i, a) => (a[i] = 1 + t * 10 + (i % 7)));
    }
    await manager.copyCache(dst, src, 1, 0);
    for (let t = 0; t < 2; t++) {
      const [out] = await manager.getCacheTensors(dst, t);
      const [row] = await manager.getCacheTensors(src, t);
      const bytes = bytesOf(out.data);
      assert.deepEqual(bytes.subarray(64, 128), bytesOf(row.data), `row 1 of tensor ${t}`);
      if (hostMemory) {
        assert.ok(bytes.subarray(0, 64).every((b) => b === 0), "row 0 untouched");
        assert.ok(bytes.subarray(128).every((b) => b === 0), "rows 2, 3 untouched");
      }
    }
  });

  test("copyCache with offset and size moves those bytes of the row only", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(1, [2, 32], DataType.DT_UINT8);
    const dst = await manager.allocateCache(desc);
    const src = await manager.allocateCache(desc);
    if (hostMemory) (await tensorBytes(src, 0)).forEach((_, i, a) => (a[i] = i + 1));
    await manager.copyCache(dst, src, 1, 0, 8, 16);
    const [out] = await manager.getCacheTensors(dst, 0);
    if (hostMemory) {
      const expected = new Uint8Array(64);
      for (let i = 8; i < 24; i++) expected[32 + i] = i + 1;
      assert.deepEqual(bytesOf(out.data), expected);
    }
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 0, 0, 0), LLMStatusCode.LLM_PARAM_INVALID);
  });

  test("Placement.HOST caches are registered with upstream (V2) and copy to and from the device", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    const host = await manager.allocateCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8, Placement.HOST));
    const device = await manager.allocateCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8, Placement.DEVICE));
    if (hostMemory) (await tensorBytes(host, 0)).forEach((_, i, a) => (a[i] = 200 - i));
    await manager.copyCache(device, host, 1, 0);
    await manager.copyCache(host, device, 0, 1);
    const [h] = await manager.getCacheTensors(host, 0);
    const [d] = await manager.getCacheTensors(device, 0);
    assert.deepEqual(bytesOf(d.data).subarray(64), bytesOf(h.data).subarray(0, 64));
    if (hostMemory) assert.equal(bytesOf(h.data)[5], 195);
  });

  test("errors: upstream's limits and the adapter's messages", async () => {
    await using dd = await open();
    const manager = dd.kvCacheManager;
    await rejectsWithStatus(
      manager.allocateCache(new CacheDesc(241, [1, 64], DataType.DT_UINT8)),
      LLMStatusCode.LLM_PARAM_INVALID,
      /at most 240 addresses/,
    );
    const cache = await manager.allocateCache(new CacheDesc(240, [1, 64], DataType.DT_UINT8));
    await rejectsWithStatus(manager.getCacheTensors(cache, 240), LLMStatusCode.LLM_PARAM_INVALID);
    assert.throws(
      () => manager.getCacheTensorViews(cache, 0),
      (err: { statusCode?: number }) => err.statusCode === LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
    );
    await manager.deallocateCache(cache);
    await rejectsWithStatus(
      manager.allocateCache(new CacheDesc(1, [1, 128 << 20], DataType.DT_UINT8)),
      LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY,
    );
  });

  test("one LLMDataDist per process, as upstream; a finalized one says so", async () => {
    const first = await open();
    const second = new LLMDataDist(LLMRole.DECODER, 3n, { backend: "cann", libraryPath: library });
    await rejectsWithStatus(second.init(options()), LLMStatusCode.LLM_FAILED, /per process/);
    await first.finalize();
    await second.init(options());
    const cache = await second.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
    await second.finalize();
    await rejectsWithStatus(second.kvCacheManager.getCacheTensors(cache, 0), LLMStatusCode.LLM_ENGINE_FINALIZED);
  });

  test("option rules: llm.TransferBackend, hixl listening, llm.GlobalResourceConfig", async () => {
    const dd = new LLMDataDist(LLMRole.PROMPT, 1n, { backend: "cann", libraryPath: library });
    const listen = { "llm.listenIpInfo": `127.0.0.1:${port++}` };
    await rejectsWithStatus(
      dd.init(options({ ...listen, "llm.TransferBackend": "rdma" })),
      LLMStatusCode.LLM_PARAM_INVALID,
      /not a transfer backend/,
    );
    await rejectsWithStatus(
      dd.init(options({ ...listen, "llm.GlobalResourceConfig": "{}" })),
      LLMStatusCode.LLM_PARAM_INVALID,
      /only with llm.TransferBackend=hixl/,
    );
    const decoder = new LLMDataDist(LLMRole.DECODER, 2n, { backend: "cann", libraryPath: library });
    await rejectsWithStatus(
      decoder.init(options({ "llm.TransferBackend": "hixl" })),
      LLMStatusCode.LLM_PARAM_INVALID,
      /every side/,
    );
  });

  test("linkClusters: V2 needs one local address unless llm.LocalCommRes is set", async () => {
    await using dd = await open();
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = 1n;
    cluster.appendRemoteIpInfo("127.0.0.1", port++);
    const [status] = await dd.linkClusters([cluster], 500);
    assert.equal(status, LLMStatusCode.LLM_PARAM_INVALID);
  });

  test("linkClusters to an address nobody listens on fails with upstream's status, and the engine stays usable", async () => {
    await using dd = await open(LLMRole.DECODER, { "llmdd.cann.localIpInfo": "127.0.0.1" });
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = 1n;
    cluster.appendRemoteIpInfo("127.0.0.1", port++);
    const [status] = await dd.linkClusters([cluster], 500);
    assert.notEqual(status, LLMStatusCode.LLM_SUCCESS);
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
    await rejectsWithStatus(
      dd.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(1n, 1n, 0), cache),
      LLMStatusCode.LLM_NOT_YET_LINK,
    );
  });

  test("pullBlocks from a PROMPT in the same process: PullKvBlocks with upstream's layer ranges", async () => {
    // Two engines in one process: the two-engine build of the adapter (upstream's own tests do the same).
    const managerMode = { "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' };
    const listen = port++;
    await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n, { backend: "cann", libraryPath: twoEngines });
    await prompt.init(options({ ...managerMode, "llm.listenIpInfo": `127.0.0.1:${listen}` }));
    await using decoder = new LLMDataDist(LLMRole.DECODER, 2n, { backend: "cann", libraryPath: twoEngines });
    await decoder.init(options({ ...managerMode, "llmdd.cann.localIpInfo": "127.0.0.1" }));
    // K and V of 4 blocks of 64 bytes on each side, allocated before the link.
    const desc = new CacheDesc(2, [4, 64], DataType.DT_UINT8);
    const src = await prompt.cacheManager.allocateCache(desc);
    const dst = await decoder.cacheManager.allocateBlocksCache(desc);
    const raw = hostMemory ? await loadLibrary("cann", twoEngines) : undefined;
    const bytes = (cache: typeof src, t: number) => new Uint8Array(raw!.view(cache.tensorAddrs[t], 4 * 64));
    if (raw) {
      for (let t = 0; t < 2; t++) {
        for (let b = 0; b < 4; b++) bytes(src, t).fill(100 + 10 * t + b, 64 * b, 64 * b + 64);
      }
    }
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = 1n;
    cluster.appendRemoteIpInfo("127.0.0.1", listen);
    const [linked] = await decoder.linkClusters([cluster], 5000);
    assert.equal(linked, LLMStatusCode.LLM_SUCCESS);
    const key = new CacheKeyByIdAndIndex(1n, src.cacheId, 0);
    // Source blocks 0, 1 (counted from the start of the row) into blocks 2 and 0, every tensor.
    await decoder.cacheManager.pullBlocks(key, dst, [], [2, 0]);
    // Layer 1 of the source (tensor 1) into layer 0: KvCacheExtParam {1, 1} -> {0, 0}.
    await decoder.cacheManager.pullBlocks(key, dst, [], [3], {
      srcLayerRange: [1, 2],
      dstLayerRange: [0, 1],
      tensorNumPerLayer: 1,
    });
    const [k] = await decoder.cacheManager.getCacheTensors(dst, 0);
    const [v] = await decoder.cacheManager.getCacheTensors(dst, 1);
    if (raw) {
      const block = (data: ArrayBufferView, b: number) => bytesOf(data)[64 * b + 5];
      assert.deepEqual([0, 1, 2, 3].map((b) => block(k.data, b)), [101, 0, 100, 110]);
      assert.deepEqual([0, 1, 2, 3].map((b) => block(v.data, b)), [111, 0, 110, 0]);
    }
    // Upstream's answers, and what the C++ API cannot name.
    await rejectsWithStatus(
      decoder.cacheManager.pullBlocks(new CacheKeyByIdAndIndex(1n, 99n, 0), dst, [], [0]),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
    await rejectsWithStatus(
      decoder.cacheManager.pullBlocks(key, dst, [], [0, 1, 2, 3, 0]),
      LLMStatusCode.LLM_PARAM_INVALID,
    );
    await rejectsWithStatus(
      decoder.cacheManager.pullBlocks(new BlocksCacheKey(1n, 0n), dst, [0], [0]),
      LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
      /BlocksCacheKey/,
    );
    await rejectsWithStatus(
      decoder.cacheManager.pullBlocks(new CacheKeyByIdAndIndex(1n, src.cacheId, 1), dst, [], [0]),
      LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
      /batch_index 0/,
    );
    const [unlinked] = await decoder.unlinkClusters([cluster], 5000);
    assert.equal(unlinked, LLMStatusCode.LLM_SUCCESS);
    await rejectsWithStatus(decoder.cacheManager.pullBlocks(key, dst, [], [0]), LLMStatusCode.LLM_NOT_YET_LINK);
  });

  test("CacheManager: program memory registered, blocks copied and swapped, role switched, unregistered", async () => {
    const dd = new LLMDataDist(LLMRole.DECODER, 3n, { backend: "cann", libraryPath: library });
    await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
    try {
      const m = dd.cacheManager;
      const host = new Uint8Array(4 * 64); // 4 blocks of 64 bytes, registered with RegisterKvCache
      host.fill(5, 0, 64);
      const desc = new CacheDesc(1, [4, 64], DataType.DT_UINT8, Placement.HOST);
      const registered = await m.registerBlocksCache(desc, [host]);
      await m.copyBlocks(registered, { 0: [1] });
      assert.deepEqual([host[64], host[127]], [5, 5]);
      const device = await m.allocateBlocksCache(new CacheDesc(1, [8, 64], DataType.DT_UINT8));
      await m.swapBlocks(registered, device, { 1: 6 }); // in
      host.fill(0);
      await m.swapBlocks(device, registered, { 6: 3 }); // and out again
      assert.deepEqual([host[3 * 64], host[3 * 64 + 63], host[0]], [5, 5, 0]);
      if (hostMemory) assert.equal((await m.getCacheTensors(device))[0].data[6 * 64], 5);
      await dd.switchRole(LLMRole.PROMPT);
      await m.unregisterCache(registered.cacheId);
      await m.deallocateBlocksCache(device);
    } finally {
      dd.finalize();
    }
  });
});
