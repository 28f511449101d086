/* Bytes through a link's socket (STREAM, proto.h): how a DECODER (or MIX)
 * reaches memory of the engine it linked to that is not in the shared device
 * pools (registered program memory, the host pool), for pulls and pushes alike.
 *
 * One STREAM request moves every block of a call (up to STREAM_MAX_BLOCKS per
 * request; more are split), never one request per block. The DECODER holds the
 * link's receive and send gates for the exchange, so nothing interleaves with
 * the data; the PROMPT's connection thread copies straight between the socket
 * and the pinned cache. A transfer that stops midway (deadline, cancel,
 * finalize, the peer gone) leaves the stream out of step: the link is then
 * broken (LINK_FAILED until linked again), and the PROMPT drops its pins with
 * the connection. */
#ifndef LLMDD_HOST_STREAM_H
#define LLMDD_HOST_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "book.h"
#include "core/guard.h"
#include "link.h"
#include "proto.h"

/* Block indexes one STREAM request carries (8 bytes each at the PROMPT). */
#define STREAM_MAX_BLOCKS 65536

/* What one transfer moves: blocks of a pinned remote cache, and where each
 * block's bytes are here. */
struct stream_plan {
  uint32_t op;           /* STREAM_READ (into local memory) or STREAM_WRITE */
  uint64_t pin;          /* the LOOKUP's pin */
  uint64_t base;         /* remote block i of a tensor is [base + i * block_bytes, +block_bytes) */
  uint64_t block_bytes;
  int32_t remote_start;  /* first remote tensor */
  int32_t num_tensors;   /* tensors from there (and from the local side's start) */
  int32_t num_devices;
  const uint64_t *pairs; /* pairs[2 * i + remote_side] is the remote block of pair i */
  int32_t num_pairs;
  int remote_side;
  /* The local bytes of pair `pair` of tensor `tensor` (counted from the range's
   * start) on `device`. */
  uint8_t *(*local)(void *ctx, int32_t device, int32_t tensor, int32_t pair);
  void *ctx;
  const char *what; /* "pulled" or "pushed", for messages */
};

/* DECODER side: runs a plan over l within g. Returns SUCCESS; the PROMPT's
 * refusal; LINK_FAILED; or the guard's status (the link is then broken if any
 * of the request had gone out). */
int32_t host_stream_run(struct link *l, const struct stream_plan *p, const struct core_guard *g);

/* The part of a pinned cache a DECODER sees: tensors [first_tensor,
 * +num_tensors), bytes [offset, offset + bytes) of each (the whole cache, or
 * the tensor range a LOOKUP_BY_ADDR found). */
struct stream_window {
  int32_t first_tensor, num_tensors;
  uint64_t offset, bytes;
};

/* PROMPT side: serves one STREAM request (seq) of a connection on fd, whose
 * receive state is rx, for a cache the connection has pinned (window: what the
 * pin shows; writable: pinned by a LOOKUP_WRITE). Returns true when answered and the connection stays in
 * step; false when it must close (a malformed request, a block outside the
 * cache, a stalled or vanished peer, the server stopping). */
bool host_stream_serve(int fd, struct proto_rx *rx, const struct book *b, const struct cache *c,
                       const struct stream_window *w, bool writable, const struct msg *m,
                       int wake_fd);

#endif
