/* UCX as a link's data path (ucx.h): loading libucp, the PROMPT's side (worker,
 * progress thread, mapped pools, packed keys) and the DECODER's (endpoint,
 * unpacked keys, batched one-sided reads). */
#define _GNU_SOURCE 1
#include "ucx.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/workers.h"
#include "llmdd.h"
#include "net.h"
#include "ucx_api.h"

/* ---- loading ---- */

static struct {
  pthread_mutex_t lock;
  bool loaded;
  void *library;
  ux_context_h context;
  ux_status_t (*config_read)(const char *, const char *, ux_config_t **);
  void (*config_release)(ux_config_t *);
  ux_status_t (*config_modify)(ux_config_t *, const char *, const char *);
  ux_status_t (*init_version)(unsigned, unsigned, const struct ux_params *, const ux_config_t *,
                              ux_context_h *);
  ux_status_t (*worker_create)(ux_context_h, const struct ux_worker_params *, ux_worker_h *);
  void (*worker_destroy)(ux_worker_h);
  ux_status_t (*worker_get_address)(ux_worker_h, ux_address_t **, size_t *);
  void (*worker_release_address)(ux_worker_h, ux_address_t *);
  unsigned (*worker_progress)(ux_worker_h);
  ux_status_t (*worker_fence)(ux_worker_h);
  ux_status_t (*worker_get_efd)(ux_worker_h, int *);
  ux_status_t (*worker_arm)(ux_worker_h);
  ux_status_t (*ep_create)(ux_worker_h, const struct ux_ep_params *, ux_ep_h *);
  ux_status_ptr_t (*ep_close_nbx)(ux_ep_h, const struct ux_request_param *);
  ux_status_t (*mem_map)(ux_context_h, const struct ux_mem_map_params *, ux_mem_h *);
  ux_status_t (*mem_unmap)(ux_context_h, ux_mem_h);
  ux_status_t (*rkey_pack)(ux_context_h, ux_mem_h, void **, size_t *);
  void (*rkey_buffer_release)(void *);
  ux_status_t (*ep_rkey_unpack)(ux_ep_h, const void *, ux_rkey_h *);
  void (*rkey_destroy)(ux_rkey_h);
  ux_status_ptr_t (*get_nbx)(ux_ep_h, void *, size_t, uint64_t, ux_rkey_h,
                             const struct ux_request_param *);
  ux_status_ptr_t (*put_nbx)(ux_ep_h, const void *, size_t, uint64_t, ux_rkey_h,
                             const struct ux_request_param *);
  ux_status_ptr_t (*ep_flush_nbx)(ux_ep_h, const struct ux_request_param *);
  void (*request_free)(void *);
  ux_status_t (*request_check_status)(void *);
  const char *(*status_string)(ux_status_t);
} U = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define INSTALL_HINT                                                                            \
  "install UCX (Debian and Ubuntu: apt-get install libucx0), or link with llmdd.transport=shm" \
  " (engines on the same machine only)"

static const char *status_text(ux_status_t s) {
  return U.status_string != NULL ? U.status_string(s) : "UCX error";
}

/* dlsym of every function, or the name of the first one missing. */
static const char *resolve(void *h) {
#define SYM(field, name)                                  \
  do {                                                    \
    *(void **)&U.field = dlsym(h, name);                  \
    if (U.field == NULL) return name;                     \
  } while (0)
  SYM(config_read, "ucp_config_read");
  SYM(config_release, "ucp_config_release");
  SYM(config_modify, "ucp_config_modify");
  SYM(init_version, "ucp_init_version");
  SYM(worker_create, "ucp_worker_create");
  SYM(worker_destroy, "ucp_worker_destroy");
  SYM(worker_get_address, "ucp_worker_get_address");
  SYM(worker_release_address, "ucp_worker_release_address");
  SYM(worker_progress, "ucp_worker_progress");
  SYM(worker_fence, "ucp_worker_fence");
  SYM(worker_get_efd, "ucp_worker_get_efd");
  SYM(worker_arm, "ucp_worker_arm");
  SYM(ep_create, "ucp_ep_create");
  SYM(ep_close_nbx, "ucp_ep_close_nbx");
  SYM(mem_map, "ucp_mem_map");
  SYM(mem_unmap, "ucp_mem_unmap");
  SYM(rkey_pack, "ucp_rkey_pack");
  SYM(rkey_buffer_release, "ucp_rkey_buffer_release");
  SYM(ep_rkey_unpack, "ucp_ep_rkey_unpack");
  SYM(rkey_destroy, "ucp_rkey_destroy");
  SYM(get_nbx, "ucp_get_nbx");
  SYM(put_nbx, "ucp_put_nbx");
  SYM(ep_flush_nbx, "ucp_ep_flush_nbx");
  SYM(request_free, "ucp_request_free");
  SYM(request_check_status, "ucp_request_check_status");
  SYM(status_string, "ucs_status_string");
#undef SYM
  return NULL;
}

/* UCX settings this library chooses for the TCP transport, unless the
 * environment sets them. Over TCP UCX serves a read with messages of one segment
 * each; its default segments (8 KiB out, 64 KiB in) made pulls about half as
 * fast (bench/ucx.bench.ts). ucp_config_modify takes a transport's key without
 * its prefix (only TCP has these two), and UCX warns about a key no transport
 * used: they are set only when UCX_TLS leaves TCP in. */
static const struct {
  const char *variable, *key, *value;
} DEFAULTS[] = {{"UCX_TCP_TX_SEG_SIZE", "TX_SEG_SIZE", "256k"},
                {"UCX_TCP_RX_SEG_SIZE", "RX_SEG_SIZE", "1m"}};

