/**
 * `KvCacheManager`: allocate, read, copy and free KV caches (upstream
 * `KvCacheManager`). Every call that touches caches runs under the engine's
 * FIFO mutex, within its deadline.
 *
 * @module
 */
import { CacheDesc, layoutTag } from "./cache_desc.ts";
import { CacheKey, CacheKeyByIdAndIndex, INVALID_ID } from "./cache_key.ts";
import { newTypedArray, typedArrayOf } from "./data_type.ts";
import type { CacheRecord, Engine, PullSource } from "./engine.ts";
import { LLMException } from "./errors.ts";
import { cacheRecord, KvCache, newKvCache } from "./kv_cache.ts";
import { POOL_ALIGN_BYTES, WHOLE_ROW } from "./native/symbols.ts";
import { type Operation, runExclusive } from "./operation.ts";
import { LLMRole } from "./enums.ts";
import { LLMStatusCode } from "./status.ts";
import { leasedTensor, Tensor } from "./tensor.ts";
import {
  describe,
  INT64_MIN,
  requireInstance,
  requireInstances,
  requireInt32,
  requireIntIn,
  UINT32_MAX,
} from "./validate.ts";

/**
 * Copies of at least this many bytes run off the JavaScript thread. Below it a
 * copy takes less time than handing it to another thread would: handing off
 * costs 45–100 µs here, copying 1 MiB about 80 µs (bench/, section (d)).
 */
export const OFF_THREAD_BYTES = 1 << 20;

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

