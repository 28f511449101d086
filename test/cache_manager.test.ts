// The V2 cache manager (LLMDataDist.cacheManager) within one process: every
// call and upstream's rules (v2/cache_manager.py, v2/llm_datadist.py,
// configs.py), with upstream's error classes and statuses.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BlocksCacheKey,
  Cache,
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMConfig,
  LLMDataDist,
  LlmddOptionKey,
  LLMException,
  LLMRole,
  LLMStatusCode,
  MemInfo,
  MemType,
  Placement,
  ValueError,
} from "../mod.ts";
import { freshClusterId, rejectsWith, rejectsWithStatus } from "./helpers.ts";
import { cacheBytes } from "./support/links.ts";

const POOL = '{"memory_size": 16777216}';
const HOST_POOL = '{"memory_size": 8388608}';

async function openManager(
  extra: Record<string, string> = {},
  role: LLMRole = LLMRole.DECODER,
): Promise<LLMDataDist> {
  const dd = new LLMDataDist(role, freshClusterId());
  await dd.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": POOL,
    "llm.HostMemPoolConfig": HOST_POOL,
    ...extra,
  });
  return dd;
}

describe("LLMConfig: the cache manager's options as upstream's configs.py", () => {
  test("keys and value formats", () => {
    const config = new LLMConfig();
    assert.equal(config.enableCacheManager, false);
    assert.equal(config.enableRemoteCacheAccessible, false);
    assert.equal(config.memPoolConfig, "");
    assert.equal(config.enableSwitchRole, false);
    let options = config.generateOptions();
    for (const key of ["llm.EnableCacheManager", "llm.EnableRemoteCacheAccessible", "llm.MemPoolConfig"]) {
      assert.equal(options[key], undefined, key);
    }
    assert.equal(options["llm.EnableSwitchRole"], undefined);
    config.enableCacheManager = true;
    config.enableRemoteCacheAccessible = false;
    config.memPoolConfig = POOL;
    config.hostMemPoolConfig = HOST_POOL;
    config.enableSwitchRole = true;
    options = config.generateOptions();
    assert.equal(options["llm.EnableCacheManager"], "1");
    assert.equal(options["llm.EnableRemoteCacheAccessible"], "0");
    assert.equal(options["llm.MemPoolConfig"], POOL);
    assert.equal(options["llm.HostMemPoolConfig"], HOST_POOL);
    assert.equal(options["llm.EnableSwitchRole"], "1");
  });

  test("wrong types are TypeErrors", () => {
    const config = new LLMConfig();
    const loose = config as unknown as Record<string, unknown>;
    for (const key of ["enableCacheManager", "enableRemoteCacheAccessible", "enableSwitchRole"]) {
      assert.throws(() => (loose[key] = 1), TypeError, key);
      assert.throws(() => (loose[key] = "1"), TypeError, key);
    }
    assert.throws(() => (loose.memPoolConfig = 5), TypeError);
    assert.throws(() => (loose.hostMemPoolConfig = {}), TypeError);
  });

  test("a malformed pool config fails init with LLM_PARAM_INVALID", async () => {
    for (const bad of ["100", '{"memory_size": -5}', '{"page_shift": 16}', '{"memory_size": 1024, "page_shift": 40}']) {
      const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
      await rejectsWithStatus(
        dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": bad }),
        LLMStatusCode.LLM_PARAM_INVALID,
      );
    }
  });
});

describe("llmdd.reservePools (ours): device pools taken whole at init", () => {
  test("'1' and '0' are taken, anything else is LLM_PARAM_INVALID naming the key", async () => {
    assert.equal(LlmddOptionKey.RESERVE_POOLS, "llmdd.reservePools");
    for (const value of ["1", "0"]) {
      await using dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
      await dd.init({
        "llm.EnableCacheManager": "1",
        "llm.MemPoolConfig": POOL,
        [LlmddOptionKey.RESERVE_POOLS]: value,
      });
      const cache = await dd.cacheManager.allocateCache(new CacheDesc(1, [1, 1024], DataType.DT_UINT8));
      await dd.cacheManager.deallocateCache(cache);
    }
    const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await rejectsWithStatus(
      dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": POOL, [LlmddOptionKey.RESERVE_POOLS]: "yes" }),
      LLMStatusCode.LLM_PARAM_INVALID,
      /llmdd\.reservePools/,
    );
  });
});

