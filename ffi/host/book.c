#define _DEFAULT_SOURCE 1
#include "book.h"

#include <stdlib.h>

#include "core/error.h"
#include "fast.h"
#include "llmdd.h"

static struct map_key id_key(uint64_t id) { return (struct map_key){id, 0, 0}; }

static struct map_key key_of(struct cache_key k) {
  return (struct map_key){k.cluster, k.req, k.model};
}

void host_book_init(struct book *b, struct pool *pools, int32_t num_devices,
               const int32_t *device_ids) {
  *b = (struct book){.pools = pools, .num_devices = num_devices, .device_ids = device_ids,
                     .pools_live = true, .next_id = 1};
}

void host_book_destroy(struct book *b) {
  while (b->caches != NULL) {
    struct cache *c = b->caches;
    b->caches = c->next;
    free(c->registered);
    free(c->keys);
    free(c);
  }
  host_map_destroy(&b->by_id);
  host_map_destroy(&b->by_key);
}

/* Returns a placed cache's pool blocks (host pool, or one per device). */
static void free_blocks(struct book *b, const struct cache *c, uint64_t block) {
  if (c->in_host_pool) {
    host_pool_free(b->host_pool, c->offsets[0], block);
    return;
  }
  for (int32_t d = 0; d < b->num_devices; d++) host_pool_free(&b->pools[d], c->offsets[d], block);
}

/* The one place a cache's memory goes back: when no id, key or pin holds it. */
static void release_if_unused(struct book *b, struct cache *c) {
  if (c->id_held || c->keys_held > 0 || c->pins > 0) return;
  /* Registered memory is the caller's: only the record goes. */
  if (c->registered == NULL && b->pools_live) free_blocks(b, c, c->stride * (uint64_t)c->num_tensors);
  if (c->prev) c->prev->next = c->next;
  else b->caches = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->registered);
  free(c->keys);
  free(c);
}

void host_book_close(struct book *b) {
  host_fast_bump_all(b->fast);
  b->pools_live = false;
  for (struct cache *c = b->caches, *next; c != NULL; c = next) {
    next = c->next;
    c->id_held = false;
    c->keys_held = 0;
    release_if_unused(b, c);
  }
  host_map_destroy(&b->by_id);
  host_map_destroy(&b->by_key);
}

static void remove_keys(struct book *b, const uint64_t *keys, int32_t count) {
  for (int32_t i = 0; i < count; i++) {
    const uint64_t *k = &keys[3 * i];
    host_map_remove(&b->by_key, host_map_find(&b->by_key, (struct map_key){k[0], k[1], k[2]}));
  }
}

/* Registers the new cache's keys; on a clash nothing stays registered. */
static int32_t add_keys(struct book *b, struct cache *c, const uint64_t *keys,
                        int32_t num_keys) {
  for (int32_t i = 0; i < num_keys; i++) {
    const uint64_t *k = &keys[3 * i];
    struct map_key key = {k[0], k[1], k[2]};
    struct map_entry *held = host_map_find(&b->by_key, key);
    if (held != NULL) {
      int32_t status;
      if (held->value == c)
        status = core_fail(LLMDD_PARAM_INVALID,
                           "key %d (cluster %llu, req %llu, model %llu) repeats key %d",
                           i, (unsigned long long)k[0], (unsigned long long)k[1],
                           (unsigned long long)k[2], held->aux);
      else
        status = core_fail(LLMDD_PARAM_INVALID,
                           "key %d (cluster %llu, req %llu, model %llu) is already held by"
                           " cache %llu",
                           i, (unsigned long long)k[0], (unsigned long long)k[1],
                           (unsigned long long)k[2],
                           (unsigned long long)((struct cache *)held->value)->id);
      remove_keys(b, keys, i);
      return status;
    }
    host_map_insert(&b->by_key, key, c, i);
  }
  c->keys_held = num_keys;
  return LLMDD_SUCCESS;
}

/* Takes the host pool's block and reserves its memory. */
static int32_t allocate_host_block(struct book *b, struct cache *c, uint64_t block) {
  int rc = host_pool_alloc(b->host_pool, block, &c->offsets[0]);
  int err = rc == 0 ? host_pool_commit(b->host_pool, c->offsets[0], block) : 0;
  if (rc == 0 && err == 0) return LLMDD_SUCCESS;
  if (rc == 0) host_pool_free(b->host_pool, c->offsets[0], block);
  if (rc == -2) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for pool bookkeeping");
  return core_fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                   "the host pool has no free block of %llu bytes (%llu of %llu bytes in use)",
                   (unsigned long long)block, (unsigned long long)b->host_pool->in_use,
                   (unsigned long long)b->host_pool->capacity);
}

