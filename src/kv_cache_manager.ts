/**
 * `KvCacheManager`: allocate, read, copy and free KV caches (upstream
 * `KvCacheManager`). Every call that touches caches runs under the engine's
 * FIFO mutex, within its deadline.
 *
 * @module
 */
import { CacheDesc, layoutTag } from "./cache_desc.ts";
import { CacheKey, CacheKeyByIdAndIndex } from "./cache_key.ts";
import { newTypedArray, typedArrayOf } from "./data_type.ts";
import { type CacheRecord, type Engine, revokeViews } from "./engine.ts";
import { LLMException, ValueError } from "./errors.ts";
import { cacheRecord, KvCache, newKvCache } from "./kv_cache.ts";
import { type Operation, runExclusive } from "./operation.ts";
import { LLMRole } from "./enums.ts";
import { LLMStatusCode } from "./status.ts";
import { leasedTensor, Tensor } from "./tensor.ts";
import { describe, requireArray, requireInstance, requireInt32, requireIntIn } from "./validate.ts";

/**
 * Copies of at least this many bytes run off the JavaScript thread. Below it a
 * copy takes less time than handing it to another thread would: handing off
 * costs 45–100 µs here, copying 1 MiB about 80 µs (bench/, section (d)).
 */
export const OFF_THREAD_BYTES = 1 << 20;

// llmdd_cache_pull key kinds and "whole row" (ffi/include/llmdd.h).
const KEY_CACHE_KEY = 0;
const KEY_BY_ID = 1;
const WHOLE_ROW = 0xFFFF_FFFF_FFFF_FFFFn;

/** Options of the calls that can wait. */
export interface CallOptions {
  /** Aborts the call while it waits or runs; it rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Bytes in use and capacity of one device's pool. */
export interface PoolUsage {
  /** The device's id. */
  deviceId: number;
  /** Bytes held by caches (including alignment). */
  usedBytes: number;
  /** The pool's size (`ge.flowGraphMemMaxSize`). */
  capacityBytes: number;
}

/** How a manager reaches its instance's engine. */
export interface EngineAccess {
  /** The engine, or throws the error for "not initialized" / "finalized". */
  current(): Engine;
  /** Whether the instance is initialized and not finalized. */
  initialized(): boolean;
}

const MANAGER = Symbol("KvCacheManager.construct");

function signalOf(options: CallOptions | undefined): AbortSignal | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`options must be an object, got ${describe(options)}`);
  }
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError(`options.signal must be an AbortSignal, got ${describe(signal)}`);
  }
  return signal;
}

function paramInvalid(message: string): LLMException {
  return new LLMException(LLMStatusCode.LLM_PARAM_INVALID, message);
}

/** The record of a cache that must be live in `engine`, checked when the call runs. */
function liveRecord(engine: Engine, cache: KvCache): CacheRecord {
  engine.assertLive();
  const record = cacheRecord(cache);
  if (record.engine !== engine) {
    throw new LLMException(
      LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
      `cache ${cache.cacheId} belongs to another LLMDataDist instance`,
    );
  }
  if (engine.caches.get(record.cacheId) !== record) {
    throw new LLMException(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, `cache ${cache.cacheId} was deallocated`);
  }
  return record;
}

function checkTensorIndex(cache: KvCache, tensorIndex: unknown): number {
  const index = requireInt32(tensorIndex, "tensorIndex");
  const count = cache.cacheDesc.numTensors;
  if (index < 0 || index >= count) throw paramInvalid(`tensorIndex ${index} is out of range [0, ${count})`);
  return index;
}

/**
 * Manages the KV caches of one `LLMDataDist` instance; get it from
 * `LLMDataDist.kvCacheManager`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "./mod.ts";
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
 * const manager = dd.kvCacheManager;
 * await using cache = await manager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST));
 * (manager.getCacheTensorViews(cache, 1)[0].data as Float32Array).fill(1.5);
 * const [copy] = await manager.getCacheTensors(cache, 1);
 * console.log(copy.data[0]); // 1.5
 * ```
 */
export class KvCacheManager {
  readonly #access: EngineAccess;

  /** @internal Managers come from `LLMDataDist.kvCacheManager`; this throws for anyone else. */
  constructor(token: unknown, access: EngineAccess) {
    if (token !== MANAGER) throw new TypeError("KvCacheManager objects come from LLMDataDist.kvCacheManager");
    this.#access = access;
  }

