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
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKey,
  type CacheKeyByIdAndIndex,
  type CacheManager,
  type CacheTask,
  DataType,
  type LayerRange,
  LLMClusterInfo,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
  TransferWithCacheKeyConfig,
} from "../mod.ts";
import { freshClusterId } from "./helpers.ts";
import { ucxMissing } from "./support/links.ts";
import {
  DECODER_CACHES,
  descOf,
  keyOf,
  optionsOf,
  outcomeOf,
  predictPullBlocks,
  predictPullCache,
  PROMPT_CACHES,
  type PullCall,
  pullCommand,
  type PullModel,
  type PullWorld,
  REQUESTS,
  ROWS,
  viewsOf,
  type Want as PullWant,
  wantName,
} from "./support/fuzz/block_pulls.ts";
import {
  D_CACHES,
  P_CACHES,
  predictPush,
  predictTransfer,
  type PushCall,
  type PushCommand,
  type PushFuzzCommand,
  pushFuzzCommand,
  pushKeyOf,
  type PushModel,
  pushOutcomeOf,
  type PushShape,
  type PushWorld,
  Q_CACHES,
} from "./support/fuzz/block_pushes.ts";

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

// pullBlocks and pullCache from a linked PROMPT, against the model of
// test/support/fuzz/block_pulls.ts: random sequences of pulls by
// BlocksCacheKey, CacheKey and CacheKeyByIdAndIndex into blocks and row caches
// that match the PROMPT's or not (and freed ones), with block lists in and out
// of range, of unequal lengths, negative or not integers, layer ranges in and
// out of range, unknown keys and an unlinked cluster; writes on the PROMPT's
// side, caches the PROMPT frees and allocates again under the same key (a
// repeat pull must not read where the cache was), and removed keys between
// them; bursts of pulls started at once. Each call's outcome (success or the
// exact error) is predicted; after every command every live cache on both
// sides reads back what the model holds, and at the end the PROMPT holds
// exactly the keys the model says. Same seed handling as above (the seed is
// printed with a tally of the outcomes; LLMDD_FUZZ_SHRINK=0 reports the first
// failing sequence unshrunk). Over shared memory, and again over UCX (TCP on
// loopback), where repeat pulls check the PROMPT's generation page with a UCX
// read after the data (fewer runs: each pull is a round trip there).
process.env.UCX_TLS ??= "tcp";
const noUcx = await ucxMissing();
for (const transport of ["shm", "ucx"] as const) {
  test(`pullBlocks and pullCache from a linked PROMPT match a model of both sides' bytes (${transport})`, {
    skip: transport === "ucx" && noUcx !== undefined ? `UCX is not installed here (${noUcx})` : false,
  }, () => pullFuzz(transport));
}