describe("LLMDataDist: cacheManager and kvCacheManager by mode", () => {
  test("cache-manager mode: cacheManager is a CacheManager and kvCacheManager refuses", async () => {
    await using dd = await openManager();
    assert.ok(dd.cacheManager.isInitialized());
    assert.throws(() => dd.kvCacheManager, (err) =>
      err instanceof LLMException &&
      err.statusCode === LLMStatusCode.LLM_PARAM_INVALID);
  });

  test("default mode: cacheManager refuses, kvCacheManager as before", async () => {
    await using dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    assert.throws(() => dd.cacheManager, (err) =>
      err instanceof LLMException &&
      err.statusCode === LLMStatusCode.LLM_FAILED);
    await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
    assert.throws(() => dd.cacheManager, (err) =>
      err instanceof LLMException &&
      err.statusCode === LLMStatusCode.LLM_PARAM_INVALID);
    assert.ok(dd.kvCacheManager.isInitialized());
  });

  test("finalize: calls reject with LLM_ENGINE_FINALIZED", async () => {
    const dd = await openManager();
    const manager = dd.cacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8));
    dd.finalize();
    await rejectsWithStatus(manager.getCacheTensors(cache), LLMStatusCode.LLM_ENGINE_FINALIZED);
    await rejectsWithStatus(
      manager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8)),
      LLMStatusCode.LLM_ENGINE_FINALIZED,
    );
    assert.equal(cache.tensorAddrs.length, 0);
  });
});

