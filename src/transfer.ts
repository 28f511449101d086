/**
 * Layer-wise pushes (upstream `transfer_cache_async`): the targets of a
 * transfer (`TransferConfig`, `TransferWithCacheKeyConfig`), the program's
 * `LayerSynchronizer`, and the `CacheTask` a transfer returns. Layer by layer,
 * the transfer waits for the synchronizer to release the layer, then pushes it
 * to every target that wants it (one native call per layer and target). Checks,
 * messages and results follow upstream's `v2/llm_types.py` and
 * `v2/llm_utils.py`.
 *
 * @module
 */
import { BlocksCacheKey } from "./blocks_cache_key.ts";
import { Cache, recordOfCache } from "./cache.ts";
import { CacheKeyByIdAndIndex } from "./cache_key.ts";
import { after } from "./deadline.ts";
import { blockPairs } from "./block_pairs.ts";
import { checkLayerRange, type LayerRange } from "./cache_manager.ts";
import type { Engine } from "./engine.ts";
import { Placement } from "./enums.ts";
import { LLMException } from "./errors.ts";
import { paramInvalid } from "./kv_cache_manager.ts";
import { KEY_BLOCKS, KEY_BY_ID, PUSH_ROW_BLOCKS } from "./native/symbols.ts";
import { runExclusive } from "./operation.ts";
import { LLMStatusCode } from "./status.ts";
import { describe, requireArray, requireInstance, requireIntIn, requireUint64 } from "./validate.ts";

/** Tensors of one layer in a layer-wise transfer (K and V), as upstream's `_NUM_TENSORS_PER_LAYER`. */
const TENSORS_PER_LAYER = 2;

/**
 * What the program gives `transferCacheAsync` to say when a layer is ready
 * (upstream `LayerSynchronizer`): `synchronizeLayer` returns (or resolves to)
 * true once layer `layerIndex` may be sent, false when it never will (the
 * transfer then stops). `timeoutMs` is upstream's `timeout_in_millis`, which
 * upstream's transfer always passes as none (`undefined`).
 */
export interface LayerSynchronizer {
  /** Resolves to true once layer `layerIndex` may be sent, false if it never will. */
  synchronizeLayer(layerIndex: number, timeoutMs: number | undefined): boolean | Promise<boolean>;
}

/** A half-open range as a checked `{ start, stop }`. */
type Range = { readonly start: number; readonly stop: number };

function rangeOf(value: unknown, name: string, allowNone: boolean): Range | undefined {
  if (!allowNone && (value === undefined || value === null)) {
    throw new TypeError(`${name} must be [start, stop] or { start, stop }, got ${describe(value)}`);
  }
  const given = checkLayerRange(value, name);
  return given === undefined ? undefined : { start: given[0], stop: given[1] };
}

function requireBatchIndex(value: unknown): number {
  return requireIntIn(value, "srcBatchIndex", 0, 0xFFFF_FFFF);
}

/**
 * A target of `transferCacheAsync` by addresses (upstream `TransferConfig`,
 * for instances without `enableRemoteCacheAccessible`): the tensors of layers
 * `srcLayerRange` (default: every layer) go to `dstAddrs` of cluster
 * `dstClusterId`, two addresses (K, V) a layer. On the host backend each
 * address must lie in memory the peer made remote-accessible (a registered
 * cache with `remoteAccessible`, or a pooled cache of a peer with
 * `enableRemoteCacheAccessible`); anything else is refused.
 *
 * @example
 * ```ts
 * import { TransferConfig } from "llm-datadist";
 * const config = new TransferConfig(1n, [0x7f00_0000_1000n, 0x7f00_0000_2000n], [3, 4]);
 * console.log(config.dstClusterId, config.srcLayerRange); // 1n { start: 3, stop: 4 }
 * ```
 */
export class TransferConfig {
  #dstClusterId: bigint;
  #dstAddrs: readonly bigint[];
  #srcLayerRange: Range | undefined;
  #srcBatchIndex: number;

