// Benchmarks of KvCacheManager.getCacheTensors / getCacheTensorViews against
// their floors: what the same work costs without the library around it.
// Runs unchanged on Bun, Deno and Node:
//
//   npm run bench                      (Bun)
//   ./node_modules/.bin/bun bench/get_cache_tensors.bench.ts
//   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-sys bench/get_cache_tensors.bench.ts
//   node --import ./test/support/register.mjs bench/get_cache_tensors.bench.ts
//
// Measurements (all in one run, on one instance with one device):
//   (a) getCacheTensors on a 64-byte tensor vs the floor: an async function
//       making the same FFI call through the raw symbols. Goals: median <= 2x
//       the floor; on Bun, under 1 us.
//   (b) getCacheTensors on a 64 MiB tensor (off the JavaScript thread) vs a
//       plain copy of the same memory into a fresh buffer. Goal: >= 80 % of
//       the floor's bandwidth. A timed loop, not mitata (see timedLoop).
//   (c) getCacheTensorViews on 64 B vs 64 MiB: constant time whatever the size.
//       (a) and (c) run twice, in ABBA order; the table takes each one's best
//       median, so that a burst of noise on this shared machine that hits one
//       side of a ratio does not decide it.
//   (d) around the off-thread threshold (64 KiB, 256 KiB, 1 MiB):
//       getCacheTensors vs a plain copy, and both native paths on their own
//       (inline on the JS thread, and a job on the native worker), so that
//       OFF_THREAD_BYTES can be placed where the two cross.
// (a), (c), (d) use mitata (medians of its samples); the table at the end
// summarizes them.

// mitata by path, not by name: Deno then needs no npm resolution (nor a lock
// file) for it, and the same specifier works on Bun and Node.
import { bench, do_not_optimize, run, summary } from "../node_modules/mitata/src/main.mjs";
import { CacheDesc, DataType, type KvCache, type KvCacheManager, LLMDataDist, LLMRole } from "../mod.ts";
import { cacheRecord } from "../src/kv_cache.ts";
import { OFF_THREAD_BYTES } from "../src/kv_cache_manager.ts";
import { runLong } from "../src/long_call.ts";
import { Operation } from "../src/operation.ts";
import { bytesOf } from "./support/bytes.ts";
import { now } from "./support/clock.ts";
import { gbps, ratio, yes } from "./support/format.ts";
import { cpuName, loadAverage, platformName, runtimeName } from "./support/machine.ts";

// ---------------------------------------------------------------- settings

const KiB = 1024;
const MiB = 1024 * KiB;
const SMALL_BYTES = 64;
const BIG_BYTES = 64 * MiB;
const THRESHOLD_SIZES = [64 * KiB, 256 * KiB, 1 * MiB];
/** Pool per device (`ge.flowGraphMemMaxSize`): every cache above plus alignment. */
const POOL_BYTES = 128 * MiB;
/** Generous, so a scheduling hiccup on a loaded machine is not a timeout. */
const SYNC_KV_TIMEOUT_MS = 10_000;
/** (b): iterations of the timed loop, per measured function, interleaved. */
const BIG_WARMUP = 4;
const BIG_ITERATIONS = 30;

// ----------------------------------------------------------------- helpers

// deno-lint-ignore no-explicit-any
type Any = Record<string, any>;
const g = globalThis as unknown as Any;

function size(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0) return `${bytes / KiB} KiB`;
  return `${bytes} B`;
}

function time(ns: number): string {
  if (!Number.isFinite(ns)) return "n/a";
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}

