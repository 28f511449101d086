// Benchmarks of KvCacheManager.pullCache (prefill → decode across two
// processes) against its floors: a plain memcpy of the same bytes, and a
// 64-byte TCP round trip on loopback. Runs unchanged on Bun, Deno and Node:
//
//   ./node_modules/.bin/bun bench/pull_cache.bench.ts
//   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-run --allow-net=127.0.0.1 \
//       --allow-sys bench/pull_cache.bench.ts
//   node --import ./test/support/register.mjs bench/pull_cache.bench.ts
//
// LLMDD_LIBRARY=/path/to/libllmdd_host.so runs another build of the library;
// the child processes inherit it.
//
// Processes: this one is the DECODER. It starts two children on the same
// runtime: the PROMPT (test/support/prompt_process.ts, as the two-process
// tests and the demo do), which holds one cache per size, each filled with the
// test pattern; and a TCP echo server (bench/support/echo_process.ts), the
// other end of the round-trip floor.
//
// Measurements (all in one run):
//   (a) pullCache of one row of 4 KiB, 64 KiB, 1 MiB, 16 MiB, 256 MiB: one
//       DT_UINT8 tensor per cache, batch 1, so the row is the pulled size;
//       pulled by CacheKeyByIdAndIndex (not consumed: the same row is pulled
//       again and again into the same DECODER cache, whose pages are resident
//       after the warm-up). Floor: a plain memcpy of the same size, that is
//       JavaScript's dst.set(src) between two Uint8Arrays of that size, both
//       written before timing (resident). Goal: >= 85 % of the memcpy's
//       bandwidth from 1 MiB up.
//       Reading the floor: glibc's memcpy switches to non-temporal stores
//       within one call of at least x86.cpu_features.non_temporal_threshold
//       (`ld.so --list-diagnostics`; 240 MiB on the 2-core bench machine), so
//       the 256 MiB floor streams while a copy made in 1 MiB chunks (as the
//       library's) does not; up to 16 MiB both sides use ordinary stores, and
//       at 1 MiB both copy within the last-level cache.
//   (b) a 64-byte round trip on 127.0.0.1 with node:net (client here, server
//       in the echo child, TCP_NODELAY on both ends). Goal: a 4 KiB pull
//       within 3x that round trip.
//   (c) context — the same pull through the layers under pullCache, to show
//       where its time goes:
//         - runLong: runLong (src/long_call.ts) directly (job, hand-off, Operation,
//           deadline timer), without the mutex and pullCache's validation;
//         - callLong: llmdd_job_create + the shim's callLong + llmdd_job_release
//           only (the job and the thread hand-off);
//         - native pull, job 0: llmdd_cache_pull run synchronously on the
//           JavaScript thread: the native-only path (LOOKUP → answer → copy →
//           DONE, no JavaScript and no thread hand-off inside);
//         - hand-off alone: callLong of a 64-byte llmdd_cache_read of a local
//           cache (job + hand-off, no network);
//         - native local copy, job 0: llmdd_cache_copy between two caches of
//           the DECODER's own pool (the library's chunked memcpy, no network,
//           no shared memory).
//
// Method: a timed loop, not mitata. mitata does await async functions on all
// three runtimes, but it runs each benchmark to completion before the next;
// on this shared 2-core machine the noise drifts within seconds, and every
// number here is a ratio of two measurements. The loop instead interleaves all
// functions of one size, one call each per round, in an order that alternates
// (A B C, C B A, ...), so both sides of each ratio sample the same noise.
// Warm-up rounds first, then N measured rounds; each reported time is the
// median of N single calls.

