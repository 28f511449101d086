#define _GNU_SOURCE 1 /* accept4, pipe2 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "book.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/sha256.h"
#include "core/workers.h"
#include "engine.h"
#include "fast.h"
#include "llmdd.h"
#include "local.h"
#include "net.h"
#include "proto.h"
#include "stream.h"
#include "ucx.h"

/* Linked DECODERs served at once (each costs a thread); more are refused at
 * HELLO. Connections still in their handshake have a budget of their own, so
 * silent or slow strangers can never take a linked DECODER's place. */
#define MAX_LINKED 64
#define MAX_HANDSHAKING 16
/* A connection must have finished its handshake (HELLO answered) this long
 * after it was accepted, whether or not it has sent anything. */
#define HANDSHAKE_TIMEOUT_NS ((int64_t)2 * 1000000000)
/* Pulls one connection may have in flight; a DECODER has one per running pull. */
#define MAX_PINS 1024
/* A message, once started, must be complete within this; so must an answer be
 * sent. A stalled peer loses its connection, not a thread forever. */
#define MESSAGE_TIMEOUT_NS ((int64_t)10 * 1000000000)
#define SEND_TIMEOUT_MS 10000
/* The listener reaps finished connections at least this often. */
#define REAP_INTERVAL_MS 1000

struct pin {
  uint64_t id;
  struct cache *cache;
  bool by_key;
  bool writable; /* a LOOKUP_WRITE's: the cache is remote-accessible */
  struct stream_window window; /* what the DECODER was shown of the cache */
  struct cache_key key;
  struct ucx_pin_map *ucx; /* its memory mapped for UCX (UCX_KEYS), or NULL */
};

struct connection {
  struct server *server;
  int fd; /* closed only by whoever joins the thread */
  pthread_t thread;
  atomic_bool finished;
  bool greeted;        /* HELLO answered with SUCCESS (the thread's own flag) */
  bool linked;         /* counted in num_linked, not num_handshaking (under server lock) */
  bool evicted;        /* shut down to make room for a newer handshake (server lock) */
  bool local;          /* on the Unix socket: one request for the pools, then closed */
  bool challenged;     /* AUTH came and was answered */
  bool authenticated;  /* the DECODER's proof checked out: HELLO may come */
  uint8_t nonce_d[AUTH_NONCE_BYTES], nonce_p[AUTH_NONCE_BYTES];
  int64_t accepted_ns; /* the handshake's deadline counts from here */
  struct proto_rx in;
  struct pin *pins;
  int32_t num_pins, pins_capacity;
  struct connection *next;
};

struct server {
  struct engine *engine;
  int listen_fd;
  int local_fd; /* the Unix socket in the user's private directory (local.h) */
  struct link_key key; /* what links are authenticated with (auth.h) */
  int wake[2]; /* a byte in wake[1] makes wake[0] readable for good: stop */
  pthread_t listener;
  pthread_mutex_t lock; /* connections */
  struct connection *connections;
  int32_t num_linked, num_handshaking;
  struct ucx_server *ucx; /* started by the first UCX request (ucx.h) */
};

/* ---- requests ---- */

static void hello(struct connection *c, const struct msg_hello *q, struct msg_hello_reply *r) {
  /* Options and pool identities do not change after init: no lock needed. */
  const struct engine *e = c->server->engine;
  r->cluster = e->cluster_id;
  if (q->expected_cluster != e->cluster_id) {
    r->status = LLMDD_LINK_FAILED;
    return;
  }
  if (q->abi_version != LLMDD_ABI_VERSION) {
    r->status = LLMDD_FAILED;
    return;
  }
  r->status = LLMDD_SUCCESS;
  r->devices = (uint32_t)e->options.num_devices;
  r->pool_bytes = e->options.pool_bytes;
  r->pid = (uint32_t)getpid();
  for (int32_t d = 0; d < e->options.num_devices; d++) r->object_ids[d] = e->pools[d].object_id;
}

/* The remote-accessible tensor of a live cache holding [address, +bytes) on
 * device 0, as a window from the address to the tensor's end; or NULL (engine
 * lock held). */
