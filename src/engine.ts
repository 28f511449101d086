/**
 * The engine: one initialized native engine and everything the portable code
 * keeps about it — its mutex, its devices, its live caches and their views.
 * Internal; users reach it through `LLMDataDist` and `KvCacheManager`.
 *
 * @module
 */
import type { CacheDesc } from "./cache_desc.ts";
import { LLMException } from "./errors.ts";
import { AsyncMutex } from "./mutex.ts";
import type { NativeLibrary } from "./native/library.ts";
import { LLMStatusCode } from "./status.ts";
import type { Lease } from "./tensor.ts";

/** `llmdd_engine_info` flag: device memory is host memory, so views are allowed. */
const INFO_HOST_ACCESSIBLE = 1n;

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
export function revokeViews(record: CacheRecord): void {
  record.lease.revoked = true;
  for (const buffer of record.views) if (buffer) detach(buffer);
  record.views.length = 0;
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
  readonly role: number;
  /** The TCP port a PROMPT listens on for links, or 0. */
  readonly listenPort: number;
  readonly mutex: AsyncMutex = new AsyncMutex();
  readonly caches: Map<bigint, CacheRecord> = new Map();
  /** Ids of caches whose handle was garbage-collected before deallocateCache. */
  readonly forgotten: bigint[] = [];
  #finalized = false;
  // Caches whose KvCache handle was garbage-collected while still allocated.
  // One registry per engine, so the held value is just the cache id as a
  // number (a small integer: nothing allocated). On Node 20 (V8 11.3) a freshly
  // allocated held value (object, WeakRef, BigInt) survives scavenges even
  // after unregister(), which under allocate/deallocate loops grows the young
  // generation to its maximum (about 30 MB more resident memory).
  // The callback names the engine weakly, so the registry keeps no engine alive.
  readonly #forgottenCaches: FinalizationRegistry<number>;

  constructor(lib: NativeLibrary, handle: bigint, deviceIds: readonly number[], syncKvTimeout: number) {
    this.lib = lib;
    this.handle = handle;
    this.deviceIds = deviceIds;
    this.syncKvTimeout = syncKvTimeout;
    const self = new WeakRef(this);
    this.#forgottenCaches = new FinalizationRegistry((cacheId) => self.deref()?.noteForgotten(BigInt(cacheId)));
    const info = lib.outBuffer;
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

  /** Watches a cache handle: if it is garbage-collected while allocated, that is reported. */
  track(cache: object, cacheId: bigint): void {
    this.#forgottenCaches.register(cache, Number(cacheId), cache);
  }

  /** Stops watching a handle (its cache was deallocated). */
  untrack(cache: object): void {
    this.#forgottenCaches.unregister(cache);
  }

  /**
   * A cache's handle was garbage-collected while the cache was allocated: its
   * memory cannot be reached any more, and stays in the pool until finalize().
   */
  noteForgotten(cacheId: bigint): void {
    if (this.#finalized || !this.caches.has(cacheId)) return;
    this.forgotten.push(cacheId);
    console.warn(
      `llm-datadist: KvCache ${cacheId} was garbage-collected without deallocateCache(); ` +
        "its memory stays allocated until finalize()",
    );
  }

  /** Throws `LLMException(LLM_ENGINE_FINALIZED)` once finalize() has run. */
  assertLive(): void {
    if (this.#finalized) throw finalizedError();
  }

  /**
   * Finalizes: waiting callers reject with LLM_ENGINE_FINALIZED, every view is
   * revoked, and the native engine frees all memory (cancelling running
   * copies, which reject with LLM_ENGINE_FINALIZED).
   */
  finalize(): void {
    if (this.#finalized) return;
    this.#finalized = true;
    this.mutex.failAll(finalizedError());
    for (const record of this.caches.values()) revokeViews(record);
    this.caches.clear();
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
    const out = this.lib.outBuffer;
    return this.deviceIds.map((deviceId, index) => {
      this.lib.check(this.lib.fn.llmdd_pool_usage(this.handle, index, out), "cannot read pool usage");
      return { deviceId, usedBytes: Number(out[0]), capacityBytes: Number(out[1]) };
    });
  }
}
