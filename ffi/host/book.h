/* The cache book: every cache of one engine, by id and by key, and what keeps
 * each cache's memory in the pools. This file is the only one that changes a
 * cache's `id_held`, `keys_held` and `pins`, or the maps; everything else asks it.
 *
 * Not thread-safe: every call is made under the owning engine's lock. */
#ifndef LLMDD_HOST_BOOK_H
#define LLMDD_HOST_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"
#include "pool.h"

struct fast_page;

struct cache {
  uint64_t id;
  int32_t num_tensors;
  uint64_t tensor_bytes;
  uint64_t batch_size; /* rows of tensor_bytes / batch_size bytes */
  uint64_t layout_tag;
  uint64_t stride; /* tensor_bytes rounded up to POOL_ALIGN */
  /* The memory returns to the pools when all three reach zero. */
  bool id_held;      /* not yet llmdd_cache_deallocate()d */
  int32_t keys_held; /* cache keys naming it */
  int32_t pins;      /* operations accepted or running on it, and DECODERs' pulls */
  /* Where the memory is: each device's pool (offsets), the host pool (one block,
   * offsets[0], seen by every device), or the caller's (registered: tensors). */
  bool in_host_pool;
  bool remote; /* linked peers may push into it (remote-accessible; set by cache.c) */
  uint8_t **registered; /* [device * num_tensors + tensor], or NULL; never freed here */
  uint64_t *keys;       /* registered caches: their keys (3 words each), to drop them */
  int32_t num_keys;
  struct cache *prev, *next; /* book->caches */
  uint64_t offsets[];        /* the cache's block in each device's pool */
};

struct book {
  struct pool *pools; /* the engine's, one per device */
  struct pool *host_pool; /* llm.HostMemPoolConfig's, or NULL */
  int32_t num_devices;
  const int32_t *device_ids; /* for messages */
  bool pools_live;           /* false once finalize returned the pools */
  uint64_t next_id;
  struct map by_id;
  struct map by_key;
  struct cache *caches; /* every cache still holding pool memory, or still pinned */
  /* Shared pools only: the generation page DECODERs check before trusting an
   * answer they kept (fast.h); bumped here whenever an id or key goes. */
  struct fast_page *fast;
};

/* A cache key: (prompt cluster id, req id, model id). */
struct cache_key {
  uint64_t cluster, req, model;
};

void host_book_init(struct book *b, struct pool *pools, int32_t num_devices,
               const int32_t *device_ids);

/* Frees what is left (the engine is going away; its pools are gone already). */
void host_book_destroy(struct book *b);

/* Finalize: every id and key is released and the pools are about to go. Caches
 * still pinned (by operations accepted but not started) stay listed, without
 * memory, until unpinned. */
void host_book_close(struct book *b);

/* Places a new cache in every pool and registers its keys (key i names row i);
 * the arguments are already valid. On failure nothing is left and the status has
 * a message: PARAM_INVALID (a key repeats or is held), DEVICE_OUT_OF_MEMORY,
 * OUT_OF_MEMORY. */
int32_t host_book_allocate(struct book *b, int32_t num_tensors, uint64_t tensor_bytes,
                      uint64_t batch_size, uint64_t layout_tag, const uint64_t *keys,
                      int32_t num_keys, bool in_host_pool, struct cache **out);

/* Records caller-owned memory as a cache (llmdd_cache_register): addrs are
 * num_devices * num_tensors tensor addresses, already checked. Fails like
 * host_book_allocate. */
int32_t host_book_register(struct book *b, int32_t num_tensors, uint64_t tensor_bytes,
                           uint64_t batch_size, uint64_t layout_tag, const uint64_t *addrs,
                           const uint64_t *keys, int32_t num_keys, struct cache **out);

/* Unregisters a registered cache: its id and keys go at once (llmdd_cache_unregister).
 * SUCCESS; KV_CACHE_NOT_EXIST; PARAM_INVALID (allocated, not registered); FAILED
 * (pinned by an operation). */
int32_t host_book_unregister(struct book *b, uint64_t id);

/* The cache of that id, or NULL. */
struct cache *host_book_find(const struct book *b, uint64_t id);

/* The cache a key names and its row, or NULL. */
struct cache *host_book_find_key(const struct book *b, struct cache_key key, uint64_t *row);

/* Releases an id (llmdd_cache_deallocate): SUCCESS, or KV_CACHE_NOT_EXIST. */
int32_t host_book_release_id(struct book *b, uint64_t id);

/* Releases a key (llmdd_cache_key_remove): SUCCESS, or KV_CACHE_NOT_EXIST. */
int32_t host_book_release_key(struct book *b, struct cache_key key);

/* Releases a key if it still names cache c (a pull that consumed it). */
void host_book_consume_key(struct book *b, struct cache_key key, struct cache *c);

/* Keeps c's memory in place while an operation outside the lock uses it. */
void host_book_pin(struct cache *c);

/* Drops a pin; the memory returns to the pools if nothing else holds it. */
void host_book_unpin(struct book *b, struct cache *c);

static inline uint64_t host_cache_row_bytes(const struct cache *c) {
  return c->tensor_bytes / c->batch_size;
}

static inline uint8_t *host_cache_tensor(const struct book *b, const struct cache *c,
                                    int32_t device_index, int32_t tensor_index) {
  if (c->registered != NULL)
    return c->registered[(int64_t)device_index * c->num_tensors + tensor_index];
  if (c->in_host_pool) return b->host_pool->base + c->offsets[0] + (uint64_t)tensor_index * c->stride;
  return b->pools[device_index].base + c->offsets[device_index] +
         (uint64_t)tensor_index * c->stride;
}

/* Whether a linked DECODER reaches the cache through its mapping of the device
 * pools; anything else (registered memory, the host pool) it reaches through
 * the link's socket (stream.h). */
static inline bool host_cache_in_device_pools(const struct cache *c) {
  return c->registered == NULL && !c->in_host_pool;
}

#endif
