/**
 * The C ABI of `ffi/include/llmdd.h`, declared once. Each runtime shim
 * translates this table into its own FFI declarations; nothing else in the
 * library names a native symbol's parameter types.
 *
 * Parameter kinds:
 * - `i32`: int32_t, passed as a number
 * - `u64`: uint64_t, passed as a bigint (handles, ids, sizes)
 * - `buffer`: a pointer to memory that JavaScript owns, passed as a TypedArray
 *   (or null); the shim passes the array's address
 * - `callback`: an `llmdd_done_fn`, passed as whatever the shim gave as
 *   {@link RawLibrary.doneCallback}
 *
 * Every function returns int32_t (a status, or a length for the message calls).
 *
 * @module
 */

/** Kinds of parameter the ABI uses. */
export type ParamKind = "i32" | "u64" | "buffer" | "callback";

/** One native function: its parameters, and whether it can run for long. */
export interface SymbolDef {
  readonly params: readonly ParamKind[];
  /** Long operations take a job last and may run off the JavaScript thread. */
  readonly long?: true;
}

// ---- The constants of ffi/include/llmdd.h, each mirrored here once. Status
// codes are `LLMStatusCode` (src/status.ts); roles and placements are `LLMRole`
// and `Placement` (src/enums.ts), with the header's values.

/** The ABI version this TypeScript code was written for (`LLMDD_ABI_VERSION`). */
export const ABI_VERSION = 6;

/** `llmdd_cache_pull` key kind: k0..k2 are a `CacheKey` (`LLMDD_KEY_CACHE_KEY`). */
export const KEY_CACHE_KEY = 0;

/** `llmdd_cache_pull` key kind: k0..k2 are a `CacheKeyByIdAndIndex` (`LLMDD_KEY_BY_ID`). */
export const KEY_BY_ID = 1;

/** `llmdd_cache_pull_blocks` key kind: k0 and k2 are a `BlocksCacheKey` (`LLMDD_KEY_BLOCKS`). */
export const KEY_BLOCKS = 2;

/**
 * Or'd into `KEY_BY_ID` or `KEY_BLOCKS` (`LLMDD_KEY_KEPT_ONLY`): pull only from
 * the PROMPT's answer kept from an earlier pull, still valid (no socket, no
 * wait); else nothing is copied and the call returns FEATURE_NOT_ENABLED.
 */
export const KEY_KEPT_ONLY = 0x100;
/**
 * Or'd into `KEY_BLOCKS` for `llmdd_cache_push_blocks` (`LLMDD_PUSH_ROW_BLOCKS`,
 * ABI 6): the source is a row cut into blocks whose size is passed as k1.
 */
export const PUSH_ROW_BLOCKS = 0x200;

/** The reqId under which a PROMPT holds a blocks cache's `BlocksCacheKey` (`LLMDD_BLOCKS_REQ_ID`). */
export const BLOCKS_REQ_ID = 0xFFFF_FFFF_FFFF_FFFFn;

/** `llmdd_cache_pull` size meaning "the whole row" (`LLMDD_WHOLE_ROW`). */
export const WHOLE_ROW = 0xFFFF_FFFF_FFFF_FFFFn;

/** `llmdd_engine_info` flag: device memory is host memory, so views are allowed (`LLMDD_INFO_HOST_ACCESSIBLE`). */
export const INFO_HOST_ACCESSIBLE = 1n;

/** Words `llmdd_engine_info` writes: devices, flags, pool bytes, role, listen port. */
export const ENGINE_INFO_WORDS = 5;

/** Most devices one engine takes (`ge.exec.deviceId`: "at most 64" in `llmdd_engine_init`). */
export const MAX_DEVICES = 64;

/**
 * Each tensor of a cache starts at a multiple of this many bytes of its pool,
 * so a cache takes `numTensors × size` rounded up per tensor (ffi/host's pool
 * alignment; `llmdd_pool_usage` counts it).
 */
export const POOL_ALIGN_BYTES = 64;

/** Most tensor addresses of one registered cache (`LLMDD_MAX_REGISTERED_ADDRS`, upstream's RegisterKvCache limit). */
export const MAX_REGISTERED_ADDRS = 240;

/** Most clusters one engine links to (`LLMDD_MAX_LINKS`, upstream's per-call limit of link_clusters). */
export const MAX_LINKS = 16;

