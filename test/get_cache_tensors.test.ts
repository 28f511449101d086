// getCacheTensors as the README's "The headline call" describes it: one host copy per device, upstream errors and codes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  CacheDesc,
  DataType,
  KvCache,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
  Tensor,
  ValueError,
} from "../mod.ts";
import { freshClusterId, openInstance, rejectsWith, rejectsWithStatus } from "./helpers.ts";

/** Fills every byte of tensor `index` of `cache` on every device through views. */
function fill(dd: LLMDataDist, cache: KvCache, index: number, seed: number): void {
  for (const view of dd.kvCacheManager.getCacheTensorViews(cache, index)) {
    const bytes = new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (seed + i * 7 + view.deviceId * 31) & 0xFF;
  }
}

function expectedBytes(length: number, seed: number, deviceId: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (seed + i * 7 + deviceId * 31) & 0xFF;
  return bytes;
}

function bytesOf(tensor: Tensor): Uint8Array {
  return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.byteLength);
}

describe("getCacheTensors returns host copies", () => {
  test("one tensor per device, in device order, with the desc's shape and type", async () => {
    await using dd = await openInstance({ devices: [3, 1] });
    const desc = new CacheDesc(3, [4, 8], DataType.DT_FLOAT16);
    const cache = await dd.kvCacheManager.allocateCache(desc);
    fill(dd, cache, 2, 5);
    const tensors = await dd.kvCacheManager.getCacheTensors(cache, 2);
    assert.equal(tensors.length, 2);
    assert.deepEqual(tensors.map((t) => t.deviceId), [3, 1]);
    for (const tensor of tensors) {
      assert.ok(tensor instanceof Tensor);
      assert.deepEqual(tensor.shape, [4, 8]);
      assert.equal(tensor.dataType, DataType.DT_FLOAT16);
      assert.ok(tensor.data instanceof Uint16Array);
      assert.equal(tensor.byteLength, desc.size);
      assert.deepEqual(bytesOf(tensor), expectedBytes(desc.size, 5, tensor.deviceId));
    }
  });

  test("tensorIndex defaults to 0 and picks one tensor of the cache", async () => {
    await using dd = await openInstance();
    const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [16], DataType.DT_UINT8));
    fill(dd, cache, 0, 1);
    fill(dd, cache, 1, 2);
    const [first] = await dd.kvCacheManager.getCacheTensors(cache);
    const [second] = await dd.kvCacheManager.getCacheTensors(cache, 1);
    assert.deepEqual(bytesOf(first), expectedBytes(16, 1, 0));
    assert.deepEqual(bytesOf(second), expectedBytes(16, 2, 0));
  });

  test("the copy is JavaScript's: independent of the cache and valid after free and finalize", async () => {
    const dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [32], DataType.DT_INT32, Placement.HOST));
    (manager.getCacheTensorViews(cache)[0].data as Int32Array).fill(9);
    const [copy] = await manager.getCacheTensors(cache);
    (copy.data as Int32Array).fill(1);
    const [again] = await manager.getCacheTensors(cache);
    assert.equal(again.data[0], 9, "writing the copy must not change the cache");
    (manager.getCacheTensorViews(cache)[0].data as Int32Array).fill(4);
    assert.equal(again.data[5], 9, "writing the cache must not change an earlier copy");
    await manager.deallocateCache(cache);
    dd.finalize();
    assert.equal(again.data[31], 9);
    assert.equal(again.revoked, false);
  });

  test("every data type comes in its TypedArray", async () => {
    await using dd = await openInstance({ devices: [0, 1] });
    const expected: [DataType, string, number][] = [
      [DataType.DT_FLOAT, "Float32Array", 4],
      [DataType.DT_FLOAT16, "Uint16Array", 2],
      [DataType.DT_INT8, "Int8Array", 1],
      [DataType.DT_INT32, "Int32Array", 4],
      [DataType.DT_UINT8, "Uint8Array", 1],
      [DataType.DT_INT16, "Int16Array", 2],
      [DataType.DT_UINT16, "Uint16Array", 2],
      [DataType.DT_UINT32, "Uint32Array", 4],
      [DataType.DT_INT64, "BigInt64Array", 8],
      [DataType.DT_UINT64, "BigUint64Array", 8],
      [DataType.DT_DOUBLE, "Float64Array", 8],
      [DataType.DT_BOOL, "Uint8Array", 1],
      [DataType.DT_BF16, "Uint16Array", 2],
    ];
    assert.equal(expected.length, Object.keys(DataType).length);
    for (const [dataType, arrayName, itemSize] of expected) {
      const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [3, 5], dataType));
      fill(dd, cache, 1, dataType);
      const tensors = await dd.kvCacheManager.getCacheTensors(cache, 1);
      for (const tensor of tensors) {
        assert.equal(tensor.data.constructor.name, arrayName);
        assert.equal(tensor.data.length, 15);
        assert.equal(tensor.byteLength, 15 * itemSize);
        assert.deepEqual(bytesOf(tensor), expectedBytes(15 * itemSize, dataType, tensor.deviceId));
      }
      await dd.kvCacheManager.deallocateCache(cache);
    }
  });

  test("large tensors (read off the JavaScript thread) on two devices", async () => {
    await using dd = await openInstance({ devices: [0, 1], poolBytes: 32 << 20 });
    const desc = new CacheDesc(2, [3 << 20], DataType.DT_UINT8); // 3 MiB: several native chunks
    const cache = await dd.kvCacheManager.allocateCache(desc);
    fill(dd, cache, 1, 77);
    const tensors = await dd.kvCacheManager.getCacheTensors(cache, 1);
    assert.equal(tensors.length, 2);
    for (const tensor of tensors) assert.deepEqual(bytesOf(tensor), expectedBytes(desc.size, 77, tensor.deviceId));
  });
});