  /** Checks every argument as upstream's `TransferConfig` (`TypeError`, `ValueError`, `LLM_PARAM_INVALID`). */
  constructor(
    dstClusterId: bigint | number,
    dstAddrs: readonly (bigint | number)[],
    srcLayerRange?: LayerRange,
    srcBatchIndex = 0,
  ) {
    this.#dstClusterId = requireUint64(dstClusterId, "dstClusterId");
    this.#dstAddrs = TransferConfig.#addrs(dstAddrs);
    this.#srcLayerRange = rangeOf(srcLayerRange, "srcLayerRange", true);
    this.#srcBatchIndex = requireBatchIndex(srcBatchIndex);
  }

  static #addrs(value: unknown): readonly bigint[] {
    return Object.freeze(
      requireArray(value, "dstAddrs", "addresses").map((a, i) => requireUint64(a, `dstAddrs[${i}]`)),
    );
  }

  /** The cluster pushed to. */
  get dstClusterId(): bigint {
    return this.#dstClusterId;
  }
  set dstClusterId(value: bigint | number) {
    this.#dstClusterId = requireUint64(value, "dstClusterId");
  }

  /** Addresses in the peer, two (K, V) per layer of `srcLayerRange`. */
  get dstAddrs(): readonly bigint[] {
    return this.#dstAddrs;
  }
  set dstAddrs(value: readonly (bigint | number)[]) {
    this.#dstAddrs = TransferConfig.#addrs(value);
  }

  /** The layers pushed, or undefined: every layer of the source. */
  get srcLayerRange(): { readonly start: number; readonly stop: number } | undefined {
    return this.#srcLayerRange;
  }
  set srcLayerRange(value: LayerRange | undefined) {
    this.#srcLayerRange = rangeOf(value, "srcLayerRange", true);
  }

  /** The source's row pushed. */
  get srcBatchIndex(): number {
    return this.#srcBatchIndex;
  }
  set srcBatchIndex(value: number) {
    this.#srcBatchIndex = requireBatchIndex(value);
  }

  /** As upstream's `repr`. */
  toString(): string {
    const range = this.#srcLayerRange ? `[${this.#srcLayerRange.start}, ${this.#srcLayerRange.stop})` : "all";
    return `TransferConfig(dstClusterId=${this.#dstClusterId}, dstAddrs=[${this.#dstAddrs.length}], srcLayerRange=${range}, srcBatchIndex=${this.#srcBatchIndex})`;
  }
}

/**
 * A target of `transferCacheAsync` by cache key (upstream
 * `TransferWithCacheKeyConfig`, for instances with
 * `enableRemoteCacheAccessible`): layers `srcLayerRange` of the source go to
 * layers `dstLayerRange` (as many) of the remote-accessible cache named by
 * `cacheKey` (a `BlocksCacheKey`, or a `CacheKeyByIdAndIndex` naming a row).
 *
 * @example
 * ```ts
 * import { BlocksCacheKey, TransferWithCacheKeyConfig } from "llm-datadist";
 * const config = new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 32], [0, 32]);
 * console.log(config.dstClusterId); // 1n
 * ```
 */
export class TransferWithCacheKeyConfig {
  #cacheKey: BlocksCacheKey | CacheKeyByIdAndIndex;
  #srcLayerRange: Range;
  #dstLayerRange: Range;
  #srcBatchIndex: number;

  /** Checks every argument as upstream's `TransferWithCacheKeyConfig` (`TypeError`, `ValueError`, `LLM_PARAM_INVALID`). */
  constructor(
    cacheKey: BlocksCacheKey | CacheKeyByIdAndIndex,
    srcLayerRange: LayerRange,
    dstLayerRange: LayerRange,
    srcBatchIndex = 0,
  ) {
    this.#cacheKey = TransferWithCacheKeyConfig.#key(cacheKey);
    this.#srcLayerRange = rangeOf(srcLayerRange, "srcLayerRange", false)!;
    this.#dstLayerRange = rangeOf(dstLayerRange, "dstLayerRange", false)!;
    if (this.#srcLayerRange.stop - this.#srcLayerRange.start !== this.#dstLayerRange.stop - this.#dstLayerRange.start) {
      throw paramInvalid("src_layer_range size should be equal to dst_layer_range size");
    }
    this.#srcBatchIndex = this.#batchIndex(srcBatchIndex);
  }