/* Takes one block per device and reserves its memory; on failure nothing stays
 * allocated. */
static int32_t allocate_blocks(struct book *b, struct cache *c, uint64_t block) {
  if (c->in_host_pool) return allocate_host_block(b, c, block);
  for (int32_t d = 0; d < b->num_devices; d++) {
    int rc = host_pool_alloc(&b->pools[d], block, &c->offsets[d]);
    int err = rc == 0 ? host_pool_commit(&b->pools[d], c->offsets[d], block) : 0;
    if (rc == 0 && err == 0) continue;
    for (int32_t i = 0; i < d + (rc == 0); i++) host_pool_free(&b->pools[i], c->offsets[i], block);
    if (err != 0) {
      char text[CORE_ERRNO_TEXT_CAP];
      return core_fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                       "device %d: the memory of a block of %llu bytes could not be reserved: %s",
                       b->device_ids[d], (unsigned long long)block, core_errno_text(err, text));
    }
    if (rc == -2)
      return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for pool bookkeeping");
    const struct pool *p = &b->pools[d];
    return core_fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                     "device %d has no free block of %llu bytes (%llu of %llu bytes in use)",
                     b->device_ids[d], (unsigned long long)block,
                     (unsigned long long)p->in_use, (unsigned long long)p->capacity);
  }
  return LLMDD_SUCCESS;
}

/* A new record, not yet listed (NULL: out of memory, with a message). */
static struct cache *new_cache(struct book *b, int32_t num_tensors, uint64_t tensor_bytes,
                               uint64_t batch_size, uint64_t layout_tag, int32_t num_keys) {
  struct cache *c = calloc(1, sizeof *c + (size_t)b->num_devices * sizeof c->offsets[0]);
  if (c == NULL || host_map_reserve(&b->by_id, 1) != 0 ||
      host_map_reserve(&b->by_key, (uint64_t)num_keys) != 0) {
    free(c);
    core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for cache bookkeeping");
    return NULL;
  }
  c->num_tensors = num_tensors;
  c->tensor_bytes = tensor_bytes;
  c->batch_size = batch_size;
  c->layout_tag = layout_tag;
  c->stride = (tensor_bytes + POOL_ALIGN - 1) / POOL_ALIGN * POOL_ALIGN;
  return c;
}

/* Gives a placed cache its id and lists it. */
static void list_cache(struct book *b, struct cache *c) {
  c->id = b->next_id++;
  c->id_held = true;
  host_map_insert(&b->by_id, id_key(c->id), c, 0);
  c->prev = NULL;
  c->next = b->caches;
  if (b->caches) b->caches->prev = c;
  b->caches = c;
}

int32_t host_book_register(struct book *b, int32_t num_tensors, uint64_t tensor_bytes,
                           uint64_t batch_size, uint64_t layout_tag, const uint64_t *addrs,
                           const uint64_t *keys, int32_t num_keys, struct cache **out) {
  struct cache *c = new_cache(b, num_tensors, tensor_bytes, batch_size, layout_tag, num_keys);
  if (c == NULL) return LLMDD_OUT_OF_MEMORY;
  size_t count = (size_t)b->num_devices * (size_t)num_tensors;
  c->registered = malloc(count * sizeof c->registered[0]);
  c->keys = num_keys > 0 ? malloc((size_t)num_keys * 3 * sizeof c->keys[0]) : NULL;
  if (c->registered == NULL || (num_keys > 0 && c->keys == NULL)) {
    free(c->registered);
    free(c->keys);
    free(c);
    return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for cache bookkeeping");
  }
  for (size_t i = 0; i < count; i++) c->registered[i] = (uint8_t *)(uintptr_t)addrs[i];
  for (int32_t i = 0; i < num_keys * 3; i++) c->keys[i] = keys[i];
  c->num_keys = num_keys;
  int32_t status = add_keys(b, c, keys, num_keys);
  if (status != LLMDD_SUCCESS) {
    free(c->registered);
    free(c->keys);
    free(c);
    return status;
  }
  list_cache(b, c);
  *out = c;
  return LLMDD_SUCCESS;
}

