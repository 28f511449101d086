/* The cache calls of the ABI: llmdd_cache_allocate, llmdd_cache_deallocate and
 * llmdd_cache_key_remove. They validate and enter the engine; the cache book
 * (book.c) does the bookkeeping. */
#define _DEFAULT_SOURCE 1
#include "book.h"
#include "core/error.h"
#include "engine.h"
#include "llmdd.h"

/* Keeps every size computation (offsets, strides, totals) far from overflow; no
 * pool is this large, so such a cache could never be placed anyway. */
#define CACHE_BYTES_LIMIT ((uint64_t)1 << 62)

/* Validates everything that does not need the engine's state. */
static int32_t check_arguments(int32_t num_tensors, uint64_t tensor_bytes, uint64_t batch_size,
                               int32_t placement, const uint64_t *keys,
                               int32_t num_keys, uint64_t *out_cache_id,
                               uint64_t *out_addrs) {
  if (num_tensors < 1)
    return core_fail(LLMDD_PARAM_INVALID, "num_tensors %d is less than 1", num_tensors);
  if (tensor_bytes == 0) return core_fail(LLMDD_PARAM_INVALID, "tensor_bytes is 0");
  uint64_t stride = (tensor_bytes + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN;
  if (tensor_bytes > CACHE_BYTES_LIMIT || stride > CACHE_BYTES_LIMIT / (uint64_t)num_tensors)
    return core_fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu x num_tensors %d is too large",
                (unsigned long long)tensor_bytes, num_tensors);
  if (batch_size == 0) return core_fail(LLMDD_PARAM_INVALID, "batch_size is 0");
  if (tensor_bytes % batch_size != 0)
    return core_fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu is not a multiple of batch_size %llu",
                (unsigned long long)tensor_bytes, (unsigned long long)batch_size);
  if (placement != LLMDD_PLACEMENT_HOST && placement != LLMDD_PLACEMENT_DEVICE)
    return core_fail(LLMDD_PARAM_INVALID, "placement %d is not HOST (0) or DEVICE (1)",
                placement);
  if (num_keys < 0) return core_fail(LLMDD_PARAM_INVALID, "num_keys %d is negative", num_keys);
  if (keys == NULL && num_keys > 0)
    return core_fail(LLMDD_PARAM_INVALID, "keys is NULL but num_keys is %d", num_keys);
  if ((uint64_t)num_keys > batch_size)
    return core_fail(LLMDD_PARAM_INVALID, "num_keys %d is more than batch_size %llu (a key names a row)",
                num_keys, (unsigned long long)batch_size);
  if (out_cache_id == NULL) return core_fail(LLMDD_PARAM_INVALID, "out_cache_id is NULL");
  if (out_addrs == NULL) return core_fail(LLMDD_PARAM_INVALID, "out_addrs is NULL");
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_allocate(uint64_t engine, int32_t num_tensors,
                                       uint64_t tensor_bytes, uint64_t batch_size,
                                       uint64_t layout_tag, int32_t placement,
                                       const uint64_t *keys, int32_t num_keys,
                                       uint64_t *out_cache_id,
                                       uint64_t *out_addrs, int32_t addrs_cap) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  status = check_arguments(num_tensors, tensor_bytes, batch_size, placement, keys, num_keys,
                           out_cache_id, out_addrs);
  /* Keys name rows a DECODER pulls from a PROMPT; a DECODER's own rows are
   * never pulled, so keys there are a mistake (as upstream). */
  if (status == LLMDD_SUCCESS && num_keys > 0 && e->role == LLMDD_ROLE_DECODER)
    status = core_fail(LLMDD_PARAM_INVALID, "a DECODER engine's caches take no keys");
  int32_t num_devices = e->options.num_devices;
  int64_t needed = (int64_t)num_devices * num_tensors;
  if (status == LLMDD_SUCCESS && addrs_cap < needed)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "addrs_cap %d is less than num_devices %d x num_tensors %d",
                       addrs_cap, num_devices, num_tensors);
  struct cache *c = NULL;
  if (status == LLMDD_SUCCESS)
    status = host_book_allocate(&e->book, num_tensors, tensor_bytes, batch_size, layout_tag, keys,
                           num_keys, placement == LLMDD_PLACEMENT_HOST && e->book.host_pool != NULL,
                           &c);
  if (status == LLMDD_SUCCESS) {
    /* Upstream's default: DEVICE memory of an engine with remote access. */
    c->remote = e->options.remote_access && !c->in_host_pool;
    *out_cache_id = c->id;
    for (int32_t d = 0; d < num_devices; d++)
      for (int32_t t = 0; t < num_tensors; t++)
        out_addrs[(int64_t)d * num_tensors + t] =
            (uint64_t)(uintptr_t)host_cache_tensor(&e->book, c, d, t);
  }
  host_engine_leave(e);
  return status;
}