static struct cache *find_address(const struct book *b, uint64_t address, uint64_t bytes,
                                  struct stream_window *w) {
  for (struct cache *c = b->caches; c != NULL && bytes >= 1; c = c->next) {
    if (!c->id_held || !c->remote) continue;
    for (int32_t t = 0; t < c->num_tensors; t++) {
      uint64_t start = (uint64_t)(uintptr_t)host_cache_tensor(b, c, 0, t);
      if (address < start || address - start >= c->tensor_bytes ||
          bytes > c->tensor_bytes - (address - start))
        continue;
      *w = (struct stream_window){.first_tensor = t, .num_tensors = 1,
                                  .offset = address - start,
                                  .bytes = c->tensor_bytes - (address - start)};
      return c;
    }
  }
  return NULL;
}

/* The pin is named by the LOOKUP's sequence number, which the DECODER knows
 * before the answer comes: one that gives up waiting can release it at once. */
static void lookup(struct connection *c, uint64_t seq, const struct msg_lookup *q,
                   struct msg_lookup_reply *r) {
  struct engine *e = c->server->engine;
  if (c->num_pins == c->pins_capacity) {
    int32_t capacity = c->pins_capacity ? 2 * c->pins_capacity : 8;
    if (capacity > MAX_PINS) capacity = MAX_PINS;
    struct pin *pins = capacity > c->pins_capacity
                           ? realloc(c->pins, (size_t)capacity * sizeof *pins) : NULL;
    if (pins == NULL) {
      r->status = LLMDD_OUT_OF_MEMORY;
      return;
    }
    c->pins = pins;
    c->pins_capacity = capacity;
  }
  struct pin pin = {.id = seq, .by_key = q->kind == LLMDD_KEY_CACHE_KEY,
                    .writable = (q->flags & LOOKUP_WRITE) != 0,
                    .key = {q->k[0], q->k[1], q->k[2]}};
  uint64_t row = 0;
  pthread_mutex_lock(&e->lock);
  if (atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
    r->status = LLMDD_ENGINE_FINALIZED;
  } else if (q->kind == LLMDD_KEY_CACHE_KEY) {
    pin.cache = host_book_find_key(&e->book, pin.key, &row);
    r->status = pin.cache != NULL ? LLMDD_SUCCESS : LLMDD_KV_CACHE_NOT_EXIST;
  } else if (q->kind == LLMDD_KEY_BY_ID) {
    pin.cache = host_book_find(&e->book, q->k[1]);
    row = q->k[2];
    r->status = pin.cache == NULL               ? LLMDD_KV_CACHE_NOT_EXIST
                : row >= pin.cache->batch_size ? LLMDD_PARAM_INVALID
                                               : LLMDD_SUCCESS;
  } else if (q->kind == LOOKUP_BY_ADDR && (q->flags & LOOKUP_WRITE) != 0) {
    pin.cache = find_address(&e->book, q->k[0], q->k[1], &pin.window);
    r->status = pin.cache != NULL ? LLMDD_SUCCESS : LLMDD_PARAM_INVALID;
  } else {
    r->status = LLMDD_PARAM_INVALID;
  }
  if (r->status == LLMDD_SUCCESS && q->kind != LOOKUP_BY_ADDR)
    pin.window = (struct stream_window){.num_tensors = pin.cache->num_tensors,
                                        .bytes = pin.cache->tensor_bytes};
  /* A push writes only where remote access was enabled. */
  if (r->status == LLMDD_SUCCESS && pin.writable && !pin.cache->remote)
    r->status = LLMDD_FEATURE_NOT_ENABLED;
  if (r->status == LLMDD_SUCCESS) {
    const struct cache *cache = pin.cache;
    host_book_pin(pin.cache);
    c->pins[c->num_pins++] = pin;
    const struct stream_window *w = &pin.window;
    bool by_addr = q->kind == LOOKUP_BY_ADDR;
    r->num_tensors = (uint32_t)w->num_tensors;
    r->pin = pin.id;
    r->layout_tag = cache->layout_tag;
    r->tensor_bytes = by_addr ? w->bytes : cache->tensor_bytes;
    r->batch_size = by_addr ? 1 : cache->batch_size;
    r->row = row;
    r->stride = by_addr ? w->bytes : cache->stride;
    r->devices = (uint32_t)e->options.num_devices;
    /* A DECODER maps the device pools only: anything else goes through STREAM,
     * and is never reached through pool offsets. */
    r->where = host_cache_in_device_pools(cache) ? LOOKUP_IN_POOLS : LOOKUP_ELSEWHERE;
    /* The stamp a DECODER keeps this answer with (fast.h), read under the lock
     * every bump takes. */
    if (!by_addr) {
      struct fast_stamp stamp = host_fast_page_stamp(e->book.fast, (int32_t)q->kind, q->k);
      r->slot_gen = stamp.slot_gen;
      r->global_gen = stamp.global_gen;
    }
    for (int32_t d = 0; d < e->options.num_devices; d++)
      r->offsets[d] = r->where != LOOKUP_IN_POOLS ? 0
                      : cache->offsets[d] + (uint64_t)w->first_tensor * cache->stride + w->offset;
  }
  pthread_mutex_unlock(&e->lock);
}

