// copyCache: one batch row of every tensor, on every device, with upstream's checks.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CacheDesc, DataType, type KvCache, type LLMDataDist, LLMStatusCode, ValueError } from "../mod.ts";
import { openInstance, rejectsWith, rejectsWithStatus } from "./helpers.ts";

function bytesOfTensor(dd: LLMDataDist, cache: KvCache, index: number, device = 0): Uint8Array {
  const view = dd.kvCacheManager.getCacheTensorViews(cache, index)[device];
  return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
}

describe("copyCache", () => {
  test("the upstream sample: a [1,4,8] FP16 request into batch row 1 of a [4,4,8] cache", async () => {
    await using dd = await openInstance({ devices: [0, 1] });
    const manager = dd.kvCacheManager;
    const dst = await manager.allocateCache(new CacheDesc(2, [4, 4, 8], DataType.DT_FLOAT16));
    const src = await manager.allocateCache(new CacheDesc(2, [1, 4, 8], DataType.DT_FLOAT16));
    for (let t = 0; t < 2; t++) {
      for (let d = 0; d < 2; d++) {
        bytesOfTensor(dd, src, t, d).forEach((_, i, a) => (a[i] = 1 + t * 10 + d * 100 + (i % 7)));
      }
    }
    await manager.copyCache(dst, src, 1, 0);
    for (let t = 0; t < 2; t++) {
      for (let d = 0; d < 2; d++) {
        const out = bytesOfTensor(dd, dst, t, d);
        assert.ok(out.subarray(0, 64).every((b) => b === 0), "row 0 untouched");
        assert.deepEqual(out.subarray(64, 128), bytesOfTensor(dd, src, t, d), `row 1 of tensor ${t} on device ${d}`);
        assert.ok(out.subarray(128).every((b) => b === 0), "rows 2, 3 untouched");
      }
    }
  });

  test("offset and size pick bytes within the row", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(1, [2, 16], DataType.DT_UINT8);
    const dst = await manager.allocateCache(desc);
    const src = await manager.allocateCache(desc);
    bytesOfTensor(dd, src, 0).forEach((_, i, a) => (a[i] = i + 1));
    await manager.copyCache(dst, src, 0, 1, 4, 8);
    const out = bytesOfTensor(dd, dst, 0);
    assert.deepEqual([...out.subarray(0, 16)], [0, 0, 0, 0, 21, 22, 23, 24, 25, 26, 27, 28, 0, 0, 0, 0]);
    await manager.copyCache(dst, src, 1, 0, 10); // size -1: the rest of the row
    assert.deepEqual([...out.subarray(16, 32)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11, 12, 13, 14, 15, 16]);
  });

  test("rows of megabytes are copied off the JavaScript thread, correctly", async () => {
    await using dd = await openInstance({ devices: [0, 1], poolBytes: 64 << 20 });
    const manager = dd.kvCacheManager;
    const dst = await manager.allocateCache(new CacheDesc(2, [2, 3 << 20], DataType.DT_UINT8));
    const src = await manager.allocateCache(new CacheDesc(2, [1, 3 << 20], DataType.DT_UINT8));
    for (let t = 0; t < 2; t++) {
      for (let d = 0; d < 2; d++) bytesOfTensor(dd, src, t, d).forEach((_, i, a) => (a[i] = (i * 13 + t + d) & 0xFF));
    }
    await manager.copyCache(dst, src, 1, 0);
    for (let t = 0; t < 2; t++) {
      for (let d = 0; d < 2; d++) {
        assert.deepEqual(bytesOfTensor(dd, dst, t, d).subarray(3 << 20), bytesOfTensor(dd, src, t, d));
      }
    }
  });

  test("within one cache: rows that do not overlap", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const cache = await manager.allocateCache(new CacheDesc(1, [2, 8], DataType.DT_UINT8));
    bytesOfTensor(dd, cache, 0).set([1, 2, 3, 4, 5, 6, 7, 8]);
    await manager.copyCache(cache, cache, 1, 0);
    assert.deepEqual([...bytesOfTensor(dd, cache, 0).subarray(8)], [1, 2, 3, 4, 5, 6, 7, 8]);
    await rejectsWithStatus(manager.copyCache(cache, cache, 1, 1), LLMStatusCode.LLM_PARAM_INVALID, /overlap/);
  });

  test("argument errors", async () => {
    await using dd = await openInstance();
    await using other = await openInstance();
    const manager = dd.kvCacheManager;
    const dst = await manager.allocateCache(new CacheDesc(1, [4, 16], DataType.DT_UINT8));
    const src = await manager.allocateCache(new CacheDesc(1, [2, 16], DataType.DT_UINT8));
    const invalid = LLMStatusCode.LLM_PARAM_INVALID;
    await rejectsWith(manager.copyCache({} as KvCache, src), TypeError, /dst/);
    await rejectsWith(manager.copyCache(dst, null as unknown as KvCache), TypeError, /src/);
    await rejectsWith(manager.copyCache(dst, src, "1" as unknown as number), TypeError, /dstBatchIndex/);
    await rejectsWith(manager.copyCache(dst, src, 0, 2 ** 32), ValueError, /srcBatchIndex/); // uint32, as upstream
    await rejectsWith(manager.copyCache(dst, src, -1, 0), ValueError, /dstBatchIndex/);
    await rejectsWith(manager.copyCache(dst, src, 0, 0, -1), ValueError, /offset/);
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 0, 0, 0), invalid, /size/); // upstream: -1 or > 0
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 0, 0, -2), invalid, /size/);
    await rejectsWith(manager.copyCache(dst, src, 0, 0, 0.5), TypeError, /offset/);
    await rejectsWithStatus(manager.copyCache(dst, src, 4, 0), invalid, /dstBatchIndex/);
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 2 ** 31), invalid, /srcBatchIndex/);
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 2), invalid, /srcBatchIndex/);
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 0, 16), invalid, /exceeds the row/);
    await rejectsWithStatus(manager.copyCache(dst, src, 0, 0, 8, 9), invalid, /exceeds the row/);
    const wider = await manager.allocateCache(new CacheDesc(1, [4, 17], DataType.DT_UINT8));
    await rejectsWithStatus(manager.copyCache(wider, src), invalid, /differ/);
    const typed = await manager.allocateCache(new CacheDesc(1, [4, 16], DataType.DT_INT8));
    await rejectsWithStatus(manager.copyCache(typed, src), invalid, /differ/);
    const batchLast = await manager.allocateCache(new CacheDesc(1, [16, 4], DataType.DT_UINT8, 1, 1));
    await rejectsWithStatus(manager.copyCache(batchLast, batchLast), invalid, /dimension 0/);
    const foreign = await other.kvCacheManager.allocateCache(new CacheDesc(1, [2, 16], DataType.DT_UINT8));
    await rejectsWithStatus(manager.copyCache(dst, foreign), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, /another/);
    await manager.deallocateCache(src);
    await rejectsWithStatus(manager.copyCache(dst, src), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, /deallocated/);
  });

  test("abort before the call rejects with the reason", async () => {
    await using dd = await openInstance();
    const manager = dd.kvCacheManager;
    const a = await manager.allocateCache(new CacheDesc(1, [2, 16], DataType.DT_UINT8));
    await assert.rejects(manager.copyCache(a, a, 1, 0, 0, -1, { signal: AbortSignal.abort(new Error("no")) }), /no/);
  });
});