LLMDD_API int32_t llmdd_cache_deallocate(uint64_t engine, uint64_t cache_id) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  const struct cache *c = host_book_find(&e->book, cache_id);
  if (c != NULL && c->registered != NULL)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "cache %llu was registered, not allocated: unregister it instead",
                       (unsigned long long)cache_id);
  else
    status = host_book_release_id(&e->book, cache_id);
  host_engine_leave(e);
  return status;
}

LLMDD_API int32_t llmdd_cache_key_remove(uint64_t engine, uint64_t cluster_id,
                                         uint64_t req_id, uint64_t model_id) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  status = host_book_release_key(&e->book, (struct cache_key){cluster_id, req_id, model_id});
  host_engine_leave(e);
  return status;
}

LLMDD_API int32_t llmdd_cache_register(uint64_t engine, int32_t num_tensors,
                                       uint64_t tensor_bytes, uint64_t batch_size,
                                       uint64_t layout_tag, int32_t placement,
                                       const uint64_t *addrs, int32_t num_addrs,
                                       const uint64_t *keys, int32_t num_keys,
                                       int32_t remote_accessible, uint64_t *out_cache_id) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  uint64_t unused_addr;
  status = check_arguments(num_tensors, tensor_bytes, batch_size, placement, keys, num_keys,
                           out_cache_id, &unused_addr);
  if (status == LLMDD_SUCCESS && num_keys > 0 && e->role == LLMDD_ROLE_DECODER)
    status = core_fail(LLMDD_PARAM_INVALID, "a DECODER engine's caches take no keys");
  int64_t needed = (int64_t)e->options.num_devices * (status == LLMDD_SUCCESS ? num_tensors : 0);
  if (status == LLMDD_SUCCESS && num_tensors > LLMDD_MAX_REGISTERED_ADDRS)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "num_tensors %d: a registered cache has at most %d addresses (upstream's"
                       " RegisterKvCache)",
                       num_tensors, LLMDD_MAX_REGISTERED_ADDRS);
  if (status == LLMDD_SUCCESS && addrs == NULL)
    status = core_fail(LLMDD_PARAM_INVALID, "addrs is NULL");
  if (status == LLMDD_SUCCESS && num_addrs != needed)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "num_addrs %d is not num_devices %d x num_tensors %d", num_addrs,
                       e->options.num_devices, num_tensors);
  for (int64_t i = 0; status == LLMDD_SUCCESS && i < needed; i++) {
    if (addrs[i] == 0)
      status = core_fail(LLMDD_PARAM_INVALID, "addrs[%lld] is 0: addr can not be zero", (long long)i);
    else if (addrs[i] > UINT64_MAX - tensor_bytes || addrs[i] > (uint64_t)UINTPTR_MAX - tensor_bytes)
      status = core_fail(LLMDD_PARAM_INVALID,
                         "addrs[%lld] 0x%llx + %llu bytes wraps around the address space",
                         (long long)i, (unsigned long long)addrs[i],
                         (unsigned long long)tensor_bytes);
  }
  if (status == LLMDD_SUCCESS && remote_accessible != 0 && e->ever_linked)
    status = core_fail(LLMDD_PARAM_INVALID, "you can not register remote accessible cache after link.");
  struct cache *c = NULL;
  if (status == LLMDD_SUCCESS)
    status = host_book_register(&e->book, num_tensors, tensor_bytes, batch_size, layout_tag, addrs,
                                keys, num_keys, &c);
  if (status == LLMDD_SUCCESS) {
    c->remote = remote_accessible != 0;
    *out_cache_id = c->id;
  }
  host_engine_leave(e);
  return status;
}

LLMDD_API int32_t llmdd_cache_unregister(uint64_t engine, uint64_t cache_id) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  status = host_book_unregister(&e->book, cache_id);
  host_engine_leave(e);
  return status;
}