/* Drops pin i (engine lock held); with consume, also the key it was found by —
 * if that key still names the same cache. */
static void drop_pin(struct connection *c, int32_t i, bool consume) {
  struct book *b = &c->server->engine->book;
  struct pin *pin = &c->pins[i];
  if (consume && pin->by_key) host_book_consume_key(b, pin->key, pin->cache);
  host_ucx_pin_unmap(pin->ucx); /* the DECODER is done with its keys (or gone) */
  host_book_unpin(b, pin->cache);
  c->pins[i] = c->pins[--c->num_pins];
}

/* A pin this connection does not hold is no error: a DECODER that gave up on a
 * LOOKUP releases its pin without knowing whether the LOOKUP found anything. */
static void done(struct connection *c, const struct msg_done *q) {
  struct engine *e = c->server->engine;
  for (int32_t i = 0; i < c->num_pins; i++) {
    if (c->pins[i].id != q->pin) continue;
    pthread_mutex_lock(&e->lock);
    drop_pin(c, i, (q->flags & DONE_CONSUME) != 0);
    pthread_mutex_unlock(&e->lock);
    return;
  }
}

/* STREAM: bytes of a pinned cache through the socket (stream.h). The pin keeps
 * the cache's memory in place (and registered memory registered) throughout. */
static bool stream(struct connection *c, const struct msg *m) {
  for (int32_t i = 0; i < c->num_pins; i++)
    if (c->pins[i].id == m->u.stream.pin)
      return host_stream_serve(c->fd, &c->in, &c->server->engine->book, c->pins[i].cache,
                               &c->pins[i].window, c->pins[i].writable, m, c->server->wake[0]);
  return false;
}

static bool reply(struct connection *c, const struct msg *m);

/* UCX_KEYS: the tensors of a pinned cache outside the pools, mapped for as
 * long as the pin (ucx.h); an unknown pin, or one in the pools, closes the
 * connection (the DECODER knows better). */
static bool ucx_keys(struct connection *c, const struct msg *m) {
  struct pin *pin = NULL;
  for (int32_t i = 0; i < c->num_pins && pin == NULL; i++)
    if (c->pins[i].id == m->u.ucx_keys_pin) pin = &c->pins[i];
  if (pin == NULL || host_cache_in_device_pools(pin->cache)) return false;
  struct engine *e = c->server->engine;
  uint8_t *addrs[MAX_DEVICES];
  int64_t n = (int64_t)e->options.num_devices * pin->window.num_tensors;
  pthread_mutex_lock(&e->lock);
  for (int32_t d = 0; n <= MAX_DEVICES && d < e->options.num_devices; d++)
    for (int32_t t = 0; t < pin->window.num_tensors; t++)
      addrs[d * pin->window.num_tensors + t] =
          host_cache_tensor(&e->book, pin->cache, d, pin->window.first_tensor + t) +
          pin->window.offset;
  pthread_mutex_unlock(&e->lock);
  struct msg answer = {.seq = m->seq, .type = MSG_UCX_KEYS_REPLY};
  answer.u.ucx_reply = calloc(1, sizeof *answer.u.ucx_reply);
  if (answer.u.ucx_reply == NULL) return false;
  host_ucx_pin_unmap(pin->ucx);
  pin->ucx = NULL;
  uint64_t bytes = pin->window.bytes;
  host_ucx_pin_map(&c->server->ucx, addrs, n <= MAX_DEVICES ? (int32_t)n : MAX_DEVICES + 1, bytes,
                   pin->writable, answer.u.ucx_reply, &pin->ucx);
  bool sent = reply(c, &answer);
  free(answer.u.ucx_reply);
  return sent;
}