static bool tcp_in_use(void) {
  const char *tls = getenv("UCX_TLS");
  if (tls == NULL || tls[0] == '\0' || strcmp(tls, "all") == 0) return true;
  bool listed = strstr(tls, "tcp") != NULL;
  return tls[0] == '^' ? !listed : listed;
}

static void apply_defaults(ux_config_t *config) {
  if (!tcp_in_use()) return;
  for (size_t i = 0; i < sizeof DEFAULTS / sizeof DEFAULTS[0]; i++)
    if (getenv(DEFAULTS[i].variable) == NULL) U.config_modify(config, DEFAULTS[i].key, DEFAULTS[i].value);
}

/* UCX settings this library needs in a process that is a JavaScript runtime,
 * unless the environment sets them, made before UCX is loaded (its memory
 * hooks read them then). UCX_MEM_EVENTS: UCX's hooks on mmap/munmap/brk
 * corrupted the heap of a Node PROMPT now and then (SIGSEGV inside malloc in 2
 * of 15 runs of test/ucx.test.ts's "PROMPT without remote access" case, 0 of 20
 * without the hooks); this library maps its memory with ucp_mem_map and needs
 * no memory events. UCX_ERROR_SIGNALS: UCX's SIGSEGV handler then called
 * malloc and hung the process forever; the runtime's own handling (a crash)
 * is better. */
static const struct {
  const char *variable, *value;
} PROCESS_DEFAULTS[] = {{"UCX_MEM_EVENTS", "no"}, {"UCX_ERROR_SIGNALS", ""}};

static int32_t load_locked(int32_t missing) {
  if (U.loaded) return LLMDD_SUCCESS;
  for (size_t i = 0; i < sizeof PROCESS_DEFAULTS / sizeof PROCESS_DEFAULTS[0]; i++)
    (void)setenv(PROCESS_DEFAULTS[i].variable, PROCESS_DEFAULTS[i].value, 0);
  const char *name = getenv(UCX_LIBRARY_ENV);
  if (name == NULL || name[0] == '\0') name = UCX_LIBRARY_DEFAULT;
  void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *why = dlerror();
    return core_fail(missing, "UCX is not available (cannot load %s: %s): " INSTALL_HINT,
                     name, why != NULL ? why : "unknown error");
  }
  const char *absent = resolve(h);
  if (absent != NULL) {
    dlclose(h);
    U.status_string = NULL;
    return core_fail(missing, "UCX at %s lacks %s (UCX 1.10 or later is needed): " INSTALL_HINT, name,
                     absent);
  }
  ux_config_t *config = NULL;
  ux_status_t s = U.config_read(NULL, NULL, &config);
  if (s == UX_OK) {
    apply_defaults(config);
    struct ux_params params = {.field_mask = UX_PARAM_FIELD_FEATURES,
                               .features = UX_FEATURE_RMA | UX_FEATURE_WAKEUP};
    s = U.init_version(UX_API_MAJOR, UX_API_MINOR, &params, config, &U.context);
    U.config_release(config);
  }
  if (s != UX_OK) {
    int32_t status = core_fail(missing,
                               "UCX could not start: %s (check the UCX_* environment variables,"
                               " e.g. UCX_TLS)",
                               status_text(s));
    dlclose(h);
    U.status_string = NULL;
    return status;
  }
  /* From here on for the life of the process: UCX's threads and handlers do
   * not survive an unload. */
  U.library = h;
  U.loaded = true;
  return LLMDD_SUCCESS;
}

int32_t host_ucx_load(int32_t missing) {
  pthread_mutex_lock(&U.lock);
  int32_t status = load_locked(missing);
  pthread_mutex_unlock(&U.lock);
  return status;
}

bool host_ucx_address_is_local(const struct sockaddr_in *a) {
  if (host_net_is_loopback(a)) return true;
  struct ifaddrs *list;
  if (getifaddrs(&list) != 0) return false;
  bool local = false;
  for (struct ifaddrs *i = list; i != NULL && !local; i = i->ifa_next) {
    if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET) continue;
    const struct sockaddr_in *mine = (const struct sockaddr_in *)(const void *)i->ifa_addr;
    local = mine->sin_addr.s_addr == a->sin_addr.s_addr;
  }
  freeifaddrs(list);
  return local;
}

/* ---- PROMPT ---- */

struct ucx_server {
  ux_worker_h worker;
  int efd;
  int wake[2];
  pthread_t thread;
  int32_t devices;
  bool writable; /* the keys allow remote writes */
  ux_mem_h memh[MAX_DEVICES];
  void *rkeys[MAX_DEVICES];
  size_t rkey_bytes[MAX_DEVICES];
  uint64_t bases[MAX_DEVICES];
  ux_address_t *address;
  size_t address_bytes;
  /* The generation page (fast.h), read-only to the DECODERs; NULL: none. */
  ux_mem_h page_memh;
  void *page_rkey;
  size_t page_rkey_bytes;
  uint64_t page_base;
};

static pthread_mutex_t server_start_lock = PTHREAD_MUTEX_INITIALIZER;

/* Serves the DECODERs' reads (over TCP UCX answers them with messages). */
static void *progress_main(void *arg) {
  struct ucx_server *s = arg;
  for (;;) {
    while (U.worker_progress(s->worker) != 0) {
    }
    ux_status_t armed = U.worker_arm(s->worker);
    if (armed == UX_ERR_BUSY) continue;
    struct pollfd p[2] = {{s->wake[0], POLLIN, 0}, {s->efd, POLLIN, 0}};
    int n = poll(p, armed == UX_OK ? 2 : 1, armed == UX_OK ? -1 : 1);
    if (n > 0 && p[0].revents != 0) break;
  }
  return NULL;
}