  /** Whether the instance is initialized (and not finalized). */
  isInitialized(): boolean {
    return this.#access.initialized();
  }

  /**
   * Allocates a cache described by `cacheDesc` on every device of the
   * instance. `cacheKeys`, one per batch row from row 0, name the rows for
   * pulls. Rejects with `LLM_DEVICE_OUT_OF_MEMORY` when a pool is full.
   * As with device memory, a new cache is not cleared: it may hold what a
   * freed cache of this instance left there. Like every cache call it waits
   * its turn within `syncKvTimeout`; `options.signal` stops the wait.
   */
  async allocateCache(cacheDesc: CacheDesc, cacheKeys?: readonly CacheKey[], options?: CallOptions): Promise<KvCache> {
    const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
    const signal = signalOf(options);
    const keys = (cacheKeys === undefined ? [] : requireArray(cacheKeys, "cacheKeys", "CacheKey"))
      .map((key, i) => requireInstance(key, CacheKey, `cacheKeys[${i}]`));
    if (keys.length > desc.batchSize) {
      throw paramInvalid(`${keys.length} cache keys given for a batch of ${desc.batchSize}`);
    }
    if (keys.length > 0 && desc.batchDimIndex !== 0) {
      throw paramInvalid(`cache keys name batch rows, which needs the batch as dimension 0, got ${desc.batchDimIndex}`);
    }
    const engine = this.#access.current();
    if (keys.length > 0 && engine.role === LLMRole.DECODER) {
      throw paramInvalid("a DECODER does not hold cache keys: only PROMPT and MIX instances serve pulls");
    }
    return await runExclusive(engine.mutex, "allocateCache", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      // Refused before the address array (devices × numTensors entries) is made.
      const bytesPerDevice = desc.numTensors * Math.ceil(desc.size / 64) * 64;
      if (bytesPerDevice > engine.poolBytes) {
        throw new LLMException(
          LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY,
          `allocateCache(${desc}): ${bytesPerDevice} bytes per device exceed the pool of ${engine.poolBytes}`,
        );
      }
      const { lib } = engine;
      const devices = engine.deviceIds.length;
      const addrs = new BigUint64Array(devices * desc.numTensors);
      const keyWords = keys.length === 0 ? null : new BigUint64Array(keys.length * 3);
      keys.forEach((key, i) => keyWords!.set([key.promptClusterId, key.reqId, key.modelId], i * 3));
      const id = new BigUint64Array(1);
      lib.check(
        lib.fn.llmdd_cache_allocate(
          engine.handle,
          desc.numTensors,
          BigInt(desc.size),
          BigInt(desc.batchDimIndex === 0 ? desc.batchSize : 1),
          layoutTag(desc),
          desc.placement,
          keyWords,
          keys.length,
          id,
          addrs,
          addrs.length,
        ),
        `allocateCache(${desc}) failed`,
      );
      const record: CacheRecord = {
        engine,
        cacheId: id[0],
        desc,
        sizeBytes: BigInt(desc.size),
        addrs: Object.freeze(
          Array.from(
            { length: devices },
            (_, d) => Object.freeze([...addrs.subarray(d * desc.numTensors, (d + 1) * desc.numTensors)]),
          ),
        ),
        lease: { revoked: false, cacheId: id[0] },
        views: [],
      };
      engine.caches.set(record.cacheId, record);
      const cache = newKvCache(record, (cache) => this.#dispose(cache));
      engine.track(cache, record.cacheId);
      return cache;
    });
  }

