/* Links: the link object, and llmdd_link / llmdd_unlink. */
#define _DEFAULT_SOURCE 1
#include "link.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/sha256.h"
#include "auth.h"
#include "llmdd.h"
#include "local.h"
#include "shm.h"
#include "task.h"
#include "ucx.h"

/* A pin released for a reader that gave up, or after a failed pull, is sent with
 * a limit of its own: the operation's deadline may have passed already. */
#define UNPIN_TIMEOUT_MS 1000

/* ---- gates ---- */

static void gate_init(struct gate *gt) {
  pthread_mutex_init(&gt->lock, NULL);
  core_cond_init_monotonic(&gt->free);
  gt->busy = false;
}

static void gate_destroy(struct gate *gt) {
  pthread_cond_destroy(&gt->free);
  pthread_mutex_destroy(&gt->lock);
}

static int32_t gate_enter(struct gate *gt, const struct core_guard *g) {
  int32_t status = LLMDD_SUCCESS;
  pthread_mutex_lock(&gt->lock);
  while (gt->busy && (status = core_guard_wait(g, &gt->free, &gt->lock)) == LLMDD_SUCCESS) {
  }
  if (status == LLMDD_SUCCESS) gt->busy = true;
  pthread_mutex_unlock(&gt->lock);
  return status;
}

static void gate_leave(struct gate *gt) {
  pthread_mutex_lock(&gt->lock);
  gt->busy = false;
  pthread_cond_signal(&gt->free);
  pthread_mutex_unlock(&gt->lock);
}

/* ---- the link object ---- */

static struct link *link_create(int fd, uint64_t cluster_id, const char *address,
                                int32_t num_devices) {
  struct link *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  atomic_init(&l->refs, 1);
  atomic_init(&l->broken, false);
  l->cluster_id = cluster_id;
  snprintf(l->address, sizeof l->address, "%s", address);
  l->fd = fd;
  l->num_devices = num_devices;
  gate_init(&l->tx);
  gate_init(&l->rx);
  pthread_mutex_init(&l->lock, NULL);
  core_cond_init_monotonic(&l->quiet);
  return l;
}

void host_link_retain(struct link *l) { atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed); }

void host_link_release(struct link *l) {
  if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1) return;
  /* Closing tells the PROMPT we are gone: it drops this connection's pins. */
  close(l->fd);
  if (l->ucx != NULL) host_ucx_link_close(l->ucx);
  for (int32_t d = 0; d < l->num_devices && l->ucx == NULL; d++)
    if (l->bases[d] != NULL) munmap((void *)l->bases[d], (size_t)l->pool_bytes);
  host_fast_view_close(l->fast);
  gate_destroy(&l->tx);
  gate_destroy(&l->rx);
  pthread_cond_destroy(&l->quiet);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

struct link *host_links_find(struct engine *e, uint64_t cluster_id) {
  for (int32_t i = 0; i < e->num_links; i++)
    if (e->links[i]->cluster_id == cluster_id) return e->links[i];
  return NULL;
}

void host_links_remove(struct engine *e, struct link *l) {
  for (int32_t i = 0; i < e->num_links; i++) {
    if (e->links[i] != l) continue;
    e->links[i] = e->links[--e->num_links];
    e->links[e->num_links] = NULL;
    return;
  }
}

void host_link_break(struct link *l) {
  atomic_store(&l->broken, true);
  /* The fd stays open (others may be polling it) until the last reference. */
  shutdown(l->fd, SHUT_RDWR);
}

bool host_link_alive(struct link *l) {
  if (atomic_load(&l->broken)) return false;
  if (!host_net_peer_gone(l->fd)) return true;
  host_link_break(l);
  return false;
}

bool host_link_alive_kept(struct link *l) {
  if (atomic_load(&l->broken)) return false;
  int alive = l->fast != NULL ? host_fast_alive(l->fast) : -1;
  if (alive < 0) return host_link_alive(l);
  if (!alive) host_link_break(l);
  return alive != 0;
}

int32_t host_link_send(struct link *l, struct msg *m, const struct core_guard *g) {
  int32_t status = gate_enter(&l->tx, g);
  if (status != LLMDD_SUCCESS) return status;
  m->seq = ++l->next_seq;
  bool torn;
  status = host_proto_send(l->fd, m, g, -1, &torn);
  if (status == LLMDD_LINK_FAILED || torn) host_link_break(l);
  gate_leave(&l->tx);
  return status;
}

