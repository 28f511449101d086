// Prefill → decode on the host backend: links, pulls, cache keys, and peers
// that die — in one process and across processes.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  type KvCache,
  LLMClusterInfo,
  LLMConfig,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  ValueError,
} from "../mod.ts";
import { startChild } from "./support/children.ts";
import { fillPattern, firstMismatch } from "./support/pattern.ts";
import { freshClusterId, openInstance, rejectsWith, rejectsWithStatus, sleep } from "./helpers.ts";
import { assertRow, clusterAt, kvBytes, link, LOOPBACK } from "./support/links.ts";

async function openPrompt(options: { devices?: number[]; poolBytes?: number; clusterId?: bigint } = {}) {
  const prompt = new LLMDataDist(LLMRole.PROMPT, options.clusterId ?? freshClusterId());
  await prompt.init({
    "ge.exec.deviceId": (options.devices ?? [0]).join(";"),
    "ge.flowGraphMemMaxSize": String(options.poolBytes ?? 64 << 20),
    "llm.listenIpInfo": `${LOOPBACK}:0`,
  });
  assert.ok(prompt.listenPort > 0);
  return prompt;
}

function fillCache(dd: LLMDataDist, cache: KvCache, seed: number): void {
  const devices = cache.perDeviceTensorAddrs.length;
  for (let t = 0; t < cache.cacheDesc.numTensors; t++) {
    for (let d = 0; d < devices; d++) {
      fillPattern(kvBytes(dd, cache, t, d), seed, t, dd.kvCacheManager.getCacheTensorViews(cache, t)[d].deviceId);
    }
  }
}

/** A TCP server on loopback that accepts and never answers; and a port nobody listens on. */
async function silentServer(): Promise<{ server: Server; port: number }> {
  const server = createServer(() => {});
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  return { server, port: (server.address() as { port: number }).port };
}

/** A loopback port nobody listens on any more: a PROMPT's, after it finalized. */
async function deadPort(): Promise<number> {
  const prompt = await openPrompt();
  const port = prompt.listenPort;
  prompt.finalize();
  return port;
}

describe("pull within one process", () => {
  test("rows by CacheKey and by id, into any batch row, whole or partial, for several data types", async () => {
    await using prompt = await openPrompt({ devices: [0, 1] });
    await using decoder = await openInstance({ devices: [0, 1] });
    await link(decoder, prompt.clusterId, prompt.listenPort);
    const types = [DataType.DT_FLOAT16, DataType.DT_FLOAT, DataType.DT_INT8, DataType.DT_INT64, DataType.DT_BF16];
    for (const [n, dataType] of types.entries()) {
      const keys = [0, 1, 2].map((i) => new CacheKey(prompt.clusterId, 100 + 10 * n + i));
      const source = await prompt.kvCacheManager.allocateCache(new CacheDesc(2, [3, 4, 8], dataType), keys);
      fillCache(prompt, source, n + 1);
      const row = source.cacheDesc.size / 3;
      // The upstream sample: one request into batch row 1 of a 4-batch cache.
      const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(2, [4, 4, 8], dataType));
      await decoder.kvCacheManager.pullCache(keys[2], target, 1);
      assertRow(decoder, target, 1, n + 1, 2, row, [0, 1]);
      // By id, part of a row: nothing else moves.
      const other = await decoder.kvCacheManager.allocateCache(new CacheDesc(2, [2, 4, 8], dataType));
      await decoder.kvCacheManager.pullCache(
        new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 0),
        other,
        1,
        row / 2,
      );
      assertRow(decoder, other, 1, n + 1, 0, row / 2, [0, 1]);
    }
  });

  test("a CacheKey is consumed by its pull; ids are not; unknown keys do not exist", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    await link(decoder, prompt.clusterId, prompt.listenPort);
    const desc = new CacheDesc(1, [2, 16], DataType.DT_UINT8);
    const key = new CacheKey(prompt.clusterId, 7n);
    const source = await prompt.kvCacheManager.allocateCache(desc, [key]);
    const target = await decoder.kvCacheManager.allocateCache(desc);
    await decoder.kvCacheManager.pullCache(key, target, 0);
    await rejectsWithStatus(decoder.kvCacheManager.pullCache(key, target, 0), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    await rejectsWithStatus(
      decoder.kvCacheManager.pullCache(new CacheKey(prompt.clusterId, 8n), target, 0),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
    const byId = new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 1);
    await decoder.kvCacheManager.pullCache(byId, target, 1);
    await decoder.kvCacheManager.pullCache(byId, target, 1);
    await rejectsWithStatus(
      decoder.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, 999n, 0), target, 0),
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
    );
  });

  test("a cache's memory returns to the pool once its id and all its keys are released", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    await link(decoder, prompt.clusterId, prompt.listenPort);
    const manager = prompt.kvCacheManager;
    const desc = new CacheDesc(1, [2, 1024], DataType.DT_UINT8);
    const keys = [new CacheKey(prompt.clusterId, 1n), new CacheKey(prompt.clusterId, 2n)];
    const source = await manager.allocateCache(desc, keys);
    await manager.deallocateCache(source);
    assert.ok(manager.poolUsage()[0].usedBytes > 0, "keys still hold the memory");
    const target = await decoder.kvCacheManager.allocateCache(desc);
    await decoder.kvCacheManager.pullCache(keys[0], target, 0); // consumes key 1
    assert.ok(manager.poolUsage()[0].usedBytes > 0, "key 2 still holds it");
    await manager.removeCacheKey(keys[1]);
    // The pull tells the PROMPT "done" without waiting for an answer: give the
    // PROMPT's connection thread a moment to release key 1.
    for (let i = 0; i < 100 && manager.poolUsage()[0].usedBytes !== 0; i++) await sleep(20);
    assert.equal(manager.poolUsage()[0].usedBytes, 0);
    await rejectsWithStatus(manager.removeCacheKey(keys[1]), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
  });
});

