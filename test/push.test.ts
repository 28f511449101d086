// CacheManager.pushCache / pushBlocks / transferCacheAsync across processes on
// the host backend, and pulls of a PROMPT's registered memory: a PROMPT child
// (test/support/push_prompt_process.ts) holds pooled and registered caches;
// this process's DECODER links to it and pushes (into its pools through a
// shared mapping, into its registered memory through the link's socket); the
// child sends its tensors back and every byte is checked. Then upstream's
// argument rules, pushes without remote access, a PROMPT killed in the middle
// of a push, and layer-wise transfers with every kind of synchronizer.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  Placement,
  TransferConfig,
  TransferWithCacheKeyConfig,
  ValueError,
} from "../mod.ts";
import { startChild } from "./support/children.ts";
import { fillPattern, patternByte } from "./support/pattern.ts";
import { cacheBytes, dump, link, openManagerDecoder } from "./support/links.ts";
import { freshClusterId, rejectsWith, rejectsWithStatus, sleep } from "./helpers.ts";

const P = LLMStatusCode.LLM_PARAM_INVALID;

function seed(dd: LLMDataDist, cache: Cache, value: number): void {
  for (let t = 0; t < cache.cacheDesc.numTensors; t++) fillPattern(cacheBytes(dd, cache, t), value, t, 0);
}

/** A copy: `length` bytes at `at` hold the pattern of (`seed`, `tensor`) from byte `from`. */
interface Span {
  at: number;
  length: number;
  seed: number;
  tensor: number;
  from: number;
}

/** Checks every byte: the spans hold their pattern, everything else `rest` (0, or a pattern). */
function assertBytes(bytes: Uint8Array, spans: Span[], what: string, rest?: { seed: number; tensor: number }): void {
  const expected = new Uint8Array(bytes.length);
  if (rest) fillPattern(expected, rest.seed, rest.tensor, 0);
  for (const s of spans) {
    for (let i = 0; i < s.length; i++) expected[s.at + i] = patternByte(s.seed, s.tensor, 0, s.from + i);
  }
  const bad = bytes.findIndex((b, i) => b !== expected[i]);
  assert.equal(bad, -1, `${what}: byte ${bad} is ${bytes[bad]}, expected ${expected[bad]}`);
}

const U8 = DataType.DT_UINT8;

