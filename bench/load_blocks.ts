/**
 * Load: one PROMPT serving DECODER processes that pull blocks concurrently
 * (issue 12, "Load"), bounded in time. Runs unchanged on Bun, Deno and Node:
 *
 *   ./node_modules/.bin/bun bench/load_blocks.ts
 *   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-run --allow-sys bench/load_blocks.ts
 *   node --import ./test/support/register.mjs bench/load_blocks.ts
 *
 * Options (or the environment variable in brackets):
 *   --seconds N      the load phase, in seconds (LLMDD_LOAD_SECONDS; default 60)
 *   --decoders N     DECODER processes in the load phase (LLMDD_LOAD_DECODERS; default 8)
 *   --solo-seconds N the baseline phase of one DECODER alone (default max(1, seconds / 4))
 *   --deadline-ms N  each call's deadline, the DECODERs' llm.SyncKvCacheWaitTime (default 10000)
 *   --churn-ms N     the PROMPT's churn: every N ms it allocates, writes and frees
 *                    a 2 MiB blocks cache of another key (default 20; 0: none)
 *   --strict         also exit 1 when a goal (bandwidth, flat memory) is missed
 *   --corrupt        flip one byte after each DECODER's first pull, before it is
 *                    verified (test/load_blocks.test.ts: the run must fail)
 *
 * Processes: this one only orchestrates. It starts the PROMPT (this file with
 * {"role":"prompt"}), which allocates GENERATIONS blocks caches, each named by
 * BlocksCacheKey(prompt, generation), and fills block b of tensor t of
 * generation g with a pattern of (g, t, b); then, in the same run:
 *   1. solo: one DECODER alone for the solo phase: the baseline;
 *   2. load: `decoders` DECODERs at once for `seconds`.
 * Every DECODER (this file with {"role":"decoder"}) links to the PROMPT, warms
 * up for half a second (verified, not counted) and, until its phase ends,
 * repeats: pick a generation and a list of LIST source
 * blocks at random, poison LIST random distinct blocks of its own blocks
 * cache, pull the list into them in one pullBlocks call, and compare every
 * byte of every pulled block with the pattern (memcmp through node:buffer).
 * Each call is timed against its deadline and watched: a call that has not
 * returned DEADLINE + 5 s after it started is counted hung and ends the run.
 *
 * Bandwidth: pulled bytes over the phase's wall time (every DECODER's loop
 * includes its poisoning and verification, in both phases alike); "in call"
 * is pulled bytes over the time spent inside pullBlocks. Goal: the load
 * phase's aggregate >= 80 % of the solo phase's.
 * Meanwhile the PROMPT churns (--churn-ms): it allocates, writes and frees a
 * blocks cache of other keys every few milliseconds, as for new requests.
 * Memory: the PROMPT reports its resident set (and open descriptors and
 * threads, from /proc where it can read them) when asked: before the load,
 * after a warm-up (a sixth of the load phase), every few seconds, and at the
 * end, before the DECODERs unlink. Goal: flat after the warm-up (within
 * max(4 MiB, 5 %), no descriptor or thread more).
 *
 * Exit status: 1 if a byte differed, a call failed, was lost, returned after
 * its deadline or hung, or a process went away or did not finish within 10 s
 * of being asked (it is killed then); with --strict also when a goal is missed.
 */
import { Buffer } from "node:buffer";
import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { type Child, startChild } from "../test/support/children.ts";
import { cpuName, loadAverage, platformName, runtimeName } from "./support/machine.ts";

// ---------------------------------------------------------------------------
// Geometry, shared by every role

const TENSORS = 4; // K and V of 2 layers
const BLOCK = 32 << 10; // bytes of one block of one tensor
const PROMPT_BLOCKS = 128;
const GENERATIONS = 4;
const DECODER_BLOCKS = 64;
const LIST = 16; // blocks per pullBlocks call: LIST × TENSORS × BLOCK = 2 MiB
const CHURN_BLOCKS = 16; // the PROMPT's churn cache: 2 MiB
const POISON = 0xA5;
const MiB = 1 << 20;
/** Each DECODER's warm-up before its phase starts (verified, not counted). */
const WARMUP_SECONDS = 0.5;

function descOf(blocks: number): CacheDesc {
  return new CacheDesc(TENSORS, [blocks, BLOCK], DataType.DT_UINT8);
}