describe("allocateCache / allocateBlocksCache / deallocate", () => {
  test("a pool must match the placement (upstream's rule)", async () => {
    await using dd = await openManager({ "llm.HostMemPoolConfig": "" });
    const m = dd.cacheManager;
    await rejectsWithStatus(
      m.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8, Placement.HOST)),
      LLMStatusCode.LLM_PARAM_INVALID,
      /config memory pool firstly/,
    );
    await rejectsWithStatus(
      m.allocateBlocksCache(new CacheDesc(1, [4, 64], DataType.DT_UINT8, Placement.HOST)),
      LLMStatusCode.LLM_PARAM_INVALID,
    );
    await using noPools = await openManager({ "llm.MemPoolConfig": "", "llm.HostMemPoolConfig": "" });
    await rejectsWithStatus(
      noPools.cacheManager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8)),
      LLMStatusCode.LLM_PARAM_INVALID,
    );
  });

  test("types", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    await rejectsWith(m.allocateCache({} as CacheDesc), TypeError);
    await rejectsWith(
      m.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8), [1 as unknown as CacheKey]),
      TypeError,
    );
    await rejectsWith(
      m.allocateBlocksCache(new CacheDesc(1, [4, 4], DataType.DT_UINT8), {} as BlocksCacheKey),
      TypeError,
    );
  });

  test("a Cache carries id, desc, addresses and kind; deallocation empties the addresses", async () => {
    await using dd = await openManager({}, LLMRole.PROMPT);
    const m = dd.cacheManager;
    const desc = new CacheDesc(2, [2, 32], DataType.DT_FLOAT16);
    const cache = await m.allocateCache(desc, [new CacheKey(dd.clusterId, 1n), new CacheKey(dd.clusterId, 2n)]);
    assert.ok(cache instanceof Cache);
    assert.equal(cache.cacheDesc, desc);
    assert.equal(cache.isBlocksCache, false);
    assert.equal(cache.tensorAddrs.length, 2);
    assert.ok(cache.tensorAddrs.every((a) => typeof a === "bigint" && a !== 0n));
    const blocks = await m.allocateBlocksCache(new CacheDesc(2, [8, 32], DataType.DT_FLOAT16), new BlocksCacheKey(1n));
    assert.equal(blocks.isBlocksCache, true);
    assert.ok(blocks.cacheId > cache.cacheId);
    await rejectsWithStatus(m.deallocateCache(blocks), LLMStatusCode.LLM_PARAM_INVALID, /can not be blocks cache/);
    await rejectsWithStatus(m.deallocateBlocksCache(cache), LLMStatusCode.LLM_PARAM_INVALID, /should be blocks cache/);
    await m.deallocateCache(cache);
    await m.deallocateBlocksCache(blocks);
    assert.equal(cache.tensorAddrs.length, 0);
    await rejectsWithStatus(m.deallocateCache(cache), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    await rejectsWithStatus(m.getCacheTensors(blocks), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    await m.removeCacheKey(new CacheKey(dd.clusterId, 1n));
    await rejectsWithStatus(m.removeCacheKey(new CacheKey(dd.clusterId, 1n)), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    await rejectsWith(m.removeCacheKey({} as CacheKey), TypeError);
  });

  test("getCacheTensors of a blocks cache: the tensor is all its blocks", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const cache = await m.allocateBlocksCache(new CacheDesc(2, [4, 2], DataType.DT_INT32));
    (m.getCacheTensorViews(cache, 1)[0].data as Int32Array).set([1, 2, 3, 4, 5, 6, 7, 8]);
    const [copy] = await m.getCacheTensors(cache, 1);
    assert.deepEqual([...copy.data], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert.deepEqual(copy.shape, [4, 2]);
    await rejectsWithStatus(m.getCacheTensors(cache, 2), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWith(m.getCacheTensors(cache, 1.5), TypeError);
    assert.throws(() => m.getCacheTensorViews({} as Cache), TypeError);
  });
});

describe("registerCache / registerBlocksCache / unregisterCache", () => {
  test("TypedArray and ArrayBuffer memory: read, written and copied in place", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const k = new Float32Array(8).fill(1);
    const v = new ArrayBuffer(32);
    new Float32Array(v).fill(2);
    const cache = await m.registerCache(new CacheDesc(2, [2, 4], DataType.DT_FLOAT, Placement.HOST), [k, v]);
    assert.equal(cache.isRegistered, true);
    const [copy] = await m.getCacheTensors(cache, 0);
    assert.deepEqual([...copy.data], [1, 1, 1, 1, 1, 1, 1, 1]);
    k.set([5, 6, 7, 8], 0);
    const other = await m.allocateCache(new CacheDesc(2, [2, 4], DataType.DT_FLOAT));
    await m.copyCache(other, cache, 1, 0);
    assert.deepEqual([...(await m.getCacheTensors(other, 0))[0].data].slice(4), [5, 6, 7, 8]);
    new Float32Array(v).fill(0);
    await m.copyCache(cache, other, 0, 1, 0, -1); // writes into the program's buffers
    assert.deepEqual([...new Float32Array(v)], [2, 2, 2, 2, 0, 0, 0, 0]);
    await m.unregisterCache(cache.cacheId);
    assert.equal(cache.tensorAddrs.length, 0);
    await rejectsWithStatus(m.getCacheTensors(cache), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    // Unknown or already unregistered ids are not an error (upstream's UnregisterCacheEntry).
    await m.unregisterCache(cache.cacheId);
    await m.unregisterCache(999_999n);
  });

  test("bigint addresses of memory the program keeps", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const backing = await m.allocateCache(new CacheDesc(1, [128], DataType.DT_UINT8));
    cacheBytes(dd, backing).fill(9);
    const cache = await m.registerBlocksCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8, Placement.HOST), [
      backing.tensorAddrs[0],
    ]);
    assert.equal(cache.isBlocksCache, true);
    assert.ok((await m.getCacheTensors(cache))[0].data.every((b) => b === 9));
    await m.unregisterCache(cache.cacheId);
  });

  test("upstream's checks: counts, zero addresses, types, the mode of deallocation", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const desc = new CacheDesc(2, [64], DataType.DT_UINT8, Placement.HOST);
    const a = new Uint8Array(64), b = new Uint8Array(64);
    await rejectsWithStatus(m.registerCache(desc, []), LLMStatusCode.LLM_PARAM_INVALID, /can not be empty/);
    await rejectsWithStatus(m.registerCache(desc, [a]), LLMStatusCode.LLM_PARAM_INVALID, /equal to num_tensors/);
    await rejectsWithStatus(m.registerBlocksCache(desc, [a, b, a]), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWithStatus(m.registerCache(desc, [a, 0n]), LLMStatusCode.LLM_PARAM_INVALID, /can not be zero/);
    await rejectsWithStatus(m.registerCache(desc, [a, new Uint8Array(63)]), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWith(m.registerCache(desc, [a, "x" as unknown as bigint]), TypeError);
    await rejectsWith(m.registerCache(desc, [a, -1n]), ValueError);
    await rejectsWith(m.registerCache(desc, a as unknown as bigint[]), TypeError);
    await rejectsWith(m.registerCache(desc, [a, b], undefined, 1 as unknown as boolean), TypeError);
    await rejectsWith(m.registerBlocksCache(desc, [a, b], {} as BlocksCacheKey), TypeError);
    await rejectsWith(m.unregisterCache("1" as unknown as bigint), TypeError);
    await rejectsWith(m.unregisterCache(2n ** 63n), ValueError);
    const registered = await m.registerCache(desc, [a, b]);
    await rejectsWithStatus(m.deallocateCache(registered), LLMStatusCode.LLM_PARAM_INVALID, /unregister/);
    const allocated = await m.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8));
    await rejectsWithStatus(m.unregisterCache(allocated.cacheId), LLMStatusCode.LLM_PARAM_INVALID, /deallocate/);
    await m.unregisterCache(registered.cacheId);
  });

  test("registerBlocksCache holds its BlocksCacheKey until unregistered (on a PROMPT)", async () => {
    await using dd = await openManager({}, LLMRole.PROMPT);
    const m = dd.cacheManager;
    const desc = new CacheDesc(1, [2, 64], DataType.DT_UINT8, Placement.HOST);
    const key = new BlocksCacheKey(dd.clusterId, 3n);
    const first = await m.registerBlocksCache(desc, [new Uint8Array(128)], key);
    // The key is taken: a second cache cannot hold it too, registered or allocated.
    await assert.rejects(m.registerBlocksCache(desc, [new Uint8Array(128)], key), LLMException);
    await assert.rejects(m.allocateBlocksCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8), key), LLMException);
    await m.unregisterCache(first.cacheId);
    const second = await m.registerBlocksCache(desc, [new Uint8Array(128)], key);
    await m.unregisterCache(second.cacheId);
  });

  test("a detached buffer is refused, at registration and afterwards", async (t) => {
    const probe = new ArrayBuffer(8) as ArrayBuffer & { transfer?: () => ArrayBuffer };
    if (typeof probe.transfer !== "function") return t.skip("ArrayBuffer.prototype.transfer is missing here");
    await using dd = await openManager();
    const m = dd.cacheManager;
    const desc = new CacheDesc(1, [64], DataType.DT_UINT8, Placement.HOST);
    const gone = new ArrayBuffer(64) as ArrayBuffer & { transfer: () => ArrayBuffer };
    gone.transfer();
    await rejectsWithStatus(m.registerCache(desc, [gone]), LLMStatusCode.LLM_PARAM_INVALID, /detached/);
    const memory = new ArrayBuffer(64) as ArrayBuffer & { transfer: () => ArrayBuffer };
    const cache = await m.registerCache(desc, [memory]);
    const kept = memory.transfer(); // the program moved it away: never touched again
    await rejectsWithStatus(m.getCacheTensors(cache), LLMStatusCode.LLM_PARAM_INVALID, /detached or resized/);
    await m.unregisterCache(cache.cacheId);
    assert.equal(kept.byteLength, 64);
  });

  test("a resizable buffer is refused", async (t) => {
    let resizable: ArrayBuffer;
    try {
      resizable = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(64, {
        maxByteLength: 128,
      });
    } catch {
      return t.skip("resizable ArrayBuffers are missing here");
    }
    if (!(resizable as { resizable?: boolean }).resizable) return t.skip("resizable ArrayBuffers are missing here");
    await using dd = await openManager();
    await rejectsWithStatus(
      dd.cacheManager.registerCache(new CacheDesc(1, [64], DataType.DT_UINT8, Placement.HOST), [resizable]),
      LLMStatusCode.LLM_PARAM_INVALID,
      /resizable/,
    );
  });

  test("at most 240 addresses per cache; any number of caches", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const memory = new Uint8Array(64);
    await rejectsWithStatus(
      m.registerCache(new CacheDesc(241, [64], DataType.DT_UINT8, Placement.HOST), new Array(241).fill(memory)),
      LLMStatusCode.LLM_PARAM_INVALID,
      /at most 240/,
    );
    const wide = await m.registerCache(
      new CacheDesc(240, [64], DataType.DT_UINT8, Placement.HOST),
      new Array(240).fill(memory),
    );
    const caches: Cache[] = [wide];
    for (let i = 0; i < 250; i++) {
      caches.push(await m.registerCache(new CacheDesc(1, [64], DataType.DT_UINT8, Placement.HOST), [memory]));
    }
    for (const cache of caches) await m.unregisterCache(cache.cacheId);
  });
});

