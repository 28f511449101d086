// llmdd_cache_push_addrs (upstream transfer_cache_async with a TransferConfig's
// dst_addrs) is not mapped to upstream yet: the arguments are checked as the
// host backend checks the ones it can without a peer, then the call says so.
// Its own file, so that the symbol table stays the host backend's.
#include "engine.hpp"
#include "jobs.hpp"

using namespace llmdd;

extern "C" LLMDD_API int32_t llmdd_cache_push_addrs(uint64_t engine, uint64_t cache_id, int32_t src_batch_index,
                                                    uint64_t cluster_id, const uint64_t *dst_addrs,
                                                    int32_t num_addrs, int32_t src_tensor_start,
                                                    const uint64_t *pairs, int32_t num_pairs,
                                                    uint64_t dst_block_bytes, uint64_t job) {
  (void)src_batch_index;
  (void)src_tensor_start;
  (void)dst_block_bytes;
  return guarded([&]() -> int32_t {
    Job *claimed = nullptr;
    if (job != 0) {
      int32_t status = job_begin(job, &claimed);
      if (status != LLMDD_SUCCESS) return status;
    }
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status == LLMDD_SUCCESS) {
      if (e->role == LLMDD_ROLE_PROMPT)
        status = fail(LLMDD_PARAM_INVALID, "a PROMPT engine does not push: DECODER and MIX engines do");
      else if (dst_addrs == nullptr || num_addrs < 1)
        status = fail(LLMDD_PARAM_INVALID, "dst_addrs: at least one address (num_addrs %d)", num_addrs);
      else if (num_pairs < 0 || (num_pairs > 0 && pairs == nullptr))
        status = fail(LLMDD_PARAM_INVALID, "pairs is NULL or num_pairs %d is negative", num_pairs);
      else if (e->book.find(cache_id) == nullptr)
        status = fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist", static_cast<unsigned long long>(cache_id));
      else if (e->links.find(cluster_id) == nullptr)
        status = fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu", static_cast<unsigned long long>(cluster_id));
      else
        status = fail(LLMDD_FEATURE_NOT_ENABLED,
                      "transferCacheAsync to addresses is not mapped to upstream on the CANN backend yet");
      engine_leave(e);
    }
    return claimed != nullptr ? job_finish(claimed, status) : status;
  });
}
