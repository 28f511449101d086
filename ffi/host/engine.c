#define _DEFAULT_SOURCE 1
#include "engine.h"

#include <stdlib.h>

#include "core/error.h"
#include "core/handles.h"
#include "llmdd.h"

static void retain_object(void *context, void *object) {
  (void)context;
  host_engine_retain(object);
}

static struct core_handle_table engines =
    CORE_HANDLE_TABLE_INIT(CORE_HANDLE_ENGINE, retain_object);

struct engine *host_engine_create(int32_t role, uint64_t cluster_id,
                             const struct engine_options *options) {
  struct engine *e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  atomic_init(&e->refs, 1);
  atomic_init(&e->finalizing, false);
  pthread_mutex_init(&e->lock, NULL);
  pthread_cond_init(&e->idle, NULL);
  e->role = role;
  e->cluster_id = cluster_id;
  e->options = *options;
  e->lock_fd = -1;
  host_book_init(&e->book, e->pools, e->options.num_devices, e->options.device_ids);
  return e;
}

void host_engine_retain(struct engine *e) {
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

void host_engine_release(struct engine *e) {
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
  host_book_destroy(&e->book);
  pthread_cond_destroy(&e->idle);
  pthread_mutex_destroy(&e->lock);
  free(e);
}

int32_t host_engine_register(struct engine *e, uint64_t *out_handle) {
  if (core_handle_insert(&engines, e, out_handle) != 0)
    return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for engine handles");
  return LLMDD_SUCCESS;
}

int32_t host_engine_unregister(uint64_t handle, struct engine **out) {
  void *object = NULL;
  switch (core_handle_remove(&engines, handle, &object)) {
  case CORE_HANDLE_OK:
    *out = object;
    return LLMDD_SUCCESS;
  case CORE_HANDLE_STALE:
    return core_fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has already been finalized",
                     (unsigned long long)handle);
  default:
    return core_fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                     (unsigned long long)handle);
  }
}

/* Looks a handle up without locking the engine; the status says why it failed. */
static int32_t engine_acquire(uint64_t handle, struct engine **out) {
  void *object = NULL;
  switch (core_handle_acquire(&engines, handle, &object)) {
  case CORE_HANDLE_OK:
    *out = object;
    return LLMDD_SUCCESS;
  case CORE_HANDLE_STALE:
    return core_fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                     (unsigned long long)handle);
  default:
    return core_fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                     (unsigned long long)handle);
  }
}

int32_t host_engine_enter(uint64_t handle, struct engine **out) {
  struct engine *e = NULL;
  int32_t status = engine_acquire(handle, &e);
  if (status != LLMDD_SUCCESS) return status;
  pthread_mutex_lock(&e->lock);
  if (atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
    /* Finalize removed the handle after we found it. */
    pthread_mutex_unlock(&e->lock);
    host_engine_release(e);
    return core_fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                     (unsigned long long)handle);
  }
  *out = e;
  return LLMDD_SUCCESS;
}

void host_engine_leave(struct engine *e) {
  pthread_mutex_unlock(&e->lock);
  host_engine_release(e);
}