export function signalOf(options: CallOptions | undefined): AbortSignal | undefined {
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

export function paramInvalid(message: string): LLMException {
  return new LLMException(LLMStatusCode.LLM_PARAM_INVALID, message);
}

// ---- Argument checks, one per concept, in upstream's order and error
// classes (v1 kv_cache_manager.py): a wrong type is a TypeError, an integer
// outside its C type a ValueError, a value the cache cannot take
// LLM_PARAM_INVALID.

/** `tensorIndex` of a cache of `desc`: an int32 (upstream check_int32) in [0, numTensors). */
export function checkTensorIndex(desc: CacheDesc, tensorIndex: unknown): number {
  const index = requireInt32(tensorIndex, "tensorIndex");
  const count = desc.numTensors;
  if (index < 0 || index >= count) throw paramInvalid(`tensorIndex ${index} is out of range [0, ${count})`);
  return index;
}

/** A batch row: a uint32 (upstream check_uint32), checked against the cache by {@link checkRowIn}. */
export function requireRow(row: unknown, name: string): number {
  return requireIntIn(row, name, 0, UINT32_MAX);
}

/** A batch row must be below the cache's batch size (upstream's C++ check, after the Python ones). */
export function checkRowIn(desc: CacheDesc, row: number, name: string): void {
  if (row >= desc.batchSize) throw paramInvalid(`${name} ${row} is out of range [0, ${desc.batchSize})`);
}

/** `size` of a copy or pull: an int64 (upstream check_int64) that is -1 (the rest of the row) or positive. */
export function checkSize(size: unknown): number {
  const n = requireIntIn(size, "size", INT64_MIN, Number.MAX_SAFE_INTEGER);
  if (n !== -1 && n <= 0) throw paramInvalid(`size must be -1 (the rest of the row) or positive, got ${n}`);
  return n;
}

/** Rows are named along dimension 0: calls that address rows need the batch there. */
export function requireBatchFirst(desc: CacheDesc, what: string): void {
  if (desc.batchDimIndex !== 0) throw paramInvalid(`${what} needs the batch as dimension 0, got ${desc.batchDimIndex}`);
}

/** Bytes of one batch row of one tensor. */
export function rowBytesOf(desc: CacheDesc): number {
  return desc.size / desc.batchSize;
}

/**
 * Only `role` may make this call (upstream v1 `_check_role`): a MIX instance
 * neither holds cache keys nor pulls.
 */
function requireRole(engine: Engine, role: LLMRole, what: string): void {
  if (engine.role !== role) {
    throw paramInvalid(`${what} is for ${roleName(role)} instances, not ${roleName(engine.role)}`);
  }
}

function roleName(role: number): string {
  return Object.entries(LLMRole).find(([, value]) => value === role)?.[0] ?? String(role);
}

/**
 * Manages the KV caches of one `LLMDataDist` instance; get it from
 * `LLMDataDist.kvCacheManager`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
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
   * pulls (PROMPT instances only, as upstream); upstream's padding key
   * (`reqId` 2^64 - 1) marks a row without a request and is not registered.
   * Rejects with `LLM_DEVICE_OUT_OF_MEMORY` when a pool is full.
   * As with device memory, a new cache is not cleared: it may hold what a
   * freed cache of this instance left there. Like every cache call it waits
   * its turn within `syncKvTimeout`; `options.signal` stops the wait.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * // K and V of [batch 2, 16] FP16; rows 0 and 1 hold requests 42 and 43 of cluster 1
   * const cache = await prompt.kvCacheManager.allocateCache(
   *   new CacheDesc(2, [2, 16], DataType.DT_FLOAT16),
   *   [new CacheKey(1n, 42n), new CacheKey(1n, 43n)],
   * );
   * console.log(cache.cacheId, cache.perDeviceTensorAddrs[0].length); // 1n 2
   * await prompt.kvCacheManager.deallocateCache(cache);
   * ```
   */
  async allocateCache(cacheDesc: CacheDesc, cacheKeys?: readonly CacheKey[], options?: CallOptions): Promise<KvCache> {
    const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
    const signal = signalOf(options);
    const keys = requireInstances(cacheKeys, CacheKey, "cacheKeys");
    if (keys.length > desc.batchSize) {
      throw paramInvalid(`${keys.length} cache keys given for a batch of ${desc.batchSize}`);
    }
    if (keys.length > 0) requireBatchFirst(desc, "cache keys (which name batch rows)");
    const engine = this.#access.current();
    if (keys.length > 0) requireRole(engine, LLMRole.PROMPT, "allocateCache with cache keys");
    // Upstream's padding key (reqId 2^64 - 1) marks a row that holds no
    // request: it is not registered, so any number of rows and caches carry it.
    const rowKeys = keys.map((key) => key.reqId === INVALID_ID ? null : key);
    return await runExclusive(engine.mutex, "allocateCache", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      // Refused before the address array (devices × numTensors entries) is
      // made, and before the keys are looked at: upstream, too, takes the
      // memory first (LLM_OUT_OF_MEMORY) and checks the keys after.
      const bytesPerDevice = desc.numTensors * Math.ceil(desc.size / POOL_ALIGN_BYTES) * POOL_ALIGN_BYTES;
      if (bytesPerDevice > engine.poolBytes) {
        throw new LLMException(
          LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY,
          `allocateCache(${desc}): ${bytesPerDevice} bytes per device exceed the pool of ${engine.poolBytes}`,
        );
      }
      const batchRows = desc.batchDimIndex === 0 ? desc.batchSize : 1;
      const record = engine.allocate(desc, batchRows, layoutTag(desc), rowKeys);
      const cache = newKvCache(record, (cache) => this.#dispose(cache));
      engine.track(cache, record);
      return cache;
    });
  }

  /**
   * Releases a cache. Its memory returns to the pools once no cache key names
   * it; its views are revoked at once.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(1, [4, 256], DataType.DT_UINT8));
   * console.log(dd.kvCacheManager.poolUsage()[0].usedBytes); // 1024
   * await dd.kvCacheManager.deallocateCache(cache);
   * console.log(dd.kvCacheManager.poolUsage()[0].usedBytes); // 0
   * ```
   */
  async deallocateCache(cache: KvCache, options?: CallOptions): Promise<void> {
    requireInstance(cache, KvCache, "cache");
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "deallocateCache", engine.syncKvTimeout, signal, () => {
      engine.deallocate(engine.liveRecord(cache));
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
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
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
      index = checkTensorIndex(cache.cacheDesc, tensorIndex);
      signal = signalOf(options);
      engine = this.#access.current();
    } catch (err) {
      return Promise.reject(err);
    }
    // The common case: a small tensor and nobody waiting. The copy runs at once,
    // under the lock and within the call, so no deadline can pass meanwhile.
    if (cache.cacheDesc.size < OFF_THREAD_BYTES && !signal?.aborted && engine.mutex.tryLock()) {
      try {
        return Promise.resolve(readNow(engine.liveRecord(cache), index));
      } catch (err) {
        return Promise.reject(err);
      } finally {
        engine.mutex.unlock();
      }
    }
    return runExclusive(engine.mutex, "getCacheTensors", engine.syncKvTimeout, signal, (op) => {
      const record = engine.liveRecord(cache);
      return record.desc.size < OFF_THREAD_BYTES ? readNow(record, index) : readOffThread(record, index, op);
    });
  }

  /**
   * Zero-copy, writable views of tensor `tensorIndex` of `cache`, one per
   * device, where the memory is host-accessible (the host backend). Freeing
   * the cache or finalizing revokes them: their buffers are detached where the
   * runtime allows (Deno, Bun) and `Tensor.data` throws everywhere.
   * Not serialized: views are made without touching the cache's memory.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const manager = dd.kvCacheManager;
   * const cache = await manager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_INT32, Placement.HOST));
   * const [view] = manager.getCacheTensorViews(cache, 0);
   * (view.data as Int32Array).fill(7); // writes the cache's own memory
   * const [copy] = await manager.getCacheTensors(cache, 0);
   * console.log(copy.data[31]); // 7
   * await manager.deallocateCache(cache); // revokes the view: view.data throws from now on
   * ```
   */
  getCacheTensorViews(cache: KvCache, tensorIndex = 0): Tensor[] {
    requireInstance(cache, KvCache, "cache");
    const index = checkTensorIndex(cache.cacheDesc, tensorIndex);
    const engine = this.#access.current();
    const record = engine.liveRecord(cache);
    if (!engine.hostAccessible) {
      throw new LLMException(
        LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
        "this backend's device memory is not host-accessible; use getCacheTensors for copies",
      );
    }
    return tensorViews(record, index);
  }

  /**
   * Copies one batch row of every tensor of `src` into one batch row of the
   * same tensor of `dst`, on every device: bytes `[offset, offset + size)` of
   * row `srcBatchIndex` to the same bytes of row `dstBatchIndex` (`size = -1`:
   * to the end of the row). The descs must be equal except in batch size, with
   * the batch as dimension 0.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const manager = dd.kvCacheManager;
   * // 4 rows of 8 floats (32 bytes) per tensor, and a one-row cache to copy from
   * const dst = await manager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST));
   * const src = await manager.allocateCache(new CacheDesc(2, [1, 8], DataType.DT_FLOAT, Placement.HOST));
   * for (const view of manager.getCacheTensorViews(src, 0)) (view.data as Float32Array).fill(2.5);
   * await manager.copyCache(dst, src, 3, 0); // src row 0 → dst row 3, in both tensors
   * await manager.copyCache(dst, src, 1, 0, 8, 16); // only bytes [8, 24) of the row
   * const [k] = await manager.getCacheTensors(dst, 0);
   * console.log(k.data[3 * 8], k.data[8 + 2]); // 2.5 2.5
   * await manager.deallocateCache(src);
   * await manager.deallocateCache(dst);
   * ```
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
    const d = dst.cacheDesc;
    const s = src.cacheDesc;
    const dstRow = requireRow(dstBatchIndex, "dstBatchIndex");
    const srcRow = requireRow(srcBatchIndex, "srcBatchIndex");
    requireIntIn(offset, "offset", 0, Number.MAX_SAFE_INTEGER);
    const n = checkSize(size);
    const signal = signalOf(options);
    const engine = this.#access.current();
    if (!d.isCompatibleWith(s)) throw paramInvalid(`the caches' descs differ beyond batch size: ${d} vs ${s}`);
    requireBatchFirst(d, "copyCache");
    checkRowIn(d, dstRow, "dstBatchIndex");
    checkRowIn(s, srcRow, "srcBatchIndex");
    const rowBytes = rowBytesOf(d);
    const bytes = n === -1 ? rowBytes - offset : n;
    if (offset >= rowBytes || offset + bytes > rowBytes) {
      throw paramInvalid(`offset ${offset} + size ${bytes} exceeds the row of ${rowBytes} bytes`);
    }
    await runExclusive(engine.mutex, "copyCache", engine.syncKvTimeout, signal, (op) => {
      const offThread = bytes * d.numTensors * engine.deviceIds.length >= OFF_THREAD_BYTES;
      return engine.copy(
        engine.liveRecord(dst),
        engine.liveRecord(src),
        dstRow * rowBytes + offset,
        srcRow * rowBytes + offset,
        bytes,
        offThread ? op : undefined,
      );
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
   * `LLM_PARAM_INVALID` (not a DECODER — as upstream, only a DECODER pulls —,
   * the padding key, descs differ, batchIndex or size out of range),
   * `LLM_NOT_YET_LINK` (cluster not linked), `LLM_KV_CACHE_NOT_EXIST`
   * (no such key or cache), `LLM_LINK_FAILED` (the PROMPT went away),
   * `LLM_WAIT_PROCESS_TIMEOUT`.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMClusterInfo, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * // A PROMPT and a DECODER in one process (the host backend allows it; usually they are two)
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ "llm.listenIpInfo": "127.0.0.1:0", "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const desc = new CacheDesc(1, [1, 16], DataType.DT_INT32, Placement.HOST);
   * const kv = await prompt.kvCacheManager.allocateCache(desc, [new CacheKey(1n, 42n)]);
   * (prompt.kvCacheManager.getCacheTensorViews(kv, 0)[0].data as Int32Array).fill(42);
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * const cache = await decoder.kvCacheManager.allocateCache(new CacheDesc(1, [4, 16], DataType.DT_INT32, Placement.HOST));
   * await decoder.kvCacheManager.pullCache(new CacheKey(1n, 42n), cache, 2); // request 42 → row 2
   * const [tensor] = await decoder.kvCacheManager.getCacheTensors(cache, 0);
   * console.log(tensor.data[2 * 16]); // 42
   * await decoder.unlinkClusters([cluster], 3000);
   * await prompt.kvCacheManager.deallocateCache(kv);
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
    const desc = cache.cacheDesc;
    const n = checkSize(size);
    const row = requireRow(batchIndex, "batchIndex");
    const signal = signalOf(options);
    const engine = this.#access.current();
    requireRole(engine, LLMRole.DECODER, "pullCache");
    // Upstream's check_cache_key: exactly one of reqId and prefixId names something.
    if (cacheKey instanceof CacheKey && cacheKey.reqId === INVALID_ID) {
      throw paramInvalid(`${cacheKey} is the padding key (reqId 2^64 - 1): it names no request to pull`);
    }
    if (cacheKey instanceof CacheKey && cacheKey.prefixId !== INVALID_ID) {
      throw paramInvalid(`${cacheKey} names both a request and a prefix: a pull takes one of them`);
    }
    requireBatchFirst(desc, "pullCache");
    checkRowIn(desc, row, "batchIndex");
    const rowBytes = rowBytesOf(desc);
    if (n > rowBytes) throw paramInvalid(`size ${n} exceeds the row of ${rowBytes} bytes`);
    const source: PullSource = cacheKey instanceof CacheKey
      ? { byId: false, words: [cacheKey.promptClusterId, cacheKey.reqId, cacheKey.modelId] }
      : { byId: true, words: [cacheKey.clusterId, BigInt.asUintN(64, cacheKey.cacheId), BigInt(cacheKey.batchIndex)] }; // int64 id, as the uint64 the ABI takes
    await runExclusive(engine.mutex, "pullCache", engine.syncKvTimeout, signal, (op) => {
      const record = engine.liveRecord(cache);
      return engine.pull(record, source, row, n === -1 ? WHOLE_ROW : BigInt(n), op, `pullCache(${cacheKey}) failed`);
    });
  }

  /**
   * Releases a cache key on a PROMPT instance: the row is no longer pullable,
   * and the cache's memory returns to the pool once its id and all its keys are
   * released. Rejects with `LLM_KV_CACHE_NOT_EXIST` for an unknown key, and
   * with `LLM_PARAM_INVALID` on a DECODER or MIX instance (as upstream).
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ "ge.flowGraphMemMaxSize": String(1 << 20) });
   * const manager = prompt.kvCacheManager;
   * const key = new CacheKey(1n, 42n);
   * const cache = await manager.allocateCache(new CacheDesc(1, [1, 1024], DataType.DT_UINT8), [key]);
   * await manager.deallocateCache(cache); // the key still holds the row for a DECODER to pull
   * console.log(manager.poolUsage()[0].usedBytes); // 1024
   * await manager.removeCacheKey(key); // request 42 will not be pulled after all
   * console.log(manager.poolUsage()[0].usedBytes); // 0
   * ```
   */
  async removeCacheKey(cacheKey: CacheKey, options?: CallOptions): Promise<void> {
    requireInstance(cacheKey, CacheKey, "cacheKey");
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "removeCacheKey", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      requireRole(engine, LLMRole.PROMPT, "removeCacheKey");
      engine.removeKey(cacheKey);
    });
  }

  /**
   * Bytes in use and capacity of each device's pool, in device order (on the
   * host backend, `ge.flowGraphMemMaxSize` bytes per device).
   *
   * @example
   * ```ts
   * import { LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "ge.exec.deviceId": "0;1", "ge.flowGraphMemMaxSize": String(1 << 20) });
   * console.log(dd.kvCacheManager.poolUsage());
   * // [ { deviceId: 0, usedBytes: 0, capacityBytes: 1048576 }, { deviceId: 1, usedBytes: 0, capacityBytes: 1048576 } ]
   * ```
   */
  poolUsage(): PoolUsage[] {
    return this.#access.current().poolUsage();
  }

  #dispose(cache: KvCache): Promise<void> {
    const record = cacheRecord(cache);
    if (!record.engine.holds(record)) return Promise.resolve();
    return this.deallocateCache(cache);
  }
}

