#include "fake_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <new>
#include <thread>

#include "error.hpp"
#include "llmdd.h"

namespace fake {

Knobs &knobs() {
  static Knobs k;
  return k;
}
Record &record() {
  static Record r;
  return r;
}

void reset() {
  Knobs &k = knobs();
  k.flavor = llmdd::Flavor::kV2;
  k.max_engines = 1;
  k.read_chunk = 4096;
  k.init_status = 0;
  k.allocate_status = 0;
  k.forced_id = 0;
  k.allocate_throws = false;
  k.reads_time_out = false;
  k.streams_idle = true;
  k.read_delay_ms = 0;
  k.pull_delay_ms = 0;
  k.copies_time_out = false;
  k.link_anything = false;
  k.transfer_status = 0;
  k.hold_transfers = false;
  Record &r = record();
  r.init_options.clear();
  r.init_role = 0;
  r.init_cluster = 0;
  r.reads = 0;
  r.last_read_timeout = 0;
  r.copies = 0;
  r.last_copy = llmdd::CopyPlan();
  r.last_copy_timeout = 0;
  r.last_read_placement = -1;
  r.last_allocate_placement = -1;
  r.registrations = 0;
  r.last_role = 0;
  r.last_role_listen.clear();
  r.pulls = 0;
  r.last_pull = llmdd::PullPlan();
  r.transfers = 0;
  r.last_transfer_call.clear();
  r.last_transfer = llmdd::TransferPlan();
  r.last_link_timeout = 0;
  r.last_unlink_force = false;
  r.finalized = 0;
}

namespace {

using namespace llmdd;

class FakeBackend;

// The "network": live fake engines by cluster id.
std::mutex world_lock;
std::map<uint64_t, FakeBackend *> &world() {
  static std::map<uint64_t, FakeBackend *> w;
  return w;
}

class FakeBackend final : public Backend {
 public:
  ~FakeBackend() override { unregister(); }

  int32_t initialize(int32_t role, uint64_t cluster_id, const EngineOptions &options) override {
    record().init_options = upstream_options(options);
    record().init_role = role;
    record().init_cluster = cluster_id;
    if (knobs().init_status != 0) return fail(knobs().init_status, "fake: Initialize refused");
    cluster_ = cluster_id;
    listen_ = options.listen;
    std::lock_guard<std::mutex> guard(world_lock);
    world()[cluster_] = this;
    return LLMDD_SUCCESS;
  }

  void finalize() override {
    unregister();
    record().finalized++;
  }

  int32_t allocate(const CacheLayout &layout, CacheMemory *out) override {
    if (knobs().allocate_throws) throw std::bad_alloc();
    if (knobs().allocate_status != 0) return fail(knobs().allocate_status, "fake: allocation refused");
    record().last_allocate_placement = layout.placement;
    uint64_t stride = (layout.tensor_bytes + 63) / 64 * 64;
    for (int32_t d = 0; d < layout.num_devices; d++)
      for (int32_t t = 0; t < layout.num_tensors; t++) {
        void *block = std::aligned_alloc(64, static_cast<size_t>(stride));
        std::memset(block, 0, static_cast<size_t>(stride));
        out->blocks.push_back(block);
        out->addrs.push_back(reinterpret_cast<uintptr_t>(block));
      }
    std::lock_guard<std::mutex> guard(lock_);
    out->id = knobs().forced_id != 0 ? knobs().forced_id : next_id_++;
    knobs().forced_id = 0;
    caches_[out->id] = Entry{layout, out->addrs};
    record().live_caches++;
    return LLMDD_SUCCESS;
  }

  int32_t release(const CacheLayout &, CacheMemory *memory) override {
    {
      std::lock_guard<std::mutex> guard(lock_);
      auto it = caches_.find(memory->id);
      if (it != caches_.end() && it->second.addrs == memory->addrs) caches_.erase(it);
    }
    for (void *block : memory->blocks) std::free(block);
    memory->blocks.clear();
    record().live_caches--;
    return LLMDD_SUCCESS;
  }

