#define _DEFAULT_SOURCE 1
#include <stdlib.h>

#include "engine.h"
#include "error.h"
#include "llmdd.h"

/* Keeps every size computation (offsets, strides, totals) far from overflow; no
 * pool is this large, so such a cache could never be placed anyway. */
#define CACHE_BYTES_LIMIT ((uint64_t)1 << 62)

static struct map_key id_key(uint64_t id) { return (struct map_key){id, 0, 0}; }

struct cache *cache_find(struct engine *e, uint64_t id) {
  struct map_entry *entry = map_find(&e->caches_by_id, id_key(id));
  return entry ? entry->value : NULL;
}

void cache_release_if_unused(struct engine *e, struct cache *c) {
  if (c->id_held || c->keys_held > 0 || c->pins > 0) return;
  if (e->pools_live) {
    uint64_t block = c->stride * (uint64_t)c->num_tensors;
    for (int32_t d = 0; d < e->options.num_devices; d++)
      pool_free(&e->pools[d], c->offsets[d], block);
  }
  if (c->prev) c->prev->next = c->next;
  else e->caches = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c);
}

/* Validates everything that does not need the engine's state. */
static int32_t check_arguments(int32_t num_tensors, uint64_t tensor_bytes, uint64_t batch_size,
                               int32_t placement, const uint64_t *keys,
                               int32_t num_keys, uint64_t *out_cache_id,
                               uint64_t *out_addrs) {
  if (num_tensors < 1)
    return fail(LLMDD_PARAM_INVALID, "num_tensors %d is less than 1", num_tensors);
  if (tensor_bytes == 0) return fail(LLMDD_PARAM_INVALID, "tensor_bytes is 0");
  uint64_t stride = (tensor_bytes + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN;
  if (tensor_bytes > CACHE_BYTES_LIMIT || stride > CACHE_BYTES_LIMIT / (uint64_t)num_tensors)
    return fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu x num_tensors %d is too large",
                (unsigned long long)tensor_bytes, num_tensors);
  if (batch_size == 0) return fail(LLMDD_PARAM_INVALID, "batch_size is 0");
  if (tensor_bytes % batch_size != 0)
    return fail(LLMDD_PARAM_INVALID, "tensor_bytes %llu is not a multiple of batch_size %llu",
                (unsigned long long)tensor_bytes, (unsigned long long)batch_size);
  if (placement != LLMDD_PLACEMENT_HOST && placement != LLMDD_PLACEMENT_DEVICE)
    return fail(LLMDD_PARAM_INVALID, "placement %d is not HOST (0) or DEVICE (1)",
                placement);
  if (num_keys < 0) return fail(LLMDD_PARAM_INVALID, "num_keys %d is negative", num_keys);
  if (keys == NULL && num_keys > 0)
    return fail(LLMDD_PARAM_INVALID, "keys is NULL but num_keys is %d", num_keys);
  if ((uint64_t)num_keys > batch_size)
    return fail(LLMDD_PARAM_INVALID, "num_keys %d is more than batch_size %llu (a key names a row)",
                num_keys, (unsigned long long)batch_size);
  if (out_cache_id == NULL) return fail(LLMDD_PARAM_INVALID, "out_cache_id is NULL");
  if (out_addrs == NULL) return fail(LLMDD_PARAM_INVALID, "out_addrs is NULL");
  return LLMDD_SUCCESS;
}

static void remove_keys(struct engine *e, const uint64_t *keys, int32_t count) {
  for (int32_t i = 0; i < count; i++) {
    const uint64_t *k = &keys[3 * i];
    map_remove(&e->caches_by_key,
               map_find(&e->caches_by_key, (struct map_key){k[0], k[1], k[2]}));
  }
}

/* Registers the new cache's keys; on a clash nothing stays registered. */
static int32_t add_keys(struct engine *e, struct cache *c, const uint64_t *keys,
                        int32_t num_keys) {
  for (int32_t i = 0; i < num_keys; i++) {
    const uint64_t *k = &keys[3 * i];
    struct map_key key = {k[0], k[1], k[2]};
    struct map_entry *held = map_find(&e->caches_by_key, key);
    if (held != NULL) {
      int32_t status;
      if (held->value == c)
        status = fail(LLMDD_PARAM_INVALID,
                      "key %d (cluster %llu, req %llu, model %llu) repeats key %d",
                      i, (unsigned long long)k[0], (unsigned long long)k[1],
                      (unsigned long long)k[2], held->aux);
      else
        status = fail(LLMDD_PARAM_INVALID,
                      "key %d (cluster %llu, req %llu, model %llu) is already held by"
                      " cache %llu",
                      i, (unsigned long long)k[0], (unsigned long long)k[1],
                      (unsigned long long)k[2],
                      (unsigned long long)((struct cache *)held->value)->id);
      remove_keys(e, keys, i);
      return status;
    }
    map_insert(&e->caches_by_key, key, c, i);
  }
  c->keys_held = num_keys;
  return LLMDD_SUCCESS;
}

