/**
 * `CacheManager`: the cache calls of upstream's V2 mode (`llm.EnableCacheManager`),
 * `LLMDataDist.cacheManager`: caches allocated from the memory pools, memory the
 * program registers, blocks (paged) caches, block copies and swaps between HOST
 * and DEVICE. Checks, their order and their error classes follow upstream's
 * `v2/cache_manager.py`. Every call runs under the engine's FIFO mutex, within
 * `syncKvTimeout`.
 *
 * @module
 */
import { blockPairs } from "./block_pairs.ts";
import { BlocksCacheKey } from "./blocks_cache_key.ts";
import { Cache, newCache, recordOfCache } from "./cache.ts";
import { CacheDesc, layoutTag } from "./cache_desc.ts";
import { CacheKey, CacheKeyByIdAndIndex, INVALID_ID } from "./cache_key.ts";
import type { CacheRecord, Engine, Registration } from "./engine.ts";
import { LLMRole, Placement } from "./enums.ts";
import { LLMException, ValueError } from "./errors.ts";
import {
  type CallOptions,
  checkRowIn,
  checkSize,
  checkTensorIndex,
  type EngineAccess,
  OFF_THREAD_BYTES,
  paramInvalid,
  readNow,
  readOffThread,
  requireBatchFirst,
  requireRow,
  rowBytesOf,
  signalOf,
  tensorViews,
} from "./kv_cache_manager.ts";
import { MemInfo, MemType } from "./mem_info.ts";
import {
  BLOCKS_REQ_ID,
  KEY_BLOCKS,
  KEY_BY_ID,
  KEY_CACHE_KEY,
  MAX_REGISTERED_ADDRS,
  WHOLE_ROW,
} from "./native/symbols.ts";
import { rejecting, runExclusive } from "./operation.ts";
import {
  type CacheTask,
  type LayerSynchronizer,
  startTransfer,
  type TransferConfig,
  type TransferWithCacheKeyConfig,
} from "./transfer.ts";
import { LLMStatusCode } from "./status.ts";
import type { Tensor } from "./tensor.ts";
import {
  describe,
  INT64_MIN,
  requireArray,
  requireInstance,
  requireInstances,
  requireInt,
  requireIntIn,
  requireUint64,
} from "./validate.ts";

/**
 * What `registerCache` takes for one tensor: its address, or memory the
 * program owns (an ArrayBuffer, a SharedArrayBuffer or a view of one), which
 * the library keeps referenced while registered.
 */
export type TensorMemory = bigint | ArrayBuffer | SharedArrayBuffer | ArrayBufferView;

/** Block copies of `copyBlocks`: source block → destination blocks, as a Map or a plain object. */
export type BlockCopies = Map<number, readonly number[]> | Record<number, readonly number[]>;

/** Block pairs of `swapBlocks`: source block → destination block, as a Map or a plain object. */
export type BlockMapping = Map<number, number> | Record<number, number>;

/** What the cache manager needs of its instance besides the engine. */
export interface CacheManagerAccess extends EngineAccess {
  /** The options it was initialized with. */
  settings(): { memPool: boolean; hostMemPool: boolean; remoteCacheAccessible?: boolean };
  /** Whether `linkClusters` has linked this instance (upstream's `_is_call_linked`). */
  isCallLinked(): boolean;
  /** Whether this instance is linked to a cluster now. */
  hasLinks(): boolean;
}

/** The options of `pushBlocks`: the layer arguments (upstream's kwargs) and the call's options. */
export type PushOptions = PullOptions;

/** A layer range: half-open `{ start, stop }`, or the pair `[start, stop]`, as Python's `range(start, stop)`. */
export type LayerRange = { readonly start: number; readonly stop: number } | readonly [number, number];

/** The layer arguments of `pullBlocks` and `pullCache` (upstream's kwargs), and the call's options. */
export interface PullOptions extends CallOptions {
  /** The PROMPT's layers to pull (default: all its tensors). */
  srcLayerRange?: LayerRange;
  /** The layers to fill here (default: all the destination's tensors). */
  dstLayerRange?: LayerRange;
  /** Tensors per layer (K and V: 2, the default); a layer range covers `layers × tensorNumPerLayer` tensors. */
  tensorNumPerLayer?: number;
}

/** A layer range's `[start, stop]` as given (integers), or undefined when absent. */
export function layerRangeOf(range: unknown, name: string): [number, number] | undefined {
  if (range === undefined || range === null) return undefined;
  let start: unknown, stop: unknown;
  if (Array.isArray(range)) {
    if (range.length !== 2) {
      throw new TypeError(`${name} must be [start, stop] or { start, stop }, got ${describe(range)}`);
    }
    [start, stop] = range;
  } else if (typeof range === "object") {
    ({ start, stop } = range as { start?: unknown; stop?: unknown });
  } else {
    throw new TypeError(`${name} must be [start, stop] or { start, stop }, got ${describe(range)}`);
  }
  return [requireInt(start, `${name}.start`), requireInt(stop, `${name}.stop`)];
}

/** Upstream's check_layer_range: a range given must be non-empty, from 0 up. */
export function checkLayerRange(range: unknown, name: string): [number, number] | undefined {
  const given = layerRangeOf(range, name);
  if (given !== undefined && !(0 <= given[0] && given[0] < given[1])) {
    throw paramInvalid(`check 0 <= range.start < range.stop failed, ${name} = range(${given[0]}, ${given[1]})`);
  }
  return given;
}

/** A layer range's tensor range [first, count), or undefined when absent or empty (as upstream: all). */
function tensorRangeOf(range: unknown, name: string, perLayer: number): [number, number] | undefined {
  const given = layerRangeOf(range, name);
  if (given === undefined) return undefined;
  const [first, end] = given;
  if (end <= first) return undefined; // an empty range, as upstream's empty list: all tensors
  if (first < 0) throw paramInvalid(`${name} is invalid, the start value:${first} is < 0`);
  requireIntIn(end - 1, name, 0, 0xFFFF_FFFF);
  const tensors = first * perLayer, count = (end - first) * perLayer;
  if (tensors + count > 0x7FFF_FFFF) throw paramInvalid(`${name} covers tensors beyond the 2^31 - 1 a cache can have`);
  return [tensors, count];
}

/** Upstream's check of tensor_num_per_layer (uint32, > 0); returns it. */
function tensorsPerLayer(value: unknown, cache: Cache, what: string): number {
  const perLayer = requireIntIn(value, "tensorNumPerLayer", 0, 0xFFFF_FFFF);
  if (!(perLayer > 0)) {
    throw paramInvalid(
      `[${what}] param check failed, tensor_num_per_layer (${perLayer}) is invalid, should [1, ${cache.cacheDesc.numTensors}]`,
    );
  }
  return perLayer;
}

/**
 * The (source start, destination start, count) tensor range of a push (upstream
 * push_cache / push_blocks): ranges default to every layer of the source; null
 * when that is no layer at all (upstream then moves nothing).
 */
function pushTensorRanges(
  srcRange: unknown,
  dstRange: unknown,
  perLayerArg: unknown,
  src: Cache,
  what: string,
): [number, number, number] | null {
  const perLayer = tensorsPerLayer(perLayerArg, src, what);
  const given = [checkLayerRange(srcRange, "srcLayerRange"), checkLayerRange(dstRange, "dstLayerRange")];
  const numTensors = src.cacheDesc.numTensors;
  const layers = Math.floor(numTensors / perLayer);
  const [s, d] = given.map((range) => range ?? [0, layers]);
  if (s[1] - s[0] !== d[1] - d[0]) {
    throw paramInvalid("src_layer_range size should be equal to size of dst_layer_range size.");
  }
  if (s[1] - s[0] === 0) return null;
  if (numTensors % perLayer !== 0) {
    throw paramInvalid(
      `When using layer wise transfer, the tensor_num [${numTensors}] of caches must be a multiple of tensor_num_per_layer[${perLayer}].`,
    );
  }
  if (s[1] * perLayer > 0x7FFF_FFFF || d[1] * perLayer > 0x7FFF_FFFF) {
    throw paramInvalid("a layer range covers tensors beyond the 2^31 - 1 a cache can have");
  }
  return [s[0] * perLayer, d[0] * perLayer, (s[1] - s[0]) * perLayer];
}