describe("CacheManager.pushBlocks / pushCache across processes", { timeout: 120_000 }, () => {
  test("into pooled and registered memory, layer ranges, by id; pulls of registered memory; every byte checked", async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      caches: [
        { numTensors: 4, shape: [16, 64], dataType: U8, blocksModelId: 0 }, // 0: pooled blocks
        { numTensors: 4, shape: [16, 64], dataType: U8, blocksModelId: 1, registered: true }, // 1: registered blocks
        { numTensors: 4, shape: [4, 256], dataType: U8 }, // 2: pooled rows
        { numTensors: 4, shape: [4, 256], dataType: U8, registered: true }, // 3: registered rows
        { numTensors: 4, shape: [16, 64], dataType: U8, blocksModelId: 2, registered: true, remoteAccessible: false },
        { numTensors: 4, shape: [16, 64], dataType: U8, blocksModelId: 3, registered: true, seed: 21 }, // 5
        { numTensors: 2, shape: [2, 128], dataType: U8, registered: true, seed: 23 }, // 6
      ],
    });
    const ready = await child.next();
    const ids = (ready.cacheIds as string[]).map(BigInt);
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(4, [16, 64], U8));
    const rows = await m.allocateCache(new CacheDesc(4, [4, 256], U8));
    seed(decoder, blocks, 7);
    seed(decoder, rows, 9);
    const cluster = await link(decoder, clusterId, ready.port as number);

    // Into the PROMPT's pool, every layer; a source block twice.
    const pairs = [[3, 1], [0, 2], [15, 15], [3, 4]];
    await m.pushBlocks(new BlocksCacheKey(clusterId), blocks, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    for (let t = 0; t < 4; t++) {
      const spans = pairs.map(([s, d]) => ({ at: d * 64, length: 64, seed: 7, tensor: t, from: s * 64 }));
      assertBytes(await dump(child, 0, t), spans, `pooled blocks, tensor ${t}`);
    }
    // One tensor per layer: tensor 3 into tensor 2, block 5 into block 6.
    await m.pushBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [5], [6], {
      srcLayerRange: [3, 4],
      dstLayerRange: [2, 3],
      tensorNumPerLayer: 1,
    });
    assertBytes(
      await dump(child, 0, 2),
      [...pairs.map(([s, d]) => ({ at: d * 64, length: 64, seed: 7, tensor: 2, from: s * 64 })), {
        at: 6 * 64,
        length: 64,
        seed: 7,
        tensor: 3,
        from: 5 * 64,
      }],
      "tensor 3 into tensor 2",
    );

    // Into registered memory (the socket): layer 1 here into layer 0 there.
    await m.pushBlocks(new BlocksCacheKey(clusterId, 1n), blocks, [5, 6], [9, 0], {
      srcLayerRange: { start: 1, stop: 2 },
      dstLayerRange: [0, 1],
    });
    for (let t = 0; t < 4; t++) {
      const spans = t < 2
        ? [[5, 9], [6, 0]].map(([s, d]) => ({ at: d * 64, length: 64, seed: 7, tensor: t + 2, from: s * 64 }))
        : [];
      assertBytes(await dump(child, 1, t), spans, `registered blocks, tensor ${t}`);
    }

    // pushCache by id: row 1 here into row 3 of the pooled cache, then
    // layer 0 of row 2 into layer 1 of row 0 of the registered one.
    await m.pushCache(new CacheKeyByIdAndIndex(clusterId, ids[2], 3), rows, 1);
    for (let t = 0; t < 4; t++) {
      assertBytes(await dump(child, 2, t), [{ at: 768, length: 256, seed: 9, tensor: t, from: 256 }], `rows ${t}`);
    }
    await m.pushCache(new CacheKeyByIdAndIndex(clusterId, ids[3], 0), rows, 2, [0, 1], [1, 2]);
    for (let t = 0; t < 4; t++) {
      const spans = t >= 2 ? [{ at: 0, length: 256, seed: 9, tensor: t - 2, from: 512 }] : [];
      assertBytes(await dump(child, 3, t), spans, `registered rows ${t}`);
    }

    // Pulls of the PROMPT's registered memory: blocks by key, a row by id.
    const pulled = await m.allocateBlocksCache(new CacheDesc(4, [4, 64], U8));
    await m.pullBlocks(new BlocksCacheKey(clusterId, 3n), pulled, [2, 7], [0, 3]);
    for (let t = 0; t < 4; t++) {
      assertBytes(
        cacheBytes(decoder, pulled, t),
        [[2, 0], [7, 3]].map(([s, d]) => ({ at: d * 64, length: 64, seed: 21, tensor: t, from: s * 64 })),
        `pulled blocks ${t}`,
      );
    }
    const pulledRows = await m.allocateCache(new CacheDesc(2, [3, 128], U8));
    await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[6], 1), pulledRows, 2);
    for (let t = 0; t < 2; t++) {
      assertBytes(
        cacheBytes(decoder, pulledRows, t),
        [{ at: 256, length: 128, seed: 23, tensor: t, from: 128 }],
        `row ${t}`,
      );
    }
    // Again: answers about memory outside the pools are never kept for a repeat
    // pull (their bytes come under each LOOKUP's own pin).
    for (let round = 0; round < 2; round++) {
      const again = await m.allocateBlocksCache(new CacheDesc(4, [4, 64], U8));
      await m.pullBlocks(new BlocksCacheKey(clusterId, 3n), again, [7], [1]);
      for (let t = 0; t < 4; t++) {
        assertBytes(
          cacheBytes(decoder, again, t),
          [{ at: 64, length: 64, seed: 21, tensor: t, from: 7 * 64 }],
          `again ${t}`,
        );
      }
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[6], 1), pulledRows, 0);
      assertBytes(
        cacheBytes(decoder, pulledRows, 1),
        [0, 256].map((at) => ({ at, length: 128, seed: 23, tensor: 1, from: 128 })),
        "row again",
      );
      await m.deallocateBlocksCache(again);
    }

    // Refused by the PROMPT, or by what it answered.
    await rejectsWithStatus(
      m.pushBlocks(new BlocksCacheKey(clusterId, 2n), blocks, [0], [0]),
      P,
      /remote cache is not remote accessible/,
    );
    await rejectsWithStatus(m.pushBlocks(new BlocksCacheKey(clusterId), blocks, [0], [16]), P, /dst_block_index:16/);
    await rejectsWithStatus(
      m.pushBlocks(new BlocksCacheKey(clusterId, 9n), blocks, [0], [0]),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
    await rejectsWithStatus(m.pushCache(new CacheKeyByIdAndIndex(clusterId, ids[2], 4), rows), P, /out of range/);
    await rejectsWithStatus(
      m.pushCache(new CacheKeyByIdAndIndex(clusterId, ids[2] + 100n, 0), rows),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
    const narrow = await m.allocateCache(new CacheDesc(4, [2, 128], U8));
    await rejectsWithStatus(
      m.pushCache(new CacheKeyByIdAndIndex(clusterId, ids[2], 0), narrow),
      P,
      /src block size:128 and dst block size:256/,
    );
    await rejectsWithStatus(
      m.pushBlocks(new BlocksCacheKey(clusterId), blocks, [0], [0], { srcLayerRange: [1, 3], dstLayerRange: [0, 2] }),
      P,
      /src tensors \[2, 6\) are out of range/,
    );
    const local = await m.registerBlocksCache(
      new CacheDesc(4, [16, 64], U8),
      [0, 1, 2, 3].map(() => new Uint8Array(1024)),
    );
    await decoder.unlinkClusters([cluster], 3000);
    await rejectsWithStatus(
      m.pushBlocks(new BlocksCacheKey(clusterId), blocks, [0], [0]),
      LLMStatusCode.LLM_NOT_YET_LINK,
    );
    await m.unregisterCache(local.cacheId);
  });

  test("4 MiB into the PROMPT's pool in one call (shared with the copy helper), blocks scrambled: every byte checked", async () => {
    const clusterId = freshClusterId();
    const block = 64 << 10;
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      poolBytes: 8 << 20,
      caches: [{ numTensors: 2, shape: [32, block], dataType: U8, blocksModelId: 0 }],
    });
    const ready = await child.next();
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(2, [32, block], U8));
    seed(decoder, blocks, 7);
    await link(decoder, clusterId, ready.port as number);
    const pairs = Array.from({ length: 32 }, (_, i) => [i, (i * 13 + 5) % 32]);
    await m.pushBlocks(new BlocksCacheKey(clusterId), blocks, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    for (let t = 0; t < 2; t++) {
      const spans = pairs.map(([s, d]) => ({ at: d * block, length: block, seed: 7, tensor: t, from: s * block }));
      assertBytes(await dump(child, 0, t), spans, `tensor ${t}`);
    }
  });

  test("remote access: off here, off there, or not on the destination or the source cache", async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: false,
      caches: [{ numTensors: 2, shape: [4, 64], dataType: U8, blocksModelId: 0 }],
    });
    const ready = await child.next();
    await using off = await openManagerDecoder(false);
    const mine = await off.cacheManager.allocateBlocksCache(new CacheDesc(2, [4, 64], U8));
    await rejectsWithStatus(
      off.cacheManager.pushBlocks(new BlocksCacheKey(clusterId), mine, [0], [0]),
      P,
      /push_blocks is only supported while enable_remote_cache_accessible is True/,
    );
    await rejectsWithStatus(
      off.cacheManager.pushCache(new CacheKeyByIdAndIndex(clusterId, 1n, 0), mine),
      P,
      /push_cache is only supported while enable_remote_cache_accessible is True/,
    );
    await using on = await openManagerDecoder(true);
    // Registered HOST memory is not remote-accessible by default (upstream's default).
    const host = await on.cacheManager.registerBlocksCache(
      new CacheDesc(2, [4, 64], U8, Placement.HOST),
      [new Uint8Array(256), new Uint8Array(256)],
    );
    const pooled = await on.cacheManager.allocateBlocksCache(new CacheDesc(2, [4, 64], U8));
    await link(on, clusterId, ready.port as number);
    await rejectsWithStatus(
      on.cacheManager.pushBlocks(new BlocksCacheKey(clusterId), pooled, [0], [0]),
      P,
      /remote cache is not remote accessible/,
    );
    await rejectsWithStatus(
      on.cacheManager.pushBlocks(new BlocksCacheKey(clusterId), host, [0], [0]),
      P,
      /local cache is not remote accessible/,
    );
    // Pulling from it still works.
    await on.cacheManager.pullBlocks(new BlocksCacheKey(clusterId), pooled, [1], [1]);
  });

  test("upstream's argument rules", async () => {
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(4, [8, 16], U8));
    const rows = await m.allocateCache(new CacheDesc(4, [2, 16], U8));
    const bkey = new BlocksCacheKey(1n);
    const ikey = new CacheKeyByIdAndIndex(1n, 1n, 0);
    // push_blocks
    await rejectsWith(m.pushBlocks({} as BlocksCacheKey, blocks, [0], [0]), TypeError);
    await rejectsWith(m.pushBlocks(ikey as unknown as BlocksCacheKey, blocks, [0], [0]), TypeError);
    await rejectsWith(m.pushBlocks(bkey, {} as Cache, [0], [0]), TypeError);
    await rejectsWith(m.pushBlocks(bkey, blocks, "0" as unknown as number[], [0]), TypeError);
    await rejectsWith(m.pushBlocks(bkey, blocks, [0], [0.5]), TypeError);
    await rejectsWith(m.pushBlocks(bkey, blocks, [0], [0], null as unknown as object), TypeError);
    await rejectsWithStatus(m.pushBlocks(bkey, rows, [0], [0]), P, /cache should be blocks cache/);
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [0], []), P, /dst_blocks can not be empty/);
    await rejectsWithStatus(m.pushBlocks(bkey, blocks), P, /dst_blocks can not be empty/);
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { tensorNumPerLayer: 0 }),
      P,
      /\[push_blocks\].*tensor_num_per_layer \(0\)/,
    );
    await rejectsWith(m.pushBlocks(bkey, blocks, [0], [0], { tensorNumPerLayer: -1 }), ValueError);
    await rejectsWith(m.pushBlocks(bkey, blocks, [0], [0], { tensorNumPerLayer: 2 ** 32 }), ValueError);
    await rejectsWith(
      m.pushBlocks(bkey, blocks, [0], [0], { srcLayerRange: 3 as unknown as [number, number] }),
      TypeError,
    );
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { srcLayerRange: [1, 1] }),
      P,
      /check 0 <= range.start < range.stop failed, srcLayerRange = range\(1, 1\)/,
    );
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { dstLayerRange: [-1, 1] }),
      P,
      /check 0 <= range.start < range.stop failed/,
    );
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { srcLayerRange: [0, 1] }), // the default dst range is 2 layers
      P,
      /src_layer_range size should be equal to size of dst_layer_range size/,
    );
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { tensorNumPerLayer: 3 }),
      P,
      /tensor_num \[4\] of caches must be a multiple of tensor_num_per_layer\[3\]/,
    );
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [], [0]), P, /src_block num:0 not match dst_block num:1/);
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [0, 1], [0]), P, /src_block num:2 not match dst_block num:1/);
    // Checked natively before the peer is asked: source blocks, tensors, then the link.
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [8], [0]), P, /src_block_index:8/);
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [-1], [0]), P, /src_block_index/);
    await rejectsWithStatus(
      m.pushBlocks(bkey, blocks, [0], [0], { srcLayerRange: [1, 3], dstLayerRange: [0, 2] }),
      P,
      /src tensors \[2, 6\)/,
    );
    await rejectsWithStatus(m.pushBlocks(bkey, blocks, [0], [0]), LLMStatusCode.LLM_NOT_YET_LINK);
    // push_cache
    await rejectsWith(m.pushCache(bkey as unknown as CacheKeyByIdAndIndex, rows), TypeError);
    await rejectsWith(m.pushCache(new CacheKey(1n, 1n) as unknown as CacheKeyByIdAndIndex, rows), TypeError);
    await rejectsWith(m.pushCache(ikey, {} as Cache), TypeError);
    await rejectsWith(m.pushCache(ikey, rows, -1), ValueError);
    await rejectsWith(m.pushCache(ikey, rows, 2 ** 32), ValueError);
    await rejectsWith(m.pushCache(ikey, rows, 0.5), TypeError);
    await rejectsWithStatus(m.pushCache(ikey, blocks), P, /cache can not be blocks cache/);
    await rejectsWithStatus(m.pushCache(ikey, rows, 0, [0, 1], [0, 2]), P, /src_layer_range size should be equal/);
    await rejectsWithStatus(m.pushCache(ikey, rows, 0, undefined, undefined, -1, 0), P, /\[push_cache\].*\(0\)/);
    await rejectsWithStatus(
      m.pushCache(ikey, rows, 0, undefined, undefined, 16),
      P,
      /size \(16\) is invalid, should be = -1/,
    );
    await rejectsWith(m.pushCache(ikey, rows, 0, undefined, undefined, 2 ** 64), ValueError);
    await rejectsWithStatus(m.pushCache(ikey, rows, 2), P, /src_batch_index 2 is out of range/);
    await rejectsWithStatus(m.pushCache(ikey, rows, 0), LLMStatusCode.LLM_NOT_YET_LINK);
    // tensor_num_per_layer beyond the tensors: no layer at all, nothing moves (as upstream).
    await m.pushCache(ikey, rows, 0, undefined, undefined, -1, 5);
    // A PROMPT does not push.
    await using prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
    await prompt.init({
      "llm.EnableCacheManager": "1",
      "llm.EnableRemoteCacheAccessible": "1",
      "llm.MemPoolConfig": '{"memory_size": 1048576}',
    });
    const own = await prompt.cacheManager.allocateBlocksCache(new CacheDesc(4, [8, 16], U8));
    await rejectsWithStatus(prompt.cacheManager.pushBlocks(bkey, own, [0], [0]), P, /a PROMPT engine does not push/);
  });

  for (const registered of [false, true]) {
    test(`a PROMPT killed during a push into ${registered ? "registered" : "pooled"} memory: LINK_FAILED within the deadline`, async () => {
      const clusterId = freshClusterId();
      const block = 4 << 20, blocks = 24;
      const pool = block * blocks + (1 << 20);
      const child = startChild("push_prompt_process.ts", {
        clusterId: String(clusterId),
        remote: true,
        poolBytes: pool,
        caches: [{ numTensors: 1, shape: [blocks, block], dataType: U8, blocksModelId: 0, registered }],
      });
      const ready = await child.next();
      await using decoder = await openManagerDecoder(true, pool, 20_000);
      await link(decoder, clusterId, ready.port as number);
      const source = await decoder.cacheManager.allocateBlocksCache(new CacheDesc(1, [blocks, block], U8));
      const list = Array.from({ length: blocks }, (_, i) => i);
      const start = performance.now();
      const pushing = decoder.cacheManager.pushBlocks(new BlocksCacheKey(clusterId), source, list, list, {
        tensorNumPerLayer: 1,
      }).then(() => "resolved", (err) => err);
      await sleep(5);
      await child.kill();
      const outcome = await pushing;
      assert.ok(performance.now() - start < 20_000);
      if (outcome !== "resolved") {
        assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
      }
      await rejectsWithStatus(
        decoder.cacheManager.pushBlocks(new BlocksCacheKey(clusterId), source, [0], [0], { tensorNumPerLayer: 1 }),
        LLMStatusCode.LLM_LINK_FAILED,
      );
      const small = await decoder.cacheManager.allocateCache(new CacheDesc(1, [8], U8));
      assert.equal((await decoder.cacheManager.getCacheTensors(small))[0].byteLength, 8);
    });
  }
});