void host_link_unpin(struct link *l, uint64_t pin) {
  if (atomic_load(&l->broken)) return; /* the PROMPT dropped it with the connection */
  struct core_kept_error kept;
  core_error_keep(&kept);
  struct msg done = {.type = MSG_DONE, .u.done = {.pin = pin, .flags = 0}};
  struct core_guard g = core_guard_for(UNPIN_TIMEOUT_MS, "releasing a pin");
  if (host_link_send(l, &done, &g) != LLMDD_SUCCESS) host_link_break(l);
  core_error_restore(&kept);
}

int32_t host_link_exchange(struct link *l, struct msg *request, uint16_t reply_type,
                      struct msg *reply, const struct core_guard *g) {
  if (atomic_load(&l->broken))
    return core_fail(LLMDD_LINK_FAILED, "the link to cluster %llu at %s is broken",
                (unsigned long long)l->cluster_id, l->address);
  int32_t status = gate_enter(&l->rx, g);
  if (status != LLMDD_SUCCESS) return status;
  status = host_link_send(l, request, g);
  bool sent = status == LLMDD_SUCCESS;
  /* The answer cannot be there yet: wait for it rather than try a read first. */
  if (sent && l->in.have == 0) status = host_net_wait(l->fd, POLLIN, g, -1);
  while (status == LLMDD_SUCCESS) {
    status = host_proto_recv(l->fd, &l->in, reply, g, -1, 0);
    if (status == LLMDD_LINK_FAILED) host_link_break(l);
    if (status != LLMDD_SUCCESS) break;
    if (reply->seq == request->seq) {
      if (reply->type != reply_type) {
        host_link_break(l);
        status = core_fail(LLMDD_LINK_FAILED, "the peer answered with message type %u, not %u",
                      reply->type, reply_type);
      }
      break;
    }
    if (reply->seq > request->seq) {
      host_link_break(l);
      status = core_fail(LLMDD_LINK_FAILED, "the peer answered request %llu, which was not sent",
                    (unsigned long long)reply->seq);
      break;
    }
    /* The answer to a request whose sender gave up (and released its pin). */
  }
  /* Giving up on a LOOKUP that went out: release whatever it pins (the PROMPT
   * handles requests in order, so it has answered by the time it reads this). */
  if (sent && status != LLMDD_SUCCESS && status != LLMDD_LINK_FAILED &&
      request->type == MSG_LOOKUP)
    host_link_unpin(l, request->seq);
  gate_leave(&l->rx);
  return status;
}

/* Whether n tensors of `bytes`, `stride` apart from `offset`, fit in `capacity`. */
static bool fits(uint64_t offset, uint64_t stride, uint64_t n, uint64_t bytes, uint64_t capacity) {
  if (offset > capacity || bytes > capacity - offset) return false;
  return n <= 1 || stride <= (capacity - offset - bytes) / (n - 1);
}

/* Never trust the peer: a cache that would reach outside the mapped pools is a
 * broken link, not a memory access. */
static int32_t check_answer(struct link *l, const struct msg_lookup_reply *r) {
  bool ok = (int32_t)r->devices == l->num_devices && r->num_tensors >= 1 &&
            r->num_tensors <= INT32_MAX && r->batch_size >= 1 && r->tensor_bytes >= 1 &&
            r->tensor_bytes % r->batch_size == 0 && r->row < r->batch_size &&
            r->stride >= r->tensor_bytes;
  for (int32_t d = 0; ok && r->where == LOOKUP_IN_POOLS && d < l->num_devices; d++)
    ok = fits(r->offsets[d], r->stride, r->num_tensors, r->tensor_bytes, l->pool_bytes);
  if (ok) return LLMDD_SUCCESS;
  host_link_break(l);
  return core_fail(LLMDD_LINK_FAILED, "the PROMPT of cluster %llu answered with a cache outside its pools",
              (unsigned long long)l->cluster_id);
}

int32_t host_link_lookup(struct link *l, struct msg *request, struct msg *answer,
                         const struct core_guard *g) {
  int32_t status = host_link_exchange(l, request, MSG_LOOKUP_REPLY, answer, g);
  if (status == LLMDD_LINK_FAILED) {
    struct core_kept_error why;
    core_error_keep(&why);
    return core_fail(status, "the engine of cluster %llu at %s went away: %s",
                     (unsigned long long)l->cluster_id, l->address, why.text);
  }
  if (status != LLMDD_SUCCESS || answer->u.lookup_reply.status != LLMDD_SUCCESS) return status;
  return check_answer(l, &answer->u.lookup_reply);
}

