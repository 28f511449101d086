/* An engine's life: llmdd_engine_init, llmdd_engine_finalize, and the two calls
 * that describe it (llmdd_engine_info, llmdd_pool_usage). */
#define _DEFAULT_SOURCE 1
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "fast.h"
#include "engine.h"
#include "link.h"
#include "llmdd.h"
#include "net.h"
#include "server.h"
#include "rundir.h"
#include "ucx.h"

static void destroy_pools(struct engine *e);

/* llmdd.reservePools=1: every device pool's memory is taken now, as upstream
 * takes its pool's device memory at init, and stays (pool.h). */
static int32_t reserve_pools(struct engine *e) {
  for (int32_t d = 0; d < e->options.num_devices; d++) {
    int err = host_pool_reserve(&e->pools[d]);
    if (err == 0) continue;
    char text[CORE_ERRNO_TEXT_CAP];
    return core_fail(LLMDD_DEVICE_OUT_OF_MEMORY,
                     "llmdd.reservePools: could not reserve the %llu bytes of device %d's pool: %s",
                     (unsigned long long)e->options.pool_bytes, e->options.device_ids[d],
                     core_errno_text(err, text));
  }
  return LLMDD_SUCCESS;
}

/* Creates the pools: shared for PROMPT and MIX (after taking the cluster id),
 * private for DECODER. On failure nothing is left behind. */