describe("CacheManager.transferCacheAsync", { timeout: 120_000 }, () => {
  test("layer by layer behind an async synchronizer, to blocks by key; results per target", async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      caches: [
        { numTensors: 8, shape: [16, 64], dataType: U8, blocksModelId: 0 },
        { numTensors: 8, shape: [2, 256], dataType: U8 },
      ],
    });
    const ready = await child.next();
    const ids = (ready.cacheIds as string[]).map(BigInt);
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const src = await m.allocateBlocksCache(new CacheDesc(8, [16, 64], U8));
    seed(decoder, src, 7);
    await link(decoder, clusterId, ready.port as number);
    const released: number[] = [];
    const seen: string[] = [];
    const synchronizer = {
      async synchronizeLayer(layer: number, timeoutMs: number | undefined) {
        assert.equal(timeoutMs, undefined);
        // When layer i is released, layer i - 1 has arrived and layer i has not.
        if (layer > 0) {
          const before = await dump(child, 0, 2 * (layer - 1));
          const now = await dump(child, 0, 2 * layer);
          seen.push(`${before[10 * 64] === patternByte(7, 2 * (layer - 1), 0, 64)}/${now[10 * 64] === 0}`);
        }
        await sleep(3);
        released.push(layer);
        return true;
      },
    };
    const task = m.transferCacheAsync(
      src,
      synchronizer,
      [new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 4], [0, 4])],
      [1, 2],
      [10, 11],
    );
    assert.equal(await task.synchronize(10_000), LLMStatusCode.LLM_SUCCESS);
    assert.deepEqual(await task.getResults(), [LLMStatusCode.LLM_SUCCESS]);
    assert.deepEqual(released, [0, 1, 2, 3]);
    assert.deepEqual(seen, ["true/true", "true/true", "true/true"]);
    for (let t = 0; t < 8; t++) {
      const spans = [[1, 10], [2, 11]].map(([s, d]) => ({
        at: d * 64,
        length: 64,
        seed: 7,
        tensor: t,
        from: s * 64,
      }));
      assertBytes(await dump(child, 0, t), spans, `tensor ${t}`);
    }

    // By CacheKeyByIdAndIndex: layers 1 and 2 of row 0 here into layers 0 and 1 of row 1 there.
    const rows = await m.allocateCache(new CacheDesc(8, [1, 256], U8));
    seed(decoder, rows, 17);
    const byId = m.transferCacheAsync(rows, { synchronizeLayer: () => true }, [
      new TransferWithCacheKeyConfig(new CacheKeyByIdAndIndex(clusterId, ids[1], 1), [1, 3], [0, 2]),
    ]);
    assert.deepEqual(await byId.getResults(10_000), [LLMStatusCode.LLM_SUCCESS]);
    for (let t = 0; t < 8; t++) {
      const spans = t < 4 ? [{ at: 256, length: 256, seed: 17, tensor: t + 2, from: 0 }] : [];
      assertBytes(await dump(child, 1, t), spans, `rows, tensor ${t}`);
    }

    // Two targets: one done after layer 0, then one not linked, which ends the transfer.
    const other = freshClusterId();
    const two = m.transferCacheAsync(
      src,
      { synchronizeLayer: () => true },
      [
        new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 1], [3, 4]),
        new TransferWithCacheKeyConfig(new BlocksCacheKey(other), [0, 1], [0, 1]),
      ],
      [5],
      [5],
    );
    assert.deepEqual(await two.getResults(10_000), [LLMStatusCode.LLM_SUCCESS, LLMStatusCode.LLM_NOT_YET_LINK]);
    assert.equal(await two.synchronize(), LLMStatusCode.LLM_NOT_YET_LINK);
    assertBytes(
      await dump(child, 0, 6),
      [...[[1, 10], [2, 11]].map(([s, d]) => ({ at: d * 64, length: 64, seed: 7, tensor: 6, from: s * 64 })), {
        at: 5 * 64,
        length: 64,
        seed: 7,
        tensor: 0,
        from: 5 * 64,
      }],
      "layer 0 into layer 3",
    );

    // A synchronizer that says no at layer 1, one that throws: that layer's
    // targets get LLM_PARAM_INVALID; layer 0 went.
    for (const refuse of [() => false, () => Promise.reject(new Error("no")), () => Promise.resolve(false)]) {
      const task = m.transferCacheAsync(
        src,
        { synchronizeLayer: (l: number) => (l === 0 ? true : refuse()) },
        [
          new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 4], [0, 4]),
        ],
        [3],
        [12],
      );
      assert.equal(await task.synchronize(10_000), P);
      assert.deepEqual(await task.getResults(), [P]);
    }
    assertBytes(
      await dump(child, 0, 1),
      [[1, 10], [2, 11], [3, 12]].map(([s, d]) => ({ at: d * 64, length: 64, seed: 7, tensor: 1, from: s * 64 })),
      "layer 0 only",
    );
    assert.equal((await dump(child, 0, 2))[12 * 64], 0);

    // One that never answers: TIMEOUT while it waits.
    const stuck = m.transferCacheAsync(
      src,
      { synchronizeLayer: () => new Promise<boolean>(() => {}) },
      [
        new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 4], [0, 4]),
      ],
      [0],
      [0],
    );
    assert.equal(await stuck.synchronize(30), LLMStatusCode.LLM_TIMEOUT);
    assert.deepEqual(await stuck.getResults(0), [LLMStatusCode.LLM_TIMEOUT]);
  });

  test("from a cache into blocks by BlocksCacheKey, and from blocks to a CacheKeyByIdAndIndex", async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      caches: [
        { numTensors: 4, shape: [16, 64], dataType: U8, blocksModelId: 0 }, // 0: named by key
        { numTensors: 4, shape: [16, 64], dataType: U8 }, // 1: named by id
      ],
    });
    const ready = await child.next();
    const ids = (ready.cacheIds as string[]).map(BigInt);
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const rows = await m.allocateCache(new CacheDesc(4, [2, 256], U8));
    const blocks = await m.allocateBlocksCache(new CacheDesc(4, [16, 64], U8));
    seed(decoder, rows, 31);
    seed(decoder, blocks, 37);
    await link(decoder, clusterId, ready.port as number);
    const all = { synchronizeLayer: () => true };

    // The cache (two rows of 256 bytes a tensor) cut into blocks of 64 from row 0
    // on, as upstream: block j to dst[j], block 4 being row 1's first.
    const dst = [13, 2, 7, 9, 6];
    const cut = m.transferCacheAsync(
      rows,
      all,
      [new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 2], [0, 2])],
      undefined,
      dst,
      64,
    );
    assert.deepEqual(await cut.getResults(10_000), [LLMStatusCode.LLM_SUCCESS]);
    for (let t = 0; t < 4; t++) {
      const spans = dst.map((d, j) => ({ at: d * 64, length: 64, seed: 31, tensor: t, from: j * 64 }));
      assertBytes(await dump(child, 0, t), spans, `cache into blocks, tensor ${t}`);
    }
    // A size that is not the destination's block size; a block past the tensor.
    for (const [size, list] of [[128, [0]], [64, [0, 1, 2, 3, 4, 5, 6, 7, 8]]] as const) {
      const bad = m.transferCacheAsync(
        rows,
        all,
        [new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 2], [0, 2])],
        undefined,
        [...list],
        size,
      );
      assert.deepEqual(await bad.getResults(10_000), [P], `size ${size}, ${list.length} blocks`);
    }

    // Blocks 3 and 4 into blocks 11 and 0 of the cache named by id (batch index 0).
    const byId = m.transferCacheAsync(
      blocks,
      all,
      [new TransferWithCacheKeyConfig(new CacheKeyByIdAndIndex(clusterId, ids[1], 0), [0, 2], [0, 2])],
      [3, 4],
      [11, 0],
    );
    assert.deepEqual(await byId.getResults(10_000), [LLMStatusCode.LLM_SUCCESS]);
    for (let t = 0; t < 4; t++) {
      const spans = [[3, 11], [4, 0]].map(([s, d]) => ({
        at: d * 64,
        length: 64,
        seed: 37,
        tensor: t,
        from: s * 64,
      }));
      assertBytes(await dump(child, 1, t), spans, `blocks by id, tensor ${t}`);
    }
    // Blocks name batch index 0; a row into blocks by id stays unsupported here.
    const row1 = m.transferCacheAsync(
      blocks,
      all,
      [new TransferWithCacheKeyConfig(new CacheKeyByIdAndIndex(clusterId, ids[1], 1), [0, 2], [0, 2])],
      [3],
      [12],
    );
    assert.deepEqual(await row1.getResults(10_000), [P]);
    const rowsById = m.transferCacheAsync(
      rows,
      all,
      [new TransferWithCacheKeyConfig(new CacheKeyByIdAndIndex(clusterId, ids[1], 0), [0, 2], [0, 2])],
      undefined,
      [12],
      64,
    );
    assert.deepEqual(await rowsById.getResults(10_000), [LLMStatusCode.LLM_FEATURE_NOT_ENABLED]);
    assert.equal((await dump(child, 1, 0))[12 * 64], 0);
  });

  test("a PROMPT killed between two layers: that target's result is LLM_LINK_FAILED, no hang", async () => {
    const clusterId = freshClusterId();
    const child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      caches: [{ numTensors: 8, shape: [4, 4096], dataType: U8, blocksModelId: 0, registered: true }],
    });
    const ready = await child.next();
    await using decoder = await openManagerDecoder(true);
    const m = decoder.cacheManager;
    const src = await m.allocateBlocksCache(new CacheDesc(8, [4, 4096], U8));
    await link(decoder, clusterId, ready.port as number);
    const synchronizer = {
      async synchronizeLayer(layer: number) {
        if (layer === 2) await child.kill();
        return true;
      },
    };
    const task = m.transferCacheAsync(
      src,
      synchronizer,
      [
        new TransferWithCacheKeyConfig(new BlocksCacheKey(clusterId), [0, 4], [0, 4]),
      ],
      [0, 1, 2, 3],
      [3, 2, 1, 0],
    );
    assert.equal(await task.synchronize(20_000), LLMStatusCode.LLM_LINK_FAILED);
    assert.deepEqual(await task.getResults(0), [LLMStatusCode.LLM_LINK_FAILED]);
  });

  test("TransferConfig: rows to the addresses of a PROMPT's registered memory, only there", async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: false,
      caches: [{ numTensors: 4, shape: [2, 256], dataType: U8, registered: true }],
    });
    const ready = await child.next();
    const addrs = (ready.addrs as string[][])[0].map(BigInt);
    await using decoder = await openManagerDecoder(false);
    const m = decoder.cacheManager;
    const src = await m.allocateCache(new CacheDesc(4, [3, 256], U8));
    seed(decoder, src, 31);
    await link(decoder, clusterId, ready.port as number);
    // Layer 1 (tensors 2, 3), row 2, into row 1 of tensors 0 and 1 there.
    const task = m.transferCacheAsync(src, { synchronizeLayer: () => Promise.resolve(true) }, [
      new TransferConfig(clusterId, [addrs[0] + 256n, addrs[1] + 256n], [1, 2], 2),
    ]);
    assert.equal(await task.synchronize(10_000), LLMStatusCode.LLM_SUCCESS);
    for (let t = 0; t < 4; t++) {
      const spans = t < 2 ? [{ at: 256, length: 256, seed: 31, tensor: t + 2, from: 512 }] : [];
      assertBytes(await dump(child, 0, t), spans, `tensor ${t}`);
    }
    // A row to blocks: row 0 of layer 0 cut into 64-byte blocks, chunks 0..1 to blocks 3, 0.
    const blocksTask = m.transferCacheAsync(
      src,
      { synchronizeLayer: () => true },
      [
        new TransferConfig(clusterId, [addrs[2], addrs[3]], [0, 1]),
      ],
      undefined,
      [3, 0],
      64,
    );
    assert.equal(await blocksTask.synchronize(10_000), LLMStatusCode.LLM_SUCCESS);
    assertBytes(
      await dump(child, 0, 2),
      [[0, 3], [1, 0]].map(([s, d]) => ({ at: d * 64, length: 64, seed: 31, tensor: 0, from: s * 64 })),
      "blocks of tensor 2",
    );
    // An empty source list is no list (upstream): the same row to blocks 1 and 2 too (tensor 3
    // holds src tensor 1's chunks in blocks 3 and 0 from the transfer above).
    const emptySrc = m.transferCacheAsync(
      src,
      { synchronizeLayer: () => true },
      [new TransferConfig(clusterId, [addrs[2], addrs[3]], [0, 1])],
      [],
      [1, 2],
      64,
    );
    assert.equal(await emptySrc.synchronize(10_000), LLMStatusCode.LLM_SUCCESS);
    assertBytes(
      await dump(child, 0, 3),
      [[0, 3], [1, 0], [0, 1], [1, 2]].map(([s, d]) => ({
        at: d * 64,
        length: 64,
        seed: 31,
        tensor: 1,
        from: s * 64,
      })),
      "blocks of tensor 3",
    );
    // An address that is no registered memory there: refused, nothing written.
    const stray = m.transferCacheAsync(src, { synchronizeLayer: () => true }, [
      new TransferConfig(clusterId, [0x1000n, 0x2000n], [0, 1]),
    ]);
    assert.deepEqual(await stray.getResults(10_000), [P]);
    const beyond = m.transferCacheAsync(src, { synchronizeLayer: () => true }, [
      new TransferConfig(clusterId, [addrs[0] + 300n, addrs[1]], [0, 1]),
    ]);
    assert.deepEqual(await beyond.getResults(10_000), [P]);
  });

  test("upstream's argument rules", async () => {
    await using remote = await openManagerDecoder(true);
    await using plain = await openManagerDecoder(false);
    const r = remote.cacheManager, p = plain.cacheManager;
    const src = await r.allocateBlocksCache(new CacheDesc(4, [8, 16], U8));
    const rows = await p.allocateCache(new CacheDesc(4, [2, 16], U8));
    const odd = await p.allocateCache(new CacheDesc(3, [2, 16], U8));
    const host = await p.registerCache(new CacheDesc(2, [16], U8, Placement.HOST), [
      new Uint8Array(16),
      new Uint8Array(16),
    ]);
    const sync = { synchronizeLayer: () => true };
    const keyed = new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 1], [0, 1]);
    const byAddr = new TransferConfig(1n, [0x1000n, 0x2000n], [0, 1]);
    const throws = (f: () => unknown) => f;
    await rejectsWith(throws(() => p.transferCacheAsync({} as Cache, sync, [byAddr])), TypeError);
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(host, sync, [byAddr])),
      P,
      /src cache not support placement HOST/,
    );
    await rejectsWith(throws(() => p.transferCacheAsync(rows, sync, [byAddr], undefined, [-1])), ValueError);
    await rejectsWith(throws(() => p.transferCacheAsync(rows, sync, [byAddr], "0" as unknown as number[])), TypeError);
    await rejectsWith(throws(() => p.transferCacheAsync(rows, sync, [byAddr], undefined, [0], -1)), ValueError);
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [byAddr], [0])),
      P,
      /transfer from blocks to cache is not supported/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [byAddr], [0, 1], [0])),
      P,
      /num_block_indices mismatches, src_num = 2, dst_num = 1/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [byAddr], undefined, [0])),
      P,
      /dst_block_memory_size must be set when transfer from cache to blocks/,
    );
    await rejectsWith(
      throws(() => p.transferCacheAsync(rows, {} as typeof sync, [byAddr])),
      TypeError,
      /LayerSynchronizer/,
    );
    await rejectsWith(throws(() => p.transferCacheAsync(rows, sync, byAddr as unknown as TransferConfig[])), TypeError);
    await rejectsWith(throws(() => p.transferCacheAsync(rows, sync, [keyed])), TypeError, /TransferConfig/);
    await rejectsWith(
      throws(() => r.transferCacheAsync(src, sync, [byAddr])),
      TypeError,
      /While enable_remote_cache_accessible is True, /,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [byAddr], undefined, undefined, 64)),
      P,
      /dst_block_memory_size \(64\) is neither None nor 0 while dst is not blocks/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(odd, sync, [byAddr])),
      P,
      /num_tensors \(3\) is not even/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [new TransferConfig(1n, [1n, 2n], [0, 1], 1)], [0], [0])),
      P,
      /src_batch_index \(1\) != 0 while src is blocks/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [new TransferConfig(1n, [1n, 2n], [2, 3])])),
      P,
      /src_layer_range: range\(2, 3\) out of range, src_layer_num = 2/,
    );
    await rejectsWithStatus(
      throws(() => p.transferCacheAsync(rows, sync, [new TransferConfig(1n, [1n, 2n])])),
      P,
      /expect 4 dst_addrs, but len\(dst_addrs\) = 2/,
    );
    await rejectsWithStatus(
      throws(() =>
        r.transferCacheAsync(src, sync, [new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [1, 3], [0, 2])])
      ),
      P,
      /out of range, src_layer_num = 2/,
    );
    // The configs' own checks.
    await rejectsWith(throws(() => new TransferConfig(-1n, [])), ValueError);
    await rejectsWith(throws(() => new TransferConfig(1n, "x" as unknown as bigint[])), TypeError);
    await rejectsWith(throws(() => new TransferConfig(1n, [-1n])), ValueError);
    await rejectsWith(throws(() => new TransferConfig(1n, [1n], [0, 1], -1)), ValueError);
    await rejectsWithStatus(
      throws(() => new TransferConfig(1n, [1n], [1, 0])),
      P,
      /check 0 <= range.start < range.stop/,
    );
    await rejectsWith(throws(() => new TransferWithCacheKeyConfig({} as BlocksCacheKey, [0, 1], [0, 1])), TypeError);
    await rejectsWith(
      throws(() =>
        new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), undefined as unknown as [number, number], [0, 1])
      ),
      TypeError,
    );
    await rejectsWithStatus(
      throws(() => new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 1], [0, 2])),
      P,
      /src_layer_range size should be equal to dst_layer_range size/,
    );
    await rejectsWithStatus(
      throws(() => new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 1], [0, 1], 1)),
      P,
      /src_batch_index should be 0 when cache_key is BlocksCacheKey/,
    );
    const config = new TransferWithCacheKeyConfig(new CacheKeyByIdAndIndex(1n, 2n, 0), [0, 1], [0, 1], 3);
    assert.equal(config.srcBatchIndex, 3);
    await rejectsWithStatus(throws(() => (config.srcLayerRange = [2, 2])), P);
    await rejectsWith(throws(() => (byAddr.dstAddrs = [1.5])), TypeError);
    // The task's own.
    const task = p.transferCacheAsync(rows, { synchronizeLayer: () => false }, [
      new TransferConfig(1n, [1n, 2n], [0, 1]),
    ]);
    await rejectsWith(task.synchronize(-1), ValueError);
    await rejectsWith(task.getResults(2 ** 32), ValueError);
    assert.equal(await task.synchronize(), P);
  });
});

