// getCacheTensorViews: zero-copy, writable, revoked on free and finalize; `await using`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CacheDesc, DataType, type KvCache, LLMStatusCode, Placement, type Tensor, ValueError } from "../mod.ts";
import { openInstance, rejectsWith, rejectsWithStatus } from "./helpers.ts";

// Deno and Bun can detach the buffers of revoked views; Node 20 cannot
// (ArrayBuffer.prototype.transfer arrived in Node 22), where Tensor.data
// refusing access is the protection.
const canDetach = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function";

describe("getCacheTensorViews", () => {
  test("views are the cache's memory: writes show in copies and in other views", async () => {
    await using dd = await openInstance({ devices: [0, 1] });
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(2, [4, 4], DataType.DT_FLOAT, Placement.HOST));
    const views = manager.getCacheTensorViews(cache, 1);
    assert.deepEqual(views.map((v) => v.deviceId), [0, 1]);
    (views[0].data as Float32Array).set([1.25, 2.5], 3);
    (views[1].data as Float32Array)[15] = -7;
    const again = manager.getCacheTensorViews(cache, 1);
    assert.equal(again[0].data.buffer, views[0].data.buffer, "the same memory, not a new copy");
    assert.equal(again[0].data[4], 2.5);
    const copies = await manager.getCacheTensors(cache, 1);
    assert.deepEqual([...(copies[0].data as Float32Array).subarray(3, 5)], [1.25, 2.5]);
    assert.equal(copies[1].data[15], -7);
    const other = await manager.getCacheTensors(cache, 0);
    assert.ok((other[0].data as Float32Array).every((x) => x === 0), "tensor 0 untouched");
  });

  test("the view's address is the cache's reported address", async () => {
    await using dd = await openInstance();
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(3, [8], DataType.DT_UINT8));
    const views = [0, 1, 2].map((i) => dd.kvCacheManager.getCacheTensorViews(cache, i)[0]);
    views[2].data[0] = 42;
    const addrs = cache.perDeviceTensorAddrs[0];
    assert.equal(addrs[1] - addrs[0], 64n, "8-byte tensors are 64 bytes apart");
    assert.equal((await dd.kvCacheManager.getCacheTensors(cache, 2))[0].data[0], 42);
  });

  test("argument errors are the same as getCacheTensors'", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8));
    await rejectsWith(() => manager.getCacheTensorViews({} as KvCache), TypeError, /cache/);
    await rejectsWith(() => manager.getCacheTensorViews(cache, 0.5), TypeError, /tensorIndex/);
    await rejectsWith(() => manager.getCacheTensorViews(cache, 2 ** 40), ValueError, /tensorIndex/);
    await rejectsWithStatus(() => manager.getCacheTensorViews(cache, 1), LLMStatusCode.LLM_PARAM_INVALID);
  });
});

describe("revocation", () => {
  function assertRevoked(view: Tensor, data: ArrayBufferView): void {
    assert.equal(view.revoked, true);
    assert.throws(
      () => view.data,
      (err: { statusCode?: number }) => err.statusCode === LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
    if (canDetach) assert.equal(data.byteLength, 0, "the kept TypedArray is detached");
  }

  test("deallocateCache revokes every view of the cache, and only of that cache", async () => {
    await using dd = await openInstance({ devices: [0, 1] });
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(2, [16], DataType.DT_INT32);
    const cache = await manager.allocateCache(desc);
    const keep = await manager.allocateCache(desc);
    const views = [...manager.getCacheTensorViews(cache, 0), ...manager.getCacheTensorViews(cache, 1)];
    const datas = views.map((v) => v.data);
    const kept = manager.getCacheTensorViews(keep, 0)[0];
    await manager.deallocateCache(cache);
    views.forEach((view, i) => assertRevoked(view, datas[i]));
    assert.equal(kept.revoked, false);
    (kept.data as Int32Array)[0] = 5;
    assert.equal((await manager.getCacheTensors(keep, 0))[0].data[0], 5);
    await rejectsWithStatus(() => manager.getCacheTensorViews(cache, 0), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
  });

  test("finalize revokes every view", async () => {
    const dd = await openInstance();
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [16], DataType.DT_UINT8));
    const view = dd.kvCacheManager.getCacheTensorViews(cache, 0)[0];
    const data = view.data;
    dd.finalize();
    assertRevoked(view, data);
  });

  test("a revoked view's memory reused by a new cache is not reachable through the view", async () => {
    await using dd = await openInstance({ poolBytes: 1 << 20 });
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(1, [1024], DataType.DT_UINT8);
    const first = await manager.allocateCache(desc);
    const old = manager.getCacheTensorViews(first, 0)[0];
    const address = first.perDeviceTensorAddrs[0][0]; // emptied by deallocateCache
    await manager.deallocateCache(first);
    const second = await manager.allocateCache(desc);
    assert.equal(second.perDeviceTensorAddrs[0][0], address, "same memory reused");
    (manager.getCacheTensorViews(second, 0)[0].data as Uint8Array).fill(9);
    assert.throws(() => old.data);
  });
});

describe("await using", () => {
  test("a KvCache is deallocated and an LLMDataDist finalized at the end of the block", async () => {
    const outer = await openInstance();
    {
      await using cache = await outer.kvCacheManager.allocateCache(new CacheDesc(1, [4096], DataType.DT_UINT8));
      assert.ok(outer.kvCacheManager.poolUsage()[0].usedBytes >= 4096);
      await cache[Symbol.asyncDispose](); // disposing twice is harmless
    }
    assert.equal(outer.kvCacheManager.poolUsage()[0].usedBytes, 0);
    let manager;
    {
      await using dd = outer;
      manager = dd.kvCacheManager;
      assert.equal(manager.isInitialized(), true);
    }
    assert.equal(manager.isInitialized(), false);
  });
});
