// llmdd_cache_allocate / llmdd_cache_deallocate / llmdd_cache_key_remove.
#include "engine.hpp"

using namespace llmdd;

namespace {

int32_t check_arguments(const CacheLayout &layout, Flavor flavor, const uint64_t *keys, int32_t num_keys,
                        const uint64_t *out_cache_id, const uint64_t *out_addrs) {
  int32_t status = check_layout(layout, flavor);
  if (status != LLMDD_SUCCESS) return status;
  if (num_keys < 0) return fail(LLMDD_PARAM_INVALID, "num_keys %d is negative", num_keys);
  if (keys == nullptr && num_keys > 0)
    return fail(LLMDD_PARAM_INVALID, "keys is NULL but num_keys is %d", num_keys);
  if (static_cast<uint64_t>(num_keys) > layout.batch_size)
    return fail(LLMDD_PARAM_INVALID, "num_keys %d is more than batch_size %llu (a key names a row)",
                num_keys, static_cast<unsigned long long>(layout.batch_size));
  if (out_cache_id == nullptr) return fail(LLMDD_PARAM_INVALID, "out_cache_id is NULL");
  if (out_addrs == nullptr) return fail(LLMDD_PARAM_INVALID, "out_addrs is NULL");
  return LLMDD_SUCCESS;
}

int32_t allocate(Engine *e, const CacheLayout &layout, const uint64_t *keys, int32_t num_keys,
                 uint64_t *out_cache_id, uint64_t *out_addrs, int32_t addrs_cap) {
  int32_t status = check_arguments(layout, e->traits.flavor, keys, num_keys, out_cache_id, out_addrs);
  // Keys name rows a DECODER pulls from a PROMPT; a DECODER's own rows are never
  // pulled, so keys there are a mistake (as upstream).
  if (status == LLMDD_SUCCESS && num_keys > 0 && e->role == LLMDD_ROLE_DECODER)
    status = fail(LLMDD_PARAM_INVALID, "a DECODER engine's caches take no keys");
  int64_t needed = static_cast<int64_t>(layout.num_devices) * layout.num_tensors;
  if (status == LLMDD_SUCCESS && addrs_cap < needed)
    status = fail(LLMDD_PARAM_INVALID, "addrs_cap %d is less than num_devices %d x num_tensors %d",
                  addrs_cap, layout.num_devices, layout.num_tensors);
  // Memory before keys, as upstream's CacheManager::Allocate (it takes every
  // tensor from the pool, then checks the keys): a cache that does not fit is
  // LLM_DEVICE_OUT_OF_MEMORY even when one of its keys is already held.
  if (status == LLMDD_SUCCESS) status = e->book.check_budget(Book::charge_for(layout));
  if (status == LLMDD_SUCCESS) status = e->book.check_keys(keys, num_keys);
  if (status != LLMDD_SUCCESS) return status;

  engine_reap(e);
  CacheMemory memory;
  status = e->backend->allocate(layout, &memory);
  if (status != LLMDD_SUCCESS) return status;
  CacheRecord *record = nullptr;
  status = e->book.add(layout, memory, keys, num_keys, &record);
  if (status != LLMDD_SUCCESS) {
    std::string why = last_error();
    (void)e->backend->release(layout, &memory);
    set_last_error(why);
    return status;
  }
  record->link_epoch = e->links.epoch();
  *out_cache_id = record->id;
  for (size_t i = 0; i < record->memory.addrs.size(); i++) out_addrs[i] = record->memory.addrs[i];
  return LLMDD_SUCCESS;
}

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_allocate(uint64_t engine, int32_t num_tensors,
                                                  uint64_t tensor_bytes, uint64_t batch_size,
                                                  uint64_t layout_tag, int32_t placement,
                                                  const uint64_t *keys, int32_t num_keys,
                                                  uint64_t *out_cache_id, uint64_t *out_addrs,
                                                  int32_t addrs_cap) {
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    CacheLayout layout = e->layout(num_tensors, tensor_bytes, batch_size, layout_tag, placement);
    try {
      status = allocate(e, layout, keys, num_keys, out_cache_id, out_addrs, addrs_cap);
    } catch (...) {
      engine_leave(e);
      throw;
    }
    engine_leave(e);
    return status;
  });
}

namespace {
template <class F>
int32_t release(uint64_t engine, F take) {
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    std::vector<Released> released;
    try {
      engine_reap(e);
      status = take(e, &released);
      if (status == LLMDD_SUCCESS) status = engine_free(e, released);
    } catch (...) {
      engine_leave(e);
      throw;
    }
    engine_leave(e);
    return status;
  });
}
}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_deallocate(uint64_t engine, uint64_t cache_id) {
  return release(engine, [&](Engine *e, std::vector<Released> *released) {
    const CacheRecord *record = e->book.find(cache_id);
    if (record != nullptr && record->registered)
      return fail(LLMDD_PARAM_INVALID, "cache %llu was registered, not allocated: unregister it instead",
                  static_cast<unsigned long long>(cache_id));
    return e->book.release_id(cache_id, released);
  });
}

extern "C" LLMDD_API int32_t llmdd_cache_key_remove(uint64_t engine, uint64_t cluster_id,
                                                    uint64_t req_id, uint64_t model_id) {
  return release(engine, [&](Engine *e, std::vector<Released> *released) {
    return e->book.release_key(CacheKey{cluster_id, req_id, model_id}, released);
  });
}
