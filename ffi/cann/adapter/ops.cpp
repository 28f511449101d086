// The long operations: llmdd_cache_read, llmdd_cache_copy,
// llmdd_cache_copy_blocks, llmdd_link, llmdd_unlink, llmdd_cache_pull (block
// pulls and pushes: transfer.cpp).
//
// Each goes through operation() (operation.hpp). Between chunks a read checks
// the job's deadline, its cancel flag and the engine's finalize; each device
// wait gets what is left of the deadline. A read or a copy given job 0 is bounded by llm.SyncKvCacheWaitTime
// (upstream's bound for KV operations): a device wait is never unbounded; a copy
// (V2: the adapter's own ACL copies) waits for its device work at most what is
// left of the deadline. Upstream's own calls (pull, V1's CopyKvCache) are bounded
// by upstream's llm.SyncKvCacheWaitTime, links by the job's deadline.
#include <memory>

#include "core/blocks.h"
#include "operation.hpp"
#include "status.hpp"

using namespace llmdd;

namespace {

// A link or unlink given no deadline (job 0, or a negative timeout) waits at most
// this long: upstream takes a finite timeout in ms.
constexpr int32_t kNoDeadlineLinkMs = 10 * 60 * 1000;

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_read(uint64_t engine, uint64_t cache_id, int32_t tensor_index,
                                              int32_t device_index, uint8_t *out, uint64_t out_len,
                                              uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    if (out == nullptr) return fail(LLMDD_PARAM_INVALID, "out is NULL");
    if (device_index < 0 || device_index >= e->num_devices())
      return fail(LLMDD_PARAM_INVALID, "device_index %d is out of range [0, %d)", device_index,
                  e->num_devices());
    CacheRecord *cache = nullptr;
    int32_t status = find_cache(e, cache_id, "", &cache);
    if (status != LLMDD_SUCCESS) return status;
    const CacheLayout &l = cache->layout;
    if (tensor_index < 0 || tensor_index >= l.num_tensors)
      return fail(LLMDD_PARAM_INVALID, "tensor_index %d is out of range [0, %d)", tensor_index,
                  l.num_tensors);
    if (out_len != l.tensor_bytes)
      return fail(LLMDD_PARAM_INVALID, "out_len %llu is not the tensor size %llu",
                  static_cast<unsigned long long>(out_len),
                  static_cast<unsigned long long>(l.tensor_bytes));

    uint64_t src = cache->memory.addrs[static_cast<size_t>(device_index) * l.num_tensors + tensor_index];
    uint64_t token = e->next_token++;
    if (op.job == nullptr) op.deadline = deadline_after(e->options.sync_wait_ms, now_ns());
    auto abandoned = std::make_shared<bool>(false);
    op.run = [=](Operation &self) -> int32_t {
      uint64_t chunk = self.engine->traits.read_chunk;
      for (uint64_t done = 0; done < out_len;) {
        int32_t s = check(self, done, out_len);
        if (s != LLMDD_SUCCESS) return s;
        int32_t timeout = remaining_ms(self.deadline, now_ns(), INT32_MAX, -1);
        if (timeout == 0)
          return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "the deadline passed after %llu of %llu bytes were copied",
                      static_cast<unsigned long long>(done), static_cast<unsigned long long>(out_len));
        uint64_t n = out_len - done < chunk ? out_len - done : chunk;
        bool in_flight = false;
        s = self.engine->backend->read(device_index, l.placement, src + done, out + done, n, timeout, token,
                                       &in_flight);
        if (in_flight) *abandoned = true;
        if (s == LLMDD_WAIT_PROCESS_TIMEOUT)
          return fail(s, "the deadline passed while copying bytes %llu-%llu of %llu from the"
                      " device (%s)", static_cast<unsigned long long>(done),
                      static_cast<unsigned long long>(done + n), static_cast<unsigned long long>(out_len),
                      last_error().c_str());
        if (s != LLMDD_SUCCESS) return s;
        done += n;
      }
      return LLMDD_SUCCESS;
    };
    op.end = [=](Operation &self) {
      Engine *en = self.engine;
      if (!*abandoned) return unpin(en, cache);
      // The device may still read the cache: it stays pinned until the copy ends.
      if (en->drained_early.erase(token) != 0) return unpin(en, cache);
      en->in_flight[token] = {cache};
    };
    e->book.pin(cache);  // last: nothing after it can fail
    return LLMDD_SUCCESS;
  });
}