describe("copyCache (V2)", () => {
  test("blocks caches are refused; sizes and rows as upstream", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const rows = await m.allocateCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8));
    const blocks = await m.allocateBlocksCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8));
    await rejectsWithStatus(m.copyCache(rows, blocks), LLMStatusCode.LLM_PARAM_INVALID, /src cache can not be blocks/);
    await rejectsWithStatus(m.copyCache(blocks, rows), LLMStatusCode.LLM_PARAM_INVALID, /dst cache can not be blocks/);
    await rejectsWithStatus(m.copyCache(rows, rows, 1, 0, 0, 0), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWithStatus(m.copyCache(rows, rows, 2, 0), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWith(m.copyCache(rows, rows, -1, 0), ValueError);
    await rejectsWith(m.copyCache(rows, rows, 1, 0, 0, -1, -1n), ValueError);
    cacheBytes(dd, rows).set([1, 2, 3, 4, 5, 6, 7, 8], 0);
    await m.copyCache(rows, rows, 1, 0, 2, 4, 77n);
    assert.deepEqual([...cacheBytes(dd, rows).subarray(8)], [0, 0, 3, 4, 5, 6, 0, 0]);
  });
});

describe("bad arguments reject: no call throws before it returns its promise", () => {
  test("allocate, deallocate and the pulls, with each kind of bad argument", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(1, [4, 64], DataType.DT_UINT8));
    const rows = await m.allocateCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8));
    const key = new BlocksCacheKey(1n, 0);
    // deno-lint-ignore no-explicit-any
    const bad = (x: unknown) => x as any;
    const calls: [string, () => Promise<unknown>, new (...a: never[]) => Error][] = [
      ["allocateCache(not a desc)", () => m.allocateCache(bad(1)), TypeError],
      ["allocateBlocksCache(not a desc)", () => m.allocateBlocksCache(bad("x")), TypeError],
      ["deallocateCache(not a cache)", () => m.deallocateCache(bad({})), TypeError],
      ["deallocateBlocksCache(a rows cache)", () => m.deallocateBlocksCache(rows), LLMException],
      ["pullBlocks(not a key)", () => m.pullBlocks(bad(null), blocks, [0], [0]), TypeError],
      ["pullBlocks(blocks not integers)", () => m.pullBlocks(key, blocks, [0.5], [0]), TypeError],
      ["pullBlocks(empty dst_blocks)", () => m.pullBlocks(key, blocks, [0], []), LLMException],
      ["pullBlocks(bad options)", () => m.pullBlocks(key, blocks, [0], [0], bad(7)), TypeError],
      ["pullCache(not a key)", () => m.pullCache(bad(key), rows), TypeError],
      ["pullCache(size 0)", () => m.pullCache(new CacheKeyByIdAndIndex(1n, 1n, 0), rows, 0, 0), LLMException],
    ];
    for (const [what, call, cls] of calls) {
      let promise: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        promise = call();
      }, what);
      assert.ok(promise instanceof Promise, what);
      await rejectsWith(promise!, cls);
    }
    await m.deallocateBlocksCache(blocks);
    await m.deallocateCache(rows);
  });
});

