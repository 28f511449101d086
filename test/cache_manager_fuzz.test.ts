// The cache manager's block calls, fuzzed against a model (fast-check): random
// sequences of copyBlocks, swapBlocks, writes through views, and registration
// of the program's memory, with valid and invalid block maps (out of range,
// negative, not integers, wrong kinds and placements). A model holds every
// cache's bytes and predicts each call's outcome (success, TypeError,
// LLMException(LLM_PARAM_INVALID or LLM_KV_CACHE_NOT_EXIST)); after every
// command every live cache reads back what the model holds. Runs unchanged on
// Deno, Bun and Node. LLMDD_FUZZ_SEED=<n> replays a run.
import assert from "node:assert/strict";
import process from "node:process";
import { test } from "node:test";
import fc from "fast-check";
import {
  type Cache,
  CacheDesc,
  type CacheManager,
  DataType,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../mod.ts";
import { freshClusterId } from "./helpers.ts";

const TENSORS = 2;
const BLOCK = 32; // bytes of one block of one tensor

interface Slot {
  name: string;
  blocks: number;
  placement: Placement;
  registered: boolean;
  cache?: Cache; // undefined while unregistered
  memory?: Uint8Array[]; // registered: the program's buffers
  model: Uint8Array[]; // per tensor
}

type Index = number | string | null; // what a map holds: in range or not, or not an integer
type Command =
  | { kind: "copy"; slot: number; pairs: [Index, Index[]][] }
  | { kind: "swap"; src: number; dst: number; pairs: [Index, Index][] }
  | { kind: "write"; slot: number; tensor: number; block: number; value: number }
  | { kind: "reregister" }
  | { kind: "stale" };

const index: fc.Arbitrary<Index> = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 0, max: 7 }) },
  { weight: 2, arbitrary: fc.integer({ min: 8, max: 9 }) },
  { weight: 1, arbitrary: fc.integer({ min: -3, max: -1 }) },
  { weight: 1, arbitrary: fc.constantFrom<Index>(1.5, "2", null) },
);

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    kind: fc.constant("copy" as const),
    slot: fc.nat(3),
    pairs: fc.array(fc.tuple(index, fc.array(index, { maxLength: 3 })), { maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant("swap" as const),
    src: fc.nat(3),
    dst: fc.nat(3),
    pairs: fc.array(fc.tuple(index, index), { maxLength: 4 }),
  }),
  fc.record({
    kind: fc.constant("write" as const),
    slot: fc.nat(3),
    tensor: fc.nat(TENSORS - 1),
    block: fc.nat(9),
    value: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("reregister" as const) }),
  fc.record({ kind: fc.constant("stale" as const) }),
);

const isIndex = (v: Index): v is number => typeof v === "number" && Number.isInteger(v);

/** The outcome the model predicts: "ok", or the error a call must end with. */
type Want = "ok" | "TypeError" | LLMStatusCode;

function copyBlocksWant(slot: Slot, pairs: [Index, Index[]][]): Want {
  // As the implementation checks: the map's integers (TypeError), then the
  // ranges (the native call's).
  for (const [src, dsts] of pairs) if (!isIndex(src) || !dsts.every(isIndex)) return "TypeError";
  for (const [src, dsts] of pairs) {
    for (const dst of dsts) {
      if ((src as number) < 0 || (src as number) >= slot.blocks) return LLMStatusCode.LLM_PARAM_INVALID;
      if ((dst as number) < 0 || (dst as number) >= slot.blocks) return LLMStatusCode.LLM_PARAM_INVALID;
    }
  }
  return "ok";
}

function swapWant(src: Slot, dst: Slot, pairs: [Index, Index][]): Want {
  if (pairs.some(([s, d]) => !isIndex(s) || !isIndex(d))) return "TypeError";
  for (const [s, d] of pairs as [number, number][]) {
    if (s < 0 || s >= src.blocks || d < 0 || d >= dst.blocks) return LLMStatusCode.LLM_PARAM_INVALID;
  }
  if (src.placement === dst.placement) return LLMStatusCode.LLM_PARAM_INVALID;
  return "ok";
}

/** The model's copy of one block of every tensor, in order (as the native loop). */
function copyModel(dst: Slot, src: Slot, pairs: [number, number][]): void {
  for (let t = 0; t < TENSORS; t++) {
    for (const [s, d] of pairs) dst.model[t].set(src.model[t].slice(s * BLOCK, (s + 1) * BLOCK), d * BLOCK);
  }
}

async function outcome(call: () => Promise<unknown>): Promise<Want> {
  try {
    await call();
    return "ok";
  } catch (err) {
    if (err instanceof TypeError) return "TypeError";
    if (err instanceof LLMException) return err.statusCode;
    throw err;
  }
}

async function check(m: CacheManager, slots: Slot[]): Promise<void> {
  for (const slot of slots) {
    if (!slot.cache) continue;
    for (let t = 0; t < TENSORS; t++) {
      const [tensor] = await m.getCacheTensors(slot.cache, t);
      const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.byteLength);
      assert.deepEqual(bytes, slot.model[t], `${slot.name} tensor ${t}`);
    }
  }
}

