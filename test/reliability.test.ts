// Reliability: a stress across two instances, leaks over many cycles, caches
// lost to the garbage collector, and faults (deadlines, aborts) in every kind
// of cache call. The long versions are bench/stress_long.ts.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import process from "node:process";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  type KvCache,
  LLMClusterInfo,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { freshClusterId, openInstance, rejectsWithStatus, sleep } from "./helpers.ts";
import { fillPattern, firstMismatch } from "./support/pattern.ts";
import { runStress } from "./support/stress.ts";

function rss(): number {
  return process.memoryUsage().rss;
}

/**
 * Collects garbage, lets the event loop turn (Node frees the native side of
 * collected external ArrayBuffers, i.e. koffi views, in a later setImmediate),
 * and collects again.
 */
async function settle(): Promise<void> {
  collectGarbage();
  await sleep(10);
  collectGarbage();
}

/** Runs the garbage collector where the runtime lets a program ask for it. */
function collectGarbage(): boolean {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else if (g.gc) g.gc();
  else return false;
  return true;
}

async function linkedPair(poolBytes = 64 << 20, syncKvTimeout = 5000) {
  const prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
  await prompt.init({
    "llm.listenIpInfo": "127.0.0.1:0",
    "ge.flowGraphMemMaxSize": String(poolBytes),
    "llm.SyncKvCacheWaitTime": String(syncKvTimeout),
  });
  const decoder = await openInstance({ poolBytes, syncKvTimeout });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = prompt.clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
  assert.equal((await decoder.linkClusters([cluster]))[0], LLMStatusCode.LLM_SUCCESS);
  return { prompt, decoder };
}

async function waitForZero(dd: LLMDataDist): Promise<number[]> {
  // Pulls release their pins and keys at the PROMPT without a round trip: allow a moment.
  let used = dd.kvCacheManager.poolUsage().map((p) => p.usedBytes);
  for (let i = 0; i < 100 && used.some((u) => u !== 0); i++) {
    await sleep(20);
    used = dd.kvCacheManager.poolUsage().map((p) => p.usedBytes);
  }
  return used;
}

describe("stress", { timeout: 300_000 }, () => {
  test("concurrent allocate/read/copy/pull/deallocate across two instances: all settle, nothing mixed up, pools back to zero", async () => {
    const { prompt, decoder } = await linkedPair();
    try {
      const result = await runStress(prompt, decoder, { workers: 12, rounds: 15, seed: 7 });
      console.log(
        `stress: ${result.operations} operations by ${result.workers} concurrent workers in ${result.ms.toFixed(0)} ms`,
      );
      assert.equal(result.mismatches, 0);
      assert.deepEqual(await waitForZero(prompt), [0]);
      assert.deepEqual(await waitForZero(decoder), [0]);
    } finally {
      decoder.finalize();
      prompt.finalize();
    }
  });
});

