// CacheManager.pullBlocks / pullCache across processes on the host backend: a
// PROMPT child in cache-manager mode holds blocks caches named by
// BlocksCacheKeys and a cache named by CacheKeys; this process's DECODER pulls
// block lists (one native call each), by key and by id, with layer ranges,
// and checks every byte. Then upstream's argument rules, and a PROMPT killed
// in the middle of a pull.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  type LLMDataDist,
  LLMStatusCode,
  ValueError,
} from "../mod.ts";
import { startChild } from "./support/children.ts";
import { patternByte } from "./support/pattern.ts";
import { cacheBytes, link, openManagerDecoder } from "./support/links.ts";
import { freshClusterId, rejectsWith, rejectsWithStatus, sleep } from "./helpers.ts";

const FILL = 0xEE;

function fill(dd: LLMDataDist, cache: Cache): void {
  for (let t = 0; t < cache.cacheDesc.numTensors; t++) cacheBytes(dd, cache, t).fill(FILL);
}

/**
 * Checks every byte of `cache`: block `dst` of tensor `dstTensor` holds the
 * pattern of `seed` at byte `srcOffset` of source tensor `srcTensor`, for each
 * expected copy; every other byte is still FILL.
 */
function assertBlocks(
  dd: LLMDataDist,
  cache: Cache,
  copies: { dstTensor: number; srcTensor: number; dst: number; srcOffset: number }[],
  seed: number,
): void {
  const desc = cache.cacheDesc;
  const block = desc.size / desc.batchSize;
  for (let t = 0; t < desc.numTensors; t++) {
    const bytes = cacheBytes(dd, cache, t);
    const expected = new Uint8Array(bytes.length).fill(FILL);
    for (const c of copies.filter((c) => c.dstTensor === t)) {
      for (let i = 0; i < block; i++) expected[c.dst * block + i] = patternByte(seed, c.srcTensor, 0, c.srcOffset + i);
    }
    const bad = bytes.findIndex((b, i) => b !== expected[i]);
    assert.equal(bad, -1, `tensor ${t}: byte ${bad} is ${bytes[bad]}, expected ${expected[bad]}`);
  }
}

function allTensors(n: number, pairs: [number, number][], srcBlock: number, srcBase = 0) {
  return Array.from(
    { length: n },
    (_, t) => pairs.map(([s, d]) => ({ dstTensor: t, srcTensor: t, dst: d, srcOffset: srcBase + s * srcBlock })),
  ).flat();
}

