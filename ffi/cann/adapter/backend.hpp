// The seam between the adapter's logic (everything in adapter/ but
// cann_calls.cpp, unit-tested with a fake) and the calls into CANN
// (cann_calls.cpp: llm_datadist::LlmDataDist and aclrt*). The logic validates,
// keeps the books and owns deadlines; a Backend only makes calls.
//
// A Backend's methods set the thread's last error (fail()) when they return a
// failure. They are called without the engine's lock, possibly from several
// threads at once; the CANN backend serialises its LlmDataDist calls itself.
#ifndef LLMDD_CANN_BACKEND_HPP
#define LLMDD_CANN_BACKEND_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "book.hpp"
#include "options.hpp"
#include "translate.hpp"

namespace llmdd {

struct ClusterAddress {
  uint64_t cluster_id = 0;
  std::vector<IpPort> remote;
  std::vector<IpPort> local;  // llmdd.cann.localIpInfo, may be empty
};

class Backend {
 public:
  virtual ~Backend() = default;

  // LlmDataDist(cluster_id, role) + Initialize(upstream_options(options)), after
  // ACL is set up for the configured devices.
  virtual int32_t initialize(int32_t role, uint64_t cluster_id, const EngineOptions &options) = 0;
  // Waits for the device work it started, then Finalize(). Caches are released
  // (release()) before this is called.
  virtual void finalize() = 0;

  // A cache on every device: V1 AllocateCache; V2 aclrtMalloc (DEVICE) or
  // aclrtMallocHost (HOST) + RegisterKvCache.
  virtual int32_t allocate(const CacheLayout &layout, CacheMemory *out) = 0;
  // V1 DeallocateCache; V2 UnregisterKvCache + aclrtFree / aclrtFreeHost (a
  // registered cache has no blocks: only UnregisterKvCache).
  virtual int32_t release(const CacheLayout &layout, CacheMemory *memory) = 0;
  // Memory the caller owns (one device): V2 RegisterKvCache of addrs, nothing
  // allocated (out->blocks stays empty); V1 has no such call: FEATURE_NOT_ENABLED.
  virtual int32_t register_memory(const CacheLayout &layout, const std::vector<uint64_t> &addrs,
                                  CacheMemory *out) = 0;
  // V2 SetRole(role, {llm.ListenIpInfo: listen} when listen is not empty); V1:
  // FEATURE_NOT_ENABLED.
  virtual int32_t set_role(int32_t role, const std::string &listen) = 0;

  // Copies n bytes (at most one staging chunk) from address src of device
  // device_index (host memory when placement is HOST) into dst, waiting at most
  // timeout_ms (-1: indefinitely; never 0). When the wait ends without the copy
  // being known finished, sets *in_flight and remembers token until reclaim()
  // reports it.
  virtual int32_t read(int32_t device_index, int32_t placement, uint64_t src, uint8_t *dst, uint64_t n,
                       int32_t timeout_ms, uint64_t token, bool *in_flight) = 0;
  // Tokens of abandoned reads and copies whose device work is now known
  // finished (wait: blocks until all are).
  virtual void reclaim(bool wait, std::vector<uint64_t> *drained) = 0;

  // One batch row of every tensor (plan): V1 CopyKvCache; V2 (whose CopyKvCache
  // always answers LLM_FEATURE_NOT_ENABLED) ACL copies of each tensor's row
  // (row_copies()), waited for at most timeout_ms, abandoned like a read's.
  virtual int32_t copy(const CacheLayout &dst_layout, const CacheMemory &dst,
                       const CacheLayout &src_layout, const CacheMemory &src,
                       const CopyPlan &plan, int32_t timeout_ms, uint64_t token, bool *in_flight) = 0;
  virtual int32_t link(const ClusterAddress &cluster, int32_t timeout_ms) = 0;
  virtual int32_t unlink(const ClusterAddress &cluster, int32_t timeout_ms, bool force) = 0;
  virtual int32_t pull(const PullPlan &plan, const CacheLayout &dst_layout,
                       const CacheMemory &dst) = 0;
  // V2 PullKvBlocks(CacheIndex, dst cache, src_blocks, dst_blocks, ext_param)
  // into a local cache (plan.blocks is set).
  virtual int32_t pull_blocks(const TransferPlan &plan, const CacheLayout &dst_layout,
                              const CacheMemory &dst) = 0;
  // V2 PushKvBlocks (plan.blocks) or PushKvCache (row plan.src_batch_index, the
  // whole row) from a local cache into the peer's cache plan names.
  virtual int32_t push(const TransferPlan &plan, const CacheLayout &src_layout, const CacheMemory &src) = 0;
};

struct BackendTraits {
  Flavor flavor = Flavor::kV2;
  int32_t max_engines = 1;  // upstream allows one LLM-DataDist per process
  uint64_t read_chunk = 0;  // bytes per read() call
};

BackendTraits backend_traits();
std::unique_ptr<Backend> make_backend();

}  // namespace llmdd

#endif
