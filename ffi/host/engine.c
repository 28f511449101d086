#define _DEFAULT_SOURCE 1
#include "engine.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "handles.h"
#include "link.h"
#include "llmdd.h"
#include "server.h"
#include "shm.h"

static void retain_object(void *object) { engine_retain(object); }

static struct handle_table engines = HANDLE_TABLE_INIT(HANDLE_KIND_ENGINE, retain_object);

void engine_retain(struct engine *e) {
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void engine_destroy(struct engine *e) {
  /* Finalize has already returned the memory; what is left is bookkeeping. */
  while (e->caches != NULL) {
    struct cache *c = e->caches;
    e->caches = c->next;
    free(c);
  }
  map_destroy(&e->caches_by_id);
  map_destroy(&e->caches_by_key);
  pthread_cond_destroy(&e->idle);
  pthread_mutex_destroy(&e->lock);
  free(e);
}

void engine_release(struct engine *e) {
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) engine_destroy(e);
}

/* Looks a handle up without locking the engine; the status says why it failed. */
static int32_t engine_acquire(uint64_t handle, struct engine **out) {
  void *object = NULL;
  switch (handle_acquire(&engines, handle, &object)) {
  case HANDLE_OK:
    *out = object;
    return LLMDD_SUCCESS;
  case HANDLE_STALE:
    return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                (unsigned long long)handle);
  default:
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                (unsigned long long)handle);
  }
}

int32_t engine_enter(uint64_t handle, struct engine **out) {
  struct engine *e = NULL;
  int32_t status = engine_acquire(handle, &e);
  if (status != LLMDD_SUCCESS) return status;
  pthread_mutex_lock(&e->lock);
  if (atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
    /* Finalize removed the handle after we found it. */
    pthread_mutex_unlock(&e->lock);
    engine_release(e);
    return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                (unsigned long long)handle);
  }
  *out = e;
  return LLMDD_SUCCESS;
}

void engine_leave(struct engine *e) {
  pthread_mutex_unlock(&e->lock);
  engine_release(e);
}

/* Creates the pools: shared for PROMPT and MIX (after taking the cluster id),
 * private for DECODER. On failure nothing is left behind. */
