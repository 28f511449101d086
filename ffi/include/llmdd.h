/*
 * llmdd.h — the C ABI of llm-datadist for TypeScript.
 *
 * This header is the whole contract between the TypeScript library and a native
 * backend. Two libraries implement it:
 *
 *   libllmdd_host.so  the embedded host backend (ffi/host/): every configured
 *                     device is a host-memory pool. Needs no accelerator.
 *   libllmdd_cann.so  the adapter over Huawei CANN LLM-DataDist + ACL (ffi/cann/).
 *
 * Conventions (read these once; every function below follows them):
 *
 *   - Every function is prefixed `llmdd_` and returns an int32 status that is an
 *     upstream `LLMStatusCode` value (LLMDD_SUCCESS, LLMDD_PARAM_INVALID, ...).
 *     Statuses are returned as int32_t; 0xFFFFFFFF (LLM_FAILED) therefore reads
 *     as -1 and 0x5010B00x as a positive number.
 *   - On failure, a human-readable message is kept for the calling thread and can
 *     be read with llmdd_last_error(). Long operations (those taking a job) also
 *     store their message in the job, because a runtime may run them on a thread
 *     other than the one that reads the message.
 *   - Objects cross the boundary as integer handles (uint64_t), never pointers.
 *     The library validates every handle: a zero, foreign, stale or freed handle
 *     is an error status, never a dereference.
 *   - Output memory (tensor copies, out-parameters) is allocated by the caller,
 *     so its lifetime belongs to the caller's garbage collector.
 *   - Every call that can wait takes its time limit through a job (see "Jobs").
 *   - The library is thread-safe: any function may be called from any thread at
 *     any time. Ordering between calls is the caller's business.
 *   - Sizes and offsets are uint64_t bytes; counts and indexes are int32_t.
 */
#ifndef LLMDD_H
#define LLMDD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LLMDD_API __attribute__((visibility("default")))
#else
#define LLMDD_API
#endif

/* Bumped whenever a signature or a meaning below changes. The loader refuses a
 * library whose llmdd_abi_version() differs from the version it was written for. */
#define LLMDD_ABI_VERSION 6

/* ---- Status codes: the upstream LLMStatusCode values (llm_datadist/llm_error_codes.h,
 *      0x5010B000 + n). Names keep the upstream spelling without the LLM_ prefix. ---- */
#define LLMDD_SUCCESS                     ((int32_t)0x00000000)
#define LLMDD_FAILED                      ((int32_t)0xFFFFFFFF)
#define LLMDD_WAIT_PROCESS_TIMEOUT        ((int32_t)0x5010B001)
#define LLMDD_KV_CACHE_NOT_EXIST          ((int32_t)0x5010B002)
#define LLMDD_REPEAT_REQUEST              ((int32_t)0x5010B003)
#define LLMDD_PARAM_INVALID               ((int32_t)0x5010B005)
#define LLMDD_ENGINE_FINALIZED            ((int32_t)0x5010B006)
#define LLMDD_NOT_YET_LINK                ((int32_t)0x5010B007)
#define LLMDD_ALREADY_LINK                ((int32_t)0x5010B008)
#define LLMDD_LINK_FAILED                 ((int32_t)0x5010B009)
#define LLMDD_UNLINK_FAILED               ((int32_t)0x5010B00A)
#define LLMDD_CLUSTER_NUM_EXCEED_LIMIT    ((int32_t)0x5010B00C)
#define LLMDD_DEVICE_OUT_OF_MEMORY        ((int32_t)0x5010B00E)
#define LLMDD_FEATURE_NOT_ENABLED         ((int32_t)0x5010B019)
#define LLMDD_TIMEOUT                     ((int32_t)0x5010B01A)
#define LLMDD_OUT_OF_MEMORY               ((int32_t)0x5010B01C)

/* Roles, as upstream LLMRole. */
#define LLMDD_ROLE_PROMPT  1
#define LLMDD_ROLE_DECODER 2
#define LLMDD_ROLE_MIX     3

/* Placements, as upstream Placement. */
#define LLMDD_PLACEMENT_HOST   0
#define LLMDD_PLACEMENT_DEVICE 1

/* Most tensor addresses one registered cache has per device (upstream's C++ API
 * reference, RegisterKvCache: "地址个数不超过240", at most 240 addresses). */