describe("links", () => {
  test("link, ALREADY_LINK, unlink, NOT_YET_LINK", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    const cluster = clusterAt(prompt.clusterId, prompt.listenPort);
    assert.deepEqual(await decoder.linkClusters([cluster]), [LLMStatusCode.LLM_SUCCESS, [LLMStatusCode.LLM_SUCCESS]]);
    assert.deepEqual(await decoder.linkClusters([cluster]), [
      LLMStatusCode.LLM_ALREADY_LINK,
      [LLMStatusCode.LLM_ALREADY_LINK],
    ]);
    assert.deepEqual(await decoder.unlinkClusters([cluster]), [LLMStatusCode.LLM_SUCCESS, [LLMStatusCode.LLM_SUCCESS]]);
    assert.deepEqual(await decoder.unlinkClusters([cluster]), [
      LLMStatusCode.LLM_NOT_YET_LINK,
      [LLMStatusCode.LLM_NOT_YET_LINK],
    ]);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 8], DataType.DT_UINT8));
    await rejectsWithStatus(
      decoder.kvCacheManager.pullCache(new CacheKey(prompt.clusterId, 1n), target),
      LLMStatusCode.LLM_NOT_YET_LINK,
    );
    await link(decoder, prompt.clusterId, prompt.listenPort); // again after unlinking
  });

  test("linking to nobody fails within the timeout", async () => {
    await using decoder = await openInstance();
    const refused = clusterAt(freshClusterId(), await deadPort());
    let start = performance.now();
    assert.deepEqual(await decoder.linkClusters([refused], 2000), [
      LLMStatusCode.LLM_LINK_FAILED,
      [LLMStatusCode.LLM_LINK_FAILED],
    ]);
    assert.ok(performance.now() - start < 2000 + 500);
    const { server, port } = await silentServer();
    try {
      start = performance.now();
      const [status] = await decoder.linkClusters([clusterAt(freshClusterId(), port)], 300);
      const took = performance.now() - start;
      assert.equal(status, LLMStatusCode.LLM_LINK_FAILED);
      assert.ok(took >= 250 && took < 300 + 500, `a silent peer failed the link after ${took.toFixed(0)} ms`);
    } finally {
      server.close();
    }
  });

  test("a link to the wrong cluster id fails; the statuses line up with the clusters", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    const right = clusterAt(prompt.clusterId, prompt.listenPort);
    const wrong = clusterAt(prompt.clusterId + 1n, prompt.listenPort);
    assert.deepEqual(await decoder.linkClusters([wrong, right]), [
      LLMStatusCode.LLM_LINK_FAILED,
      [LLMStatusCode.LLM_LINK_FAILED, LLMStatusCode.LLM_SUCCESS],
    ]);
  });

  test("argument and role errors", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    const cluster = clusterAt(prompt.clusterId, prompt.listenPort);
    await rejectsWith(decoder.linkClusters(cluster as unknown as LLMClusterInfo[]), TypeError, /clusters/);
    await rejectsWith(decoder.linkClusters([{} as LLMClusterInfo]), TypeError, /clusters\[0\]/);
    await rejectsWithStatus(decoder.linkClusters([cluster], 0), LLMStatusCode.LLM_PARAM_INVALID, /timeout/);
    await rejectsWith(decoder.linkClusters([cluster], 2 ** 31), ValueError, /timeout/);
    await rejectsWith(decoder.linkClusters([new LLMClusterInfo()]), ValueError, /remote ip info/);
    await rejectsWithStatus(
      decoder.linkClusters(Array.from({ length: 17 }, () => cluster)),
      LLMStatusCode.LLM_CLUSTER_NUM_EXCEED_LIMIT,
    );
    await rejectsWith(decoder.unlinkClusters([cluster], 1000, 1 as unknown as boolean), TypeError, /force/);
    await rejectsWithStatus(prompt.linkClusters([cluster]), LLMStatusCode.LLM_PARAM_INVALID, /PROMPT/);
    const info = new LLMClusterInfo();
    await rejectsWith(() => info.appendRemoteIpInfo("127.0.0", 1), ValueError, /ip/);
    await rejectsWith(() => info.appendRemoteIpInfo("127.0.0.1", 65536), ValueError, /port/);
    await rejectsWith(() => info.appendRemoteIpInfo(null as unknown as string, 1), TypeError, /ip/);
    await rejectsWith(() => (info.remoteClusterId = -1), ValueError, /remoteClusterId/);
    info.appendRemoteIpInfo(0x0100007F, 80); // upstream also takes integers, lowest byte first
    assert.deepEqual(info.remoteIpInfoList, [{ ip: "127.0.0.1", port: 80 }]);
    const config = new LLMConfig();
    await rejectsWith(() => (config.listenIpInfo = "localhost"), ValueError, /listenIpInfo/);
  });
});