static int32_t create_pools(struct engine *e) {
  bool shared = e->role != LLMDD_ROLE_DECODER;
  if (shared) {
    int32_t status = shm_cluster_acquire(e->cluster_id, &e->lock_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
  for (int32_t d = 0; d < e->options.num_devices; d++) {
    char name[SHM_NAME_CAP];
    shm_pool_name(name, e->cluster_id, d);
    if (pool_init(&e->pools[d], e->options.pool_bytes, shared ? name : NULL) == 0) continue;
    int err = errno;
    char text[ERRNO_TEXT_CAP];
    for (int32_t i = 0; i < d; i++) pool_destroy(&e->pools[i]);
    if (shared) shm_cluster_release(e->cluster_id, e->lock_fd);
    e->lock_fd = -1;
    if (shared && err != ENOMEM)
      return fail(LLMDD_FAILED, "shared memory is unavailable: cannot create %s of %llu bytes: %s",
                  name, (unsigned long long)e->options.pool_bytes, errno_text(err, text));
    return fail(LLMDD_DEVICE_OUT_OF_MEMORY, "could not reserve %llu bytes for device %d: %s",
                (unsigned long long)e->options.pool_bytes, e->options.device_ids[d],
                errno_text(err, text));
  }
  e->pools_live = true;
  return LLMDD_SUCCESS;
}

static void destroy_pools(struct engine *e) {
  e->pools_live = false;
  for (int32_t d = 0; d < e->options.num_devices; d++) pool_destroy(&e->pools[d]);
  if (e->lock_fd >= 0) shm_cluster_release(e->cluster_id, e->lock_fd);
  e->lock_fd = -1;
}

LLMDD_API int32_t llmdd_engine_init(int32_t role, uint64_t cluster_id,
                                    const uint8_t *options, int32_t options_len,
                                    uint64_t *out_engine) {
  if (role != LLMDD_ROLE_PROMPT && role != LLMDD_ROLE_DECODER && role != LLMDD_ROLE_MIX)
    return fail(LLMDD_PARAM_INVALID,
                "role %d is not PROMPT (1), DECODER (2) or MIX (3)", role);
  if (out_engine == NULL) return fail(LLMDD_PARAM_INVALID, "out_engine is NULL");
  if (options_len < 0)
    return fail(LLMDD_PARAM_INVALID, "options_len %d is negative", options_len);
  if (options == NULL && options_len > 0)
    return fail(LLMDD_PARAM_INVALID, "options is NULL but options_len is %d", options_len);

  struct engine_options parsed;
  int32_t status = options_parse(options, options_len, &parsed);
  if (status != LLMDD_SUCCESS) return status;
  if (parsed.listen && role == LLMDD_ROLE_DECODER)
    return fail(LLMDD_PARAM_INVALID,
                "llm.listenIpInfo is for PROMPT and MIX engines: a DECODER links, it is not"
                " linked to");

  struct engine *e = calloc(1, sizeof *e);
  if (e == NULL) return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the engine");
  atomic_init(&e->refs, 1);
  atomic_init(&e->finalizing, false);
  pthread_mutex_init(&e->lock, NULL);
  pthread_cond_init(&e->idle, NULL);
  e->role = role;
  e->cluster_id = cluster_id;
  e->options = parsed;
  e->next_cache_id = 1;
  e->lock_fd = -1;

  status = create_pools(e);
  if (status == LLMDD_SUCCESS && parsed.listen) {
    status = server_start(e, &parsed.listen_address, &e->server, &e->listen_port);
    if (status != LLMDD_SUCCESS) destroy_pools(e);
  }
  if (status == LLMDD_SUCCESS && handle_insert(&engines, e, out_engine) != 0) {
    if (e->server != NULL) server_stop(e->server);
    destroy_pools(e);
    status = fail(LLMDD_OUT_OF_MEMORY, "out of host memory for engine handles");
  }
  if (status != LLMDD_SUCCESS) engine_destroy(e);
  return status;
}

LLMDD_API int32_t llmdd_engine_finalize(uint64_t engine) {
  void *object = NULL;
  switch (handle_remove(&engines, engine, &object)) {
  case HANDLE_OK:
    break;
  case HANDLE_STALE:
    return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has already been finalized",
                (unsigned long long)engine);
  default:
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                (unsigned long long)engine);
  }
  /* From here no new call can find the engine. Calls that found it earlier either
   * wait for the lock and then see `finalizing`, or are copying or waiting
   * (running) and stop at their next chunk boundary or wait slice. */
  struct engine *e = object;
  pthread_mutex_lock(&e->lock);
  atomic_store_explicit(&e->finalizing, true, memory_order_relaxed);
  pthread_mutex_unlock(&e->lock);

  /* Its connection threads take the engine lock to drop their pins. */
  if (e->server != NULL) server_stop(e->server);
  e->server = NULL;

  pthread_mutex_lock(&e->lock);
  while (e->running > 0) pthread_cond_wait(&e->idle, &e->lock);
  /* Links: pulls accepted but not started hold their own references. */
  struct link *links[LLMDD_MAX_LINKS];
  int32_t num_links = e->num_links;
  memcpy(links, e->links, sizeof links);
  e->num_links = 0;

  /* Accepted background operations that have not started still pin their caches;
   * those structs live until unpinned, but no longer own pool memory. */
  e->pools_live = false;
  for (struct cache *c = e->caches, *next; c != NULL; c = next) {
    next = c->next;
    c->id_held = false;
    c->keys_held = 0;
    cache_release_if_unused(e, c);
  }
  map_destroy(&e->caches_by_id);
  map_destroy(&e->caches_by_key);
  destroy_pools(e);
  pthread_mutex_unlock(&e->lock);
  for (int32_t i = 0; i < num_links; i++) link_release(links[i]);
  engine_release(e); /* the handle table's reference */
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_engine_info(uint64_t engine, uint64_t *out) {
  struct engine *e = NULL;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  if (out == NULL) {
    engine_leave(e);
    return fail(LLMDD_PARAM_INVALID, "out is NULL");
  }
  out[0] = (uint64_t)e->options.num_devices;
  out[1] = LLMDD_INFO_HOST_ACCESSIBLE;
  out[2] = e->options.pool_bytes;
  out[3] = (uint64_t)e->role;
  out[4] = e->listen_port;
  engine_leave(e);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_pool_usage(uint64_t engine, int32_t device_index, uint64_t *out) {
  struct engine *e = NULL;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  if (device_index < 0 || device_index >= e->options.num_devices)
    status = fail(LLMDD_PARAM_INVALID, "device_index %d is out of range [0, %d)",
                  device_index, e->options.num_devices);
  else if (out == NULL)
    status = fail(LLMDD_PARAM_INVALID, "out is NULL");
  else {
    out[0] = e->pools[device_index].in_use;
    out[1] = e->pools[device_index].capacity;
  }
  engine_leave(e);
  return status;
}