#define LLMDD_MAX_REGISTERED_ADDRS 240

/* Most clusters one engine links to (upstream's per-call limit of link_clusters). */
#define LLMDD_MAX_LINKS 16

/* llmdd_cache_pull key kinds. */
#define LLMDD_KEY_CACHE_KEY 0 /* k0 = prompt_cluster_id, k1 = req_id, k2 = model_id */
#define LLMDD_KEY_BY_ID     1 /* k0 = cluster_id, k1 = cache_id, k2 = batch index */
/* llmdd_cache_pull_blocks only: k0 = prompt_cluster_id, k2 = model_id (k1 unused). */
#define LLMDD_KEY_BLOCKS    2

/* The req_id under which a blocks cache's BlocksCacheKey (prompt_cluster_id,
 * model_id) is held: a PROMPT allocates a blocks cache with the one key
 * (prompt_cluster_id, LLMDD_BLOCKS_REQ_ID, model_id) naming row 0 (upstream's
 * invalid req_id, which no CacheKey pull names). Pulls by LLMDD_KEY_BLOCKS find
 * it and never consume it. */
#define LLMDD_BLOCKS_REQ_ID UINT64_MAX

/* Or'd into LLMDD_KEY_BY_ID or LLMDD_KEY_BLOCKS (llmdd_cache_pull,
 * llmdd_cache_pull_blocks): the pull is made only from the PROMPT's answer this
 * engine kept from an earlier pull of the same key, while the PROMPT's
 * generation page says it still holds (docs/DESIGN.md §4.3) — no socket, no
 * wait, so it may run on the caller's thread (job 0). When there is no such
 * answer (or the backend keeps none, or the link is over UCX, where a repeat
 * pull without a round trip still waits for its reads) nothing is copied and
 * the call returns FEATURE_NOT_ENABLED: make the same call without the flag. */
#define LLMDD_KEY_KEPT_ONLY 0x100

/* Or'd into LLMDD_KEY_BLOCKS (llmdd_cache_push_blocks, ABI 6): the source is a
 * row cut into blocks, k1 their size. */
#define LLMDD_PUSH_ROW_BLOCKS 0x200

/* llmdd_cache_pull size meaning "the whole row". */
#define LLMDD_WHOLE_ROW UINT64_MAX

/* Flags reported by llmdd_engine_info(). */
#define LLMDD_INFO_HOST_ACCESSIBLE 1u /* device memory is plain host memory (views allowed) */

/* Long copies are done in chunks of this many bytes; between chunks the job's
 * deadline and cancel flag are checked, so a cancelled copy stops within one chunk. */
#define LLMDD_COPY_CHUNK_BYTES ((uint64_t)1 << 20)

/* ======================================================================== */
/* Library                                                                  */
/* ======================================================================== */

/* Returns LLMDD_ABI_VERSION as compiled into the library. Never fails. */
LLMDD_API int32_t llmdd_abi_version(void);

/* Copies the calling thread's last error message into buf (UTF-8, NUL-terminated,
 * truncated to cap-1 bytes) and returns the message's full length in bytes without
 * the NUL. buf may be NULL when cap is 0 (to ask for the length). A thread that has
 * seen no error gets the empty string. Never fails. */
LLMDD_API int32_t llmdd_last_error(uint8_t *buf, int32_t cap);

/* ======================================================================== */
/* Engines (one per LLMDataDist instance)                                   */
/* ======================================================================== */

