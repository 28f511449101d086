/* The engine object: what one llmdd engine handle names, its lifetime and lock.
 *
 * Locking: each engine has one mutex guarding its pools, cache book and link
 * table. It is held briefly: long copies and network waits run outside it, with
 * the caches they touch pinned (by an operation of this process or by a linked
 * DECODER's pull) and the engine's `running` count raised so finalize waits for
 * them before unmapping the pools.
 *
 * Lock order (the only place it is written down; docs/DESIGN.md points here):
 * the engine lock, then a link's `lock` (ending a pull). Nothing takes the engine
 * lock while holding a link's or the server's locks, and the engine lock is never
 * held while waiting on a socket. The core's locks (handle tables, job messages,
 * the worker queue) are innermost: nothing is taken while one is held. */
#ifndef LLMDD_HOST_ENGINE_H
#define LLMDD_HOST_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "book.h"
#include "llmdd.h"
#include "options.h"
#include "pool.h"

struct link;
struct server;

struct engine {
  atomic_uint refs;       /* the handle table's, plus each call or operation using it */
  atomic_bool finalizing; /* set under the lock; read without it between chunks */
  pthread_mutex_t lock;
  pthread_cond_t idle; /* signalled when running drops to 0 while finalizing */
  int32_t role;
  uint64_t cluster_id;
  struct engine_options options;
  struct pool pools[MAX_DEVICES];
  struct pool host_pool; /* llm.HostMemPoolConfig's (book.host_pool points here), or unused */
  struct book book;
  int32_t running; /* operations copying or waiting outside the lock */
  /* PROMPT and MIX: the cluster id's lock (pools are in shared memory). */
  int lock_fd;
  /* PROMPT and MIX with llm.listenIpInfo: the server DECODERs link to. Set at
   * init or by llmdd_engine_set_role (under the lock), stopped by finalize or a
   * switch to DECODER. */
  struct server *server;
  uint16_t listen_port;
  /* Whether this engine has ever linked to a PROMPT (llmdd_link): no
   * remote-accessible registration after that, as upstream's _is_call_linked,
   * which only the linking side sets. */
  bool ever_linked;
  /* DECODER and MIX: the clusters linked to. */
  struct link *links[LLMDD_MAX_LINKS];
  int32_t num_links;
};

/* A new engine (one reference, no pools yet), or NULL out of memory. */
struct engine *host_engine_create(int32_t role, uint64_t cluster_id,
                             const struct engine_options *options);

/* Gives e a handle: SUCCESS, or OUT_OF_MEMORY with a message. */
int32_t host_engine_register(struct engine *e, uint64_t *out_handle);

/* Takes the engine named by handle out of the table (finalize): no call can
 * find it from then on. The table's reference passes to the caller.
 * Returns SUCCESS, ENGINE_FINALIZED (already) or PARAM_INVALID. */
int32_t host_engine_unregister(uint64_t handle, struct engine **out);

/* Resolves an engine handle, retains the engine and locks it. On success the
 * engine is usable (not finalizing); leave it with host_engine_leave(). */
int32_t host_engine_enter(uint64_t handle, struct engine **out);

/* Unlocks and releases an engine from host_engine_enter(). */
void host_engine_leave(struct engine *e);

void host_engine_retain(struct engine *e);

/* Drops a reference; the last frees the engine (whose pools, server and links
 * finalize has already let go of). */
void host_engine_release(struct engine *e);

#endif