describe("copyBlocks", () => {
  test("one call copies every pair; a Map or a plain object", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const cache = await m.allocateBlocksCache(new CacheDesc(2, [8, 16], DataType.DT_UINT8));
    for (let t = 0; t < 2; t++) cacheBytes(dd, cache, t).forEach((_, i, a) => (a[i] = 100 * t + (i >> 4)));
    await m.copyBlocks(cache, new Map([[0, [5, 6]], [1, [7]]]));
    await m.copyBlocks(cache, { 2: [3] });
    for (let t = 0; t < 2; t++) {
      const b = cacheBytes(dd, cache, t);
      const blockOf = (k: number) => b[16 * k + 15] - 100 * t;
      assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(blockOf), [0, 1, 2, 2, 4, 0, 0, 1], `tensor ${t}`);
    }
    await m.copyBlocks(cache, {}); // nothing to copy
    await m.copyBlocks(cache, { 4: [4] }); // onto itself
  });

  test("upstream's checks", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const cache = await m.allocateBlocksCache(new CacheDesc(1, [4, 16], DataType.DT_UINT8));
    const rows = await m.allocateCache(new CacheDesc(1, [4, 16], DataType.DT_UINT8));
    await rejectsWithStatus(m.copyBlocks(rows, { 0: [1] }), LLMStatusCode.LLM_PARAM_INVALID, /should be blocks cache/);
    await rejectsWithStatus(m.copyBlocks(cache, { 4: [1] }), LLMStatusCode.LLM_PARAM_INVALID, /src_block_index/);
    await rejectsWithStatus(m.copyBlocks(cache, { 0: [4] }), LLMStatusCode.LLM_PARAM_INVALID, /dst_block_index/);
    await rejectsWithStatus(m.copyBlocks(cache, { 0: [-1] }), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWith(m.copyBlocks(cache, [[0, [1]]] as unknown as Map<number, number[]>), TypeError);
    await rejectsWith(m.copyBlocks(cache, { a: [1] } as unknown as Map<number, number[]>), TypeError);
    await rejectsWith(m.copyBlocks(cache, { 0: 1 } as unknown as Map<number, number[]>), TypeError);
    await rejectsWith(m.copyBlocks(cache, { 0: [1.5] }), TypeError);
    await rejectsWith(m.copyBlocks({} as Cache, { 0: [1] }), TypeError);
    await m.deallocateBlocksCache(cache);
    await rejectsWithStatus(m.copyBlocks(cache, { 0: [1] }), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
  });

  test("4 MiB over two devices and two tensors (shared with the copy helper): every block of every device right", async () => {
    await using dd = await openManager({ "ge.exec.deviceId": "0;1", "llm.MemPoolConfig": '{"memory_size": 33554432}' });
    const m = dd.cacheManager;
    const block = 128 << 10;
    const cache = await m.allocateBlocksCache(new CacheDesc(2, [16, block], DataType.DT_UINT8));
    const views = (t: number) =>
      m.getCacheTensorViews(cache, t).map((v) => new Uint8Array(v.data.buffer, v.data.byteOffset, v.byteLength));
    // Byte i of block k of tensor t on device d: d, t and k in its first bytes, i in the rest.
    const byte = (
      d: number,
      t: number,
      k: number,
      i: number,
    ) => (i < 3 ? [d, t, k][i] : (i * 7 + d * 31 + t * 17 + k) & 0xFF);
    for (let t = 0; t < 2; t++) {
      views(t).forEach((bytes, d) => bytes.forEach((_, i, a) => (a[i] = byte(d, t, Math.floor(i / block), i % block))));
    }
    const pairs = Array.from({ length: 8 }, (_, i) => [i, 8 + (i * 3 + 1) % 8]); // blocks 0-7 into 8-15
    await m.copyBlocks(cache, Object.fromEntries(pairs.map(([s, d]) => [s, [d]])));
    const source = new Map(pairs.map(([s, d]) => [d, s]));
    for (let t = 0; t < 2; t++) {
      views(t).forEach((bytes, d) => {
        for (let k = 0; k < 16; k++) {
          const from = source.get(k) ?? k;
          for (let i = 0; i < block; i += 509) {
            assert.equal(bytes[k * block + i], byte(d, t, from, i), `device ${d} tensor ${t} block ${k} byte ${i}`);
          }
          assert.equal(bytes[k * block + block - 1], byte(d, t, from, block - 1));
        }
      });
    }
  });

  test("large copies run off the JavaScript thread and honour the deadline and abort", async () => {
    await using dd = await openManager({ "llm.MemPoolConfig": '{"memory_size": 134217728}' });
    const m = dd.cacheManager;
    const cache = await m.allocateBlocksCache(new CacheDesc(1, [64, 1 << 20], DataType.DT_UINT8));
    const info: Record<number, number[]> = {};
    for (let i = 0; i < 32; i++) info[i] = [32 + i];
    cacheBytes(dd, cache).fill(3, 0, 32 << 20);
    await m.copyBlocks(cache, info);
    assert.equal(cacheBytes(dd, cache)[(64 << 20) - 1], 3);
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await rejectsWith(m.copyBlocks(cache, info, { signal: controller.signal }), Error, /stop/);
  });
});

