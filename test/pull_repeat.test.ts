// Repeat pulls from a linked PROMPT (docs/DESIGN.md §4.3): a pull by
// BlocksCacheKey or by CacheKeyByIdAndIndex that was answered before reuses the
// answer, with no round trip, while the PROMPT's generation page says nothing
// moved. These tests change the PROMPT's caches between two pulls — new
// contents, a blocks cache deallocated and its key given to a new cache, a
// cache freed and its memory taken by another — and check that the second pull
// sees the new bytes or gets the proper error, never the old layout's bytes.
// All of it twice: over shared memory, and over UCX (TCP on loopback), where
// the generation page is read with one more UCX read after the data's.
import assert from "node:assert/strict";
import process from "node:process";
import { describe, test } from "node:test";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { type Child, startChild } from "./support/children.ts";
import { patternByte } from "./support/pattern.ts";
import { freshClusterId, rejectsWithStatus } from "./helpers.ts";
import { cacheBytes, ucxMissing } from "./support/links.ts";

// The PROMPTs (children) inherit this: their UCX offers TCP only, as between hosts.
process.env.UCX_TLS = "tcp";

const BLOCK = 4096;
const BLOCKS = 4;
const TENSORS = 2;
/** Blocks of BLOCK bytes (or, for a plain cache, rows of BLOCK bytes). */
const SHAPE = [BLOCKS, BLOCK];

async function ask(child: Child, command: Record<string, unknown>): Promise<Record<string, unknown>> {
  child.send(command);
  const answer = await child.next();
  assert.equal(answer.ok, true, `the PROMPT refused ${JSON.stringify(command)}: ${answer.error}`);
  return answer;
}

/** Every block of every tensor of `cache` holds source block `src[i]` of `seed` in block i. */
function assertPulled(dd: LLMDataDist, cache: Cache, src: number[], seed: number, what: string): void {
  for (let t = 0; t < TENSORS; t++) {
    const bytes = cacheBytes(dd, cache, t);
    for (const [dst, s] of src.entries()) {
      for (let i = 0; i < BLOCK; i++) {
        const want = patternByte(seed, t, 0, s * BLOCK + i);
        if (bytes[dst * BLOCK + i] !== want) {
          assert.fail(`${what}: tensor ${t} block ${dst} byte ${i} is ${bytes[dst * BLOCK + i]}, expected ${want}`);
        }
      }
    }
  }
}

function clear(dd: LLMDataDist, cache: Cache): void {
  for (let t = 0; t < TENSORS; t++) cacheBytes(dd, cache, t).fill(0xEE);
}

type Transport = "shm" | "ucx";

async function setUp(
  transport: Transport,
  poolBytes = 1 << 20,
): Promise<{ child: Child; clusterId: bigint; decoder: LLMDataDist; dst: Cache } & AsyncDisposable> {
  const clusterId = freshClusterId();
  const child = startChild("churn_prompt_process.ts", {
    clusterId: String(clusterId),
    poolBytes: 2 * poolBytes + (2 << 20),
  });
  const ready = await child.next();
  const decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await decoder.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: poolBytes }),
    "llm.SyncKvCacheWaitTime": "10000",
    "llmdd.transport": transport,
  });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", ready.port as number);
  const [status] = await decoder.linkClusters([cluster], 5000);
  assert.equal(status, LLMStatusCode.LLM_SUCCESS);
  const dst = await decoder.cacheManager.allocateBlocksCache(new CacheDesc(TENSORS, SHAPE, DataType.DT_UINT8));
  return {
    child,
    clusterId,
    decoder,
    dst,
    async [Symbol.asyncDispose]() {
      await child.stop();
      decoder.finalize();
    },
  };
}

const ALL = [0, 1, 2, 3];
const noUcx = await ucxMissing();

