// Cache bookkeeping of one engine: cache id → per-device tensor addresses, cache
// keys → cache, the per-device budget, and when a cache's memory goes back
// (once its id and every key naming it are released and no operation pins it,
// as upstream's KvCacheManager).
#ifndef LLMDD_CANN_BOOK_HPP
#define LLMDD_CANN_BOOK_HPP

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "options.hpp"

namespace llmdd {

// Tensors start on this boundary in the budget's accounting (the ABI's rule).
constexpr uint64_t kTensorAlign = 64;
// RegisterKvCache takes at most this many addresses per cache (upstream's C++
// API reference, RegisterKvCache: "地址个数不超过240").
constexpr int32_t kMaxRegisteredAddrs = 240;
// Keeps every size computation far from overflow.
constexpr uint64_t kCacheBytesLimit = uint64_t{1} << 62;

struct CacheLayout {
  int32_t num_tensors = 0;
  uint64_t tensor_bytes = 0;
  uint64_t batch_size = 1;  // rows of tensor_bytes / batch_size bytes
  uint64_t layout_tag = 0;
  int32_t placement = 1;
  int32_t num_devices = 1;
  uint64_t row_bytes() const { return tensor_bytes / batch_size; }
};

// What the backend hands back for a cache: upstream's cache id and the tensors'
// addresses, [device][tensor] ("in single-process multi-device use, the devices'
// addresses follow one another": the upstream Cache::tensor_addrs layout).
struct CacheMemory {
  int64_t id = -1;
  std::vector<uint64_t> addrs;
  std::vector<void *> blocks;  // backend-owned allocations (V2: one per tensor)
};

using CacheKey = std::array<uint64_t, 3>;  // prompt_cluster_id, req_id, model_id

struct CacheRecord {
  uint64_t id = 0;
  CacheLayout layout;
  CacheMemory memory;
  uint64_t charge = 0;  // bytes per device against the budget
  bool id_held = true;
  int32_t keys_held = 0;
  int32_t pins = 0;          // operations accepted or running on it
  bool memory_live = true;   // false once finalize has released the memory
  uint64_t link_epoch = 0;   // Links::epoch() when the cache was allocated
  bool registered = false;   // the caller's memory (llmdd_cache_register): no charge, never freed
};

// Memory to hand back to the backend (outside the bookkeeping).
struct Released {
  uint64_t id = 0;
  CacheLayout layout;
  CacheMemory memory;
};

// Validates a new cache's shape (no engine state needed): PARAM_INVALID (also
// more than kMaxRegisteredAddrs tensors on V2), or FEATURE_NOT_ENABLED for HOST
// placement on V1 (AllocateCache allocates device memory only; V2 registers
// host memory as upstream's RegisterKvCache allows).
int32_t check_layout(const CacheLayout &layout, Flavor flavor);

class Book {
 public:
  explicit Book(uint64_t capacity);

  // Bytes per device a cache of this layout is charged.
  static uint64_t charge_for(const CacheLayout &layout);

  // PARAM_INVALID when a key repeats within keys or is held by a cache already.
  int32_t check_keys(const uint64_t *keys, int32_t num_keys) const;
  // DEVICE_OUT_OF_MEMORY when charge does not fit in the budget.
  int32_t check_budget(uint64_t charge) const;

  // Records a cache whose memory the backend has just provided. FAILED (and
  // nothing recorded) when upstream's id is not positive or is still in use.
  int32_t add(const CacheLayout &layout, CacheMemory memory, const uint64_t *keys,
              int32_t num_keys, CacheRecord **out, bool registered = false);

  CacheRecord *find(uint64_t id) const;
  bool key_held(const CacheKey &key) const { return by_key_.count(key) != 0; }

  // Releases the id / one key; caches left unused are appended to released.
  int32_t release_id(uint64_t id, std::vector<Released> *released);
  int32_t release_key(const CacheKey &key, std::vector<Released> *released);

  void pin(CacheRecord *record) { record->pins++; }
  void unpin(CacheRecord *record, std::vector<Released> *released);

  // Finalize: every id and key is released and all memory handed back at once;
  // pinned records stay (without memory) until their operations unpin them.
  void release_all(std::vector<Released> *released);

  uint64_t in_use() const { return in_use_; }
  uint64_t capacity() const { return capacity_; }
  size_t live_caches() const { return records_.size(); }

 private:
  void release_if_unused(CacheRecord *record, std::vector<Released> *released);

  uint64_t capacity_;
  uint64_t in_use_ = 0;
  std::map<uint64_t, CacheRecord *> by_id_;  // ids not yet released
  std::map<CacheKey, CacheRecord *> by_key_;
  std::map<CacheRecord *, std::unique_ptr<CacheRecord>> records_;  // every record alive
};

}  // namespace llmdd

#endif
