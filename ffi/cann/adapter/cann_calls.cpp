// The thin layer: the only file that includes CANN headers and calls
// llm_datadist::LlmDataDist and aclrt*. Everything it is asked to do has been
// validated by the adapter's logic; it translates arguments, makes the calls and
// turns their results into statuses with messages.
//
// Built against a real toolkit by `make lib`; compiled (never linked, never
// shipped) against the hand-written declarations in ../decls by `make check`.
// It has not been run against a real toolkit or NPU: see ../README.md.
//
// LLMDD_CANN_FLAVOR selects the upstream API (set by the build from the
// libraries found): 1 = V1, libllm_engine.so, AllocateCache/DeallocateCache,
// CopyKvCache; 2 = V2, libllm_datadist.so, ACL memory + RegisterKvCache, and
// copies made here with ACL (V2's AllocateCache, DeallocateCache, CopyKvCache
// and CopyKvBlocks always answer LLM_FEATURE_NOT_ENABLED: hicann/hixl
// src/llm_datadist/api/llm_datadist_impl.cc, asserted by its test CacheNotSupported).
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "backend.hpp"
#include "error.hpp"
#include "llm_datadist/llm_datadist.h"
#include "llmdd.h"
#include "staging.hpp"
#include "status.hpp"

#ifndef LLMDD_CANN_FLAVOR
#define LLMDD_CANN_FLAVOR 2
#endif

// Engines one process may hold: 1, as upstream documents for LLM-DataDist on a
// device. upstream_check.sh also builds a library with 2, to run a PROMPT and a
// DECODER in one process over upstream's stand-in toolkit (upstream's own tests
// do: hicann/hixl tests/cpp/llm_datadist/test_llm_datadist_v2_api.cc).
#ifndef LLMDD_CANN_MAX_ENGINES
#define LLMDD_CANN_MAX_ENGINES 1
#endif

namespace llmdd {
namespace {

namespace up = ::llm_datadist;

constexpr Flavor kFlavor = LLMDD_CANN_FLAVOR == 1 ? Flavor::kV1 : Flavor::kV2;
constexpr uint64_t kReadChunk = LLMDD_COPY_CHUNK_BYTES;
constexpr uint64_t kAsyncAlign = 64;  // aclrtMemcpyAsync's address alignment

const char *acl_message() {
  const char *m = aclGetRecentErrMsg();
  return m != nullptr && *m != '\0' ? m : "no further detail from ACL";
}

int32_t acl_fail(aclError rc, const char *call) {
  return fail(from_acl(static_cast<int32_t>(rc)), "%s failed with ACL error %d: %s", call,
              static_cast<int>(rc), acl_message());
}

int32_t upstream_result(int32_t status, const char *call) {
  if (status == LLMDD_SUCCESS) return status;
  return fail(status, "%s failed with %s (0x%08x): %s", call, status_name(status),
              static_cast<unsigned>(status), acl_message());
}

class CannBackend final : public Backend {
 public:
  ~CannBackend() override {
    if (dd_ != nullptr) finalize();
  }

  int32_t initialize(int32_t role, uint64_t cluster_id, const EngineOptions &options) override {
    aclError rc = aclInit(nullptr);
    // Another component of the process (torch_npu, upstream itself) may have
    // initialised ACL already; ACL is left initialised at finalize for the same reason.
    if (rc != ACL_SUCCESS && static_cast<int32_t>(rc) != kAclRepeatInitialize)
      return acl_fail(rc, "aclInit");
    for (int32_t id : options.device_ids) {
      rc = aclrtSetDevice(id);
      aclrtContext context = nullptr;
      if (rc == ACL_SUCCESS) {
        device_ids_.push_back(id);
        rc = aclrtGetCurrentContext(&context);
      }
      if (rc != ACL_SUCCESS) {
        int32_t status = acl_fail(rc, "aclrtSetDevice");
        reset_devices();
        return status;
      }
      contexts_.push_back(context);
    }
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) {
      reset_devices();
      return status;
    }
    std::map<up::AscendString, up::AscendString> map;
    for (const auto &kv : upstream_options(options))
      map[up::AscendString(kv.first.c_str())] = up::AscendString(kv.second.c_str());
    std::unique_ptr<up::LlmDataDist> dd(new up::LlmDataDist(cluster_id, static_cast<up::LlmRole>(role)));
    {
      std::lock_guard<std::mutex> guard(upstream_);
      status = upstream_result(from_upstream(dd->Initialize(map)), "LlmDataDist::Initialize");
    }
    if (status != LLMDD_SUCCESS) {
      reset_devices();
      return status;
    }
    dd_ = std::move(dd);
    return LLMDD_SUCCESS;
  }