import process from "node:process";
import {
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  type KvCache,
  type KvCacheManager,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { cacheRecord } from "../src/kv_cache.ts";
import { runLong } from "../src/long_call.ts";
import { KEY_BY_ID, WHOLE_ROW } from "../src/native/symbols.ts";
import { Operation } from "../src/operation.ts";
import { type Child, startChild } from "../test/support/children.ts";
import { patternByte } from "../test/support/pattern.ts";
import { bytesOf } from "./support/bytes.ts";
import { now } from "./support/clock.ts";
import { ECHO_BYTES, echoClient, startEcho } from "./support/echo.ts";
import { gbps, ratio, yes } from "./support/format.ts";
import { size, type Stats, time, timedLoop } from "./support/loop.ts";
import { cpuName, loadAverage, platformName, runtimeName } from "./support/machine.ts";

// ---------------------------------------------------------------- settings

const KiB = 1024;
const MiB = 1024 * KiB;
/** Per size: warm-up rounds, then measured rounds (one call of each function per round). */
const PLAN = [
  { bytes: 4 * KiB, warmup: 300, iterations: 4000 },
  { bytes: 64 * KiB, warmup: 200, iterations: 2000 },
  { bytes: 1 * MiB, warmup: 50, iterations: 1000 },
  { bytes: 16 * MiB, warmup: 10, iterations: 200 },
  { bytes: 256 * MiB, warmup: 3, iterations: 50 },
];
const SIZES = PLAN.map((p) => p.bytes);
const SMALLEST = SIZES[0];
/** Goal (a) applies from this size up. */
const BANDWIDTH_GOAL_FROM = 1 * MiB;
const BANDWIDTH_GOAL = 0.85;
const RTT_GOAL = 3;
const HANDOFF_BYTES = 64;
/** Sum of the rows, with room for alignment. */
const ROWS_BYTES = SIZES.reduce((sum, b) => sum + b, 0);
/** The PROMPT's pool: one cache per size. */
const PROMPT_POOL_BYTES = ROWS_BYTES + 16 * MiB;
/** The DECODER's pool: per size the target of the pulls and a local source, plus the hand-off cache. */
const DECODER_POOL_BYTES = 2 * ROWS_BYTES + 16 * MiB;
/** Generous, so a 256 MiB pull on a loaded machine is not a timeout. */
const SYNC_KV_TIMEOUT_MS = 60_000;
/** Cluster ids of this run's two instances: distinct per run, so parallel runs do not collide. */
const PROMPT_CLUSTER = 0xB3_0000_0000n + BigInt(process.pid);
const DECODER_CLUSTER = 0xB4_0000_0000n + BigInt(process.pid);

// ----------------------------------------------------------------- helpers

/** The smallest step `now` takes (a few tries): what the clock can resolve. */
function clockStep(): number {
  let best = Infinity;
  for (let i = 0; i < 50; i++) {
    const t0 = now();
    let t1 = now();
    while (t1 === t0) t1 = now();
    best = Math.min(best, t1 - t0);
  }
  return best;
}

// ------------------------------------------------------------- the DECODER

interface SizeSetup {
  bytes: number;
  /** The PROMPT's cache holding this row. */
  remoteCacheId: bigint;
  /** The pattern's seed in the PROMPT. */
  seed: number;
  key: CacheKeyByIdAndIndex;
  /** The DECODER's cache pulled into. */
  target: KvCache;
  /** A local cache of the same desc, the source of the native local copy. */
  local: KvCache;
  /** The plain memcpy's two buffers. */
  src: Uint8Array;
  dst: Uint8Array;
}

function descOf(bytes: number): CacheDesc {
  return new CacheDesc(1, [1, bytes], DataType.DT_UINT8); // one tensor, batch 1: the row is the whole tensor
}

/** Writes every page (one byte per 4 KiB plus both ends). */
function touch(bytes: Uint8Array, value: number): void {
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = value;
  bytes[bytes.length - 1] = value;
}

/** Checks `bytes` against the PROMPT's pattern: every byte up to 64 KiB, then a sample. */
function verifyRow(bytes: Uint8Array, seed: number): void {
  const step = bytes.length <= 64 * KiB ? 1 : 4093;
  for (let i = 0; i < bytes.length; i += step) {
    if (bytes[i] !== patternByte(seed, 0, 0, i)) {
      throw new Error(`byte ${i} of the pulled ${size(bytes.length)} row differs from the PROMPT's`);
    }
  }
  const last = bytes.length - 1;
  if (bytes[last] !== patternByte(seed, 0, 0, last)) throw new Error(`last byte of ${size(bytes.length)} differs`);
}

async function main(): Promise<void> {
  const startedAt = now();
  // The PROMPT: one cache per size, no keys (pulled by id and index).
  const prompt: Child = startChild("prompt_process.ts", {
    clusterId: String(PROMPT_CLUSTER),
    poolBytes: PROMPT_POOL_BYTES,
    caches: SIZES.map((bytes, i) => ({ numTensors: 1, shape: [1, bytes], dataType: DataType.DT_UINT8, seed: i + 1 })),
  });
  const echo = startEcho();
  const dd = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER);
  let client: Awaited<ReturnType<typeof echoClient>> | undefined;
  const cluster = new LLMClusterInfo();
  try {
    await dd.init({
      "ge.exec.deviceId": "0",
      "ge.flowGraphMemMaxSize": String(DECODER_POOL_BYTES),
      "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT_MS),
    });
    const manager: KvCacheManager = dd.kvCacheManager;
    const ready = await prompt.next() as { port: number; cacheIds: string[]; pid: number };
    const echoPort = await echo.port;
    client = await echoClient(echoPort);

    cluster.remoteClusterId = PROMPT_CLUSTER;
    cluster.remoteRoleType = LLMRole.PROMPT;
    cluster.appendRemoteIpInfo("127.0.0.1", ready.port);
    const [status] = await dd.linkClusters([cluster], 5000);
    if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: 0x${status.toString(16)}`);

    const setups: SizeSetup[] = [];
    for (const [i, bytes] of SIZES.entries()) {
      const target = await manager.allocateCache(descOf(bytes));
      const local = await manager.allocateCache(descOf(bytes));
      touch(bytesOf(manager.getCacheTensorViews(local, 0)[0].data), 0x77);
      const src = new Uint8Array(bytes);
      const dst = new Uint8Array(bytes);
      touch(src, 0x11);
      touch(dst, 0x22);
      const remoteCacheId = BigInt(ready.cacheIds[i]);
      setups.push({
        bytes,
        remoteCacheId,
        seed: i + 1,
        key: new CacheKeyByIdAndIndex(PROMPT_CLUSTER, remoteCacheId, 0),
        target,
        local,
        src,
        dst,
      });
    }
    const handoffCache = await manager.allocateCache(descOf(HANDOFF_BYTES));

    // Before timing: each pull lands the PROMPT's bytes in a zeroed target.
    for (const s of setups) {
      const view = bytesOf(manager.getCacheTensorViews(s.target, 0)[0].data);
      view.fill(0);
      await manager.pullCache(s.key, s.target, 0);
      verifyRow(view, s.seed);
    }

    const record = cacheRecord(handoffCache);
    const { lib, handle } = record.engine;
    const jobOut = new BigUint64Array(1);
    const handoffOut = new Uint8Array(HANDOFF_BYTES);

    /** The functions measured for one size. */
    const functionsFor = (s: SizeSetup): Record<string, () => unknown> => {
      const targetId = cacheRecord(s.target).cacheId;
      const localId = cacheRecord(s.local).cacheId;
      const n = BigInt(s.bytes);
      const pullArgs = [handle, targetId, KEY_BY_ID, PROMPT_CLUSTER, s.remoteCacheId, 0n, 0, WHOLE_ROW] as const;
      const fns: Record<string, () => unknown> = {
        pullCache: () => manager.pullCache(s.key, s.target, 0),
        memcpy: () => s.dst.set(s.src),
        "native pull, job 0": () => {
          const status = lib.fn.llmdd_cache_pull(...pullArgs, 0n);
          if (status !== 0) throw lib.error(status, "native pull");
        },
        "native local copy, job 0": () => {
          const status = lib.fn.llmdd_cache_copy(handle, targetId, localId, 0n, 0n, n, 0n);
          if (status !== 0) throw lib.error(status, "native local copy");
        },
      };
      if (s.bytes !== SMALLEST) return fns;
      return {
        ...fns,
        "echo 64 B": () => client!.roundTrip(),
        runLong: () =>
          runLong(
            lib,
            "llmdd_cache_pull",
            [...pullArgs],
            new Operation("bench", SYNC_KV_TIMEOUT_MS, undefined),
            "pull",
          ),
        callLong: async () => {
          lib.check(lib.fn.llmdd_job_create(SYNC_KV_TIMEOUT_MS, lib.raw.doneCallback, jobOut), "job");
          const job = jobOut[0];
          const status = await lib.raw.callLong("llmdd_cache_pull", [...pullArgs, job]);
          lib.fn.llmdd_job_release(job);
          if (status !== 0) throw lib.error(status, "callLong pull");
        },
        "hand-off alone": async () => {
          lib.check(lib.fn.llmdd_job_create(SYNC_KV_TIMEOUT_MS, lib.raw.doneCallback, jobOut), "job");
          const job = jobOut[0];
          const status = await lib.raw.callLong("llmdd_cache_read", [
            handle,
            record.cacheId,
            0,
            0,
            handoffOut,
            BigInt(HANDOFF_BYTES),
            job,
          ]);
          lib.fn.llmdd_job_release(job);
          if (status !== 0) throw lib.error(status, "hand-off read");
        },
      };
    };

    // ------------------------------------------------------ configuration

    const setupSeconds = (now() - startedAt) / 1e9;
    console.log("# pullCache benchmarks");
    console.log(`runtime:        ${runtimeName()} on ${platformName()}`);
    console.log(`cpu:            ${cpuName()}`);
    console.log(`load average:   ${loadAverage()} (at start)`);
    console.log(`clock:          smallest step ${time(clockStep())}`);
    console.log(`library:        ${lib.raw.path} (${lib.raw.runtime} shim)`);
    console.log(
      `processes:      DECODER = this one (pid ${process.pid}, cluster ${DECODER_CLUSTER}); PROMPT = child pid ` +
        `${ready.pid} running test/support/prompt_process.ts (cluster ${PROMPT_CLUSTER}, 127.0.0.1:${ready.port}); ` +
        `echo = child running bench/support/echo_process.ts (127.0.0.1:${echoPort}); all on this runtime`,
    );
    console.log(
      `pools:          PROMPT ${size(PROMPT_POOL_BYTES)} (shared memory), DECODER ${size(DECODER_POOL_BYTES)}; ` +
        `syncKvTimeout ${SYNC_KV_TIMEOUT_MS} ms`,
    );
    console.log(
      `caches:         per size one cache on each side: 1 tensor, DT_UINT8, shape [1, size] (batch 1, row = size); ` +
        `sizes ${SIZES.map(size).join(", ")}`,
    );
    console.log(
      "pull:           pullCache(CacheKeyByIdAndIndex(PROMPT, cacheId, 0), target, 0): the whole row, key not " +
        "consumed; the same DECODER target every time (resident after warm-up); verified against the PROMPT's " +
        "pattern before timing",
    );
    console.log(
      "memcpy floor:   plain memcpy = JavaScript dst.set(src) between two Uint8Arrays of the size, both written " +
        "before timing (resident), in this process",
    );
    console.log(
      `RTT floor:      ${ECHO_BYTES} B out and back over TCP on 127.0.0.1 with node:net, TCP_NODELAY; client in ` +
        "this process, server in the echo child",
    );
    console.log(
      "method:         timed loop (not mitata): per size, every function once per round in alternating order; " +
        `warm-up then measured rounds: ${
          PLAN.map((p) => `${size(p.bytes)} ${p.warmup}+${p.iterations}`).join(", ")
        }; ` +
        "median of single calls",
    );
    console.log(`setup:          ${setupSeconds.toFixed(1)} s (children started, PROMPT filled, linked, verified)`);
    console.log("");

    // ------------------------------------------------------- measurement

    const results = new Map<number, Record<string, Stats>>();
    const measureStart = now();
    for (const plan of PLAN) {
      const s = setups.find((x) => x.bytes === plan.bytes)!;
      const t0 = now();
      const r = await timedLoop(functionsFor(s), plan.warmup, plan.iterations);
      results.set(plan.bytes, r);
      console.log(`${size(plan.bytes)} (${((now() - t0) / 1e9).toFixed(1)} s):`);
      for (const [name, st] of Object.entries(r)) {
        const bw = name === "echo 64 B" || name === "hand-off alone" ? "" : `  ${gbps(plan.bytes, st.median)}`;
        console.log(
          `  ${name.padEnd(26)} median ${time(st.median).padStart(9)}${bw.padEnd(14)}  p10 ${time(st.p10)}  ` +
            `p90 ${time(st.p90)}  min ${time(st.min)}  (n=${st.n})`,
        );
      }
    }
    const measureSeconds = (now() - measureStart) / 1e9;

    // The target still holds the PROMPT's row after all the timed pulls (the
    // local copies overwrite it, so pull once more and check).
    for (const s of setups) {
      const view = bytesOf(manager.getCacheTensorViews(s.target, 0)[0].data);
      view.fill(0);
      await manager.pullCache(s.key, s.target, 0);
      verifyRow(view, s.seed);
    }

    // ------------------------------------------------------------- tables

    const med = (bytes: number, name: string) => results.get(bytes)?.[name]?.median ?? NaN;

    console.log("");
    console.log("## Native paths by size (medians per call; context for (a))");
    console.log("");
    console.log(
      "| row | pullCache | native pull, job 0 | pullCache − native pull | native local copy, job 0 | plain memcpy |",
    );
    console.log("|---|---|---|---|---|---|");
    for (const bytes of SIZES) {
      const pull = med(bytes, "pullCache");
      const native = med(bytes, "native pull, job 0");
      const local = med(bytes, "native local copy, job 0");
      const copy = med(bytes, "memcpy");
      console.log(
        `| ${size(bytes)} | ${time(pull)} (${gbps(bytes, pull)}) | ${time(native)} (${gbps(bytes, native)}) | ` +
          `${time(pull - native)} | ${time(local)} (${gbps(bytes, local)}) | ${time(copy)} (${gbps(bytes, copy)}) |`,
      );
    }

    const echoRtt = med(SMALLEST, "echo 64 B");
    const small = (name: string) => med(SMALLEST, name);
    console.log("");
    console.log(`## Where a ${size(SMALLEST)} pull's time goes (medians; differences of medians are indicative)`);
    console.log("");
    console.log("| path | median | − the row below | what the difference is |");
    console.log("|---|---|---|---|");
    const layers: [string, string, string][] = [
      ["pullCache", "pullCache", "argument checks, the FIFO mutex, Operation, liveRecord"],
      ["runLong", "runLong directly", "Operation's deadline timer, abort wiring, settle/promise wrapping"],
      ["callLong", "job create + callLong + job release", "the thread hand-off there and back (runtime's async FFI)"],
      [
        "native pull, job 0",
        "native pull on the JS thread (job 0)",
        "the native round trip: LOOKUP, answer, copy, DONE",
      ],
    ];
    for (const [i, [name, label, what]] of layers.entries()) {
      const below = layers[i + 1] ? small(layers[i + 1][0]) : 0;
      console.log(
        `| ${label} | ${time(small(name))} | ${time(small(name) - below)} | ${what} |`,
      );
    }
    console.log(
      `| hand-off alone: callLong of a ${HANDOFF_BYTES} B local read | ${time(small("hand-off alone"))} | — | ` +
        "job + hand-off with no network |",
    );
    console.log(`| echo ${ECHO_BYTES} B over TCP (node:net, other process) | ${time(echoRtt)} | — | the RTT floor |`);

    console.log("");
    console.log(`## Summary — ${runtimeName()}, ${cpuName()}`);
    console.log("");
    console.log("| measurement | this library | floor | library / floor | goal | met? |");
    console.log("|---|---|---|---|---|---|");
    for (const bytes of SIZES) {
      const pull = med(bytes, "pullCache");
      const copy = med(bytes, "memcpy");
      const share = copy / pull; // bandwidth ratio: library / memcpy
      const goal = bytes >= BANDWIDTH_GOAL_FROM;
      console.log(
        `| (a) pullCache ${size(bytes)}, bandwidth | ${gbps(bytes, pull)} (${time(pull)}) | ` +
          `${gbps(bytes, copy)} (${time(copy)}, plain memcpy) | ${ratio(share)} | ` +
          `${goal ? `≥ ${BANDWIDTH_GOAL.toFixed(2)}×` : "— (info)"} | ${
            goal ? yes(share >= BANDWIDTH_GOAL) : "info"
          } |`,
      );
    }
    {
      const pull = small("pullCache");
      console.log(
        `| (b) pullCache ${size(SMALLEST)} vs ${ECHO_BYTES} B TCP round trip | ${time(pull)} | ${time(echoRtt)} | ` +
          `${ratio(pull / echoRtt)} | ≤ ${RTT_GOAL}× | ${yes(pull / echoRtt <= RTT_GOAL)} |`,
      );
      const native = small("native pull, job 0");
      console.log(
        `| (c) native pull ${size(SMALLEST)}, job 0 (native-only round trip) | ${time(native)} | ${time(echoRtt)} | ` +
          `${ratio(native / echoRtt)} | — | info |`,
      );
    }
    console.log("");
    console.log(
      `(library / floor: for (a) the library's bandwidth as a share of the plain memcpy's; for (b), (c) time over ` +
        `time. GB/s = 10^9 bytes/s. Measured in ${measureSeconds.toFixed(1)} s; load average at end ${loadAverage()}.)`,
    );

    // ----------------------------------------------------------- teardown

    await dd.unlinkClusters([cluster], 5000);
    for (const s of setups) {
      await manager.deallocateCache(s.target);
      await manager.deallocateCache(s.local);
    }
    await manager.deallocateCache(handoffCache);
  } finally {
    client?.close();
    dd.finalize();
    await prompt.stop();
    await echo.stop();
  }
}

await main();
