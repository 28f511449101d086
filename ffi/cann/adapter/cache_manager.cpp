// The cache-manager calls of ABI 3 that are not long operations:
// llmdd_cache_register and llmdd_cache_unregister (V2 RegisterKvCache /
// UnregisterKvCache of the caller's memory) and llmdd_engine_set_role (V2
// SetRole). llmdd_cache_copy_blocks is a copy: ops.cpp.
#include <string>

#include "core/options.h"
#include "engine.hpp"

using namespace llmdd;

namespace {

int32_t check_registration(const Engine *e, const CacheLayout &layout, const uint64_t *addrs, int32_t num_addrs,
                           const uint64_t *keys, int32_t num_keys, const uint64_t *out_cache_id) {
  int32_t status = check_layout(layout, e->traits.flavor);
  if (status != LLMDD_SUCCESS) return status;
  if (layout.num_tensors > kMaxRegisteredAddrs)
    return fail(LLMDD_PARAM_INVALID, "num_tensors %d: a registered cache has at most %d addresses",
                layout.num_tensors, kMaxRegisteredAddrs);
  if (num_keys < 0) return fail(LLMDD_PARAM_INVALID, "num_keys %d is negative", num_keys);
  if (keys == nullptr && num_keys > 0) return fail(LLMDD_PARAM_INVALID, "keys is NULL but num_keys is %d", num_keys);
  if (out_cache_id == nullptr) return fail(LLMDD_PARAM_INVALID, "out_cache_id is NULL");
  if (addrs == nullptr) return fail(LLMDD_PARAM_INVALID, "addrs is NULL");
  int64_t needed = static_cast<int64_t>(layout.num_devices) * layout.num_tensors;
  if (num_addrs != needed)
    return fail(LLMDD_PARAM_INVALID, "num_addrs %d is not num_devices %d x num_tensors %d", num_addrs,
                layout.num_devices, layout.num_tensors);
  for (int64_t i = 0; i < needed; i++) {
    if (addrs[i] == 0) return fail(LLMDD_PARAM_INVALID, "addrs[%lld] is 0: addr can not be zero", (long long)i);
    if (addrs[i] > UINT64_MAX - layout.tensor_bytes)
      return fail(LLMDD_PARAM_INVALID, "addrs[%lld] + %llu bytes wraps around the address space", (long long)i,
                  static_cast<unsigned long long>(layout.tensor_bytes));
  }
  // V2's C++ API names caches by CacheIndex only: a CacheKey has no equivalent.
  if (num_keys > 0)
    return fail(LLMDD_FEATURE_NOT_ENABLED, "cache keys on registered memory are not available on the CANN backend");
  return LLMDD_SUCCESS;
}

// The value of llm.listenIpInfo in option text, or "".
int32_t listen_option(void *arg, core_span key, core_span value) {
  if (core_span_equals(key, "llm.listenIpInfo")) static_cast<std::string *>(arg)->assign(value.p, value.n);
  return LLMDD_SUCCESS;
}

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_register(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
                                                  uint64_t batch_size, uint64_t layout_tag, int32_t placement,
                                                  const uint64_t *addrs, int32_t num_addrs, const uint64_t *keys,
                                                  int32_t num_keys, int32_t remote_accessible,
                                                  uint64_t *out_cache_id) {
  (void)remote_accessible;  // upstream's RegisterCfg has nothing for it: every registration is remote-accessible
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    try {
      CacheLayout layout = e->layout(num_tensors, tensor_bytes, batch_size, layout_tag, placement);
      status = check_registration(e, layout, addrs, num_addrs, keys, num_keys, out_cache_id);
      CacheMemory memory;
      if (status == LLMDD_SUCCESS) {
        engine_reap(e);
        status = e->backend->register_memory(
            layout, std::vector<uint64_t>(addrs, addrs + static_cast<size_t>(num_addrs)), &memory);
      }
      CacheRecord *record = nullptr;
      if (status == LLMDD_SUCCESS) {
        status = e->book.add(layout, memory, nullptr, 0, &record, true);
        if (status != LLMDD_SUCCESS) {
          std::string why = last_error();
          (void)e->backend->release(layout, &memory);
          set_last_error(why);
        }
      }
      if (status == LLMDD_SUCCESS) {
        record->link_epoch = e->links.epoch();
        *out_cache_id = record->id;
      }
    } catch (...) {
      engine_leave(e);
      throw;
    }
    engine_leave(e);
    return status;
  });
}

extern "C" LLMDD_API int32_t llmdd_cache_unregister(uint64_t engine, uint64_t cache_id) {
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    std::vector<Released> released;
    try {
      engine_reap(e);
      CacheRecord *record = e->book.find(cache_id);
      if (record == nullptr)
        status = fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist", static_cast<unsigned long long>(cache_id));
      else if (!record->registered)
        status = fail(LLMDD_PARAM_INVALID, "cache %llu was allocated, not registered: deallocate it instead",
                      static_cast<unsigned long long>(cache_id));
      // SUCCESS hands the memory back to its owner: no copy may still use it.
      else if (record->pins > 0)
        status = fail(LLMDD_FAILED, "cache %llu is in use by %d running operation(s)",
                      static_cast<unsigned long long>(cache_id), record->pins);
      else
        status = e->book.release_id(cache_id, &released);
      if (status == LLMDD_SUCCESS) status = engine_free(e, released);
    } catch (...) {
      engine_leave(e);
      throw;
    }
    engine_leave(e);
    return status;
  });
}

extern "C" LLMDD_API int32_t llmdd_engine_set_role(uint64_t engine, int32_t role, const uint8_t *options,
                                                   int32_t options_len) {
  return guarded([&]() -> int32_t {
    if (role != LLMDD_ROLE_PROMPT && role != LLMDD_ROLE_DECODER && role != LLMDD_ROLE_MIX)
      return fail(LLMDD_PARAM_INVALID, "role %d is not PROMPT (1), DECODER (2) or MIX (3)", role);
    if (options_len < 0) return fail(LLMDD_PARAM_INVALID, "options_len %d is negative", options_len);
    if (options == nullptr && options_len > 0)
      return fail(LLMDD_PARAM_INVALID, "options is NULL but options_len is %d", options_len);
    std::string listen;
    int32_t status = core_options_each(options, options_len, listen_option, &listen);
    if (status != LLMDD_SUCCESS) return status;
    if (!listen.empty() && role == LLMDD_ROLE_DECODER)
      return fail(LLMDD_PARAM_INVALID, "llm.listenIpInfo is for PROMPT and MIX engines");
    Engine *e = nullptr;
    status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    try {
      status = e->backend->set_role(role, listen);
      if (status == LLMDD_SUCCESS) e->role = role;
    } catch (...) {
      engine_leave(e);
      throw;
    }
    engine_leave(e);
    return status;
  });
}
