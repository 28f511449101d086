/* Over a UCX link, a PROMPT's memory outside its pools (registered caches, the
 * host pool) moves one-sided too: after the LOOKUP that pinned such a cache,
 * the DECODER asks for its keys (UCX_KEYS, proto.h); the PROMPT maps the
 * tensors the pin shows with ucp_mem_map (remote writes only through a
 * LOOKUP_WRITE's pin, a remote-accessible cache) for as long as the pin, and
 * answers with their addresses and packed keys. The transfer then records and
 * runs its ranges as for the pools (ucx.h). Where the PROMPT cannot give keys
 * (more than MAX_DEVICES tensors × devices, keys too large), STREAM serves. */
#ifndef LLMDD_HOST_UCX_OUTSIDE_H
#define LLMDD_HOST_UCX_OUTSIDE_H

#include <stdbool.h>

#include "link.h"
#include "proto.h"
#include "ucx.h"

/* For the pinned cache r (not in the pools) over l's UCX side: SUCCESS with
 * *out (close with host_ucx_regions_close); FEATURE_NOT_ENABLED without a
 * message (no keys: use STREAM); LINK_FAILED (the link is broken), or the
 * guard's status (the link is broken too: the answer may still come). */
int32_t host_ucx_outside_open(struct link *l, const struct msg_lookup_reply *r, bool put,
                              const struct core_guard *g, struct ucx_regions **out);

/* The remote address of tensor `tensor` (counted in the pin's window) on
 * `device`, as an address to record (never dereferenced). */
static inline uint8_t *host_ucx_outside_tensor(const struct ucx_regions *rg, uint32_t num_tensors,
                                               int32_t device, int32_t tensor) {
  return (uint8_t *)(uintptr_t)rg->addrs[(int64_t)device * num_tensors + tensor];
}

#endif