static void server_free(struct ucx_server *s) {
  for (int32_t d = 0; d < s->devices; d++) {
    if (s->rkeys[d] != NULL) U.rkey_buffer_release(s->rkeys[d]);
    if (s->memh[d] != NULL) U.mem_unmap(U.context, s->memh[d]);
  }
  if (s->page_rkey != NULL) U.rkey_buffer_release(s->page_rkey);
  if (s->page_memh != NULL) U.mem_unmap(U.context, s->page_memh);
  if (s->address != NULL) U.worker_release_address(s->worker, s->address);
  if (s->worker != NULL) U.worker_destroy(s->worker);
  free(s);
}

/* Maps [address, +bytes) with UCP and packs its key; false when UCX refused. */
static bool map_range(void *address, uint64_t bytes, bool writable, ux_mem_h *memh, void **rkey,
                      size_t *rkey_bytes) {
  /* Remote writes only where pushes may go (UCX's default grants them). */
  struct ux_mem_map_params mp = {
      .field_mask = UX_MEM_MAP_PARAM_FIELD_ADDRESS | UX_MEM_MAP_PARAM_FIELD_LENGTH |
                    UX_MEM_MAP_PARAM_FIELD_PROT,
      .address = address,
      .length = (size_t)bytes,
      .prot = UX_MEM_MAP_PROT_LOCAL_READ | UX_MEM_MAP_PROT_LOCAL_WRITE |
              UX_MEM_MAP_PROT_REMOTE_READ | (writable ? UX_MEM_MAP_PROT_REMOTE_WRITE : 0)};
  if (U.mem_map(U.context, &mp, memh) != UX_OK) {
    *memh = NULL;
    return false;
  }
  return U.rkey_pack(U.context, *memh, rkey, rkey_bytes) == UX_OK;
}

static int32_t server_start(uint8_t *const *pools, int32_t devices, uint64_t pool_bytes,
                            bool writable, uint8_t *page, uint64_t page_bytes,
                            struct ucx_server **out) {
  int32_t status = host_ucx_load(LLMDD_FEATURE_NOT_ENABLED);
  if (status != LLMDD_SUCCESS) return LLMDD_FEATURE_NOT_ENABLED;
  struct ucx_server *s = calloc(1, sizeof *s);
  if (s == NULL) return LLMDD_OUT_OF_MEMORY;
  s->devices = devices;
  s->writable = writable;
  struct ux_worker_params wp = {.field_mask = UX_WORKER_PARAM_FIELD_THREAD_MODE,
                                .thread_mode = UX_THREAD_MODE_SERIALIZED};
  bool ok = U.worker_create(U.context, &wp, &s->worker) == UX_OK;
  if (!ok) s->worker = NULL;
  ok = ok && U.worker_get_efd(s->worker, &s->efd) == UX_OK;
  ok = ok && U.worker_get_address(s->worker, &s->address, &s->address_bytes) == UX_OK;
  for (int32_t d = 0; ok && d < devices; d++) {
    ok = map_range(pools[d], pool_bytes, writable, &s->memh[d], &s->rkeys[d], &s->rkey_bytes[d]);
    s->bases[d] = (uint64_t)(uintptr_t)pools[d];
  }
  if (ok && page != NULL) {
    ok = map_range(page, page_bytes, false, &s->page_memh, &s->page_rkey, &s->page_rkey_bytes);
    s->page_base = (uint64_t)(uintptr_t)page;
  }
  if (ok && pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) ok = false;
  else if (ok && core_thread_start(&s->thread, progress_main, s) != 0) {
    close(s->wake[0]);
    close(s->wake[1]);
    ok = false;
  }
  if (!ok) {
    server_free(s);
    return LLMDD_FAILED;
  }
  *out = s;
  return LLMDD_SUCCESS;
}

void host_ucx_answer(struct ucx_server **slot, uint8_t *const *pools, int32_t num_devices,
                     uint64_t pool_bytes, bool writable, uint8_t *page, uint64_t page_bytes,
                     struct msg_ucx_reply *r) {
  pthread_mutex_lock(&server_start_lock);
  struct core_kept_error kept;
  core_error_keep(&kept);
  r->status = *slot != NULL ? LLMDD_SUCCESS
                            : server_start(pools, num_devices, pool_bytes, writable, page,
                                           page_bytes, slot);
  core_error_restore(&kept);
  pthread_mutex_unlock(&server_start_lock);
  if (r->status != LLMDD_SUCCESS) return;
  const struct ucx_server *s = *slot;
  uint64_t blob = s->address_bytes + s->page_rkey_bytes;
  for (int32_t d = 0; d < s->devices; d++) blob += s->rkey_bytes[d];
  if (blob > UCX_BLOB_CAP) {
    r->status = LLMDD_PARAM_INVALID; /* the DECODER says: narrow UCX_TLS */
    return;
  }
  r->devices = (uint32_t)s->devices;
  r->flags = s->writable ? UCX_REPLY_WRITABLE : 0;
  r->address_bytes = (uint32_t)s->address_bytes;
  memcpy(r->blob, s->address, s->address_bytes);
  uint64_t at = s->address_bytes;
  for (int32_t d = 0; d < s->devices; d++) {
    r->bases[d] = s->bases[d];
    r->rkey_bytes[d] = (uint32_t)s->rkey_bytes[d];
    memcpy(r->blob + at, s->rkeys[d], s->rkey_bytes[d]);
    at += s->rkey_bytes[d];
  }
  if (s->page_rkey != NULL) {
    r->flags |= UCX_REPLY_GENERATIONS;
    r->page_base = s->page_base;
    r->page_rkey_bytes = (uint32_t)s->page_rkey_bytes;
    memcpy(r->blob + at, s->page_rkey, s->page_rkey_bytes);
  }
}