for (const transport of ["shm", "ucx"] as const) {
  describe(`repeat pulls from a linked PROMPT (${transport})`, () => {
    if (transport === "ucx" && noUcx !== undefined) {
      test(`skipped: UCX is not installed here (${noUcx})`, { skip: "UCX is not installed (libucx0)" }, () => {});
      return;
    }
    test("by BlocksCacheKey: new contents, the key's cache deallocated, its memory reused, the key on a new cache", async () => {
      await using set = await setUp(transport);
      const { child, clusterId, decoder, dst } = set;
      const m = decoder.cacheManager;
      const key = new BlocksCacheKey(clusterId, 0);
      const pull = () => m.pullBlocks(key, dst, ALL, ALL);
      const a = await ask(child, { op: "blocks", model: 0, numTensors: TENSORS, shape: SHAPE, seed: 1 });
      clear(decoder, dst);
      await pull();
      assertPulled(decoder, dst, ALL, 1, "first pull");
      for (let i = 0; i < 3; i++) {
        clear(decoder, dst);
        await pull();
        assertPulled(decoder, dst, ALL, 1, `repeat ${i}`);
      }
      // Any order, a subset: the kept answer serves other block lists too.
      clear(decoder, dst);
      await m.pullBlocks(key, dst, [3, 2, 1, 0], ALL);
      assertPulled(decoder, dst, [3, 2, 1, 0], 1, "reversed");

      // New contents in place: pulls copy the PROMPT's memory, they keep no bytes.
      await ask(child, { op: "fill", cacheId: a.cacheId, seed: 2 });
      clear(decoder, dst);
      await pull();
      assertPulled(decoder, dst, ALL, 2, "after new contents");

      // Deallocated: the key names nothing, whatever is still in the memory.
      await ask(child, { op: "free", cacheId: a.cacheId });
      await rejectsWithStatus(pull(), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
      // Its memory taken by another cache (first fit: the same place), and the
      // key given to a new cache elsewhere: the pull must find the new cache.
      await ask(child, { op: "cache", numTensors: TENSORS, shape: SHAPE, seed: 9 });
      await ask(child, { op: "blocks", model: 0, numTensors: TENSORS, shape: SHAPE, seed: 3 });
      clear(decoder, dst);
      await pull();
      assertPulled(decoder, dst, ALL, 3, "the key on a new cache");
      clear(decoder, dst);
      await pull();
      assertPulled(decoder, dst, ALL, 3, "the key on a new cache, again");

      // Replaced in one step (deallocateBlocksCache, then allocateBlocksCache
      // with the same key and a different seed): the new cache's bytes.
      await ask(child, { op: "blocks", model: 0, numTensors: TENSORS, shape: SHAPE, seed: 4 });
      clear(decoder, dst);
      await pull();
      assertPulled(decoder, dst, ALL, 4, "replaced");
    });

    test("by CacheKeyByIdAndIndex: a cache freed and its memory reused is never read again", async () => {
      await using set = await setUp(transport);
      const { child, clusterId, decoder, dst } = set;
      const m = decoder.cacheManager;
      const c = await ask(child, { op: "cache", numTensors: TENSORS, shape: SHAPE, seed: 5 });
      const id = BigInt(c.cacheId as string);
      // pullCache lands in a cache of rows (upstream refuses a blocks cache there).
      const rows = await m.allocateCache(new CacheDesc(TENSORS, SHAPE, DataType.DT_UINT8));
      // Row 1 of each tensor (BLOCK bytes) into block 2, by pullCache and by pullBlocks.
      for (let i = 0; i < 3; i++) {
        clear(decoder, rows);
        await m.pullCache(new CacheKeyByIdAndIndex(clusterId, id, 1), rows, 2);
        for (let t = 0; t < TENSORS; t++) {
          const bytes = cacheBytes(decoder, rows, t).subarray(2 * BLOCK, 3 * BLOCK);
          assert.ok(bytes.every((b, j) => b === patternByte(5, t, 0, BLOCK + j)), `pullCache ${i}, tensor ${t}`);
        }
        clear(decoder, dst);
        await m.pullBlocks(new CacheKeyByIdAndIndex(clusterId, id, 0), dst, [], [1]);
        for (let t = 0; t < TENSORS; t++) {
          const bytes = cacheBytes(decoder, dst, t).subarray(BLOCK, 2 * BLOCK);
          assert.ok(bytes.every((b, j) => b === patternByte(5, t, 0, j)), `pullBlocks ${i}, tensor ${t}`);
        }
      }
      // Freed, and its memory taken at once by a new cache with other bytes.
      await ask(child, { op: "free", cacheId: c.cacheId });
      await ask(child, { op: "cache", numTensors: TENSORS, shape: SHAPE, seed: 6 });
      await rejectsWithStatus(
        m.pullCache(new CacheKeyByIdAndIndex(clusterId, id, 1), rows, 2),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
      await rejectsWithStatus(
        m.pullBlocks(new CacheKeyByIdAndIndex(clusterId, id, 0), dst, [], [1]),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
    });

    test("a block list stays valid while its pull runs off the JavaScript thread, collections meanwhile", async () => {
      // Pulls of more than 1 MiB run on a worker thread, reading the block list
      // the call was given; garbage collected and memory reused meanwhile must
      // not change it (on Bun it did: "src_block_index 6069652090880").
      await using set = await setUp(transport, 40 << 20);
      const { child, clusterId, decoder } = set;
      const m = decoder.cacheManager;
      const blocks = 64, block = 64 * BLOCK, shape = [blocks, block]; // 2 tensors of 16 MiB
      await ask(child, { op: "blocks", model: 2, numTensors: TENSORS, shape, seed: 8 });
      const dst = await m.allocateBlocksCache(new CacheDesc(TENSORS, shape, DataType.DT_UINT8));
      const key = new BlocksCacheKey(clusterId, 2);
      const order = Array.from({ length: blocks }, (_, i) => blocks - 1 - i);
      const all = Array.from({ length: blocks }, (_, i) => i);
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      const collect = () => (g.Bun?.gc ? g.Bun.gc(true) : g.gc?.());
      // Fewer rounds over UCX: the pulls are as large (32 MiB), and slower there.
      for (let round = 0; round < (transport === "shm" ? 60 : 15); round++) {
        const pulled = m.pullBlocks(key, dst, order, all);
        // Off this call's stack (JavaScriptCore scans stacks conservatively),
        // while the copy of 32 MiB still runs.
        await new Promise((resolve) => setTimeout(resolve, 0));
        collect();
        const litter = Array.from(
          { length: 64 },
          () => new Uint32Array(new BigUint64Array(2 * blocks).buffer).fill(0x585),
        );
        await pulled;
        assert.equal(litter.length, 64);
        for (let t = 0; t < TENSORS; t++) {
          const bytes = cacheBytes(decoder, dst, t);
          for (const d of [0, 1, blocks >> 1, blocks - 1]) {
            const s = order[d];
            assert.equal(
              bytes[d * block + 7],
              patternByte(8, t, 0, s * block + 7),
              `round ${round} tensor ${t} block ${d}`,
            );
          }
        }
      }
    });

    test("a PROMPT finalized between two pulls: LINK_FAILED, not the old bytes", async () => {
      await using set = await setUp(transport);
      const { child, clusterId, decoder, dst } = set;
      const m = decoder.cacheManager;
      await ask(child, { op: "blocks", model: 1, numTensors: TENSORS, shape: SHAPE, seed: 7 });
      const key = new BlocksCacheKey(clusterId, 1);
      await m.pullBlocks(key, dst, ALL, ALL);
      await m.pullBlocks(key, dst, ALL, ALL);
      assertPulled(decoder, dst, ALL, 7, "before");
      await child.stop();
      await rejectsWithStatus(m.pullBlocks(key, dst, ALL, ALL), LLMStatusCode.LLM_LINK_FAILED);
    });
  });
}