  void finalize() override {
    for (const StagingSlot &slot : staging_.take_all()) {
      (void)use_device(slot.device_index);
      (void)aclrtDestroyStream(slot.stream);
      (void)aclrtFreeHost(slot.buffer);
    }
    if (dd_ != nullptr) {
      (void)use_device(0);
      std::lock_guard<std::mutex> guard(upstream_);
      dd_->Finalize();
      dd_.reset();
    }
    reset_devices();
  }

  int32_t allocate(const CacheLayout &layout, CacheMemory *out) override {
    up::CacheDesc desc = describe(layout);
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    if (kFlavor == Flavor::kV1) {
      up::Cache cache{};
      {
        std::lock_guard<std::mutex> guard(upstream_);
        status = upstream_result(from_upstream(dd_->AllocateCache(desc, cache)), "LlmDataDist::AllocateCache");
      }
      if (status != LLMDD_SUCCESS) return status;
      out->id = cache.cache_id;
      out->addrs.assign(cache.tensor_addrs.begin(), cache.tensor_addrs.end());
      return LLMDD_SUCCESS;
    }
    // V2: one device (checked at init); device (or pinned host) memory from
    // ACL, registered.
    bool host = layout.placement == LLMDD_PLACEMENT_HOST;
    for (int32_t t = 0; t < layout.num_tensors; t++) {
      void *block = nullptr;
      aclError rc = host ? aclrtMallocHost(&block, static_cast<size_t>(layout.tensor_bytes))
                         : aclrtMalloc(&block, static_cast<size_t>(layout.tensor_bytes), ACL_MEM_MALLOC_HUGE_FIRST);
      if (rc != ACL_SUCCESS) {
        status = acl_fail(rc, host ? "aclrtMallocHost" : "aclrtMalloc");
        free_blocks(layout, out);
        return status;
      }
      out->blocks.push_back(block);
      out->addrs.push_back(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(block)));
    }
    int64_t cache_id = -1;
    up::RegisterCfg cfg{};
    {
      std::lock_guard<std::mutex> guard(upstream_);
      status = upstream_result(from_upstream(dd_->RegisterKvCache(desc, out->addrs, cfg, cache_id)),
                               "LlmDataDist::RegisterKvCache");
    }
    if (status != LLMDD_SUCCESS) {
      free_blocks(layout, out);
      return status;
    }
    out->id = cache_id;
    return LLMDD_SUCCESS;
  }

  int32_t release(const CacheLayout &layout, CacheMemory *memory) override {
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    if (kFlavor == Flavor::kV1)
      return upstream_result(from_upstream(dd_->DeallocateCache(memory->id)), "LlmDataDist::DeallocateCache");
    status = upstream_result(from_upstream(dd_->UnregisterKvCache(memory->id)), "LlmDataDist::UnregisterKvCache");
    // Memory upstream may still have registered is kept rather than freed.
    if (status == LLMDD_SUCCESS) free_blocks(layout, memory);
    return status;
  }

  int32_t register_memory(const CacheLayout &layout, const std::vector<uint64_t> &addrs,
                          CacheMemory *out) override {
    if (kFlavor == Flavor::kV1)
      return fail(LLMDD_FEATURE_NOT_ENABLED,
                  "registering caller-owned memory needs the V2 API (libllm_datadist.so: RegisterKvCache)");
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    up::CacheDesc desc = describe(layout);
    up::RegisterCfg cfg{};
    int64_t cache_id = -1;
    {
      std::lock_guard<std::mutex> guard(upstream_);
      status = upstream_result(from_upstream(dd_->RegisterKvCache(desc, addrs, cfg, cache_id)),
                               "LlmDataDist::RegisterKvCache");
    }
    if (status != LLMDD_SUCCESS) return status;
    out->id = cache_id;
    out->addrs = addrs;
    return LLMDD_SUCCESS;
  }

  int32_t set_role(int32_t role, const std::string &listen) override {
    if (kFlavor == Flavor::kV1)
      return fail(LLMDD_FEATURE_NOT_ENABLED, "switching roles needs the V2 API (libllm_datadist.so: SetRole)");
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::map<up::AscendString, up::AscendString> options;
    if (!listen.empty()) options[up::AscendString(up::OPTION_LISTEN_IP_INFO)] = up::AscendString(listen.c_str());
    std::lock_guard<std::mutex> guard(upstream_);
    return upstream_result(from_upstream(dd_->SetRole(static_cast<up::LlmRole>(role), options)),
                           "LlmDataDist::SetRole");
  }