  int32_t register_memory(const CacheLayout &layout, const std::vector<uint64_t> &addrs,
                          CacheMemory *out) override {
    if (knobs().flavor == llmdd::Flavor::kV1) return fail(LLMDD_FEATURE_NOT_ENABLED, "fake: V1 registers nothing");
    if (knobs().allocate_status != 0) return fail(knobs().allocate_status, "fake: registration refused");
    std::lock_guard<std::mutex> guard(lock_);
    out->id = next_id_++;
    out->addrs = addrs;
    caches_[out->id] = Entry{layout, out->addrs};
    record().registrations++;
    record().live_caches++;
    return LLMDD_SUCCESS;
  }

  int32_t set_role(int32_t role, const std::string &listen) override {
    if (knobs().flavor == llmdd::Flavor::kV1) return fail(LLMDD_FEATURE_NOT_ENABLED, "fake: V1 has no SetRole");
    record().last_role = role;
    record().last_role_listen = listen;
    return LLMDD_SUCCESS;
  }

  int32_t read(int32_t, int32_t placement, uint64_t src, uint8_t *dst, uint64_t n, int32_t timeout_ms,
               uint64_t token, bool *in_flight) override {
    record().reads++;
    record().last_read_placement = placement;
    record().last_read_timeout = timeout_ms;
    int delay = knobs().read_delay_ms;
    if (knobs().reads_time_out || (timeout_ms >= 0 && delay > timeout_ms)) {
      if (!knobs().reads_time_out) std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms));
      std::lock_guard<std::mutex> guard(lock_);
      draining_.push_back(token);
      *in_flight = true;
      return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "fake: stream sync timed out");
    }
    if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    std::memcpy(dst, reinterpret_cast<const void *>(static_cast<uintptr_t>(src)), static_cast<size_t>(n));
    return LLMDD_SUCCESS;
  }

  void reclaim(bool wait, std::vector<uint64_t> *drained) override {
    std::lock_guard<std::mutex> guard(lock_);
    if (!wait && !knobs().streams_idle) return;
    drained->insert(drained->end(), draining_.begin(), draining_.end());
    draining_.clear();
  }

  int32_t copy(const CacheLayout &dst_layout, const CacheMemory &dst, const CacheLayout &src_layout,
               const CacheMemory &src, const CopyPlan &plan, int32_t timeout_ms, uint64_t token,
               bool *in_flight) override {
    record().copies++;
    record().last_copy = plan;
    record().last_copy_timeout = timeout_ms;
    if (knobs().copies_time_out) {
      std::lock_guard<std::mutex> guard(lock_);
      draining_.push_back(token);
      *in_flight = true;
      return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "fake: stream sync timed out");
    }
    // What the CANN V2 thin layer does with ACL copies, on host memory.
    for (const RowCopy &c : row_copies(dst_layout, dst.addrs, src_layout, src.addrs, plan))
      std::memmove(reinterpret_cast<void *>(static_cast<uintptr_t>(c.dst)),
                   reinterpret_cast<const void *>(static_cast<uintptr_t>(c.src)), static_cast<size_t>(c.bytes));
    return LLMDD_SUCCESS;
  }

  int32_t link(const ClusterAddress &cluster, int32_t timeout_ms) override {
    record().last_link_timeout = timeout_ms;
    std::lock_guard<std::mutex> guard(world_lock);
    if (knobs().link_anything) {
      linked_.insert(cluster.cluster_id);
      return LLMDD_SUCCESS;
    }
    auto it = world().find(cluster.cluster_id);
    if (it == world().end() || it->second->listen_.empty() || it->second->listen_[0].ip != cluster.remote[0].ip ||
        it->second->listen_[0].port != cluster.remote[0].port)
      return fail(LLMDD_LINK_FAILED, "fake: nobody of cluster %llu listens there",
                  static_cast<unsigned long long>(cluster.cluster_id));
    // Both ends know the link (upstream: an entity on each side).
    linked_.insert(cluster.cluster_id);
    it->second->linked_.insert(cluster_);
    return LLMDD_SUCCESS;
  }

  int32_t unlink(const ClusterAddress &cluster, int32_t, bool force) override {
    record().last_unlink_force = force;
    std::lock_guard<std::mutex> guard(world_lock);
    linked_.erase(cluster.cluster_id);
    auto it = world().find(cluster.cluster_id);
    if (it != world().end()) it->second->linked_.erase(cluster_);
    return LLMDD_SUCCESS;
  }

  int32_t pull(const PullPlan &plan, const CacheLayout &dst_layout, const CacheMemory &dst) override {
    record().pulls++;
    record().last_pull = plan;
    int delay = knobs().pull_delay_ms;
    if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    std::lock_guard<std::mutex> guard(world_lock);
    auto it = world().find(plan.cluster_id);
    if (it == world().end()) return fail(LLMDD_LINK_FAILED, "fake: the peer is gone");
    FakeBackend *peer = it->second;
    std::lock_guard<std::mutex> peer_guard(peer->lock_);
    auto cache = peer->caches_.find(plan.cache_id);
    if (cache == peer->caches_.end()) return fail(LLMDD_KV_CACHE_NOT_EXIST, "fake: no such cache at the peer");
    const CacheLayout &src_layout = cache->second.layout;
    if (plan.batch_index >= src_layout.batch_size || src_layout.row_bytes() != dst_layout.row_bytes() ||
        src_layout.num_tensors != dst_layout.num_tensors)
      return fail(LLMDD_PARAM_INVALID, "fake: the caches do not match");
    uint64_t size = plan.size < 0 ? src_layout.row_bytes() : static_cast<uint64_t>(plan.size);
    copy_rows(dst_layout, dst.addrs, plan.dst_batch_index, src_layout, cache->second.addrs, plan.batch_index, 0,
              size);
    return LLMDD_SUCCESS;
  }

  // Upstream's PullKvBlocks on host memory, with its checks (hicann/hixl
  // llm_datadist_impl.cc, llm_datadist_v2.cc, data_cache_engine.cc,
  // d2d_data_transfer_job.cc): blocks of the destination's block size counted
  // from the start of the source tensor.
  int32_t pull_blocks(const TransferPlan &plan, const CacheLayout &dst_layout, const CacheMemory &dst) override {
    record().transfers++;
    record().last_transfer_call = "PullKvBlocks";
    record().last_transfer = plan;
    hold();
    if (knobs().transfer_status != 0) return fail(knobs().transfer_status, "fake: PullKvBlocks refused");
    if (plan.batch_index != 0) return fail(LLMDD_PARAM_INVALID, "fake: only batch_index 0 in pull block");
    int32_t status = check_ext(plan.layers, false);
    if (status != LLMDD_SUCCESS) return status;
    if (plan.src_blocks.empty() || plan.src_blocks.size() != plan.dst_blocks.size())
      return fail(LLMDD_PARAM_INVALID, "fake: src_blocks empty or of another length than dst_blocks");
    std::lock_guard<std::mutex> guard(world_lock);
    auto it = world().find(plan.cluster_id);
    if (it == world().end()) return fail(LLMDD_LINK_FAILED, "fake: the peer is gone");
    std::lock_guard<std::mutex> peer_guard(it->second->lock_);
    auto cache = it->second->caches_.find(plan.cache_id);
    if (cache == it->second->caches_.end()) return fail(LLMDD_KV_CACHE_NOT_EXIST, "fake: no such cache at the peer");
    const CacheLayout &sl = cache->second.layout;
    uint64_t block = dst_layout.row_bytes();
    uint64_t src_blocks = (sl.tensor_bytes + block - 1) / block;
    for (size_t i = 0; i < plan.src_blocks.size(); i++)
      if (plan.src_blocks[i] >= src_blocks || plan.dst_blocks[i] >= dst_layout.batch_size)
        return fail(LLMDD_PARAM_INVALID, "fake: block index out of range");
    int32_t s0 = 0, d0 = 0, n = dst_layout.num_tensors;
    if (plan.layers.src.first >= 0 && plan.layers.dst.first >= 0) {
      int32_t tpl = static_cast<int32_t>(plan.layers.tensors_per_layer);
      s0 = plan.layers.src.first * tpl;
      d0 = plan.layers.dst.first * tpl;
      n = (plan.layers.src.second - plan.layers.src.first + 1) * tpl;
      if (n != (plan.layers.dst.second - plan.layers.dst.first + 1) * tpl || d0 + n > dst_layout.num_tensors)
        return fail(LLMDD_PARAM_INVALID, "fake: tensor indices do not match or are out of range");
      // (Upstream does not check the source's range; the fake refuses rather than read past its table.)
      if (s0 + n > sl.num_tensors) return fail(LLMDD_PARAM_INVALID, "fake: source tensors out of range");
    } else if (sl.num_tensors != dst_layout.num_tensors) {
      return fail(LLMDD_PARAM_INVALID, "fake: src addr count does not match dst_addr_count");
    }
    for (int32_t t = 0; t < n; t++)
      for (size_t i = 0; i < plan.src_blocks.size(); i++)
        std::memmove(at(dst.addrs[static_cast<size_t>(d0 + t)], plan.dst_blocks[i] * block),
                     at(cache->second.addrs[static_cast<size_t>(s0 + t)], plan.src_blocks[i] * block),
                     static_cast<size_t>(std::min(block, sl.tensor_bytes - plan.src_blocks[i] * block)));
    return LLMDD_SUCCESS;
  }

  // Upstream's PushKvCache / PushKvBlocks: one transfer per layer (PushData),
  // each finding the peer's cache by id and checking it.
  int32_t push(const TransferPlan &plan, const CacheLayout &src_layout, const CacheMemory &src) override {
    record().transfers++;
    record().last_transfer_call = plan.blocks ? "PushKvBlocks" : "PushKvCache";
    record().last_transfer = plan;
    hold();
    if (knobs().transfer_status != 0) return fail(knobs().transfer_status, "fake: push refused");
    if (src_layout.placement != LLMDD_PLACEMENT_DEVICE)
      return fail(LLMDD_PARAM_INVALID, "fake: Only support push to device cache");
    if (plan.blocks && (plan.src_blocks.empty() || plan.src_blocks.size() != plan.dst_blocks.size() ||
                        plan.batch_index != 0))
      return fail(LLMDD_PARAM_INVALID, "fake: bad block lists or batch_index");
    int32_t status = check_ext(plan.layers, true);
    if (status != LLMDD_SUCCESS) return status;
    int32_t tpl = static_cast<int32_t>(plan.layers.tensors_per_layer);
    int32_t first = plan.layers.src.first, last = plan.layers.src.second, dst_layer = plan.layers.dst.first;
    if (first < 0) {
      first = 0, dst_layer = 0;
      last = src_layout.num_tensors >= tpl ? (src_layout.num_tensors + tpl - 1) / tpl - 1 : 0;
    }
    std::lock_guard<std::mutex> guard(world_lock);
    if (linked_.count(plan.cluster_id) == 0)
      return fail(LLMDD_NOT_YET_LINK, "fake: not linked with cluster %llu",
                  static_cast<unsigned long long>(plan.cluster_id));
    auto it = world().find(plan.cluster_id);
    if (it == world().end()) return fail(LLMDD_LINK_FAILED, "fake: the peer is gone");
    std::lock_guard<std::mutex> peer_guard(it->second->lock_);
    for (int32_t layer = first; layer <= last; layer++, dst_layer++) {
      auto cache = it->second->caches_.find(plan.cache_id);
      if (cache == it->second->caches_.end())
        return fail(LLMDD_KV_CACHE_NOT_EXIST, "fake: no such cache at the peer");
      const CacheLayout &dl = cache->second.layout;
      if (src_layout.num_tensors % tpl != 0 || (layer + 1) * tpl > src_layout.num_tensors ||
          dst_layer >= dl.num_tensors / tpl)
        return fail(LLMDD_PARAM_INVALID, "fake: layer index out of range");
      uint64_t row = src_layout.row_bytes();
      if (row != dl.row_bytes()) return fail(LLMDD_PARAM_INVALID, "fake: block or row sizes differ");
      for (int32_t t = 0; t < tpl; t++) {
        uint64_t from = src.addrs[static_cast<size_t>(layer * tpl + t)];
        uint64_t to = cache->second.addrs[static_cast<size_t>(dst_layer * tpl + t)];
        if (!plan.blocks) {
          if (plan.batch_index >= dl.batch_size || plan.src_batch_index >= src_layout.batch_size)
            return fail(LLMDD_PARAM_INVALID, "fake: batch index out of range");
          std::memmove(at(to, plan.batch_index * row), at(from, plan.src_batch_index * row),
                       static_cast<size_t>(row));
          continue;
        }
        for (size_t i = 0; i < plan.src_blocks.size(); i++) {
          if (plan.dst_blocks[i] >= dl.batch_size || plan.src_blocks[i] >= src_layout.batch_size)
            return fail(LLMDD_PARAM_INVALID, "fake: block index out of range");
          std::memmove(at(to, plan.dst_blocks[i] * row), at(from, plan.src_blocks[i] * row),
                       static_cast<size_t>(row));
        }
      }
    }
    return LLMDD_SUCCESS;
  }

 private:
  struct Entry {
    CacheLayout layout;
    std::vector<uint64_t> addrs;
  };

  static void copy_rows(const CacheLayout &dl, const std::vector<uint64_t> &da, uint64_t drow,
                        const CacheLayout &sl, const std::vector<uint64_t> &sa, uint64_t srow, uint64_t offset,
                        uint64_t size) {
    for (size_t i = 0; i < da.size() && i < sa.size(); i++) {
      auto *to = reinterpret_cast<uint8_t *>(static_cast<uintptr_t>(da[i])) + drow * dl.row_bytes() + offset;
      auto *from = reinterpret_cast<const uint8_t *>(static_cast<uintptr_t>(sa[i])) + srow * sl.row_bytes() + offset;
      std::memmove(to, from, static_cast<size_t>(size));
    }
  }

  static void hold() {
    while (knobs().hold_transfers) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  static uint8_t *at(uint64_t addr, uint64_t offset) {
    return reinterpret_cast<uint8_t *>(static_cast<uintptr_t>(addr)) + offset;
  }

  // Upstream's CheckKvCacheExtParam (llm_datadist_impl.cc).
  static int32_t check_ext(const LayerRanges &r, bool same_size) {
    auto bad = [](const std::pair<int32_t, int32_t> &p) { return p.first < -1 || p.second < -1 || p.first > p.second; };
    if (bad(r.src) || bad(r.dst) || r.tensors_per_layer == 0 || r.tensors_per_layer > 255)
      return fail(LLMDD_PARAM_INVALID, "fake: invalid layer range or tensor_num_per_layer");
    if (same_size && r.src.second - r.src.first != r.dst.second - r.dst.first)
      return fail(LLMDD_PARAM_INVALID, "fake: src_layer_range should keep the same size as dst_layer_range");
    return LLMDD_SUCCESS;
  }

  void unregister() {
    std::lock_guard<std::mutex> guard(world_lock);
    auto it = world().find(cluster_);
    if (it != world().end() && it->second == this) world().erase(it);
  }

  std::mutex lock_;
  uint64_t cluster_ = 0;
  std::set<uint64_t> linked_;  // clusters linked either way (under world_lock)
  std::vector<IpPort> listen_;
  int64_t next_id_ = 1;
  std::map<int64_t, Entry> caches_;
  std::vector<uint64_t> draining_;
};

}  // namespace
}  // namespace fake

namespace llmdd {

BackendTraits backend_traits() {
  BackendTraits traits;
  traits.flavor = fake::knobs().flavor;
  traits.max_engines = fake::knobs().max_engines;
  traits.read_chunk = fake::knobs().read_chunk;
  return traits;
}

std::unique_ptr<Backend> make_backend() { return std::unique_ptr<Backend>(new fake::FakeBackend()); }

}  // namespace llmdd
