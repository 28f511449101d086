#include "fake_backend.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
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
    if (knobs().link_anything) return LLMDD_SUCCESS;
    std::lock_guard<std::mutex> guard(world_lock);
    auto it = world().find(cluster.cluster_id);
    if (it == world().end() || it->second->listen_.empty() || it->second->listen_[0].ip != cluster.remote[0].ip ||
        it->second->listen_[0].port != cluster.remote[0].port)
      return fail(LLMDD_LINK_FAILED, "fake: nobody of cluster %llu listens there",
                  static_cast<unsigned long long>(cluster.cluster_id));
    return LLMDD_SUCCESS;
  }

  int32_t unlink(const ClusterAddress &, int32_t, bool force) override {
    record().last_unlink_force = force;
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

  void unregister() {
    std::lock_guard<std::mutex> guard(world_lock);
    auto it = world().find(cluster_);
    if (it != world().end() && it->second == this) world().erase(it);
  }

  std::mutex lock_;
  uint64_t cluster_ = 0;
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