/* Creates and initialises an engine: upstream LLMDataDist(role, cluster_id) + init().
 *
 * options/options_len: UTF-8 text of `key=value` lines separated by '\n' (not
 * NUL-terminated; options may be NULL when options_len is 0), with upstream option
 * keys. The host backend reads:
 *   ge.exec.deviceId         device ids, "0" or "0;1;..." (default "0"); at most 64
 *   ge.flowGraphMemMaxSize   pool bytes per device (default 1 GiB); reserved lazily,
 *                            so untouched pages cost nothing
 *   llm.listenIpInfo         PROMPT/MIX only: "ipv4:port" to listen on for links
 *                            (port 0 = any free port; see llmdd_engine_info). An
 *                            address outside 127.0.0.0/8 needs llmdd.linkSecret.
 *   llmdd.linkSecret         (host backend only) 16 to 256 bytes that authenticate
 *                            links instead of the user's own key; the same on a
 *                            PROMPT and the DECODERs that link to it
 *   llm.MemPoolConfig        upstream's JSON {"memory_size": N[, "page_shift": S]}:
 *                            pool bytes per device (instead of ge.flowGraphMemMaxSize)
 *   llm.HostMemPoolConfig    the same JSON: a separate host pool of N bytes, where
 *                            caches with placement HOST then go (one copy, seen by
 *                            every device); without it HOST caches share the
 *                            device pools
 *   llm.EnableSwitchRole     "1": the role may change later (llmdd_engine_set_role);
 *                            the pools are shared memory whatever the role
 * Other keys are accepted and ignored (they belong to other layers or backends).
 *
 * Pools of PROMPT and MIX engines are sealed, unnamed shared memory, which a
 * DECODER of the same user on the same machine receives (over a Unix socket in the
 * user's private directory, /dev/shm/llmdd-<uid>) after an authenticated link, maps
 * read-only and pulls from with one copy. One live engine of a user owns a cluster
 * id on the machine (an advisory lock in that directory, which the kernel drops
 * when its process dies). DECODER pools are private memory.
 *
 * On success writes the engine handle to *out_engine. The caller owns the engine
 * and must llmdd_engine_finalize() it.
 * Returns: SUCCESS; PARAM_INVALID (bad role, malformed or out-of-range option,
 * listenIpInfo on a DECODER, a non-loopback listenIpInfo without llmdd.linkSecret,
 * out_engine NULL); DEVICE_OUT_OF_MEMORY (pool could not be reserved); FAILED (the
 * cluster id is owned by a live engine — the message names its uid and pid —, the
 * address cannot be listened on, shared memory or the private directory is
 * unavailable — the message says which). */
LLMDD_API int32_t llmdd_engine_init(int32_t role, uint64_t cluster_id,
                                    const uint8_t *options, int32_t options_len,
                                    uint64_t *out_engine);

/* Finalizes an engine: cancels its running jobs (they end with ENGINE_FINALIZED),
 * waits for them to leave its memory, stops listening, closes its links, frees
 * every cache and releases the pools (removing their shared-memory objects).
 * The handle becomes stale: every later call with it returns ENGINE_FINALIZED.
 * Returns: SUCCESS; ENGINE_FINALIZED (already finalized); PARAM_INVALID (not an
 * engine handle). */
LLMDD_API int32_t llmdd_engine_finalize(uint64_t engine);

/* Describes an engine. Writes 5 values to out[0..4]:
 *   out[0] number of devices (pools), in configured order
 *   out[1] LLMDD_INFO_* flags
 *   out[2] pool capacity in bytes per device
 *   out[3] the engine's role
 *   out[4] the TCP port it listens on (0 when not listening)
 * Returns: SUCCESS; ENGINE_FINALIZED; PARAM_INVALID. */
LLMDD_API int32_t llmdd_engine_info(uint64_t engine, uint64_t *out);

/* Pool usage of one device: out[0] = bytes in use (caches, with alignment),
 * out[1] = capacity. device_index is the position in ge.exec.deviceId.
 * Returns: SUCCESS; ENGINE_FINALIZED; PARAM_INVALID (bad device_index, out NULL). */
LLMDD_API int32_t llmdd_pool_usage(uint64_t engine, int32_t device_index, uint64_t *out);

/* ======================================================================== */
/* Caches                                                                   */
/* ======================================================================== */

