/* Engines and the caches they own, as seen by the files that operate on them.
 *
 * Locking: each engine has one mutex guarding its pools, cache maps, cache
 * bookkeeping and link table. It is held briefly: long copies and network waits
 * run outside it, with the caches they touch pinned (by an operation of this
 * process or by a linked DECODER's pull) and the engine's `running` count raised
 * so finalize waits for them before unmapping the pools.
 *
 * Lock order: the engine lock, then a link's `lock` (ending a pull). Nothing
 * takes the engine lock while holding a link's or the server's locks, and the
 * engine lock is never held while waiting on a socket. */
#ifndef LLMDD_HOST_ENGINE_H
#define LLMDD_HOST_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "llmdd.h"
#include "map.h"
#include "options.h"
#include "pool.h"

struct link;
struct server;

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
  struct cache *prev, *next; /* engine->caches */
  uint64_t offsets[];        /* the cache's block in each device's pool */
};

struct engine {
  atomic_uint refs;       /* the handle table's, plus each call or operation using it */
  atomic_bool finalizing; /* set under the lock; read without it between chunks */
  pthread_mutex_t lock;
  pthread_cond_t idle; /* signalled when running drops to 0 while finalizing */
  int32_t role;
  uint64_t cluster_id;
  struct engine_options options;
  struct pool pools[MAX_DEVICES];
  bool pools_live;
  uint64_t next_cache_id;
  struct map caches_by_id;
  struct map caches_by_key;
  struct cache *caches; /* every cache still holding pool memory */
  int32_t running;      /* operations copying or waiting outside the lock */
  /* PROMPT and MIX: the cluster id's lock (pools are in shared memory). */
  int lock_fd;
  /* PROMPT and MIX with llm.listenIpInfo: the server DECODERs link to. Set at
   * init, stopped by finalize; never changes in between. */
  struct server *server;
  uint16_t listen_port;
  /* DECODER and MIX: the clusters linked to. */
  struct link *links[LLMDD_MAX_LINKS];
  int32_t num_links;
};

/* Resolves an engine handle, retains the engine and locks it. On success the
 * engine is usable (not finalizing); leave it with engine_leave(). */
int32_t engine_enter(uint64_t handle, struct engine **out);

/* Unlocks and releases an engine from engine_enter(). */
void engine_leave(struct engine *e);

void engine_retain(struct engine *e);
void engine_release(struct engine *e);

/* Cache bookkeeping, under the engine lock. */
struct cache *cache_find(struct engine *e, uint64_t id);
void cache_release_if_unused(struct engine *e, struct cache *c);

static inline uint64_t cache_row_bytes(const struct cache *c) {
  return c->tensor_bytes / c->batch_size;
}

static inline uint8_t *cache_tensor(const struct engine *e, const struct cache *c,
                                    int32_t device_index, int32_t tensor_index) {
  return e->pools[device_index].base + c->offsets[device_index] +
         (uint64_t)tensor_index * c->stride;
}

#endif