async function pullFuzz(transport: "shm" | "ucx"): Promise<void> {
  const seed = process.env.LLMDD_FUZZ_SEED ? Number(process.env.LLMDD_FUZZ_SEED) : Date.now() % 2 ** 31;
  const runs = Number(process.env.LLMDD_FUZZ_RUNS ?? (transport === "shm" ? 60 : 20)); // about 0.5 s (shm)
  const options = { "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' };
  await using prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
  await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
  await using decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await decoder.init({ ...options, "llm.SyncKvCacheWaitTime": "10000", "llmdd.transport": transport });
  const P = prompt.cacheManager, D = decoder.cacheManager;
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = prompt.clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
  const [status] = await decoder.linkClusters([cluster], 5000);
  assert.equal(status, LLMStatusCode.LLM_SUCCESS);
  const tally = new Map<string, number>();
  try {
    const details = await fc.check(
      fc.asyncProperty(fc.array(pullCommand, { minLength: 1, maxLength: 25 }), async (commands) => {
        // Both sides' caches, fresh for each run, filled with bytes distinct per cache, tensor and byte.
        const promptCaches: Cache[] = [];
        const decoderCaches: Cache[] = [];
        let reallocs = 0;
        const model: PullModel = { prompt: [], decoder: [], promptLive: [], keys: new Set(REQUESTS) };
        const fill = (views: Uint8Array[], salt: number) =>
          views.map((view, t) => {
            for (let i = 0; i < view.length; i++) view[i] = (salt * 53 + t * 17 + i * 3 + (i >> 5)) & 0xFF;
            return view.slice();
          });
        try {
          for (const [i, shape] of PROMPT_CACHES.entries()) {
            const cache = shape.blocks
              ? await P.allocateBlocksCache(descOf(shape), new BlocksCacheKey(prompt.clusterId, i))
              : await P.allocateCache(descOf(shape), REQUESTS.map((req) => new CacheKey(prompt.clusterId, req)));
            promptCaches.push(cache);
            model.prompt.push(fill(viewsOf(P, cache), i));
            model.promptLive.push(true);
          }
          for (const [i, shape] of DECODER_CACHES.entries()) {
            const cache = shape.blocks
              ? await D.allocateBlocksCache(descOf(shape))
              : await D.allocateCache(descOf(shape));
            decoderCaches.push(cache);
            model.decoder.push(fill(viewsOf(D, cache), 100 + i));
            if (shape.freed) {
              if (shape.blocks) await D.deallocateBlocksCache(cache);
              else await D.deallocateCache(cache);
            }
          }
          const world: PullWorld = {
            prompt: prompt.clusterId,
            unlinked: prompt.clusterId + 1_000_000n,
            rowsCacheId: promptCaches[ROWS].cacheId,
          };
          const check = (after: string) => {
            for (const [i, cache] of decoderCaches.entries()) {
              if (DECODER_CACHES[i].freed) continue;
              viewsOf(D, cache).forEach((bytes, t) =>
                assert.deepEqual(bytes, model.decoder[i][t], `${DECODER_CACHES[i].name} tensor ${t} after ${after}`)
              );
            }
            for (const [i, cache] of promptCaches.entries()) {
              if (!model.promptLive[i]) continue;
              viewsOf(P, cache).forEach((bytes, t) =>
                assert.deepEqual(bytes, model.prompt[i][t], `${PROMPT_CACHES[i].name} tensor ${t} after ${after}`)
              );
            }
          };
          /** Predicts a pull (applying a predicted success to the model) and starts it. */
          const start = (c: PullCall) => {
            const prediction = c.kind === "pullBlocks" ? predictPullBlocks(model, c) : predictPullCache(model, c);
            if (prediction.want === "ok") prediction.apply?.();
            const key = keyOf(world, c.key);
            const dst = decoderCaches[c.slot];
            const got = outcomeOf(() =>
              c.kind === "pullBlocks"
                ? D.pullBlocks(key, dst, c.src as number[], c.dst as number[], optionsOf(c.layers))
                : D.pullCache(key as CacheKey, dst, c.batchIndex as number, c.size as number, optionsOf(c.layers))
            );
            return { label: `${c.kind}(${fc.stringify(c)})`, kind: `${c.kind} ${c.key.kind}`, prediction, got };
          };
          const judge = (label: string, kind: string, want: PullWant, got: PullWant) => {
            const name = `${kind} → ${wantName(got)}`;
            tally.set(name, (tally.get(name) ?? 0) + 1);
            assert.equal(wantName(got), wantName(want), `${label}: expected ${wantName(want)}, got ${wantName(got)}`);
          };
          for (const c of commands) {
            if (c.kind === "pullBlocks" || c.kind === "pullCache" || c.kind === "burst") {
              // A burst: several pulls started at once, which the engine runs in
              // the order they were made (its FIFO mutex), as the model predicts them.
              const calls = (c.kind === "burst" ? c.calls : [c]).map(start);
              const label = calls.map((call) => call.label).join(", ");
              for (const call of calls) {
                judge(
                  c.kind === "burst" ? `burst: ${call.label} in ${label}` : label,
                  call.kind,
                  call.prediction.want,
                  await call.got,
                );
              }
              check(label);
            } else if (c.kind === "promptRealloc") {
              // The PROMPT moves a blocks cache: frees it, and allocates it again
              // under the same key (maybe elsewhere in its pool) with new bytes.
              if (model.promptLive[c.cache]) {
                await P.deallocateBlocksCache(promptCaches[c.cache]);
                model.promptLive[c.cache] = false;
              }
              if (!c.gap) {
                // A spacer takes the memory just freed, so that the cache lands elsewhere.
                const shape = PROMPT_CACHES[c.cache];
                const spacer = await P.allocateBlocksCache(descOf(shape));
                viewsOf(P, spacer).forEach((bytes) => bytes.fill(0x5A));
                promptCaches[c.cache] = await P.allocateBlocksCache(
                  descOf(shape),
                  new BlocksCacheKey(prompt.clusterId, c.cache),
                );
                await P.deallocateBlocksCache(spacer);
                model.prompt[c.cache] = fill(viewsOf(P, promptCaches[c.cache]), 7 * ++reallocs);
                model.promptLive[c.cache] = true;
              }
              check(`promptRealloc(${c.cache}${c.gap ? ", gap" : ""})`);
            } else if (c.kind === "promptWrite") {
              if (!model.promptLive[c.cache]) continue;
              const bytes = viewsOf(P, promptCaches[c.cache]);
              const t = c.tensor % bytes.length, at = c.at % bytes[t].length;
              bytes[t][at] = c.value;
              model.prompt[c.cache][t][at] = c.value;
              check(`a write at the PROMPT`);
            } else {
              // A barrier first: a pull the PROMPT answers after every earlier
              // one on the link, so that keys consumed by earlier pulls are gone.
              assert.equal(
                await outcomeOf(() => D.pullCache(new CacheKey(prompt.clusterId, 0xBA77_1E55n), decoderCaches[3])),
                LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
              );
              const want = model.keys.has(c.req) ? "ok" : LLMStatusCode.LLM_KV_CACHE_NOT_EXIST;
              const got = await outcomeOf(() => P.removeCacheKey(new CacheKey(prompt.clusterId, c.req)));
              judge(`removeCacheKey(request ${c.req})`, "removeCacheKey", want, got);
              model.keys.delete(c.req);
              check(`removeCacheKey(request ${c.req})`);
            }
          }
          // The end: the PROMPT holds the keys the model says, and no other.
          assert.equal(
            await outcomeOf(() => D.pullCache(new CacheKey(prompt.clusterId, 0xBA77_1E55n), decoderCaches[3])),
            LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
          );
          for (const req of REQUESTS) {
            const got = await outcomeOf(() => P.removeCacheKey(new CacheKey(prompt.clusterId, req)));
            const want = model.keys.has(req) ? "ok" : LLMStatusCode.LLM_KV_CACHE_NOT_EXIST;
            model.keys.delete(req);
            assert.equal(wantName(got), wantName(want), `removeCacheKey(request ${req}) at the end`);
          }
        } finally {
          // After a failure: a barrier (the PROMPT consumes a key when the
          // pull's last message arrives, after the pull has returned here),
          // the keys still held, then the caches.
          if (decoderCaches.length > 3) {
            await outcomeOf(() => D.pullCache(new CacheKey(prompt.clusterId, 0xBA77_1E55n), decoderCaches[3]));
          }
          for (const req of model.keys) await outcomeOf(() => P.removeCacheKey(new CacheKey(prompt.clusterId, req)));
          for (const [i, cache] of decoderCaches.entries()) {
            if (DECODER_CACHES[i].freed) continue;
            if (cache.isBlocksCache) await D.deallocateBlocksCache(cache);
            else await D.deallocateCache(cache);
          }
          for (const [i, cache] of promptCaches.entries()) {
            if (model.promptLive[i] === false) continue;
            if (cache.isBlocksCache) await P.deallocateBlocksCache(cache);
            else await P.deallocateCache(cache);
          }
        }
      }),
      { seed, numRuns: runs, endOnFailure: process.env.LLMDD_FUZZ_SHRINK === "0" },
    );
    if (details.failed) {
      const error = details.errorInstance;
      assert.fail(
        `block pull fuzz (${transport}) failed with seed ${seed} (LLMDD_FUZZ_SEED=${seed} replays it)\n` +
          `${fc.defaultReportMessage(details)}\n` +
          `error: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  } finally {
    await decoder.unlinkClusters([cluster], 3000);
  }
  console.log(
    `block pull fuzz (${transport}): seed ${seed}, ${runs} runs, ${
      [...tally.values()].reduce((a, b) => a + b, 0)
    } calls; outcomes: ${[...tally].sort().map(([k, n]) => `${k} ×${n}`).join(", ")}`,
  );
}

// pushCache and pushBlocks from a linked DECODER, against the model of
// test/support/fuzz/block_pushes.ts: random sequences of pushes from the
// DECODER's pooled and registered caches (remote-accessible or not, freed)
// into a PROMPT's pooled caches (the shared mapping) and registered ones (the
// link's socket), by BlocksCacheKey and CacheKeyByIdAndIndex, with layer
// ranges in and out of range, block lists in and out of range, of unequal
// lengths, negative or not integers, unknown keys and ids, batch indexes out
// of range, destinations without remote access (registered so, or in the pool
// of a second PROMPT without llm.EnableRemoteCacheAccessible), destinations
// the PROMPT freed or unregistered meanwhile, an unlinked cluster, and a
// DECODER without remote access; writes on both sides, and bursts of pushes
// started at once. Each call's outcome (success or the exact error) is
// predicted; after every command every live cache on both sides reads back
// what the model holds. Same seed handling as above.
test("pushCache and pushBlocks from a linked DECODER match a model of both sides' bytes", async () => {
  const seed = process.env.LLMDD_FUZZ_SEED ? Number(process.env.LLMDD_FUZZ_SEED) : Date.now() % 2 ** 31;
  const runs = Number(process.env.LLMDD_FUZZ_RUNS ?? 40);
  const options = (remote: boolean) => ({
    "llm.EnableCacheManager": "1",
    "llm.EnableRemoteCacheAccessible": remote ? "1" : "0",
    "llm.MemPoolConfig": '{"memory_size": 1048576}',
  });
  await using p = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
  await p.init({ ...options(true), "llm.listenIpInfo": "127.0.0.1:0" });
  await using q = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
  await q.init({ ...options(false), "llm.listenIpInfo": "127.0.0.1:0" });
  await using d = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await d.init({ ...options(true), "llm.SyncKvCacheWaitTime": "10000" });
  await using n = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await n.init(options(false));
  const PM = p.cacheManager, QM = q.cacheManager, DM = d.cacheManager;
  const descOfPush = (shape: PushShape) => new CacheDesc(shape.tensors, [shape.batch, shape.row], DataType.DT_UINT8);
  const memoryOf = (shape: PushShape) =>
    Array.from({ length: shape.tensors }, () => new Uint8Array(shape.batch * shape.row));
  const fill = (views: Uint8Array[], salt: number) =>
    views.map((view, t) => {
      for (let i = 0; i < view.length; i++) view[i] = (salt * 59 + t * 19 + i * 5 + (i >> 4)) & 0xFF;
      return view.slice();
    });
  // The DECODER's sources and Q's caches: made once, before the link.
  const dCaches: Cache[] = [];
  for (const shape of D_CACHES) {
    const desc = descOfPush(shape);
    const cache = shape.registered
      ? shape.blocks
        ? await DM.registerBlocksCache(desc, memoryOf(shape), undefined, shape.remote)
        : await DM.registerCache(desc, memoryOf(shape), undefined, shape.remote)
      : shape.blocks
      ? await DM.allocateBlocksCache(desc)
      : await DM.allocateCache(desc);
    if (shape.freed) {
      if (shape.blocks) await DM.deallocateBlocksCache(cache);
      else await DM.deallocateCache(cache);
    }
    dCaches.push(cache);
  }
  const qCaches: Cache[] = [];
  for (const shape of Q_CACHES) {
    qCaches.push(
      shape.blocks
        ? await QM.allocateBlocksCache(descOfPush(shape), new BlocksCacheKey(q.clusterId, shape.model!))
        : await QM.allocateCache(descOfPush(shape)),
    );
  }
  const clusters = [p, q].map((prompt) => {
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = prompt.clusterId;
    cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
    return cluster;
  });
  const [status] = await d.linkClusters(clusters, 5000);
  assert.equal(status, LLMStatusCode.LLM_SUCCESS);
  const tally = new Map<string, number>();
  // Fixed cases, run first every time: what the fuzz found.
  const row = (srcBatchIndex: number): PushCommand => ({
    kind: "pushCache",
    noRemote: false,
    key: { kind: "byId", cluster: "P", cache: 4, batchIndex: 1 },
    src: 3,
    srcBatchIndex,
    layers: null,
    size: -1,
  });
  const examples: [PushFuzzCommand[]][] = [
    // srcBatchIndex 2^31 and 2^32 - 1 (upstream's uint32) reached the native
    // int32 wrapped on Node and Bun, whose error told a negative index (seed 3,
    // 400 runs), and on Deno threw its FFI's untyped "Invalid FFI i32 type".
    [[row(2 ** 31), row(2 ** 32 - 1), row(2)]],
    // The same through transferCacheAsync (its layers go through the same native push).
    [[{
      kind: "transfer",
      src: 3,
      targets: [{
        key: { kind: "byId", cluster: "P", cache: 4, batchIndex: 0 },
        srcStart: 0,
        layers: 1,
        dstStart: 1,
        srcBatchIndex: 2 ** 31,
      }],
      wrongConfig: false,
      srcBlocks: undefined,
      dstBlocks: undefined,
      refuseAt: null,
      throws: false,
    }]],
    // The PROMPT unregisters registered memory a push has just written: without
    // the barrier above it may be refused as in use (seeds 1 and 3 of 400 runs hit it).
    [[row(1), { kind: "promptFree", cache: 4 }, row(0)]],
  ];
  try {
    const details = await fc.check(
      fc.asyncProperty(fc.array(pushFuzzCommand, { minLength: 1, maxLength: 25 }), async (commands) => {
        const model: PushModel = { p: [], q: [], d: [], pLive: [] };
        const pCaches: Cache[] = [];
        // A push resolves once its bytes are written; the PROMPT lets go of the
        // destination when the push's last message (DONE) arrives, a moment
        // later: until then unregisterCache refuses (in use). A barrier, a pull
        // the PROMPT answers after every earlier message on the link, waits for it.
        const barrier = async () =>
          assert.equal(
            await outcomeOf(() => DM.pullCache(new CacheKey(p.clusterId, 0xBA77_1E55n), dCaches[3])),
            LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
          );
        try {
          for (const [i, shape] of P_CACHES.entries()) {
            const desc = descOfPush(shape);
            const key = shape.model === undefined ? undefined : new BlocksCacheKey(p.clusterId, shape.model);
            const cache = shape.registered
              ? shape.blocks
                ? await PM.registerBlocksCache(desc, memoryOf(shape), key, shape.remote)
                : await PM.registerCache(desc, memoryOf(shape), undefined, shape.remote)
              : shape.blocks
              ? await PM.allocateBlocksCache(desc, key)
              : await PM.allocateCache(desc);
            pCaches.push(cache);
            model.p.push(fill(viewsOf(PM, cache), i));
            model.pLive.push(true);
          }
          qCaches.forEach((cache, i) => model.q.push(fill(viewsOf(QM, cache), 50 + i)));
          dCaches.forEach((cache, i) => model.d.push(D_CACHES[i].freed ? [] : fill(viewsOf(DM, cache), 100 + i)));
          const world: PushWorld = {
            p: p.clusterId,
            q: q.clusterId,
            unlinked: p.clusterId + 1_000_000n,
            pIds: pCaches.map((c) => c.cacheId),
            qIds: qCaches.map((c) => c.cacheId),
          };
          const check = (after: string) => {
            const sides: [
              string,
              CacheManager,
              Cache[],
              readonly PushShape[],
              Uint8Array[][],
              (i: number) => boolean,
            ][] = [
              ["P", PM, pCaches, P_CACHES, model.p, (i) => model.pLive[i]],
              ["Q", QM, qCaches, Q_CACHES, model.q, () => true],
              ["D", DM, dCaches, D_CACHES, model.d, (i) => !D_CACHES[i].freed],
            ];
            for (const [, manager, caches, shapes, bytes, live] of sides) {
              for (const [i, cache] of caches.entries()) {
                if (!live(i)) continue;
                viewsOf(manager, cache).forEach((view, t) =>
                  assert.deepEqual(view, bytes[i][t], `${shapes[i].name} tensor ${t} after ${after}`)
                );
              }
            }
          };
          const start = (c: PushCall) => {
            const prediction = predictPush(model, c);
            if (prediction.want === "ok") prediction.apply?.();
            const manager = c.noRemote ? n.cacheManager : DM;
            const key = pushKeyOf(world, c.key);
            const src = dCaches[c.src];
            const got = pushOutcomeOf(() =>
              c.kind === "pushBlocks"
                ? manager.pushBlocks(
                  key as BlocksCacheKey,
                  src,
                  c.srcBlocks as number[] | undefined,
                  c.dstBlocks as number[] | undefined,
                  optionsOf(c.layers),
                )
                : manager.pushCache(
                  key as CacheKeyByIdAndIndex,
                  src,
                  c.srcBatchIndex as number | undefined,
                  c.layers?.src as LayerRange | undefined,
                  c.layers?.dst as LayerRange | undefined,
                  c.size as number | undefined,
                  c.layers?.perLayer as number | undefined,
                )
            );
            return { label: `${c.kind}(${fc.stringify(c)})`, kind: `${c.kind} ${c.key.kind}`, prediction, got };
          };
          for (const c of commands) {
            if (c.kind === "pushBlocks" || c.kind === "pushCache" || c.kind === "pushBurst") {
              // A burst: pushes started at once, run in the order made (the engine's FIFO mutex).
              const calls = (c.kind === "pushBurst" ? c.calls : [c]).map(start);
              const label = calls.map((call) => call.label).join(", ");
              for (const call of calls) {
                const { want: got, message } = await call.got;
                const { want, why } = call.prediction;
                const name = `${call.kind} → ${wantName(got)}${got === want && why ? ` (${why})` : ""}`;
                tally.set(name, (tally.get(name) ?? 0) + 1);
                const where: string = c.kind === "pushBurst" ? `burst: ${call.label} in ${label}` : label;
                assert.equal(wantName(got), wantName(want), `${where}: expected ${wantName(want)}, got ${message}`);
                if (why !== undefined && !message.includes(why)) {
                  assert.fail(`${where}: expected the error "…${why}…", got ${message}`);
                }
              }
              check(label);
            } else if (c.kind === "transfer") {
              // Layer by layer, released by a synchronous synchronizer (which may refuse a layer).
              const prediction = predictTransfer(model, c);
              const asked: number[] = [];
              const synchronizer = {
                synchronizeLayer(layer: number): boolean {
                  asked.push(layer);
                  if (layer !== c.refuseAt) return true;
                  if (c.throws) throw new Error(`layer ${layer} is not ready`);
                  return false;
                },
              };
              const configs: unknown[] = c.targets.map((t) =>
                new TransferWithCacheKeyConfig(
                  pushKeyOf(world, t.key),
                  [t.srcStart, t.srcStart + t.layers],
                  [t.dstStart, t.dstStart + t.layers],
                  t.srcBatchIndex,
                )
              );
              if (c.wrongConfig) configs.push({ cacheKey: new BlocksCacheKey(p.clusterId, 0) });
              const label = `transferCacheAsync(${fc.stringify(c)})`;
              let task: CacheTask | undefined;
              const started = await pushOutcomeOf(() => {
                task = DM.transferCacheAsync(
                  dCaches[c.src],
                  synchronizer,
                  configs as TransferWithCacheKeyConfig[],
                  c.srcBlocks as number[] | undefined,
                  c.dstBlocks as number[] | undefined,
                );
              });
              const want = prediction.throws?.want ?? "ok";
              assert.equal(
                wantName(started.want),
                wantName(want),
                `${label}: expected ${wantName(want)}, got ${started.message}`,
              );
              const why = prediction.throws?.why;
              if (why !== undefined && !started.message.includes(why)) {
                assert.fail(`${label}: expected the error "…${why}…", got ${started.message}`);
              }
              if (task) {
                const status = await task.synchronize(20_000);
                const results = await task.getResults(20_000);
                const name = `transferCacheAsync → ${wantName(status)}`;
                tally.set(name, (tally.get(name) ?? 0) + 1);
                assert.deepEqual(asked, prediction.asked, `${label}: the layers asked of the synchronizer`);
                assert.deepEqual(
                  results.map((r) => r === undefined ? "none" : wantName(r)),
                  prediction.results.map((r) => r === undefined ? "none" : wantName(r)),
                  `${label}: getResults`,
                );
                assert.equal(wantName(status), wantName(prediction.synchronize), `${label}: synchronize`);
              } else {
                const name = `transferCacheAsync → ${wantName(started.want)}${why ? ` (${why})` : ""}`;
                tally.set(name, (tally.get(name) ?? 0) + 1);
              }
              check(label);
            } else if (c.kind === "promptFree") {
              if (!model.pLive[c.cache]) continue;
              const cache = pCaches[c.cache];
              await barrier();
              if (P_CACHES[c.cache].registered) await PM.unregisterCache(cache.cacheId);
              else if (cache.isBlocksCache) await PM.deallocateBlocksCache(cache);
              else await PM.deallocateCache(cache);
              model.pLive[c.cache] = false;
              check(`promptFree(${P_CACHES[c.cache].name})`);
            } else {
              const [manager, caches, bytes, live] = c.kind === "promptWrite"
                ? [PM, pCaches, model.p, model.pLive[c.cache]]
                : [DM, dCaches, model.d, !D_CACHES[c.cache].freed];
              if (!live) continue;
              const views = viewsOf(manager, caches[c.cache]);
              const t = c.tensor % views.length, at = c.at % views[t].length;
              views[t][at] = c.value;
              bytes[c.cache][t][at] = c.value;
              check(`${c.kind}(${c.cache}, ${t}, ${at})`);
            }
          }
        } finally {
          await barrier();
          for (const [i, cache] of pCaches.entries()) {
            if (!model.pLive[i]) continue;
            if (P_CACHES[i].registered) await PM.unregisterCache(cache.cacheId);
            else if (cache.isBlocksCache) await PM.deallocateBlocksCache(cache);
            else await PM.deallocateCache(cache);
          }
        }
      }),
      { seed, numRuns: runs, endOnFailure: process.env.LLMDD_FUZZ_SHRINK === "0", examples },
    );
    if (details.failed) {
      const error = details.errorInstance;
      assert.fail(
        `block push fuzz failed with seed ${seed} (LLMDD_FUZZ_SEED=${seed} replays it)\n` +
          `${fc.defaultReportMessage(details)}\n` +
          `error: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  } finally {
    await d.unlinkClusters(clusters, 3000);
  }
  console.log(
    `block push fuzz: seed ${seed}, ${runs} runs, ${[...tally.values()].reduce((a, b) => a + b, 0)} calls; outcomes: ${
      [...tally].sort().map(([k, v]) => `${k} ×${v}`).join(", ")
    }`,
  );
});