/* Allocates a cache of num_tensors tensors of tensor_bytes bytes each, on every
 * device of the engine. Each tensor starts on a 64-byte boundary.
 *
 * batch_size: the tensors' rows (the batch dimension comes first): row r of a
 *   tensor is bytes [r * row, (r + 1) * row) with row = tensor_bytes / batch_size;
 *   tensor_bytes must be a multiple of batch_size.
 * layout_tag: an opaque value describing everything but the batch size (data type,
 *   other dimensions); a pull requires equal tags on both sides.
 * keys: num_keys cache keys, 3 uint64_t each (prompt_cluster_id, req_id, model_id),
 *   key i naming batch row i; num_keys <= batch_size; may be NULL when num_keys is 0.
 *   A key already held by a cache of this engine, or keys on a DECODER engine →
 *   PARAM_INVALID.
 * out_cache_id: the new cache id (from 1, never reused within the engine).
 * out_addrs: num_devices * num_tensors addresses, [device][tensor]; addrs_cap is the
 *   array's length in elements and must be at least that.
 *
 * The cache's memory returns to the pools once the id and all its keys are released
 * (llmdd_cache_deallocate, llmdd_cache_key_remove). The memory of a PROMPT's or
 * MIX's cache is reserved here, so writing to it later cannot fail.
 * Returns: SUCCESS; PARAM_INVALID (num_tensors < 1, tensor_bytes 0 or too large,
 * bad placement, bad keys, addrs_cap too small, NULL outputs); DEVICE_OUT_OF_MEMORY
 * (a pool has no room, or its memory cannot be reserved: nothing is allocated);
 * ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_cache_allocate(uint64_t engine, int32_t num_tensors,
                                       uint64_t tensor_bytes, uint64_t batch_size,
                                       uint64_t layout_tag, int32_t placement,
                                       const uint64_t *keys, int32_t num_keys,
                                       uint64_t *out_cache_id,
                                       uint64_t *out_addrs, int32_t addrs_cap);

/* Releases a cache id. Its memory returns to the pools when no key still names it
 * and no running operation uses it (a running read finishes on intact memory).
 * Returns: SUCCESS; KV_CACHE_NOT_EXIST (unknown or already released id);
 * ENGINE_FINALIZED; PARAM_INVALID. */
LLMDD_API int32_t llmdd_cache_deallocate(uint64_t engine, uint64_t cache_id);

/* Releases one cache key (prompt_cluster_id, req_id, model_id).
 * Returns: SUCCESS; KV_CACHE_NOT_EXIST (no such key); ENGINE_FINALIZED; PARAM_INVALID. */
LLMDD_API int32_t llmdd_cache_key_remove(uint64_t engine, uint64_t cluster_id,
                                         uint64_t req_id, uint64_t model_id);

/* ======================================================================== */
/* Jobs: a deadline, a cancel flag and an optional completion callback       */
/* ======================================================================== */

/* Completion callback for jobs run in the background (see llmdd_job_create). Called
 * exactly once per accepted operation, from a library thread. */
typedef void (*llmdd_done_fn)(uint64_t job, int32_t status);

/* Creates a job for one long operation.
 *
 * timeout_ms: the deadline is now + timeout_ms (CLOCK_MONOTONIC); 0 means already
 *   due (the operation returns WAIT_PROCESS_TIMEOUT before touching memory); a
 *   negative value means no deadline.
 * done: NULL → an operation given this job runs on the calling thread and returns
 *   its final status (runtimes with asynchronous FFI calls use this). Non-NULL →
 *   the operation validates its arguments, returns at once (SUCCESS = accepted, or
 *   the validation error, in which case done is not called) and runs on a library
 *   worker thread; done(job, status) reports the final status (runtimes without
 *   asynchronous FFI calls use this).
 * A job serves one operation. Release it with llmdd_job_release() after the
 * operation has finished (or was never started).
 * Returns: SUCCESS; PARAM_INVALID (out_job NULL). */
LLMDD_API int32_t llmdd_job_create(int32_t timeout_ms, llmdd_done_fn done,
                                   uint64_t *out_job);

/* Asks the job's operation to stop. It stops at its next chunk boundary (within
 * LLMDD_COPY_CHUNK_BYTES of copying) with status LLMDD_FAILED and the message
 * "cancelled". Cancelling a finished or not yet started job is allowed (a later
 * operation with it stops at once).
 * Returns: SUCCESS; PARAM_INVALID (unknown job). */
LLMDD_API int32_t llmdd_job_cancel(uint64_t job);

/* Copies the job's error message (empty if none) like llmdd_last_error().
 * Returns the message length, or -1 for an unknown job. */
LLMDD_API int32_t llmdd_job_message(uint64_t job, uint8_t *buf, int32_t cap);

/* Releases the caller's reference to a job. A background operation still running
 * keeps its own reference, so releasing early is safe.
 * Returns: SUCCESS; PARAM_INVALID (unknown job). */
LLMDD_API int32_t llmdd_job_release(uint64_t job);