/** The (source start, destination start, count) tensor range of a pull; count 0: every tensor. */
function tensorRanges(options: PullOptions, dst: Cache, what: string): [number, number, number] {
  const perLayer = tensorsPerLayer(options.tensorNumPerLayer ?? 2, dst, what);
  const src = tensorRangeOf(options.srcLayerRange, "srcLayerRange", perLayer);
  const dstRange = tensorRangeOf(options.dstLayerRange, "dstLayerRange", perLayer);
  if (src === undefined && dstRange === undefined) return [0, 0, 0];
  const numTensors = dst.cacheDesc.numTensors;
  const [dstStart, dstCount] = dstRange ?? [0, numTensors];
  if (src !== undefined && src[1] !== dstCount) {
    throw paramInvalid(
      `src_layer_range size should be equal to dst_layer_range size (${src[1]} and ${dstCount} tensors)`,
    );
  }
  if (dstStart + dstCount > numTensors) {
    throw paramInvalid(
      `dstLayerRange covers tensors [${dstStart}, ${dstStart + dstCount}) of a cache of ${numTensors}`,
    );
  }
  return [src?.[0] ?? 0, dstStart, dstCount];
}

/** A pull's key as the native side takes it. */
function pullKeyOf(key: CacheKey | CacheKeyByIdAndIndex | BlocksCacheKey): [number, [bigint, bigint, bigint]] {
  if (key instanceof BlocksCacheKey) return [KEY_BLOCKS, [key.clusterId, 0n, key.modelId]];
  if (key instanceof CacheKey) {
    // Upstream's check_cache_key: exactly one of reqId and prefixId names something.
    if (key.reqId === INVALID_ID) {
      throw paramInvalid(`${key} is the padding key (reqId 2^64 - 1): it names no request to pull`);
    }
    if (key.prefixId !== INVALID_ID) {
      throw paramInvalid(`${key} names both a request and a prefix: a pull takes one of them`);
    }
    return [KEY_CACHE_KEY, [key.promptClusterId, key.reqId, key.modelId]];
  }
  return [KEY_BY_ID, [key.clusterId, BigInt.asUintN(64, key.cacheId), BigInt(key.batchIndex)]];
}

const MANAGER = Symbol("CacheManager.construct");

/** Upstream's rule of allocation: a pool must be configured for the cache's placement. */
function requirePoolFor(settings: { memPool: boolean; hostMemPool: boolean }, desc: CacheDesc): void {
  const ok = (settings.memPool && desc.placement === Placement.DEVICE) ||
    (settings.hostMemPool && desc.placement === Placement.HOST);
  if (!ok) throw paramInvalid("you should config memory pool firstly and then set placement that matches it.");
}

function requireNumTensors(desc: CacheDesc): void {
  if (!(desc.numTensors > 0)) throw paramInvalid("num_tensors should be bigger than zero.");
}

function requireBlocks(cache: Cache, name: string, blocks: boolean): void {
  if (cache.isBlocksCache !== blocks) {
    throw paramInvalid(`param check failed, ${name} ${blocks ? "should be" : "can not be"} blocks cache.`);
  }
}

function requireOptionalBool(value: unknown, name: string): boolean | undefined {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  }
  return value;
}