/**
 * The pattern: block b of tensor t of generation g is BLOCK bytes of a fixed
 * pseudo-random sequence, rotated by a function of (g, t, b). BASE holds the
 * sequence twice, so every expected block is a subarray of it (compared with
 * one memcmp).
 */
const BASE = (() => {
  const base = new Uint8Array(2 * BLOCK);
  let x = 0x9E3779B9;
  for (let i = 0; i < BLOCK; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    base[i] = x & 0xFF;
  }
  base.copyWithin(BLOCK, 0, BLOCK);
  return Buffer.from(base.buffer);
})();

function rotation(g: number, t: number, b: number): number {
  return (Math.imul(g * 1_000_003 + t * 7919 + b * 131 + 1, 0x9E3779B1) >>> 0) % BLOCK;
}

/** The expected bytes of block b of tensor t of generation g. */
function expectedBlock(g: number, t: number, b: number): Buffer {
  const k = rotation(g, t, b);
  return BASE.subarray(k, k + BLOCK);
}

/** A small deterministic PRNG (mulberry32), one per DECODER. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** JSON lines from this process's stdin, one handler per message. */
function onMessages(handle: (message: Record<string, unknown>) => void, end: () => void): void {
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (line.startsWith("{")) handle(JSON.parse(line));
    }
  });
  process.stdin.on("end", end);
  process.stdin.resume();
}

// ---------------------------------------------------------------------------
// The PROMPT

interface MemorySample {
  rss: number;
  fds: number | null;
  threads: number | null;
  churn?: number; // the PROMPT's churn cycles so far
}

function sampleMemory(): MemorySample {
  let fds: number | null = null, threads: number | null = null;
  try {
    fds = readdirSync("/proc/self/fd").length;
  } catch { /* not Linux, or not readable (Deno without --allow-read for /proc) */ }
  try {
    threads = Number(/^Threads:\s*(\d+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1] ?? NaN);
    if (!Number.isFinite(threads)) threads = null;
  } catch { /* as above */ }
  return { rss: process.memoryUsage().rss, fds, threads };
}