int32_t host_link_stream_enter(struct link *l, const struct core_guard *g) {
  if (atomic_load(&l->broken))
    return core_fail(LLMDD_LINK_FAILED, "the link to cluster %llu at %s is broken",
                     (unsigned long long)l->cluster_id, l->address);
  int32_t status = gate_enter(&l->rx, g);
  if (status != LLMDD_SUCCESS) return status;
  status = gate_enter(&l->tx, g);
  if (status != LLMDD_SUCCESS) gate_leave(&l->rx);
  return status;
}

void host_link_stream_sent(struct link *l) { gate_leave(&l->tx); }

void host_link_stream_leave(struct link *l) { gate_leave(&l->rx); }

void host_link_pull_begin(struct link *l) {
  pthread_mutex_lock(&l->lock);
  l->pulls++;
  pthread_mutex_unlock(&l->lock);
}

void host_link_pull_end(struct link *l) {
  pthread_mutex_lock(&l->lock);
  if (--l->pulls == 0) pthread_cond_broadcast(&l->quiet);
  pthread_mutex_unlock(&l->lock);
}

static int32_t wait_for_pulls(struct link *l, const struct core_guard *g) {
  int32_t status = LLMDD_SUCCESS;
  pthread_mutex_lock(&l->lock);
  while (l->pulls > 0 && (status = core_guard_wait(g, &l->quiet, &l->lock)) == LLMDD_SUCCESS) {
  }
  pthread_mutex_unlock(&l->lock);
  return status;
}

/* ---- llmdd_link ---- */

struct link_task {
  struct task task;
  uint64_t cluster_id;
  struct sockaddr_in address;
  char where[NET_ADDRESS_TEXT];
};

/* Whether a link to cluster_id may be added (engine lock held). A broken link to
 * the same cluster does not count: the new one replaces it. */
static int32_t check_room(struct engine *e, uint64_t cluster_id) {
  struct link *old = host_links_find(e, cluster_id);
  if (old != NULL && host_link_alive(old))
    return core_fail(LLMDD_ALREADY_LINK, "already linked to cluster %llu (at %s)",
                (unsigned long long)cluster_id, old->address);
  if (e->num_links - (old != NULL) >= LLMDD_MAX_LINKS)
    return core_fail(LLMDD_CLUSTER_NUM_EXCEED_LIMIT,
                "already linked to %d clusters, the most one engine links to", LLMDD_MAX_LINKS);
  return LLMDD_SUCCESS;
}

static int32_t check_hello(const struct link_task *lt, const struct engine *e,
                           const struct msg_hello_reply *r) {
  if (r->status == LLMDD_LINK_FAILED || (r->status == LLMDD_SUCCESS && r->cluster != lt->cluster_id))
    return core_fail(LLMDD_LINK_FAILED, "the engine at %s is cluster %llu, not cluster %llu",
                lt->where, (unsigned long long)r->cluster, (unsigned long long)lt->cluster_id);
  if (r->status != LLMDD_SUCCESS)
    return core_fail(LLMDD_LINK_FAILED, "the engine at %s refused the link (status 0x%08x)",
                lt->where, (unsigned)r->status);
  if ((int32_t)r->devices != e->options.num_devices)
    return core_fail(LLMDD_LINK_FAILED,
                "the engine of cluster %llu has %u devices and this one %d: they must match",
                (unsigned long long)lt->cluster_id, r->devices, e->options.num_devices);
  if (r->pool_bytes == 0 || r->pool_bytes > SIZE_MAX || r->pool_bytes > ((uint64_t)1 << 62))
    return core_fail(LLMDD_LINK_FAILED, "the engine at %s reported pools of %llu bytes", lt->where,
                (unsigned long long)r->pool_bytes);
  return LLMDD_SUCCESS;
}

/* The first exchange on a link (auth.h): the PROMPT proves it holds the key
 * before this engine says anything about itself, then this engine proves it. */