function median(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

// ------------------------------------------------------------------- setup

const dd = new LLMDataDist(LLMRole.PROMPT, 1n);
await dd.init({
  "ge.exec.deviceId": "0",
  "ge.flowGraphMemMaxSize": String(POOL_BYTES),
  "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT_MS),
});
const manager: KvCacheManager = dd.kvCacheManager;

/** One FP16 tensor of `bytes` bytes on the one device, filled with non-zero bytes. */
async function filledCache(bytes: number): Promise<{ cache: KvCache; view: Uint8Array }> {
  const cache = await manager.allocateCache(new CacheDesc(1, [bytes / 2], DataType.DT_FLOAT16));
  const view = bytesOf(manager.getCacheTensorViews(cache, 0)[0].data);
  for (let i = 0; i < view.length; i += 4096) view[i] = 1 + (i / 4096) % 251; // touches every page
  view.fill(0x5a, 0, Math.min(view.length, 4096));
  view[view.length - 1] = 0xa5;
  return { cache, view };
}

const small = await filledCache(SMALL_BYTES);
const big = await filledCache(BIG_BYTES);
const mid = new Map<number, { cache: KvCache; view: Uint8Array }>();
for (const bytes of THRESHOLD_SIZES) mid.set(bytes, await filledCache(bytes));

const record = cacheRecord(small.cache);
const { lib, handle } = record.engine;

/** Checks that getCacheTensors returns the cache's bytes before timing it. */
async function verify(cache: KvCache, view: Uint8Array): Promise<void> {
  const [tensor] = await manager.getCacheTensors(cache, 0);
  const got = bytesOf(tensor.data);
  if (got.length !== view.length) throw new Error(`read ${got.length} bytes of ${view.length}`);
  for (let i = 0; i < got.length; i += got.length > 4096 ? 4093 : 1) {
    if (got[i] !== view[i]) throw new Error(`byte ${i} of ${size(view.length)} differs`);
  }
  if (got[got.length - 1] !== view[view.length - 1]) throw new Error(`last byte of ${size(view.length)} differs`);
}
await verify(small.cache, small.view);
await verify(big.cache, big.view);
for (const { cache, view } of mid.values()) await verify(cache, view);

// ------------------------------------------------------------ the floors

/** (a) The same FFI call as the library's small path, with nothing around it. */
function floorSmall(): () => Promise<Uint8Array> {
  const cacheId = record.cacheId;
  // deno-lint-ignore require-await
  return async () => {
    const out = new Uint8Array(64);
    lib.fn.llmdd_cache_read(handle, cacheId, 0, 0, out, 64n, 0n);
    return out;
  };
}
{
  const out = await floorSmall()();
  if (out[0] !== 0x5a || out[63] !== 0xa5) throw new Error("the floor of (a) did not read the cache");
}

/** A plain copy of `view` into a fresh buffer of its size. */
function plainCopy(view: Uint8Array): () => Uint8Array {
  return () => {
    const out = new Uint8Array(view.length);
    out.set(view);
    return out;
  };
}

/** (d) The inline native path alone: job 0, on the JavaScript thread. */
function inlineRead(cache: KvCache, bytes: number): () => Uint8Array {
  const id = cacheRecord(cache).cacheId;
  const n = BigInt(bytes);
  return () => {
    const out = new Uint8Array(bytes);
    const status = lib.fn.llmdd_cache_read(handle, id, 0, 0, out, n, 0n);
    if (status !== 0) throw lib.error(status, "inline read");
    return out;
  };
}

/** (d) The off-thread native path alone: a job run by the native worker / async FFI. */
function offThreadRead(cache: KvCache, bytes: number): () => Promise<Uint8Array> {
  const id = cacheRecord(cache).cacheId;
  const n = BigInt(bytes);
  return async () => {
    const out = lib.raw.allocate(bytes);
    const op = new Operation("bench", SYNC_KV_TIMEOUT_MS, undefined);
    await runLong(lib, "llmdd_cache_read", [handle, id, 0, 0, out, n], op, "off-thread read");
    return out;
  };
}

// ------------------------------------------------------------ configuration

console.log("# getCacheTensors benchmarks");
console.log(`runtime:        ${runtimeName()} on ${platformName()}`);
console.log(`cpu:            ${cpuName()}`);
console.log(`load average:   ${loadAverage()} (at start)`);
console.log(`library:        ${lib.raw.path} (${lib.raw.runtime} shim)`);
console.log(`instance:       1 device, pool ${size(POOL_BYTES)} per device, syncKvTimeout ${SYNC_KV_TIMEOUT_MS} ms`);
console.log(
  `tensors:        FP16, ${[SMALL_BYTES, BIG_BYTES, ...THRESHOLD_SIZES].map(size).join(", ")}` +
    ` (one cache each, 1 tensor; filled through views)`,
);
console.log(`OFF_THREAD_BYTES: ${size(OFF_THREAD_BYTES)} (getCacheTensors of at least this runs off the JS thread)`);
console.log(
  "iterations:     (a)(c)(d) mitata 1.x defaults: per benchmark >= 12 samples and >= 642 ms of samples, " +
    "batches of 4096 calls when a call takes < 65 µs; medians of the samples",
);
console.log(
  `                (b) timed loop: ${BIG_WARMUP} warm-up + ${BIG_ITERATIONS} measured calls of each function, ` +
    "interleaved (library, floor, floor, library, ...); median per call",
);
console.log("");

// --------------------------------------------------- (a), (c), (d): mitata

const NAME = {
  aLib: (pass: number) => `(a) getCacheTensors 64 B #${pass}`,
  aFloor: (pass: number) => `(a) floor: async raw FFI read 64 B #${pass}`,
  cSmall: (pass: number) => `(c) getCacheTensorViews 64 B #${pass}`,
  cBig: (pass: number) => `(c) getCacheTensorViews 64 MiB #${pass}`,
  dLib: (b: number) => `(d) getCacheTensors ${size(b)}`,
  dCopy: (b: number) => `(d) floor: plain copy ${size(b)}`,
  dInline: (b: number) => `(d) inline FFI read ${size(b)}`,
  dOff: (b: number) => `(d) off-thread FFI read ${size(b)}`,
};

for (const pass of [1, 2]) {
  // ABBA: the floor first in pass 1, the library first in pass 2.
  const floor = floorSmall();
  const a = [
    () => bench(NAME.aFloor(pass), floor),
    () => bench(NAME.aLib(pass), () => manager.getCacheTensors(small.cache, 0)),
  ];
  const c = [
    () => bench(NAME.cSmall(pass), () => do_not_optimize(manager.getCacheTensorViews(small.cache, 0))),
    () => bench(NAME.cBig(pass), () => do_not_optimize(manager.getCacheTensorViews(big.cache, 0))),
  ];
  if (pass === 2) (a.reverse(), c.reverse());
  summary(() => a.forEach((register) => register()));
  summary(() => c.forEach((register) => register()));
}
for (const [bytes, { cache, view }] of mid) {
  summary(() => {
    bench(NAME.dCopy(bytes), plainCopy(view));
    bench(NAME.dLib(bytes), () => manager.getCacheTensors(cache, 0));
    bench(NAME.dInline(bytes), inlineRead(cache, bytes));
    bench(NAME.dOff(bytes), offThreadRead(cache, bytes));
  });
}

const started = now();
const result = await run();
const medians = new Map<string, number>();
for (const trial of result.benchmarks) {
  for (const r of trial.runs) {
    if (r.error !== undefined) console.log(`!! ${r.name} failed: ${r.error}`);
    medians.set(r.name, r.stats?.p50 ?? NaN);
  }
}
const p50 = (name: string) => medians.get(name) ?? NaN;
/** The better median of the two passes of (a) or (c). */
const best = (name: (pass: number) => string) => Math.min(p50(name(1)), p50(name(2)));

// ------------------------------------------------------ (b): a timed loop

/**
 * mitata's model (one sample = one call, at least 12 samples and 642 ms,
 * gc between benchmarks) works for 64 MiB but spends most of the time budget
 * on one function while the machine's noise drifts. A plain loop that
 * alternates the two functions gives both the same conditions.
 */
async function timedLoop(
  fns: Record<string, () => unknown>,
  warmup: number,
  iterations: number,
): Promise<Record<string, number[]>> {
  const names = Object.keys(fns);
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < warmup + iterations; i++) {
    const order = i % 2 === 0 ? names : [...names].reverse();
    for (const name of order) {
      const t0 = now();
      do_not_optimize(await fns[name]());
      const t1 = now();
      if (i >= warmup) samples[name].push(t1 - t0);
    }
  }
  return samples;
}

