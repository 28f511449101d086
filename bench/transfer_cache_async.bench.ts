// Benchmark of CacheManager.transferCacheAsync (layer-wise push, issue 12):
// 32 layers, a synchronizer that releases one layer every few milliseconds
// (a model's forward pass), PROMPT and DECODER in separate processes. Goal:
// the transfer is finished within the last release plus 1.5x one layer's
// transfer time, measured in the same run. Runs unchanged on Bun, Deno and
// Node:
//
//   ./node_modules/.bin/bun bench/transfer_cache_async.bench.ts
//   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-run \
//       bench/transfer_cache_async.bench.ts
//   node --import ./test/support/register.mjs bench/transfer_cache_async.bench.ts
//
// Optional argument: JSON {"layerBytes": bytes of one layer (K + V), "intervalMs",
// "runs", "registered"}; defaults 2 MiB, 4 ms, 15, false. With "registered": true
// the PROMPT's cache is memory it registered (ArrayBuffers), so every layer goes
// through the link's socket instead of the shared mapping.
//
// Processes: this one is the DECODER (llm.EnableRemoteCacheAccessible=1); the
// PROMPT is test/support/push_prompt_process.ts, holding a blocks cache of 64
// tensors (32 layers of K and V) named by a BlocksCacheKey, in its pool. Each
// layer is pushed into it through the shared read-write mapping of its pool.
//
// Measurements (interleaved, one of each per round, `runs` rounds):
//   (a) one layer: pushBlocks of layer 16 alone (every block, both tensors),
//       the same native call transferCacheAsync makes per layer;
//   (b) the transfer: transferCacheAsync over every layer, with a synchronizer
//       that resolves layer i at start + i x intervalMs; "tail" is the time
//       from the last release (layer 31's synchronizeLayer resolving) to
//       task.synchronize() resolving.
// Reported: the medians, and the tail against 1.5 x (a).
import process from "node:process";
import {
  BlocksCacheKey,
  CacheDesc,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  TransferWithCacheKeyConfig,
} from "../mod.ts";
import { startChild } from "../test/support/children.ts";

const args = JSON.parse(
  process.argv.length > 2 && process.argv[process.argv.length - 1].startsWith("{")
    ? process.argv[process.argv.length - 1]
    : "{}",
) as { layerBytes?: number; intervalMs?: number; runs?: number; registered?: boolean };
const LAYERS = 32;
const BLOCKS = 16;
const layerBytes = args.layerBytes ?? 2 << 20;
const intervalMs = args.intervalMs ?? 4;
const runs = args.runs ?? 15;
const registered = args.registered ?? false;
const blockBytes = layerBytes / 2 / BLOCKS;
const cacheBytes = layerBytes * LAYERS;
const poolBytes = cacheBytes + (4 << 20);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const clusterId = (BigInt(process.pid) << 20n) + 7n;
const child = startChild("push_prompt_process.ts", {
  clusterId: String(clusterId),
  remote: true,
  poolBytes,
  caches: [{
    numTensors: 2 * LAYERS,
    shape: [BLOCKS, blockBytes],
    dataType: DataType.DT_UINT8,
    blocksModelId: 0,
    registered,
  }],
});
try {
  const ready = await child.next();
  const decoder = new LLMDataDist(LLMRole.DECODER, clusterId + 1n);
  await decoder.init({
    "llm.EnableCacheManager": "1",
    "llm.EnableRemoteCacheAccessible": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: poolBytes }),
    "llm.SyncKvCacheWaitTime": "30000",
  });
  const m = decoder.cacheManager;
  const src = await m.allocateBlocksCache(new CacheDesc(2 * LAYERS, [BLOCKS, blockBytes], DataType.DT_UINT8));
  for (let t = 0; t < 2 * LAYERS; t++) (m.getCacheTensorViews(src, t)[0].data as Uint8Array).fill(t + 1);
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", ready.port as number);
  const [status] = await decoder.linkClusters([cluster], 5000);
  if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: ${status}`);
  const key = new BlocksCacheKey(clusterId);
  const all = Array.from({ length: BLOCKS }, (_, i) => i);

  const oneLayer = async (): Promise<number> => {
    const start = performance.now();
    await m.pushBlocks(key, src, all, all, { srcLayerRange: [16, 17], dstLayerRange: [16, 17] });
    return performance.now() - start;
  };
  const transfer = async (): Promise<{ tail: number; total: number }> => {
    let lastRelease = 0;
    const start = performance.now();
    const synchronizer = {
      async synchronizeLayer(layer: number) {
        const due = start + layer * intervalMs - performance.now();
        if (due > 0) await sleep(due);
        if (layer === LAYERS - 1) lastRelease = performance.now();
        return true;
      },
    };
    const task = m.transferCacheAsync(
      src,
      synchronizer,
      [
        new TransferWithCacheKeyConfig(key, [0, LAYERS], [0, LAYERS]),
      ],
      all,
      all,
    );
    const result = await task.synchronize();
    const end = performance.now();
    if (result !== LLMStatusCode.LLM_SUCCESS) throw new Error(`transfer failed: ${result}`);
    return { tail: end - lastRelease, total: end - start };
  };

  // Warm-up: every page of both caches touched, the code paths hot.
  for (let i = 0; i < 3; i++) {
    await oneLayer();
    await transfer();
  }
  const layerTimes: number[] = [], tails: number[] = [], totals: number[] = [];
  for (let r = 0; r < runs; r++) {
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const which of order) {
      if (which === 0) layerTimes.push(await oneLayer());
      else {
        const { tail, total } = await transfer();
        tails.push(tail);
        totals.push(total);
      }
    }
  }
  const runtime = "Bun" in globalThis ? "bun" : "Deno" in globalThis ? "deno" : "node";
  const layer = median(layerTimes), tail = median(tails), total = median(totals);
  const goal = 1.5 * layer;
  console.log(
    `transferCacheAsync on ${runtime}: ${LAYERS} layers of ${(layerBytes / 2 ** 20).toFixed(2)} MiB, ` +
      `one released every ${intervalMs} ms, into ${
        registered ? "registered memory (socket)" : "the pool (mapping)"
      }, ` +
      `${runs} runs (medians)`,
  );
  console.log(`  one layer alone (pushBlocks):          ${layer.toFixed(3)} ms`);
  console.log(`  last release -> task finished (tail):   ${tail.toFixed(3)} ms (max ${Math.max(...tails).toFixed(3)})`);
  console.log(
    `  whole transfer:                         ${total.toFixed(3)} ms (releases alone: ${
      ((LAYERS - 1) * intervalMs).toFixed(0)
    } ms)`,
  );
  console.log(
    `  goal: tail <= 1.5 x one layer = ${goal.toFixed(3)} ms: ${tail <= goal ? "met" : "NOT met"} (tail = ${
      (tail / layer).toFixed(2)
    } x one layer)`,
  );
  await decoder.unlinkClusters([cluster], 5000);
  decoder.finalize();
} finally {
  await child.stop();
}