describe("pull errors", () => {
  test("roles, descs, indexes and sizes; the instances keep working", async () => {
    await using prompt = await openPrompt();
    await using decoder = await openInstance();
    await link(decoder, prompt.clusterId, prompt.listenPort);
    const desc = new CacheDesc(2, [2, 4, 8], DataType.DT_FLOAT16);
    const key = new CacheKey(prompt.clusterId, 1n);
    const source = await prompt.kvCacheManager.allocateCache(desc, [key]);
    fillCache(prompt, source, 3);
    const target = await decoder.kvCacheManager.allocateCache(desc);
    const invalid = LLMStatusCode.LLM_PARAM_INVALID;
    const pull = (k: CacheKey | CacheKeyByIdAndIndex, c: KvCache, index?: number, size?: number) =>
      decoder.kvCacheManager.pullCache(k, c, index, size);
    await rejectsWithStatus(prompt.kvCacheManager.pullCache(key, source), invalid, /PROMPT/);
    await rejectsWithStatus(decoder.kvCacheManager.allocateCache(desc, [key]), invalid, /DECODER/);
    await rejectsWithStatus(pull(key, target, 2), invalid, /batchIndex/);
    await rejectsWith(pull(key, target, -1), ValueError, /batchIndex/); // uint32, as upstream
    await rejectsWithStatus(pull(key, target, 0, 65), invalid, /size/);
    await rejectsWithStatus(pull(key, target, 0, 0), invalid, /size/); // upstream: -1 or > 0
    await rejectsWithStatus(pull(key, target, 2 ** 31), invalid, /batchIndex/);
    await rejectsWith(pull(key, target, 2 ** 32), ValueError, /batchIndex/);
    await rejectsWith(pull({} as CacheKey, target), TypeError, /cacheKey/);
    await rejectsWith(pull(key, {} as KvCache), TypeError, /cache/);
    for (
      const other of [new CacheDesc(2, [2, 4, 9], DataType.DT_FLOAT16), new CacheDesc(2, [2, 4, 8], DataType.DT_BF16)]
    ) {
      const mismatched = await decoder.kvCacheManager.allocateCache(other);
      await rejectsWithStatus(pull(key, mismatched), invalid);
    }
    const fewer = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [2, 4, 8], DataType.DT_FLOAT16));
    await rejectsWithStatus(pull(key, fewer), invalid);
    const freed = await decoder.kvCacheManager.allocateCache(desc);
    await decoder.kvCacheManager.deallocateCache(freed);
    await rejectsWithStatus(pull(key, freed), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
    // After all that, the key is still there and the pull works.
    await pull(key, target, 1);
    assertRow(decoder, target, 1, 3, 0, desc.size / 2, [0]);
  });

  test("instance options: listenIpInfo belongs to PROMPT; a live cluster id cannot be taken twice", async () => {
    const decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await rejectsWithStatus(decoder.init({ "llm.listenIpInfo": `${LOOPBACK}:0` }), LLMStatusCode.LLM_PARAM_INVALID);
    await using prompt = await openPrompt();
    const twin = new LLMDataDist(LLMRole.PROMPT, prompt.clusterId);
    await rejectsWithStatus(twin.init({}), LLMStatusCode.LLM_FAILED, /cluster/);
  });
});