/* ======================================================================== */
/* Long operations (each takes a job; job 0 = no deadline, no cancel, inline) */
/* ======================================================================== */

/* Copies tensor tensor_index of the cache, on device device_index, into out, which
 * must hold exactly the tensor (out_len == tensor_bytes). out must stay valid until
 * the operation has finished. The cache's memory cannot be released while the copy
 * runs.
 * Returns: SUCCESS; PARAM_INVALID (tensor_index or device_index out of range,
 * out NULL, out_len wrong, unknown job); KV_CACHE_NOT_EXIST; ENGINE_FINALIZED;
 * WAIT_PROCESS_TIMEOUT (deadline passed); FAILED (cancelled). */
LLMDD_API int32_t llmdd_cache_read(uint64_t engine, uint64_t cache_id,
                                   int32_t tensor_index, int32_t device_index,
                                   uint8_t *out, uint64_t out_len, uint64_t job);

/* Copies nbytes from byte src_offset of every tensor of cache src_id to byte
 * dst_offset of the same tensor of cache dst_id, on every device. Both caches must
 * belong to the engine and have the same number of tensors; the ranges must lie
 * within the tensors. dst and src may be the same cache only if the ranges do not
 * overlap.
 * Returns: SUCCESS; PARAM_INVALID (range outside a tensor, tensor counts differ,
 * overlapping ranges, unknown job); KV_CACHE_NOT_EXIST; ENGINE_FINALIZED;
 * WAIT_PROCESS_TIMEOUT; FAILED (cancelled). */
LLMDD_API int32_t llmdd_cache_copy(uint64_t engine, uint64_t dst_cache_id,
                                   uint64_t src_cache_id, uint64_t dst_offset,
                                   uint64_t src_offset, uint64_t nbytes, uint64_t job);

/* ======================================================================== */
/* Prefill → decode: links and pulls (long operations, each takes a job)     */
/* ======================================================================== */

/* Links a DECODER (or MIX) engine to the PROMPT (or MIX) engine of cluster
 * remote_cluster_id listening at remote_addr ("ipv4:port", UTF-8, not
 * NUL-terminated): connects within the job's deadline, authenticates (both ends
 * must hold the same key: the user's own, or llmdd.linkSecret), checks that the
 * peer is that cluster, and maps its pools read-only (received as sealed
 * descriptors from the same process, which must run as the same user on this
 * machine). The two engines must have the same number of devices. The link lasts
 * until llmdd_unlink, finalize, or the peer going away.
 * Returns: SUCCESS; ALREADY_LINK (linked to that cluster already);
 * CLUSTER_NUM_EXCEED_LIMIT (LLMDD_MAX_LINKS links already); LINK_FAILED (nobody
 * answers there before the deadline, the peer does not hold the key, is another
 * cluster or another user, devices differ, the pools are not sealed or cannot be
 * mapped — the message says which); PARAM_INVALID (a PROMPT engine, malformed
 * address, unknown job); ENGINE_FINALIZED; FAILED (cancelled). */
LLMDD_API int32_t llmdd_link(uint64_t engine, uint64_t remote_cluster_id,
                             const uint8_t *remote_addr, int32_t addr_len, uint64_t job);