  int32_t read(int32_t device_index, int32_t placement, uint64_t src, uint8_t *dst, uint64_t n,
               int32_t timeout_ms, uint64_t token, bool *in_flight) override {
    if (placement == LLMDD_PLACEMENT_HOST) {
      // Pinned host memory: no device work to wait for.
      std::memcpy(dst, reinterpret_cast<const void *>(static_cast<uintptr_t>(src)), static_cast<size_t>(n));
      return LLMDD_SUCCESS;
    }
    int32_t status = use_device(device_index);
    if (status != LLMDD_SUCCESS) return status;
    StagingSlot *slot = staging_.take(device_index);
    if (slot == nullptr) {
      status = make_slot(device_index, &slot);
      if (status != LLMDD_SUCCESS) return status;
    }
    aclError rc = aclrtMemcpyAsync(slot->buffer, static_cast<size_t>(slot->bytes),
                                   reinterpret_cast<const void *>(static_cast<uintptr_t>(src)),
                                   static_cast<size_t>(n), ACL_MEMCPY_DEVICE_TO_HOST, slot->stream);
    if (rc != ACL_SUCCESS) {
      staging_.give_back(slot);
      return acl_fail(rc, "aclrtMemcpyAsync (device to host)");
    }
    rc = aclrtSynchronizeStreamWithTimeout(slot->stream, timeout_ms);
    if (rc == ACL_SUCCESS) {
      std::memcpy(dst, slot->buffer, static_cast<size_t>(n));
      staging_.give_back(slot);
      return LLMDD_SUCCESS;
    }
    // The copy may still be running: the slot drains, the cache stays pinned.
    staging_.abandon(slot, token);
    *in_flight = true;
    return acl_fail(rc, "aclrtSynchronizeStreamWithTimeout");
  }

  void reclaim(bool wait, std::vector<uint64_t> *drained) override {
    staging_.reclaim(
        [&](const StagingSlot &slot) {
          if (use_device(slot.device_index) != LLMDD_SUCCESS) return wait;
          // Waiting, any answer ends the wait (an error leaves nothing running).
          if (wait) {
            (void)aclrtSynchronizeStreamWithTimeout(slot.stream, -1);
            return true;
          }
          // Polling: aclrtStreamQuery. (The runtime refuses
          // aclrtSynchronizeStreamWithTimeout(stream, 0) with
          // ACL_ERROR_RT_PARAM_INVALID — hicann/runtime api_c_stream.cc: "equal
          // to -1 or greater than 0" — although acl_rt.h documents 0 as a poll.)
          aclrtStreamStatus state = ACL_STREAM_STATUS_NOT_READY;
          aclError rc = aclrtStreamQuery(slot.stream, &state);
          return rc == ACL_SUCCESS && state == ACL_STREAM_STATUS_COMPLETE;
        },
        drained);
  }

