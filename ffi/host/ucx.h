/* UCX as the data path of a link (DESIGN.md §4.6): the control connection, its
 * authentication and the LOOKUP/DONE pins stay as they are, and the bytes of a
 * pull move as one-sided UCP reads (ucp_get_nbx) out of the PROMPT's pools
 * instead of through a shared-memory mapping. This is what links engines on
 * different hosts; `llmdd.transport=ucx` chooses it on one machine too.
 *
 * UCX is loaded when a link first needs it, never before: dlopen of libucp.so.0
 * (or of the file named by the environment variable LLMDD_UCX_LIBRARY, which the
 * tests point at a missing file to see the message a machine without UCX gives)
 * and a dozen dlsym. The library neither links against UCX nor needs its headers
 * (ucx_api.h). One UCP context serves the process and lives until it exits; its
 * configuration is UCX's own (UCX_TLS, UCX_NET_DEVICES, ... from the
 * environment, read once, when UCX is loaded).
 *
 * PROMPT: on the first UCX message of any DECODER, its server creates a UCP
 * worker with a progress thread (which serves the reads: over TCP, UCX emulates
 * them with messages the PROMPT must answer), maps every device pool with
 * ucp_mem_map and packs their remote keys; each UCX request is answered with the
 * worker's address, the pools' base addresses and the keys (proto.h UCX_REPLY).
 *
 * DECODER: a link over UCX has its own worker (thread-safe: pulls on several
 * threads share it) and one endpoint to the PROMPT's worker, with the keys
 * unpacked. A pull records the ranges it would copy (the same loops as the
 * shared-memory copy, with host_ucx_record as their copy function), merges
 * contiguous ones, and reads them in gets of at most UCX_GET_BYTES, a window of
 * them in flight, progressing the worker and checking the guard, the control
 * connection and the endpoint in between. A read that fails, or a PROMPT that is
 * gone, is LINK_FAILED; a deadline or cancel stops issuing and waits for the
 * reads in flight (at most UCX_DRAIN_MS, then the endpoint is closed by force),
 * so no read lands in the destination after the pull returned. */
/*
 * Pushes: the same batch with the direction reversed (put). The pusher records
 * its copies as usual — the destination pointer is the peer's address
 * (link->bases, as for pulls the source) and the source its own memory — and
 * the run issues ucp_put_nbx instead of ucp_get_nbx; merging, the window, the
 * checks and the drain are unchanged. A put's completion means the data left
 * this side, so after the last put (or the last one issued, when a deadline
 * or cancel stopped issuing) the run flushes the endpoint (ucp_ep_flush_nbx):
 * when it returns SUCCESS every write is in the peer's memory, before the DONE
 * that lets the peer use it. Where the flush does not complete within the
 * drain, the endpoint is closed by force and the link's UCX side is dead
 * (every later transfer says so); writes that were on the wire then may still
 * land after the pin was released (DESIGN.md §4.6).
 *
 * The PROMPT maps its pools with remote write access only when it enabled
 * llm.EnableRemoteCacheAccessible, and says so in UCX_REPLY (flags); only then
 * do pushes into its pools go this way, else through STREAM. Memory outside
 * the pools (registered caches, the host pool) gets keys per pin (UCX_KEYS,
 * ucx_outside.h): host_ucx_batch_begin_regions records against those.
 */
#ifndef LLMDD_HOST_UCX_H
#define LLMDD_HOST_UCX_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/guard.h"
#include "proto.h"

#define UCX_LIBRARY_DEFAULT "libucp.so.0"
#define UCX_LIBRARY_ENV "LLMDD_UCX_LIBRARY"
/* The largest single read, and how many may be in flight. */
#define UCX_GET_BYTES ((uint64_t)4 << 20)
#define UCX_WINDOW_OPS 1024
#define UCX_DRAIN_MS 1000
/* The most a staged batch (host_ucx_batch_stage) reads. */
#define UCX_STAGE_BYTES ((uint64_t)64 << 10)

/* Loads UCX and creates the process's UCP context (once; a failure is tried
 * again next time). SUCCESS, or `missing` with a message naming the package to
 * install. */
int32_t host_ucx_load(int32_t missing);

/* Whether a is an address of this machine (loopback, or one of its interfaces'). */
bool host_ucx_address_is_local(const struct sockaddr_in *a);

/* ---- PROMPT ---- */

struct ucx_server;

/* Fills the answer to a UCX request: starts *slot's UCX side on first use
 * (pools: base addresses, num_devices of pool_bytes each; page: the generation
 * page, fast.h, mapped for remote reads only, or NULL). Never fails: a
 * failure is the answer's status, with the reason in the server's log of
 * nothing (the DECODER says what the status means). Thread-safe. */
void host_ucx_answer(struct ucx_server **slot, uint8_t *const *pools, int32_t num_devices,
                     uint64_t pool_bytes, bool writable, uint8_t *page, uint64_t page_bytes,
                     struct msg_ucx_reply *r);

/* Stops the progress thread and releases the worker and mappings (NULL: nothing). */
void host_ucx_server_stop(struct ucx_server *s);

/* One pin's memory outside the pools, mapped for a linked DECODER (UCX_KEYS). */
struct ucx_pin_map;