describe("getCacheTensors argument errors", () => {
  test("cache that is not a KvCache is a TypeError", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const fakes: unknown[] = [undefined, null, 1, 1n, "cache", {}, { cacheId: 1n }, [], () => 1];
    for (const fake of fakes) {
      await rejectsWith(manager.getCacheTensors(fake as KvCache), TypeError, /cache must be a KvCache/);
    }
    const real = await manager.allocateCache(new CacheDesc(1, [4], DataType.DT_INT8));
    await rejectsWith(manager.getCacheTensors(Object.create(real)), TypeError);
    assert.throws(() => new (KvCache as unknown as new () => unknown)(), TypeError);
  });

  test("tensorIndex that is not an integer is a TypeError; outside int32 a ValueError", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(2, [4], DataType.DT_INT8));
    for (const index of ["1", 1.5, NaN, Infinity, -Infinity, 1n, null, {}, true]) {
      await rejectsWith(manager.getCacheTensors(cache, index as number), TypeError, /tensorIndex/);
    }
    for (const index of [2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, 1e300]) {
      const err = await rejectsWith(manager.getCacheTensors(cache, index), ValueError, /tensorIndex/);
      assert.ok(err instanceof RangeError);
    }
  });

  test("tensorIndex < 0 or >= numTensors is LLM_PARAM_INVALID", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(2, [4], DataType.DT_INT8));
    for (const index of [-1, 2, 3, 2 ** 31 - 1, -(2 ** 31)]) {
      await rejectsWithStatus(manager.getCacheTensors(cache, index), LLMStatusCode.LLM_PARAM_INVALID, /tensorIndex/);
    }
  });

  test("bad options are a TypeError", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [4], DataType.DT_INT8));
    await rejectsWith(manager.getCacheTensors(cache, 0, 5 as never), TypeError, /options/);
    await rejectsWith(manager.getCacheTensors(cache, 0, { signal: {} as AbortSignal }), TypeError, /signal/);
  });

  test("a deallocated cache is LLM_KV_CACHE_NOT_EXIST", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [4], DataType.DT_INT8));
    await manager.deallocateCache(cache);
    await rejectsWithStatus(manager.getCacheTensors(cache), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, /deallocated/);
    await rejectsWithStatus(manager.deallocateCache(cache), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
  });

  test("another instance's cache is LLM_KV_CACHE_NOT_EXIST, even with a matching id", async () => {
    await using a = await openInstance();
    await using b = await openInstance();
    const desc = new CacheDesc(1, [4], DataType.DT_INT8);
    const fromA = await a.kvCacheManager.allocateCache(desc);
    const fromB = await b.kvCacheManager.allocateCache(desc);
    assert.equal(fromA.cacheId, fromB.cacheId);
    await rejectsWithStatus(
      b.kvCacheManager.getCacheTensors(fromA),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      /another LLMDataDist/,
    );
  });
});

