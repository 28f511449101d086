// UCX as the data path of links (issue 13): a PROMPT in another process, its
// data read over UCX's TCP transport (UCX_TLS=tcp, loopback), as between two
// hosts (each test may take longer than Bun's default 5 s: 256 MiB caches,
// children). Without UCX installed these tests are skipped and say so; the
// missing-UCX message is checked with LLMDD_UCX_LIBRARY naming a missing file.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import process from "node:process";
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
  TransferConfig,
} from "../mod.ts";
import { startChild } from "./support/children.ts";
import { fillPattern, firstMismatch, patternByte } from "./support/pattern.ts";
import { freshClusterId, rejectsWithStatus, sleep } from "./helpers.ts";
import { assertRow, cacheBytes, dump, kvBytes, link, LOOPBACK, ucxMissing } from "./support/links.ts";

// The children (the PROMPTs) inherit this: their UCP workers offer TCP only, so
// every link below reads over TCP whatever this process's UCX would pick.
process.env.UCX_TLS = "tcp";

async function openDecoder(
  options: { devices?: number[]; poolBytes?: number; timeout?: number; cacheManager?: boolean; remote?: boolean } = {},
): Promise<LLMDataDist> {
  const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  const pool = options.poolBytes ?? 64 << 20;
  await dd.init({
    "ge.exec.deviceId": (options.devices ?? [0]).join(";"),
    ...(options.cacheManager
      ? {
        "llm.EnableCacheManager": "1",
        "llm.MemPoolConfig": JSON.stringify({ memory_size: pool }),
        "llm.EnableRemoteCacheAccessible": options.remote ? "1" : "0",
      }
      : { "ge.flowGraphMemMaxSize": String(pool) }),
    "llm.SyncKvCacheWaitTime": String(options.timeout ?? 10_000),
    "llmdd.transport": "ucx",
  });
  return dd;
}

/**
 * Bytes this machine's TCP connections to `port` (a PROMPT's control port)
 * have sent, from `ss` (iproute2): what crossed the links' control
 * connections, whatever went over UCX's own.
 */