static bool reply(struct connection *c, const struct msg *m) {
  struct core_guard g = core_guard_for(SEND_TIMEOUT_MS, "answering a linked engine");
  bool torn;
  return host_proto_send(c->fd, m, &g, c->server->wake[0], &torn) == LLMDD_SUCCESS;
}

/* Moves a connection whose HELLO succeeded from the handshake budget to the
 * linked one; false when MAX_LINKED DECODERs are linked already. */
static bool admit(struct connection *c) {
  struct server *s = c->server;
  bool admitted = false;
  pthread_mutex_lock(&s->lock);
  if (s->num_linked < MAX_LINKED && !c->evicted) {
    s->num_linked++;
    s->num_handshaking--;
    c->linked = true;
    admitted = true;
  }
  pthread_mutex_unlock(&s->lock);
  return admitted;
}

/* AUTH: answers with this side's nonce and its proof of the key. */
static bool challenge(struct connection *c, const struct msg *m, struct msg *answer) {
  if (c->challenged) return false;
  c->challenged = true;
  memcpy(c->nonce_d, m->u.auth.nonce, AUTH_NONCE_BYTES);
  if (host_auth_nonce(c->nonce_p) != LLMDD_SUCCESS) return false;
  answer->type = MSG_AUTH_CHALLENGE;
  memcpy(answer->u.auth.nonce, c->nonce_p, AUTH_NONCE_BYTES);
  host_auth_prompt_mac(&c->server->key, c->nonce_d, c->nonce_p, answer->u.auth.mac);
  return reply(c, answer);
}

/* AUTH_PROOF: a wrong proof closes the connection without a word. */
static bool check_proof(struct connection *c, const struct msg *m) {
  if (!c->challenged || c->authenticated) return false;
  uint8_t want[AUTH_MAC_BYTES];
  host_auth_decoder_mac(&c->server->key, c->nonce_d, c->nonce_p, want);
  c->authenticated = core_equal_secret(want, m->u.auth.mac, AUTH_MAC_BYTES);
  return c->authenticated;
}

/* Handles one request. Returns false when the connection must close. Nothing
 * but the authentication is answered before it succeeded: a stranger learns
 * neither the cluster id nor anything about the pools or caches. */
static bool handle(struct connection *c, const struct msg *m) {
  struct msg answer = {.seq = m->seq};
  switch (m->type) {
  case MSG_AUTH:
    return challenge(c, m, &answer);
  case MSG_AUTH_PROOF:
    return check_proof(c, m);
  case MSG_HELLO:
    if (!c->authenticated || c->greeted) return false;
    answer.type = MSG_HELLO_REPLY;
    hello(c, &m->u.hello, &answer.u.hello_reply);
    if (answer.u.hello_reply.status == LLMDD_SUCCESS && !admit(c))
      answer.u.hello_reply.status = LLMDD_CLUSTER_NUM_EXCEED_LIMIT;
    c->greeted = answer.u.hello_reply.status == LLMDD_SUCCESS;
    /* A refused link ends here; the DECODER reads the answer, then EOF. */
    return reply(c, &answer) && c->greeted;
  case MSG_LOOKUP:
    if (!c->greeted) return false;
    answer.type = MSG_LOOKUP_REPLY;
    lookup(c, m->seq, &m->u.lookup, &answer.u.lookup_reply);
    return reply(c, &answer);
  case MSG_DONE:
    if (!c->greeted) return false;
    done(c, &m->u.done);
    if ((m->u.done.flags & DONE_ACK) == 0) return true;
    answer.type = MSG_DONE_REPLY;
    answer.u.done_status = LLMDD_SUCCESS;
    return reply(c, &answer);
  case MSG_STREAM:
    if (!c->greeted) return false;
    return stream(c, m);
  case MSG_UCX: {
    if (!c->greeted) return false;
    const struct engine *e = c->server->engine;
    uint8_t *bases[MAX_DEVICES];
    for (int32_t d = 0; d < e->options.num_devices; d++) bases[d] = e->pools[d].base;
    answer.type = MSG_UCX_REPLY;
    answer.u.ucx_reply = calloc(1, sizeof *answer.u.ucx_reply);
    if (answer.u.ucx_reply == NULL) return false;
    host_ucx_answer(&c->server->ucx, bases, e->options.num_devices, e->options.pool_bytes,
                    e->options.remote_access,
                    e->book.fast != NULL ? (uint8_t *)(uintptr_t)e->book.fast->words : NULL,
                    FAST_PAGE_BYTES, answer.u.ucx_reply);
    bool sent = reply(c, &answer);
    free(answer.u.ucx_reply);
    return sent;
  }
  case MSG_UCX_KEYS:
    if (!c->greeted) return false;
    return ucx_keys(c, m);
  case MSG_UNLINK:
    if (!c->greeted) return false;
    answer.type = MSG_UNLINK_REPLY;
    answer.u.unlink_status = LLMDD_SUCCESS;
    reply(c, &answer);
    return false;
  default: /* an answer type sent as a request */
    return false;
  }
}

