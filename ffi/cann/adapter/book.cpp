#include "book.hpp"

#include "error.hpp"
#include "llmdd.h"

namespace llmdd {

int32_t check_layout(const CacheLayout &l, Flavor flavor) {
  if (l.num_tensors < 1)
    return fail(LLMDD_PARAM_INVALID, "num_tensors %d is less than 1", l.num_tensors);
  if (l.tensor_bytes == 0) return fail(LLMDD_PARAM_INVALID, "tensor_bytes is 0");
  uint64_t stride = (l.tensor_bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  if (l.tensor_bytes > kCacheBytesLimit ||
      stride > kCacheBytesLimit / static_cast<uint64_t>(l.num_tensors))
    return fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu x num_tensors %d is too large",
                static_cast<unsigned long long>(l.tensor_bytes), l.num_tensors);
  if (l.batch_size == 0) return fail(LLMDD_PARAM_INVALID, "batch_size is 0");
  if (l.tensor_bytes % l.batch_size != 0)
    return fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu is not a multiple of batch_size %llu",
                static_cast<unsigned long long>(l.tensor_bytes),
                static_cast<unsigned long long>(l.batch_size));
  if (l.placement != LLMDD_PLACEMENT_HOST && l.placement != LLMDD_PLACEMENT_DEVICE)
    return fail(LLMDD_PARAM_INVALID, "placement %d is not HOST (0) or DEVICE (1)", l.placement);
  if (l.placement == LLMDD_PLACEMENT_HOST && flavor == Flavor::kV1)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "placement HOST: %s allocates caches in device memory only (AllocateCache"
                " supports CachePlacement::kDevice only); use Placement.DEVICE",
                flavor_name(flavor));
  int64_t addrs = static_cast<int64_t>(l.num_tensors) * l.num_devices;
  if (flavor == Flavor::kV2 && addrs > kMaxRegisteredAddrs)
    return fail(LLMDD_PARAM_INVALID,
                "num_tensors %d: %s registers a cache's tensors with RegisterKvCache, which"
                " takes at most %d addresses per cache",
                l.num_tensors, flavor_name(flavor), kMaxRegisteredAddrs);
  return LLMDD_SUCCESS;
}

Book::Book(uint64_t capacity) : capacity_(capacity) {}

uint64_t Book::charge_for(const CacheLayout &l) {
  uint64_t stride = (l.tensor_bytes + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
  return stride * static_cast<uint64_t>(l.num_tensors);
}

int32_t Book::check_keys(const uint64_t *keys, int32_t num_keys) const {
  for (int32_t i = 0; i < num_keys; i++) {
    CacheKey key{keys[3 * i], keys[3 * i + 1], keys[3 * i + 2]};
    for (int32_t j = 0; j < i; j++)
      if (keys[3 * j] == key[0] && keys[3 * j + 1] == key[1] && keys[3 * j + 2] == key[2])
        return fail(LLMDD_PARAM_INVALID, "key %d (cluster %llu, req %llu, model %llu) repeats key %d",
                    i, static_cast<unsigned long long>(key[0]),
                    static_cast<unsigned long long>(key[1]),
                    static_cast<unsigned long long>(key[2]), j);
    auto held = by_key_.find(key);
    if (held != by_key_.end())
      return fail(LLMDD_PARAM_INVALID,
                  "key %d (cluster %llu, req %llu, model %llu) is already held by cache %llu", i,
                  static_cast<unsigned long long>(key[0]), static_cast<unsigned long long>(key[1]),
                  static_cast<unsigned long long>(key[2]),
                  static_cast<unsigned long long>(held->second->id));
  }
  return LLMDD_SUCCESS;
}

int32_t Book::check_budget(uint64_t charge) const {
  if (charge > capacity_ - in_use_)
    return fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                "a cache of %llu bytes per device does not fit: %llu of %llu bytes in use"
                " (ge.flowGraphMemMaxSize is the per-device budget)",
                static_cast<unsigned long long>(charge), static_cast<unsigned long long>(in_use_),
                static_cast<unsigned long long>(capacity_));
  return LLMDD_SUCCESS;
}

int32_t Book::add(const CacheLayout &layout, CacheMemory memory, const uint64_t *keys,
                  int32_t num_keys, CacheRecord **out, bool registered) {
  if (memory.id <= 0)
    return fail(LLMDD_FAILED, "upstream returned cache id %lld, which is not a valid id",
                static_cast<long long>(memory.id));
  uint64_t id = static_cast<uint64_t>(memory.id);
  for (const auto &entry : records_)
    if (entry.first->id == id && entry.first->memory_live)
      return fail(LLMDD_FAILED, "upstream returned cache id %llu, which is still in use",
                  static_cast<unsigned long long>(id));
  size_t expected = static_cast<size_t>(layout.num_devices) * static_cast<size_t>(layout.num_tensors);
  if (memory.addrs.size() != expected)
    return fail(LLMDD_FAILED, "upstream returned %zu tensor addresses for %d devices x %d tensors",
                memory.addrs.size(), layout.num_devices, layout.num_tensors);
  auto record = std::make_unique<CacheRecord>();
  record->id = id;
  record->layout = layout;
  record->memory = std::move(memory);
  record->charge = registered ? 0 : charge_for(layout);
  record->registered = registered;
  record->keys_held = num_keys;
  CacheRecord *r = record.get();
  records_[r] = std::move(record);
  by_id_[id] = r;
  for (int32_t i = 0; i < num_keys; i++) by_key_[CacheKey{keys[3 * i], keys[3 * i + 1], keys[3 * i + 2]}] = r;
  in_use_ += r->charge;
  *out = r;
  return LLMDD_SUCCESS;
}

CacheRecord *Book::find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

void Book::release_if_unused(CacheRecord *r, std::vector<Released> *released) {
  if (r->id_held || r->keys_held > 0 || r->pins > 0) return;
  if (r->memory_live) {
    in_use_ -= r->charge;
    released->push_back(Released{r->id, r->layout, std::move(r->memory)});
  }
  records_.erase(r);
}

int32_t Book::release_id(uint64_t id, std::vector<Released> *released) {
  auto it = by_id_.find(id);
  if (it == by_id_.end())
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist", static_cast<unsigned long long>(id));
  CacheRecord *r = it->second;
  by_id_.erase(it);
  r->id_held = false;
  release_if_unused(r, released);
  return LLMDD_SUCCESS;
}

int32_t Book::release_key(const CacheKey &key, std::vector<Released> *released) {
  auto it = by_key_.find(key);
  if (it == by_key_.end())
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "no cache holds key (cluster %llu, req %llu, model %llu)",
                static_cast<unsigned long long>(key[0]), static_cast<unsigned long long>(key[1]),
                static_cast<unsigned long long>(key[2]));
  CacheRecord *r = it->second;
  by_key_.erase(it);
  r->keys_held--;
  release_if_unused(r, released);
  return LLMDD_SUCCESS;
}

void Book::unpin(CacheRecord *r, std::vector<Released> *released) {
  r->pins--;
  release_if_unused(r, released);
}

void Book::release_all(std::vector<Released> *released) {
  by_id_.clear();
  by_key_.clear();
  std::vector<CacheRecord *> all;
  for (const auto &entry : records_) all.push_back(entry.first);
  for (CacheRecord *r : all) {
    r->id_held = false;
    r->keys_held = 0;
    if (r->memory_live) {
      in_use_ -= r->charge;
      released->push_back(Released{r->id, r->layout, std::move(r->memory)});
      r->memory_live = false;
    }
    release_if_unused(r, released);
  }
}

}  // namespace llmdd