console.log("");
console.log(`(b) getCacheTensors ${size(BIG_BYTES)} vs a plain copy into a fresh buffer (timed loop, not mitata)`);
const bigSamples = await timedLoop(
  {
    library: () => manager.getCacheTensors(big.cache, 0),
    floor: plainCopy(big.view),
  },
  BIG_WARMUP,
  BIG_ITERATIONS,
);
const bLib = median(bigSamples.library);
const bFloor = median(bigSamples.floor);
for (const [name, samples] of Object.entries(bigSamples)) {
  const s = [...samples].sort((a, b) => a - b);
  console.log(
    `  ${name.padEnd(8)} median ${time(median(s)).padStart(9)} = ${gbps(BIG_BYTES, median(s)).padStart(10)}` +
      `   min ${time(s[0])}  max ${time(s[s.length - 1])}  (n=${s.length})`,
  );
}
const elapsed = (now() - started) / 1e9;

// ------------------------------------------------------------------ tables

type Row = [string, string, string, string, string, string];
const rows: Row[] = [];

{
  const lib = best(NAME.aLib);
  const floor = best(NAME.aFloor);
  rows.push([
    "(a) getCacheTensors 64 B, median",
    time(lib),
    time(floor),
    ratio(lib / floor),
    "≤ 2×",
    yes(lib / floor <= 2),
  ]);
  rows.push([
    "(a) getCacheTensors 64 B on Bun",
    time(lib),
    "—",
    "—",
    "< 1 µs (Bun)",
    g.Bun ? yes(lib < 1000) : "n/a (not Bun)",
  ]);
}
rows.push([
  `(b) getCacheTensors ${size(BIG_BYTES)}, bandwidth`,
  `${gbps(BIG_BYTES, bLib)} (${time(bLib)})`,
  `${gbps(BIG_BYTES, bFloor)} (${time(bFloor)})`,
  ratio(bFloor / bLib),
  "≥ 0.80×",
  yes(bFloor / bLib >= 0.8),
]);
{
  const s = best(NAME.cSmall);
  const b = best(NAME.cBig);
  rows.push([
    "(c) getCacheTensorViews 64 MiB vs 64 B",
    time(b),
    `${time(s)} (64 B)`,
    ratio(b / s),
    "≈ 1× (≤ 1.5×)",
    yes(b / s <= 1.5),
  ]);
}
for (const bytes of THRESHOLD_SIZES) {
  const lib = p50(NAME.dLib(bytes));
  const copy = p50(NAME.dCopy(bytes));
  const path = bytes < OFF_THREAD_BYTES ? "inline" : "off-thread";
  rows.push([
    `(d) getCacheTensors ${size(bytes)} (${path})`,
    time(lib),
    `${time(copy)} (copy)`,
    ratio(lib / copy),
    "—",
    "info",
  ]);
}