describe("push calls with garbage", { timeout: 120_000 }, () => {
  test("any value in any argument: only TypeError, ValueError or LLMException, never a crash or a hang", async () => {
    const fc = (await import("fast-check")).default;
    await using remote = await openManagerDecoder(true);
    await using plain = await openManagerDecoder(false);
    const blocks = await remote.cacheManager.allocateBlocksCache(new CacheDesc(4, [8, 16], U8));
    const rows = await plain.cacheManager.allocateCache(new CacheDesc(4, [2, 16], U8));
    const freed = await plain.cacheManager.allocateCache(new CacheDesc(2, [2, 16], U8));
    await plain.cacheManager.deallocateCache(freed);
    const value = fc.oneof(
      fc.anything(),
      fc.integer({ min: -3, max: 20 }),
      fc.bigInt({ min: -1n, max: 2n ** 64n }),
      fc.constantFrom(NaN, Infinity, -1, 2 ** 32, 2 ** 53, [0, 1], [1, 0], { start: 0, stop: 1 }, [], [0], [-1]),
      fc.constantFrom(blocks, rows, freed, new BlocksCacheKey(1n), new CacheKeyByIdAndIndex(1n, 1n, 0)),
      fc.constantFrom(
        new TransferConfig(1n, [1n, 2n], [0, 1]),
        new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 1], [0, 1]),
        { synchronizeLayer: () => true },
      ),
    );
    const allowed = (err: unknown) =>
      err instanceof TypeError || err instanceof ValueError || (err as { name?: string })?.name === "LLMException";
    const calls: ((a: unknown[]) => unknown)[] = [
      (a) => remote.cacheManager.pushCache(...(a as Parameters<typeof remote.cacheManager.pushCache>)),
      (a) => remote.cacheManager.pushBlocks(...(a as Parameters<typeof remote.cacheManager.pushBlocks>)),
      (a) => plain.cacheManager.pushBlocks(...(a as Parameters<typeof plain.cacheManager.pushBlocks>)),
      (a) =>
        remote.cacheManager.transferCacheAsync(...(a as Parameters<typeof remote.cacheManager.transferCacheAsync>))
          .synchronize(1000),
      (a) =>
        plain.cacheManager.transferCacheAsync(...(a as Parameters<typeof plain.cacheManager.transferCacheAsync>))
          .getResults(1000),
      (a) => new TransferConfig(...(a as ConstructorParameters<typeof TransferConfig>)),
      (a) => new TransferWithCacheKeyConfig(...(a as ConstructorParameters<typeof TransferWithCacheKeyConfig>)),
    ];
    const property = fc.asyncProperty(
      fc.integer({ min: 0, max: calls.length - 1 }),
      fc.array(value, { maxLength: 7 }),
      async (which, args) => {
        try {
          await calls[which](args);
        } catch (err) {
          if (!allowed(err)) throw new Error(`call ${which} threw ${err}`);
        }
      },
    );
    await fc.assert(property, { numRuns: 300 });
    // Still working afterwards.
    await rejectsWithStatus(
      remote.cacheManager.pushBlocks(new BlocksCacheKey(1n), blocks, [0], [0]),
      LLMStatusCode.LLM_NOT_YET_LINK,
    );
  });
});