/* A same-user DECODER linked over TCP asks for the pools' descriptors. Pools
 * and options do not change between init and finalize: no lock needed. */
static void serve_local(struct connection *c, const struct core_guard *g) {
  const struct engine *e = c->server->engine;
  host_local_serve(c->fd, e->cluster_id, e->pools, e->options.num_devices, e->options.pool_bytes,
                   e->options.remote_access, e->book.fast != NULL ? e->book.fast->ro_fd : -1, g,
                   c->server->wake[0]);
}

static void *connection_main(void *arg) {
  struct connection *c = arg;
  /* Until the handshake is done the whole of it is bounded, silence included:
   * a stranger that connects and says nothing holds a thread for 2 s at most. */
  struct core_guard handshake = {.until_ns = c->accepted_ns + HANDSHAKE_TIMEOUT_NS,
                                 .doing = "waiting for a link request"};
  struct core_guard linked = {.until_ns = INT64_MAX, .doing = "serving a linked engine"};
  struct msg m;
  if (c->local) serve_local(c, &handshake);
  while (!c->local &&
         host_proto_recv(c->fd, &c->in, &m, c->greeted ? &linked : &handshake,
                         c->server->wake[0], MESSAGE_TIMEOUT_NS) == LLMDD_SUCCESS &&
         handle(c, &m)) {
  }
  /* Shut down before unpinning: a DECODER that is copying must find the
   * connection gone before the memory it copies can change. */
  shutdown(c->fd, SHUT_RDWR);
  struct engine *e = c->server->engine;
  pthread_mutex_lock(&e->lock);
  while (c->num_pins > 0) drop_pin(c, c->num_pins - 1, false);
  pthread_mutex_unlock(&e->lock);
  atomic_store(&c->finished, true);
  return NULL;
}

/* ---- connections ---- */

static void connection_free(struct connection *c) {
  pthread_join(c->thread, NULL);
  close(c->fd);
  free(c->pins);
  free(c);
}

/* Joins the connections whose threads ended (all of them when `all`). */
static void reap(struct server *s, bool all) {
  struct connection *done_list = NULL;
  pthread_mutex_lock(&s->lock);
  for (struct connection **p = &s->connections; *p != NULL;) {
    struct connection *c = *p;
    if (all || atomic_load(&c->finished)) {
      *p = c->next;
      c->next = done_list;
      done_list = c;
      if (c->linked) s->num_linked--;
      else s->num_handshaking--;
    } else {
      p = &c->next;
    }
  }
  pthread_mutex_unlock(&s->lock);
  while (done_list != NULL) {
    struct connection *c = done_list;
    done_list = c->next;
    connection_free(c);
  }
}

/* Makes room for one more handshake (server lock held): when the budget is
 * spent, the oldest handshake still running is shut down (its thread ends and
 * is reaped). A flood of strangers then only ever competes with itself: a real
 * DECODER finishes its handshake in well under a millisecond. Returns false
 * when even that is impossible (every slot's thread is still ending). */
static bool room_for_handshake(struct server *s) {
  int32_t live = 0;
  struct connection *oldest = NULL;
  for (struct connection *c = s->connections; c != NULL; c = c->next) {
    if (c->linked || c->evicted || atomic_load(&c->finished)) continue;
    live++;
    if (oldest == NULL || c->accepted_ns < oldest->accepted_ns) oldest = c;
  }
  if (live >= MAX_HANDSHAKING && oldest != NULL) {
    oldest->evicted = true;
    shutdown(oldest->fd, SHUT_RDWR);
  }
  /* Threads shut down but not reaped yet still count, up to twice the budget. */
  return s->num_handshaking < 2 * MAX_HANDSHAKING;
}