/* Unlinks from cluster remote_cluster_id: tells the peer (within the job's
 * deadline) and unmaps its pools once no pull uses them. With force, a peer that
 * does not answer is dropped anyway.
 * Returns: SUCCESS; NOT_YET_LINK (not linked to that cluster); UNLINK_FAILED (the
 * peer did not answer and force is 0: the link is dropped all the same);
 * PARAM_INVALID; ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_unlink(uint64_t engine, uint64_t remote_cluster_id, int32_t force,
                               uint64_t job);

/* Pulls one batch row from a linked PROMPT into batch row dst_batch_index of every
 * tensor of local cache cache_id, on every device: `size` bytes from the start of
 * each tensor's row (LLMDD_WHOLE_ROW: the whole row).
 *
 * key_kind LLMDD_KEY_CACHE_KEY: the row named by cache key (k0, k1, k2) at cluster
 * k0; on success the key is consumed (the PROMPT releases it, as upstream).
 * key_kind LLMDD_KEY_BY_ID: row k2 of cache k1 at cluster k0; nothing is consumed.
 *
 * The PROMPT pins the source cache for the pull, so freeing it meanwhile is safe;
 * the copy runs in chunks, checking the deadline, the cancel flag and that the
 * PROMPT is still alive.
 * Returns: SUCCESS; PARAM_INVALID (a PROMPT engine, layouts or tensor counts differ,
 * dst_batch_index or size out of range, unknown job); NOT_YET_LINK (cluster k0 is not
 * linked); KV_CACHE_NOT_EXIST (no such key or cache at the PROMPT, or no local cache
 * cache_id); LINK_FAILED (the PROMPT went away before or during the pull: the row is
 * not to be trusted); WAIT_PROCESS_TIMEOUT (the host backend) or TIMEOUT
 * (the CANN backend over LLM-DataDist V2, which reports a pull out of
 * time so, as upstream); FAILED (cancelled); ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_cache_pull(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                   uint64_t k0, uint64_t k1, uint64_t k2,
                                   int32_t dst_batch_index, uint64_t size, uint64_t job);

/* Pulls blocks from a linked PROMPT into blocks of local cache cache_id (upstream
 * pull_blocks, C++ PullKvBlocks), on every device, in one call however many.
 *
 * key_kind LLMDD_KEY_BLOCKS: the blocks cache named by BlocksCacheKey (k0, k2)
 *   at cluster k0; pairs name (source block, destination block). Not consumed.
 * key_kind LLMDD_KEY_CACHE_KEY / LLMDD_KEY_BY_ID: the row named as for
 *   llmdd_cache_pull, cut into blocks of the destination's block size: source
 *   block i is bytes [i * block, (i + 1) * block) of that row. A CACHE_KEY is
 *   consumed on success.
 * pairs: num_pairs pairs (src_block, dst_block); valid until the operation ends.
 * Tensors: num_tensors 0 means every tensor (both caches must have as many, and
 *   src_tensor_start / dst_tensor_start must be 0); otherwise tensors
 *   [src_tensor_start, +num_tensors) of the source go to
 *   [dst_tensor_start, +num_tensors) of the destination (upstream's layer ranges
 *   times tensor_num_per_layer).
 * A block of the destination (tensor_bytes / batch_size; a row, for a cache
 * that is not a blocks cache) must be as large as a block of the source.
 * The PROMPT answers one look-up for the whole call and pins its cache; the
 * copy comes out of the mapping of its pools in chunks, checking the deadline,
 * the cancel flag and that the PROMPT is still alive.
 * Returns: SUCCESS; PARAM_INVALID (a PROMPT engine, bad key_kind, num_pairs < 1,
 * pairs NULL, a block index or tensor range out of range, block sizes or tensor
 * counts differ, unknown job); NOT_YET_LINK; KV_CACHE_NOT_EXIST; LINK_FAILED (the
 * PROMPT went away: the blocks are not to be trusted); FEATURE_NOT_ENABLED (the
 * CANN backend); WAIT_PROCESS_TIMEOUT; FAILED (cancelled); ENGINE_FINALIZED.
 * On the host backend a source in registered memory or the host pool of the
 * PROMPT comes through the link's socket, in one request (a transfer stopped
 * midway there breaks the link). */
LLMDD_API int32_t llmdd_cache_pull_blocks(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                          uint64_t k0, uint64_t k1, uint64_t k2,
                                          const uint64_t *pairs, int32_t num_pairs,
                                          int32_t src_tensor_start, int32_t dst_tensor_start,
                                          int32_t num_tensors, uint64_t job);

