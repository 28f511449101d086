/* Bytes through a link's socket: the STREAM request (stream.h). */
#define _DEFAULT_SOURCE 1
#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/error.h"
#include "llmdd.h"
#include "net.h"

/* The PROMPT waits this long for the next bytes of a request under way. */
#define STALL_TIMEOUT_MS 10000

/* ---- raw bytes, after a message ---- */

/* Receives n bytes: first what the receive state already holds past the last
 * message, then from the socket. */
static int32_t recv_raw(int fd, struct proto_rx *rx, uint8_t *dst, uint64_t n,
                        const struct core_guard *g, int wake_fd) {
  if (rx->have > 0) {
    uint64_t take = n < rx->have ? n : rx->have;
    memcpy(dst, rx->buf, (size_t)take);
    memmove(rx->buf, rx->buf + take, rx->have - take);
    rx->have -= (uint32_t)take;
    dst += take;
    n -= take;
  }
  char text[CORE_ERRNO_TEXT_CAP];
  while (n > 0) {
    ssize_t got = recv(fd, dst, n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n, MSG_DONTWAIT);
    if (got > 0) {
      dst += got;
      n -= (uint64_t)got;
      continue;
    }
    if (got == 0) return core_fail(LLMDD_LINK_FAILED, "the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return core_fail(LLMDD_LINK_FAILED, "the connection failed: %s", core_errno_text(errno, text));
    int32_t status = host_net_wait(fd, POLLIN, g, wake_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
  return LLMDD_SUCCESS;
}

static int32_t send_raw(int fd, const uint8_t *src, uint64_t n, const struct core_guard *g,
                        int wake_fd) {
  char text[CORE_ERRNO_TEXT_CAP];
  while (n > 0) {
    ssize_t sent = send(fd, src, n > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)n,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      src += sent;
      n -= (uint64_t)sent;
      continue;
    }
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return core_fail(LLMDD_LINK_FAILED, "the connection failed: %s", core_errno_text(errno, text));
    int32_t status = host_net_wait(fd, POLLOUT, g, wake_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
  return LLMDD_SUCCESS;
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

/* ---- the DECODER's side ---- */

/* Moves the data of pairs [first, first + n) in request order, checking the
 * guard at every LLMDD_COPY_CHUNK_BYTES. */
static int32_t move_data(struct link *l, const struct stream_plan *p, int32_t first, int32_t n,
                         const struct core_guard *g) {
  uint64_t since_check = 0;
  for (int32_t d = 0; d < p->num_devices; d++)
    for (int32_t t = 0; t < p->num_tensors; t++)
      for (int32_t i = first; i < first + n; i++) {
        uint8_t *local = p->local(p->ctx, d, t, i);
        for (uint64_t done = 0; done < p->block_bytes;) {
          if (since_check >= LLMDD_COPY_CHUNK_BYTES) {
            int32_t status = core_guard_check(g);
            if (status != LLMDD_SUCCESS) return status;
            since_check = 0;
          }
          uint64_t chunk = p->block_bytes - done;
          if (chunk > LLMDD_COPY_CHUNK_BYTES) chunk = LLMDD_COPY_CHUNK_BYTES;
          int32_t status = p->op == STREAM_WRITE ? send_raw(l->fd, local + done, chunk, g, -1)
                                                 : recv_raw(l->fd, &l->in, local + done, chunk, g, -1);
          if (status != LLMDD_SUCCESS) return status;
          done += chunk;
          since_check += chunk;
        }
      }
  return LLMDD_SUCCESS;
}

/* Waits for the answer to request seq (earlier answers are those of readers
 * that gave up: skipped, as host_link_exchange does). */
static int32_t await_reply(struct link *l, uint64_t seq, struct msg *reply,
                           const struct core_guard *g) {
  for (;;) {
    int32_t status = host_proto_recv(l->fd, &l->in, reply, g, -1, 0);
    if (status != LLMDD_SUCCESS) return status;
    if (reply->seq < seq) continue;
    if (reply->seq != seq || reply->type != MSG_STREAM_REPLY)
      return core_fail(LLMDD_LINK_FAILED, "the peer answered out of step (message type %u)",
                       reply->type);
    return LLMDD_SUCCESS;
  }
}

/* One request: pairs [first, first + n). */
static int32_t run_one(struct link *l, const struct stream_plan *p, int32_t first, int32_t n,
                       uint8_t *indexes, const struct core_guard *g, bool *out_of_step) {
  int32_t status = host_link_stream_enter(l, g);
  if (status != LLMDD_SUCCESS) return status;
  struct msg m = {.type = MSG_STREAM,
                  .u.stream = {.pin = p->pin,
                               .op = p->op,
                               .num_blocks = (uint32_t)n,
                               .base = p->base,
                               .block_bytes = p->block_bytes,
                               .tensor_start = p->remote_start,
                               .num_tensors = (uint32_t)p->num_tensors}};
  m.seq = ++l->next_seq;
  bool torn = false;
  status = host_proto_send(l->fd, &m, g, -1, &torn);
  bool sent_any = status == LLMDD_SUCCESS || torn;
  for (int32_t i = 0; i < n; i++)
    put64(indexes + 8 * (size_t)i, p->pairs[2 * (int64_t)(first + i) + p->remote_side]);
  if (status == LLMDD_SUCCESS) status = send_raw(l->fd, indexes, 8 * (uint64_t)n, g, -1);
  if (status == LLMDD_SUCCESS && p->op == STREAM_WRITE) status = move_data(l, p, first, n, g);
  host_link_stream_sent(l);
  struct msg reply;
  if (status == LLMDD_SUCCESS) status = await_reply(l, m.seq, &reply, g);
  if (status == LLMDD_SUCCESS && reply.u.stream_status != LLMDD_SUCCESS) {
    host_link_stream_leave(l);
    return core_fail(LLMDD_LINK_FAILED, "the peer refused the transfer (status 0x%08x)",
                     (unsigned)reply.u.stream_status);
  }
  if (status == LLMDD_SUCCESS && p->op == STREAM_READ) status = move_data(l, p, first, n, g);
  host_link_stream_leave(l);
  *out_of_step = status != LLMDD_SUCCESS && sent_any;
  return status;
}

int32_t host_stream_run(struct link *l, const struct stream_plan *p, const struct core_guard *g) {
  int32_t per = p->num_pairs < STREAM_MAX_BLOCKS ? p->num_pairs : STREAM_MAX_BLOCKS;
  uint8_t *indexes = malloc(8 * (size_t)per);
  if (indexes == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a transfer");
  int32_t status = LLMDD_SUCCESS;
  bool out_of_step = false;
  for (int32_t first = 0; first < p->num_pairs && status == LLMDD_SUCCESS; first += per) {
    int32_t n = p->num_pairs - first < per ? p->num_pairs - first : per;
    status = run_one(l, p, first, n, indexes, g, &out_of_step);
  }
  free(indexes);
  if (out_of_step) {
    /* The peer may be mid-request: the stream cannot be put back in step. */
    struct core_kept_error why;
    core_error_keep(&why);
    host_link_break(l);
    status = core_fail(status, "%s (the link to cluster %llu was mid-transfer through its socket, and is"
                      " broken: link again)",
              why.text, (unsigned long long)l->cluster_id);
  }
  return status;
}

/* ---- the PROMPT's side ---- */

/* Whether block index i lies within the window's bytes of a tensor. */
static bool block_fits(const struct stream_window *w, uint64_t base, uint64_t block, uint64_t i) {
  if (base > w->bytes || block > w->bytes - base) return false;
  return i <= (w->bytes - base - block) / block;
}

bool host_stream_serve(int fd, struct proto_rx *rx, const struct book *b, const struct cache *c,
                       const struct stream_window *w, bool writable, const struct msg *m,
                       int wake_fd) {
  const struct msg_stream *q = &m->u.stream;
  bool ok = (q->op == STREAM_READ || (q->op == STREAM_WRITE && writable)) && q->num_blocks >= 1 &&
            q->num_blocks <= STREAM_MAX_BLOCKS && q->block_bytes >= 1 && q->tensor_start >= 0 &&
            q->num_tensors >= 1 && q->num_tensors <= (uint32_t)w->num_tensors &&
            (uint32_t)q->tensor_start <= (uint32_t)w->num_tensors - q->num_tensors;
  if (!ok) return false;
  uint8_t *raw = malloc(8 * (size_t)q->num_blocks);
  uint64_t *indexes = malloc(sizeof *indexes * (size_t)q->num_blocks);
  struct core_guard g = core_guard_for(STALL_TIMEOUT_MS, "receiving a transfer");
  ok = raw != NULL && indexes != NULL &&
       recv_raw(fd, rx, raw, 8 * (uint64_t)q->num_blocks, &g, wake_fd) == LLMDD_SUCCESS;
  for (uint32_t i = 0; ok && i < q->num_blocks; i++) {
    indexes[i] = get64(raw + 8 * (size_t)i);
    ok = block_fits(w, q->base, q->block_bytes, indexes[i]);
  }
  free(raw);
  if (ok && q->op == STREAM_READ) {
    struct msg answer = {.type = MSG_STREAM_REPLY, .seq = m->seq, .u.stream_status = LLMDD_SUCCESS};
    bool torn;
    g = core_guard_for(STALL_TIMEOUT_MS, "answering a transfer");
    ok = host_proto_send(fd, &answer, &g, wake_fd, &torn) == LLMDD_SUCCESS;
  }
  /* The devices' count is this engine's, which the DECODER's matches (HELLO). */
  for (int32_t d = 0; ok && d < b->num_devices; d++)
    for (uint32_t t = 0; ok && t < q->num_tensors; t++) {
      uint8_t *tensor =
          host_cache_tensor(b, c, d, w->first_tensor + q->tensor_start + (int32_t)t) + w->offset;
      for (uint32_t i = 0; ok && i < q->num_blocks; i++) {
        uint8_t *at = tensor + q->base + indexes[i] * q->block_bytes;
        for (uint64_t done = 0; ok && done < q->block_bytes;) {
          uint64_t chunk = q->block_bytes - done;
          if (chunk > LLMDD_COPY_CHUNK_BYTES) chunk = LLMDD_COPY_CHUNK_BYTES;
          /* A stalled peer loses the connection, not this thread. */
          g = core_guard_for(STALL_TIMEOUT_MS, "moving a transfer");
          ok = (q->op == STREAM_WRITE ? recv_raw(fd, rx, at + done, chunk, &g, wake_fd)
                                      : send_raw(fd, at + done, chunk, &g, wake_fd)) ==
               LLMDD_SUCCESS;
          done += chunk;
        }
      }
    }
  free(indexes);
  if (ok && q->op == STREAM_WRITE) {
    struct msg answer = {.type = MSG_STREAM_REPLY, .seq = m->seq, .u.stream_status = LLMDD_SUCCESS};
    bool torn;
    g = core_guard_for(STALL_TIMEOUT_MS, "answering a transfer");
    ok = host_proto_send(fd, &answer, &g, wake_fd, &torn) == LLMDD_SUCCESS;
  }
  return ok;
}
