/* UCX_KEYS: one-sided transfers of a PROMPT's memory outside its pools
 * (ucx_outside.h). */
#define _DEFAULT_SOURCE 1
#include "ucx_outside.h"

#include <stdlib.h>

#include "core/error.h"
#include "llmdd.h"

/* The exchange, holding both gates as STREAM does: the answer is decoded into
 * a buffer of this call (proto_rx.ucx_into), which no other reader may see. */
static int32_t exchange(struct link *l, uint64_t pin, struct msg_ucx_reply *answer,
                        const struct core_guard *g) {
  int32_t status = host_link_stream_enter(l, g);
  if (status != LLMDD_SUCCESS) return status;
  struct msg m = {.type = MSG_UCX_KEYS, .u.ucx_keys_pin = pin};
  m.seq = ++l->next_seq;
  bool torn = false;
  status = host_proto_send(l->fd, &m, g, -1, &torn);
  bool sent_any = status == LLMDD_SUCCESS || torn;
  host_link_stream_sent(l);
  l->in.ucx_into = answer;
  struct msg reply;
  while (status == LLMDD_SUCCESS) {
    status = host_proto_recv(l->fd, &l->in, &reply, g, -1, 0);
    if (status != LLMDD_SUCCESS || reply.seq < m.seq) continue; /* a reader that gave up */
    if (reply.seq != m.seq || reply.type != MSG_UCX_KEYS_REPLY)
      status = core_fail(LLMDD_LINK_FAILED, "the peer answered out of step (message type %u)",
                         reply.type);
    break;
  }
  l->in.ucx_into = NULL;
  host_link_stream_leave(l);
  /* Given up after the request went out, the answer would come to a reader
   * that has no buffer for it: the link cannot be kept in step. */
  if (status != LLMDD_SUCCESS && (sent_any || status == LLMDD_LINK_FAILED)) host_link_break(l);
  return status;
}

int32_t host_ucx_outside_open(struct link *l, const struct msg_lookup_reply *r, bool put,
                              const struct core_guard *g, struct ucx_regions **out) {
  *out = NULL;
  struct msg_ucx_reply *answer = calloc(1, sizeof *answer);
  if (answer == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a transfer");
  int32_t status = exchange(l, r->pin, answer, g);
  if (status == LLMDD_SUCCESS && answer->status != LLMDD_SUCCESS) {
    status = answer->status == LLMDD_FEATURE_NOT_ENABLED
                 ? LLMDD_FEATURE_NOT_ENABLED
                 : core_fail(LLMDD_LINK_FAILED,
                             "the peer of cluster %llu refused keys for its memory (status"
                             " 0x%08x)",
                             (unsigned long long)l->cluster_id, (unsigned)answer->status);
  } else if (status == LLMDD_SUCCESS) {
    /* Never trust the peer: one range per tensor the LOOKUP showed, on each
     * device, writable where this is a push. */
    bool ok = (uint64_t)answer->devices == (uint64_t)l->num_devices * r->num_tensors &&
              (!put || (answer->flags & UCX_REPLY_WRITABLE) != 0);
    for (uint32_t i = 0; ok && i < answer->devices; i++)
      ok = answer->bases[i] != 0 && answer->bases[i] <= UINT64_MAX - r->tensor_bytes;
    if (!ok) {
      host_link_break(l);
      status = core_fail(LLMDD_LINK_FAILED,
                         "the peer of cluster %llu answered with keys that do not match the cache"
                         " it pinned",
                         (unsigned long long)l->cluster_id);
    } else {
      status = host_ucx_regions_open(l->ucx, answer, r->tensor_bytes, out);
    }
  }
  free(answer);
  return status;
}