  int32_t copy(const CacheLayout &dst_layout, const CacheMemory &dst, const CacheLayout &src_layout,
               const CacheMemory &src, const CopyPlan &plan, int32_t timeout_ms, uint64_t token,
               bool *in_flight) override {
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    if (kFlavor == Flavor::kV1) {
      up::Cache to = describe(dst_layout, dst), from = describe(src_layout, src);
      std::lock_guard<std::mutex> guard(upstream_);
      return upstream_result(from_upstream(dd_->CopyKvCache(from, to, plan.src_batch_index, plan.dst_batch_index,
                                                            plan.offset, plan.size)),
                             "LlmDataDist::CopyKvCache");
    }
    std::vector<RowCopy> copies = row_copies(dst_layout, dst.addrs, src_layout, src.addrs, plan);
    bool dst_host = dst_layout.placement == LLMDD_PLACEMENT_HOST;
    bool src_host = src_layout.placement == LLMDD_PLACEMENT_HOST;
    if (dst_host && src_host) {
      for (const RowCopy &c : copies)
        std::memmove(reinterpret_cast<void *>(static_cast<uintptr_t>(c.dst)),
                     reinterpret_cast<const void *>(static_cast<uintptr_t>(c.src)), static_cast<size_t>(c.bytes));
      return LLMDD_SUCCESS;
    }
    aclrtMemcpyKind kind = dst_host ? ACL_MEMCPY_DEVICE_TO_HOST
                           : src_host ? ACL_MEMCPY_HOST_TO_DEVICE
                                      : ACL_MEMCPY_DEVICE_TO_DEVICE;
    // The copies go on a staging slot's stream (its buffer is not used): one
    // wait for all of them, and the same draining when the wait gives up.
    StagingSlot *slot = staging_.take(0);
    if (slot == nullptr) {
      status = make_slot(0, &slot);
      if (status != LLMDD_SUCCESS) return status;
    }
    size_t queued = 0;
    for (const RowCopy &c : copies) {
      void *to = reinterpret_cast<void *>(static_cast<uintptr_t>(c.dst));
      const void *from = reinterpret_cast<const void *>(static_cast<uintptr_t>(c.src));
      size_t n = static_cast<size_t>(c.bytes);
      // Async copies want 64-byte aligned addresses (AscendCL reference); a row
      // range that is not is copied synchronously, as upstream's own CopyKvCache
      // does for copies under 2 MiB (hixl cache_manager.cc, CopyJob).
      bool aligned = c.dst % kAsyncAlign == 0 && c.src % kAsyncAlign == 0;
      aclError rc = aligned ? aclrtMemcpyAsync(to, n, from, n, kind, slot->stream) : aclrtMemcpy(to, n, from, n, kind);
      if (rc != ACL_SUCCESS) {
        status = acl_fail(rc, aligned ? "aclrtMemcpyAsync (cache row)" : "aclrtMemcpy (cache row)");
        break;
      }
      if (aligned) queued++;
    }
    if (queued == 0) {
      staging_.give_back(slot);
      return status;
    }
    aclError rc = aclrtSynchronizeStreamWithTimeout(slot->stream, timeout_ms);
    if (rc == ACL_SUCCESS) {
      staging_.give_back(slot);
      return status;
    }
    // Copies may still be running: the slot drains, both caches stay pinned.
    staging_.abandon(slot, token);
    *in_flight = true;
    int32_t waited = acl_fail(rc, "aclrtSynchronizeStreamWithTimeout (cache copy)");
    return status != LLMDD_SUCCESS ? status : waited;
  }

  int32_t link(const ClusterAddress &cluster, int32_t timeout_ms) override {
    std::vector<up::ClusterInfo> clusters{describe(cluster)};
    std::vector<up::Status> rets;
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    up::Status rc = dd_->LinkLlmClusters(clusters, rets, timeout_ms);
    return upstream_result(fold_cluster_status(rc, std::vector<uint32_t>(rets.begin(), rets.end())),
                           "LlmDataDist::LinkLlmClusters");
  }

  int32_t unlink(const ClusterAddress &cluster, int32_t timeout_ms, bool force) override {
    std::vector<up::ClusterInfo> clusters{describe(cluster)};
    std::vector<up::Status> rets;
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    up::Status rc = dd_->UnlinkLlmClusters(clusters, rets, timeout_ms, force);
    return upstream_result(fold_cluster_status(rc, std::vector<uint32_t>(rets.begin(), rets.end())),
                           "LlmDataDist::UnlinkLlmClusters");
  }

  int32_t pull(const PullPlan &plan, const CacheLayout &dst_layout, const CacheMemory &dst) override {
    up::CacheIndex index{};
    index.cluster_id = plan.cluster_id;
    index.cache_id = plan.cache_id;
    index.batch_index = plan.batch_index;
    up::Cache to = describe(dst_layout, dst);
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    return upstream_result(from_upstream(dd_->PullKvCache(index, to, plan.dst_batch_index, plan.size)),
                           "LlmDataDist::PullKvCache");
  }

  int32_t pull_blocks(const TransferPlan &plan, const CacheLayout &dst_layout, const CacheMemory &dst) override {
    up::Cache to = describe(dst_layout, dst);
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    return upstream_result(from_upstream(dd_->PullKvBlocks(index_of(plan), to, plan.src_blocks, plan.dst_blocks,
                                                           ext_param(plan.layers))),
                           "LlmDataDist::PullKvBlocks");
  }

  int32_t push(const TransferPlan &plan, const CacheLayout &src_layout, const CacheMemory &src) override {
    up::Cache from = describe(src_layout, src);
    int32_t status = use_device(0);
    if (status != LLMDD_SUCCESS) return status;
    std::lock_guard<std::mutex> guard(upstream_);
    if (plan.blocks)
      return upstream_result(from_upstream(dd_->PushKvBlocks(from, index_of(plan), plan.src_blocks, plan.dst_blocks,
                                                             ext_param(plan.layers))),
                             "LlmDataDist::PushKvBlocks");
    return upstream_result(from_upstream(dd_->PushKvCache(from, index_of(plan), plan.src_batch_index, -1,
                                                          ext_param(plan.layers))),
                           "LlmDataDist::PushKvCache");
  }