  static #key(value: unknown): BlocksCacheKey | CacheKeyByIdAndIndex {
    if (!(value instanceof BlocksCacheKey) && !(value instanceof CacheKeyByIdAndIndex)) {
      throw new TypeError(`cacheKey must be a BlocksCacheKey or a CacheKeyByIdAndIndex, got ${describe(value)}`);
    }
    return value;
  }

  #batchIndex(value: unknown): number {
    const index = requireBatchIndex(value);
    if (this.#cacheKey instanceof BlocksCacheKey && index !== 0) {
      throw paramInvalid("src_batch_index should be 0 when cache_key is BlocksCacheKey.");
    }
    return index;
  }

  /** The cache pushed into. */
  get cacheKey(): BlocksCacheKey | CacheKeyByIdAndIndex {
    return this.#cacheKey;
  }
  set cacheKey(value: BlocksCacheKey | CacheKeyByIdAndIndex) {
    this.#cacheKey = TransferWithCacheKeyConfig.#key(value);
  }

  /** The cluster pushed to: the key's. */
  get dstClusterId(): bigint {
    return this.#cacheKey.clusterId;
  }

  /** The source's layers pushed. */
  get srcLayerRange(): { readonly start: number; readonly stop: number } {
    return this.#srcLayerRange;
  }
  set srcLayerRange(value: LayerRange) {
    this.#srcLayerRange = rangeOf(value, "srcLayerRange", false)!;
  }

  /** The destination's layers written, as many as `srcLayerRange`. */
  get dstLayerRange(): { readonly start: number; readonly stop: number } {
    return this.#dstLayerRange;
  }
  set dstLayerRange(value: LayerRange) {
    this.#dstLayerRange = rangeOf(value, "dstLayerRange", false)!;
  }

  /** The source's row pushed (0 with a `BlocksCacheKey`). */
  get srcBatchIndex(): number {
    return this.#srcBatchIndex;
  }
  set srcBatchIndex(value: number) {
    this.#srcBatchIndex = this.#batchIndex(value);
  }

  /** As upstream's `repr`. */
  toString(): string {
    const s = this.#srcLayerRange, d = this.#dstLayerRange;
    return `TransferWithCacheKeyConfig(cacheKey=${this.#cacheKey}, srcLayerRange=[${s.start}, ${s.stop}), dstLayerRange=[${d.start}, ${d.stop}), srcBatchIndex=${this.#srcBatchIndex})`;
  }
}

const TASK = Symbol("CacheTask.construct");

/**
 * A running `transferCacheAsync` (upstream `CacheTask`): wait for it with
 * `synchronize`, or read each target's status with `getResults`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMDataDist, LLMRole, TransferConfig } from "llm-datadist";
 * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
 * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
 * const cache = await dd.cacheManager.allocateCache(new CacheDesc(2, [1, 64], DataType.DT_UINT8));
 * // A synchronizer that never releases layer 0: the task cannot finish.
 * const task = dd.cacheManager.transferCacheAsync(cache, { synchronizeLayer: () => false }, [
 *   new TransferConfig(1n, [0x1000n, 0x2000n]),
 * ]);
 * console.log((await task.synchronize()).toString(16)); // 5010b005
 * console.log(await task.getResults()); // [ 1343270917 ]
 * ```
 */
export class CacheTask {
  readonly #finished: Promise<void>;
  readonly #targets: readonly bigint[];
  readonly #results: Map<bigint, LLMStatusCode>;
  #done = false;