describe("leaks", { timeout: 300_000 }, () => {
  test("allocate/read/free cycles: resident memory is flat after warm-up", async () => {
    await using dd = await openInstance({ poolBytes: 16 << 20 });
    const manager = dd.kvCacheManager;
    const desc = new CacheDesc(2, [4, 64], DataType.DT_FLOAT16);
    const cycle = async (i: number) => {
      const cache = await manager.allocateCache(desc);
      (manager.getCacheTensorViews(cache, i & 1)[0].data as Uint16Array)[0] = i & 0xFFFF;
      const [tensor] = await manager.getCacheTensors(cache, i & 1);
      assert.equal(tensor.data[0], i & 0xFFFF);
      await manager.deallocateCache(cache);
    };
    const warmUp = 5_000;
    const window = 10_000;
    // Let the event loop turn now and then, as any program does: Node frees
    // collected koffi views (external ArrayBuffers) only in a later setImmediate.
    const run = async (count: number) => {
      for (let i = 0; i < count; i++) {
        await cycle(i);
        if (i % 1000 === 999) await sleep(0);
      }
    };
    await run(warmUp);
    // Three windows of cycles, RSS after each: the engines may still size
    // their heaps in the first (V8 doubles its young generation up to a cap);
    // a leak grows every window alike.
    const samples: number[] = [];
    for (let w = 0; w <= 3; w++) {
      if (w > 0) await run(window);
      await settle();
      samples.push(rss());
    }
    const mib = samples.map((b) => (b / 2 ** 20).toFixed(1));
    console.log(`leaks: RSS after ${warmUp} warm-up cycles and each ${window} more: ${mib.join(" → ")} MiB`);
    // A leak grows every window alike; noise (a heap resized once) does not:
    // the smaller growth of the last two windows is the leak's.
    const growth = Math.min(samples[2] - samples[1], samples[3] - samples[2]) / 2 ** 20;
    // A leak of 300 bytes per cycle would add 3 MiB to every window.
    assert.ok(growth < 3, `resident memory grew ${growth.toFixed(2)} MiB in each of the last windows (${mib})`);
    assert.deepEqual(manager.poolUsage().map((p) => p.usedBytes), [0]);
  });

  test("a cache whose handle is garbage-collected is reported, and finalize frees it with a warning naming it", async () => {
    const dd = await openInstance();
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    try {
      let forgottenId = 0n;
      await (async () => {
        const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [4096], DataType.DT_UINT8));
        forgottenId = cache.cacheId;
      })();
      const kept = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8));
      for (let i = 0; i < 50 && warnings.length === 0; i++) {
        if (!collectGarbage()) break;
        await sleep(10);
      }
      if (warnings.length === 0 && !collectGarbage()) return; // no way to force a collection here
      assert.match(warnings[0], new RegExp(`KvCache ${forgottenId} was garbage-collected`));
      assert.ok(dd.kvCacheManager.poolUsage()[0].usedBytes >= 4096, "its memory stays allocated");
      await dd.kvCacheManager.deallocateCache(kept);
      dd.finalize();
      assert.match(warnings.at(-1)!, new RegExp(`finalize\\(\\) freed 1 cache\\(s\\) .*: ${forgottenId}$`));
    } finally {
      console.warn = warn;
      dd.finalize();
    }
  });

  test("cache-manager handles: only one dropped while allocated is reported, whenever the others were released", async () => {
    // Caches join the registry that reports them on the next turn of the event
    // loop (src/engine.ts, Engine.track): released in the same turn, released
    // after it (deallocated, or unregistered by id), and one dropped allocated.
    const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": JSON.stringify({ memory_size: 1 << 20 }) });
    const manager = dd.cacheManager;
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
    const desc = new CacheDesc(1, [4, 1024], DataType.DT_UINT8);
    const ids: bigint[] = [];
    try {
      await (async () => {
        const sameTurn = await manager.allocateBlocksCache(desc);
        await manager.deallocateBlocksCache(sameTurn);
        const later = await manager.allocateBlocksCache(desc);
        const memory = new Uint8Array(64);
        const registered = await manager.registerCache(new CacheDesc(1, [64], DataType.DT_UINT8), [memory]);
        const dropped = await manager.allocateBlocksCache(desc);
        ids.push(sameTurn.cacheId, later.cacheId, registered.cacheId, dropped.cacheId);
        await sleep(5); // the registry takes the three still live
        await manager.deallocateBlocksCache(later);
        await manager.unregisterCache(registered.cacheId);
      })();
      for (let i = 0; i < 50 && warnings.length === 0; i++) {
        if (!collectGarbage()) break;
        await sleep(10);
      }
      if (warnings.length === 0 && !collectGarbage()) return; // no way to force a collection here
      for (let i = 0; i < 5; i++) { // the others, had they been reported, would be by now
        collectGarbage();
        await sleep(10);
      }
      assert.deepEqual(warnings, [
        `llm-datadist: KvCache ${
          ids[3]
        } was garbage-collected without deallocateCache(); its memory stays allocated until finalize()`,
      ]);
    } finally {
      console.warn = warn;
      dd.finalize();
    }
  });
});