/* Pushes from local cache cache_id into a cache of a linked peer (upstream
 * push_cache / push_blocks; C++ PushKvCache / PushKvBlocks), on every device,
 * in one call however many blocks.
 * key_kind LLMDD_KEY_BY_ID: row k2 of cache k1 at cluster k0 (push_cache): num_pairs 0
 *   and pairs NULL; the source is row src_batch_index of cache_id, the whole row.
 *   With pairs (k2 0, src_batch_index 0): blocks of cache k1, as LLMDD_KEY_BLOCKS
 *   (C++ PushKvBlocks by CacheIndex).
 * key_kind LLMDD_KEY_BLOCKS: the blocks cache named by BlocksCacheKey (k0, k2) at
 *   cluster k0 (push_blocks): pairs = num_pairs (src_block, dst_block) pairs;
 *   src_batch_index 0.
 * key_kind LLMDD_KEY_BLOCKS | LLMDD_PUSH_ROW_BLOCKS (ABI 6; upstream
 *   transfer_cache_async from a cache into blocks, dst_block_memory_size k1): the
 *   tensors of cache_id from row src_batch_index on, cut into blocks of k1 bytes
 *   (the destination's block size, > 0 and less than a tensor); each pair (j, m)
 *   moves block j (whole, within the tensor) to block m.
 * Tensors: as llmdd_cache_pull_blocks (num_tensors 0 = every tensor; otherwise
 *   [src_tensor_start, +num_tensors) -> [dst_tensor_start, +num_tensors)).
 * A block (a row) of the destination must be as large as one of the source.
 * Both ends must have enabled remote access: this engine with
 * llm.EnableRemoteCacheAccessible=1 and a source cache that is remote-accessible
 * (as upstream's "local cache is not remote accessible."), the destination
 * cache registered remote-accessible or allocated by an engine with that option.
 * Host backend: the engine that linked (DECODER or MIX) pushes into the engine it
 * linked to; a destination in the peer's pools is written through a shared
 * read-write mapping of them (both engines with remote access), anything else
 * (registered memory) through the link's socket in one request.
 * Returns: SUCCESS; PARAM_INVALID (a PROMPT engine, no remote access here,
 * bad key_kind, pairs given for BY_ID or missing for BLOCKS, an index, row or
 * tensor range out of range, block sizes or tensor counts differ, the destination
 * or the source not remote-accessible, unknown job); NOT_YET_LINK;
 * KV_CACHE_NOT_EXIST; FEATURE_NOT_ENABLED (not supported by the backend);
 * LINK_FAILED; WAIT_PROCESS_TIMEOUT / TIMEOUT; FAILED (cancelled);
 * ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_cache_push_blocks(uint64_t engine, uint64_t cache_id,
                                          int32_t src_batch_index, int32_t key_kind,
                                          uint64_t k0, uint64_t k1, uint64_t k2,
                                          const uint64_t *pairs, int32_t num_pairs,
                                          int32_t src_tensor_start, int32_t dst_tensor_start,
                                          int32_t num_tensors, uint64_t job);

/* Pushes tensors of local cache cache_id to addresses in a linked peer (upstream
 * transfer_cache_async with a TransferConfig's dst_addrs), one device.
 * Tensor src_tensor_start + i goes to dst_addrs[i], i < num_addrs:
 *   num_pairs 0 (pairs NULL): row src_batch_index, written at dst_addrs[i];
 *   otherwise each pair (k, m): bytes [src_batch_index * row + k * block, +block)
 *   of the tensor go to dst_addrs[i] + m * block, where row is the source's row
 *   size and block is dst_block_bytes, or row when 0 (blocks to blocks:
 *   src_batch_index 0; a row to blocks: the row cut into blocks of
 *   dst_block_bytes, every one whole).
 * The peer translates every destination range into memory it made
 * remote-accessible (a registered remote-accessible tensor, or a pooled cache of
 * an engine with remote access) and refuses any other (PARAM_INVALID). This
 * engine needs no remote access of its own (upstream's TransferConfig is the mode
 * without llm.EnableRemoteCacheAccessible).
 * Returns: as llmdd_cache_push_blocks; FEATURE_NOT_ENABLED on the CANN backend. */
LLMDD_API int32_t llmdd_cache_push_addrs(uint64_t engine, uint64_t cache_id,
                                         int32_t src_batch_index, uint64_t cluster_id,
                                         const uint64_t *dst_addrs, int32_t num_addrs,
                                         int32_t src_tensor_start, const uint64_t *pairs,
                                         int32_t num_pairs, uint64_t dst_block_bytes,
                                         uint64_t job);

/* ======================================================================== */
/* The cache manager (upstream V2: LLMDataDist.cache_manager)                */
/* ======================================================================== */