int32_t host_book_unregister(struct book *b, uint64_t id) {
  struct cache *c = host_book_find(b, id);
  if (c == NULL)
    return core_fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist", (unsigned long long)id);
  if (c->registered == NULL)
    return core_fail(LLMDD_PARAM_INVALID,
                     "cache %llu was allocated, not registered: deallocate it instead",
                     (unsigned long long)id);
  /* Returning SUCCESS hands the memory back to its owner, who may free it at
   * once: an operation still copying from or to it must end first. */
  if (c->pins > 0)
    return core_fail(LLMDD_FAILED, "cache %llu is in use by %d running operation(s)",
                     (unsigned long long)id, c->pins);
  for (int32_t i = 0; i < c->num_keys; i++) {
    const uint64_t *k = &c->keys[3 * i];
    struct map_entry *entry = host_map_find(&b->by_key, (struct map_key){k[0], k[1], k[2]});
    if (entry != NULL && entry->value == c) {
      host_fast_bump_key(b->fast, k[0], k[1], k[2]);
      host_map_remove(&b->by_key, entry);
      c->keys_held--;
    }
  }
  return host_book_release_id(b, id);
}

int32_t host_book_allocate(struct book *b, int32_t num_tensors, uint64_t tensor_bytes,
                      uint64_t batch_size, uint64_t layout_tag, const uint64_t *keys,
                      int32_t num_keys, bool in_host_pool, struct cache **out) {
  struct cache *c = new_cache(b, num_tensors, tensor_bytes, batch_size, layout_tag, num_keys);
  if (c == NULL) return LLMDD_OUT_OF_MEMORY;
  c->in_host_pool = in_host_pool;

  /* Memory before keys, as upstream: its CacheManager::Allocate takes every
   * tensor (LLM_OUT_OF_MEMORY) before CheckCacheKeys refuses a key already
   * bound (LLM_PARAM_INVALID). */
  uint64_t block = c->stride * (uint64_t)num_tensors;
  int32_t status = allocate_blocks(b, c, block);
  if (status == LLMDD_SUCCESS) {
    status = add_keys(b, c, keys, num_keys);
    if (status != LLMDD_SUCCESS) free_blocks(b, c, block);
  }
  if (status != LLMDD_SUCCESS) {
    free(c);
    return status;
  }

  list_cache(b, c);
  *out = c;
  return LLMDD_SUCCESS;
}

struct cache *host_book_find(const struct book *b, uint64_t id) {
  struct map_entry *entry = host_map_find(&b->by_id, id_key(id));
  return entry ? entry->value : NULL;
}

struct cache *host_book_find_key(const struct book *b, struct cache_key key, uint64_t *row) {
  struct map_entry *entry = host_map_find(&b->by_key, key_of(key));
  if (entry == NULL) return NULL;
  *row = (uint64_t)entry->aux;
  return entry->value;
}

int32_t host_book_release_id(struct book *b, uint64_t id) {
  struct map_entry *entry = host_map_find(&b->by_id, id_key(id));
  if (entry == NULL)
    return core_fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist",
                     (unsigned long long)id);
  struct cache *c = entry->value;
  host_fast_bump_id(b->fast, id);
  host_map_remove(&b->by_id, entry);
  c->id_held = false;
  release_if_unused(b, c);
  return LLMDD_SUCCESS;
}

int32_t host_book_release_key(struct book *b, struct cache_key key) {
  struct map_entry *entry = host_map_find(&b->by_key, key_of(key));
  if (entry == NULL)
    return core_fail(LLMDD_KV_CACHE_NOT_EXIST,
                     "no cache holds key (cluster %llu, req %llu, model %llu)",
                     (unsigned long long)key.cluster, (unsigned long long)key.req,
                     (unsigned long long)key.model);
  struct cache *c = entry->value;
  host_fast_bump_key(b->fast, key.cluster, key.req, key.model);
  host_map_remove(&b->by_key, entry);
  c->keys_held--;
  release_if_unused(b, c);
  return LLMDD_SUCCESS;
}

void host_book_consume_key(struct book *b, struct cache_key key, struct cache *c) {
  struct map_entry *entry = host_map_find(&b->by_key, key_of(key));
  if (entry == NULL || entry->value != c) return;
  host_fast_bump_key(b->fast, key.cluster, key.req, key.model);
  host_map_remove(&b->by_key, entry);
  c->keys_held--;
  release_if_unused(b, c);
}

void host_book_pin(struct cache *c) { c->pins++; }

void host_book_unpin(struct book *b, struct cache *c) {
  c->pins--;
  release_if_unused(b, c);
}