  /**
   * Releases a cache. Its memory returns to the pools once no cache key names
   * it; its views are revoked at once.
   */
  async deallocateCache(cache: KvCache, options?: CallOptions): Promise<void> {
    requireInstance(cache, KvCache, "cache");
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "deallocateCache", engine.syncKvTimeout, signal, () => {
      const record = liveRecord(engine, cache);
      revokeViews(record);
      engine.caches.delete(record.cacheId);
      engine.untrack(cache);
      engine.lib.check(
        engine.lib.fn.llmdd_cache_deallocate(engine.handle, record.cacheId),
        `deallocateCache(${cache.cacheId}) failed`,
      );
    });
  }

  /**
   * Reads tensor `tensorIndex` of `cache`: one host copy per device of the
   * instance, in device order, each owned by JavaScript (valid after the
   * cache is freed). Calls are served one at a time in arrival order; each
   * must finish within `syncKvTimeout` of being made (waiting counts) or
   * rejects with `LLM_WAIT_PROCESS_TIMEOUT`; `options.signal` aborts it.
   *
   * Errors: `TypeError` (cache not a KvCache, tensorIndex not an integer),
   * `ValueError` (tensorIndex outside int32), `LLMException` with
   * `LLM_PARAM_INVALID` (index out of range), `LLM_KV_CACHE_NOT_EXIST`
   * (freed or foreign cache), `LLM_ENGINE_FINALIZED`, `LLM_WAIT_PROCESS_TIMEOUT`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "./mod.ts";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "ge.exec.deviceId": "0;1", "ge.flowGraphMemMaxSize": String(1 << 20) });
   * await using cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_INT32));
   * const tensors = await dd.kvCacheManager.getCacheTensors(cache, 0);
   * console.log(tensors.length, tensors[1].deviceId, tensors[0].data.length); // 2 1 32
   * ```
   */
  getCacheTensors(cache: KvCache, tensorIndex = 0, options?: CallOptions): Promise<Tensor[]> {
    let engine: Engine;
    let index: number;
    let signal: AbortSignal | undefined;
    try {
      requireInstance(cache, KvCache, "cache");
      requireInt32(tensorIndex, "tensorIndex");
      signal = signalOf(options);
      engine = this.#access.current();
      index = checkTensorIndex(cache, tensorIndex);
    } catch (err) {
      return Promise.reject(err);
    }
    // The common case: a small tensor and nobody waiting. The copy runs at once,
    // under the lock and within the call, so no deadline can pass meanwhile.
    if (cache.cacheDesc.size < OFF_THREAD_BYTES && !signal?.aborted && engine.mutex.tryLock()) {
      try {
        return Promise.resolve(readNow(liveRecord(engine, cache), index));
      } catch (err) {
        return Promise.reject(err);
      } finally {
        engine.mutex.unlock();
      }
    }
    return runExclusive(engine.mutex, "getCacheTensors", engine.syncKvTimeout, signal, (op) => {
      const record = liveRecord(engine, cache);
      return record.desc.size < OFF_THREAD_BYTES ? readNow(record, index) : readOffThread(record, index, op);
    });
  }

  /**
   * Zero-copy, writable views of tensor `tensorIndex` of `cache`, one per
   * device, where the memory is host-accessible (the host backend). Freeing
   * the cache or finalizing revokes them: their buffers are detached where the
   * runtime allows (Deno, Bun) and `Tensor.data` throws everywhere.
   * Not serialized: views are made without touching the cache's memory.
   */
  getCacheTensorViews(cache: KvCache, tensorIndex = 0): Tensor[] {
    requireInstance(cache, KvCache, "cache");
    requireInt32(tensorIndex, "tensorIndex");
    const engine = this.#access.current();
    const index = checkTensorIndex(cache, tensorIndex);
    const record = liveRecord(engine, cache);
    if (!engine.hostAccessible) {
      throw new LLMException(
        LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
        "this backend's device memory is not host-accessible; use getCacheTensors for copies",
      );
    }
    const { desc } = record;
    return engine.deviceIds.map((deviceId, d) => {
      const slot = d * desc.numTensors + index;
      const buffer = record.views[slot] ??= engine.lib.raw.view(record.addrs[d][index], desc.size);
      return leasedTensor(desc.shape, desc.dataType, typedArrayOf(desc.dataType, buffer), deviceId, record.lease);
    });
  }

  /**
   * Copies one batch row of every tensor of `src` into one batch row of the
   * same tensor of `dst`, on every device: bytes `[offset, offset + size)` of
   * row `srcBatchIndex` to the same bytes of row `dstBatchIndex` (`size = -1`:
   * to the end of the row). The descs must be equal except in batch size, with
   * the batch as dimension 0.
   */
  async copyCache(
    dst: KvCache,
    src: KvCache,
    dstBatchIndex = 0,
    srcBatchIndex = 0,
    offset = 0,
    size = -1,
    options?: CallOptions,
  ): Promise<void> {
    requireInstance(dst, KvCache, "dst");
    requireInstance(src, KvCache, "src");
    requireInt32(dstBatchIndex, "dstBatchIndex");
    requireInt32(srcBatchIndex, "srcBatchIndex");
    requireIntIn(offset, "offset", 0, Number.MAX_SAFE_INTEGER);
    requireIntIn(size, "size", -1, Number.MAX_SAFE_INTEGER);
    if (size === 0) throw new ValueError("size must be -1 (the rest of the row) or positive, got 0");
    const signal = signalOf(options);
    const engine = this.#access.current();
    const d = dst.cacheDesc;
    const s = src.cacheDesc;
    if (!d.isCompatibleWith(s)) throw paramInvalid(`the caches' descs differ beyond batch size: ${d} vs ${s}`);
    if (d.batchDimIndex !== 0) throw paramInvalid(`copyCache needs the batch as dimension 0, got ${d.batchDimIndex}`);
    if (dstBatchIndex < 0 || dstBatchIndex >= d.batchSize) {
      throw paramInvalid(`dstBatchIndex ${dstBatchIndex} is out of range [0, ${d.batchSize})`);
    }
    if (srcBatchIndex < 0 || srcBatchIndex >= s.batchSize) {
      throw paramInvalid(`srcBatchIndex ${srcBatchIndex} is out of range [0, ${s.batchSize})`);
    }
    const rowBytes = d.size / d.batchSize;
    const bytes = size === -1 ? rowBytes - offset : size;
    if (offset >= rowBytes || offset + bytes > rowBytes) {
      throw paramInvalid(`offset ${offset} + size ${bytes} exceeds the row of ${rowBytes} bytes`);
    }
    await runExclusive(engine.mutex, "copyCache", engine.syncKvTimeout, signal, (op) => {
      const to = liveRecord(engine, dst);
      const from = liveRecord(engine, src);
      const args = [
        engine.handle,
        to.cacheId,
        from.cacheId,
        BigInt(dstBatchIndex * rowBytes + offset),
        BigInt(srcBatchIndex * rowBytes + offset),
        BigInt(bytes),
      ] as const;
      const context = `copyCache(${dst.cacheId} <- ${src.cacheId}) failed`;
      if (bytes * d.numTensors * engine.deviceIds.length >= OFF_THREAD_BYTES) {
        return engine.lib.runLong("llmdd_cache_copy", [...args], op, context);
      }
      engine.lib.check(engine.lib.fn.llmdd_cache_copy(...args, 0n), context);
    });
  }

  /**
   * Pulls one request's batch row from a linked PROMPT into batch row
   * `batchIndex` of every tensor of `cache`, on every device: `size` bytes from
   * the start of each tensor's row (`-1`: the whole row). `cacheKey` is a
   * `CacheKey` (consumed by a successful pull, as upstream) or a
   * `CacheKeyByIdAndIndex`. The descs must be equal except in batch size.
   * Runs under the manager's mutex within `syncKvTimeout`, off the JavaScript
   * thread; `options.signal` aborts it.
   *
   * Errors: `TypeError` / `ValueError` for bad arguments; `LLMException` with
   * `LLM_PARAM_INVALID` (a PROMPT instance, descs differ, batchIndex or size out
   * of range), `LLM_NOT_YET_LINK` (cluster not linked), `LLM_KV_CACHE_NOT_EXIST`
   * (no such key or cache), `LLM_LINK_FAILED` (the PROMPT went away),
   * `LLM_WAIT_PROCESS_TIMEOUT`.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMDataDist, LLMRole } from "./mod.ts";
   * // after decoder.linkClusters([...]) to the PROMPT of cluster 1:
   * declare const decoder: LLMDataDist;
   * const cache = await decoder.kvCacheManager.allocateCache(new CacheDesc(2, [4, 4, 8], DataType.DT_FLOAT16));
   * await decoder.kvCacheManager.pullCache(new CacheKey(1n, 42n), cache, 1, 64); // request 42 → row 1
   * ```
   */
  async pullCache(
    cacheKey: CacheKey | CacheKeyByIdAndIndex,
    cache: KvCache,
    batchIndex = 0,
    size = -1,
    options?: CallOptions,
  ): Promise<void> {
    if (!(cacheKey instanceof CacheKey) && !(cacheKey instanceof CacheKeyByIdAndIndex)) {
      throw new TypeError(`cacheKey must be a CacheKey or a CacheKeyByIdAndIndex, got ${describe(cacheKey)}`);
    }
    requireInstance(cache, KvCache, "cache");
    batchIndex = requireInt32(batchIndex, "batchIndex");
    size = requireIntIn(size, "size", -1, Number.MAX_SAFE_INTEGER);
    if (size === 0) throw new ValueError("size must be -1 (the whole row) or positive, got 0");
    const signal = signalOf(options);
    const engine = this.#access.current();
    if (engine.role === LLMRole.PROMPT) {
      throw paramInvalid("a PROMPT instance cannot pull: pulls are made by DECODER or MIX");
    }
    const desc = cache.cacheDesc;
    if (desc.batchDimIndex !== 0) {
      throw paramInvalid(`pullCache needs the batch as dimension 0, got ${desc.batchDimIndex}`);
    }
    if (batchIndex < 0 || batchIndex >= desc.batchSize) {
      throw paramInvalid(`batchIndex ${batchIndex} is out of range [0, ${desc.batchSize})`);
    }
    const rowBytes = desc.size / desc.batchSize;
    if (size > rowBytes) throw paramInvalid(`size ${size} exceeds the row of ${rowBytes} bytes`);
    const byKey = cacheKey instanceof CacheKey;
    const keyWords = byKey
      ? [cacheKey.promptClusterId, cacheKey.reqId, cacheKey.modelId]
      : [cacheKey.clusterId, BigInt.asUintN(64, cacheKey.cacheId), BigInt(cacheKey.batchIndex)];
    await runExclusive(engine.mutex, "pullCache", engine.syncKvTimeout, signal, (op) => {
      const record = liveRecord(engine, cache);
      return engine.lib.runLong(
        "llmdd_cache_pull",
        [
          engine.handle,
          record.cacheId,
          byKey ? KEY_CACHE_KEY : KEY_BY_ID,
          keyWords[0],
          keyWords[1],
          keyWords[2],
          batchIndex,
          size === -1 ? WHOLE_ROW : BigInt(size),
        ],
        op,
        `pullCache(${cacheKey}) failed`,
      );
    });
  }

  /**
   * Releases a cache key on a PROMPT instance: the row is no longer pullable,
   * and the cache's memory returns to the pool once its id and all its keys are
   * released. Rejects with `LLM_KV_CACHE_NOT_EXIST` for an unknown key.
   */
  async removeCacheKey(cacheKey: CacheKey, options?: CallOptions): Promise<void> {
    requireInstance(cacheKey, CacheKey, "cacheKey");
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "removeCacheKey", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      engine.lib.check(
        engine.lib.fn.llmdd_cache_key_remove(engine.handle, cacheKey.promptClusterId, cacheKey.reqId, cacheKey.modelId),
        `removeCacheKey(${cacheKey}) failed`,
      );
    });
  }

  /** Bytes in use and capacity of each device's pool, in device order. */
  poolUsage(): PoolUsage[] {
    return this.#access.current().poolUsage();
  }

  #dispose(cache: KvCache): Promise<void> {
    const record = cacheRecord(cache);
    if (record.engine.finalized || record.engine.caches.get(record.cacheId) !== record) return Promise.resolve();
    return this.deallocateCache(cache);
  }
}

