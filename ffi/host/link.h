/* A DECODER's (or MIX's) link to a PROMPT (or MIX) engine: the control
 * connection, and the PROMPT's pools mapped read-only.
 *
 * Lifetime: refcounted. The engine's link table holds one reference; each pull
 * or unlink using the link holds another. Unlink and finalize only take the link
 * out of the table, so a running pull keeps its mapping and connection until it
 * ends; the last reference closes the connection (the PROMPT then drops whatever
 * the connection pinned) and unmaps the pools.
 *
 * A link is `broken` once its connection is known dead or out of step (the PROMPT
 * went away, reset, sent something malformed). A broken link stays in the table:
 * pulls over it fail with LINK_FAILED until it is unlinked, or replaced by a new
 * llmdd_link to the same cluster.
 *
 * Concurrency: several pulls may share a link. Sending is one thread at a time
 * (`tx`), and so is a request waiting for its answer (`rx`); both waits are
 * bounded by the waiter's guard, never by another thread's. Every request carries
 * a sequence number, and a LOOKUP's pin is named by it: a reader that gives up
 * releases its pin at once (DONE needs no answer) and leaves the answer itself
 * to the next reader, which recognises it as stale and skips it. */
#ifndef LLMDD_HOST_LINK_H
#define LLMDD_HOST_LINK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "fast.h"
#include "net.h"
#include "proto.h"

/* One thread at a time, waited for under a guard. */
struct ucx_link;

struct gate {
  pthread_mutex_t lock;
  pthread_cond_t free; /* CLOCK_MONOTONIC */
  bool busy;
};

struct link {
  atomic_uint refs;
  uint64_t cluster_id;
  char address[NET_ADDRESS_TEXT];
  int fd;
  int32_t num_devices;
  uint64_t pool_bytes;
  /* the PROMPT's pools, read-only unless `writable` (over UCX: its addresses
   * there, never dereferenced) */
  const uint8_t *bases[MAX_DEVICES];
  /* Pushes write into the PROMPT's pooled remote-accessible caches directly:
   * over shared memory, the pools are mapped read-write (both engines enabled
   * llm.EnableRemoteCacheAccessible); over UCX, the PROMPT's keys allow remote
   * writes (it enabled the option), and the writes are ucp_put_nbx. */
  bool writable;
  struct fast_view *fast; /* its generation page and the answers kept (fast.h), or NULL */
  struct ucx_link *ucx;   /* the data path over UCX (ucx.h), or NULL: shm */
  atomic_bool broken;
  struct gate tx;
  struct gate rx;
  uint64_t next_seq;    /* under tx */
  struct proto_rx in;   /* under rx */
  pthread_mutex_t lock; /* pulls */
  pthread_cond_t quiet; /* CLOCK_MONOTONIC; signalled when pulls drops to 0 */
  int32_t pulls;        /* accepted pulls that have not ended */
};

void host_link_retain(struct link *l);
void host_link_release(struct link *l);

/* The engine's link to cluster_id, live or broken, or NULL (engine lock held). */
struct link *host_links_find(struct engine *e, uint64_t cluster_id);

/* Takes l out of the table (engine lock held); the table's reference passes to
 * the caller. */
void host_links_remove(struct engine *e, struct link *l);

/* Whether the PROMPT is still there (does not wait). A dead one breaks the link. */
bool host_link_alive(struct link *l);

/* The same for a copy made with a kept answer (fast.h), which holds no pin:
 * the PROMPT process and its server still there, from the generation page's
 * live lock without a system call where the page has one, else as
 * host_link_alive. */
bool host_link_alive_kept(struct link *l);

/* Marks the link broken and shuts its connection down, so the PROMPT drops the
 * pins of this connection at once. */
void host_link_break(struct link *l);

/* Sends request and waits for its answer, which must be of type reply_type.
 * Returns SUCCESS, LINK_FAILED (the link is then broken), or the guard's status
 * (the link stays usable). */
int32_t host_link_exchange(struct link *l, struct msg *request, uint16_t reply_type,
                      struct msg *reply, const struct core_guard *g);

/* Sends a message that has no answer (DONE). */
int32_t host_link_send(struct link *l, struct msg *m, const struct core_guard *g);

/* Releases a pin at the PROMPT without consuming anything, keeping the thread's
 * last error as it was. */
void host_link_unpin(struct link *l, uint64_t pin);

/* A LOOKUP (pulls and pushes): sends request, waits for the answer and, when it
 * found a cache, checks it against the mapped pools (never trust the peer: a
 * cache that would reach outside them is a broken link, not a memory access).
 * Returns SUCCESS (the answer's own status may still be a refusal, which the
 * caller words), LINK_FAILED (the peer went away, or answered outside its
 * pools; the link is then broken), or the guard's status. */
int32_t host_link_lookup(struct link *l, struct msg *request, struct msg *answer,
                         const struct core_guard *g);

/* A STREAM exchange (stream.h): enters the receive gate, then the send gate;
 * host_link_stream_sent leaves the send gate once the request is out, and
 * host_link_stream_leave the receive gate once the answer is in. */
int32_t host_link_stream_enter(struct link *l, const struct core_guard *g);
void host_link_stream_sent(struct link *l);
void host_link_stream_leave(struct link *l);

/* Counts a pull over the link (unlink waits for them to end). */
void host_link_pull_begin(struct link *l);
void host_link_pull_end(struct link *l);

#endif