  /** @internal Tasks come from `CacheManager.transferCacheAsync`. */
  constructor(
    token: unknown,
    finished: Promise<void>,
    targets: readonly bigint[],
    results: Map<bigint, LLMStatusCode>,
  ) {
    if (token !== TASK) throw new TypeError("CacheTask objects come from CacheManager.transferCacheAsync");
    this.#targets = targets;
    this.#results = results;
    this.#finished = finished.then(() => {
      this.#done = true;
    });
  }

  /** Whether it ended within timeoutMs (undefined: however long it takes). */
  async #wait(timeoutMs: number | undefined): Promise<boolean> {
    if (timeoutMs !== undefined) requireIntIn(timeoutMs, "timeoutMs", 0, 0xFFFF_FFFF);
    if (this.#done || timeoutMs === undefined) {
      await this.#finished;
      return true;
    }
    let stopTimer = () => {};
    const expired = new Promise<false>((resolve) => {
      stopTimer = after(timeoutMs, () => resolve(false));
    });
    try {
      return await Promise.race([this.#finished.then(() => true as const), expired]);
    } finally {
      stopTimer();
    }
  }

  /**
   * Waits for the transfer (at most `timeoutMs`, a uint32): the first failing
   * target's status, `LLM_SUCCESS`, or `LLM_TIMEOUT` while it still runs.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, LLMStatusCode, TransferConfig } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateCache(new CacheDesc(2, [1, 64], DataType.DT_UINT8));
   * const never = { synchronizeLayer: () => new Promise<boolean>(() => {}) };
   * const task = dd.cacheManager.transferCacheAsync(cache, never, [new TransferConfig(1n, [0x1000n, 0x2000n])]);
   * console.log((await task.synchronize(10)) === LLMStatusCode.LLM_TIMEOUT); // true
   * ```
   */
  async synchronize(timeoutMs?: number): Promise<LLMStatusCode> {
    if (!(await this.#wait(timeoutMs))) return LLMStatusCode.LLM_TIMEOUT;
    for (const status of this.#list()) {
      if (status !== undefined && status !== LLMStatusCode.LLM_SUCCESS) return status;
    }
    return LLMStatusCode.LLM_SUCCESS;
  }

  /**
   * Each target's status, in the order of the configs (undefined for a target
   * the transfer never finished, as upstream's None); every one `LLM_TIMEOUT`
   * while it still runs after `timeoutMs`. Targets of one cluster share a status.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, TransferConfig } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateCache(new CacheDesc(4, [1, 64], DataType.DT_UINT8));
   * const task = dd.cacheManager.transferCacheAsync(cache, { synchronizeLayer: (i) => i < 1 }, [
   *   new TransferConfig(1n, [0x1000n, 0x2000n], [1, 2]), // layer 1 only: never released
   * ]);
   * console.log(await task.getResults()); // [ 1343270917 ]
   * ```
   */
  async getResults(timeoutMs?: number): Promise<(LLMStatusCode | undefined)[]> {
    if (!(await this.#wait(timeoutMs))) return this.#targets.map(() => LLMStatusCode.LLM_TIMEOUT);
    return this.#list();
  }

  #list(): (LLMStatusCode | undefined)[] {
    return this.#targets.map((cluster) => this.#results.get(cluster));
  }
}

/** The block arguments of a transfer. */
interface Blocks {
  src: readonly number[] | undefined;
  dst: readonly number[] | undefined;
  dstBlockBytes: number | undefined;
  /** The (source, destination) block pairs every layer moves, packed once; chunk i of a row without `src`. */
  pairs?: BigUint64Array;
}

function blockList(value: unknown, name: string): number[] | undefined {
  if (value === undefined || value === null) return undefined;
  return requireArray(value, name, "block index").map((b, i) => {
    requireUint64(b, `${name}[${i}]`);
    return Number(b);
  });
}

function statusOf(err: unknown): LLMStatusCode {
  return err instanceof LLMException ? err.statusCode : LLMStatusCode.LLM_FAILED;
}

/**
 * Checks a transfer as upstream's `transfer_cache_async` does, and starts it.
 * `remote`: the instance's `enableRemoteCacheAccessible`.
 */
export function startTransfer(
  engine: Engine,
  remote: boolean,
  srcCache: Cache,
  layerSynchronizer: LayerSynchronizer,
  transferConfigs: readonly (TransferConfig | TransferWithCacheKeyConfig)[],
  srcBlockIndices: readonly number[] | undefined,
  dstBlockIndices: readonly number[] | undefined,
  dstBlockMemorySize: number | undefined,
): CacheTask {
  requireInstance(srcCache, Cache, "srcCache");
  if (srcCache.cacheDesc.placement === Placement.HOST) throw paramInvalid("src cache not support placement HOST");
  const blocks: Blocks = {
    dst: blockList(dstBlockIndices, "dstBlockIndices"),
    src: blockList(srcBlockIndices, "srcBlockIndices"),
    dstBlockBytes: undefined,
  };
  if (dstBlockMemorySize !== undefined && dstBlockMemorySize !== null) {
    blocks.dstBlockBytes = Number(requireUint64(dstBlockMemorySize, "dstBlockMemorySize"));
  }
  const srcBlocks = blocks.src?.length ? blocks.src : undefined;
  const dstBlocks = blocks.dst?.length ? blocks.dst : undefined;
  if (srcBlocks) {
    if (!dstBlocks) throw paramInvalid("transfer from blocks to cache is not supported");
    if (srcBlocks.length !== dstBlocks.length) {
      throw paramInvalid(`num_block_indices mismatches, src_num = ${srcBlocks.length}, dst_num = ${dstBlocks.length}`);
    }
  } else if (dstBlocks && blocks.dstBlockBytes === undefined) {
    throw paramInvalid("dst_block_memory_size must be set when transfer from cache to blocks");
  }
  if (
    typeof layerSynchronizer !== "object" || layerSynchronizer === null ||
    typeof layerSynchronizer.synchronizeLayer !== "function"
  ) {
    throw new TypeError(
      `layerSynchronizer must be a LayerSynchronizer (an object with synchronizeLayer), got ${
        describe(layerSynchronizer)
      }`,
    );
  }
  const Expected = remote ? TransferWithCacheKeyConfig : TransferConfig;
  const configs = requireArray(transferConfigs, "transferConfigs", Expected.name);
  configs.forEach((config, i) => {
    if (!(config instanceof Expected)) {
      throw new TypeError(
        `${
          remote ? "While enable_remote_cache_accessible is True, " : ""
        }transferConfigs[${i}] must be a ${Expected.name}, got ${describe(config)}`,
      );
    }
  });
  if (!dstBlocks && blocks.dstBlockBytes !== undefined && blocks.dstBlockBytes !== 0) {
    throw paramInvalid(`dst_block_memory_size (${blocks.dstBlockBytes}) is neither None nor 0 while dst is not blocks`);
  }
  const desc = srcCache.cacheDesc;
  if (desc.numTensors % 2 !== 0) throw paramInvalid(`cache_desc.num_tensors (${desc.numTensors}) is not even`);
  const numLayers = desc.numTensors / TENSORS_PER_LAYER;
  const targets = (configs as (TransferConfig | TransferWithCacheKeyConfig)[]).map((config) => {
    if (srcBlocks && config.srcBatchIndex !== 0) {
      throw paramInvalid(`Invalid TransferConfig, src_batch_index (${config.srcBatchIndex}) != 0 while src is blocks`);
    }
    const range = config.srcLayerRange ?? { start: 0, stop: numLayers };
    if (!(0 <= range.start && range.start < range.stop && range.stop <= numLayers)) {
      throw paramInvalid(
        `src_layer_range: range(${range.start}, ${range.stop}) out of range, src_layer_num = ${numLayers}`,
      );
    }
    const tensors = (range.stop - range.start) * TENSORS_PER_LAYER;
    if (config instanceof TransferConfig && config.dstAddrs.length !== tensors) {
      throw paramInvalid(
        `expect ${tensors} dst_addrs, but len(dst_addrs) = ${config.dstAddrs.length}, range = range(${range.start}, ${range.stop})`,
      );
    }
    return { config, range };
  });
  const results = new Map<bigint, LLMStatusCode>();
  const finished = transferLayers(engine, srcCache, layerSynchronizer, targets, numLayers, {
    src: srcBlocks,
    dst: dstBlocks,
    dstBlockBytes: blocks.dstBlockBytes,
    pairs: dstBlocks ? blockPairs(srcBlocks ?? [], dstBlocks) : undefined,
  }, results);
  return new CacheTask(TASK, finished, targets.map((t) => t.config.dstClusterId), results);
}

interface Target {
  config: TransferConfig | TransferWithCacheKeyConfig;
  range: Range;
}

/** Upstream's transfer_layers: stops at the first failure, recording it for its target. */
async function transferLayers(
  engine: Engine,
  src: Cache,
  synchronizer: LayerSynchronizer,
  targets: readonly Target[],
  numLayers: number,
  blocks: Blocks,
  results: Map<bigint, LLMStatusCode>,
): Promise<void> {
  for (let layer = 0; layer < numLayers; layer++) {
    const now = targets.filter((t) => t.range.start <= layer && layer < t.range.stop);
    if (now.length === 0) continue;
    let released: unknown;
    try {
      released = await synchronizer.synchronizeLayer(layer, undefined);
    } catch {
      released = false; // a synchronizer that throws releases nothing
    }
    if (!released) {
      for (const t of now) results.set(t.config.dstClusterId, LLMStatusCode.LLM_PARAM_INVALID);
      return;
    }
    for (const t of now) {
      try {
        await transferLayer(engine, src, layer, t, blocks);
      } catch (err) {
        results.set(t.config.dstClusterId, statusOf(err));
        return;
      }
      if (layer === t.range.stop - 1) results.set(t.config.dstClusterId, LLMStatusCode.LLM_SUCCESS);
    }
  }
}

/** One layer to one target: one native call. */
function transferLayer(engine: Engine, src: Cache, layer: number, target: Target, blocks: Blocks): Promise<void> {
  const { config, range } = target;
  const srcTensor = layer * TENSORS_PER_LAYER;
  const rowBytes = src.cacheDesc.size / src.cacheDesc.batchSize;
  const context = `transferCacheAsync: layer ${layer} to cluster ${config.dstClusterId} failed`;
  return runExclusive(engine.mutex, "transferCacheAsync", engine.syncKvTimeout, undefined, (op) => {
    const record = engine.checkLive(recordOfCache(src), src.cacheId);
    if (config instanceof TransferWithCacheKeyConfig) {
      const dstLayer = config.dstLayerRange.start + (layer - range.start);
      const tensors = [srcTensor, dstLayer * TENSORS_PER_LAYER, TENSORS_PER_LAYER] as const;
      const key = config.cacheKey;
      if (key instanceof BlocksCacheKey) {
        if (blocks.dst && !blocks.src) {
          // A row cut into blocks of dstBlockMemorySize, block j to dstBlockIndices[j]
          // (upstream's cache to blocks); the size travels as k1.
          const words = [key.clusterId, BigInt(blocks.dstBlockBytes ?? 0), key.modelId] as const;
          const kind = KEY_BLOCKS | PUSH_ROW_BLOCKS;
          return engine.pushBlocks(record, config.srcBatchIndex, kind, words, blocks.pairs!, tensors, op, context);
        }
        // Blocks to blocks; without block lists, row 0 to block 0 (upstream's cache to cache).
        const pairs = blocks.src && blocks.pairs ? blocks.pairs : BigUint64Array.of(0n, 0n);
        return engine.pushBlocks(record, 0, KEY_BLOCKS, [key.clusterId, 0n, key.modelId], pairs, tensors, op, context);
      }
      if (blocks.dst && !blocks.src) {
        throw new LLMException(
          LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
          "a transfer by CacheKeyByIdAndIndex from a cache into blocks is not supported here: name the blocks cache by its BlocksCacheKey",
        );
      }
      const words = [key.clusterId, BigInt.asUintN(64, key.cacheId), BigInt(key.batchIndex)] as const;
      // Blocks into the blocks cache named by id (its batch index must be 0), or a row into a row.
      if (blocks.src) return engine.pushBlocks(record, 0, KEY_BY_ID, words, blocks.pairs!, tensors, op, context);
      return engine.pushBlocks(record, config.srcBatchIndex, KEY_BY_ID, words, null, tensors, op, context);
    }
    const first = (layer - range.start) * TENSORS_PER_LAYER;
    const addrs = BigUint64Array.from(config.dstAddrs.slice(first, first + TENSORS_PER_LAYER));
    let pairs: BigUint64Array | null = null;
    let blockBytes = 0n;
    if (blocks.src && blocks.dst) {
      if (blocks.dstBlockBytes && blocks.dstBlockBytes !== rowBytes) {
        throw paramInvalid(`block_mem_size[${blocks.dstBlockBytes}] is not match cache stride:${rowBytes}`);
      }
      pairs = blocks.pairs!;
    } else if (blocks.dst) {
      // A row into blocks of dstBlockMemorySize: chunk j to block dst[j].
      pairs = blocks.pairs!;
      blockBytes = BigInt(blocks.dstBlockBytes ?? 0);
    }
    return engine.pushAddrs(
      record,
      config.srcBatchIndex,
      config.dstClusterId,
      addrs,
      srcTensor,
      pairs,
      blockBytes,
      op,
      context,
    );
  });
}