static int32_t create_pools(struct engine *e) {
  /* An engine that may become a PROMPT later is created as one would be. */
  bool shared = e->role != LLMDD_ROLE_DECODER || e->options.switch_role;
  if (shared) {
    int32_t status = host_cluster_acquire(e->cluster_id, &e->lock_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
  for (int32_t d = 0; d < e->options.num_devices; d++) {
    if (host_pool_init(&e->pools[d], e->options.pool_bytes, shared) == 0) continue;
    int err = errno;
    char text[CORE_ERRNO_TEXT_CAP];
    for (int32_t i = 0; i < d; i++) host_pool_destroy(&e->pools[i]);
    if (shared) host_cluster_release(e->cluster_id, e->lock_fd);
    e->lock_fd = -1;
    if (shared && err != ENOMEM)
      return core_fail(LLMDD_FAILED,
                       "shared memory is unavailable: cannot create the pool of device %d"
                       " (%llu bytes): %s",
                       e->options.device_ids[d], (unsigned long long)e->options.pool_bytes,
                       core_errno_text(err, text));
    return core_fail(LLMDD_DEVICE_OUT_OF_MEMORY, "could not reserve %llu bytes for device %d: %s",
                     (unsigned long long)e->options.pool_bytes, e->options.device_ids[d],
                     core_errno_text(err, text));
  }
  /* The host pool stands in for host memory of the process: private. */
  if (e->options.host_pool_bytes > 0) {
    if (host_pool_init(&e->host_pool, e->options.host_pool_bytes, false) != 0) {
      char text[CORE_ERRNO_TEXT_CAP];
      int err = errno;
      for (int32_t d = 0; d < e->options.num_devices; d++) host_pool_destroy(&e->pools[d]);
      if (shared) host_cluster_release(e->cluster_id, e->lock_fd);
      e->lock_fd = -1;
      return core_fail(LLMDD_OUT_OF_MEMORY, "could not reserve %llu bytes for the host pool: %s",
                       (unsigned long long)e->options.host_pool_bytes, core_errno_text(err, text));
    }
    e->book.host_pool = &e->host_pool;
  }
  if (e->options.reserve_pools) {
    int32_t status = reserve_pools(e);
    if (status != LLMDD_SUCCESS) {
      destroy_pools(e);
      return status;
    }
  }
  /* Without a generation page DECODERs still pull, each time with a LOOKUP. */
  if (shared) e->book.fast = host_fast_page_new();
  return LLMDD_SUCCESS;
}

static void destroy_pools(struct engine *e) {
  host_fast_page_free(e->book.fast);
  e->book.fast = NULL;
  for (int32_t d = 0; d < e->options.num_devices; d++) host_pool_destroy(&e->pools[d]);
  if (e->book.host_pool != NULL) host_pool_destroy(e->book.host_pool);
  e->book.host_pool = NULL;
  if (e->lock_fd >= 0) host_cluster_release(e->cluster_id, e->lock_fd);
  e->lock_fd = -1;
}

/* The option text of an engine that will have `role` (at init, or on a role
 * switch): its length, its syntax, and that only PROMPT and MIX listen. */
static int32_t parse_for_role(int32_t role, const uint8_t *options, int32_t options_len,
                              struct engine_options *parsed) {
  if (options_len < 0)
    return core_fail(LLMDD_PARAM_INVALID, "options_len %d is negative", options_len);
  if (options == NULL && options_len > 0)
    return core_fail(LLMDD_PARAM_INVALID, "options is NULL but options_len is %d",
                     options_len);
  int32_t status = host_options_parse(options, options_len, parsed);
  if (status != LLMDD_SUCCESS) return status;
  if (parsed->listen && role == LLMDD_ROLE_DECODER)
    return core_fail(LLMDD_PARAM_INVALID,
                     "llm.listenIpInfo is for PROMPT and MIX engines: a DECODER links, it is not"
                     " linked to");
  /* Asked for by name: say now, not at the first link, that UCX is missing. */
  if (parsed->transport == TRANSPORT_UCX && role != LLMDD_ROLE_PROMPT)
    return host_ucx_load(LLMDD_FEATURE_NOT_ENABLED);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_engine_init(int32_t role, uint64_t cluster_id,
                                    const uint8_t *options, int32_t options_len,
                                    uint64_t *out_engine) {
  if (role != LLMDD_ROLE_PROMPT && role != LLMDD_ROLE_DECODER && role != LLMDD_ROLE_MIX)
    return core_fail(LLMDD_PARAM_INVALID,
                     "role %d is not PROMPT (1), DECODER (2) or MIX (3)", role);
  if (out_engine == NULL) return core_fail(LLMDD_PARAM_INVALID, "out_engine is NULL");

  struct engine_options parsed;
  int32_t status = parse_for_role(role, options, options_len, &parsed);
  if (status != LLMDD_SUCCESS) return status;
  /* Loopback is reachable from this machine only, where the user's own key
   * authenticates links with no configuration. Any other address is reachable
   * from elsewhere: it takes a secret chosen by whoever deploys the engines. */
  if (parsed.listen && !host_net_is_loopback(&parsed.listen_address) && parsed.secret_len == 0) {
    char where[NET_ADDRESS_TEXT];
    host_net_format_address(&parsed.listen_address, where);
    return core_fail(LLMDD_PARAM_INVALID,
                     "llm.listenIpInfo %s is not a loopback address, so other machines can"
                     " connect to it: set llmdd.linkSecret (%d to %d bytes, the same on this"
                     " PROMPT and its DECODERs) to authenticate links, or listen on 127.0.0.1",
                     where, SECRET_MIN, SECRET_CAP);
  }

  struct engine *e = host_engine_create(role, cluster_id, &parsed);
  if (e == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the engine");
  status = create_pools(e);
  if (status == LLMDD_SUCCESS && parsed.listen) {
    status = host_server_start(e, &parsed.listen_address, &e->server, &e->listen_port);
    if (status != LLMDD_SUCCESS) destroy_pools(e);
  }
  if (status == LLMDD_SUCCESS) {
    status = host_engine_register(e, out_engine);
    if (status != LLMDD_SUCCESS) {
      if (e->server != NULL) host_server_stop(e->server);
      destroy_pools(e);
    }
  }
  if (status != LLMDD_SUCCESS) host_engine_release(e);
  return status;
}

LLMDD_API int32_t llmdd_engine_finalize(uint64_t engine) {
  struct engine *e = NULL;
  int32_t status = host_engine_unregister(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  /* From here no new call can find the engine. Calls that found it earlier either
   * wait for the lock and then see `finalizing`, or are copying or waiting
   * (running) and stop at their next chunk boundary or wait slice. */
  pthread_mutex_lock(&e->lock);
  atomic_store_explicit(&e->finalizing, true, memory_order_relaxed);
  /* Taken under the lock: llmdd_engine_set_role may be replacing it. */
  struct server *server = e->server;
  e->server = NULL;
  pthread_mutex_unlock(&e->lock);

  /* Its connection threads take the engine lock to drop their pins. */
  if (server != NULL) host_server_stop(server);

  pthread_mutex_lock(&e->lock);
  while (e->running > 0) pthread_cond_wait(&e->idle, &e->lock);
  /* Links: pulls accepted but not started hold their own references. */
  struct link *links[LLMDD_MAX_LINKS];
  int32_t num_links = e->num_links;
  memcpy(links, e->links, sizeof links);
  e->num_links = 0;

  /* Accepted background operations that have not started still pin their caches;
   * those structs live until unpinned, but no longer own pool memory. */
  host_book_close(&e->book);
  destroy_pools(e);
  pthread_mutex_unlock(&e->lock);
  for (int32_t i = 0; i < num_links; i++) host_link_release(links[i]);
  host_engine_release(e); /* the handle table's reference */
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_engine_info(uint64_t engine, uint64_t *out) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  if (out == NULL) {
    host_engine_leave(e);
    return core_fail(LLMDD_PARAM_INVALID, "out is NULL");
  }
  out[0] = (uint64_t)e->options.num_devices;
  out[1] = LLMDD_INFO_HOST_ACCESSIBLE;
  out[2] = e->options.pool_bytes;
  out[3] = (uint64_t)e->role;
  out[4] = e->listen_port;
  host_engine_leave(e);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_pool_usage(uint64_t engine, int32_t device_index, uint64_t *out) {
  struct engine *e = NULL;
  int32_t status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  if (device_index < 0 || device_index >= e->options.num_devices)
    status = core_fail(LLMDD_PARAM_INVALID, "device_index %d is out of range [0, %d)",
                       device_index, e->options.num_devices);
  else if (out == NULL)
    status = core_fail(LLMDD_PARAM_INVALID, "out is NULL");
  else {
    out[0] = e->pools[device_index].in_use;
    out[1] = e->pools[device_index].capacity;
  }
  host_engine_leave(e);
  return status;
}

LLMDD_API int32_t llmdd_engine_set_role(uint64_t engine, int32_t role,
                                        const uint8_t *options, int32_t options_len) {
  if (role != LLMDD_ROLE_PROMPT && role != LLMDD_ROLE_DECODER && role != LLMDD_ROLE_MIX)
    return core_fail(LLMDD_PARAM_INVALID,
                     "role %d is not PROMPT (1), DECODER (2) or MIX (3)", role);
  struct engine_options parsed;
  int32_t status = parse_for_role(role, options, options_len, &parsed);
  if (status != LLMDD_SUCCESS) return status;

  struct engine *e = NULL;
  status = host_engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  if (!e->options.switch_role)
    status = core_fail(LLMDD_FEATURE_NOT_ENABLED,
                       "switching roles needs llm.EnableSwitchRole=1 at init (the pools of an"
                       " engine that may become a PROMPT are made shareable then)");
  else if (role == LLMDD_ROLE_PROMPT && e->num_links > 0)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "the engine is linked to %d cluster(s): unlink them before it becomes a"
                       " PROMPT",
                       e->num_links);
  else if (parsed.listen && !host_net_is_loopback(&parsed.listen_address) &&
           e->options.secret_len == 0)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "llm.listenIpInfo is not a loopback address: llmdd.linkSecret must be set"
                       " at init to listen there");
  /* The server goes when the engine stops being listened to: as a DECODER, or
   * when a new address is given. It is stopped outside the engine lock, because
   * its connection threads take that lock to drop their pins. */
  struct server *old = NULL;
  if (status == LLMDD_SUCCESS && (role == LLMDD_ROLE_DECODER || parsed.listen)) {
    old = e->server;
    e->server = NULL;
    e->listen_port = 0;
  }
  if (status == LLMDD_SUCCESS) e->role = role;
  pthread_mutex_unlock(&e->lock);
  if (old != NULL) host_server_stop(old);
  if (status == LLMDD_SUCCESS && parsed.listen) {
    struct server *server = NULL;
    uint16_t port = 0;
    status = host_server_start(e, &parsed.listen_address, &server, &port);
    pthread_mutex_lock(&e->lock);
    if (status == LLMDD_SUCCESS && atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
      /* Finalize ran meanwhile and saw no server: this one is stopped here. */
      pthread_mutex_unlock(&e->lock);
      host_server_stop(server);
      pthread_mutex_lock(&e->lock);
      status = core_fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized during the switch");
    } else if (status == LLMDD_SUCCESS) {
      e->server = server;
      e->listen_port = port;
    }
    pthread_mutex_unlock(&e->lock);
  }
  host_engine_release(e);
  return status;
}