 private:
  // ACL calls act on the calling thread's current context; operations run on
  // whichever thread the runtime uses, so each call sets its device's context.
  int32_t use_device(int32_t index) {
    if (index < 0 || static_cast<size_t>(index) >= contexts_.size())
      return fail(LLMDD_FAILED, "device index %d has no ACL context", index);
    aclError rc = aclrtSetCurrentContext(contexts_[static_cast<size_t>(index)]);
    return rc == ACL_SUCCESS ? LLMDD_SUCCESS : acl_fail(rc, "aclrtSetCurrentContext");
  }

  void reset_devices() {
    for (int32_t id : device_ids_) (void)aclrtResetDevice(id);
    device_ids_.clear();
    contexts_.clear();
  }

  int32_t make_slot(int32_t device_index, StagingSlot **out) {
    StagingSlot fresh;
    fresh.device_index = device_index;
    fresh.bytes = kReadChunk;
    aclError rc = aclrtCreateStream(&fresh.stream);
    if (rc != ACL_SUCCESS) return acl_fail(rc, "aclrtCreateStream");
    // Pinned host memory: the target an async device-to-host copy needs.
    rc = aclrtMallocHost(&fresh.buffer, static_cast<size_t>(kReadChunk));
    if (rc != ACL_SUCCESS) {
      int32_t status = acl_fail(rc, "aclrtMallocHost");
      (void)aclrtDestroyStream(fresh.stream);
      return status;
    }
    *out = staging_.add(fresh);
    return LLMDD_SUCCESS;
  }

  static void free_blocks(const CacheLayout &layout, CacheMemory *memory) {
    for (void *block : memory->blocks)
      (void)(layout.placement == LLMDD_PLACEMENT_HOST ? aclrtFreeHost(block) : aclrtFree(block));
    memory->blocks.clear();
  }

  static up::CacheDesc describe(const CacheLayout &layout) {
    up::CacheDesc desc{};
    desc.placement = layout.placement == LLMDD_PLACEMENT_HOST ? up::CachePlacement::kHost
                                                               : up::CachePlacement::kDevice;
    desc.num_tensors = static_cast<uint32_t>(layout.num_tensors);
    desc.data_type = up::DT_UINT8;
    desc.shape = upstream_shape(layout);
    return desc;
  }

  static up::Cache describe(const CacheLayout &layout, const CacheMemory &memory) {
    up::Cache cache{};
    cache.cache_id = memory.id;
    cache.tensor_addrs.assign(memory.addrs.begin(), memory.addrs.end());
    cache.cache_desc = describe(layout);
    return cache;
  }

  static up::CacheIndex index_of(const TransferPlan &plan) {
    up::CacheIndex index{};
    index.cluster_id = plan.cluster_id;
    index.cache_id = plan.cache_id;
    index.batch_index = plan.batch_index;
    return index;
  }

  static up::KvCacheExtParam ext_param(const LayerRanges &layers) {
    up::KvCacheExtParam param{};
    param.src_layer_range = layers.src;
    param.dst_layer_range = layers.dst;
    param.tensor_num_per_layer = static_cast<uint8_t>(layers.tensors_per_layer);
    return param;
  }

  static up::ClusterInfo describe(const ClusterAddress &address) {
    up::ClusterInfo info{};
    info.remote_cluster_id = address.cluster_id;
    info.remote_role_type = 0;  // the peer serves pulls: upstream's "full" (prompt) role
    for (const IpPort &entry : address.local) info.local_ip_infos.push_back(ip_info(entry));
    for (const IpPort &entry : address.remote) info.remote_ip_infos.push_back(ip_info(entry));
    return info;
  }

  static up::IpInfo ip_info(const IpPort &entry) {
    up::IpInfo info{};
    info.ip = up::AscendString(entry.ip.c_str());
    info.port = entry.port;
    return info;
  }

  std::mutex upstream_;  // LlmDataDist calls, one at a time
  std::unique_ptr<up::LlmDataDist> dd_;
  std::vector<int32_t> device_ids_;
  std::vector<aclrtContext> contexts_;
  StagingPool staging_;
};

}  // namespace

BackendTraits backend_traits() {
  BackendTraits traits;
  traits.flavor = kFlavor;
  traits.max_engines = LLMDD_CANN_MAX_ENGINES;
  traits.read_chunk = kReadChunk;
  return traits;
}

std::unique_ptr<Backend> make_backend() { return std::unique_ptr<Backend>(new CannBackend()); }

}  // namespace llmdd