namespace {

// The run and end of a copy between two pinned caches (llmdd_cache_copy,
// llmdd_cache_copy_blocks): the backend's copy of plan, within the deadline;
// caches whose device work is abandoned stay pinned until it drains.
int32_t copy_between(Operation &op, CacheRecord *dst, CacheRecord *src, const CopyPlan &plan, uint64_t total) {
  Engine *e = op.engine;
  uint64_t token = e->next_token++;
  // As a read: job 0 is bounded by llm.SyncKvCacheWaitTime, never unbounded.
  if (op.job == nullptr) op.deadline = deadline_after(e->options.sync_wait_ms, now_ns());
  auto abandoned = std::make_shared<bool>(false);
  op.run = [=](Operation &self) -> int32_t {
    int32_t s = check(self, 0, total);
    if (s != LLMDD_SUCCESS || (plan.nothing && plan.blocks.empty())) return s;
    int32_t timeout = remaining_ms(self.deadline, now_ns(), INT32_MAX, -1);
    if (timeout == 0) return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "the deadline passed before the copy started");
    bool in_flight = false;
    s = self.engine->backend->copy(dst->layout, dst->memory, src->layout, src->memory, plan, timeout, token,
                                   &in_flight);
    if (in_flight) *abandoned = true;
    if (s == LLMDD_WAIT_PROCESS_TIMEOUT)
      return fail(s, "the deadline passed while copying %llu bytes on the device (%s)",
                  static_cast<unsigned long long>(total), last_error().c_str());
    return s;
  };
  op.end = [=](Operation &self) {
    Engine *en = self.engine;
    // The device may still copy between the caches: both stay pinned until it ends.
    if (*abandoned && en->drained_early.erase(token) == 0) {
      en->in_flight[token] = {dst, src};
      return;
    }
    unpin(en, dst);
    unpin(en, src);
  };
  e->book.pin(dst);
  e->book.pin(src);
  return LLMDD_SUCCESS;
}

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_copy(uint64_t engine, uint64_t dst_cache_id,
                                              uint64_t src_cache_id, uint64_t dst_offset,
                                              uint64_t src_offset, uint64_t nbytes, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    CacheRecord *dst = nullptr, *src = nullptr;
    int32_t status = find_cache(e, dst_cache_id, "destination ", &dst);
    if (status == LLMDD_SUCCESS) status = find_cache(e, src_cache_id, "source ", &src);
    if (status != LLMDD_SUCCESS) return status;
    CopyPlan plan;
    status = plan_copy(dst->layout, src->layout, dst == src, dst_offset, src_offset, nbytes, &plan);
    if (status != LLMDD_SUCCESS) return status;
    uint64_t total = nbytes * static_cast<uint64_t>(src->layout.num_tensors) *
                     static_cast<uint64_t>(e->num_devices());
    return copy_between(op, dst, src, plan, total);
  });
}

extern "C" LLMDD_API int32_t llmdd_cache_copy_blocks(uint64_t engine, uint64_t dst_cache_id,
                                                     uint64_t src_cache_id, const uint64_t *pairs,
                                                     int32_t num_pairs, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    CacheRecord *dst = nullptr, *src = nullptr;
    int32_t status = find_cache(e, dst_cache_id, "destination ", &dst);
    if (status == LLMDD_SUCCESS) status = find_cache(e, src_cache_id, "source ", &src);
    if (status != LLMDD_SUCCESS) return status;
    core_block_cache d{dst_cache_id, dst->layout.num_tensors, dst->layout.batch_size, dst->layout.row_bytes()};
    core_block_cache s{src_cache_id, src->layout.num_tensors, src->layout.batch_size, src->layout.row_bytes()};
    status = core_blocks_check(&d, &s, pairs, num_pairs);
    if (status != LLMDD_SUCCESS) return status;
    // V1's CopyKvCache copies rows at one offset: blocks between caches are V2's
    // ACL copies (upstream's CopyKvBlocks answers FEATURE_NOT_ENABLED there too).
    if (e->traits.flavor == Flavor::kV1)
      return fail(LLMDD_FEATURE_NOT_ENABLED, "block copies need the V2 API (ACL copies between registered caches)");
    CopyPlan plan;
    plan.block_bytes = s.block_bytes;
    plan.same_cache = dst == src;
    for (int32_t i = 0; i < num_pairs; i++) plan.blocks.emplace_back(pairs[2 * i], pairs[2 * i + 1]);
    uint64_t total = core_blocks_total(e->num_devices(), s.num_tensors, s.block_bytes, pairs, num_pairs,
                                       plan.same_cache);
    if (total == 0) plan.nothing = true, plan.blocks.clear();
    return copy_between(op, dst, src, plan, total);
  });
}