console.log("");
console.log("## Passes of (a) and (c): medians per call (the summary takes the better of the two)");
console.log("");
for (
  const [label, name] of [
    ["(a) getCacheTensors 64 B", NAME.aLib],
    ["(a) floor: async raw FFI read 64 B", NAME.aFloor],
    ["(c) getCacheTensorViews 64 B", NAME.cSmall],
    ["(c) getCacheTensorViews 64 MiB", NAME.cBig],
  ] as const
) {
  console.log(
    `  ${label.padEnd(36)} pass 1 ${time(p50(name(1))).padStart(9)}   pass 2 ${time(p50(name(2))).padStart(9)}`,
  );
}
console.log("");
console.log("## Threshold detail (d): medians per call");
console.log("");
console.log("| size | plain copy | getCacheTensors | inline FFI read | off-thread FFI read | off-thread − inline |");
console.log("|---|---|---|---|---|---|");
for (const bytes of THRESHOLD_SIZES) {
  const inline = p50(NAME.dInline(bytes));
  const off = p50(NAME.dOff(bytes));
  console.log(
    `| ${size(bytes)} | ${time(p50(NAME.dCopy(bytes)))} | ${time(p50(NAME.dLib(bytes)))} | ${time(inline)} | ` +
      `${time(off)} | ${time(off - inline)} |`,
  );
}
console.log("");
console.log(
  "Inline reads block the JavaScript thread for their whole duration; off-thread reads only while they are set up " +
    "and completed. off-thread − inline is the price of the hand-off.",
);

console.log("");
console.log(`## Summary — ${runtimeName()}, ${cpuName()}`);
console.log("");
console.log("| measurement | this library | floor | ratio | goal | met? |");
console.log("|---|---|---|---|---|---|");
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
console.log("");
console.log(
  `(ratio: library / floor for times; floor / library for (b), i.e. the library's share of the floor's ` +
    `bandwidth. Measured in ${elapsed.toFixed(1)} s.)`,
);

// --------------------------------------------------------------- teardown

await manager.deallocateCache(small.cache);
await manager.deallocateCache(big.cache);
for (const { cache } of mid.values()) await manager.deallocateCache(cache);
dd.finalize();