void host_ucx_server_stop(struct ucx_server *s) {
  if (s == NULL) return;
  ssize_t n;
  do n = write(s->wake[1], "x", 1);
  while (n < 0 && errno == EINTR);
  pthread_join(s->thread, NULL);
  close(s->wake[0]);
  close(s->wake[1]);
  server_free(s);
}

/* ---- the PROMPT's memory outside its pools, one pin at a time ---- */

struct ucx_pin_map {
  int32_t n;
  ux_mem_h memh[MAX_DEVICES];
  void *rkeys[MAX_DEVICES];
  size_t rkey_bytes[MAX_DEVICES];
};

/* Mappings are made and released under server_start_lock: the context is
 * not created for concurrent use (one PROMPT thread per connection maps). */
static void pin_unmap_locked(struct ucx_pin_map *m) {
  for (int32_t i = 0; i < m->n; i++) {
    if (m->rkeys[i] != NULL) U.rkey_buffer_release(m->rkeys[i]);
    if (m->memh[i] != NULL) U.mem_unmap(U.context, m->memh[i]);
  }
  free(m);
}

void host_ucx_pin_unmap(struct ucx_pin_map *m) {
  if (m == NULL) return;
  pthread_mutex_lock(&server_start_lock);
  pin_unmap_locked(m);
  pthread_mutex_unlock(&server_start_lock);
}

void host_ucx_pin_map(struct ucx_server **slot, uint8_t *const *addrs, int32_t n, uint64_t bytes,
                      bool writable, struct msg_ucx_reply *r, struct ucx_pin_map **out) {
  *out = NULL;
  r->status = LLMDD_FEATURE_NOT_ENABLED;
  if (n < 1 || n > MAX_DEVICES || bytes == 0 || bytes > SIZE_MAX) return;
  pthread_mutex_lock(&server_start_lock);
  struct ucx_pin_map *m = *slot != NULL ? calloc(1, sizeof *m) : NULL;
  if (m == NULL) {
    pthread_mutex_unlock(&server_start_lock);
    return;
  }
  bool ok = true;
  uint64_t blob = 0;
  for (int32_t i = 0; ok && i < n; i++) {
    /* Exactly what the pin lets the DECODER reach: reads, and writes only
     * through a LOOKUP_WRITE's pin (a remote-accessible cache). */
    struct ux_mem_map_params mp = {
        .field_mask = UX_MEM_MAP_PARAM_FIELD_ADDRESS | UX_MEM_MAP_PARAM_FIELD_LENGTH |
                      UX_MEM_MAP_PARAM_FIELD_PROT,
        .address = addrs[i],
        .length = (size_t)bytes,
        .prot = UX_MEM_MAP_PROT_LOCAL_READ | UX_MEM_MAP_PROT_LOCAL_WRITE |
                UX_MEM_MAP_PROT_REMOTE_READ | (writable ? UX_MEM_MAP_PROT_REMOTE_WRITE : 0)};
    m->n = i + 1;
    ok = U.mem_map(U.context, &mp, &m->memh[i]) == UX_OK;
    if (!ok) m->memh[i] = NULL;
    ok = ok && U.rkey_pack(U.context, m->memh[i], &m->rkeys[i], &m->rkey_bytes[i]) == UX_OK;
    if (ok) blob += m->rkey_bytes[i];
    r->bases[i] = (uint64_t)(uintptr_t)addrs[i];
    r->rkey_bytes[i] = ok ? (uint32_t)m->rkey_bytes[i] : 0;
  }
  if (!ok || blob > UCX_BLOB_CAP) {
    pin_unmap_locked(m);
    pthread_mutex_unlock(&server_start_lock);
    return;
  }
  pthread_mutex_unlock(&server_start_lock);
  uint64_t at = 0;
  for (int32_t i = 0; i < n; i++) {
    memcpy(r->blob + at, m->rkeys[i], m->rkey_bytes[i]);
    at += m->rkey_bytes[i];
  }
  r->status = LLMDD_SUCCESS;
  r->devices = (uint32_t)n;
  r->address_bytes = 0;
  r->flags = writable ? UCX_REPLY_WRITABLE : 0;
  *out = m;
}

/* ---- DECODER ---- */

struct ucx_link {
  ux_worker_h worker;
  int efd;
  ux_ep_h ep;
  int32_t devices;
  bool writable; /* the PROMPT's keys allow writes (UCX_REPLY_WRITABLE) */
  ux_rkey_h rkeys[MAX_DEVICES];
  uint64_t bases[MAX_DEVICES];
  ux_rkey_h page_rkey; /* the PROMPT's generation page (UCX_REPLY_GENERATIONS), or NULL */
  uint64_t page_base;
  bool has_page;
  atomic_int failure; /* the endpoint's error (UX_OK: none) */
  pthread_rwlock_t lock; /* issuing (read) against closing the endpoint (write) */
  bool closed;           /* the endpoint was closed by force (write lock) */
  char where[NET_ADDRESS_TEXT + 16];
};