describe("faults in every kind of call", { timeout: 300_000 }, () => {
  // An instance whose lock is held by a long pull-free read, so that any call
  // queued behind it is "waiting"; the read is a big tensor copied off-thread.
  async function busy(syncKvTimeout: number) {
    const dd = await openInstance({ poolBytes: 600 << 20, syncKvTimeout });
    const big = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [512 << 20], DataType.DT_UINT8));
    const small = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8));
    return { dd, big, small };
  }

  test("abort while waiting: every cache call rejects with the reason and the instance keeps working", async () => {
    const { dd, big, small } = await busy(60_000);
    try {
      const manager = dd.kvCacheManager;
      const holder = new AbortController();
      const running = manager.getCacheTensors(big, 0, { signal: holder.signal }).catch((e) => e);
      const reason = new Error("gave up");
      const signal = AbortSignal.abort(reason);
      const queued = (s: AbortSignal) => [
        manager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8), undefined, { signal: s }),
        manager.deallocateCache(small, { signal: s }),
        manager.getCacheTensors(small, 0, { signal: s }),
        manager.copyCache(small, small, 1, 0, 0, -1, { signal: s }),
        manager.pullCache(new CacheKey(1n, 1n), small, 0, -1, { signal: s }),
        manager.removeCacheKey(new CacheKey(1n, 1n), { signal: s }),
      ];
      for (const call of queued(signal)) await assert.rejects(call, reason);
      const later = new AbortController();
      const waiting = queued(later.signal);
      later.abort(reason);
      for (const call of waiting) await assert.rejects(call, reason);
      holder.abort();
      assert.equal((await running).name, "AbortError");
      assert.equal((await manager.getCacheTensors(small, 0))[0].byteLength, 128, "still works");
    } finally {
      dd.finalize();
    }
  });

  test("deadline while waiting: every cache call rejects with LLM_WAIT_PROCESS_TIMEOUT", async () => {
    const timeoutMs = 100;
    await using dd = await openInstance({ syncKvTimeout: timeoutMs });
    const manager = dd.kvCacheManager;
    const small = await manager.allocateCache(new CacheDesc(1, [2, 64], DataType.DT_UINT8));
    // Hold the instance's lock for an exact span, through its own mutex: what
    // is under test is the queued calls' deadlines, not a copy's speed.
    const { runExclusive } = await import("../src/operation.ts");
    const { cacheRecord } = await import("../src/kv_cache.ts");
    const { mutex } = cacheRecord(small).engine;
    let release!: () => void;
    const held = runExclusive(mutex, "holder", timeoutMs, undefined, () => new Promise<void>((r) => (release = r)));
    const start = performance.now();
    const calls = [
      manager.allocateCache(new CacheDesc(1, [8], DataType.DT_UINT8)),
      manager.deallocateCache(small),
      manager.getCacheTensors(small, 0),
      manager.copyCache(small, small, 1, 0),
      manager.pullCache(new CacheKey(1n, 1n), small),
      manager.removeCacheKey(new CacheKey(1n, 1n)),
    ].map((p) => p.then(() => undefined, (e) => e));
    const outcomes = await Promise.all(calls);
    const elapsed = performance.now() - start;
    release();
    await held;
    for (const outcome of outcomes) {
      assert.equal(outcome?.statusCode, LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT, String(outcome));
    }
    assert.ok(elapsed >= timeoutMs - 2 && elapsed < timeoutMs + 500, `timed out after ${elapsed.toFixed(0)} ms`);
    assert.equal((await manager.getCacheTensors(small, 0))[0].byteLength, 128, "still works");
  });

  test("deadline while running: reads, copies and pulls stop with LLM_WAIT_PROCESS_TIMEOUT; the instances keep working", async () => {
    const size = 256 << 20;
    const { prompt, decoder } = await linkedPair(2 * size + (8 << 20), 30);
    try {
      const source = await prompt.kvCacheManager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
      const target = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
      const other = await prompt.kvCacheManager.allocateCache(new CacheDesc(1, [1, 1024], DataType.DT_UINT8));
      const timeout = LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT;
      await rejectsWithStatus(decoder.kvCacheManager.getCacheTensors(target, 0), timeout);
      await rejectsWithStatus(
        decoder.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 0), target),
        timeout,
      );
      const twin = await prompt.kvCacheManager.allocateCache(new CacheDesc(1, [1, size], DataType.DT_UINT8));
      await rejectsWithStatus(prompt.kvCacheManager.copyCache(twin, source), timeout);
      // Still working: small operations on both sides, and a small pull.
      const small = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [1, 1024], DataType.DT_UINT8));
      const view = prompt.kvCacheManager.getCacheTensorViews(other, 0)[0].data as Uint8Array;
      fillPattern(view, 3, 0, 0);
      await decoder.kvCacheManager.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, other.cacheId, 0), small);
      const [got] = await decoder.kvCacheManager.getCacheTensors(small, 0);
      assert.equal(firstMismatch(got.data as Uint8Array, 0, 1024, 3, 0, 0, 0), -1);
    } finally {
      decoder.finalize();
      prompt.finalize();
    }
  });

  test("a name squatted in /dev/shm does not keep a PROMPT from starting (pools have no names since issue 10)", async () => {
    // Before issue 10 a pool was the shared-memory object /dev/shm/llmdd.<id>.<device>,
    // and a directory of that name (made by anyone) made init fail. Pools are now
    // unnamed sealed memory passed to DECODERs as descriptors: nothing to squat.
    // (Made with mkdir, not node:fs: Deno asks for --allow-all to touch /dev.)
    const clusterId = freshClusterId();
    const blocker = `/dev/shm/llmdd.${clusterId}.0`;
    execFileSync("mkdir", [blocker]);
    try {
      await using prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
      await prompt.init({});
      assert.equal(prompt.kvCacheManager.isInitialized(), true);
    } finally {
      execFileSync("rmdir", [blocker]);
    }
  });

  test("a full pool: LLM_DEVICE_OUT_OF_MEMORY, then room again once caches are freed", async () => {
    await using dd = await openInstance({ poolBytes: 1 << 20 });
    const manager = dd.kvCacheManager;
    const caches: KvCache[] = [];
    let err: unknown;
    try {
      for (;;) caches.push(await manager.allocateCache(new CacheDesc(1, [100_000], DataType.DT_UINT8)));
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof LLMException && err.statusCode === LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY, String(err));
    assert.ok(caches.length >= 9);
    for (const cache of caches) await manager.deallocateCache(cache);
    assert.equal(manager.poolUsage()[0].usedBytes, 0);
    await manager.allocateCache(new CacheDesc(1, [900_000], DataType.DT_UINT8));
  });
});