/** Every exported function of the ABI. */
export const SYMBOLS = {
  /* int32_t llmdd_abi_version(void) */
  llmdd_abi_version: { params: [] },
  /* int32_t llmdd_last_error(uint8_t *buf, int32_t cap) */
  llmdd_last_error: { params: ["buffer", "i32"] },
  /* int32_t llmdd_engine_init(int32_t role, uint64_t cluster_id, const uint8_t *options,
   *                           int32_t options_len, uint64_t *out_engine) */
  llmdd_engine_init: { params: ["i32", "u64", "buffer", "i32", "buffer"] },
  /* int32_t llmdd_engine_finalize(uint64_t engine) */
  llmdd_engine_finalize: { params: ["u64"] },
  /* int32_t llmdd_engine_info(uint64_t engine, uint64_t out[5]) */
  llmdd_engine_info: { params: ["u64", "buffer"] },
  /* int32_t llmdd_pool_usage(uint64_t engine, int32_t device_index, uint64_t out[2]) */
  llmdd_pool_usage: { params: ["u64", "i32", "buffer"] },
  /* int32_t llmdd_cache_allocate(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
   *                              uint64_t batch_size, uint64_t layout_tag, int32_t placement,
   *                              const uint64_t *keys, int32_t num_keys, uint64_t *out_cache_id,
   *                              uint64_t *out_addrs, int32_t addrs_cap) */
  llmdd_cache_allocate: {
    params: ["u64", "i32", "u64", "u64", "u64", "i32", "buffer", "i32", "buffer", "buffer", "i32"],
  },
  /* int32_t llmdd_cache_deallocate(uint64_t engine, uint64_t cache_id) */
  llmdd_cache_deallocate: { params: ["u64", "u64"] },
  /* int32_t llmdd_cache_key_remove(uint64_t engine, uint64_t cluster_id, uint64_t req_id,
   *                                uint64_t model_id) */
  llmdd_cache_key_remove: { params: ["u64", "u64", "u64", "u64"] },
  /* int32_t llmdd_job_create(int32_t timeout_ms, llmdd_done_fn done, uint64_t *out_job) */
  llmdd_job_create: { params: ["i32", "callback", "buffer"] },
  /* int32_t llmdd_job_cancel(uint64_t job) */
  llmdd_job_cancel: { params: ["u64"] },
  /* int32_t llmdd_job_message(uint64_t job, uint8_t *buf, int32_t cap) */
  llmdd_job_message: { params: ["u64", "buffer", "i32"] },
  /* int32_t llmdd_job_release(uint64_t job) */
  llmdd_job_release: { params: ["u64"] },
  /* int32_t llmdd_cache_read(uint64_t engine, uint64_t cache_id, int32_t tensor_index,
   *                          int32_t device_index, uint8_t *out, uint64_t out_len, uint64_t job) */
  llmdd_cache_read: { params: ["u64", "u64", "i32", "i32", "buffer", "u64", "u64"], long: true },
  /* int32_t llmdd_cache_copy(uint64_t engine, uint64_t dst_cache_id, uint64_t src_cache_id,
   *                          uint64_t dst_offset, uint64_t src_offset, uint64_t nbytes, uint64_t job) */
  llmdd_cache_copy: { params: ["u64", "u64", "u64", "u64", "u64", "u64", "u64"], long: true },
  /* int32_t llmdd_link(uint64_t engine, uint64_t remote_cluster_id, const uint8_t *remote_addr,
   *                    int32_t addr_len, uint64_t job) */
  llmdd_link: { params: ["u64", "u64", "buffer", "i32", "u64"], long: true },
  /* int32_t llmdd_unlink(uint64_t engine, uint64_t remote_cluster_id, int32_t force, uint64_t job) */
  llmdd_unlink: { params: ["u64", "u64", "i32", "u64"], long: true },
  /* int32_t llmdd_cache_pull(uint64_t engine, uint64_t cache_id, int32_t key_kind, uint64_t k0,
   *                          uint64_t k1, uint64_t k2, int32_t dst_batch_index, uint64_t size,
   *                          uint64_t job) */
  llmdd_cache_pull: { params: ["u64", "u64", "i32", "u64", "u64", "u64", "i32", "u64", "u64"], long: true },
  /* int32_t llmdd_cache_pull_blocks(uint64_t engine, uint64_t cache_id, int32_t key_kind,
   *                                 uint64_t k0, uint64_t k1, uint64_t k2, const uint64_t *pairs,
   *                                 int32_t num_pairs, int32_t src_tensor_start,
   *                                 int32_t dst_tensor_start, int32_t num_tensors, uint64_t job) */
  llmdd_cache_pull_blocks: {
    params: ["u64", "u64", "i32", "u64", "u64", "u64", "buffer", "i32", "i32", "i32", "i32", "u64"],
    long: true,
  },
  /* int32_t llmdd_cache_push_blocks(uint64_t engine, uint64_t cache_id, int32_t src_batch_index,
   *                                 int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2,
   *                                 const uint64_t *pairs, int32_t num_pairs, int32_t src_tensor_start,
   *                                 int32_t dst_tensor_start, int32_t num_tensors, uint64_t job) */
  llmdd_cache_push_blocks: {
    params: ["u64", "u64", "i32", "i32", "u64", "u64", "u64", "buffer", "i32", "i32", "i32", "i32", "u64"],
    long: true,
  },
  /* int32_t llmdd_cache_push_addrs(uint64_t engine, uint64_t cache_id, int32_t src_batch_index,
   *                                uint64_t cluster_id, const uint64_t *dst_addrs, int32_t num_addrs,
   *                                int32_t src_tensor_start, const uint64_t *pairs, int32_t num_pairs,
   *                                uint64_t dst_block_bytes, uint64_t job) */
  llmdd_cache_push_addrs: {
    params: ["u64", "u64", "i32", "u64", "buffer", "i32", "i32", "buffer", "i32", "u64", "u64"],
    long: true,
  },
  /* int32_t llmdd_cache_register(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
   *                              uint64_t batch_size, uint64_t layout_tag, int32_t placement,
   *                              const uint64_t *addrs, int32_t num_addrs, const uint64_t *keys,
   *                              int32_t num_keys, int32_t remote_accessible, uint64_t *out_cache_id) */
  llmdd_cache_register: {
    params: ["u64", "i32", "u64", "u64", "u64", "i32", "buffer", "i32", "buffer", "i32", "i32", "buffer"],
  },
  /* int32_t llmdd_cache_unregister(uint64_t engine, uint64_t cache_id) */
  llmdd_cache_unregister: { params: ["u64", "u64"] },
  /* int32_t llmdd_cache_copy_blocks(uint64_t engine, uint64_t dst_cache_id, uint64_t src_cache_id,
   *                                 const uint64_t *pairs, int32_t num_pairs, uint64_t job) */
  llmdd_cache_copy_blocks: { params: ["u64", "u64", "u64", "buffer", "i32", "u64"], long: true },
  /* int32_t llmdd_engine_set_role(uint64_t engine, int32_t role, const uint8_t *options,
   *                               int32_t options_len) */
  llmdd_engine_set_role: { params: ["u64", "i32", "buffer", "i32"] },
} as const satisfies Record<string, SymbolDef>;