static int32_t authenticate(const struct link_task *lt, const struct engine *e, struct link *l,
                            const struct core_guard *g) {
  struct link_key key;
  int32_t status = host_auth_key(e->options.secret, e->options.secret_len, &key);
  if (status != LLMDD_SUCCESS) return status;
  struct msg request = {.type = MSG_AUTH}, answer;
  status = host_auth_nonce(request.u.auth.nonce);
  if (status == LLMDD_SUCCESS)
    status = host_link_exchange(l, &request, MSG_AUTH_CHALLENGE, &answer, g);
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    status = core_fail(LLMDD_LINK_FAILED, "no answer from %s before the deadline", lt->where);
  else if (status == LLMDD_LINK_FAILED) {
    struct core_kept_error why;
    core_error_keep(&why);
    status = core_fail(LLMDD_LINK_FAILED,
                       "the link to %s failed: %s (is it an llm-datadist engine of this"
                       " version?)",
                       lt->where, why.text);
  }
  if (status == LLMDD_SUCCESS) {
    uint8_t want[AUTH_MAC_BYTES];
    host_auth_prompt_mac(&key, request.u.auth.nonce, answer.u.auth.nonce, want);
    if (!core_equal_secret(want, answer.u.auth.mac, AUTH_MAC_BYTES))
      status = core_fail(LLMDD_LINK_FAILED,
                         "the engine at %s does not hold this engine's link key: %s",
                         lt->where,
                         key.from_secret
                             ? "it must be given the same llmdd.linkSecret"
                             : "without llmdd.linkSecret, engines link only to engines of the"
                               " same user on the same machine");
  }
  if (status == LLMDD_SUCCESS) {
    struct msg proof = {.type = MSG_AUTH_PROOF};
    host_auth_decoder_mac(&key, request.u.auth.nonce, answer.u.auth.nonce, proof.u.auth.mac);
    status = host_link_send(l, &proof, g);
    if (status != LLMDD_SUCCESS)
      status = core_fail(LLMDD_LINK_FAILED, "the link to %s failed while authenticating",
                         lt->where);
  }
  memset(&key, 0, sizeof key);
  return status;
}

/* The pools come as descriptors from the Unix socket of the process that
 * answered the authenticated HELLO, never by name; each is checked (sealed, the
 * object reported, large enough) before it is mapped. */
static int32_t map_pools(const struct link_task *lt, const struct engine *e, struct link *l,
                         const struct msg_hello_reply *r, const struct core_guard *g) {
  int fds[MAX_DEVICES];
  int page_fd = -1;
  uint64_t pool_bytes = 0;
  int32_t status = host_local_fetch(lt->cluster_id, (pid_t)r->pid, l->num_devices, fds,
                                    &pool_bytes, &page_fd, g);
  if (status != LLMDD_SUCCESS) return status;
  l->pool_bytes = r->pool_bytes;
  if (pool_bytes != r->pool_bytes)
    status = core_fail(LLMDD_LINK_FAILED,
                       "the engine of cluster %llu reported pools of %llu bytes, then %llu",
                       (unsigned long long)lt->cluster_id, (unsigned long long)r->pool_bytes,
                       (unsigned long long)pool_bytes);
  /* Writable only where pushes may go: both engines enabled remote access (the
   * PROMPT then passed read-write descriptors). */
  l->writable = e->options.remote_access;
  for (int32_t d = 0; d < l->num_devices && status == LLMDD_SUCCESS; d++) {
    bool writable = l->writable;
    status = host_shm_map_peer(fds[d], lt->cluster_id, d, r->object_ids[d], l->pool_bytes,
                               &writable, &l->bases[d]);
    l->writable = l->writable && writable;
  }
  if (status == LLMDD_SUCCESS && page_fd >= 0)
    status = host_fast_view_open(page_fd, lt->cluster_id, &l->fast);
  for (int32_t d = 0; d < l->num_devices; d++) close(fds[d]);
  if (page_fd >= 0) close(page_fd);
  return status;
}

/* llmdd.transport: shm, ucx, or (auto) ucx only to a PROMPT on another machine. */
static bool host_link_over_ucx(const struct engine *e, const struct sockaddr_in *a) {
  if (e->options.transport != TRANSPORT_AUTO) return e->options.transport == TRANSPORT_UCX;
  return !host_ucx_address_is_local(a);
}

