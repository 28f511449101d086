// The stress workload (test/reliability.test.ts runs it short, bench/stress_long.ts
// long): concurrent workers each allocate on a PROMPT, fill, pull into a
// DECODER by key and by id, read back, copy, and free — checking every byte
// they read against what was written for their own request.
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  type KvCache,
  type LLMDataDist,
  type Tensor,
} from "../../mod.ts";
import { fillPattern, firstMismatch } from "./pattern.ts";

/** What a stress run did. */
export interface StressResult {
  workers: number;
  operations: number;
  mismatches: number;
  ms: number;
}

// Row lengths in bytes: mostly small, now and then a row above 1 MiB, whose
// reads and copies run off the JavaScript thread.
const ROWS = [64, 512, 4096, 65_536, 1_200_000];

function bytesOf(tensor: Tensor): Uint8Array {
  return new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.byteLength);
}

/** Runs `workers` concurrent loops of `rounds` rounds; resolves when every call has settled. */
export async function runStress(
  prompt: LLMDataDist,
  decoder: LLMDataDist,
  { workers, rounds, seed }: { workers: number; rounds: number; seed: number },
): Promise<StressResult> {
  let operations = 0;
  let mismatches = 0;
  let random = seed >>> 0;
  const next = () => (random = (Math.imul(random, 1664525) + 1013904223) >>> 0);
  const p = prompt.kvCacheManager;
  const d = decoder.kvCacheManager;
  const op = async <T>(call: Promise<T>): Promise<T> => {
    const value = await call;
    operations++;
    return value;
  };
  const check = (tensor: Tensor, from: number, length: number, request: number, tensorIndex: number, at: number) => {
    if (firstMismatch(bytesOf(tensor), from, length, request, tensorIndex, 0, at) !== -1) mismatches++;
  };

  const worker = async (w: number) => {
    for (let round = 0; round < rounds; round++) {
      const request = w * 10_000 + round;
      const row = ROWS[next() % ROWS.length];
      const desc = new CacheDesc(2, [2, row], DataType.DT_UINT8);
      const keys = [new CacheKey(prompt.clusterId, 2 * request), new CacheKey(prompt.clusterId, 2 * request + 1)];
      const source: KvCache = await op(p.allocateCache(desc, keys));
      for (let t = 0; t < 2; t++) {
        const view = p.getCacheTensorViews(source, t)[0];
        fillPattern(bytesOf(view), request, t, 0);
      }
      const target = await op(d.allocateCache(desc));
      // Row 0 of the request into row 1 by key; row 1 into row 0 by id.
      await op(d.pullCache(keys[0], target, 1));
      await op(d.pullCache(new CacheKeyByIdAndIndex(prompt.clusterId, source.cacheId, 1), target, 0));
      for (let t = 0; t < 2; t++) {
        const [tensor] = await op(d.getCacheTensors(target, t));
        check(tensor, row, row, request, t, 0);
        check(tensor, 0, row, request, t, row);
      }
      const single = await op(d.allocateCache(new CacheDesc(2, [1, row], DataType.DT_UINT8)));
      await op(d.copyCache(single, target, 0, 1));
      const [copied] = await op(d.getCacheTensors(single, 1));
      check(copied, 0, row, request, 1, 0);
      await op(p.deallocateCache(source));
      await op(p.removeCacheKey(keys[1])); // key 0 was consumed by its pull
      await op(d.deallocateCache(target));
      await op(d.deallocateCache(single));
    }
  };

  const start = performance.now();
  await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return { workers, operations, mismatches, ms: performance.now() - start };
}