test("copyBlocks, swapBlocks and registration match a model of every cache's bytes", async () => {
  const seed = process.env.LLMDD_FUZZ_SEED ? Number(process.env.LLMDD_FUZZ_SEED) : Date.now() % 2 ** 31;
  const runs = Number(process.env.LLMDD_FUZZ_RUNS ?? 25);
  await using dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await dd.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": '{"memory_size": 1048576}',
    "llm.HostMemPoolConfig": '{"memory_size": 1048576}',
  });
  const m = dd.cacheManager;
  const descOf = (blocks: number, placement: Placement) =>
    new CacheDesc(TENSORS, [blocks, BLOCK], DataType.DT_UINT8, placement);
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 25 }), async (commands) => {
        const memory = () => Array.from({ length: TENSORS }, () => new Uint8Array(4 * BLOCK));
        const registered = memory();
        let stale: Cache | undefined; // a registered cache since unregistered
        const slots: Slot[] = [
          { name: "deviceA", blocks: 8, placement: Placement.DEVICE, registered: false, model: [] },
          { name: "deviceB", blocks: 6, placement: Placement.DEVICE, registered: false, model: [] },
          { name: "host", blocks: 5, placement: Placement.HOST, registered: false, model: [] },
          { name: "registered", blocks: 4, placement: Placement.HOST, registered: true, memory: registered, model: [] },
        ];
        for (const slot of slots) {
          slot.cache = slot.registered
            ? await m.registerBlocksCache(descOf(slot.blocks, slot.placement), slot.memory!)
            : await m.allocateBlocksCache(descOf(slot.blocks, slot.placement));
          slot.model = Array.from({ length: TENSORS }, () => new Uint8Array(slot.blocks * BLOCK));
          // New pool caches are not cleared: start from known bytes, distinct
          // per slot, tensor and block, so that every copy shows.
          for (let t = 0; t < TENSORS; t++) {
            const view = m.getCacheTensorViews(slot.cache, t)[0].data as Uint8Array;
            for (let i = 0; i < view.length; i++) {
              view[i] = slot.model[t][i] = (slots.indexOf(slot) * 64 + t * 16 + (i >> 5) * 2 + (i & 1)) & 0xFF;
            }
          }
        }
        try {
          for (const c of commands) {
            if (c.kind === "copy") {
              const slot = slots[c.slot];
              // A Map keeps one entry per key: the last one given wins.
              const map = new Map<number, number[]>();
              for (const [src, dsts] of c.pairs) map.set(src as number, dsts as number[]);
              const want = copyBlocksWant(slot, [...map] as [Index, Index[]][]);
              const got = await outcome(() => m.copyBlocks(slot.cache!, map));
              assert.equal(got, want, `copyBlocks(${slot.name}, ${JSON.stringify([...map])})`);
              const flat: [number, number][] = [];
              for (const [src, dsts] of map) for (const dst of dsts) flat.push([src, dst]);
              if (got === "ok") copyModel(slot, slot, flat);
            } else if (c.kind === "stale") {
              if (!stale) continue;
              const gone = stale;
              assert.equal(await outcome(() => m.copyBlocks(gone, { 0: [1] })), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
              assert.equal(await outcome(() => m.getCacheTensors(gone)), LLMStatusCode.LLM_KV_CACHE_NOT_EXIST);
              assert.equal(gone.tensorAddrs.length, 0);
            } else if (c.kind === "swap") {
              const src = slots[c.src], dst = slots[c.dst];
              const map = new Map<number, number>();
              for (const [s, d] of c.pairs) map.set(s as number, d as number);
              const pairs = [...map] as [Index, Index][];
              const want = swapWant(src, dst, pairs);
              const got = await outcome(() => m.swapBlocks(src.cache!, dst.cache!, map));
              assert.equal(got, want, `swapBlocks(${src.name}, ${dst.name}, ${JSON.stringify(pairs)})`);
              if (got === "ok") copyModel(dst, src, pairs as [number, number][]);
            } else if (c.kind === "write") {
              const slot = slots[c.slot];
              if (!slot.cache || c.block >= slot.blocks) continue;
              const view = m.getCacheTensorViews(slot.cache, c.tensor)[0].data as Uint8Array;
              view.fill(c.value, c.block * BLOCK, c.block * BLOCK + 7);
              slot.model[c.tensor].fill(c.value, c.block * BLOCK, c.block * BLOCK + 7);
            } else {
              // Unregister and register fresh memory: the old memory is never touched again.
              const slot = slots[3];
              const old = slot.memory!;
              const oldBytes = old.map((b) => b.slice());
              await m.unregisterCache(slot.cache!.cacheId);
              stale = slot.cache;
              slot.memory = memory();
              slot.cache = await m.registerBlocksCache(descOf(slot.blocks, slot.placement), slot.memory);
              slot.model = Array.from({ length: TENSORS }, () => new Uint8Array(slot.blocks * BLOCK));
              await check(m, slots);
              old.forEach((b, t) => assert.deepEqual(b, oldBytes[t], "unregistered memory was touched"));
              continue;
            }
            await check(m, slots);
          }
        } finally {
          for (const slot of slots) {
            if (!slot.cache) continue;
            if (slot.registered) await m.unregisterCache(slot.cache.cacheId);
            else await m.deallocateBlocksCache(slot.cache);
          }
        }
      }),
      { seed, numRuns: runs },
    );
  } catch (err) {
    console.error(`cache manager fuzz failed with seed ${seed} (LLMDD_FUZZ_SEED=${seed} replays it)`);
    throw err;
  }
});