describe("instance state", () => {
  test("before init: a clear LLMException, never a crash", async () => {
    const dd = new LLMDataDist(LLMRole.DECODER, 9n);
    assert.equal(dd.kvCacheManager.isInitialized(), false);
    const desc = new CacheDesc(1, [4], DataType.DT_INT8);
    await rejectsWithStatus(dd.kvCacheManager.allocateCache(desc), LLMStatusCode.LLM_FAILED, /not initialized/);
    await rejectsWithStatus(() => dd.kvCacheManager.poolUsage(), LLMStatusCode.LLM_FAILED, /not initialized/);
    const other = await openInstance();
    const cache = await other.kvCacheManager.allocateCache(desc);
    await rejectsWithStatus(dd.kvCacheManager.getCacheTensors(cache), LLMStatusCode.LLM_FAILED, /init\(\)/);
    other.finalize();
  });

  test("after finalize: LLM_ENGINE_FINALIZED for every call", async () => {
    const dd = await openInstance();
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(1, [4], DataType.DT_INT8);
    const cache = await manager.allocateCache(desc);
    assert.equal(manager.isInitialized(), true);
    dd.finalize();
    dd.finalize(); // twice is fine
    assert.equal(manager.isInitialized(), false);
    const finalized = LLMStatusCode.LLM_ENGINE_FINALIZED;
    await rejectsWithStatus(manager.getCacheTensors(cache), finalized);
    await rejectsWithStatus(() => manager.getCacheTensorViews(cache), finalized);
    await rejectsWithStatus(manager.allocateCache(desc), finalized);
    await rejectsWithStatus(manager.deallocateCache(cache), finalized);
    await rejectsWithStatus(manager.copyCache(cache, cache), finalized);
    await rejectsWithStatus(dd.init({}), finalized);
    await cache[Symbol.asyncDispose](); // disposing after finalize does nothing
  });

  test("init again returns at once, as upstream; a failed init can be retried", async () => {
    const dd = await openInstance();
    await dd.init({ "ge.flowGraphMemMaxSize": "not looked at" });
    assert.equal(dd.kvCacheManager.isInitialized(), true);
    dd.finalize();
    const retry = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
    await rejectsWith(retry.init({ "ge.exec.deviceId": "zero" }), ValueError, /ge.exec.deviceId/);
    await rejectsWithStatus(retry.init({ "ge.flowGraphMemMaxSize": "lots" }), LLMStatusCode.LLM_PARAM_INVALID);
    await retry.init({ "ge.flowGraphMemMaxSize": "4096" });
    assert.equal(retry.kvCacheManager.isInitialized(), true);
    retry.finalize();
  });

  test("bad constructor and init arguments", async () => {
    await rejectsWith(() => new LLMDataDist("PROMPT" as unknown as LLMRole, 1n), TypeError, /role/);
    await rejectsWith(() => new LLMDataDist(4 as LLMRole, 1n), ValueError, /role/);
    await rejectsWith(() => new LLMDataDist(LLMRole.MIX, -1), ValueError, /clusterId/);
    await rejectsWith(() => new LLMDataDist(LLMRole.MIX, 1.5), TypeError, /clusterId/);
    await rejectsWith(() => new LLMDataDist(LLMRole.MIX, 1n, { backend: "gpu" as "host" }), ValueError, /backend/);
    await rejectsWith(() => new LLMDataDist(LLMRole.MIX, 1n, { libraryPath: 3 as unknown as string }), TypeError);
    const dd = new LLMDataDist(LLMRole.MIX, 2n ** 64n - 1n);
    await rejectsWith(dd.init(null as unknown as Record<string, string>), TypeError, /options/);
    await rejectsWith(dd.init({ "llm.SyncKvCacheWaitTime": 5 as unknown as string }), TypeError);
    await rejectsWith(dd.init({ "llm.SyncKvCacheWaitTime": "0" }), ValueError, /SyncKvCacheWaitTime/);
    await rejectsWith(dd.init({ "a\nb": "1" }), ValueError);
  });
});

describe("allocateCache", () => {
  test("ids start at 1 and are never reused; memory returns to the pool", async () => {
    await using dd = await openInstance({ devices: [0, 1] });
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(2, [100], DataType.DT_UINT8); // 100 bytes: padded to 128 per tensor
    const ids: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const cache = await manager.allocateCache(desc);
      ids.push(cache.cacheId);
      assert.equal(cache.perDeviceTensorAddrs.length, 2);
      for (const addrs of cache.perDeviceTensorAddrs) {
        assert.equal(addrs.length, 2);
        for (const addr of addrs) assert.equal(addr % 64n, 0n, "tensors are 64-byte aligned");
      }
      assert.ok(manager.poolUsage().every((pool) => pool.usedBytes >= 256));
      await manager.deallocateCache(cache);
    }
    assert.deepEqual(ids, [1n, 2n, 3n, 4n, 5n]);
    assert.deepEqual(manager.poolUsage().map((pool) => pool.usedBytes), [0, 0]);
  });

  test("a full pool is LLM_DEVICE_OUT_OF_MEMORY and the instance stays usable", async () => {
    await using dd = await openInstance({ poolBytes: 1 << 20 });
    const manager = dd.kvCacheManager;
    const half = new CacheDesc(1, [600 << 10], DataType.DT_UINT8);
    const first = await manager.allocateCache(half);
    await rejectsWithStatus(manager.allocateCache(half), LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY);
    await manager.deallocateCache(first);
    const again = await manager.allocateCache(half);
    assert.ok(again.cacheId > first.cacheId, "ids are never reused");
    assert.equal(manager.poolUsage()[0].usedBytes, 600 << 10);
  });

  test("bad arguments", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    await rejectsWith(manager.allocateCache({} as CacheDesc), TypeError, /cacheDesc/);
    const desc = new CacheDesc(1, [2, 4], DataType.DT_INT8);
    await rejectsWith(manager.allocateCache(desc, "keys" as never), TypeError, /cacheKeys/);
    await rejectsWith(manager.allocateCache(desc, [{}] as never), TypeError, /cacheKeys\[0\]/);
  });
});

test("LLMException is what every engine error is", async () => {
  await using dd = await openInstance();
  const err = await rejectsWithStatus(
    dd.kvCacheManager.getCacheTensors(
      await dd.kvCacheManager.allocateCache(new CacheDesc(1, [1], DataType.DT_INT8)),
      1,
    ),
    LLMStatusCode.LLM_PARAM_INVALID,
  );
  assert.ok(err instanceof LLMException && err instanceof Error);
});