describe("swapBlocks", () => {
  test("swap out and back in, one call each", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const device = await m.allocateBlocksCache(new CacheDesc(2, [8, 32], DataType.DT_UINT8));
    const host = await m.allocateBlocksCache(new CacheDesc(2, [4, 32], DataType.DT_UINT8, Placement.HOST));
    for (let t = 0; t < 2; t++) cacheBytes(dd, device, t).forEach((_, i, a) => (a[i] = 10 * t + (i >> 5)));
    await m.swapBlocks(device, host, new Map([[7, 0], [3, 1]]));
    for (let t = 0; t < 2; t++) {
      assert.equal(cacheBytes(dd, host, t)[0], 10 * t + 7);
      assert.equal(cacheBytes(dd, host, t)[32], 10 * t + 3);
    }
    await m.swapBlocks(host, device, { 0: 0, 1: 1 });
    for (let t = 0; t < 2; t++) assert.equal(cacheBytes(dd, device, t)[33], 10 * t + 3);
  });

  test("upstream's checks: kinds, sizes, ranges, placements", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    const device = await m.allocateBlocksCache(new CacheDesc(1, [8, 32], DataType.DT_UINT8));
    const device2 = await m.allocateBlocksCache(new CacheDesc(1, [8, 32], DataType.DT_UINT8));
    const host = await m.allocateBlocksCache(new CacheDesc(1, [4, 32], DataType.DT_UINT8, Placement.HOST));
    const wide = await m.allocateBlocksCache(new CacheDesc(1, [4, 64], DataType.DT_UINT8, Placement.HOST));
    const two = await m.allocateBlocksCache(new CacheDesc(2, [4, 32], DataType.DT_UINT8, Placement.HOST));
    const rows = await m.allocateCache(new CacheDesc(1, [4, 32], DataType.DT_UINT8, Placement.HOST));
    await rejectsWith(m.swapBlocks({} as Cache, host, {}), TypeError);
    await rejectsWithStatus(m.swapBlocks(device, rows, { 0: 0 }), LLMStatusCode.LLM_PARAM_INVALID, /blocks cache/);
    await rejectsWithStatus(m.swapBlocks(device, wide, { 0: 0 }), LLMStatusCode.LLM_PARAM_INVALID, /block size/);
    await rejectsWithStatus(m.swapBlocks(device, two, { 0: 0 }), LLMStatusCode.LLM_PARAM_INVALID, /num_tensors/);
    await rejectsWithStatus(m.swapBlocks(device, host, { 8: 0 }), LLMStatusCode.LLM_PARAM_INVALID, /src_block_index/);
    await rejectsWithStatus(m.swapBlocks(device, host, { 0: 4 }), LLMStatusCode.LLM_PARAM_INVALID, /dst_block_index/);
    await rejectsWithStatus(m.swapBlocks(device, device2, { 0: 0 }), LLMStatusCode.LLM_PARAM_INVALID, /not support/);
    await rejectsWithStatus(m.swapBlocks(host, host, { 0: 1 }), LLMStatusCode.LLM_PARAM_INVALID, /not support/);
    await rejectsWith(m.swapBlocks(device, host, { 0: "1" } as unknown as Record<number, number>), TypeError);
  });
});