/** Copies a small tensor on the JavaScript thread. */
function readNow(record: CacheRecord, index: number): Tensor[] {
  const { engine, desc } = record;
  const { lib, handle, deviceIds } = engine;
  const size = desc.size;
  const tensors: Tensor[] = new Array(deviceIds.length);
  for (let d = 0; d < deviceIds.length; d++) {
    const data = newTypedArray(desc.dataType, size);
    const status = lib.fn.llmdd_cache_read(handle, record.cacheId, index, d, data, record.sizeBytes, 0n);
    if (status !== 0) throw lib.error(status, `getCacheTensors(${record.cacheId}, ${index}) failed`);
    tensors[d] = new Tensor(desc.shape, desc.dataType, data, deviceIds[d]);
  }
  return tensors;
}

/** Copies a large tensor off the JavaScript thread, device by device. */
async function readOffThread(record: CacheRecord, index: number, op: Operation): Promise<Tensor[]> {
  const { engine, desc } = record;
  const tensors: Tensor[] = [];
  for (let d = 0; d < engine.deviceIds.length; d++) {
    const bytes = engine.lib.raw.allocate(desc.size);
    await engine.lib.runLong(
      "llmdd_cache_read",
      [engine.handle, record.cacheId, index, d, bytes, record.sizeBytes],
      op,
      `getCacheTensors(${record.cacheId}, ${index}) failed`,
    );
    tensors.push(
      new Tensor(
        desc.shape,
        desc.dataType,
        typedArrayOf(desc.dataType, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength),
        engine.deviceIds[d],
      ),
    );
  }
  return tensors;
}

/** Makes the manager of an instance (internal to `LLMDataDist`). */
export function newKvCacheManager(access: EngineAccess): KvCacheManager {
  return new KvCacheManager(MANAGER, access);
}