/** The integer entries of a Map or a plain object with integer keys. */
function entriesOf(value: unknown, name: string): [number, unknown][] {
  if (value instanceof Map) {
    return [...value.entries()].map(([key, v]) => [requireInt(key, `${name} key`), v]);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} must be a Map or an object of block indexes, got ${describe(value)}`);
  }
  return Object.entries(value).map(([key, v]) => {
    if (!/^(0|-?[1-9][0-9]*)$/.test(key)) throw new TypeError(`${name} key ${JSON.stringify(key)} is not an integer`);
    return [Number(key), v];
  });
}

/** An array of integers (`requireInt`'s message names the first that is not). */
function requireInts(value: unknown, name: string, of: string): number[] {
  if (!Array.isArray(value)) return requireArray(value, name, of) as never; // throws
  // A copy by index (holes read as undefined, and refused), as requireArray's.
  const list: number[] = new Array(value.length);
  for (let i = 0; i < list.length; i++) {
    const x = value[i];
    if (typeof x !== "number" || !Number.isInteger(x)) requireInt(x, `${name}[${i}]`);
    list[i] = x;
  }
  return list;
}

/** Registered memory: the addresses, and the buffers to keep alive and watch. */
function resolveMemory(
  engine: Engine,
  desc: CacheDesc,
  addrs: readonly unknown[],
): Omit<Registration, "remoteAccessible"> {
  const list = requireArray(addrs, "addrs", "bigint or ArrayBuffer");
  const buffers: { buffer: ArrayBufferLike; byteLength: number }[] = [];
  const out = list.map((item, i) => {
    const name = `addrs[${i}]`;
    if (typeof item === "bigint" || typeof item === "number") {
      const address = requireUint64(item, name);
      if (address === 0n) throw paramInvalid("addr can not be zero.");
      return address;
    }
    let buffer: ArrayBufferLike;
    let offset = 0;
    let length: number;
    if (item instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && item instanceof SharedArrayBuffer)) {
      buffer = item;
      length = item.byteLength;
    } else if (ArrayBuffer.isView(item)) {
      buffer = item.buffer;
      offset = item.byteOffset;
      length = item.byteLength;
    } else {
      throw new TypeError(`${name} must be a bigint address, an ArrayBuffer or a TypedArray, got ${describe(item)}`);
    }
    const flags = buffer as { detached?: boolean; resizable?: boolean; growable?: boolean };
    if (flags.detached === true) throw paramInvalid(`${name}: the buffer is detached`);
    // A resizable buffer could shrink under the engine's copies.
    if (flags.resizable === true || flags.growable === true) {
      throw paramInvalid(`${name}: a resizable buffer cannot be registered`);
    }
    if (length < desc.size) {
      throw paramInvalid(`${name} holds ${length} bytes, less than a tensor of ${desc.size}`);
    }
    buffers.push({ buffer, byteLength: buffer.byteLength });
    return engine.lib.raw.address(new Uint8Array(buffer, offset, length));
  });
  return { addrs: out, buffers };
}

/**
 * The cache manager of an `LLMDataDist` initialized with
 * `llm.EnableCacheManager` = "1" (`LLMConfig.enableCacheManager`); get it from
 * `LLMDataDist.cacheManager`.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, LLMConfig, LLMDataDist, LLMRole } from "llm-datadist";
 * const config = new LLMConfig();
 * config.enableCacheManager = true;
 * config.memPoolConfig = '{"memory_size": 1048576}';
 * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
 * await dd.init(config);
 * const manager = dd.cacheManager;
 * const cache = await manager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT));
 * (manager.getCacheTensorViews(cache, 1)[0].data as Float32Array).fill(1.5);
 * const [copy] = await manager.getCacheTensors(cache, 1);
 * console.log(copy.data[0]); // 1.5
 * await manager.deallocateCache(cache);
 * ```
 */
export class CacheManager {
  readonly #access: CacheManagerAccess;

  /** @internal Managers come from `LLMDataDist.cacheManager`; this throws for anyone else. */
  constructor(token: unknown, access: CacheManagerAccess) {
    if (token !== MANAGER) throw new TypeError("CacheManager objects come from LLMDataDist.cacheManager");
    this.#access = access;
  }

  /**
   * Whether the instance is initialized (and not finalized).
   *
   * @example
   * ```ts
   * import { LLMDataDist, LLMRole } from "llm-datadist";
   * const dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "llm.EnableCacheManager": "1" });
   * const manager = dd.cacheManager;
   * dd.finalize();
   * console.log(manager.isInitialized()); // false
   * ```
   */
  isInitialized(): boolean {
    return this.#access.initialized();
  }

  /**
   * Allocates a cache from the pool of its placement (`llm.MemPoolConfig` for
   * DEVICE, `llm.HostMemPoolConfig` for HOST). `cacheKeys` name its batch rows
   * for pulls, from row 0; upstream's padding key (`reqId` 2^64 - 1) names
   * none. Release it with `deallocateCache`.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateCache(new CacheDesc(2, [1, 16], DataType.DT_FLOAT16), [
   *   new CacheKey(1n, 42n),
   * ]);
   * console.log(cache.cacheId, cache.isBlocksCache); // 1n false
   * ```
   */
  allocateCache(cacheDesc: CacheDesc, cacheKeys?: readonly CacheKey[], options?: CallOptions): Promise<Cache> {
    return rejecting(() => {
      const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
      const keys = requireInstances(cacheKeys, CacheKey, "cacheKeys");
      const signal = signalOf(options);
      requireNumTensors(desc);
      const engine = this.#access.current();
      requirePoolFor(this.#access.settings(), desc);
      if (keys.length > desc.batchSize) {
        throw paramInvalid(`${keys.length} cache keys given for a batch of ${desc.batchSize}`);
      }
      if (keys.length > 0) requireBatchFirst(desc, "cache keys (which name batch rows)");
      const rowKeys = keys.map((key) => key.reqId === INVALID_ID ? null : key);
      return runExclusive(engine.mutex, "allocateCache", engine.syncKvTimeout, signal, () => {
        engine.assertLive();
        const batchRows = desc.batchDimIndex === 0 ? desc.batchSize : 1;
        return this.#made(engine, engine.allocate(desc, batchRows, layoutTag(desc), rowKeys));
      });
    });
  }

  /**
   * Allocates a blocks (paged) cache: dimension `batchDimIndex` of the desc
   * counts its blocks, and a block of every tensor is `size / blocks` bytes.
   * `blocksCacheKey` names it for linked DECODERs' `pullBlocks` (on a PROMPT
   * or MIX; a DECODER's is kept nowhere, as nothing pulls from it). Release
   * it with `deallocateBlocksCache`, which releases the key too.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * // K and V of 16 blocks of [16 tokens x 8] FP16
   * const cache = await dd.cacheManager.allocateBlocksCache(new CacheDesc(2, [16, 16, 8], DataType.DT_FLOAT16));
   * console.log(cache.isBlocksCache, cache.cacheDesc.batchSize); // true 16
   * await dd.cacheManager.deallocateBlocksCache(cache);
   * ```
   */
  allocateBlocksCache(
    cacheDesc: CacheDesc,
    blocksCacheKey?: BlocksCacheKey,
    options?: CallOptions,
  ): Promise<Cache> {
    return rejecting(() => {
      const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
      if (blocksCacheKey !== undefined) requireInstance(blocksCacheKey, BlocksCacheKey, "blocksCacheKey");
      const signal = signalOf(options);
      requireNumTensors(desc);
      const engine = this.#access.current();
      requirePoolFor(this.#access.settings(), desc);
      return runExclusive(engine.mutex, "allocateBlocksCache", engine.syncKvTimeout, signal, () => {
        engine.assertLive();
        // The native side holds a BlocksCacheKey as the cache key
        // (cluster, LLMDD_BLOCKS_REQ_ID, model) of block 0, never consumed by a pull.
        const key = blocksCacheKey !== undefined && engine.role !== LLMRole.DECODER
          ? new CacheKey(blocksCacheKey.clusterId, BLOCKS_REQ_ID, blocksCacheKey.modelId)
          : undefined;
        const record = engine.allocate(desc, desc.batchSize, layoutTag(desc), key ? [key] : [], true);
        if (key) record.blocksKey = key;
        return this.#made(engine, record);
      });
    });
  }

  /**
   * Registers memory the program owns as a cache (upstream `register_cache`):
   * one address per tensor (`addrs.length === numTensors`, none zero), as a
   * bigint, or as an ArrayBuffer / TypedArray of at least a tensor's bytes,
   * which the library keeps referenced until `unregisterCache` (a buffer
   * detached or resized meanwhile is refused by every call). The memory must
   * stay valid until then. `remoteAccessible` (default: DEVICE placement, and
   * not after `linkClusters`) lets linked peers reach it; true after a link is
   * refused. A cache has at most 240 addresses (upstream's RegisterKvCache).
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1" });
   * const k = new Float32Array(32).fill(2), v = new Float32Array(32).fill(3);
   * const desc = new CacheDesc(2, [4, 8], DataType.DT_FLOAT, Placement.HOST);
   * const cache = await dd.cacheManager.registerCache(desc, [k, v]);
   * const [copy] = await dd.cacheManager.getCacheTensors(cache, 1);
   * console.log(copy.data[0]); // 3
   * await dd.cacheManager.unregisterCache(cache.cacheId);
   * ```
   */
  async registerCache(
    cacheDesc: CacheDesc,
    addrs: readonly TensorMemory[],
    cacheKeys?: readonly CacheKey[],
    remoteAccessible?: boolean,
    options?: CallOptions,
  ): Promise<Cache> {
    const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
    requireArray(addrs, "addrs", "bigint or ArrayBuffer");
    const keys = requireInstances(cacheKeys, CacheKey, "cacheKeys");
    requireOptionalBool(remoteAccessible, "remoteAccessible");
    const rowKeys = keys.map((key) => key.reqId === INVALID_ID ? null : key);
    const batchRows = desc.batchDimIndex === 0 ? desc.batchSize : 1;
    return await this.#register("registerCache", desc, addrs, rowKeys, remoteAccessible, false, batchRows, options);
  }

  /**
   * Registers memory the program owns as a blocks cache (upstream
   * `register_blocks_cache`); addresses and memory as `registerCache`.
   * `blocksCacheKey` (on a PROMPT or MIX) names it for linked peers' `pullBlocks`
   * until `unregisterCache`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({ "llm.EnableCacheManager": "1" });
   * const blocks = new Uint8Array(4 * 64); // 4 blocks of 64 bytes, one tensor
   * const desc = new CacheDesc(1, [4, 64], DataType.DT_UINT8, Placement.HOST);
   * const cache = await dd.cacheManager.registerBlocksCache(desc, [blocks]);
   * blocks.fill(7, 0, 64);
   * await dd.cacheManager.copyBlocks(cache, { 0: [2, 3] });
   * console.log(blocks[2 * 64], blocks[3 * 64 + 63]); // 7 7
   * await dd.cacheManager.unregisterCache(cache.cacheId);
   * ```
   */
  async registerBlocksCache(
    cacheDesc: CacheDesc,
    addrs: readonly TensorMemory[],
    blocksCacheKey?: BlocksCacheKey,
    remoteAccessible?: boolean,
    options?: CallOptions,
  ): Promise<Cache> {
    const desc = requireInstance(cacheDesc, CacheDesc, "cacheDesc");
    requireArray(addrs, "addrs", "bigint or ArrayBuffer");
    if (blocksCacheKey !== undefined) requireInstance(blocksCacheKey, BlocksCacheKey, "blocksCacheKey");
    requireOptionalBool(remoteAccessible, "remoteAccessible");
    const engine = this.#access.current();
    // As allocateBlocksCache: the key names block 0 natively, for linked peers.
    const key = blocksCacheKey !== undefined && engine.role !== LLMRole.DECODER
      ? new CacheKey(blocksCacheKey.clusterId, BLOCKS_REQ_ID, blocksCacheKey.modelId)
      : undefined;
    return await this.#register(
      "registerBlocksCache",
      desc,
      addrs,
      key ? [key] : [],
      remoteAccessible,
      true,
      desc.batchSize,
      options,
    );
  }

  async #register(
    what: string,
    desc: CacheDesc,
    addrs: readonly unknown[],
    keys: readonly (CacheKey | null)[],
    remoteAccessible: boolean | undefined,
    isBlocksCache: boolean,
    batchRows: number,
    options: CallOptions | undefined,
  ): Promise<Cache> {
    const signal = signalOf(options);
    const engine = this.#access.current();
    const linked = this.#access.isCallLinked();
    if (linked && remoteAccessible === true) {
      throw paramInvalid("you can not register remote accessible cache after link.");
    }
    if (addrs.length === 0) throw paramInvalid("addrs can not be empty.");
    if (addrs.length !== desc.numTensors) throw paramInvalid("addrs length should be equal to num_tensors.");
    if (addrs.length > MAX_REGISTERED_ADDRS) {
      throw paramInvalid(`${addrs.length} addresses: a registered cache has at most ${MAX_REGISTERED_ADDRS}`);
    }
    if (keys.length > desc.batchSize) {
      throw paramInvalid(`${keys.length} cache keys given for a batch of ${desc.batchSize}`);
    }
    if (keys.length > 0) requireBatchFirst(desc, "cache keys (which name batch rows)");
    if (engine.deviceIds.length !== 1) {
      throw paramInvalid(`${what} takes the addresses of one device; this instance has ${engine.deviceIds.length}`);
    }
    const memory = resolveMemory(engine, desc, addrs);
    const accessible = remoteAccessible ?? (desc.placement === Placement.DEVICE && !linked);
    return await runExclusive(engine.mutex, what, engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      const registration = { ...memory, remoteAccessible: accessible };
      return this.#made(engine, engine.allocate(desc, batchRows, layoutTag(desc), keys, isBlocksCache, registration));
    });
  }

  /**
   * Unregisters a registered cache by id (upstream `unregister_cache`): the
   * library lets go of its memory, and the `Cache` is inert. As upstream, only
   * once this instance is unlinked from every cluster; an id that is not (or
   * no longer) registered is not an error.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1" });
   * const cache = await dd.cacheManager.registerCache(
   *   new CacheDesc(1, [64], DataType.DT_UINT8, Placement.HOST),
   *   [new Uint8Array(64)],
   * );
   * await dd.cacheManager.unregisterCache(cache.cacheId);
   * console.log(cache.tensorAddrs.length); // 0
   * ```
   */
  async unregisterCache(cacheId: bigint | number, options?: CallOptions): Promise<void> {
    if (typeof cacheId !== "bigint" && !(typeof cacheId === "number" && Number.isInteger(cacheId))) {
      throw new TypeError(`cacheId must be an integer, got ${describe(cacheId)}`);
    }
    const id = BigInt(cacheId);
    if (id < -(2n ** 63n) || id >= 2n ** 63n) {
      throw new ValueError(`cacheId's value is out of range, ${id} is not an int64 value.`);
    }
    const signal = signalOf(options);
    const engine = this.#access.current();
    if (this.#access.hasLinks()) {
      throw paramInvalid("unregister_cache must be called after this LLMDataDist is unlinked from every cluster.");
    }
    await runExclusive(engine.mutex, "unregisterCache", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      const record = id > 0n ? engine.recordOf(id) : undefined;
      // Upstream's UnregisterCacheEntry answers SUCCESS for an id it does not hold.
      if (record === undefined) return;
      if (record.registered === undefined) {
        throw paramInvalid(`cache ${id} was allocated, not registered: deallocate it instead`);
      }
      engine.unregister(record);
    });
  }

  /**
   * Deallocates a cache from `allocateCache` (not a blocks cache). Its memory
   * returns to the pool once no key names it.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateCache(new CacheDesc(1, [64], DataType.DT_UINT8));
   * await dd.cacheManager.deallocateCache(cache);
   * console.log(cache.tensorAddrs.length); // 0
   * ```
   */
  deallocateCache(cache: Cache, options?: CallOptions): Promise<void> {
    return rejecting(() => {
      requireInstance(cache, Cache, "cache");
      requireBlocks(cache, "cache", false);
      return this.#deallocate("deallocateCache", cache, options);
    });
  }

  /**
   * Deallocates a blocks cache from `allocateBlocksCache`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateBlocksCache(new CacheDesc(1, [4, 64], DataType.DT_UINT8));
   * await dd.cacheManager.deallocateBlocksCache(cache);
   * ```
   */
  deallocateBlocksCache(cache: Cache, options?: CallOptions): Promise<void> {
    return rejecting(() => {
      requireInstance(cache, Cache, "cache");
      requireBlocks(cache, "cache", true);
      return this.#deallocate("deallocateBlocksCache", cache, options);
    });
  }

  #deallocate(what: string, cache: Cache, options: CallOptions | undefined): Promise<void> {
    const signal = signalOf(options);
    const engine = this.#access.current();
    return runExclusive(engine.mutex, what, engine.syncKvTimeout, signal, () => {
      const record = engine.checkLive(recordOfCache(cache), cache.cacheId);
      if (record.registered !== undefined) {
        throw paramInvalid(`cache ${cache.cacheId} was registered, not allocated: unregister it instead`);
      }
      if (record.blocksKey) {
        engine.removeKey(record.blocksKey);
        record.blocksKey = undefined;
      }
      engine.deallocate(record);
    });
  }

  /**
   * Copies a batch row of `src` into a batch row of `dst` (upstream V2
   * `copy_cache`): `size` bytes (-1: the rest of the row) from byte `offset`
   * of the row of every tensor. Neither may be a blocks cache; `reqId` is
   * upstream's, for its logs only.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const m = dd.cacheManager;
   * const desc = new CacheDesc(1, [2, 4], DataType.DT_INT32);
   * const a = await m.allocateCache(desc), b = await m.allocateCache(desc);
   * (m.getCacheTensorViews(a)[0].data as Int32Array).set([1, 2, 3, 4, 5, 6, 7, 8]);
   * await m.copyCache(b, a, 0, 1); // row 1 of a into row 0 of b
   * console.log([...(await m.getCacheTensors(b))[0].data].slice(0, 4)); // [ 5, 6, 7, 8 ]
   * ```
   */
  async copyCache(
    dst: Cache,
    src: Cache,
    dstBatchIndex = 0,
    srcBatchIndex = 0,
    offset = 0,
    size = -1,
    reqId?: bigint | number,
    options?: CallOptions,
  ): Promise<void> {
    requireInstance(dst, Cache, "dst");
    requireInstance(src, Cache, "src");
    const dstRow = requireRow(dstBatchIndex, "dstBatchIndex");
    const srcRow = requireRow(srcBatchIndex, "srcBatchIndex");
    requireIntIn(offset, "offset", 0, Number.MAX_SAFE_INTEGER);
    requireIntIn(size, "size", INT64_MIN, Number.MAX_SAFE_INTEGER);
    requireBlocks(src, "src cache", false);
    requireBlocks(dst, "dst cache", false);
    const n = checkSize(size);
    if (reqId !== undefined) requireUint64(reqId, "reqId");
    const signal = signalOf(options);
    const engine = this.#access.current();
    const d = dst.cacheDesc;
    const s = src.cacheDesc;
    checkRowIn(d, dstRow, "dstBatchIndex");
    checkRowIn(s, srcRow, "srcBatchIndex");
    if (!d.isCompatibleWith(s)) throw paramInvalid(`the caches' descs differ beyond batch size: ${d} vs ${s}`);
    requireBatchFirst(d, "copyCache");
    const rowBytes = rowBytesOf(d);
    const bytes = n === -1 ? rowBytes - offset : n;
    if (offset >= rowBytes || offset + bytes > rowBytes) {
      throw paramInvalid(`offset ${offset} + size ${bytes} exceeds the row of ${rowBytes} bytes`);
    }
    await runExclusive(engine.mutex, "copyCache", engine.syncKvTimeout, signal, (op) => {
      const offThread = bytes * d.numTensors * engine.deviceIds.length >= OFF_THREAD_BYTES;
      return engine.copy(
        engine.checkLive(recordOfCache(dst), dst.cacheId),
        engine.checkLive(recordOfCache(src), src.cacheId),
        dstRow * rowBytes + offset,
        srcRow * rowBytes + offset,
        bytes,
        offThread ? op : undefined,
      );
    });
  }

  /**
   * Copies blocks within a blocks cache (upstream `copy_blocks`):
   * `copyBlockInfo` maps a source block to the blocks it is copied to, as a
   * Map or a plain object. Every block of every tensor moves in one native
   * call. An index out of range rejects with `LLM_PARAM_INVALID`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const m = dd.cacheManager;
   * const cache = await m.allocateBlocksCache(new CacheDesc(1, [4, 2], DataType.DT_INT32));
   * (m.getCacheTensorViews(cache)[0].data as Int32Array).set([1, 2, 3, 4, 5, 6, 7, 8]);
   * await m.copyBlocks(cache, new Map([[0, [2, 3]]]));
   * console.log([...m.getCacheTensorViews(cache)[0].data]); // [ 1, 2, 3, 4, 1, 2, 1, 2 ]
   * ```
   */
  async copyBlocks(cache: Cache, copyBlockInfo: BlockCopies, options?: CallOptions): Promise<void> {
    requireInstance(cache, Cache, "cache");
    const entries = entriesOf(copyBlockInfo, "copyBlockInfo");
    const srcs: number[] = [], dsts: number[] = [];
    for (const [src, list] of entries) {
      for (const dst of requireArray(list, `copyBlockInfo[${src}]`, "block index")) {
        srcs.push(src);
        dsts.push(requireInt(dst, `copyBlockInfo[${src}] item`));
      }
    }
    requireBlocks(cache, "cache", true);
    const signal = signalOf(options);
    const engine = this.#access.current();
    await this.#copyBlocks(engine, "copyBlocks", cache, cache, srcs, dsts, signal);
  }

  /**
   * Swaps blocks between a HOST and a DEVICE blocks cache (upstream
   * `swap_blocks`): block `s` of `src` is copied to block `srcToDst[s]` of
   * `dst`, all in one native call. The caches need equal block sizes and
   * tensor counts; HOST → DEVICE swaps in, DEVICE → HOST swaps out, anything
   * else is refused.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.DECODER, 2n);
   * await dd.init({
   *   "llm.EnableCacheManager": "1",
   *   "llm.MemPoolConfig": '{"memory_size": 1048576}',
   *   "llm.HostMemPoolConfig": '{"memory_size": 1048576}',
   * });
   * const m = dd.cacheManager;
   * const device = await m.allocateBlocksCache(new CacheDesc(1, [8, 4], DataType.DT_INT32));
   * const host = await m.allocateBlocksCache(new CacheDesc(1, [4, 4], DataType.DT_INT32, Placement.HOST));
   * (m.getCacheTensorViews(device)[0].data as Int32Array).fill(9, 4 * 5, 4 * 6); // block 5
   * await m.swapBlocks(device, host, { 5: 0 }); // swap out
   * console.log(m.getCacheTensorViews(host)[0].data[0]); // 9
   * ```
   */
  async swapBlocks(src: Cache, dst: Cache, srcToDst: BlockMapping, options?: CallOptions): Promise<void> {
    requireInstance(src, Cache, "src");
    requireInstance(dst, Cache, "dst");
    requireBlocks(src, "src cache", true);
    requireBlocks(dst, "dst cache", true);
    const entries = entriesOf(srcToDst, "srcToDst");
    const pairs = entries.map(([s, d]) => [s, requireInt(d, `srcToDst[${s}]`)] as const);
    const sd = src.cacheDesc, dd = dst.cacheDesc;
    const srcBlockSize = sd.size / sd.batchSize, dstBlockSize = dd.size / dd.batchSize;
    if (srcBlockSize !== dstBlockSize) {
      throw paramInvalid(`src block size:${srcBlockSize} and dst block size:${dstBlockSize} must be equal`);
    }
    if (sd.numTensors !== dd.numTensors) {
      throw paramInvalid(`src num_tensors:${sd.numTensors} and dst num_tensors:${dd.numTensors} must be equal`);
    }
    for (const [s, d] of pairs) {
      if (!(s >= 0 && s < sd.batchSize)) throw paramInvalid(`src_block_index:${s} must be in [0, ${sd.batchSize})`);
      if (!(d >= 0 && d < dd.batchSize)) throw paramInvalid(`dst_block_index:${d} must be in [0, ${dd.batchSize})`);
    }
    const swapIn = sd.placement === Placement.HOST && dd.placement === Placement.DEVICE;
    const swapOut = sd.placement === Placement.DEVICE && dd.placement === Placement.HOST;
    if (!swapIn && !swapOut) {
      throw paramInvalid(
        `swap src placement:${placementName(sd.placement)} to dst placement:${
          placementName(dd.placement)
        } is not support`,
      );
    }
    const signal = signalOf(options);
    const engine = this.#access.current();
    const srcs = pairs.map(([s]) => s), dsts = pairs.map(([, d]) => d);
    await this.#copyBlocks(engine, "swapBlocks", dst, src, srcs, dsts, signal);
  }

  async #copyBlocks(
    engine: Engine,
    what: string,
    dst: Cache,
    src: Cache,
    srcs: readonly number[],
    dsts: readonly number[],
    signal: AbortSignal | undefined,
  ): Promise<void> {
    await runExclusive(engine.mutex, what, engine.syncKvTimeout, signal, (op) => {
      const to = engine.checkLive(recordOfCache(dst), dst.cacheId);
      const from = engine.checkLive(recordOfCache(src), src.cacheId);
      if (dsts.length === 0) return; // upstream copies nothing and succeeds
      const pairs = blockPairs(srcs, dsts);
      const blockBytes = src.cacheDesc.size / src.cacheDesc.batchSize;
      const total = dsts.length * blockBytes * src.cacheDesc.numTensors * engine.deviceIds.length;
      const context = `${what}(${dst.cacheId} <- ${src.cacheId}) failed`;
      return engine.copyBlocks(to, from, pairs, total >= OFF_THREAD_BYTES ? op : undefined, context);
    });
  }

  /**
   * Pulls blocks from a linked PROMPT (upstream `pull_blocks`), all of them in
   * one native call: block `srcBlocks[i]` of the PROMPT's blocks cache named by
   * a `BlocksCacheKey` goes to block `dstBlocks[i]` of `dstCache`, a blocks
   * cache; by a `CacheKey` (consumed on success) or a `CacheKeyByIdAndIndex`,
   * `srcBlocks` must be empty and the named row, cut into blocks of
   * `dstCache`'s size, fills `dstBlocks` in order. Layer ranges (half-open
   * `{ start, stop }` or `[start, stop]`, `tensorNumPerLayer` tensors a layer,
   * default 2) pull some layers into others of equal count. The PROMPT's
   * blocks are copied out of its shared memory in chunks; the deadline
   * (`syncKvTimeout`) and `options.signal` are checked between them.
   *
   * Errors: `TypeError` / `ValueError` for bad arguments; `LLMException` with
   * `LLM_PARAM_INVALID` (upstream's rules: `dstCache` not a blocks cache, empty
   * `dstBlocks`, `srcBlocks` empty with a `BlocksCacheKey` or given without,
   * lists of unequal lengths, a block or layer out of range, block sizes that
   * differ), `LLM_NOT_YET_LINK`, `LLM_KV_CACHE_NOT_EXIST`, `LLM_LINK_FAILED` (the
   * PROMPT went away), `LLM_WAIT_PROCESS_TIMEOUT`.
   *
   * @example
   * ```ts
   * import { BlocksCacheKey, CacheDesc, DataType, LLMClusterInfo, LLMDataDist, LLMRole } from "llm-datadist";
   * // A PROMPT and a DECODER in one process (the host backend allows it; usually they are two)
   * const options = { "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' };
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
   * const desc = new CacheDesc(2, [8, 4], DataType.DT_INT32); // K and V, 8 blocks of 4
   * const kv = await prompt.cacheManager.allocateBlocksCache(desc, new BlocksCacheKey(1n));
   * for (const t of prompt.cacheManager.getCacheTensorViews(kv)) (t.data as Int32Array).fill(7, 4 * 3, 4 * 4); // block 3
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init(options);
   * const cache = await decoder.cacheManager.allocateBlocksCache(desc);
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * await decoder.cacheManager.pullBlocks(new BlocksCacheKey(1n), cache, [3], [5]);
   * const [k] = await decoder.cacheManager.getCacheTensors(cache, 0);
   * console.log(k.data[4 * 5]); // 7
   * await decoder.unlinkClusters([cluster], 3000);
   * ```
   */
  pullBlocks(
    srcCacheKey: CacheKey | CacheKeyByIdAndIndex | BlocksCacheKey,
    dstCache: Cache,
    srcBlocks: readonly number[] = [],
    dstBlocks: readonly number[] = [],
    options: PullOptions = {},
  ): Promise<void> {
    return rejecting(() => this.#pullBlocks(srcCacheKey, dstCache, srcBlocks, dstBlocks, options));
  }

  #pullBlocks(
    srcCacheKey: CacheKey | CacheKeyByIdAndIndex | BlocksCacheKey,
    dstCache: Cache,
    srcBlocks: readonly number[],
    dstBlocks: readonly number[],
    options: PullOptions,
  ): Promise<void> {
    if (
      !(srcCacheKey instanceof CacheKey) && !(srcCacheKey instanceof CacheKeyByIdAndIndex) &&
      !(srcCacheKey instanceof BlocksCacheKey)
    ) {
      throw new TypeError(
        `srcCacheKey must be a CacheKey, a CacheKeyByIdAndIndex or a BlocksCacheKey, got ${describe(srcCacheKey)}`,
      );
    }
    requireInstance(dstCache, Cache, "dstCache");
    const srcList = requireInts(srcBlocks, "srcBlocks", "block index");
    const dstList = requireInts(dstBlocks, "dstBlocks", "block index");
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    requireBlocks(dstCache, "dst_cache", true);
    if (dstList.length === 0) throw paramInvalid("dst_blocks can not be empty.");
    const tensors = tensorRanges(options, dstCache, "pull_blocks");
    if (srcCacheKey instanceof BlocksCacheKey) {
      if (srcList.length === 0) throw paramInvalid("src_blocks can not be empty.");
      if (srcList.length !== dstList.length) {
        throw paramInvalid(`src_blocks size:${srcList.length} and dst_blocks size:${dstList.length} must be equal.`);
      }
    } else if (srcList.length !== 0) {
      throw paramInvalid("src_blocks should be empty when src_cache_key is not instance of BlocksCacheKey.");
    }
    const [kind, words] = pullKeyOf(srcCacheKey);
    const signal = signalOf(options);
    const engine = this.#access.current();
    return runExclusive(engine.mutex, "pullBlocks", engine.syncKvTimeout, signal, (op) => {
      const record = engine.checkLive(recordOfCache(dstCache), dstCache.cacheId);
      return engine.pullBlocks(
        record,
        kind,
        words,
        srcList,
        dstList,
        tensors,
        op,
        () => `pullBlocks(${srcCacheKey}) failed`,
      );
    });
  }

  /**
   * Pulls a batch row from a linked PROMPT into batch row `batchIndex` of
   * `cache` (upstream v2 `pull_cache`): `size` bytes of every tensor's row
   * (-1: the whole row), by a `CacheKey` (consumed on success) or a
   * `CacheKeyByIdAndIndex`; `cache` is not a blocks cache. Layer ranges as
   * `pullBlocks` (with them, `size` must be -1).
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMClusterInfo, LLMDataDist, LLMRole } from "llm-datadist";
   * const options = { "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' };
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
   * const desc = new CacheDesc(2, [1, 8], DataType.DT_INT32);
   * const kv = await prompt.cacheManager.allocateCache(desc, [new CacheKey(1n, 42n)]);
   * for (const t of prompt.cacheManager.getCacheTensorViews(kv)) (t.data as Int32Array).fill(42);
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init(options);
   * const cache = await decoder.cacheManager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_INT32));
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * await decoder.cacheManager.pullCache(new CacheKey(1n, 42n), cache, 2, -1, { srcLayerRange: [0, 1], dstLayerRange: [0, 1] });
   * const [v] = await decoder.cacheManager.getCacheTensors(cache, 1);
   * console.log(v.data[2 * 8]); // 42
   * await decoder.unlinkClusters([cluster], 3000);
   * ```
   */
  pullCache(
    cacheKey: CacheKey | CacheKeyByIdAndIndex,
    cache: Cache,
    batchIndex = 0,
    size = -1,
    options: PullOptions = {},
  ): Promise<void> {
    return rejecting(() => this.#pullCache(cacheKey, cache, batchIndex, size, options));
  }

  #pullCache(
    cacheKey: CacheKey | CacheKeyByIdAndIndex,
    cache: Cache,
    batchIndex: number,
    size: number,
    options: PullOptions,
  ): Promise<void> {
    if (!(cacheKey instanceof CacheKey) && !(cacheKey instanceof CacheKeyByIdAndIndex)) {
      throw new TypeError(`cacheKey must be a CacheKey or a CacheKeyByIdAndIndex, got ${describe(cacheKey)}`);
    }
    requireInstance(cache, Cache, "cache");
    const row = requireIntIn(batchIndex, "batchIndex", 0, 0xFFFF_FFFF);
    const n = requireIntIn(size, "size", INT64_MIN, Number.MAX_SAFE_INTEGER);
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    requireBlocks(cache, "cache", false);
    if (n !== -1 && n <= 0) {
      throw paramInvalid(`[pull_cache] param check failed, size (${n}) is invalid, should be = -1 or > 0`);
    }
    const tensors = tensorRanges(options, cache, "pull_cache");
    if (tensors[2] !== 0 && n !== -1) throw paramInvalid("size must be -1 (the whole row) with layer ranges");
    const [kind, words] = pullKeyOf(cacheKey);
    const signal = signalOf(options);
    const engine = this.#access.current();
    return runExclusive(engine.mutex, "pullCache", engine.syncKvTimeout, signal, (op) => {
      const record = engine.checkLive(recordOfCache(cache), cache.cacheId);
      const context = () => `pullCache(${cacheKey}) failed`;
      if (tensors[2] === 0) {
        return engine.pull(
          record,
          { byId: kind === KEY_BY_ID, words },
          row,
          n === -1 ? WHOLE_ROW : BigInt(n),
          op,
          context,
        );
      }
      // A row is one block of a cache that is not a blocks cache.
      return engine.pullBlocks(record, kind, words, [0], [row], tensors, op, context);
    });
  }

  /**
   * Pushes a batch row of `srcCache` into a row of a linked peer's cache
   * (upstream `push_cache`): row `srcBatchIndex` of every tensor of layers
   * `srcLayerRange` (default: every layer; half-open `{ start, stop }` or
   * `[start, stop]`, `tensorNumPerLayer` tensors a layer) goes to layers
   * `dstLayerRange` (as many) of the row `dstCacheKey` names. `size` must be
   * -1. This instance needs `enableRemoteCacheAccessible`; the destination must
   * be remote-accessible (registered with `remoteAccessible`, or allocated by
   * a peer with `enableRemoteCacheAccessible`), and so must `srcCache`. On the
   * host backend the instance that linked pushes into the one it linked to.
   *
   * Errors: `TypeError` / `ValueError` for bad arguments; `LLMException` with
   * `LLM_PARAM_INVALID` (upstream's rules: no remote access here or there,
   * a blocks cache, a layer range empty, out of range or of unequal length,
   * `size` not -1, rows of different sizes), `LLM_NOT_YET_LINK`,
   * `LLM_KV_CACHE_NOT_EXIST`, `LLM_LINK_FAILED`, `LLM_WAIT_PROCESS_TIMEOUT`.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKeyByIdAndIndex, DataType, LLMClusterInfo, LLMDataDist, LLMRole } from "llm-datadist";
   * const options = {
   *   "llm.EnableCacheManager": "1",
   *   "llm.EnableRemoteCacheAccessible": "1",
   *   "llm.MemPoolConfig": '{"memory_size": 1048576}',
   * };
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
   * const desc = new CacheDesc(2, [4, 8], DataType.DT_INT32); // K and V, 4 rows of 8
   * const kv = await prompt.cacheManager.allocateCache(desc);
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init(options);
   * const mine = await decoder.cacheManager.allocateCache(desc);
   * (decoder.cacheManager.getCacheTensorViews(mine, 0)[0].data as Int32Array).fill(5); // K, every row
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * await decoder.cacheManager.pushCache(new CacheKeyByIdAndIndex(1n, kv.cacheId, 3), mine, 0);
   * const [k] = await prompt.cacheManager.getCacheTensors(kv, 0);
   * console.log(k.data[3 * 8], k.data[0]); // 5 0
   * await decoder.unlinkClusters([cluster], 3000);
   * ```
   */
  async pushCache(
    dstCacheKey: CacheKeyByIdAndIndex,
    srcCache: Cache,
    srcBatchIndex = 0,
    srcLayerRange?: LayerRange,
    dstLayerRange?: LayerRange,
    size = -1,
    tensorNumPerLayer = 2,
    options?: CallOptions,
  ): Promise<void> {
    const engine = this.#access.current();
    this.#requireRemote("push_cache");
    requireInstance(dstCacheKey, CacheKeyByIdAndIndex, "dstCacheKey");
    requireInstance(srcCache, Cache, "srcCache");
    const row = requireIntIn(srcBatchIndex, "srcBatchIndex", 0, 0xFFFF_FFFF);
    requireBlocks(srcCache, "cache", false);
    const tensors = pushTensorRanges(srcLayerRange, dstLayerRange, tensorNumPerLayer, srcCache, "push_cache");
    const n = requireIntIn(size, "size", INT64_MIN, Number.MAX_SAFE_INTEGER);
    if (n !== -1) throw paramInvalid(`[push_cache] param check failed, size (${n}) is invalid, should be = -1.`);
    const signal = signalOf(options);
    if (tensors === null) return;
    const words = [
      dstCacheKey.clusterId,
      BigInt.asUintN(64, dstCacheKey.cacheId),
      BigInt(dstCacheKey.batchIndex),
    ] as const;
    await runExclusive(engine.mutex, "pushCache", engine.syncKvTimeout, signal, (op) => {
      const record = engine.checkLive(recordOfCache(srcCache), srcCache.cacheId);
      return engine.pushBlocks(record, row, KEY_BY_ID, words, null, tensors, op, `pushCache(${dstCacheKey}) failed`);
    });
  }

  /**
   * Pushes blocks of `srcCache`, a blocks cache, into the blocks cache a linked
   * peer names with `dstCacheKey` (upstream `push_blocks`), all of them in one
   * native call: block `srcBlocks[i]` goes to block `dstBlocks[i]`, for the
   * layers of `options` (as `pullBlocks`; default: every layer of the source).
   * Needs remote access as `pushCache`. Into the peer's pools the blocks are
   * written through a shared mapping in chunks (deadline and
   * `options.signal` checked between them); into memory the peer registered,
   * through the link's socket in one request.
   *
   * Errors: as `pushCache`, and `LLM_PARAM_INVALID` for `dstBlocks` empty,
   * lists of unequal lengths, a block out of range, block sizes that differ.
   *
   * @example
   * ```ts
   * import { BlocksCacheKey, CacheDesc, DataType, LLMClusterInfo, LLMDataDist, LLMRole } from "llm-datadist";
   * const options = {
   *   "llm.EnableCacheManager": "1",
   *   "llm.EnableRemoteCacheAccessible": "1",
   *   "llm.MemPoolConfig": '{"memory_size": 1048576}',
   * };
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
   * const desc = new CacheDesc(2, [8, 4], DataType.DT_INT32); // K and V, 8 blocks of 4
   * const kv = await prompt.cacheManager.allocateBlocksCache(desc, new BlocksCacheKey(1n));
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init(options);
   * const mine = await decoder.cacheManager.allocateBlocksCache(desc);
   * (decoder.cacheManager.getCacheTensorViews(mine, 0)[0].data as Int32Array).fill(9, 0, 4); // block 0 of K
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * await decoder.cacheManager.pushBlocks(new BlocksCacheKey(1n), mine, [0], [6], { srcLayerRange: [0, 1], dstLayerRange: [0, 1] });
   * const [k] = await prompt.cacheManager.getCacheTensors(kv, 0);
   * console.log(k.data[4 * 6]); // 9
   * await decoder.unlinkClusters([cluster], 3000);
   * ```
   */
  async pushBlocks(
    dstCacheKey: BlocksCacheKey,
    srcCache: Cache,
    srcBlocks: readonly number[] = [],
    dstBlocks: readonly number[] = [],
    options: PushOptions = {},
  ): Promise<void> {
    const engine = this.#access.current();
    this.#requireRemote("push_blocks");
    requireInstance(dstCacheKey, BlocksCacheKey, "dstCacheKey");
    requireInstance(srcCache, Cache, "srcCache");
    const srcList = requireInts(srcBlocks, "srcBlocks", "block index");
    const dstList = requireInts(dstBlocks, "dstBlocks", "block index");
    if (typeof options !== "object" || options === null) {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    requireBlocks(srcCache, "cache", true);
    if (dstList.length === 0) throw paramInvalid("dst_blocks can not be empty.");
    const tensors = pushTensorRanges(
      options.srcLayerRange,
      options.dstLayerRange,
      options.tensorNumPerLayer ?? 2,
      srcCache,
      "push_blocks",
    );
    if (srcList.length !== dstList.length) {
      throw paramInvalid(`src_block num:${srcList.length} not match dst_block num:${dstList.length}`);
    }
    const signal = signalOf(options);
    if (tensors === null) return;
    const pairs = blockPairs(srcList, dstList);
    const words = [dstCacheKey.clusterId, 0n, dstCacheKey.modelId] as const;
    await runExclusive(engine.mutex, "pushBlocks", engine.syncKvTimeout, signal, (op) => {
      const record = engine.checkLive(recordOfCache(srcCache), srcCache.cacheId);
      return engine.pushBlocks(record, 0, KEY_BLOCKS, words, pairs, tensors, op, `pushBlocks(${dstCacheKey}) failed`);
    });
  }

  /**
   * Pushes `srcCache` layer by layer as the program computes it (upstream
   * `transfer_cache_async`): for each layer, waits until
   * `layerSynchronizer.synchronizeLayer(layer)` returns (or resolves to) true,
   * then pushes that layer (K and V: two tensors) to every target whose
   * `srcLayerRange` holds it. Targets are `TransferWithCacheKeyConfig`s on an
   * instance with `enableRemoteCacheAccessible`, `TransferConfig`s (peer
   * addresses) otherwise. Block lists: `srcBlockIndices` with
   * `dstBlockIndices` move blocks to blocks (by `BlocksCacheKey`, by a
   * `CacheKeyByIdAndIndex` of batch index 0, or to addresses);
   * `dstBlockIndices` alone, with `dstBlockMemorySize`, cut the source from
   * its row on into blocks of that size, block j to `dstBlockIndices[j]` (to
   * addresses, or by `BlocksCacheKey`, whose blocks must be of that size). Returns at
   * once with a `CacheTask`; the first failure ends the transfer (a false or
   * throwing synchronizer: `LLM_PARAM_INVALID` for the layer's targets).
   * Arguments are checked before it returns (upstream's rules and messages).
   *
   * @example
   * ```ts
   * import {
   *   BlocksCacheKey, CacheDesc, DataType, LLMClusterInfo, LLMDataDist, LLMRole, TransferWithCacheKeyConfig,
   * } from "llm-datadist";
   * const options = {
   *   "llm.EnableCacheManager": "1",
   *   "llm.EnableRemoteCacheAccessible": "1",
   *   "llm.MemPoolConfig": '{"memory_size": 1048576}',
   * };
   * await using prompt = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await prompt.init({ ...options, "llm.listenIpInfo": "127.0.0.1:0" });
   * const desc = new CacheDesc(4, [8, 16], DataType.DT_UINT8); // 2 layers, 8 blocks of 16 bytes
   * const kv = await prompt.cacheManager.allocateBlocksCache(desc, new BlocksCacheKey(1n));
   *
   * await using decoder = new LLMDataDist(LLMRole.DECODER, 2n);
   * await decoder.init(options);
   * const mine = await decoder.cacheManager.allocateBlocksCache(desc);
   * const cluster = new LLMClusterInfo();
   * cluster.remoteClusterId = 1n;
   * cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
   * await decoder.linkClusters([cluster], 3000);
   * const synchronizer = {
   *   // Layer i is ready once it is filled (a model's forward pass, here).
   *   async synchronizeLayer(layer: number) {
   *     for (const t of [2 * layer, 2 * layer + 1]) {
   *       (decoder.cacheManager.getCacheTensorViews(mine, t)[0].data as Uint8Array).fill(layer + 1, 0, 16);
   *     }
   *     return true;
   *   },
   * };
   * const task = decoder.cacheManager.transferCacheAsync(mine, synchronizer, [
   *   new TransferWithCacheKeyConfig(new BlocksCacheKey(1n), [0, 2], [0, 2]),
   * ], [0], [3]);
   * console.log(await task.synchronize(5000)); // 0
   * const [v1] = await prompt.cacheManager.getCacheTensors(kv, 3);
   * console.log(v1.data[3 * 16]); // 2
   * await decoder.unlinkClusters([cluster], 3000);
   * ```
   */
  transferCacheAsync(
    srcCache: Cache,
    layerSynchronizer: LayerSynchronizer,
    transferConfigs: readonly (TransferConfig | TransferWithCacheKeyConfig)[],
    srcBlockIndices?: readonly number[],
    dstBlockIndices?: readonly number[],
    dstBlockMemorySize?: number,
  ): CacheTask {
    const engine = this.#access.current();
    return startTransfer(
      engine,
      this.#access.settings().remoteCacheAccessible === true,
      srcCache,
      layerSynchronizer,
      transferConfigs,
      srcBlockIndices,
      dstBlockIndices,
      dstBlockMemorySize,
    );
  }

  /** Upstream's first check of a push: the instance's remote cache access. */
  #requireRemote(what: string): void {
    if (this.#access.settings().remoteCacheAccessible !== true) {
      throw paramInvalid(`${what} is only supported while enable_remote_cache_accessible is True`);
    }
  }

  /**
   * Removes a cache key (upstream `remove_cache_key`): the row it named can no
   * longer be pulled by it, and the cache's memory goes once nothing holds it.
   *
   * @example
   * ```ts
   * import { CacheDesc, CacheKey, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const key = new CacheKey(1n, 7n);
   * await dd.cacheManager.allocateCache(new CacheDesc(1, [1, 64], DataType.DT_UINT8), [key]);
   * await dd.cacheManager.removeCacheKey(key);
   * ```
   */
  async removeCacheKey(cacheKey: CacheKey, options?: CallOptions): Promise<void> {
    requireInstance(cacheKey, CacheKey, "cacheKey");
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "removeCacheKey", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      engine.removeKey(cacheKey);
    });
  }

  /**
   * Copies tensor `tensorIndex` of any `Cache`, one host copy per device (the
   * seed call; a blocks cache's tensor is all its blocks). Same contract as
   * `KvCacheManager.getCacheTensors`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateBlocksCache(new CacheDesc(2, [4, 8], DataType.DT_FLOAT16));
   * const [tensor] = await dd.cacheManager.getCacheTensors(cache, 1);
   * console.log(tensor.shape); // [ 4, 8 ]
   * ```
   */
  getCacheTensors(cache: Cache, tensorIndex = 0, options?: CallOptions): Promise<Tensor[]> {
    let engine: Engine;
    let index: number;
    let signal: AbortSignal | undefined;
    try {
      requireInstance(cache, Cache, "cache");
      index = checkTensorIndex(cache.cacheDesc, tensorIndex);
      signal = signalOf(options);
      engine = this.#access.current();
    } catch (err) {
      return Promise.reject(err);
    }
    return runExclusive(engine.mutex, "getCacheTensors", engine.syncKvTimeout, signal, (op) => {
      const record = engine.checkLive(recordOfCache(cache), cache.cacheId);
      return record.desc.size < OFF_THREAD_BYTES ? readNow(record, index) : readOffThread(record, index, op);
    });
  }

  /**
   * Views (no copy) of tensor `tensorIndex` of any `Cache`, one per device,
   * where the backend's memory is host memory; they refuse access once the
   * cache is freed. Same contract as `KvCacheManager.getCacheTensorViews`.
   *
   * @example
   * ```ts
   * import { CacheDesc, DataType, LLMDataDist, LLMRole } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
   * const cache = await dd.cacheManager.allocateCache(new CacheDesc(1, [4], DataType.DT_FLOAT));
   * const [view] = dd.cacheManager.getCacheTensorViews(cache);
   * (view.data as Float32Array).set([1, 2, 3, 4]);
   * console.log((await dd.cacheManager.getCacheTensors(cache))[0].data[3]); // 4
   * ```
   */
  getCacheTensorViews(cache: Cache, tensorIndex = 0): Tensor[] {
    requireInstance(cache, Cache, "cache");
    const index = checkTensorIndex(cache.cacheDesc, tensorIndex);
    const engine = this.#access.current();
    const record = engine.checkLive(recordOfCache(cache), cache.cacheId);
    if (!engine.hostAccessible) {
      throw new LLMException(
        LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
        "this backend's device memory is not host-accessible; use getCacheTensors for copies",
      );
    }
    return tensorViews(record, index);
  }

  /**
   * Maps registered memory anew after a device memory fault (upstream
   * `remap_registered_memory`). Its arguments are checked as upstream's; no
   * backend here can remap (the host backend's memory cannot fault that way),
   * so a valid call rejects with `LLM_FEATURE_NOT_ENABLED`.
   *
   * @example
   * ```ts
   * import { LLMDataDist, LLMException, LLMRole, MemInfo, MemType } from "llm-datadist";
   * await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
   * await dd.init({ "llm.EnableCacheManager": "1" });
   * await dd.cacheManager.remapRegisteredMemory(new MemInfo(MemType.MEM_TYPE_DEVICE, 0x1000n, 64))
   *   .catch((err: LLMException) => console.log(err.statusCode === 0x5010B019)); // true
   * ```
   */
  async remapRegisteredMemory(memInfos: MemInfo | readonly MemInfo[], options?: CallOptions): Promise<void> {
    if (!Array.isArray(memInfos) && !(memInfos instanceof MemInfo)) {
      throw paramInvalid(`mem_infos type only support list of MemInfo or MemInfo, but got ${describe(memInfos)}.`);
    }
    const list: unknown[] = Array.isArray(memInfos) ? memInfos : [memInfos];
    list.forEach((info, i) => {
      if (!(info instanceof MemInfo)) {
        throw paramInvalid(`mem_infos[${i}] type only support MemInfo, but got ${describe(info)}.`);
      }
      if (info.memType !== MemType.MEM_TYPE_DEVICE) {
        throw paramInvalid(`check mem_info.mem_type failed, only support Memtype.MEM_TYPE_DEVICE, index=${i}.`);
      }
      if (info.addr === 0n) throw paramInvalid(`check mem_info.addr failed, addr can not be zero, index=${i}.`);
      if (!(info.size > 0)) throw paramInvalid(`check mem_info.size failed, size must be > 0, index=${i}.`);
    });
    const signal = signalOf(options);
    const engine = this.#access.current();
    await runExclusive(engine.mutex, "remapRegisteredMemory", engine.syncKvTimeout, signal, () => {
      engine.assertLive();
      throw new LLMException(
        LLMStatusCode.LLM_FEATURE_NOT_ENABLED,
        "remapRegisteredMemory: this backend cannot remap registered memory",
      );
    });
  }

  #made(engine: Engine, record: CacheRecord): Cache {
    const cache = newCache(record);
    engine.track(cache, record);
    return cache;
  }
}

function placementName(placement: number): string {
  return placement === Placement.HOST
    ? "Placement.HOST"
    : placement === Placement.DEVICE
    ? "Placement.DEVICE"
    : String(placement);
}

/** Makes the manager of an instance. */
export function newCacheManager(access: CacheManagerAccess): CacheManager {
  return new CacheManager(MANAGER, access);
}
