/**
 * The engine: one initialized native engine and everything the portable code
 * keeps about it — its mutex, its devices, its live caches and their views.
 * It is the one owner of the cache records and the one caller of the native
 * library's cache and link functions: the public classes call its typed
 * methods. Internal; users reach it through `LLMDataDist` and `KvCacheManager`.
 *
 * @module
 */
import { blockPairs, packPairs } from "./block_pairs.ts";
import type { CacheDesc } from "./cache_desc.ts";
import { type CacheKey, INVALID_ID } from "./cache_key.ts";
import { LLMException } from "./errors.ts";
import { cacheRecord, type KvCache } from "./kv_cache.ts";
import { runLong } from "./long_call.ts";
import { AsyncMutex } from "./mutex.ts";
import type { NativeLibrary } from "./native_library.ts";
import {
  ENGINE_INFO_WORDS,
  INFO_HOST_ACCESSIBLE,
  KEY_BLOCKS,
  KEY_BY_ID,
  KEY_CACHE_KEY,
  KEY_KEPT_ONLY,
  WHOLE_ROW,
} from "./native/symbols.ts";
import type { Operation } from "./operation.ts";
import { LLMStatusCode } from "./status.ts";
import type { Lease } from "./tensor.ts";

/**
 * Repeat pulls of at most this many bytes in all run on the JavaScript thread
 * when the PROMPT's kept answer serves them: handing a call to a thread costs
 * about as much as copying 1 MiB here (README, Benchmarks).
 */
const INLINE_PULL_BYTES = 1 << 20;
/** Block pairs a synchronous call packs into the engine's reused buffer (16 KiB); more get their own. */
const SCRATCH_PAIRS = 1024;
/** Out-parameter words a synchronous call takes from the engine's reused buffer (256 addresses). */
const SCRATCH_OUT_WORDS = 256;

/** What the engine knows of one live cache. */
export interface CacheRecord {
  readonly engine: Engine;
  readonly cacheId: bigint;
  readonly desc: CacheDesc;
  /** `desc.size` as the bigint the native calls take. */
  readonly sizeBytes: bigint;
  /** `[device][tensor]` addresses. */
  readonly addrs: readonly (readonly bigint[])[];
  /** Shared by the cache's views; revoked when the cache is freed. */
  readonly lease: Lease;
  /** View buffers made so far, `[device * numTensors + tensor]`, detached on revoke. */
  readonly views: (ArrayBuffer | undefined)[];
  /** A blocks (paged) cache of the cache manager: its batch rows are blocks. */
  readonly isBlocksCache?: boolean;
  /**
   * Registered caches: the program's memory behind them, kept referenced (so
   * it cannot be collected) while registered, with each buffer's length then;
   * a buffer detached or resized since is refused before any native call.
   */
  readonly registered?: { readonly buffers: readonly { buffer: ArrayBufferLike; byteLength: number }[] };
  /** A PROMPT's blocks cache named by a `BlocksCacheKey`: the native key that holds it, released with it. */
  blocksKey?: CacheKey;
}

/** How a cache is registered: its tensors' addresses and the buffers behind them. */
export interface Registration {
  readonly addrs: readonly bigint[];
  readonly buffers: readonly { buffer: ArrayBufferLike; byteLength: number }[];
  readonly remoteAccessible: boolean;
}

/** What a pull names: a `CacheKey`, or a `CacheKeyByIdAndIndex`, as three words. */
export interface PullSource {
  readonly byId: boolean;
  readonly words: readonly [bigint, bigint, bigint];
}

/**
 * Detaches a view's buffer where the runtime can (Deno, Bun; Node from 22),
 * so even a kept reference to its TypedArray reads nothing after free.
 * `transfer(0)` detaches without copying.
 */
function detach(buffer: ArrayBuffer): void {
  const transfer = (buffer as { transfer?: (length: number) => ArrayBuffer }).transfer;
  if (typeof transfer !== "function") return;
  try {
    transfer.call(buffer, 0);
  } catch {
    // Not detachable here: the Tensor's lease still refuses access.
  }
}