extern "C" LLMDD_API int32_t llmdd_link(uint64_t engine, uint64_t remote_cluster_id,
                                        const uint8_t *remote_addr, int32_t addr_len, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    if (e->role == LLMDD_ROLE_PROMPT)
      return fail(LLMDD_PARAM_INVALID, "a PROMPT engine does not link: DECODER and MIX engines do");
    int32_t status = check_link_options(e->options, e->traits.flavor);
    if (status != LLMDD_SUCCESS) return status;
    std::vector<IpPort> remote;
    status = parse_link_address(remote_addr, addr_len, e->num_devices(), e->traits.flavor, &remote);
    if (status != LLMDD_SUCCESS) return status;
    ClusterAddress address{remote_cluster_id, remote, e->options.local};
    op.run = [=](Operation &self) -> int32_t {
      int32_t s = check(self, 0, 0);
      if (s != LLMDD_SUCCESS) return s;
      int32_t timeout = remaining_ms(self.deadline, now_ns(), INT32_MAX, kNoDeadlineLinkMs);
      if (timeout == 0) return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "the job's deadline passed before linking");
      return self.engine->backend->link(address, timeout);
    };
    op.end = [=](Operation &self) {
      self.engine->links.settle(remote_cluster_id, self.status == LLMDD_SUCCESS);
    };
    return e->links.reserve(remote_cluster_id, remote);  // last: end() settles it
  });
}

extern "C" LLMDD_API int32_t llmdd_unlink(uint64_t engine, uint64_t remote_cluster_id, int32_t force,
                                          uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    Link *link = e->links.find(remote_cluster_id);
    if (link == nullptr)
      return fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu", static_cast<unsigned long long>(remote_cluster_id));
    ClusterAddress address{remote_cluster_id, link->remote, e->options.local};
    op.run = [=](Operation &self) -> int32_t {
      int32_t timeout = remaining_ms(self.deadline, now_ns(), INT32_MAX, kNoDeadlineLinkMs);
      // Past the deadline the peer is still told, as briefly as upstream allows.
      return self.engine->backend->unlink(address, timeout > 0 ? timeout : 1, force != 0);
    };
    op.end = [](Operation &) {};
    // Dropped from the books now: whatever upstream answers, the link is gone.
    Link taken;
    return e->links.take(remote_cluster_id, &taken);
  });
}

extern "C" LLMDD_API int32_t llmdd_cache_pull(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                              uint64_t k0, uint64_t k1, uint64_t k2,
                                              int32_t dst_batch_index, uint64_t size, uint64_t job) {
  return operation(engine, job, [&](Operation &op) -> int32_t {
    Engine *e = op.engine;
    if (e->role == LLMDD_ROLE_PROMPT)
      return fail(LLMDD_PARAM_INVALID, "a PROMPT engine does not pull: DECODER and MIX engines do");
    int32_t status = check_pull_key(key_kind, k0, k1, k2);
    if (status != LLMDD_SUCCESS) return status;
    CacheRecord *dst = nullptr;
    status = find_cache(e, cache_id, "", &dst);
    if (status != LLMDD_SUCCESS) return status;
    PullPlan plan;
    status = plan_pull(key_kind, k0, k1, k2, dst_batch_index, size, dst->layout, &plan);
    if (status != LLMDD_SUCCESS) return status;
    const Link *link = e->links.find(k0);
    if (link == nullptr)
      return fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu", static_cast<unsigned long long>(k0));
    if (e->traits.flavor == Flavor::kV2 && dst->link_epoch >= link->epoch)
      return fail(LLMDD_PARAM_INVALID,
                  "cache %llu was allocated after the link to cluster %llu was made: upstream"
                  " makes only memory registered before LinkLlmClusters remotely accessible;"
                  " allocate the caches a pull fills before linkClusters",
                  static_cast<unsigned long long>(cache_id), static_cast<unsigned long long>(k0));
    op.run = [=](Operation &self) -> int32_t {
      int32_t s = check(self, 0, 0);
      // A pull out of time is LLM_TIMEOUT, as upstream's PullKvCache reports it.
      if (s == LLMDD_WAIT_PROCESS_TIMEOUT)
        return fail(kLlmTimeout, "the deadline passed before the pull started");
      if (s != LLMDD_SUCCESS) return s;
      return self.engine->backend->pull(plan, dst->layout, dst->memory);
    };
    op.end = [=](Operation &self) { unpin(self.engine, dst); };
    e->book.pin(dst);
    return LLMDD_SUCCESS;
  });
}