/* Maps n ranges of `bytes` each (remote reads; remote writes too when
 * writable) with the UCX side started in *slot, and fills r (UCX_KEYS_REPLY)
 * with their addresses and keys. r->status FEATURE_NOT_ENABLED (UCX not
 * started, n > MAX_DEVICES, keys too large, a mapping failed) leaves *out
 * NULL. Thread-safe. */
void host_ucx_pin_map(struct ucx_server **slot, uint8_t *const *addrs, int32_t n, uint64_t bytes,
                      bool writable, struct msg_ucx_reply *r, struct ucx_pin_map **out);
void host_ucx_pin_unmap(struct ucx_pin_map *m); /* NULL: nothing */

/* ---- DECODER ---- */

struct ucx_link;

/* Connects to the PROMPT's worker from its answer; `where` names it in messages.
 * On success, bases[d] are the PROMPT's pool addresses (only ever offset and
 * handed back to host_ucx_record, never dereferenced). */
int32_t host_ucx_link_open(const struct msg_ucx_reply *r, int32_t num_devices, const char *where,
                           const uint8_t **bases, struct ucx_link **out);
void host_ucx_link_close(struct ucx_link *u);

/* Whether the PROMPT's keys allow writes into its pools (UCX_REPLY_WRITABLE). */
bool host_ucx_link_writable(const struct ucx_link *u);
/* Whether the PROMPT offered its generation page (UCX_REPLY_GENERATIONS). */
bool host_ucx_link_has_page(const struct ucx_link *u);

/* A pinned cache outside the PROMPT's pools, as its UCX_KEYS_REPLY gave it:
 * count ranges of `bytes`, each with its key unpacked on the link's endpoint. */
struct ucx_regions {
  int32_t count;
  uint64_t bytes;
  bool writable;
  uint64_t addrs[MAX_DEVICES];
  void *rkeys[MAX_DEVICES]; /* ux_rkey_h */
};

/* Unpacks r's keys (r->devices of them, already checked against what the
 * LOOKUP answered). SUCCESS or LINK_FAILED. */
int32_t host_ucx_regions_open(struct ucx_link *u, const struct msg_ucx_reply *r, uint64_t bytes,
                              struct ucx_regions **out);
void host_ucx_regions_close(struct ucx_link *u, struct ucx_regions *rg); /* NULL: nothing */

/* One pull's reads or one push's writes (put). Between begin and run,
 * host_ucx_record (a core_copy_fn) records the calling thread's copies into
 * the batch instead of copying. */
struct ucx_batch {
  struct ucx_link *link;
  bool put; /* writes into the peer's pools (a push), else reads */
  const struct ucx_regions *regions; /* the peer's memory outside its pools, or NULL: the pools */
  struct ucx_range *ranges;
  uint64_t count, capacity;
  int32_t status; /* OUT_OF_MEMORY when a range could not be recorded */
  bool read_page; /* host_ucx_batch_read_page */
  uint32_t page_word;
  uint64_t page_value; /* what the run read there */
  bool stage;       /* host_ucx_batch_stage */
  uint8_t *scratch; /* after a staged run that succeeded: the bytes read */
};

void host_ucx_batch_begin(struct ucx_batch *b, struct ucx_link *u, bool put, uint64_t pool_bytes,
                          int32_t num_devices, const uint8_t *const *bases);
/* As host_ucx_batch_begin, for memory outside the pools: the recorded remote
 * side must lie within one of rg's ranges. */
void host_ucx_batch_begin_regions(struct ucx_batch *b, struct ucx_link *u, bool put,
                                  const struct ucx_regions *rg);
void host_ucx_record(uint8_t *dst, const uint8_t *src, uint64_t n);

/* A pull's batch (a link with the page): after all its reads, ordered after
 * them by ucp_worker_fence, the run also reads a word of the PROMPT's
 * generation page into b->page_value (same round trip; fast.h's seqlock). */
void host_ucx_batch_read_page(struct ucx_batch *b, uint32_t word);

/* A pull's batch whose bytes may turn out stale (fast.h: a kept answer): the
 * run reads into memory of its own instead of the destination, and
 * host_ucx_batch_deliver then copies them there, or not. A staged batch reads
 * at most UCX_STAGE_BYTES (host_ucx_batch_bytes: what was recorded). */
void host_ucx_batch_stage(struct ucx_batch *b);
uint64_t host_ucx_batch_bytes(const struct ucx_batch *b);
/* After a staged run that succeeded: copies what it read into the destination
 * (deliver), or drops it; ends the batch. */
void host_ucx_batch_deliver(struct ucx_batch *b, bool deliver);

/* Ends a batch without reading or writing anything. */
void host_ucx_batch_abandon(struct ucx_batch *b);

/* Reads (or writes, put) every recorded range, then (put) flushes; peer_check(peer) as core/copy.h's (the control
 * connection). Ends the batch (also when it fails), except a staged one that
 * succeeded: host_ucx_batch_deliver ends that. */
int32_t host_ucx_batch_run(struct ucx_batch *b, const struct core_guard *g,
                           int32_t (*peer_check)(void *peer), void *peer);

#endif