static void accept_connection(struct server *s, int fd, bool local) {
  pthread_mutex_lock(&s->lock);
  bool room = room_for_handshake(s);
  pthread_mutex_unlock(&s->lock);
  if (!room) {
    close(fd);
    return;
  }
  struct connection *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    return;
  }
  if (!local) host_net_set_nodelay(fd);
  c->server = s;
  c->fd = fd;
  c->local = local;
  c->accepted_ns = core_now_ns();
  atomic_init(&c->finished, false);
  pthread_mutex_lock(&s->lock);
  if (core_thread_start(&c->thread, connection_main, c) != 0) {
    pthread_mutex_unlock(&s->lock);
    close(fd);
    free(c);
    return;
  }
  c->next = s->connections;
  s->connections = c;
  s->num_handshaking++;
  pthread_mutex_unlock(&s->lock);
}

/* Takes one waiting connection from a listening socket. Unix connections from
 * another account are closed at once (the directory is private, but root can
 * reach in, and a check costs nothing). */
static void take_connection(struct server *s, int listen_fd, bool local) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    uid_t uid;
    pid_t pid;
    if (local && !host_local_peer(fd, &uid, &pid)) close(fd);
    else accept_connection(s, fd, local);
  } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
    /* The connection stays queued; do not spin on it. */
    struct timespec pause = {0, 10 * 1000000L};
    nanosleep(&pause, NULL);
  }
}

static void *listener_main(void *arg) {
  struct server *s = arg;
  /* Held while this thread serves: linked DECODERs read it to see the server
   * there (fast.h). The page outlives the server (destroyed after it stops). */
  struct fast_page *page = s->engine->book.fast;
  host_fast_live_hold(page);
  for (;;) {
    struct pollfd p[3] = {{s->wake[0], POLLIN, 0}, {s->listen_fd, POLLIN, 0},
                          {s->local_fd, POLLIN, 0}};
    int n = poll(p, 3, REAP_INTERVAL_MS);
    if (n > 0 && p[0].revents != 0) break;
    reap(s, false);
    if (n <= 0) continue;
    if ((p[1].revents & POLLIN) != 0) take_connection(s, s->listen_fd, false);
    if ((p[2].revents & POLLIN) != 0) take_connection(s, s->local_fd, true);
  }
  host_fast_live_drop(page);
  return NULL;
}

int32_t host_server_start(struct engine *e, const struct sockaddr_in *addr, struct server **out,
                     uint16_t *out_port) {
  struct server *s = calloc(1, sizeof *s);
  if (s == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the server");
  s->engine = e;
  char text[CORE_ERRNO_TEXT_CAP];
  int32_t status = host_net_listen(addr, &s->listen_fd, out_port);
  if (status != LLMDD_SUCCESS) {
    free(s);
    return status;
  }
  status = host_auth_key(e->options.secret, e->options.secret_len, &s->key);
  if (status == LLMDD_SUCCESS) status = host_local_listen(e->cluster_id, &s->local_fd);
  if (status != LLMDD_SUCCESS) {
    close(s->listen_fd);
    free(s);
    return status;
  }
  if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    status = core_fail(LLMDD_FAILED, "cannot create a pipe for the server: %s", core_errno_text(errno, text));
    close(s->listen_fd);
    close(s->local_fd);
    free(s);
    return status;
  }
  pthread_mutex_init(&s->lock, NULL);
  if (core_thread_start(&s->listener, listener_main, s) != 0) {
    close(s->listen_fd);
    close(s->local_fd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return core_fail(LLMDD_FAILED, "cannot start the server's thread");
  }
  *out = s;
  return LLMDD_SUCCESS;
}

void host_server_stop(struct server *s) {
  ssize_t n;
  do n = write(s->wake[1], "x", 1);
  while (n < 0 && errno == EINTR);
  pthread_join(s->listener, NULL);
  close(s->listen_fd); /* from here connecting is refused */
  close(s->local_fd);  /* its name goes with the cluster id's lock (rundir.h) */
  pthread_mutex_lock(&s->lock);
  for (struct connection *c = s->connections; c != NULL; c = c->next) shutdown(c->fd, SHUT_RDWR);
  pthread_mutex_unlock(&s->lock);
  reap(s, true);
  host_ucx_server_stop(s->ucx); /* no connection is left to ask for it */
  close(s->wake[0]);
  close(s->wake[1]);
  pthread_mutex_destroy(&s->lock);
  memset(&s->key, 0, sizeof s->key);
  free(s);
}