/** Revokes a cache's views: every Tensor refuses access, every buffer is detached. */
function revokeViews(record: CacheRecord): void {
  record.lease.revoked = true;
  if (record.views.length === 0) return;
  for (const buffer of record.views) if (buffer) detach(buffer);
  record.views.length = 0;
}

/** How far a cache handle's tracking got (`Engine.track`): not tracked, waiting for the next turn, registered. */
const Tracking = { NONE: 0, WAITING: 1, REGISTERED: 2 } as const;
type Tracking = typeof Tracking[keyof typeof Tracking];

/**
 * A cache's record. A class, so that the address table is a getter of the
 * prototype: an object literal's own getter would give every record a hidden
 * class of its own (its closure is part of it), which V8 keeps.
 */
class Record implements CacheRecord {
  readonly engine: Engine;
  readonly cacheId: bigint;
  readonly desc: CacheDesc;
  readonly sizeBytes: bigint;
  readonly lease: Lease;
  readonly views: (ArrayBuffer | undefined)[] = [];
  readonly isBlocksCache: boolean;
  readonly registered: { readonly buffers: readonly { buffer: ArrayBufferLike; byteLength: number }[] } | undefined;
  blocksKey: CacheKey | undefined = undefined;
  /** Its handle's tracking (`Engine.track`): waiting for the next turn, registered, or over. */
  tracking: Tracking = Tracking.NONE;
  /** While waiting: where its (handle, record) pair is in the engine's list. */
  trackSlot = 0;
  readonly #words: readonly bigint[];
  readonly #devices: number;
  #table: readonly (readonly bigint[])[] | undefined = undefined;

  constructor(
    engine: Engine,
    cacheId: bigint,
    desc: CacheDesc,
    words: readonly bigint[],
    devices: number,
    isBlocksCache: boolean,
    registration: Registration | undefined,
  ) {
    this.engine = engine;
    this.cacheId = cacheId;
    this.desc = desc;
    this.sizeBytes = BigInt(desc.size);
    this.lease = { revoked: false, cacheId };
    this.isBlocksCache = isBlocksCache;
    this.registered = registration ? { buffers: registration.buffers } : undefined;
    this.#words = words;
    this.#devices = devices;
  }

  /** `[device][tensor]`, made (and frozen, slow on JavaScriptCore) when first asked for, not by every allocation. */
  get addrs(): readonly (readonly bigint[])[] {
    return this.#table ??= addressTable(this.#words, this.#devices, this.desc.numTensors);
  }
}

/** `[device][tensor]` addresses from `devices × n` words, frozen. */
function addressTable(words: readonly bigint[], devices: number, n: number): readonly (readonly bigint[])[] {
  const table: (readonly bigint[])[] = new Array(devices);
  for (let d = 0; d < devices; d++) {
    const row: bigint[] = new Array(n);
    for (let t = 0; t < n; t++) row[t] = words[d * n + t];
    table[d] = Object.freeze(row);
  }
  return Object.freeze(table);
}

/** What a failed call's message starts with, or a function that makes it (only on failure). */
export type Context = string | (() => string);

function contextText(context: Context): string {
  return typeof context === "string" ? context : context();
}