function controlBytesSent(port: number, field = "bytes_sent"): number {
  const text = execFileSync("ss", ["-tinH", "state", "established", `( dport = :${port} )`], { encoding: "utf8" });
  return [...text.matchAll(new RegExp(`${field}:(\\d+)`, "g"))].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** As {@link controlBytesSent}, the bytes those connections received (what a pull read through them). */
function controlBytesReceived(port: number): number {
  return controlBytesSent(port, "bytes_received");
}

const missing = await ucxMissing();

describe("links over UCX (TCP on loopback)", () => {
  if (missing !== undefined) {
    test(`skipped: UCX is not installed here (${missing})`, { skip: "UCX is not installed (libucx0)" }, () => {});
    return;
  }

  test(
    "rows of every data type, by CacheKey and by id, whole and partial, on two devices",
    { timeout: 120_000 },
    async () => {
      const types = [
        DataType.DT_FLOAT,
        DataType.DT_FLOAT16,
        DataType.DT_BF16,
        DataType.DT_INT8,
        DataType.DT_UINT8,
        DataType.DT_INT16,
        DataType.DT_UINT16,
        DataType.DT_INT32,
        DataType.DT_UINT32,
        DataType.DT_INT64,
        DataType.DT_UINT64,
        DataType.DT_DOUBLE,
        DataType.DT_BOOL,
      ];
      const clusterId = freshClusterId();
      await using child = startChild("prompt_process.ts", {
        clusterId: String(clusterId),
        devices: [0, 1],
        caches: types.map((dataType, n) => ({
          numTensors: 3,
          shape: [3, 4, 16],
          dataType,
          seed: n + 1,
          keys: [[100 + n, 0]],
        })),
      });
      const ready = await child.next();
      const ids = (ready.cacheIds as string[]).map(BigInt);
      await using decoder = await openDecoder({ devices: [0, 1] });
      await link(decoder, clusterId, ready.port as number);
      const m = decoder.kvCacheManager;
      // Memory freed by one round is reused by the next: start from zeros.
      const zeroed = async (desc: CacheDesc) => {
        const cache = await m.allocateCache(desc);
        for (let t = 0; t < 3; t++) for (const d of [0, 1]) kvBytes(decoder, cache, t, d).fill(0);
        return cache;
      };
      for (const [n, dataType] of types.entries()) {
        const target = await zeroed(new CacheDesc(3, [4, 4, 16], dataType));
        // By key: row 0 of the source into row 2; the key is consumed.
        await m.pullCache(new CacheKey(clusterId, BigInt(100 + n)), target, 2);
        const row = target.cacheDesc.size / 4;
        assertRow(decoder, target, 2, n + 1, 0, row, [0, 1]);
        await rejectsWithStatus(
          m.pullCache(new CacheKey(clusterId, BigInt(100 + n)), target, 2),
          LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
        );
        // By id, part of row 2: nothing else moves.
        const part = await zeroed(new CacheDesc(3, [2, 4, 16], dataType));
        await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[n], 2), part, 1, 24);
        assertRow(decoder, part, 1, n + 1, 2, 24, [0, 1]);
        await m.deallocateCache(target);
        await m.deallocateCache(part);
      }
    },
  );

  test("whole caches of one row: contiguous tensors in one read each, several MiB", { timeout: 120_000 }, async () => {
    const clusterId = freshClusterId();
    const size = 6 << 20; // more than one read of UCX_GET_BYTES
    await using child = startChild("prompt_process.ts", {
      clusterId: String(clusterId),
      poolBytes: 4 * size,
      caches: [{ numTensors: 2, shape: [1, size], dataType: DataType.DT_UINT8, seed: 21, keys: [[1, 0]] }],
    });
    const ready = await child.next();
    await using decoder = await openDecoder({ poolBytes: 4 * size });
    await link(decoder, clusterId, ready.port as number);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(2, [1, size], DataType.DT_UINT8));
    await decoder.kvCacheManager.pullCache(new CacheKey(clusterId, 1n), target);
    assertRow(decoder, target, 0, 21, 0, size, [0]);
    // By id, again and again: more than a kept answer's staged read (64 KiB),
    // so each asks the PROMPT; the bytes are right every time.
    const byId = new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 0);
    for (let round = 0; round < 3; round++) {
      for (let t = 0; t < 2; t++) kvBytes(decoder, target, t, 0).fill(0);
      await decoder.kvCacheManager.pullCache(byId, target);
      assertRow(decoder, target, 0, 21, 0, size, [0]);
    }
  });

  test(
    "blocks by BlocksCacheKey, CacheKey and id, with layer ranges; every byte checked",
    { timeout: 120_000 },
    async () => {
      const FILL = 0xEE;
      const clusterId = freshClusterId();
      await using child = startChild("blocks_prompt_process.ts", {
        clusterId: String(clusterId),
        caches: [
          // 4 tensors (2 layers) of 16 blocks of [8, 4] FP16: 64-byte blocks
          { numTensors: 4, shape: [16, 8, 4], dataType: DataType.DT_FLOAT16, seed: 3, blocksModelId: 0 },
          // 4 tensors of 2 rows of 128 INT32 (512-byte rows), row 0 named by request 7
          { numTensors: 4, shape: [2, 128], dataType: DataType.DT_INT32, seed: 11, keys: [[7, 0]] },
        ],
      });
      const ready = await child.next();
      const ids = (ready.cacheIds as string[]).map(BigInt);
      await using decoder = await openDecoder({ cacheManager: true, poolBytes: 16 << 20 });
      const m = decoder.cacheManager;
      const bytesOf = (cache: Cache, t: number) => cacheBytes(decoder, cache, t);
      const fill = (cache: Cache) => {
        for (let t = 0; t < cache.cacheDesc.numTensors; t++) bytesOf(cache, t).fill(FILL);
      };
      const check = (
        cache: Cache,
        copies: { dstTensor: number; srcTensor: number; dst: number; srcOffset: number }[],
        seed: number,
      ) => {
        const block = cache.cacheDesc.size / cache.cacheDesc.batchSize;
        for (let t = 0; t < cache.cacheDesc.numTensors; t++) {
          const bytes = bytesOf(cache, t);
          const expected = new Uint8Array(bytes.length).fill(FILL);
          for (const c of copies.filter((c) => c.dstTensor === t)) {
            for (let i = 0; i < block; i++) {
              expected[c.dst * block + i] = patternByte(seed, c.srcTensor, 0, c.srcOffset + i);
            }
          }
          const bad = bytes.findIndex((b, i) => b !== expected[i]);
          assert.equal(bad, -1, `tensor ${t}: byte ${bad} is ${bytes[bad]}, expected ${expected[bad]}`);
        }
      };
      const every = (n: number, pairs: number[][], block: number, base = 0) =>
        Array.from(
          { length: n },
          (_, t) => pairs.map(([s, d]) => ({ dstTensor: t, srcTensor: t, dst: d, srcOffset: base + s * block })),
        ).flat();

      const fp16 = await m.allocateBlocksCache(new CacheDesc(4, [16, 8, 4], DataType.DT_FLOAT16));
      const int32 = await m.allocateBlocksCache(new CacheDesc(4, [10, 16], DataType.DT_INT32));
      await link(decoder, clusterId, ready.port as number);

      // Scattered pairs, a repeated source, and a contiguous run (merged into one read per tensor).
      fill(fp16);
      const pairs = [[3, 1], [0, 2], [15, 15], [3, 7], [8, 8], [9, 9], [10, 10], [11, 11]];
      await m.pullBlocks(new BlocksCacheKey(clusterId), fp16, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
      check(fp16, every(4, pairs, 64), 3);
      // Layer 1 (tensors 2, 3) into layer 0 (tensors 0, 1).
      fill(fp16);
      await m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [5, 6], [8, 9], {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      check(
        fp16,
        [0, 1].flatMap((t) =>
          [[5, 8], [6, 9]].map(([s, d]) => ({ dstTensor: t, srcTensor: t + 2, dst: d, srcOffset: s * 64 }))
        ),
        3,
      );
      // By id: row 1 cut into 64-byte blocks; by CacheKey, then consumed.
      fill(int32);
      await m.pullBlocks(new CacheKeyByIdAndIndex(clusterId, ids[1], 1), int32, [], [9, 0, 4]);
      check(int32, every(4, [[0, 9], [1, 0], [2, 4]], 64, 512), 11);
      fill(int32);
      await m.pullBlocks(new CacheKey(clusterId, 7n), int32, undefined, [2, 3]);
      check(int32, every(4, [[0, 2], [1, 3]], 64), 11);
      await rejectsWithStatus(
        m.pullBlocks(new CacheKey(clusterId, 7n), int32, [], [2]),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
      // pullCache with layer ranges over UCX.
      const rows = await m.allocateCache(new CacheDesc(4, [3, 128], DataType.DT_INT32));
      fill(rows);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, ids[1], 1), rows, 0, -1, {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      check(rows, [0, 1].map((t) => ({ dstTensor: t, srcTensor: t + 2, dst: 0, srcOffset: 512 })), 11);
      // Checked against the answer, as over shared memory.
      await rejectsWithStatus(
        m.pullBlocks(new BlocksCacheKey(clusterId), fp16, [16], [0]),
        LLMStatusCode.LLM_PARAM_INVALID,
        /src_block_index:16/,
      );
    },
  );

  test("repeat pulls by id and by BlocksCacheKey send nothing on the control connection", {
    timeout: 120_000,
  }, async () => {
    // The first pull of a key asks the PROMPT (LOOKUP, DONE); later ones use
    // the answer kept and check the PROMPT's generation page with one more
    // UCX read (docs/DESIGN.md §4.3). test/pull_repeat.test.ts changes the
    // PROMPT's caches between such pulls.
    const clusterId = freshClusterId();
    await using child = startChild("blocks_prompt_process.ts", {
      clusterId: String(clusterId),
      caches: [
        { numTensors: 2, shape: [8, 1024], dataType: DataType.DT_UINT8, seed: 4, blocksModelId: 0 },
        { numTensors: 2, shape: [2, 4096], dataType: DataType.DT_UINT8, seed: 6 },
      ],
    });
    const ready = await child.next();
    const port = ready.port as number;
    const rowsId = BigInt((ready.cacheIds as string[])[1]);
    await using decoder = await openDecoder({ cacheManager: true, poolBytes: 4 << 20 });
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(2, [8, 1024], DataType.DT_UINT8));
    const rows = await m.allocateCache(new CacheDesc(2, [2, 4096], DataType.DT_UINT8));
    await link(decoder, clusterId, port);
    const pullBoth = async (round: number) => {
      for (let t = 0; t < 2; t++) {
        cacheBytes(decoder, blocks, t).fill(0xEE);
        cacheBytes(decoder, rows, t).fill(0xEE);
      }
      await m.pullBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [7, 0], [0, 7]);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, rowsId, 1), rows, 0);
      for (let t = 0; t < 2; t++) {
        const b = cacheBytes(decoder, blocks, t), r = cacheBytes(decoder, rows, t);
        assert.equal(firstMismatch(b, 0, 1024, 4, t, 0, 7 * 1024), -1, `round ${round}: block 0, tensor ${t}`);
        assert.equal(firstMismatch(b, 7 * 1024, 1024, 4, t, 0, 0), -1, `round ${round}: block 7, tensor ${t}`);
        assert.equal(firstMismatch(r, 0, 4096, 6, t, 0, 4096), -1, `round ${round}: row 0, tensor ${t}`);
      }
    };
    const before = controlBytesSent(port);
    await pullBoth(0);
    const first = controlBytesSent(port) - before;
    assert.ok(first > 0, "the first pulls ask the PROMPT");
    for (let round = 1; round <= 20; round++) await pullBoth(round);
    const repeats = controlBytesSent(port) - before - first;
    assert.equal(repeats, 0, `20 repeat rounds sent ${repeats} bytes on the control connection`);
    // The PROMPT killed: a repeat pull fails as LINK_FAILED, well within the deadline.
    await child.kill();
    const start = Date.now();
    await rejectsWithStatus(
      m.pullBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [7, 0], [0, 7]),
      LLMStatusCode.LLM_LINK_FAILED,
    );
    assert.ok(Date.now() - start < 5_000, `the pull from a dead PROMPT took ${Date.now() - start} ms`);
  });

  test("pushes into a PROMPT's pools and registered memory, and pulls of the latter, are one-sided", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const U8 = DataType.DT_UINT8;
    const B = 16 << 10; // bytes per block (a row of the rows cache)
    const child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      caches: [
        { numTensors: 4, shape: [8, B], dataType: U8, blocksModelId: 0 }, // pooled, zeros
        { numTensors: 4, shape: [8, B], dataType: U8, blocksModelId: 1, registered: true }, // registered, zeros
        { numTensors: 4, shape: [8, B], dataType: U8, blocksModelId: 2, registered: true, seed: 31 },
        { numTensors: 4, shape: [2, B], dataType: U8 }, // pooled rows, zeros
        {
          numTensors: 4,
          shape: [8, B],
          dataType: U8,
          blocksModelId: 3,
          registered: true,
          remoteAccessible: false,
          seed: 41,
        },
      ],
    });
    /** Blocks `to` hold source blocks `from` of the pattern (seed, tensor); every other byte is 0. */
    const expectBlocks = (bytes: Uint8Array, seed: number, t: number, pairs: number[][], what: string) => {
      const expected = new Uint8Array(bytes.length);
      for (const [from, to] of pairs) {
        for (let i = 0; i < B; i++) expected[to * B + i] = patternByte(seed, t, 0, from * B + i);
      }
      const bad = bytes.findIndex((b, i) => b !== expected[i]);
      assert.equal(bad, -1, `${what}, tensor ${t}: byte ${bad} differs`);
    };
    try {
      const ready = await child.next();
      const port = ready.port as number;
      await using decoder = await openDecoder({ cacheManager: true, remote: true });
      const m = decoder.cacheManager;
      const blocks: Cache = await m.allocateBlocksCache(new CacheDesc(4, [8, B], U8));
      const rows: Cache = await m.allocateCache(new CacheDesc(4, [2, B], U8));
      for (let t = 0; t < 4; t++) {
        fillPattern(cacheBytes(decoder, blocks, t), 5, t, 0);
        fillPattern(cacheBytes(decoder, rows, t), 6, t, 0);
      }
      await link(decoder, clusterId, port);
      // Into the pools: ucp_put_nbx, so the data does not cross the control
      // connection (a STREAM write would send every byte there).
      let sent = controlBytesSent(port);
      await m.pushBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [1, 2], [3, 4]);
      // Layer ranges: source layer 1 (tensors 2, 3) into destination layer 0 (tensors 0, 1).
      await m.pushBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [5], [6], {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      // By id, a row: source row 1 of layer 0 into row 1 of layer 1.
      const rowsId = BigInt((ready.cacheIds as string[])[3]);
      await m.pushCache(new CacheKeyByIdAndIndex(clusterId, rowsId, 1), rows, 1, [0, 1], [1, 2]);
      const pooled = 4 * 2 * B + 2 * B + 2 * B;
      let control = controlBytesSent(port) - sent;
      assert.ok(
        control < 4096,
        `${control} bytes went over the control connection for ${pooled} pushed into the pools`,
      );
      // Into registered memory: the PROMPT maps the pinned cache's tensors
      // for the pin (UCX_KEYS) and the writes are ucp_put_nbx too; with layer
      // ranges, layer 1 of the source into layer 0 of the destination.
      sent = controlBytesSent(port);
      await m.pushBlocks(new BlocksCacheKey(clusterId, 1n), blocks, [6], [0]);
      await m.pushBlocks(new BlocksCacheKey(clusterId, 1n), blocks, [4, 7], [2, 5], {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      control = controlBytesSent(port) - sent;
      assert.ok(
        control < 4096,
        `${control} bytes went over the control connection for ${4 * B + 4 * B} pushed into registered memory`,
      );
      // A registered cache without remote access takes no push, over UCX as over STREAM.
      await rejectsWithStatus(
        m.pushBlocks(new BlocksCacheKey(clusterId, 3n), blocks, [0], [0]),
        LLMStatusCode.LLM_PARAM_INVALID,
        /remote cache is not remote accessible/,
      );
      assert.equal(
        (await dump(child, 4, 0)).findIndex((b, i) => b !== patternByte(41, 0, 0, i)),
        -1,
        "the refused push wrote nothing",
      );
      for (let t = 0; t < 4; t++) {
        const bytes = await dump(child, 0, t);
        if (t < 2) {
          // Block 6 came from source tensor t + 2.
          const expected = new Uint8Array(B);
          for (let i = 0; i < B; i++) expected[i] = patternByte(5, t + 2, 0, 5 * B + i);
          const bad = bytes.subarray(6 * B, 7 * B).findIndex((b, i) => b !== expected[i]);
          assert.equal(bad, -1, `layer-range push, tensor ${t}: byte ${bad} differs`);
          bytes.fill(0, 6 * B, 7 * B);
        }
        expectBlocks(bytes, 5, t, [[1, 3], [2, 4]], "pushed into the pool");
        const registered = await dump(child, 1, t);
        if (t < 2) {
          // Blocks 2 and 5 came from blocks 4 and 7 of source tensor t + 2.
          for (const [from, to] of [[4, 2], [7, 5]]) {
            const bad = registered.subarray(to * B, (to + 1) * B)
              .findIndex((b, i) => b !== patternByte(5, t + 2, 0, from * B + i));
            assert.equal(bad, -1, `layer-range push into registered memory, tensor ${t}, block ${to}: byte ${bad}`);
            registered.fill(0, to * B, (to + 1) * B);
          }
        }
        expectBlocks(registered, 5, t, [[6, 0]], "pushed into registered memory");
        const row = await dump(child, 3, t);
        if (t >= 2) {
          // Row 1 of tensor t came from source row 1 of tensor t - 2.
          const bad = row.findIndex((b, i) => b !== (i < B ? 0 : patternByte(6, t - 2, 0, i)));
          assert.equal(bad, -1, `row pushed by id, tensor ${t}: byte ${bad} differs`);
        } else {
          assert.equal(row.findIndex((b) => b !== 0), -1, `tensor ${t} of the rows cache was written`);
        }
      }
      // To addresses (transferCacheAsync with TransferConfig, from a DECODER
      // without remote access): row 0 of layer 0 into row 0 of the rows
      // cache's tensors 0 and 1 — UCX writes too.
      await using plain = await openDecoder({ cacheManager: true });
      const source = await plain.cacheManager.allocateCache(new CacheDesc(4, [2, B], U8));
      for (let t = 0; t < 4; t++) {
        fillPattern(cacheBytes(plain, source, t), 7, t, 0);
      }
      await link(plain, clusterId, port);
      const rowAddrs = (ready.addrs as string[][])[3].map(BigInt);
      sent = controlBytesSent(port);
      const task = plain.cacheManager.transferCacheAsync(source, { synchronizeLayer: () => true }, [
        new TransferConfig(clusterId, [rowAddrs[0], rowAddrs[1]], [0, 1], 0),
      ]);
      assert.equal(await task.synchronize(20_000), LLMStatusCode.LLM_SUCCESS);
      control = controlBytesSent(port) - sent;
      assert.ok(control < 4096, `${control} bytes went over the control connection for ${2 * B} pushed to addresses`);
      for (let t = 0; t < 2; t++) {
        const row = await dump(child, 3, t);
        const bad = row.findIndex((b, i) => b !== (i < B ? patternByte(7, t, 0, i) : 0));
        assert.equal(bad, -1, `row pushed to addresses, tensor ${t}: byte ${bad} differs`);
      }
      // To addresses in registered memory (block 3 of tensors 0 and 1 of the
      // remote-accessible registered cache): UCX writes with the pin's keys.
      const regAddrs = (ready.addrs as string[][])[1].map(BigInt);
      sent = controlBytesSent(port);
      const into = plain.cacheManager.transferCacheAsync(source, { synchronizeLayer: () => true }, [
        new TransferConfig(clusterId, [regAddrs[0] + BigInt(3 * B), regAddrs[1] + BigInt(3 * B)], [0, 1], 1),
      ]);
      assert.equal(await into.synchronize(20_000), LLMStatusCode.LLM_SUCCESS);
      control = controlBytesSent(port) - sent;
      assert.ok(control < 4096, `${control} bytes went over the control connection for ${2 * B} pushed to addresses`);
      for (let t = 0; t < 2; t++) {
        const bytes = (await dump(child, 1, t)).subarray(3 * B, 4 * B);
        const bad = bytes.findIndex((b, i) => b !== patternByte(7, t, 0, B + i));
        assert.equal(bad, -1, `row pushed to registered addresses, tensor ${t}: byte ${bad} differs`);
      }
      // Pulls of registered memory: UCX reads, nothing through the control
      // connection; then layer 1 of it into layer 0, and a row by id from the
      // registered cache that takes no pushes (reads need no remote access).
      const pulled = await m.allocateBlocksCache(new CacheDesc(4, [8, B], U8));
      let got = controlBytesReceived(port);
      await m.pullBlocks(new BlocksCacheKey(clusterId, 2n), pulled, [7, 0], [0, 5]);
      control = controlBytesReceived(port) - got;
      assert.ok(control < 4096, `${control} bytes came over the control connection for ${8 * B} pulled`);
      for (let t = 0; t < 4; t++) {
        const bytes = cacheBytes(decoder, pulled, t);
        expectBlocks(bytes, 31, t, [[7, 0], [0, 5]], "pulled from registered memory");
        bytes.fill(0);
      }
      got = controlBytesReceived(port);
      await m.pullBlocks(new BlocksCacheKey(clusterId, 2n), pulled, [3, 6], [1, 2], {
        srcLayerRange: [1, 2],
        dstLayerRange: [0, 1],
      });
      control = controlBytesReceived(port) - got;
      assert.ok(control < 4096, `${control} bytes came over the control connection for ${4 * B} pulled`);
      for (let t = 0; t < 4; t++) {
        const bytes = cacheBytes(decoder, pulled, t);
        const expected = new Uint8Array(bytes.length);
        if (t < 2) {
          for (const [from, to] of [[3, 1], [6, 2]]) {
            for (let i = 0; i < B; i++) expected[to * B + i] = patternByte(31, t + 2, 0, from * B + i);
          }
        }
        const bad = bytes.findIndex((b, i) => b !== expected[i]);
        assert.equal(bad, -1, `layer-range pull from registered memory, tensor ${t}: byte ${bad} differs`);
      }
      got = controlBytesReceived(port);
      const readOnlyId = BigInt((ready.cacheIds as string[])[4]);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, readOnlyId, 5), rows, 0);
      control = controlBytesReceived(port) - got;
      assert.ok(control < 4096, `${control} bytes came over the control connection for ${4 * B} pulled`);
      for (let t = 0; t < 4; t++) {
        const bytes = cacheBytes(decoder, rows, t).subarray(0, B);
        const bad = bytes.findIndex((b, i) => b !== patternByte(41, t, 0, 5 * B + i));
        assert.equal(bad, -1, `row pulled from registered memory without remote access, tensor ${t}: byte ${bad}`);
      }
    } finally {
      await child.stop();
    }
  });

  test("pulls of a PROMPT's host-pool cache are UCX reads too", { timeout: 120_000 }, async () => {
    const clusterId = freshClusterId();
    const B = 16 << 10;
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: false,
      caches: [{ numTensors: 2, shape: [4, B], dataType: DataType.DT_UINT8, seed: 51, host: true }],
    });
    const ready = await child.next();
    const port = ready.port as number;
    await using decoder = await openDecoder({ cacheManager: true });
    const m = decoder.cacheManager;
    const into = await m.allocateCache(new CacheDesc(2, [2, B], DataType.DT_UINT8));
    await link(decoder, clusterId, port);
    const got = controlBytesReceived(port);
    await m.pullCache(new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 2), into, 1);
    const control = controlBytesReceived(port) - got;
    assert.ok(control < 4096, `${control} bytes came over the control connection for ${2 * B} pulled`);
    for (let t = 0; t < 2; t++) {
      const bytes = cacheBytes(decoder, into, t);
      const bad = bytes.findIndex((b, i) => b !== (i < B ? 0 : patternByte(51, t, 0, 2 * B + i - B)));
      assert.equal(bad, -1, `host-pool row, tensor ${t}: byte ${bad} differs`);
    }
  });

  test("a registered cache of more tensors than UCX_KEYS carries goes through the control connection", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const T = 66; // more than 64 tensors × devices: no keys
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: false,
      caches: [{ numTensors: T, shape: [2, 256], dataType: DataType.DT_UINT8, seed: 61, registered: true }],
    });
    const ready = await child.next();
    const port = ready.port as number;
    await using decoder = await openDecoder({ cacheManager: true });
    const m = decoder.cacheManager;
    const into = await m.allocateCache(new CacheDesc(T, [2, 256], DataType.DT_UINT8));
    await link(decoder, clusterId, port);
    const got = controlBytesReceived(port);
    await m.pullCache(new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 1), into, 0);
    const control = controlBytesReceived(port) - got;
    assert.ok(control >= T * 256, `only ${control} bytes came over the control connection for ${T * 256} streamed`);
    for (let t = 0; t < T; t++) {
      const bytes = cacheBytes(decoder, into, t);
      const bad = bytes.findIndex((b, i) => b !== (i < 256 ? patternByte(61, t, 0, 256 + i) : 0));
      assert.equal(bad, -1, `tensor ${t}: byte ${bad} differs`);
    }
  });

  test("a PROMPT without remote access: its pools' keys allow no writes, and pushes to it are refused", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: false,
      caches: [{ numTensors: 2, shape: [8, 64], dataType: DataType.DT_UINT8, blocksModelId: 0 }],
    });
    const ready = await child.next();
    await using decoder = await openDecoder({ cacheManager: true, remote: true });
    const m = decoder.cacheManager;
    const blocks = await m.allocateBlocksCache(new CacheDesc(2, [8, 64], DataType.DT_UINT8));
    await link(decoder, clusterId, ready.port as number);
    await rejectsWithStatus(
      m.pushBlocks(new BlocksCacheKey(clusterId, 0n), blocks, [0], [0]),
      LLMStatusCode.LLM_PARAM_INVALID,
      /remote cache is not remote accessible/,
    );
    const bytes = await dump(child, 0, 0);
    assert.equal(bytes.findIndex((b) => b !== 0), -1, "nothing was written");
  });

  test("a push aborted midway: the link keeps working, and nothing of it lands after a later push", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const half = 64 << 20;
    await using child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      poolBytes: 2 * half + (1 << 20),
      caches: [{ numTensors: 2, shape: [1, half], dataType: DataType.DT_UINT8, blocksModelId: 0 }],
    });
    const ready = await child.next();
    await using decoder = await openDecoder({ cacheManager: true, remote: true, poolBytes: 6 * half + (1 << 20) });
    const m = decoder.cacheManager;
    const desc = new CacheDesc(2, [1, half], DataType.DT_UINT8);
    const [first, second, check] = [
      await m.allocateBlocksCache(desc),
      await m.allocateBlocksCache(desc),
      await m.allocateBlocksCache(desc),
    ];
    const fill = (cache: Cache, seed: number) => {
      for (let t = 0; t < 2; t++) {
        fillPattern(cacheBytes(decoder, cache, t), seed, t, 0);
      }
    };
    fill(first, 1);
    fill(second, 2);
    await link(decoder, clusterId, ready.port as number);
    const key = new BlocksCacheKey(clusterId, 0n);
    const controller = new AbortController();
    const aborted = m.pushBlocks(key, first, [0], [0], { signal: controller.signal }).then(
      () => "resolved",
      (e) => e,
    );
    await sleep(5);
    controller.abort(new Error("stop"));
    const outcome = await aborted;
    // Aborted, or (a fast machine) done before the abort came.
    assert.ok(outcome === "resolved" || outcome?.message === "stop", `unexpected outcome ${outcome}`);
    await m.pushBlocks(key, second, [0], [0]);
    await m.pullBlocks(key, check, [0], [0]);
    for (let t = 0; t < 2; t++) {
      const bytes = cacheBytes(decoder, check, t);
      assert.equal(firstMismatch(bytes, 0, half, 2, t, 0, 0), -1, `tensor ${t} holds bytes of the aborted push`);
    }
  });

  test("a PROMPT killed during a push: LINK_FAILED within the deadline, no hang; the DECODER keeps working", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const size = 256 << 20;
    const child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      poolBytes: size + (1 << 20),
      caches: [{ numTensors: 2, shape: [1, size / 2], dataType: DataType.DT_UINT8, blocksModelId: 0 }],
    });
    const ready = await child.next();
    const timeout = 20_000;
    await using decoder = await openDecoder({ cacheManager: true, remote: true, poolBytes: size + (1 << 20), timeout });
    const m = decoder.cacheManager;
    const source = await m.allocateBlocksCache(new CacheDesc(2, [1, size / 2], DataType.DT_UINT8));
    await link(decoder, clusterId, ready.port as number);
    const key = new BlocksCacheKey(clusterId, 0n);
    const pushing = m.pushBlocks(key, source, [0], [0]).then(() => "resolved", (err) => err);
    await sleep(20);
    await child.kill();
    const outcome = await pushing;
    // The deadline was not what ended it: a timeout would be WAIT_PROCESS_TIMEOUT.
    assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
    await rejectsWithStatus(m.pushBlocks(key, source, [0], [0]), LLMStatusCode.LLM_LINK_FAILED);
    const small = await m.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8));
    assert.equal((await m.getCacheTensors(small))[0].byteLength, 8, "the DECODER keeps working");
  });

  test("a PROMPT killed during a push into its registered memory: LINK_FAILED, no hang", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const size = 256 << 20;
    const child = startChild("push_prompt_process.ts", {
      clusterId: String(clusterId),
      remote: true,
      poolBytes: 1 << 20,
      caches: [{
        numTensors: 2,
        shape: [1, size / 2],
        dataType: DataType.DT_UINT8,
        blocksModelId: 0,
        registered: true,
        remoteAccessible: true,
      }],
    });
    const ready = await child.next();
    await using decoder = await openDecoder({
      cacheManager: true,
      remote: true,
      poolBytes: size + (1 << 20),
      timeout: 20_000,
    });
    const m = decoder.cacheManager;
    const source = await m.allocateBlocksCache(new CacheDesc(2, [1, size / 2], DataType.DT_UINT8));
    await link(decoder, clusterId, ready.port as number);
    const key = new BlocksCacheKey(clusterId, 0n);
    const pushing = m.pushBlocks(key, source, [0], [0]).then(() => "resolved", (err) => err);
    await sleep(20);
    await child.kill();
    const outcome = await pushing;
    assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
    await rejectsWithStatus(m.pushBlocks(key, source, [0], [0]), LLMStatusCode.LLM_LINK_FAILED);
  });

  test("unlink and link again: pulls work over the new link", { timeout: 120_000 }, async () => {
    const clusterId = freshClusterId();
    await using child = startChild("prompt_process.ts", {
      clusterId: String(clusterId),
      caches: [{ numTensors: 2, shape: [2, 256], dataType: DataType.DT_INT16, seed: 8 }],
    });
    const ready = await child.next();
    const id = BigInt((ready.cacheIds as string[])[0]);
    await using decoder = await openDecoder();
    const m = decoder.kvCacheManager;
    for (let round = 0; round < 3; round++) {
      const cluster = await link(decoder, clusterId, ready.port as number);
      const target = await m.allocateCache(new CacheDesc(2, [2, 256], DataType.DT_INT16));
      for (let t = 0; t < 2; t++) kvBytes(decoder, target, t, 0).fill(0);
      await m.pullCache(new CacheKeyByIdAndIndex(clusterId, id, round % 2), target, 1);
      assertRow(decoder, target, 1, 8, round % 2, 512, [0]);
      await m.deallocateCache(target);
      const [status] = await decoder.unlinkClusters([cluster], 5000);
      assert.equal(status, LLMStatusCode.LLM_SUCCESS);
      await rejectsWithStatus(
        m.pullCache(
          new CacheKeyByIdAndIndex(clusterId, id, 0),
          await m.allocateCache(new CacheDesc(2, [2, 256], DataType.DT_INT16)),
        ),
        LLMStatusCode.LLM_NOT_YET_LINK,
      );
    }
  });

  test("a PROMPT killed during a pull: LINK_FAILED within the deadline, no hang; the DECODER keeps working", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    const size = 256 << 20;
    const child = startChild("prompt_process.ts", {
      clusterId: String(clusterId),
      poolBytes: size + (1 << 20),
      caches: [{ numTensors: 1, shape: [1, size], dataType: DataType.DT_UINT8, seed: 9 }],
    });
    const ready = await child.next();
    const timeout = 20_000;
    await using decoder = await openDecoder({ poolBytes: size + (1 << 20), timeout });
    await link(decoder, clusterId, ready.port as number);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
    const key = new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 0);
    const pulling = decoder.kvCacheManager.pullCache(key, target).then(() => "resolved", (err) => err);
    await sleep(20);
    await child.kill();
    const outcome = await pulling;
    // The deadline was not what ended it: a timeout would be WAIT_PROCESS_TIMEOUT.
    assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
    // The link is known broken: the next pull says so at once.
    await rejectsWithStatus(decoder.kvCacheManager.pullCache(key, target), LLMStatusCode.LLM_LINK_FAILED);
    const small = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8));
    assert.equal((await decoder.kvCacheManager.getCacheTensors(small))[0].byteLength, 8, "the DECODER keeps working");
  });

  test("llmdd.transport: auto links on this machine over shared memory, and bad values are refused", {
    timeout: 120_000,
  }, async () => {
    const clusterId = freshClusterId();
    await using child = startChild("prompt_process.ts", {
      clusterId: String(clusterId),
      caches: [{ numTensors: 1, shape: [1, 64], dataType: DataType.DT_UINT8, seed: 4, keys: [[1, 0]] }],
    });
    const ready = await child.next();
    for (const transport of ["auto", "shm"]) {
      await using decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
      await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llmdd.transport": transport });
      await link(decoder, clusterId, ready.port as number);
      const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
      await decoder.kvCacheManager.pullCache(
        new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 0),
        target,
      );
      assertRow(decoder, target, 0, 4, 0, 64, [0]);
    }
    const bad = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await rejectsWithStatus(
      bad.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llmdd.transport": "rdma" }),
      LLMStatusCode.LLM_PARAM_INVALID,
      /llmdd\.transport "rdma" is not "auto", "shm" or "ucx"/,
    );
  });
});