/* Takes one block per device; on failure nothing stays allocated. */
static int32_t allocate_blocks(struct engine *e, struct cache *c, uint64_t block) {
  for (int32_t d = 0; d < e->options.num_devices; d++) {
    int rc = pool_alloc(&e->pools[d], block, &c->offsets[d]);
    if (rc == 0) continue;
    for (int32_t i = 0; i < d; i++) pool_free(&e->pools[i], c->offsets[i], block);
    if (rc == -2) return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for pool bookkeeping");
    const struct pool *p = &e->pools[d];
    return fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                "device %d has no free block of %llu bytes (%llu of %llu bytes in use)",
                e->options.device_ids[d], (unsigned long long)block,
                (unsigned long long)p->in_use, (unsigned long long)p->capacity);
  }
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_allocate(uint64_t engine, int32_t num_tensors,
                                       uint64_t tensor_bytes, uint64_t batch_size,
                                       uint64_t layout_tag, int32_t placement,
                                       const uint64_t *keys, int32_t num_keys,
                                       uint64_t *out_cache_id,
                                       uint64_t *out_addrs, int32_t addrs_cap) {
  struct engine *e = NULL;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  status = check_arguments(num_tensors, tensor_bytes, batch_size, placement, keys, num_keys,
                           out_cache_id, out_addrs);
  /* Keys name rows a DECODER pulls from a PROMPT; a DECODER's own rows are
   * never pulled, so keys there are a mistake (as upstream). */
  if (status == LLMDD_SUCCESS && num_keys > 0 && e->role == LLMDD_ROLE_DECODER)
    status = fail(LLMDD_PARAM_INVALID, "a DECODER engine's caches take no keys");
  int32_t num_devices = e->options.num_devices;
  int64_t needed = (int64_t)num_devices * num_tensors;
  if (status == LLMDD_SUCCESS && addrs_cap < needed)
    status = fail(LLMDD_PARAM_INVALID,
                  "addrs_cap %d is less than num_devices %d x num_tensors %d",
                  addrs_cap, num_devices, num_tensors);
  if (status != LLMDD_SUCCESS) {
    engine_leave(e);
    return status;
  }

  struct cache *c = malloc(sizeof *c + (size_t)num_devices * sizeof c->offsets[0]);
  if (c == NULL || map_reserve(&e->caches_by_id, 1) != 0 ||
      map_reserve(&e->caches_by_key, (uint64_t)num_keys) != 0) {
    free(c);
    engine_leave(e);
    return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for cache bookkeeping");
  }
  c->num_tensors = num_tensors;
  c->tensor_bytes = tensor_bytes;
  c->batch_size = batch_size;
  c->layout_tag = layout_tag;
  c->stride = (tensor_bytes + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN;
  c->pins = 0;

  status = add_keys(e, c, keys, num_keys);
  if (status == LLMDD_SUCCESS) {
    status = allocate_blocks(e, c, c->stride * (uint64_t)num_tensors);
    if (status != LLMDD_SUCCESS) remove_keys(e, keys, num_keys);
  }
  if (status != LLMDD_SUCCESS) {
    free(c);
    engine_leave(e);
    return status;
  }

  c->id = e->next_cache_id++;
  c->id_held = true;
  map_insert(&e->caches_by_id, id_key(c->id), c, 0);
  c->prev = NULL;
  c->next = e->caches;
  if (e->caches) e->caches->prev = c;
  e->caches = c;

  *out_cache_id = c->id;
  for (int32_t d = 0; d < num_devices; d++)
    for (int32_t t = 0; t < num_tensors; t++)
      out_addrs[(int64_t)d * num_tensors + t] = (uint64_t)(uintptr_t)cache_tensor(e, c, d, t);
  engine_leave(e);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_deallocate(uint64_t engine, uint64_t cache_id) {
  struct engine *e = NULL;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  struct map_entry *entry = map_find(&e->caches_by_id, id_key(cache_id));
  if (entry == NULL) {
    engine_leave(e);
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist",
                (unsigned long long)cache_id);
  }
  struct cache *c = entry->value;
  map_remove(&e->caches_by_id, entry);
  c->id_held = false;
  cache_release_if_unused(e, c);
  engine_leave(e);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_key_remove(uint64_t engine, uint64_t cluster_id,
                                         uint64_t req_id, uint64_t model_id) {
  struct engine *e = NULL;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  struct map_entry *entry =
      map_find(&e->caches_by_key, (struct map_key){cluster_id, req_id, model_id});
  if (entry == NULL) {
    engine_leave(e);
    return fail(LLMDD_KV_CACHE_NOT_EXIST,
                "no cache holds key (cluster %llu, req %llu, model %llu)",
                (unsigned long long)cluster_id, (unsigned long long)req_id,
                (unsigned long long)model_id);
  }
  struct cache *c = entry->value;
  map_remove(&e->caches_by_key, entry);
  c->keys_held--;
  cache_release_if_unused(e, c);
  engine_leave(e);
  return LLMDD_SUCCESS;
}