/** Lets the process exit while `timer` is pending (Node, Bun: a Timeout object; Deno: its id). */
function unrefTimer(timer: unknown): void {
  const deno = (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno;
  if (typeof timer === "number") deno?.unrefTimer?.(timer);
  else (timer as { unref?(): void } | undefined)?.unref?.();
}

/** The error of any call on a finalized instance. */
export function finalizedError(): LLMException {
  return new LLMException(LLMStatusCode.LLM_ENGINE_FINALIZED, "the LLMDataDist was finalized");
}

/** One initialized engine. */
export class Engine {
  readonly lib: NativeLibrary;
  readonly handle: bigint;
  readonly deviceIds: readonly number[];
  readonly syncKvTimeout: number;
  readonly hostAccessible: boolean;
  /** Pool bytes per device. */
  readonly poolBytes: number;
  /** The role; changed by `setRole` (switchRole). */
  role: number;
  /** The TCP port a PROMPT listens on for links, or 0 (changes with `setRole`). */
  listenPort: number;
  readonly mutex: AsyncMutex = new AsyncMutex();
  /** Ids of caches whose handle was garbage-collected before deallocateCache. */
  readonly forgotten: bigint[] = [];
  readonly #caches: Map<bigint, CacheRecord> = new Map();
  #finalized = false;
  /** Block pairs of synchronous calls (`#scratchPairs`). */
  #scratch: BigUint64Array | undefined;
  #scratchHalves: Uint32Array | undefined;
  /** Out-parameters of synchronous calls (`#outWords`), and a new cache's id. */
  #out: BigUint64Array | undefined;
  #outId: BigUint64Array | undefined;
  // Caches whose KvCache handle was garbage-collected while still allocated.
  // One registry per engine, so the held value is just the cache id as a
  // number (a small integer: nothing allocated). On Node 20 (V8 11.3) a freshly
  // allocated held value (object, WeakRef, BigInt) survives scavenges even
  // after unregister(), which under allocate/deallocate loops grows the young
  // generation to its maximum (about 30 MB more resident memory).
  // The callback names the engine weakly, so the registry keeps no engine alive.
  readonly #forgottenCaches: FinalizationRegistry<number>;
  // Caches made since the last turn of the event loop, as (handle, record)
  // pairs: they join #forgottenCaches on the next turn (one timer for all), so
  // a cache deallocated before then never costs a registration and its
  // unregistration (about 1.2 µs of an allocate-pull-free cycle on Node 20).
  // The record is the registration's unregister token and says how far its
  // tracking got (`Record.tracking`, and its pair's place here): no map keyed
  // by handle, whose hashing of every new handle cost more than the array. A
  // cache released meanwhile empties its pair at once, so that nothing of it
  // outlives the release (held until the next turn, a thousand released
  // handles survived young-generation collections and grew Node's heap by
  // ~7 MiB per 10 000 cycles in reliability.test.ts). A handle dropped while
  // allocated is held until then, then reported as any other.
  readonly #untracked: (object | Record | undefined)[] = [];
  #trackScheduled = false;

  /**
   * Initializes a native engine (`llmdd_engine_init`) and wraps it. If the
   * wrapping fails the native engine is finalized: no engine (and no claim on
   * its cluster id) is left behind.
   */
  static open(
    lib: NativeLibrary,
    role: number,
    clusterId: bigint,
    options: { text: string; deviceIds: readonly number[]; syncKvTimeout: number },
  ): Engine {
    const text = new TextEncoder().encode(options.text);
    const out = new BigUint64Array(1);
    lib.check(lib.fn.llmdd_engine_init(role, clusterId, text, text.length, out), "init failed");
    const handle = out[0];
    try {
      return new Engine(lib, handle, options.deviceIds, options.syncKvTimeout);
    } catch (err) {
      lib.fn.llmdd_engine_finalize(handle);
      throw err;
    }
  }

  private constructor(lib: NativeLibrary, handle: bigint, deviceIds: readonly number[], syncKvTimeout: number) {
    this.lib = lib;
    this.handle = handle;
    this.deviceIds = deviceIds;
    this.syncKvTimeout = syncKvTimeout;
    const self = new WeakRef(this);
    this.#forgottenCaches = new FinalizationRegistry((cacheId) => self.deref()?.noteForgotten(BigInt(cacheId)));
    const info = new BigUint64Array(ENGINE_INFO_WORDS);
    lib.check(lib.fn.llmdd_engine_info(handle, info), "cannot describe the engine");
    if (Number(info[0]) !== deviceIds.length) {
      throw new LLMException(
        LLMStatusCode.LLM_FAILED,
        `the native engine reports ${info[0]} devices, ${deviceIds.length} were configured`,
      );
    }
    this.hostAccessible = (info[1] & INFO_HOST_ACCESSIBLE) !== 0n;
    this.poolBytes = Number(info[2]);
    this.role = Number(info[3]);
    this.listenPort = Number(info[4]);
  }

  /** Whether finalize() has run. */
  get finalized(): boolean {
    return this.#finalized;
  }

  /** Throws `LLMException(LLM_ENGINE_FINALIZED)` once finalize() has run. */
  assertLive(): void {
    if (this.#finalized) throw finalizedError();
  }

  // ---- Cache records

  /**
   * The record of `cache`, which must be live in this engine: else
   * `LLM_ENGINE_FINALIZED`, or `LLM_KV_CACHE_NOT_EXIST` for a cache of another
   * instance or one already deallocated.
   */
  liveRecord(cache: KvCache): CacheRecord {
    return this.checkLive(cacheRecord(cache), cache.cacheId);
  }

  /** As `liveRecord`, for the record of any cache handle (`Cache` too). */
  checkLive(record: CacheRecord, cacheId: bigint): CacheRecord {
    this.assertLive();
    const cache = { cacheId };
    if (record.engine !== this) {
      throw new LLMException(
        LLMStatusCode.LLM_KV_CACHE_NOT_EXIST,
        `cache ${cache.cacheId} belongs to another LLMDataDist instance`,
      );
    }
    if (this.#caches.get(record.cacheId) !== record) {
      throw new LLMException(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, `cache ${cache.cacheId} was deallocated`);
    }
    for (const held of record.registered?.buffers ?? []) {
      // Detached (transferred) or shrunk: the memory may be gone or another's.
      if (held.buffer.byteLength !== held.byteLength) {
        throw new LLMException(
          LLMStatusCode.LLM_PARAM_INVALID,
          `cache ${cache.cacheId}: registered memory was detached or resized (${held.byteLength} -> ` +
            `${held.buffer.byteLength} bytes); unregister the cache`,
        );
      }
    }
    return record;
  }

  /** The live record of a cache id, or undefined. */
  recordOf(cacheId: bigint): CacheRecord | undefined {
    return this.#caches.get(cacheId);
  }

  /** Whether `record` is still allocated (not deallocated, not finalized). */
  holds(record: CacheRecord): boolean {
    return !this.#finalized && this.#caches.get(record.cacheId) === record;
  }

  /**
   * Allocates a cache on every device and records it. `keys[i]` names batch
   * row i; `null` leaves a row unnamed (upstream's padding key). `batchRows` is
   * what the native side divides a tensor into (1 unless the batch is
   * dimension 0); `layoutTag` says which descs are compatible.
   */
  allocate(
    desc: CacheDesc,
    batchRows: number,
    layoutTag: bigint,
    keys: readonly (CacheKey | null)[],
    isBlocksCache = false,
    registration?: Registration,
  ): CacheRecord {
    const devices = this.deviceIds.length;
    const n = desc.numTensors;
    const addrs = this.#outWords(devices * n);
    // Rows without a key are given a placeholder that no caller can name (a
    // padding request id under the row's own model id, unique in this call),
    // removed again before the lock is released: the native side takes keys
    // row by row, and this way neither backend needs to know about padding.
    const placeholders: number[] = [];
    let keyWords: BigUint64Array | null = null;
    if (keys.length > 0) {
      keyWords = new BigUint64Array(keys.length * 3);
      keys.forEach((key, row) => {
        if (key) {
          keyWords!.set([key.promptClusterId, key.reqId, key.modelId], row * 3);
        } else {
          placeholders.push(row);
          keyWords!.set([0n, INVALID_ID, BigInt(row)], row * 3);
        }
      });
    }
    const id = this.#outId ??= new BigUint64Array(1);
    if (registration) {
      const status = this.lib.fn.llmdd_cache_register(
        this.handle,
        n,
        BigInt(desc.size),
        BigInt(batchRows),
        layoutTag,
        desc.placement,
        BigUint64Array.from(registration.addrs),
        registration.addrs.length,
        keyWords,
        keys.length,
        registration.remoteAccessible ? 1 : 0,
        id,
      );
      if (status !== 0) throw this.lib.error(status, `registerCache(${desc}) failed`);
      addrs.set(registration.addrs);
    } else {
      const status = this.lib.fn.llmdd_cache_allocate(
        this.handle,
        n,
        BigInt(desc.size),
        BigInt(batchRows),
        layoutTag,
        desc.placement,
        keyWords,
        keys.length,
        id,
        addrs,
        devices * n,
      );
      if (status !== 0) throw this.lib.error(status, `allocateCache(${desc}) failed`);
    }
    for (const row of placeholders) this.lib.fn.llmdd_cache_key_remove(this.handle, 0n, INVALID_ID, BigInt(row));
    const cacheId = id[0];
    const words: bigint[] = new Array(devices * n);
    for (let i = 0; i < words.length; i++) words[i] = addrs[i];
    const record = new Record(this, cacheId, desc, words, devices, isBlocksCache, registration);
    this.#caches.set(cacheId, record);
    return record;
  }

  /** Releases a live cache's id: its views are revoked at once, its memory once no key names it. */
  deallocate(record: CacheRecord): void {
    revokeViews(record);
    this.#caches.delete(record.cacheId);
    this.#untrack(record);
    const status = this.lib.fn.llmdd_cache_deallocate(this.handle, record.cacheId);
    if (status !== 0) throw this.lib.error(status, `deallocateCache(${record.cacheId}) failed`);
  }

  /** Unregisters a registered cache: its views are revoked, and its memory is the program's again. */
  unregister(record: CacheRecord): void {
    this.lib.check(
      this.lib.fn.llmdd_cache_unregister(this.handle, record.cacheId),
      `unregisterCache(${record.cacheId}) failed`,
    );
    revokeViews(record);
    this.#caches.delete(record.cacheId);
    this.#untrack(record);
  }

  /**
   * Copies blocks: `pairs` holds (source block, destination block) pairs, all
   * moved by one native call; on the JavaScript thread without `op`.
   */
  copyBlocks(
    to: CacheRecord,
    from: CacheRecord,
    pairs: BigUint64Array,
    op: Operation | undefined,
    context: string,
  ): Promise<void> | void {
    const args = [this.handle, to.cacheId, from.cacheId, pairs, pairs.length / 2] as const;
    if (op) return runLong(this.lib, "llmdd_cache_copy_blocks", [...args], op, context);
    this.lib.check(this.lib.fn.llmdd_cache_copy_blocks(...args, 0n), context);
  }

  /** Switches the native engine's role (`llmdd_engine_set_role`). */
  setRole(role: number, optionsText: string): void {
    const text = new TextEncoder().encode(optionsText);
    this.lib.check(this.lib.fn.llmdd_engine_set_role(this.handle, role, text, text.length), "switchRole failed");
    this.role = role;
    const info = new BigUint64Array(ENGINE_INFO_WORDS);
    this.lib.check(this.lib.fn.llmdd_engine_info(this.handle, info), "cannot describe the engine");
    this.listenPort = Number(info[4]);
  }

  /** Releases a cache key. */
  removeKey(key: CacheKey): void {
    this.lib.check(
      this.lib.fn.llmdd_cache_key_remove(this.handle, key.promptClusterId, key.reqId, key.modelId),
      `removeCacheKey(${key}) failed`,
    );
  }

  /** Watches a cache handle: if it is garbage-collected while allocated, that is reported. */
  track(cache: object, record: CacheRecord): void {
    const r = record as Record;
    r.tracking = Tracking.WAITING;
    r.trackSlot = this.#untracked.length;
    this.#untracked.push(cache, r);
    if (this.#trackScheduled) return;
    this.#trackScheduled = true;
    unrefTimer(setTimeout(() => this.#trackNow(), 0));
  }

  /** Registers the caches made since the last turn that are still allocated. */
  #trackNow(): void {
    this.#trackScheduled = false;
    const pending = this.#untracked;
    for (let i = 0; i < pending.length; i += 2) {
      const record = pending[i + 1] as Record | undefined;
      if (record === undefined) continue; // released meanwhile
      this.#forgottenCaches.register(pending[i] as object, Number(record.cacheId), record);
      record.tracking = Tracking.REGISTERED;
    }
    pending.length = 0;
  }

  /** A cache's handle is done with: not tracked any more. */
  #untrack(record: CacheRecord): void {
    const r = record as Record;
    if (r.tracking === Tracking.REGISTERED) this.#forgottenCaches.unregister(r);
    else if (r.tracking === Tracking.WAITING) {
      this.#untracked[r.trackSlot] = this.#untracked[r.trackSlot + 1] = undefined;
    }
    r.tracking = Tracking.NONE;
  }

  /**
   * A cache's handle was garbage-collected while the cache was allocated: its
   * memory cannot be reached any more, and stays in the pool until finalize().
   */
  noteForgotten(cacheId: bigint): void {
    if (this.#finalized || !this.#caches.has(cacheId)) return;
    this.forgotten.push(cacheId);
    console.warn(
      `llm-datadist: KvCache ${cacheId} was garbage-collected without deallocateCache(); ` +
        "its memory stays allocated until finalize()",
    );
  }

  // ---- Cache memory

  /** Copies tensor `index` of device `device` into `out`, on the JavaScript thread. */
  readNow(record: CacheRecord, index: number, device: number, out: ArrayBufferView): void {
    const status = this.lib.fn.llmdd_cache_read(this.handle, record.cacheId, index, device, out, record.sizeBytes, 0n);
    if (status !== 0) throw this.lib.error(status, `getCacheTensors(${record.cacheId}, ${index}) failed`);
  }

  /** Copies tensor `index` of device `device` into a new buffer, off the JavaScript thread. */
  async read(record: CacheRecord, index: number, device: number, op: Operation): Promise<Uint8Array> {
    const bytes = this.lib.raw.allocate(record.desc.size);
    await runLong(
      this.lib,
      "llmdd_cache_read",
      [this.handle, record.cacheId, index, device, bytes, record.sizeBytes],
      op,
      `getCacheTensors(${record.cacheId}, ${index}) failed`,
    );
    return bytes;
  }

  /**
   * Copies `bytes` bytes at `srcOffset` of every tensor of `from` to
   * `dstOffset` of the same tensor of `to`, on every device: on the JavaScript
   * thread without `op`, off it with.
   */
  copy(
    to: CacheRecord,
    from: CacheRecord,
    dstOffset: number,
    srcOffset: number,
    bytes: number,
    op: Operation | undefined,
  ): Promise<void> | void {
    const args = [this.handle, to.cacheId, from.cacheId, BigInt(dstOffset), BigInt(srcOffset), BigInt(bytes)] as const;
    const context = `copyCache(${to.cacheId} <- ${from.cacheId}) failed`;
    if (op) return runLong(this.lib, "llmdd_cache_copy", [...args], op, context);
    this.lib.check(this.lib.fn.llmdd_cache_copy(...args, 0n), context);
  }

  /**
   * A repeat pull on the JavaScript thread (docs/DESIGN.md §4.3): a pull by id
   * or BlocksCacheKey of at most INLINE_PULL_BYTES, from the PROMPT's answer the
   * engine kept, copies in microseconds without a socket, cheaper than the
   * hand-off to a thread. `status` is the native call's (made with
   * LLMDD_KEY_KEPT_ONLY); true when done (a failure throws), false when nothing
   * valid was kept, and the pull goes the ordinary way.
   */
  #keptDone(status: number, context: Context): boolean {
    if (status === LLMStatusCode.LLM_FEATURE_NOT_ENABLED) return false;
    if (status !== 0) throw this.lib.error(status, contextText(context));
    return true;
  }

  /** Whether a pull of `bytes` in all may try its kept answer on this thread. */
  #inline(bytes: number): boolean {
    return this.hostAccessible && bytes <= INLINE_PULL_BYTES;
  }

  /**
   * Out-parameter words of a synchronous call (`count` of them), from a buffer
   * this engine reuses when they fit (see `#scratchPairs`); read them before
   * the next call.
   */
  #outWords(count: number): BigUint64Array {
    if (count > SCRATCH_OUT_WORDS) return new BigUint64Array(count);
    this.#out ??= new BigUint64Array(SCRATCH_OUT_WORDS);
    return this.#out;
  }

  /**
   * The block pairs of a synchronous call, packed into a buffer this engine
   * reuses (a fresh typed array per call costs about a microsecond on Bun,
   * where the FFI then moves its bytes out of the garbage-collected heap);
   * never for a call that runs on a thread, which gets its own.
   */
  #scratchPairs(src: readonly number[], dst: readonly number[]): BigUint64Array {
    if (dst.length > SCRATCH_PAIRS) return blockPairs(src, dst);
    if (this.#scratch === undefined) {
      this.#scratch = new BigUint64Array(2 * SCRATCH_PAIRS);
      this.#scratchHalves = new Uint32Array(this.#scratch.buffer);
    }
    packPairs(src, dst, this.#scratchHalves!);
    return this.#scratch;
  }

  /** Pulls a row named by `source` from a linked PROMPT into row `batchIndex` of `record`. */
  pull(
    record: CacheRecord,
    source: PullSource,
    batchIndex: number,
    size: bigint,
    op: Operation,
    context: Context,
  ): Promise<void> | void {
    const [k0, k1, k2] = source.words;
    const kind = source.byId ? KEY_BY_ID : KEY_CACHE_KEY;
    const d = record.desc;
    const bytes = (size === WHOLE_ROW ? d.size / d.batchSize : Number(size)) * d.numTensors * this.deviceIds.length;
    if (
      source.byId && this.#inline(bytes) &&
      this.#keptDone(
        this.lib.fn.llmdd_cache_pull(
          this.handle,
          record.cacheId,
          kind | KEY_KEPT_ONLY,
          k0,
          k1,
          k2,
          batchIndex,
          size,
          0n,
        ),
        context,
      )
    ) return;
    return runLong(
      this.lib,
      "llmdd_cache_pull",
      [this.handle, record.cacheId, kind, k0, k1, k2, batchIndex, size],
      op,
      contextText(context),
    );
  }

  /**
   * Pulls blocks from a linked PROMPT into `record` (`llmdd_cache_pull_blocks`):
   * source block `src[i]` (or i, `src` empty) into destination block `dst[i]`,
   * all moved by one native call; `tensors` is the (source start, destination
   * start, count) range, count 0 for every tensor.
   */
  pullBlocks(
    record: CacheRecord,
    kind: number,
    words: readonly [bigint, bigint, bigint],
    src: readonly number[],
    dst: readonly number[],
    tensors: readonly [number, number, number],
    op: Operation,
    context: Context,
  ): Promise<void> | void {
    const [k0, k1, k2] = words;
    const [t0, t1, t2] = tensors;
    const n = dst.length;
    const d = record.desc;
    const bytes = n * (d.size / d.batchSize) * (t2 || d.numTensors) * this.deviceIds.length;
    if (
      (kind === KEY_BY_ID || kind === KEY_BLOCKS) && this.#inline(bytes) &&
      this.#keptDone(
        this.lib.fn.llmdd_cache_pull_blocks(
          this.handle,
          record.cacheId,
          kind | KEY_KEPT_ONLY,
          k0,
          k1,
          k2,
          this.#scratchPairs(src, dst),
          n,
          t0,
          t1,
          t2,
          0n,
        ),
        context,
      )
    ) return;
    const pairs = blockPairs(src, dst);
    return runLong(
      this.lib,
      "llmdd_cache_pull_blocks",
      [this.handle, record.cacheId, kind, k0, k1, k2, pairs, n, t0, t1, t2],
      op,
      contextText(context),
    );
  }

  /**
   * Pushes from `record` into a linked peer's cache (`llmdd_cache_push_blocks`):
   * by id (`pairs` null: row `srcRow` into the named row) or by `BlocksCacheKey`
   * (block pairs), over the tensor range `tensors`.
   */
  pushBlocks(
    record: CacheRecord,
    srcRow: number,
    kind: number,
    words: readonly [bigint, bigint, bigint],
    pairs: BigUint64Array | null,
    tensors: readonly [number, number, number],
    op: Operation,
    context: string,
  ): Promise<void> {
    const [k0, k1, k2] = words;
    const n = pairs === null ? 0 : pairs.length / 2;
    // srcRow is a uint32 (upstream's check); the ABI's int32 takes 2^31 and up
    // wrapped (Deno's FFI throws on them otherwise), the native side reads it back.
    return runLong(
      this.lib,
      "llmdd_cache_push_blocks",
      [this.handle, record.cacheId, srcRow | 0, kind, k0, k1, k2, pairs, n, ...tensors],
      op,
      context,
    );
  }

  /**
   * Pushes tensors `[srcTensor, +addrs.length)` of `record` to addresses of a
   * linked peer (`llmdd_cache_push_addrs`): row `srcRow`, or block `pairs`.
   */
  pushAddrs(
    record: CacheRecord,
    srcRow: number,
    clusterId: bigint,
    addrs: BigUint64Array,
    srcTensor: number,
    pairs: BigUint64Array | null,
    blockBytes: bigint,
    op: Operation,
    context: string,
  ): Promise<void> {
    const n = pairs === null ? 0 : pairs.length / 2;
    return runLong(
      this.lib,
      "llmdd_cache_push_addrs",
      [this.handle, record.cacheId, srcRow | 0, clusterId, addrs, addrs.length, srcTensor, pairs, n, blockBytes],
      op,
      context,
    );
  }

  /** A view of `byteLength` bytes of native memory at `address` (host-accessible engines only). */
  view(address: bigint, byteLength: number): ArrayBuffer {
    return this.lib.raw.view(address, byteLength);
  }

  // ---- Links

  /** Links to the PROMPT of `remoteClusterId` at `address` ("ip:port"). */
  link(remoteClusterId: bigint, address: string, op: Operation): Promise<void> {
    const text = new TextEncoder().encode(address);
    return runLong(
      this.lib,
      "llmdd_link",
      [this.handle, remoteClusterId, text, text.length],
      op,
      `link to cluster ${remoteClusterId} failed`,
    );
  }

  /** Unlinks from `remoteClusterId`; with `force`, even if it does not answer. */
  unlink(remoteClusterId: bigint, force: boolean, op: Operation): Promise<void> {
    return runLong(
      this.lib,
      "llmdd_unlink",
      [this.handle, remoteClusterId, force ? 1 : 0],
      op,
      `unlink from cluster ${remoteClusterId} failed`,
    );
  }

  // ---- Lifecycle

  /**
   * Finalizes: waiting callers reject with LLM_ENGINE_FINALIZED, every view is
   * revoked, and the native engine frees all memory (cancelling running
   * copies, which reject with LLM_ENGINE_FINALIZED).
   */
  finalize(): void {
    if (this.#finalized) return;
    this.#finalized = true;
    this.mutex.failAll(finalizedError());
    for (const record of this.#caches.values()) revokeViews(record);
    this.#caches.clear();
    this.#untracked.length = 0;
    this.lib.check(this.lib.fn.llmdd_engine_finalize(this.handle), "finalize failed");
    if (this.forgotten.length > 0) {
      console.warn(
        `llm-datadist: finalize() freed ${this.forgotten.length} cache(s) garbage-collected without ` +
          `deallocateCache(): ${this.forgotten.join(", ")}`,
      );
    }
  }

  /** Bytes in use and capacity of each device's pool. */
  poolUsage(): { deviceId: number; usedBytes: number; capacityBytes: number }[] {
    const out = new BigUint64Array(2);
    return this.deviceIds.map((deviceId, index) => {
      this.lib.check(this.lib.fn.llmdd_pool_usage(this.handle, index, out), "cannot read pool usage");
      return { deviceId, usedBytes: Number(out[0]), capacityBytes: Number(out[1]) };
    });
  }
}