/** Why two network namespaces cannot be made here, or undefined when they can (root, `ip`). */
function namespacesUnavailable(): string | undefined {
  // From `id -u`, not process.getuid(): Deno asks --allow-sys for that (and
  // --allow-all for /proc/self), which the suite does not grant; it runs programs.
  let uid = "";
  try {
    uid = execFileSync("id", ["-u"], { encoding: "utf8" }).trim();
  } catch {
    return "no id command";
  }
  if (uid !== "0") return "not root";
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
  } catch {
    return "no ip command (package iproute2)";
  }
  return undefined;
}

/** Bytes received on `device` in network namespace `ns`. */
function received(ns: string, device: string): number {
  const text = execFileSync("ip", ["-n", ns, "-s", "link", "show", device], { encoding: "utf8" });
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.trim().startsWith("RX:"));
  return Number(lines[at + 1].trim().split(/\s+/)[0]);
}

describe("between two network namespaces (not loopback)", () => {
  const why = missing !== undefined ? "UCX is not installed (libucx0)" : namespacesUnavailable();
  test(
    "a PROMPT and a DECODER in their own network namespaces, linked over a veth pair: auto picks UCX",
    { skip: why, timeout: 120_000 },
    async () => {
      const tag = String(process.pid % 100000);
      const [a, b] = [`llmdd-a${tag}`, `llmdd-b${tag}`];
      const [va, vb] = [`lva${tag}`, `lvb${tag}`];
      const net = `10.213.${process.pid % 250}`;
      const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "ignore" });
      const secret = "a secret of more than sixteen bytes";
      const size = 256 * 1024;
      try {
        ip("netns", "add", a);
        ip("netns", "add", b);
        ip("link", "add", va, "type", "veth", "peer", "name", vb);
        ip("link", "set", va, "netns", a);
        ip("link", "set", vb, "netns", b);
        ip("-n", a, "addr", "add", `${net}.1/24`, "dev", va);
        ip("-n", b, "addr", "add", `${net}.2/24`, "dev", vb);
        for (const [ns, dev] of [[a, va], [b, vb], [a, "lo"], [b, "lo"]]) ip("-n", ns, "link", "set", dev, "up");
        const clusterId = freshClusterId();
        const prompt = startChild("prompt_process.ts", {
          clusterId: String(clusterId),
          listen: `${net}.1`,
          secret,
          caches: [{ numTensors: 2, shape: [1, size], dataType: DataType.DT_UINT8, seed: 17 }],
        }, { prefix: ["ip", "netns", "exec", a] });
        try {
          const ready = await prompt.next();
          const before = received(b, vb);
          const decoder = startChild("ucx_link_process.ts", {
            clusterId: String(freshClusterId()),
            promptClusterId: String(clusterId),
            address: `${net}.1`,
            port: ready.port,
            transport: "auto",
            secret,
            pull: {
              cacheId: (ready.cacheIds as string[])[0],
              numTensors: 2,
              shape: [1, size],
              dataType: DataType.DT_UINT8,
              seed: 17,
            },
          }, { prefix: ["ip", "netns", "exec", b] });
          const result = await decoder.next();
          await decoder.stop();
          assert.equal(result.status, LLMStatusCode.LLM_SUCCESS, String(result.message));
          assert.equal(result.checked, 2 * size);
          // The rows came in through the veth device, not through shared memory.
          const came = received(b, vb) - before;
          assert.ok(came >= 2 * size, `only ${came} bytes came in on ${vb}`);
        } finally {
          await prompt.stop();
        }
      } finally {
        for (const ns of [a, b]) {
          try {
            ip("netns", "del", ns); // takes its end of the veth pair, and so the pair, with it
          } catch { /* not made */ }
        }
      }
    },
  );
});

describe("without UCX", () => {
  test(
    "a DECODER that asks for UCX where it cannot be loaded is told which package to install",
    { timeout: 120_000 },
    async () => {
      // A PROMPT here; a DECODER in a child whose LLMDD_UCX_LIBRARY names a missing file.
      await using prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
      await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llm.listenIpInfo": `${LOOPBACK}:0` });
      const child = startChild(
        "ucx_link_process.ts",
        { clusterId: String(freshClusterId()), promptClusterId: String(prompt.clusterId), port: prompt.listenPort },
        { env: { ...process.env, LLMDD_UCX_LIBRARY: "/nonexistent/libucp.so.0" } },
      );
      const result = (await child.next()) as { status: number; message: string };
      await child.stop();
      assert.equal(result.status, LLMStatusCode.LLM_FEATURE_NOT_ENABLED, result.message);
      assert.match(result.message, /UCX is not available \(cannot load \/nonexistent\/libucp\.so\.0/);
      assert.match(result.message, /apt-get install libucx0/);
    },
  );
});
