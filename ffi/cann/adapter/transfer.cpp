// Transfers of blocks and layers between engines: llmdd_cache_pull_blocks
// (V2 PullKvBlocks) and llmdd_cache_push_blocks (V2 PushKvCache /
// PushKvBlocks), each with KvCacheExtParam for tensor ranges.
//
// The arguments are checked as the host backend checks them (ffi/core/blocks.c:
// the pair list, block indexes and tensor ranges on the side this engine
// holds), then translated (translate.hpp) into what the C++ API can name:
// a peer's cache by CacheIndex (cluster, cache id, batch index), never by a
// CacheKey or BlocksCacheKey. Each is one upstream call, bounded by upstream's
// llm.SyncKvCacheWaitTime; the job's deadline and cancel flag are checked
// before it starts, as for llmdd_cache_pull. Upstream's statuses pass through.
#include "core/blocks.h"
#include "operation.hpp"
#include "status.hpp"

using namespace llmdd;

namespace {

// The run of an upstream transfer: out of time before it starts is LLM_TIMEOUT,
// as upstream reports a transfer out of time.
int32_t start_check(const Operation &op, const char *what) {
  int32_t s = check(op, 0, 0);
  if (s == LLMDD_WAIT_PROCESS_TIMEOUT) return fail(kLlmTimeout, "the deadline passed before the %s started", what);
  return s;
}

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_pull_blocks(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                                     uint64_t k0, uint64_t k1, uint64_t k2,
                                                     const uint64_t *pairs, int32_t num_pairs,
                                                     int32_t src_tensor_start, int32_t dst_tensor_start,
                                                     int32_t num_tensors, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    if (e->role == LLMDD_ROLE_PROMPT)
      return fail(LLMDD_PARAM_INVALID, "a PROMPT engine does not pull: DECODER and MIX engines do");
    if (key_kind != LLMDD_KEY_CACHE_KEY && key_kind != LLMDD_KEY_BY_ID && key_kind != LLMDD_KEY_BLOCKS)
      return fail(LLMDD_PARAM_INVALID, "key_kind %d is not CACHE_KEY (0), BY_ID (1) or BLOCKS (2)", key_kind);
    CacheRecord *dst = nullptr;
    int32_t status = find_cache(e, cache_id, "", &dst);
    if (status != LLMDD_SUCCESS) return status;
    // What can be checked here: the list, the destination's indexes and tensor
    // range (the source's are upstream's to check).
    int32_t count = num_tensors ? num_tensors : dst->layout.num_tensors;
    core_block_cache d{cache_id, count, dst->layout.batch_size, dst->layout.row_bytes()};
    core_block_cache any = d;
    any.num_blocks = UINT64_MAX;
    status = core_blocks_check(&d, &any, pairs, num_pairs);
    if (status == LLMDD_SUCCESS)
      status = num_tensors == 0 ? core_tensor_range_check(src_tensor_start, dst_tensor_start, 0, 1, 1)
                                : core_tensor_range_check(src_tensor_start, dst_tensor_start, num_tensors,
                                                          INT32_MAX, dst->layout.num_tensors);
    if (status != LLMDD_SUCCESS) return status;
    if (e->traits.flavor == Flavor::kV1)
      return fail(LLMDD_FEATURE_NOT_ENABLED, "block pulls need the V2 API (libllm_datadist.so: PullKvBlocks)");
    TransferPlan plan;
    status = plan_pull_blocks(key_kind, k0, k1, k2, pairs, num_pairs, src_tensor_start, dst_tensor_start,
                              num_tensors, &plan);
    if (status != LLMDD_SUCCESS) return status;
    const Link *link = e->links.find(k0);
    if (link == nullptr)
      return fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu", static_cast<unsigned long long>(k0));
    if (dst->link_epoch >= link->epoch)
      return fail(LLMDD_PARAM_INVALID,
                  "cache %llu was allocated after the link to cluster %llu was made: upstream"
                  " makes only memory registered before LinkLlmClusters remotely accessible;"
                  " allocate the caches a pull fills before linkClusters",
                  static_cast<unsigned long long>(cache_id), static_cast<unsigned long long>(k0));
    op.run = [=](Operation &self) -> int32_t {
      int32_t s = start_check(self, "block pull");
      if (s != LLMDD_SUCCESS) return s;
      return self.engine->backend->pull_blocks(plan, dst->layout, dst->memory);
    };
    op.end = [=](Operation &self) { unpin(self.engine, dst); };
    e->book.pin(dst);
    return LLMDD_SUCCESS;
  });
}