/** Copies a small tensor on the JavaScript thread. */
/** Views of tensor `index` of a live record, one per device (host-accessible engines). */
export function tensorViews(record: CacheRecord, index: number): Tensor[] {
  const { engine, desc } = record;
  return engine.deviceIds.map((deviceId, d) => {
    const slot = d * desc.numTensors + index;
    const buffer = record.views[slot] ??= engine.view(record.addrs[d][index], desc.size);
    return leasedTensor(desc.shape, desc.dataType, typedArrayOf(desc.dataType, buffer), deviceId, record.lease);
  });
}

export function readNow(record: CacheRecord, index: number): Tensor[] {
  const { engine, desc } = record;
  const { deviceIds } = engine;
  const tensors: Tensor[] = new Array(deviceIds.length);
  for (let d = 0; d < deviceIds.length; d++) {
    const data = newTypedArray(desc.dataType, desc.size);
    engine.readNow(record, index, d, data);
    tensors[d] = new Tensor(desc.shape, desc.dataType, data, deviceIds[d]);
  }
  return tensors;
}

/** Copies a large tensor off the JavaScript thread, device by device. */
export async function readOffThread(record: CacheRecord, index: number, op: Operation): Promise<Tensor[]> {
  const { engine, desc } = record;
  const tensors: Tensor[] = [];
  for (let d = 0; d < engine.deviceIds.length; d++) {
    const bytes = await engine.read(record, index, d, op);
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