describe("CacheManager.pullBlocks across processes, 4 MiB and more (copies shared with the copy helper)", () => {
  test("scattered block lists, layer ranges, local block copies and a row of 4-8 MiB: every byte checked", async () => {
    const KiB = 1024;
    const clusterId = freshClusterId();
    const child = startChild("blocks_prompt_process.ts", {
      clusterId: String(clusterId),
      poolBytes: 24 << 20,
      caches: [
        // 4 tensors (2 layers) of 32 blocks of 64 KiB: 8 MiB
        { numTensors: 4, shape: [32, 64 * KiB], dataType: DataType.DT_UINT8, seed: 21, blocksModelId: 0 },
        // 2 tensors of 2 rows of 2.5 MiB INT32, row 0 named by request 99, row 1 by request 9
        { numTensors: 2, shape: [2, 640 * KiB], dataType: DataType.DT_INT32, seed: 23, keys: [[99, 0], [9, 0]] },
      ],
    });
    try {
      const ready = await child.next();
      await using decoder = await openManagerDecoder(false, 40 << 20);
      const m = decoder.cacheManager;
      const blocks = await m.allocateBlocksCache(new CacheDesc(4, [32, 64 * KiB], DataType.DT_UINT8));
      await link(decoder, clusterId, ready.port as number);
      const block = 64 * KiB;

      // Every block, in a scrambled order: 4 tensors x 32 x 64 KiB = 8 MiB in one call.
      const order = Array.from({ length: 32 }, (_, i) => (i * 13 + 5) % 32);
      const pairs = order.map((s, d): [number, number] => [s, d]);
      fill(decoder, blocks);
      await m.pullBlocks(new BlocksCacheKey(clusterId), blocks, order, pairs.map((p) => p[1]));
      assertBlocks(decoder, blocks, allTensors(4, pairs, block), 21);

      // Layer 1 (tensors 2, 3) into layer 0 here, every block: exactly 4 MiB.
      fill(decoder, blocks);
      await m.pullBlocks(new BlocksCacheKey(clusterId), blocks, order, pairs.map((p) => p[1]), {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      assertBlocks(
        decoder,
        blocks,
        [0, 1].flatMap((t) =>
          pairs.map(([s, d]) => ({ dstTensor: t, srcTensor: t + 2, dst: d, srcOffset: s * block }))
        ),
        21,
      );

      // Local block copies within the cache, blocks 0-15 into 16-31 in another order: 16 x 4 x 64 KiB = 4 MiB.
      const copyPairs = Array.from({ length: 16 }, (_, i): [number, number] => [i, 16 + (i * 5 + 3) % 16]);
      const before = Array.from({ length: 4 }, (_, t) => cacheBytes(decoder, blocks, t).slice());
      const mapping: Record<number, number[]> = {};
      for (const [s, d] of copyPairs) (mapping[s] ??= []).push(d);
      await m.copyBlocks(blocks, mapping);
      for (let t = 0; t < 4; t++) {
        const expected = before[t].slice();
        for (const [s, d] of copyPairs) expected.set(before[t].subarray(s * block, (s + 1) * block), d * block);
        const bytes = cacheBytes(decoder, blocks, t);
        const bad = bytes.findIndex((b, i) => b !== expected[i]);
        assert.equal(bad, -1, `copyBlocks, tensor ${t}: byte ${bad} is ${bytes[bad]}, expected ${expected[bad]}`);
      }

      // A row of 2.5 MiB per tensor by CacheKey into row 0: 5 MiB, the last piece of each tensor half a chunk.
      const rows = await m.allocateCache(new CacheDesc(2, [2, 640 * KiB], DataType.DT_INT32));
      fill(decoder, rows);
      await m.pullCache(new CacheKey(clusterId, 9n), rows, 0);
      assertBlocks(decoder, rows, allTensors(2, [[1, 0]], 2560 * KiB), 23);
    } finally {
      await child.stop();
    }
  });
});

describe("CacheManager.pullBlocks across processes", () => {
  test("block lists by BlocksCacheKey, CacheKey and id, data types, layer ranges; every byte checked", async () => {
    const clusterId = freshClusterId();
    const child = startChild("blocks_prompt_process.ts", {
      clusterId: String(clusterId),
      caches: [
        // 4 tensors (2 layers) of 16 blocks of [8, 4] FP16: 64-byte blocks
        { numTensors: 4, shape: [16, 8, 4], dataType: DataType.DT_FLOAT16, seed: 3, blocksModelId: 0 },
        // model 1: 2 tensors of 8 blocks of [32] INT8
        { numTensors: 2, shape: [8, 32], dataType: DataType.DT_INT8, seed: 5, blocksModelId: 1 },
        // a cache of 2 rows of 128 INT32 (512-byte rows), row 0 named by request 7
        { numTensors: 4, shape: [2, 128], dataType: DataType.DT_INT32, seed: 11, keys: [[7, 0]] },
        // model 2: FP32 and BF16-sized blocks: 2 tensors of 4 blocks of [2, 8] FP32
        { numTensors: 2, shape: [4, 2, 8], dataType: DataType.DT_FLOAT, seed: 13, blocksModelId: 2 },
      ],
    });
    try {
      const ready = await child.next();
      const ids = (ready.cacheIds as string[]).map(BigInt);
      await using decoder = await openManagerDecoder();
      const m = decoder.cacheManager;
      const fp16 = await m.allocateBlocksCache(new CacheDesc(4, [16, 8, 4], DataType.DT_FLOAT16));
      const int8 = await m.allocateBlocksCache(new CacheDesc(2, [4, 32], DataType.DT_INT8));
      const fp32 = await m.allocateBlocksCache(new CacheDesc(2, [6, 2, 8], DataType.DT_FLOAT));
      // 64-byte blocks of INT32, for rows cut into blocks.
      const int32 = await m.allocateBlocksCache(new CacheDesc(4, [10, 16], DataType.DT_INT32));
      const cluster = await link(decoder, clusterId, ready.port as number);

      // By BlocksCacheKey, any order, repeats of a source block.
      fill(decoder, fp16);
      const pairs: [number, number][] = [[3, 1], [0, 2], [15, 15], [3, 7]];
      await m.pullBlocks(new BlocksCacheKey(clusterId), fp16, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
      assertBlocks(decoder, fp16, allTensors(4, pairs, 64), 3);
      // Pulled again: the key is not consumed.
      await m.pullBlocks(new BlocksCacheKey(clusterId, 0n), fp16, [1], [0]);
      assertBlocks(decoder, fp16, allTensors(4, [...pairs, [1, 0]], 64), 3);

      // Layer 1 of the PROMPT (tensors 2, 3) into layer 0 here (tensors 0, 1), as {start, stop} and as a pair.
      fill(decoder, fp16);
      await m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [5, 6], [8, 9], {
        srcLayerRange: { start: 1, stop: 2 },
        dstLayerRange: [0, 1],
      });
      assertBlocks(
        decoder,
        fp16,
        [0, 1].flatMap((t) =>
          [[5, 8], [6, 9]].map(([s, d]) => ({ dstTensor: t, srcTensor: t + 2, dst: d, srcOffset: s * 64 }))
        ),
        3,
      );
      // One tensor per layer: tensor 3 into tensor 2.
      fill(decoder, fp16);
      await m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [4], [4], {
        srcLayerRange: [3, 4],
        dstLayerRange: [2, 3],
        tensorNumPerLayer: 1,
      });
      assertBlocks(decoder, fp16, [{ dstTensor: 2, srcTensor: 3, dst: 4, srcOffset: 4 * 64 }], 3);

      // Another model's cache, INT8 and FP32.
      fill(decoder, int8);
      await m.pullBlocks(new BlocksCacheKey(clusterId, 1n), int8, [7, 0, 3, 1], [0, 1, 2, 3]);
      assertBlocks(decoder, int8, allTensors(2, [[7, 0], [0, 1], [3, 2], [1, 3]], 32), 5);
      fill(decoder, fp32);
      await m.pullBlocks(new BlocksCacheKey(clusterId, 2n), fp32, [3, 2], [5, 0]);
      assertBlocks(decoder, fp32, allTensors(2, [[3, 5], [2, 0]], 64), 13);

      // By id: row 1 of the INT32 cache, cut into 64-byte blocks, into blocks 9, 0, 4.
      fill(decoder, int32);
      await m.pullBlocks(new CacheKeyByIdAndIndex(clusterId, ids[2], 1), int32, [], [9, 0, 4]);
      assertBlocks(decoder, int32, allTensors(4, [[0, 9], [1, 0], [2, 4]], 64, 512), 11);
      // By CacheKey, then consumed.
      fill(decoder, int32);
      await m.pullBlocks(new CacheKey(clusterId, 7n), int32, undefined, [2, 3]);
      assertBlocks(decoder, int32, allTensors(4, [[0, 2], [1, 3]], 64), 11);
      await rejectsWithStatus(
        m.pullBlocks(new CacheKey(clusterId, 7n), int32, [], [2]),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );

      // pullCache with layer ranges: layer 1 of row 1 into row 0's layer 0 of a cache that is not a blocks cache.
      const rows = await m.allocateCache(new CacheDesc(4, [3, 128], DataType.DT_INT32));
      fill(decoder, rows);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[2], 1), rows, 0, -1, {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      assertBlocks(decoder, rows, [0, 1].map((t) => ({ dstTensor: t, srcTensor: t + 2, dst: 0, srcOffset: 512 })), 11);
      // ... and without: the whole row of every tensor.
      fill(decoder, rows);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[2], 0), rows, 2);
      assertBlocks(decoder, rows, allTensors(4, [[0, 2]], 512), 11);

      // Refused by the PROMPT, or by what it answered.
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId, 9n), fp16, [0], [0]),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [16], [0]),
        LLMStatusCode.LLM_PARAM_INVALID,
        /src_block_index:16/,
      );
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId, 1n), fp16, [0], [0]),
        LLMStatusCode.LLM_PARAM_INVALID,
        /the source cache has 2 tensors and the destination 4/,
      );
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId, 1n), fp16, [0], [0], {
          srcLayerRange: [0, 1],
          dstLayerRange: [1, 2],
        }),
        LLMStatusCode.LLM_PARAM_INVALID,
        /src block size:32 and dst block size:64 must be equal/,
      );
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId, 1n), int8, [0], [0], {
          srcLayerRange: [1, 2],
          dstLayerRange: [0, 1],
        }),
        LLMStatusCode.LLM_PARAM_INVALID,
        /src tensors \[2, 4\) are out of range/,
      );
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId, 2n), int8, [0], [0]),
        LLMStatusCode.LLM_PARAM_INVALID,
      );
      await decoder.unlinkClusters([cluster], 3000);
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [0], [0]),
        LLMStatusCode.LLM_NOT_YET_LINK,
      );
    } finally {
      await child.stop();
    }
  });

  test("upstream's argument rules", async () => {
    await using decoder = await openManagerDecoder();
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(4, [8, 16], DataType.DT_INT8));
    const rows = await m.allocateCache(new CacheDesc(4, [2, 16], DataType.DT_INT8));
    const key = new BlocksCacheKey(1n);
    const P = LLMStatusCode.LLM_PARAM_INVALID;
    await rejectsWith(m.pullBlocks({} as BlocksCacheKey, blocks, [0], [0]), TypeError);
    await rejectsWith(m.pullBlocks(key, {} as Cache, [0], [0]), TypeError);
    await rejectsWith(m.pullBlocks(key, blocks, "0" as unknown as number[], [0]), TypeError);
    await rejectsWith(m.pullBlocks(key, blocks, [0], [0.5]), TypeError);
    await rejectsWithStatus(m.pullBlocks(key, rows, [0], [0]), P, /dst_cache should be blocks cache/);
    await rejectsWithStatus(m.pullBlocks(key, blocks, [0], []), P, /dst_blocks can not be empty/);
    await rejectsWithStatus(m.pullBlocks(key, blocks), P, /dst_blocks can not be empty/);
    await rejectsWithStatus(m.pullBlocks(key, blocks, [], [0]), P, /src_blocks can not be empty/);
    await rejectsWithStatus(m.pullBlocks(key, blocks, [0, 1], [0]), P, /must be equal/);
    await rejectsWithStatus(
      m.pullBlocks(new CacheKey(1n, 1n), blocks, [0], [0]),
      P,
      /src_blocks should be empty when src_cache_key is not instance of BlocksCacheKey/,
    );
    await rejectsWithStatus(
      m.pullBlocks(new CacheKeyByIdAndIndex(1n, 1n, 0), blocks, [0], [0]),
      P,
      /src_blocks should be empty/,
    );
    await rejectsWithStatus(m.pullBlocks(new CacheKey(1n, 2n ** 64n - 1n), blocks, [], [0]), P, /padding key/);
    await rejectsWithStatus(
      m.pullBlocks(key, blocks, [0], [0], { tensorNumPerLayer: 0 }),
      P,
      /tensor_num_per_layer \(0\)/,
    );
    await rejectsWith(m.pullBlocks(key, blocks, [0], [0], { tensorNumPerLayer: -1 }), ValueError);
    await rejectsWith(m.pullBlocks(key, blocks, [0], [0], { tensorNumPerLayer: 2 ** 32 }), ValueError);
    await rejectsWith(
      m.pullBlocks(key, blocks, [0], [0], { srcLayerRange: 3 as unknown as [number, number] }),
      TypeError,
    );
    await rejectsWith(
      m.pullBlocks(key, blocks, [0], [0], { srcLayerRange: [0, 1, 2] as unknown as [number, number] }),
      TypeError,
    );
    await rejectsWithStatus(
      m.pullBlocks(key, blocks, [0], [0], { srcLayerRange: [-1, 1], dstLayerRange: [0, 2] }),
      P,
      /start value:-1 is < 0/,
    );
    await rejectsWithStatus(
      m.pullBlocks(key, blocks, [0], [0], { srcLayerRange: [0, 1], dstLayerRange: { start: 0, stop: 2 } }),
      P,
      /src_layer_range size should be equal to dst_layer_range size/,
    );
    await rejectsWithStatus(
      m.pullBlocks(key, blocks, [0], [0], { srcLayerRange: [0, 3], dstLayerRange: [0, 3] }),
      P,
      /dstLayerRange covers tensors \[0, 6\)/,
    );
    // Checked natively before the PROMPT is asked: destination blocks, then the link.
    await rejectsWithStatus(m.pullBlocks(key, blocks, [0], [8]), P, /dst_block_index:8/);
    await rejectsWithStatus(m.pullBlocks(key, blocks, [0], [-1]), P, /dst_block_index/);
    await rejectsWithStatus(m.pullBlocks(key, blocks, [0], [7]), LLMStatusCode.LLM_NOT_YET_LINK);
    // pullCache's own.
    await rejectsWith(m.pullCache(key as unknown as CacheKey, rows), TypeError);
    await rejectsWithStatus(m.pullCache(new CacheKey(1n, 1n), blocks), P, /cache can not be blocks cache/);
    await rejectsWithStatus(m.pullCache(new CacheKey(1n, 1n), rows, 0, 0), P, /size \(0\) is invalid/);
    await rejectsWithStatus(
      m.pullCache(new CacheKey(1n, 1n), rows, 0, 8, { srcLayerRange: [0, 1], dstLayerRange: [0, 1] }),
      P,
      /size must be -1/,
    );
    await rejectsWithStatus(m.pullCache(new CacheKey(1n, 1n), rows, 0), LLMStatusCode.LLM_NOT_YET_LINK);
  });

  test("a PROMPT killed during a block pull: LINK_FAILED within the deadline, no hang", async () => {
    const clusterId = freshClusterId();
    const block = 4 << 20, blocks = 64;
    const pool = block * blocks + (1 << 20);
    const child = startChild("blocks_prompt_process.ts", {
      clusterId: String(clusterId),
      poolBytes: pool,
      caches: [{ numTensors: 1, shape: [blocks, block], dataType: DataType.DT_UINT8, seed: 2, blocksModelId: 0 }],
    });
    const ready = await child.next();
    await using decoder = await openManagerDecoder(false, pool, 20_000);
    await link(decoder, clusterId, ready.port as number);
    const target = await decoder.cacheManager.allocateBlocksCache(new CacheDesc(1, [blocks, block], DataType.DT_UINT8));
    const list = Array.from({ length: blocks }, (_, i) => i);
    const start = performance.now();
    const pulling = decoder.cacheManager.pullBlocks(new BlocksCacheKey(clusterId), target, list, list)
      .then(() => "resolved", (err) => err);
    await sleep(5);
    await child.kill();
    const outcome = await pulling;
    assert.ok(performance.now() - start < 20_000);
    if (outcome !== "resolved") {
      assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
    }
    // Whatever the race: the link is gone now, and the DECODER keeps working.
    await rejectsWithStatus(
      decoder.cacheManager.pullBlocks(new BlocksCacheKey(clusterId), target, [0], [0]),
      LLMStatusCode.LLM_LINK_FAILED,
    );
    const small = await decoder.cacheManager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8));
    assert.equal((await decoder.cacheManager.getCacheTensors(small))[0].byteLength, 8);
  });
});