extern "C" LLMDD_API int32_t llmdd_cache_push_blocks(uint64_t engine, uint64_t cache_id, int32_t src_batch_index,
                                                     int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2,
                                                     const uint64_t *pairs, int32_t num_pairs,
                                                     int32_t src_tensor_start, int32_t dst_tensor_start,
                                                     int32_t num_tensors, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    if (key_kind == (LLMDD_KEY_BLOCKS | LLMDD_PUSH_ROW_BLOCKS))
      return fail(LLMDD_FEATURE_NOT_ENABLED,
                  "a row pushed into blocks by BlocksCacheKey (cluster %llu, model %llu): the LLM-DataDist C++"
                  " API names no BlocksCacheKey",
                  static_cast<unsigned long long>(k0), static_cast<unsigned long long>(k2));
    if (key_kind != LLMDD_KEY_BY_ID && key_kind != LLMDD_KEY_BLOCKS)
      return fail(LLMDD_PARAM_INVALID, "key_kind %d is not BY_ID (1) or BLOCKS (2)", key_kind);
    CacheRecord *src = nullptr;
    int32_t status = find_cache(e, cache_id, "", &src);
    if (status != LLMDD_SUCCESS) return status;
    const CacheLayout &l = src->layout;
    // A row (push_cache) or blocks (push_blocks; on this backend also BY_ID
    // with pairs, which is how the C++ API names a blocks cache).
    bool rows = key_kind == LLMDD_KEY_BY_ID && num_pairs == 0;
    if (rows) {
      if (pairs != nullptr) return fail(LLMDD_PARAM_INVALID, "pairs given with num_pairs 0");
      if (src_batch_index < 0 || static_cast<uint64_t>(src_batch_index) >= l.batch_size)
        return fail(LLMDD_PARAM_INVALID, "src_batch_index %d is out of range [0, %llu)", src_batch_index,
                    static_cast<unsigned long long>(l.batch_size));
    } else {
      int32_t count = num_tensors ? num_tensors : l.num_tensors;
      core_block_cache s{cache_id, count, l.batch_size, l.row_bytes()};
      core_block_cache any = s;
      any.num_blocks = UINT64_MAX;
      status = core_blocks_check(&any, &s, pairs, num_pairs);
      if (status != LLMDD_SUCCESS) return status;
      if (src_batch_index != 0)
        return fail(LLMDD_PARAM_INVALID, "src_batch_index %d: a block push takes 0", src_batch_index);
    }
    status = num_tensors == 0 ? core_tensor_range_check(src_tensor_start, dst_tensor_start, 0, 1, 1)
                              : core_tensor_range_check(src_tensor_start, dst_tensor_start, num_tensors,
                                                        l.num_tensors, INT32_MAX);
    if (status != LLMDD_SUCCESS) return status;
    if (e->traits.flavor == Flavor::kV1)
      return fail(LLMDD_FEATURE_NOT_ENABLED, "pushes need the V2 API (libllm_datadist.so: PushKvCache, PushKvBlocks)");
    // Upstream's PushKvCache / PushKvBlocks: "Only support push to device cache"
    // (the source's placement).
    if (l.placement != LLMDD_PLACEMENT_DEVICE)
      return fail(LLMDD_PARAM_INVALID, "cache %llu is in host memory: upstream pushes from DEVICE caches only",
                  static_cast<unsigned long long>(cache_id));
    TransferPlan plan;
    status = plan_push(key_kind, k0, k1, k2, src_batch_index, pairs, num_pairs, src_tensor_start,
                       dst_tensor_start, num_tensors, l.num_tensors, &plan);
    if (status != LLMDD_SUCCESS) return status;
    // No link check here: a PROMPT pushes to a DECODER that linked to it, which
    // only upstream knows (it answers LLM_NOT_YET_LINK otherwise).
    op.run = [=](Operation &self) -> int32_t {
      int32_t s = start_check(self, "push");
      if (s != LLMDD_SUCCESS) return s;
      return self.engine->backend->push(plan, src->layout, src->memory);
    };
    op.end = [=](Operation &self) { unpin(self.engine, src); };
    e->book.pin(src);
    return LLMDD_SUCCESS;
  });
}