/* Registers memory the caller owns as a cache: upstream register_cache /
 * register_blocks_cache (C++ RegisterKvCache). The engine records the ranges
 * and never frees them; the caller must keep the memory valid and unchanged in
 * size until llmdd_cache_unregister has returned (or the engine is finalized).
 *
 * num_tensors, tensor_bytes, batch_size, layout_tag, placement, keys and
 * num_keys: as llmdd_cache_allocate (a blocks cache has batch_size blocks).
 * addrs: num_devices * num_tensors addresses, [device][tensor], each the start of
 *   a tensor of tensor_bytes bytes; num_addrs is their count. No address may be 0.
 * remote_accessible: 1 if linked peers may read or write the memory, 0 if not.
 *   Refused (PARAM_INVALID) once the engine has linked to a PROMPT (llmdd_link),
 *   as upstream ("you can not register remote accessible cache after link").
 * out_cache_id: the new cache id (ids are shared with allocated caches).
 *
 * Returns: SUCCESS; PARAM_INVALID (num_addrs wrong, more than
 * LLMDD_MAX_REGISTERED_ADDRS tensors, a zero address, ranges that wrap around
 * the address space, remote access after a link, and every argument
 * llmdd_cache_allocate refuses); OUT_OF_MEMORY; ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_cache_register(uint64_t engine, int32_t num_tensors,
                                       uint64_t tensor_bytes, uint64_t batch_size,
                                       uint64_t layout_tag, int32_t placement,
                                       const uint64_t *addrs, int32_t num_addrs,
                                       const uint64_t *keys, int32_t num_keys,
                                       int32_t remote_accessible, uint64_t *out_cache_id);

/* Unregisters a cache made by llmdd_cache_register (upstream unregister_cache):
 * its id and keys are released at once, and the engine never touches its
 * memory again. A cache that a running operation still uses is refused rather
 * than waited for, so that returning SUCCESS means the memory is the caller's.
 * Returns: SUCCESS; KV_CACHE_NOT_EXIST (no cache of that id); PARAM_INVALID (the
 * cache was allocated, not registered: use llmdd_cache_deallocate); FAILED (an
 * operation is using it: retry once it has ended); ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_cache_unregister(uint64_t engine, uint64_t cache_id);

/* Copies blocks (batch rows) between two caches of the engine, or within one:
 * upstream copy_blocks (src == dst) and swap_blocks (a HOST and a DEVICE cache).
 * pairs: num_pairs pairs (src_block, dst_block); for each pair, block src_block
 * of every tensor of src_cache_id is copied to block dst_block of the same
 * tensor of dst_cache_id, on every device. One call moves every pair, in
 * chunks, checking the job's deadline and cancel flag between chunks. A pair
 * whose blocks are the same block of the same cache is skipped. pairs must stay
 * valid until the operation has finished.
 * Both caches must have the same number of tensors and the same block size
 * (tensor_bytes / batch_size). Placement is not checked here: which placements
 * a call allows is the API's rule.
 * Returns: SUCCESS; PARAM_INVALID (num_pairs < 1, pairs NULL, a block index out
 * of range, tensor counts or block sizes differ, unknown job);
 * KV_CACHE_NOT_EXIST; ENGINE_FINALIZED; WAIT_PROCESS_TIMEOUT; FAILED (cancelled). */
LLMDD_API int32_t llmdd_cache_copy_blocks(uint64_t engine, uint64_t dst_cache_id,
                                          uint64_t src_cache_id, const uint64_t *pairs,
                                          int32_t num_pairs, uint64_t job);

/* Switches the engine's role (upstream switch_role, C++ SetRole). The engine must
 * have been initialised with llm.EnableSwitchRole=1. options/options_len: as
 * llmdd_engine_init; a switch to PROMPT or MIX may give llm.listenIpInfo to
 * listen on (port 0: any free port, see llmdd_engine_info). A switch to DECODER
 * stops listening (linked DECODERs are dropped). An engine that is linked to
 * PROMPTs must unlink before it becomes a PROMPT.
 * Returns: SUCCESS; FEATURE_NOT_ENABLED (llm.EnableSwitchRole was not set);
 * PARAM_INVALID (bad role or option, listenIpInfo for a DECODER, links still
 * up); FAILED (the address cannot be listened on); ENGINE_FINALIZED. */
LLMDD_API int32_t llmdd_engine_set_role(uint64_t engine, int32_t role,
                                        const uint8_t *options, int32_t options_len);

#ifdef __cplusplus
}
#endif

#endif /* LLMDD_H */