static void on_ep_error(void *arg, ux_ep_h ep, ux_status_t status) {
  (void)ep;
  struct ucx_link *u = arg;
  int none = UX_OK;
  atomic_compare_exchange_strong(&u->failure, &none, status != UX_OK ? status : UX_ERR_CANCELED);
}

/* Waits (progressing) for a request with no callback, at most timeout_ms. */
static void wait_request(ux_worker_h w, ux_status_ptr_t req, int64_t timeout_ms) {
  if (req == NULL || UX_PTR_IS_ERR(req)) return;
  int64_t until = core_now_ns() + timeout_ms * 1000000;
  while (U.request_check_status(req) == UX_INPROGRESS && core_now_ns() < until)
    U.worker_progress(w);
  U.request_free(req);
}

/* Closes the endpoint by force: every read in flight completes (with an error),
 * and none can land later. */
static void close_endpoint(struct ucx_link *u) {
  pthread_rwlock_wrlock(&u->lock);
  if (!u->closed) {
    u->closed = true;
    for (int32_t d = 0; d < u->devices; d++)
      if (u->rkeys[d] != NULL) {
        U.rkey_destroy(u->rkeys[d]);
        u->rkeys[d] = NULL;
      }
    if (u->page_rkey != NULL) U.rkey_destroy(u->page_rkey);
    u->page_rkey = NULL;
    struct ux_request_param p = {.op_attr_mask = UX_OP_ATTR_FIELD_FLAGS,
                                 .flags = UX_EP_CLOSE_FLAG_FORCE};
    wait_request(u->worker, U.ep_close_nbx(u->ep, &p), UCX_DRAIN_MS);
  }
  pthread_rwlock_unlock(&u->lock);
}

int32_t host_ucx_link_open(const struct msg_ucx_reply *r, int32_t num_devices, const char *where,
                           const uint8_t **bases, struct ucx_link **out) {
  if (r->status == LLMDD_FEATURE_NOT_ENABLED)
    return core_fail(LLMDD_LINK_FAILED,
                     "the engine at %s cannot serve links over UCX: UCX is not available on its"
                     " machine (install libucx0 there)",
                     where);
  if (r->status == LLMDD_PARAM_INVALID)
    return core_fail(LLMDD_LINK_FAILED,
                     "the engine at %s has a UCX address and keys of more than %d bytes: narrow"
                     " UCX_TLS there",
                     where, UCX_BLOB_CAP);
  if (r->status != LLMDD_SUCCESS)
    return core_fail(LLMDD_LINK_FAILED, "the engine at %s could not start UCX (status 0x%08x)",
                     where, (unsigned)r->status);
  if ((int32_t)r->devices != num_devices)
    return core_fail(LLMDD_LINK_FAILED, "the engine at %s offered %u pools over UCX, not %d",
                     where, r->devices, num_devices);
  int32_t status = host_ucx_load(LLMDD_LINK_FAILED);
  if (status != LLMDD_SUCCESS) return status;
  struct ucx_link *u = calloc(1, sizeof *u);
  if (u == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a UCX link");
  atomic_init(&u->failure, UX_OK);
  pthread_rwlock_init(&u->lock, NULL);
  snprintf(u->where, sizeof u->where, "%s", where);
  u->devices = num_devices;
  u->writable = (r->flags & UCX_REPLY_WRITABLE) != 0;
  u->closed = true; /* until the endpoint exists */
  struct ux_worker_params wp = {.field_mask = UX_WORKER_PARAM_FIELD_THREAD_MODE,
                                .thread_mode = UX_THREAD_MODE_MULTI};
  ux_status_t s = U.worker_create(U.context, &wp, &u->worker);
  const char *step = "creating a worker";
  if (s == UX_OK) {
    step = "creating a wakeup descriptor";
    s = U.worker_get_efd(u->worker, &u->efd);
  } else {
    u->worker = NULL;
  }
  if (s == UX_OK) {
    step = "connecting to the PROMPT's worker";
    struct ux_ep_params ep = {
        .field_mask = UX_EP_PARAM_FIELD_REMOTE_ADDRESS | UX_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UX_EP_PARAM_FIELD_ERR_HANDLER,
        .address = (const ux_address_t *)(const void *)r->blob,
        .err_mode = UX_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = on_ep_error, .arg = u}};
    s = U.ep_create(u->worker, &ep, &u->ep);
    if (s == UX_OK) u->closed = false;
  }
  uint64_t at = r->address_bytes;
  for (int32_t d = 0; s == UX_OK && d < num_devices; d++) {
    step = "unpacking a remote key";
    s = U.ep_rkey_unpack(u->ep, r->blob + at, &u->rkeys[d]);
    if (s != UX_OK) u->rkeys[d] = NULL;
    at += r->rkey_bytes[d];
    u->bases[d] = r->bases[d];
  }
  if (s == UX_OK && (r->flags & UCX_REPLY_GENERATIONS) != 0) {
    step = "unpacking the generation page's key";
    s = U.ep_rkey_unpack(u->ep, r->blob + at, &u->page_rkey);
    if (s != UX_OK) u->page_rkey = NULL;
    u->page_base = r->page_base;
    u->has_page = s == UX_OK;
  }
  if (s != UX_OK) {
    status = core_fail(LLMDD_LINK_FAILED, "UCX failed %s at %s: %s", step, where, status_text(s));
    host_ucx_link_close(u);
    return status;
  }
  for (int32_t d = 0; d < num_devices; d++) bases[d] = (const uint8_t *)(uintptr_t)u->bases[d];
  *out = u;
  return LLMDD_SUCCESS;
}