describe("remapRegisteredMemory", () => {
  test("upstream's checks, then LLM_FEATURE_NOT_ENABLED on these backends", async () => {
    await using dd = await openManager();
    const m = dd.cacheManager;
    assert.throws(() => new MemInfo(7 as MemType, 1n, 1), TypeError);
    assert.throws(() => new MemInfo(MemType.MEM_TYPE_DEVICE, 1 as unknown as bigint, 1), TypeError);
    await rejectsWithStatus(m.remapRegisteredMemory(5 as unknown as MemInfo), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWithStatus(m.remapRegisteredMemory([5 as unknown as MemInfo]), LLMStatusCode.LLM_PARAM_INVALID);
    await rejectsWithStatus(
      m.remapRegisteredMemory(new MemInfo(MemType.MEM_TYPE_HOST, 1n, 1)),
      LLMStatusCode.LLM_PARAM_INVALID,
      /MEM_TYPE_DEVICE/,
    );
    await rejectsWithStatus(
      m.remapRegisteredMemory(new MemInfo(MemType.MEM_TYPE_DEVICE, 0n, 1)),
      LLMStatusCode.LLM_PARAM_INVALID,
      /zero/,
    );
    await rejectsWithStatus(
      m.remapRegisteredMemory([new MemInfo(MemType.MEM_TYPE_DEVICE, 1n, 0)]),
      LLMStatusCode.LLM_PARAM_INVALID,
      /size/,
    );
    await rejectsWithStatus(
      m.remapRegisteredMemory(new MemInfo(MemType.MEM_TYPE_DEVICE, 1n, 64)),
      LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
    );
  });
});

describe("switchRole", () => {
  test("needs llm.EnableSwitchRole", async () => {
    await using dd = await openManager();
    await rejectsWithStatus(dd.switchRole(LLMRole.PROMPT), LLMStatusCode.LLM_FEATURE_NOT_ENABLED);
    assert.equal(dd.role, LLMRole.DECODER);
  });

  test("DECODER -> PROMPT (listening) -> DECODER, caches kept", async () => {
    await using dd = await openManager({ "llm.EnableSwitchRole": "1" });
    const cache = await dd.cacheManager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8));
    await dd.switchRole(LLMRole.PROMPT, { "llm.listenIpInfo": "127.0.0.1:0" });
    assert.equal(dd.role, LLMRole.PROMPT);
    assert.ok(dd.listenPort > 0);
    await dd.switchRole(LLMRole.DECODER);
    assert.equal(dd.role, LLMRole.DECODER);
    assert.equal(dd.listenPort, 0);
    assert.equal((await dd.cacheManager.getCacheTensors(cache))[0].byteLength, 64);
    await rejectsWith(dd.switchRole(9 as LLMRole), TypeError);
    await rejectsWith(dd.switchRole(LLMRole.PROMPT, "x" as unknown as Record<string, string>), TypeError);
    await rejectsWithStatus(
      dd.switchRole(LLMRole.PROMPT, { "llm.listenIpInfo": "nowhere" }),
      LLMStatusCode.LLM_PARAM_INVALID,
    );
  });

  test("default mode: as upstream's v1 path", async () => {
    await using dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llm.EnableSwitchRole": "1" });
    await rejectsWithStatus(dd.switchRole(LLMRole.DECODER), LLMStatusCode.LLM_PARAM_INVALID, /role not changed/);
    await rejectsWithStatus(dd.switchRole(LLMRole.PROMPT), LLMStatusCode.LLM_PARAM_INVALID, /listenIpInfo/);
    await dd.switchRole(LLMRole.PROMPT, { "llm.listenIpInfo": "127.0.0.1:0" });
    assert.equal(dd.role, LLMRole.PROMPT);
    assert.equal(dd.kvCacheManager.isInitialized(), true);
  });
});