async function promptMain(config: { clusterId: string; churnMs: number }): Promise<void> {
  const clusterId = BigInt(config.clusterId);
  const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
  await prompt.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({
      memory_size: GENERATIONS * TENSORS * PROMPT_BLOCKS * BLOCK + TENSORS * CHURN_BLOCKS * BLOCK + 4 * MiB,
    }),
    "llm.listenIpInfo": "127.0.0.1:0",
  });
  const manager = prompt.cacheManager;
  const caches: Cache[] = [];
  for (let g = 0; g < GENERATIONS; g++) {
    const cache = await manager.allocateBlocksCache(descOf(PROMPT_BLOCKS), new BlocksCacheKey(clusterId, g));
    for (let t = 0; t < TENSORS; t++) {
      const view = manager.getCacheTensorViews(cache, t)[0].data;
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      for (let b = 0; b < PROMPT_BLOCKS; b++) bytes.set(expectedBlock(g, t, b), b * BLOCK);
    }
    caches.push(cache);
  }
  // Churn: while serving, the PROMPT keeps allocating, writing and freeing a
  // blocks cache under keys of its own, as it would for new requests.
  let churn = 0, stopping = false;
  const churning = (async () => {
    while (config.churnMs > 0 && !stopping) {
      const cache = await manager.allocateBlocksCache(
        descOf(CHURN_BLOCKS),
        new BlocksCacheKey(clusterId, 1000 + (churn % 4)),
      );
      for (let t = 0; t < TENSORS; t++) {
        const view = manager.getCacheTensorViews(cache, t)[0].data;
        new Uint8Array(view.buffer, view.byteOffset, view.byteLength).fill(churn & 0xFF);
      }
      await manager.deallocateBlocksCache(cache);
      churn++;
      await sleep(config.churnMs);
    }
  })();
  console.log(JSON.stringify({ ready: true, port: prompt.listenPort, memory: sampleMemory() }));
  onMessages(() => console.log(JSON.stringify({ memory: { ...sampleMemory(), churn } })), async () => {
    stopping = true;
    await churning;
    for (const cache of caches) await manager.deallocateBlocksCache(cache);
    prompt.finalize();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------
// A DECODER

interface DecoderStats {
  index: number;
  started: number;
  ok: number;
  failed: Record<string, number>;
  late: number; // returned after its deadline
  hung: number; // not returned DEADLINE + 5 s after it started
  bytes: number;
  blocksVerified: number;
  blocksWrong: number;
  firstWrong?: string;
  inCallMs: number;
  wallMs: number;
  callMs: number[]; // sorted sample: p50, p99, max
}

async function decoderMain(
  config: { index: number; promptCluster: string; port: number; deadlineMs: number; seed: number; corrupt: boolean },
): Promise<void> {
  const promptCluster = BigInt(config.promptCluster);
  const decoder = new LLMDataDist(LLMRole.DECODER, (BigInt(process.pid) << 20n) | BigInt(config.index));
  await decoder.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: TENSORS * DECODER_BLOCKS * BLOCK + MiB }),
    "llm.SyncKvCacheWaitTime": String(config.deadlineMs),
  });
  const manager = decoder.cacheManager;
  const cache = await manager.allocateBlocksCache(descOf(DECODER_BLOCKS));
  const tensors = Array.from({ length: TENSORS }, (_, t) => {
    const view = manager.getCacheTensorViews(cache, t)[0].data;
    return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  });
  for (const bytes of tensors) bytes.fill(POISON); // resident before the run
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = promptCluster;
  cluster.appendRemoteIpInfo("127.0.0.1", config.port);
  const [status, each] = await decoder.linkClusters([cluster], 5000);
  if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`decoder ${config.index}: link failed: ${each}`);

  const run = async (seconds: number, seed: number, corrupt = false): Promise<DecoderStats> => {
    const next = random(seed);
    const stats: DecoderStats = {
      index: config.index,
      started: 0,
      ok: 0,
      failed: {},
      late: 0,
      hung: 0,
      bytes: 0,
      blocksVerified: 0,
      blocksWrong: 0,
      inCallMs: 0,
      wallMs: 0,
      callMs: [],
    };
    const calls: number[] = [];
    const start = performance.now(), end = start + seconds * 1000;
    const order = Array.from({ length: DECODER_BLOCKS }, (_, i) => i);
    while (performance.now() < end && stats.hung === 0) {
      const g = Math.floor(next() * GENERATIONS);
      const src = Array.from({ length: LIST }, () => Math.floor(next() * PROMPT_BLOCKS));
      for (let i = 0; i < LIST; i++) { // a partial shuffle: LIST distinct destination blocks
        const j = i + Math.floor(next() * (DECODER_BLOCKS - i));
        [order[i], order[j]] = [order[j], order[i]];
      }
      const dst = order.slice(0, LIST);
      for (const bytes of tensors) for (const d of dst) bytes.fill(POISON, d * BLOCK, (d + 1) * BLOCK);
      stats.started++;
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const watchdog = new Promise<"hung">((resolve) => {
        timer = setTimeout(() => resolve("hung"), config.deadlineMs + 5000);
      });
      const outcome = await Promise.race([
        manager.pullBlocks(new BlocksCacheKey(promptCluster, g), cache, src, dst).then(() => "ok", (err) => err),
        watchdog,
      ]);
      clearTimeout(timer);
      const ms = performance.now() - t0;
      if (outcome === "hung") {
        stats.hung++;
        break;
      }
      calls.push(ms);
      stats.inCallMs += ms;
      if (ms > config.deadlineMs) stats.late++;
      if (outcome !== "ok") {
        const name = outcome instanceof LLMException
          ? `0x${outcome.statusCode.toString(16)}`
          : outcome instanceof Error
          ? outcome.name
          : String(outcome);
        stats.failed[name] = (stats.failed[name] ?? 0) + 1;
        if (stats.firstWrong === undefined) stats.firstWrong = `call ${stats.started}: ${outcome}`;
        continue;
      }
      stats.ok++;
      stats.bytes += LIST * TENSORS * BLOCK;
      // --corrupt (the smoke test's check of this check): one byte of the first call's first block.
      if (corrupt && stats.ok === 1) tensors[0][dst[0] * BLOCK + 7] ^= 1;
      for (let t = 0; t < TENSORS; t++) {
        for (let i = 0; i < LIST; i++) {
          const got = tensors[t].subarray(dst[i] * BLOCK, (dst[i] + 1) * BLOCK);
          if (got.equals(expectedBlock(g, t, src[i]))) {
            stats.blocksVerified++;
          } else {
            stats.blocksWrong++;
            stats.firstWrong ??= `generation ${g} tensor ${t}: source block ${src[i]} → block ${dst[i]} differs`;
          }
        }
      }
    }
    stats.wallMs = performance.now() - start;
    calls.sort((a, b) => a - b);
    stats.callMs = [0.5, 0.99, 1].map((q) => calls[Math.min(calls.length - 1, Math.floor(q * calls.length))] ?? 0);
    return stats;
  };

  // Warm-up, not counted: the code paths compiled, the pages of both sides touched.
  const warm = await run(WARMUP_SECONDS, ~config.seed);
  if (warm.ok !== warm.started || warm.blocksWrong > 0 || warm.hung > 0) {
    throw new Error(`decoder ${config.index}: warm-up failed: ${JSON.stringify(warm)}`);
  }
  console.log(JSON.stringify({ ready: true }));

  onMessages(async (message) => {
    if (message.go === true) {
      console.log(JSON.stringify({ stats: await run(message.seconds as number, config.seed, config.corrupt) }));
    }
  }, async () => {
    await decoder.unlinkClusters([cluster], 3000);
    await manager.deallocateBlocksCache(cache);
    decoder.finalize();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------
// The orchestrator

function option(name: string, env: string, fallback: number, zero = false): number {
  const at = process.argv.indexOf(`--${name}`);
  const text = at >= 0 ? process.argv[at + 1] : process.env[env];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!(value > 0 || (zero && value === 0))) {
    throw new Error(`--${name} (${env}) must be a positive number, got ${text}`);
  }
  return value;
}

/** The next message of `child`, or an error after `ms`. */
async function nextWithin(child: Child, ms: number, what: string): Promise<Record<string, unknown>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hung)`)), ms);
  });
  try {
    return await Promise.race([child.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Phase {
  name: string;
  stats: DecoderStats[];
  wallMs: number;
}

async function phase(
  name: string,
  decoders: number,
  seconds: number,
  context: { promptCluster: bigint; port: number; deadlineMs: number; corrupt: boolean },
  during?: (elapsed: () => number) => Promise<void>,
): Promise<Phase> {
  const children: Child[] = [];
  try {
    for (let i = 0; i < decoders; i++) {
      children.push(startChild(fileURLToPath(import.meta.url), {
        role: "decoder",
        index: i,
        promptCluster: String(context.promptCluster),
        port: context.port,
        deadlineMs: context.deadlineMs,
        corrupt: context.corrupt,
        seed: 0xC0FFEE + 7919 * i + (name === "solo" ? 1 : 0),
      }));
    }
    for (const [i, child] of children.entries()) await nextWithin(child, 30_000, `${name} decoder ${i} start`);
    const start = performance.now();
    for (const child of children) child.send({ go: true, seconds });
    const results = children.map((child, i) =>
      nextWithin(child, seconds * 1000 + context.deadlineMs + 30_000, `${name} decoder ${i}`)
    );
    await during?.(() => performance.now() - start);
    const stats = (await Promise.all(results)).map((m) => m.stats as DecoderStats);
    return { name, stats, wallMs: performance.now() - start };
  } finally {
    await Promise.all(children.map(finish));
  }
}

/** Asks a child to finish; kills it if it has not within 10 s (the run stays bounded in time). */
async function finish(child: Child): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = await Promise.race([
    child.stop().then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
  ]);
  clearTimeout(timer);
  if (!stopped) {
    stragglers.push(`a child (pid ${child.process.pid}) did not finish within 10 s of being asked: killed`);
    await child.kill();
  }
}
const stragglers: string[] = [];

const sum = (list: number[]) => list.reduce((a, b) => a + b, 0);
const gb = (bytes: number, ms: number) => (bytes / ms / 1e6).toFixed(2);

async function orchestrate(): Promise<void> {
  const seconds = option("seconds", "LLMDD_LOAD_SECONDS", 60);
  const decoders = Math.round(option("decoders", "LLMDD_LOAD_DECODERS", 8));
  const soloSeconds = option("solo-seconds", "LLMDD_LOAD_SOLO_SECONDS", Math.max(1, seconds / 4));
  const deadlineMs = option("deadline-ms", "LLMDD_LOAD_DEADLINE_MS", 10_000);
  const churnMs = option("churn-ms", "LLMDD_LOAD_CHURN_MS", 20, true);
  const strict = process.argv.includes("--strict");
  const promptCluster = (BigInt(process.pid) << 24n) | 0xB10Cn;
  console.log(
    `# load: one PROMPT, ${decoders} DECODERs pulling blocks for ${seconds} s (baseline: 1 for ${soloSeconds} s)`,
  );
  console.log(`# ${runtimeName()}, ${platformName()}, ${cpuName()}, load average ${loadAverage()}`);
  console.log(
    `# PROMPT: ${GENERATIONS} blocks caches × ${TENSORS} tensors × ${PROMPT_BLOCKS} blocks of ${BLOCK >> 10} KiB; ` +
      `each call: ${LIST} blocks × ${TENSORS} tensors = ${
        (LIST * TENSORS * BLOCK) / MiB
      } MiB, deadline ${deadlineMs} ms; PROMPT churn: ${churnMs > 0 ? `a 2 MiB cache every ${churnMs} ms` : "none"}`,
  );

  const prompt = startChild(fileURLToPath(import.meta.url), {
    role: "prompt",
    clusterId: String(promptCluster),
    churnMs,
  });
  let failures: string[] = [];
  const misses: string[] = [];
  const samples: { at: string; memory: MemorySample }[] = [];
  try {
    const ready = await nextWithin(prompt, 60_000, "PROMPT start");
    const port = ready.port as number;
    const askMemory = async (at: string) => {
      prompt.send({ sample: true });
      samples.push({ at, memory: (await nextWithin(prompt, 10_000, "PROMPT memory")).memory as MemorySample });
    };
    const context = { promptCluster, port, deadlineMs, corrupt: process.argv.includes("--corrupt") };
    const solo = await phase("solo", 1, soloSeconds, context);
    await askMemory("before the load");
    const warmup = seconds / 6;
    const load = await phase("load", decoders, seconds, context, async (elapsed) => {
      await sleep(warmup * 1000);
      await askMemory(`after warm-up (${warmup.toFixed(1)} s)`);
      const every = Math.max(1, seconds / 6) * 1000;
      while (elapsed() + every < seconds * 1000) {
        await sleep(every);
        await askMemory(`${(elapsed() / 1000).toFixed(0)} s`);
      }
      // The end: once every DECODER has stopped pulling, before they unlink.
      await sleep(Math.max(0, seconds * 1000 - elapsed()) + 200);
      await askMemory("end");
    });

    // ---- the table ----
    console.log("");
    console.log(
      "| phase | DECODERs | calls ok | failed | late | hung | pulled | wall s | aggregate GB/s | in call GB/s | call p50 / p99 / max ms | blocks verified | wrong |",
    );
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |");
    const rows = [solo, load].map((p) => {
      const bytes = sum(p.stats.map((s) => s.bytes));
      const wall = Math.max(...p.stats.map((s) => s.wallMs));
      const inCall = sum(p.stats.map((s) => s.bytes / Math.max(1e-9, s.inCallMs)));
      const failed = sum(p.stats.map((s) => sum(Object.values(s.failed))));
      const worst = [0, 1, 2].map((q) => Math.max(...p.stats.map((s) => s.callMs[q])));
      const p50 = p.stats.map((s) => s.callMs[0]).sort((a, b) => a - b)[Math.floor(p.stats.length / 2)];
      console.log(
        `| ${p.name} | ${p.stats.length} | ${sum(p.stats.map((s) => s.ok))} | ${failed} | ${
          sum(p.stats.map((s) => s.late))
        } | ${sum(p.stats.map((s) => s.hung))} | ${(bytes / 2 ** 30).toFixed(1)} GiB | ${(wall / 1000).toFixed(1)} | ${
          gb(bytes, wall)
        } | ${(inCall / 1e6).toFixed(2)} | ${p50.toFixed(2)} / ${worst[1].toFixed(2)} / ${worst[2].toFixed(2)} | ${
          sum(p.stats.map((s) => s.blocksVerified))
        } | ${sum(p.stats.map((s) => s.blocksWrong))} |`,
      );
      return { bytes, wall };
    });
    console.log("");
    console.log(
      "per DECODER in the load phase: " + load.stats.map((s) => `${gb(s.bytes, s.wallMs)}`).join(" ") + " GB/s",
    );
    console.log("");
    console.log("| PROMPT sample | RSS MiB | open fds | threads | churn cycles |");
    console.log("| --- | ---: | ---: | ---: | ---: |");
    for (const { at, memory } of samples) {
      console.log(
        `| ${at} | ${(memory.rss / MiB).toFixed(1)} | ${memory.fds ?? "n/a"} | ${memory.threads ?? "n/a"} | ${
          memory.churn ?? 0
        } |`,
      );
    }

    // ---- verdicts ----
    for (const p of [solo, load]) {
      for (const s of p.stats) {
        const failed = sum(Object.values(s.failed));
        if (s.blocksWrong > 0 || failed > 0 || s.late > 0 || s.hung > 0 || s.ok + failed !== s.started) {
          failures.push(
            `${p.name} DECODER ${s.index}: ${s.started} started, ${s.ok} ok, failed ${JSON.stringify(s.failed)}, ` +
              `${s.late} late, ${s.hung} hung, ${s.blocksWrong} blocks wrong${
                s.firstWrong ? ` (${s.firstWrong})` : ""
              }`,
          );
        }
        if (s.ok === 0) failures.push(`${p.name} DECODER ${s.index}: no call succeeded`);
      }
    }
    const ratio = (rows[1].bytes / rows[1].wall) / (rows[0].bytes / rows[0].wall);
    const calls = sum([...solo.stats, ...load.stats].map((s) => s.started));
    const verified = sum([...solo.stats, ...load.stats].map((s) => s.blocksVerified));
    const after = samples.find((s) => s.at.startsWith("after warm-up"))!.memory;
    const end = samples.find((s) => s.at === "end")!.memory;
    const growth = end.rss - after.rss;
    const flat = growth <= Math.max(4 * MiB, 0.05 * after.rss) && (end.fds ?? 0) <= (after.fds ?? 0) &&
      (end.threads ?? 0) <= (after.threads ?? 0);
    console.log("");
    console.log(
      `aggregate of ${decoders} vs one alone: ${gb(rows[1].bytes, rows[1].wall)} vs ${
        gb(rows[0].bytes, rows[0].wall)
      } ` +
        `GB/s = ${(ratio * 100).toFixed(0)} % (goal ≥ 80 %) ${ratio >= 0.8 ? "✓" : "✗"}`,
    );
    console.log(
      `calls: ${calls} started, every one returned within its deadline, none failed or hung: ` +
        `${failures.length === 0 ? "✓" : "✗"}`,
    );
    console.log(
      `bytes: ${verified} blocks × ${BLOCK >> 10} KiB verified byte for byte: ${failures.length === 0 ? "✓" : "✗"}`,
    );
    console.log(
      `PROMPT memory after warm-up → end: RSS ${(after.rss / MiB).toFixed(1)} → ${(end.rss / MiB).toFixed(1)} MiB ` +
        `(${growth >= 0 ? "+" : ""}${(growth / MiB).toFixed(1)}), fds ${after.fds ?? "n/a"} → ${end.fds ?? "n/a"}, ` +
        `threads ${after.threads ?? "n/a"} → ${end.threads ?? "n/a"}: flat ${flat ? "✓" : "✗"}`,
    );
    if (ratio < 0.8) misses.push("aggregate bandwidth below 80 % of one DECODER's");
    if (!flat) misses.push("the PROMPT's memory grew after the warm-up");
  } catch (err) {
    failures = [...failures, String(err)];
  } finally {
    await finish(prompt);
  }
  failures.push(...stragglers);
  for (const f of failures) console.log(`FAILED: ${f}`);
  for (const m of misses) console.log(`goal missed: ${m}`);
  const ok = failures.length === 0 && (!strict || misses.length === 0);
  console.log(ok ? "load: ok" : "load: FAILED");
  process.exit(ok ? 0 : 1);
}

const argument = process.argv.at(-1) ?? "";
const config = argument.startsWith("{") ? JSON.parse(argument) : {};
if (config.role === "prompt") await promptMain(config);
else if (config.role === "decoder") await decoderMain(config);
else await orchestrate();