bool host_ucx_link_writable(const struct ucx_link *u) { return u->writable; }

bool host_ucx_link_has_page(const struct ucx_link *u) { return u->has_page; }

void host_ucx_link_close(struct ucx_link *u) {
  if (u == NULL) return;
  if (u->worker != NULL) {
    close_endpoint(u);
    U.worker_destroy(u->worker);
  }
  pthread_rwlock_destroy(&u->lock);
  free(u);
}

int32_t host_ucx_regions_open(struct ucx_link *u, const struct msg_ucx_reply *r, uint64_t bytes,
                              struct ucx_regions **out) {
  struct ucx_regions *rg = calloc(1, sizeof *rg);
  if (rg == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a transfer's keys");
  rg->bytes = bytes;
  rg->writable = (r->flags & UCX_REPLY_WRITABLE) != 0;
  ux_status_t s = UX_OK;
  uint64_t at = 0;
  pthread_rwlock_rdlock(&u->lock);
  if (u->closed) s = UX_ERR_CANCELED;
  for (uint32_t i = 0; s == UX_OK && i < r->devices; i++) {
    ux_rkey_h key = NULL;
    s = U.ep_rkey_unpack(u->ep, r->blob + at, &key);
    if (s != UX_OK) break;
    rg->rkeys[i] = key;
    rg->addrs[i] = r->bases[i];
    rg->count = (int32_t)i + 1;
    at += r->rkey_bytes[i];
  }
  pthread_rwlock_unlock(&u->lock);
  if (s != UX_OK) {
    host_ucx_regions_close(u, rg);
    return core_fail(LLMDD_LINK_FAILED, "UCX failed unpacking a remote key from %s: %s", u->where,
                     status_text(s));
  }
  *out = rg;
  return LLMDD_SUCCESS;
}

void host_ucx_regions_close(struct ucx_link *u, struct ucx_regions *rg) {
  if (rg == NULL) return;
  (void)u;
  for (int32_t i = 0; i < rg->count; i++)
    if (rg->rkeys[i] != NULL) U.rkey_destroy((ux_rkey_h)rg->rkeys[i]);
  free(rg);
}

/* ---- batches ---- */

struct ucx_range {
  uint8_t *local; /* a get's destination, a put's source */
  uint64_t remote;
  uint64_t bytes;
  int32_t device;
};

static _Thread_local struct ucx_batch *recording;
static _Thread_local uint64_t recording_pool_bytes;
static _Thread_local const uint8_t *const *recording_bases;

void host_ucx_batch_begin(struct ucx_batch *b, struct ucx_link *u, bool put, uint64_t pool_bytes,
                          int32_t num_devices, const uint8_t *const *bases) {
  (void)num_devices;
  memset(b, 0, sizeof *b);
  b->link = u;
  b->put = put;
  b->status = LLMDD_SUCCESS;
  recording = b;
  recording_pool_bytes = pool_bytes;
  recording_bases = bases;
}

void host_ucx_batch_begin_regions(struct ucx_batch *b, struct ucx_link *u, bool put,
                                  const struct ucx_regions *rg) {
  host_ucx_batch_begin(b, u, put, 0, 0, NULL);
  b->regions = rg;
}

void host_ucx_record(uint8_t *dst, const uint8_t *src, uint64_t n) {
  struct ucx_batch *b = recording;
  if (b == NULL || b->status != LLMDD_SUCCESS || n == 0) return;
  /* A get copies from the peer's memory, a put into it. */
  uint64_t remote = (uint64_t)(uintptr_t)(b->put ? dst : src);
  uint8_t *local = b->put ? (uint8_t *)(uintptr_t)src : dst;
  int32_t device = -1;
  const struct ucx_regions *rg = b->regions;
  for (int32_t i = 0; rg != NULL && i < rg->count && device < 0; i++)
    if (remote >= rg->addrs[i] && remote - rg->addrs[i] < rg->bytes &&
        n <= rg->bytes - (remote - rg->addrs[i]))
      device = i; /* the range's index, not a device */
  for (int32_t d = 0; rg == NULL && d < b->link->devices && device < 0; d++) {
    uint64_t base = (uint64_t)(uintptr_t)recording_bases[d];
    if (remote >= base && remote - base < recording_pool_bytes) device = d;
  }
  if (device < 0) { /* cannot happen: the answer was checked against the pools */
    b->status = LLMDD_FAILED;
    return;
  }
  if (b->count > 0) {
    struct ucx_range *last = &b->ranges[b->count - 1];
    if (last->device == device && last->local + last->bytes == local &&
        last->remote + last->bytes == remote) {
      last->bytes += n;
      return;
    }
  }
  if (b->count == b->capacity) {
    uint64_t capacity = b->capacity ? 2 * b->capacity : 64;
    struct ucx_range *ranges = realloc(b->ranges, (size_t)capacity * sizeof *ranges);
    if (ranges == NULL) {
      b->status = LLMDD_OUT_OF_MEMORY;
      return;
    }
    b->ranges = ranges;
    b->capacity = capacity;
  }
  b->ranges[b->count++] = (struct ucx_range){local, remote, n, device};
}

void host_ucx_batch_read_page(struct ucx_batch *b, uint32_t word) {
  b->read_page = true;
  b->page_word = word;
}

void host_ucx_batch_stage(struct ucx_batch *b) { b->stage = true; }

uint64_t host_ucx_batch_bytes(const struct ucx_batch *b) {
  uint64_t bytes = 0;
  for (uint64_t i = 0; i < b->count; i++) bytes += b->ranges[i].bytes;
  return bytes;
}

void host_ucx_batch_deliver(struct ucx_batch *b, bool deliver) {
  uint64_t at = 0;
  for (uint64_t i = 0; deliver && b->scratch != NULL && i < b->count; i++) {
    memcpy(b->ranges[i].local, b->scratch + at, (size_t)b->ranges[i].bytes);
    at += b->ranges[i].bytes;
  }
  free(b->scratch);
  b->scratch = NULL;
  free(b->ranges);
  b->ranges = NULL;
}

void host_ucx_batch_abandon(struct ucx_batch *b) {
  recording = NULL;
  free(b->ranges);
  b->ranges = NULL;
}

/* What the completions of one run report back. */
struct flight {
  atomic_int pending;
  atomic_int error; /* the first read's failure, UX_OK if none */
  uint64_t page_value; /* the generation page's word lands here (this may outlive the call) */
  uint8_t *scratch;    /* a staged run's reads land here (freed with this) */
};

static void flight_free(struct flight *f) {
  free(f->scratch);
  free(f);
}

#define PAGE_KEY (-2) /* issue's `device` for the generation page's key */

static void on_read(void *request, ux_status_t status, void *user_data) {
  struct flight *f = user_data;
  U.request_free(request); /* after completion only: a freed request reports nothing */
  if (status != UX_OK) {
    int none = UX_OK;
    atomic_compare_exchange_strong(&f->error, &none, status);
  }
  atomic_fetch_sub(&f->pending, 1);
}

/* Issues one read or write, or (bytes 0) a flush of the endpoint: every write
 * before it has landed when it completes. False when it failed at once
 * (f->error set). */
static bool issue(struct ucx_link *u, const struct ucx_regions *rg, struct flight *f, bool put,
                  uint8_t *local, uint64_t remote, uint64_t bytes, int32_t device) {
  struct ux_request_param p = {.op_attr_mask = UX_OP_ATTR_FIELD_CALLBACK | UX_OP_ATTR_FIELD_USER_DATA,
                               .cb = {.send = on_read},
                               .user_data = f};
  bool ok = true;
  pthread_rwlock_rdlock(&u->lock);
  if (u->closed) {
    int none = UX_OK;
    atomic_compare_exchange_strong(&f->error, &none, UX_ERR_CANCELED);
    ok = false;
  } else {
    atomic_fetch_add(&f->pending, 1);
    ux_rkey_h key = bytes == 0           ? NULL
                    : device == PAGE_KEY ? u->page_rkey
                    : rg != NULL       ? (ux_rkey_h)rg->rkeys[device]
                                       : u->rkeys[device];
    ux_status_ptr_t req =
        bytes == 0 ? U.ep_flush_nbx(u->ep, &p)
        : put      ? U.put_nbx(u->ep, local, (size_t)bytes, remote, key, &p)
                   : U.get_nbx(u->ep, local, (size_t)bytes, remote, key, &p);
    if (!UX_PTR_IS_PTR(req)) { /* done at once (no callback), or failed */
      atomic_fetch_sub(&f->pending, 1);
      int s = UX_PTR_RAW_STATUS(req);
      if (s != UX_OK) {
        int none = UX_OK;
        atomic_compare_exchange_strong(&f->error, &none, s);
        ok = false;
      }
    }
  }
  pthread_rwlock_unlock(&u->lock);
  return ok;
}

/* The page's word, after every read issued before (a fence between). */
static void issue_page_read(struct ucx_link *u, struct flight *f, uint32_t word) {
  pthread_rwlock_rdlock(&u->lock);
  ux_status_t fenced = u->closed ? UX_ERR_CANCELED : U.worker_fence(u->worker);
  pthread_rwlock_unlock(&u->lock);
  if (fenced != UX_OK) {
    int none = UX_OK;
    atomic_compare_exchange_strong(&f->error, &none, fenced);
    return;
  }
  issue(u, NULL, f, false, (uint8_t *)&f->page_value, u->page_base + 8 * (uint64_t)word, 8,
        PAGE_KEY);
}

/* Progresses the worker once; after a run of idle calls, sleeps on its wakeup
 * descriptor for at most 1 ms (the other threads and the peer get the CPU). */
static void progress_once(struct ucx_link *u, int *idle) {
  if (U.worker_progress(u->worker) != 0) {
    *idle = 0;
    return;
  }
  if (++*idle < 64) return;
  *idle = 0;
  if (U.worker_arm(u->worker) != UX_OK) return;
  struct pollfd p = {u->efd, POLLIN, 0};
  poll(&p, 1, 1);
}

int32_t host_ucx_batch_run(struct ucx_batch *b, const struct core_guard *g,
                           int32_t (*peer_check)(void *peer), void *peer) {
  recording = NULL;
  struct ucx_link *u = b->link;
  const char *op = b->put ? "write to" : "read from";
  int32_t status = b->status;
  if (status == LLMDD_OUT_OF_MEMORY)
    status = core_fail(status, "out of host memory for the list of a transfer's ranges");
  else if (status != LLMDD_SUCCESS)
    status = core_fail(LLMDD_LINK_FAILED, "a transfer reached outside the peer's pools");
  if (status == LLMDD_SUCCESS && atomic_load(&u->failure) != UX_OK)
    status = core_fail(LLMDD_LINK_FAILED,
                       "the UCX connection to %s failed earlier (%s): unlink and link again",
                       u->where, status_text(atomic_load(&u->failure)));
  /* On the heap: should an operation never report back even after the
   * endpoint was closed by force, the call returns and leaves this behind for
   * its callback. */
  struct flight *f = malloc(sizeof *f);
  if (f == NULL) {
    host_ucx_batch_abandon(b);
    return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a transfer");
  }
  atomic_init(&f->pending, 0);
  atomic_init(&f->error, UX_OK);
  f->scratch = NULL;
  /* Staged: the reads land in the flight's scratch, in the ranges' order. */
  uint64_t staged = b->stage ? host_ucx_batch_bytes(b) : 0, stage_at = 0;
  if (status == LLMDD_SUCCESS && b->stage && b->put)
    status = core_fail(LLMDD_FAILED, "a push cannot be staged");
  if (status == LLMDD_SUCCESS && staged > UCX_STAGE_BYTES)
    status = core_fail(LLMDD_FAILED, "a staged UCX read of more than %llu bytes",
                       (unsigned long long)UCX_STAGE_BYTES);
  if (status == LLMDD_SUCCESS && staged > 0 && (f->scratch = malloc((size_t)staged)) == NULL)
    status = core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a transfer");
  uint64_t next = 0, offset = 0; /* the next range, and how far into it */
  bool stopping = status != LLMDD_SUCCESS, forced = false;
  /* Writes are complete at the peer only when a flush issued after them
   * completes: one follows the last write, or the last issued when a deadline
   * or cancel stopped issuing (so that nothing lands after the pin is
   * released). */
  bool flushed = !b->put || stopping, issued = false;
  bool page_read = !b->read_page || !u->has_page;
  int64_t drain_until = 0, forced_until = 0, next_check = core_now_ns() + 1000000;
  int idle = 0;
  for (;;) {
    while (!stopping && next < b->count && atomic_load(&f->pending) < UCX_WINDOW_OPS) {
      struct ucx_range *r = &b->ranges[next];
      uint64_t bytes = r->bytes - offset < UCX_GET_BYTES ? r->bytes - offset : UCX_GET_BYTES;
      issued = true;
      uint8_t *local = f->scratch != NULL ? f->scratch + stage_at : r->local + offset;
      stage_at += bytes;
      if (!issue(u, b->regions, f, b->put, local, r->remote + offset, bytes, r->device)) break;
      offset += bytes;
      if (offset == r->bytes) {
        next++;
        offset = 0;
      }
    }
    if (!page_read && !stopping && next == b->count && atomic_load(&f->error) == UX_OK) {
      page_read = true;
      issue_page_read(u, f, b->page_word);
    }
    if (!flushed && (stopping || next == b->count) && atomic_load(&f->error) == UX_OK) {
      flushed = true;
      if (issued) issue(u, NULL, f, true, NULL, 0, 0, 0);
    }
    bool more = atomic_load(&f->pending) > 0 || (!stopping && (next < b->count || !page_read)) ||
                !flushed;
    if (!more) break;
    progress_once(u, &idle);
    int error = atomic_load(&f->error);
    if (error != UX_OK) flushed = true; /* a broken endpoint flushes nothing */
    if (!stopping && error != UX_OK) {
      status = core_fail(LLMDD_LINK_FAILED, "a UCX %s %s failed (%s): %s", op, u->where,
                         status_text(error), "the data is not to be trusted");
      stopping = true;
      drain_until = 0; /* the endpoint is broken: close it now */
    }
    int64_t now = core_now_ns();
    if (!stopping && now >= next_check) {
      next_check = now + 1000000;
      status = core_guard_check(g);
      if (status == LLMDD_SUCCESS && peer_check != NULL) status = peer_check(peer);
      if (status == LLMDD_SUCCESS && atomic_load(&u->failure) != UX_OK)
        status = core_fail(LLMDD_LINK_FAILED, "the UCX connection to %s failed (%s)", u->where,
                           status_text(atomic_load(&u->failure)));
      if (status != LLMDD_SUCCESS) {
        stopping = true;
        /* A deadline or cancel lets the operations in flight finish (and the
         * writes be flushed); a failure does not. */
        if (status == LLMDD_LINK_FAILED) {
          drain_until = 0;
          flushed = true;
        } else {
          drain_until = now + (int64_t)UCX_DRAIN_MS * 1000000;
        }
      }
    }
    if (stopping && !forced && (atomic_load(&f->pending) > 0 || !flushed) &&
        core_now_ns() >= drain_until) {
      forced = true;
      flushed = true;
      forced_until = core_now_ns() + (int64_t)UCX_DRAIN_MS * 1000000;
      int none = UX_OK;
      atomic_compare_exchange_strong(&u->failure, &none, UX_ERR_CANCELED);
      close_endpoint(u);
    }
    if (forced && core_now_ns() >= forced_until) break;
  }
  if (status == LLMDD_SUCCESS && atomic_load(&f->error) != UX_OK)
    status = core_fail(LLMDD_LINK_FAILED, "a UCX %s %s failed (%s)", op, u->where,
                       status_text(atomic_load(&f->error)));
  if (status == LLMDD_SUCCESS && b->read_page && !u->has_page)
    status = core_fail(LLMDD_FAILED, "the PROMPT at %s offered no generation page", u->where);
  if (status == LLMDD_SUCCESS) b->page_value = f->page_value; /* nothing is in flight then */
  if (status == LLMDD_SUCCESS && b->stage) { /* the ranges and the bytes, for deliver */
    b->scratch = f->scratch;
    f->scratch = NULL;
  } else {
    free(b->ranges);
    b->ranges = NULL;
  }
  if (atomic_load(&f->pending) == 0) flight_free(f);
  return status;
}