/** Names of all native functions. */
export type SymbolName = keyof typeof SYMBOLS;

/** Names of the long operations. */
export type LongSymbolName = {
  [K in SymbolName]: (typeof SYMBOLS)[K] extends { long: true } ? K : never;
}[SymbolName];

type ArgOf<K extends ParamKind> = K extends "i32" ? number
  : K extends "u64" ? bigint
  : K extends "buffer" ? ArrayBufferView | null
  : unknown;

type ArgsOf<P extends readonly ParamKind[]> = { [I in keyof P]: ArgOf<P[I]> };

/** The JavaScript signature of one native function. */
export type NativeFunction<K extends SymbolName> = (
  ...args: ArgsOf<(typeof SYMBOLS)[K]["params"]>
) => number;

/** The native functions, called on the JavaScript thread. */
export type NativeSymbols = { readonly [K in SymbolName]: NativeFunction<K> };

/** The runtimes with a shim. */
export type RuntimeName = "deno" | "bun" | "node";

/**
 * What a runtime shim provides: the functions of the table, a way to run a
 * long operation off the JavaScript thread, and raw memory views.
 */
export interface RawLibrary {
  /** The runtime this shim serves. */
  readonly runtime: RuntimeName;
  /** The file the library was loaded from. */
  readonly path: string;
  /** Every function, called synchronously. */
  readonly symbols: NativeSymbols;
  /**
   * The `done` argument to give `llmdd_job_create` for jobs whose operation
   * goes through {@link RawLibrary.callLong}: `null` where the runtime makes
   * asynchronous FFI calls itself, a native callback where it cannot.
   */
  readonly doneCallback: unknown;
  /**
   * Runs a long operation off the JavaScript thread and resolves to its status.
   * The job (the last argument) must have been created with `doneCallback`.
   * The caller keeps every buffer argument referenced until this settles.
   */
  callLong<K extends LongSymbolName>(name: K, args: Parameters<NativeFunction<K>>): Promise<number>;
  /**
   * A fresh buffer of `byteLength` bytes for native code to fill completely.
   * It may be uninitialized: a runtime that zeroes large buffers on the
   * JavaScript thread (Bun) would otherwise block the event loop for as long
   * as the copy itself takes.
   */
  allocate(byteLength: number): Uint8Array;
  /** An ArrayBuffer over `byteLength` bytes of native memory at `address` (no copy). */
  view(address: bigint, byteLength: number): ArrayBuffer;
  /**
   * The address of the first byte of `bytes`, which must be backed by an
   * ArrayBuffer's own store (not a small array kept inside the JavaScript
   * heap, which a collection may move): the caller reads `bytes.buffer` first.
   */
  address(bytes: Uint8Array): bigint;
  /** Unloads the library. */
  close(): void;
}