/* Asks the PROMPT for its UCX worker address and pool keys, and connects. */
static int32_t host_link_ucx_open(struct link *l, const char *where, const struct core_guard *g) {
  int32_t status = host_ucx_load(LLMDD_LINK_FAILED); /* before asking: the message names the package */
  if (status != LLMDD_SUCCESS) return status;
  /* The answer is decoded out of line (it is large); the link is not in the
   * engine's table yet, so nothing else reads from it meanwhile. */
  struct msg_ucx_reply *answer = calloc(1, sizeof *answer);
  if (answer == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a link");
  struct msg request = {.type = MSG_UCX}, reply;
  l->in.ucx_into = answer;
  status = host_link_exchange(l, &request, MSG_UCX_REPLY, &reply, g);
  l->in.ucx_into = NULL;
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    status = core_fail(LLMDD_LINK_FAILED, "no answer from %s before the deadline", where);
  if (status == LLMDD_SUCCESS)
    status = host_ucx_link_open(answer, l->num_devices, where, l->bases, &l->ucx);
  /* Pushes into the pools are UCX writes where the PROMPT's keys allow them
   * (it enabled remote access); nothing is mapped here, so this engine's own
   * option does not matter. */
  if (status == LLMDD_SUCCESS) l->writable = host_ucx_link_writable(l->ucx);
  /* Repeat pulls read the PROMPT's generation page over UCX (fast.h). */
  if (status == LLMDD_SUCCESS && host_ucx_link_has_page(l->ucx))
    status = host_fast_view_remote(&l->fast);
  free(answer);
  return status;
}

static int32_t link_run(struct task *t) {
  struct link_task *lt = (struct link_task *)t;
  struct engine *e = t->engine;
  struct core_guard g = host_task_guard(t, "connecting");
  int32_t status = core_guard_check(&g);
  if (status != LLMDD_SUCCESS) return status;

  int fd;
  status = host_net_connect(&lt->address, &g, &fd);
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    return core_fail(LLMDD_LINK_FAILED, "nobody answered at %s before the deadline", lt->where);
  if (status != LLMDD_SUCCESS) return status;
  struct link *l = link_create(fd, lt->cluster_id, lt->where, e->options.num_devices);
  if (l == NULL) {
    close(fd);
    return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a link");
  }

  g.doing = "authenticating the link";
  status = authenticate(lt, e, l, &g);
  if (status != LLMDD_SUCCESS) {
    host_link_release(l);
    return status;
  }
  struct msg hello = {.type = MSG_HELLO,
                      .u.hello = {.decoder_cluster = e->cluster_id,
                                  .expected_cluster = lt->cluster_id,
                                  .abi_version = LLMDD_ABI_VERSION,
                                  .devices = (uint32_t)e->options.num_devices}};
  struct msg reply;
  g.doing = "waiting for the answer to the link request";
  status = host_link_exchange(l, &hello, MSG_HELLO_REPLY, &reply, &g);
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    status = core_fail(LLMDD_LINK_FAILED, "no answer from %s before the deadline", lt->where);
  else if (status == LLMDD_LINK_FAILED) {
    struct core_kept_error why;
    core_error_keep(&why);
    status = core_fail(LLMDD_LINK_FAILED, "the link to %s failed: %s", lt->where, why.text);
  }
  if (status == LLMDD_SUCCESS) status = check_hello(lt, e, &reply.u.hello_reply);
  if (status == LLMDD_SUCCESS) l->pool_bytes = reply.u.hello_reply.pool_bytes;
  if (status == LLMDD_SUCCESS && host_link_over_ucx(e, &lt->address))
    status = host_link_ucx_open(l, lt->where, &g);
  else if (status == LLMDD_SUCCESS)
    status = map_pools(lt, e, l, &reply.u.hello_reply, &g);
  if (status == LLMDD_SUCCESS) {
    pthread_mutex_lock(&e->lock);
    if (atomic_load_explicit(&e->finalizing, memory_order_relaxed))
      status = core_fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized while linking");
    else
      status = check_room(e, lt->cluster_id); /* another link call may have won */
    if (status == LLMDD_SUCCESS) {
      struct link *old = host_links_find(e, lt->cluster_id);
      if (old != NULL) {
        host_links_remove(e, old);
        host_link_release(old);
      }
      e->links[e->num_links++] = l; /* the table takes our reference */
      e->ever_linked = true;
    }
    pthread_mutex_unlock(&e->lock);
  }
  if (status != LLMDD_SUCCESS) host_link_release(l);
  return status;
}

static void link_end(struct task *t) { (void)t; }

LLMDD_API int32_t llmdd_link(uint64_t engine, uint64_t remote_cluster_id,
                             const uint8_t *remote_addr, int32_t addr_len, uint64_t job) {
  struct link_task lt = {.task = {.run = link_run, .end = link_end},
                         .cluster_id = remote_cluster_id};
  int32_t status = host_task_begin(&lt.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = lt.task.engine;
  if (e->role == LLMDD_ROLE_PROMPT)
    return host_task_abandon(&lt.task, core_fail(LLMDD_PARAM_INVALID,
                                       "a PROMPT engine does not link: it is linked to"));
  if (remote_addr == NULL || addr_len <= 0 ||
      host_net_parse_address((const char *)remote_addr, addr_len, &lt.address) != 0 ||
      lt.address.sin_port == 0)
    return host_task_abandon(&lt.task,
                        core_fail(LLMDD_PARAM_INVALID,
                             "remote_addr '%.*s' is not an IPv4 address and a port 1..65535"
                             " (\"ipv4:port\")",
                             remote_addr == NULL || addr_len < 0 ? 0 : addr_len > 64 ? 64 : addr_len,
                             remote_addr == NULL ? "" : (const char *)remote_addr));
  host_net_format_address(&lt.address, lt.where);
  status = check_room(e, remote_cluster_id);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&lt.task, status);
  return host_task_dispatch(&lt.task, sizeof lt);
}

/* ---- llmdd_unlink ---- */

struct unlink_task {
  struct task task;
  uint64_t cluster_id;
  int32_t force;
  struct link *link; /* once taken out of the table */
};

static int32_t not_answered(const struct unlink_task *ut, const char *why) {
  if (ut->force) return LLMDD_SUCCESS;
  return core_fail(LLMDD_UNLINK_FAILED, "the PROMPT of cluster %llu at %s %s: the link is dropped all"
              " the same", (unsigned long long)ut->cluster_id, ut->link->address, why);
}

static int32_t unlink_run(struct task *t) {
  struct unlink_task *ut = (struct unlink_task *)t;
  struct engine *e = t->engine;
  struct core_guard g = host_task_guard(t, "waiting for the pulls over the link to end");
  int32_t status = core_guard_check(&g);
  if (status != LLMDD_SUCCESS) return status;

  pthread_mutex_lock(&e->lock);
  ut->link = host_links_find(e, ut->cluster_id);
  if (ut->link != NULL) host_links_remove(e, ut->link);
  pthread_mutex_unlock(&e->lock);
  if (ut->link == NULL)
    return core_fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu (it was unlinked meanwhile)",
                (unsigned long long)ut->cluster_id);

  /* Out of the table: no new pull can start. Telling the PROMPT now would drop
   * the pins of pulls still copying, so let them end first. */
  status = wait_for_pulls(ut->link, &g);
  if (status != LLMDD_SUCCESS) return status;
  if (!host_link_alive(ut->link)) return not_answered(ut, "has gone away");

  struct msg request = {.type = MSG_UNLINK}, reply;
  g.doing = "waiting for the PROMPT to confirm the unlink";
  status = host_link_exchange(ut->link, &request, MSG_UNLINK_REPLY, &reply, &g);
  if (status == LLMDD_SUCCESS && reply.u.unlink_status == LLMDD_SUCCESS) return LLMDD_SUCCESS;
  if (status == LLMDD_FAILED || status == LLMDD_ENGINE_FINALIZED) return status;
  return not_answered(ut, "did not confirm the unlink");
}

static void unlink_end(struct task *t) {
  struct unlink_task *ut = (struct unlink_task *)t;
  if (ut->link != NULL) host_link_release(ut->link);
}

LLMDD_API int32_t llmdd_unlink(uint64_t engine, uint64_t remote_cluster_id, int32_t force,
                               uint64_t job) {
  struct unlink_task ut = {.task = {.run = unlink_run, .end = unlink_end},
                           .cluster_id = remote_cluster_id,
                           .force = force};
  int32_t status = host_task_begin(&ut.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = ut.task.engine;
  if (e->role == LLMDD_ROLE_PROMPT)
    return host_task_abandon(&ut.task, core_fail(LLMDD_PARAM_INVALID,
                                       "a PROMPT engine does not unlink: it has no links"));
  if (host_links_find(e, remote_cluster_id) == NULL)
    return host_task_abandon(&ut.task, core_fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu",
                                       (unsigned long long)remote_cluster_id));
  return host_task_dispatch(&ut.task, sizeof ut);
}