describe("across processes", { timeout: 120_000 }, () => {
  function promptChild(clusterId: bigint, caches: Record<string, unknown>[], poolBytes = 64 << 20) {
    return startChild("prompt_process.ts", { clusterId: String(clusterId), caches, poolBytes });
  }

  test("a DECODER pulls each request from a PROMPT process, for several data types, rows and sizes", async () => {
    const clusterId = freshClusterId();
    const kinds = [
      { dataType: DataType.DT_FLOAT16, shape: [4, 16, 8], seed: 5 },
      { dataType: DataType.DT_FLOAT, shape: [3, 5, 7], seed: 6 },
      { dataType: DataType.DT_INT8, shape: [2, 3000], seed: 7 },
      { dataType: DataType.DT_BF16, shape: [2, 1 << 20], seed: 8 }, // 2 MiB rows: several chunks
    ];
    // Request r of kind k is batch row r of the PROMPT's cache of that kind.
    const child = promptChild(
      clusterId,
      kinds.map(({ dataType, shape, seed }, k) => ({
        numTensors: 2,
        shape,
        dataType,
        seed,
        keys: Array.from({ length: shape[0] }, (_, r) => [100 * k + r, 0]),
      })),
      32 << 20,
    );
    try {
      const ready = await child.next();
      await using decoder = await openInstance({ syncKvTimeout: 5000, poolBytes: 32 << 20 });
      await link(decoder, clusterId, ready.port as number);
      const manager = decoder.kvCacheManager;
      for (const [k, { dataType, shape, seed }] of kinds.entries()) {
        const rows = shape[0];
        const target = await manager.allocateCache(new CacheDesc(2, [rows + 1, ...shape.slice(1)], dataType));
        const row = target.cacheDesc.size / (rows + 1);
        // A new cache's bytes are whatever the pool held (as on a device): mark them.
        for (let t = 0; t < 2; t++) kvBytes(decoder, target, t, 0).fill(0xEE);
        // Every request, whole, into row r + 1 (row 0 stays empty), in a shuffled order.
        for (const r of [...Array(rows).keys()].reverse()) {
          await manager.pullCache(new CacheKey(clusterId, 100 * k + r), target, r + 1);
        }
        for (let t = 0; t < 2; t++) {
          const [tensor] = await manager.getCacheTensors(target, t);
          const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.byteLength);
          assert.ok(bytes.subarray(0, row).every((b) => b === 0xEE), `kind ${k}: row 0 untouched`);
          assert.equal(
            firstMismatch(bytes, row, rows * row, seed, t, 0, 0),
            -1,
            `kind ${k}: every row where it belongs`,
          );
        }
        // Keys are consumed; by id and part of a row still works.
        await rejectsWithStatus(
          manager.pullCache(new CacheKey(clusterId, 100 * k), target, 0),
          LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
        );
        const part = await manager.allocateCache(new CacheDesc(2, [1, ...shape.slice(1)], dataType));
        for (let t = 0; t < 2; t++) kvBytes(decoder, part, t, 0).fill(0);
        const cacheId = BigInt((ready.cacheIds as string[])[k]);
        await manager.pullCache(new CacheKeyByIdAndIndex(clusterId, cacheId, rows - 1), part, 0, row / 2);
        assertRow(decoder, part, 0, seed, rows - 1, row / 2, [0]);
        await manager.deallocateCache(target);
        await manager.deallocateCache(part);
      }
      await rejectsWithStatus(
        manager.pullCache(
          new CacheKey(clusterId, 99n),
          await manager.allocateCache(new CacheDesc(1, [1, 8], DataType.DT_INT8)),
        ),
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      );
    } finally {
      await child.stop();
    }
  });

  test("a PROMPT killed before a pull: the DECODER gets an LLMException within its deadline", async () => {
    const clusterId = freshClusterId();
    const child = promptChild(clusterId, [{
      numTensors: 1,
      shape: [1, 64],
      dataType: DataType.DT_UINT8,
      seed: 1,
      keys: [[1, 0]],
    }]);
    const ready = await child.next();
    await using decoder = await openInstance({ syncKvTimeout: 3000 });
    await link(decoder, clusterId, ready.port as number);
    await child.kill();
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8));
    const start = performance.now();
    const err = await decoder.kvCacheManager.pullCache(new CacheKey(clusterId, 1n), target).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(
      err instanceof LLMException &&
        (err.statusCode === LLMStatusCode.LLM_LINK_FAILED || err.statusCode === LLMStatusCode.LLM_NOT_YET_LINK),
      `expected LINK_FAILED or NOT_YET_LINK, got ${err}`,
    );
    assert.ok(performance.now() - start < 3000 + 500);
    assert.equal((await decoder.kvCacheManager.getCacheTensors(target))[0].byteLength, 64, "the DECODER keeps working");
  });

  test("a PROMPT killed during a pull: LINK_FAILED, no hang, no crash", async () => {
    const clusterId = freshClusterId();
    const size = 256 << 20;
    const child = promptChild(
      clusterId,
      [{ numTensors: 1, shape: [1, size], dataType: DataType.DT_UINT8, seed: 9 }],
      size + (1 << 20),
    );
    const ready = await child.next();
    await using decoder = await openInstance({ poolBytes: size + (1 << 20), syncKvTimeout: 60_000 });
    await link(decoder, clusterId, ready.port as number);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
    const key = new CacheKeyByIdAndIndex(clusterId, BigInt((ready.cacheIds as string[])[0]), 0);
    const pulling = decoder.kvCacheManager.pullCache(key, target).then(() => "resolved", (err) => err);
    await sleep(5);
    await child.kill();
    const outcome = await pulling;
    assert.equal(outcome?.statusCode, LLMStatusCode.LLM_LINK_FAILED, `expected LINK_FAILED, got ${outcome}`);
    const small = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8));
    assert.equal((await decoder.kvCacheManager.getCacheTensors(small))[0].byteLength, 8, "the DECODER keeps working");
  });

  test("a DECODER killed during a pull: the PROMPT keeps serving others", async () => {
    const size = 128 << 20;
    await using prompt = await openPrompt({ poolBytes: 2 * size + (1 << 20) });
    const manager = prompt.kvCacheManager;
    const big = await manager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
    fillCache(prompt, big, 4);
    const usage = manager.poolUsage()[0].usedBytes;
    const child = startChild("decoder_process.ts", {
      clusterId: String(freshClusterId()),
      promptClusterId: String(prompt.clusterId),
      port: prompt.listenPort,
      numTensors: 1,
      shape: [1, size],
      dataType: DataType.DT_UINT8,
      cacheId: String(big.cacheId),
      poolBytes: size + (1 << 20),
    });
    assert.equal((await child.next()).pulling, true);
    await sleep(30);
    await child.kill();
    // Another DECODER is served, and the dead one's pins were dropped.
    await using decoder = await openInstance();
    await link(decoder, prompt.clusterId, prompt.listenPort);
    const key = new CacheKey(prompt.clusterId, 1n);
    const small = await manager.allocateCache(new CacheDesc(1, [1, 256], DataType.DT_UINT8), [key]);
    fillCache(prompt, small, 6);
    const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 256], DataType.DT_UINT8));
    await decoder.kvCacheManager.pullCache(key, target);
    assertRow(decoder, target, 0, 6, 0, 256, [0]);
    await manager.deallocateCache(small);
    await manager.deallocateCache(big);
    for (let i = 0; i < 50 && manager.poolUsage()[0].usedBytes !== 0; i++) await sleep(20);
    assert.equal(manager.poolUsage()[0].usedBytes, 0, `pins left behind (usage was ${usage})`);
  });

  test("a PROMPT restarted after a crash takes its cluster id back", async () => {
    const clusterId = freshClusterId();
    const caches = [{ numTensors: 1, shape: [2, 32], dataType: DataType.DT_INT32, seed: 2, keys: [[5, 0]] }];
    const first = promptChild(clusterId, caches);
    await first.next();
    await first.kill();
    const second = promptChild(clusterId, caches);
    try {
      const ready = await second.next();
      assert.equal(ready.ready, true);
      await using decoder = await openInstance();
      await link(decoder, clusterId, ready.port as number);
      const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [2, 32], DataType.DT_INT32));
      await decoder.kvCacheManager.pullCache(new CacheKey(clusterId, 5n), target, 1);
      assertRow(decoder, target, 1, 2, 0, 128, [0]);
    } finally {
      await second.stop();
    }
  });
});