describe("links and registration (upstream's rules)", () => {
  async function listeningPrompt(extra: Record<string, string> = {}): Promise<LLMDataDist> {
    const prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
    await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llm.listenIpInfo": "127.0.0.1:0", ...extra });
    return prompt;
  }

  function clusterOf(prompt: LLMDataDist): LLMClusterInfo {
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = prompt.clusterId;
    cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
    return cluster;
  }

  test("no remote-accessible registration after a link; unregister only once unlinked", async () => {
    await using prompt = await listeningPrompt();
    await using decoder = await openManager();
    const m = decoder.cacheManager;
    const desc = new CacheDesc(1, [64], DataType.DT_UINT8);
    const before = await m.registerCache(desc, [new Uint8Array(64)], [], true);
    const [status] = await decoder.linkClusters([clusterOf(prompt)], 5000);
    assert.equal(status, LLMStatusCode.LLM_SUCCESS);
    await rejectsWithStatus(
      m.registerCache(desc, [new Uint8Array(64)], [], true),
      LLMStatusCode.LLM_PARAM_INVALID,
      /after link/,
    );
    const after = await m.registerCache(desc, [new Uint8Array(64)]); // DEVICE, default: not remote-accessible now
    await rejectsWithStatus(m.unregisterCache(before.cacheId), LLMStatusCode.LLM_PARAM_INVALID, /unlinked/);
    await decoder.unlinkClusters([clusterOf(prompt)], 5000);
    await m.unregisterCache(before.cacheId);
    await m.unregisterCache(after.cacheId);
  });

  test("a PROMPT's registered and host-pool caches are pulled through the link's socket, pooled ones from its pools", async () => {
    await using prompt = await listeningPrompt({
      "llm.EnableCacheManager": "1",
      "llm.MemPoolConfig": POOL,
      "llm.HostMemPoolConfig": HOST_POOL,
    });
    const registered = await prompt.cacheManager.registerCache(
      new CacheDesc(1, [1, 64], DataType.DT_UINT8, Placement.HOST),
      [new Uint8Array(64).fill(7)],
    );
    const hosted = await prompt.cacheManager.allocateCache(
      new CacheDesc(1, [1, 64], DataType.DT_UINT8, Placement.HOST),
    );
    (prompt.cacheManager.getCacheTensorViews(hosted)[0].data as Uint8Array).fill(9);
    const pooled = await prompt.cacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
    (prompt.cacheManager.getCacheTensorViews(pooled)[0].data as Uint8Array).fill(5);
    await using decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
    const [status] = await decoder.linkClusters([clusterOf(prompt)], 5000);
    assert.equal(status, LLMStatusCode.LLM_SUCCESS);
    const into = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
    for (const [cache, value] of [[registered, 7], [hosted, 9], [pooled, 5]] as const) {
      await decoder.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, cache.cacheId, 0), into);
      const bytes = (await decoder.kvCacheManager.getCacheTensors(into))[0].data;
      assert.deepEqual([bytes[0], bytes[63]], [value, value]);
    }
    await decoder.unlinkClusters([clusterOf(prompt)], 5000);
  });
});
