#define _DEFAULT_SOURCE 1
#include "proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/error.h"
#include "llmdd.h"

/* ---- little-endian fields, through a cursor that remembers overruns ---- */

struct cursor {
  uint8_t *p;
  uint32_t len, pos;
  bool bad;
};

static void put_u32(struct cursor *c, uint32_t v) {
  if (c->pos + 4 > c->len) {
    c->bad = true;
    return;
  }
  for (int i = 0; i < 4; i++) c->p[c->pos++] = (uint8_t)(v >> (8 * i));
}

static void put_u64(struct cursor *c, uint64_t v) {
  put_u32(c, (uint32_t)v);
  put_u32(c, (uint32_t)(v >> 32));
}

static void put_bytes(struct cursor *c, const uint8_t *v, uint32_t n) {
  if (c->pos + n > c->len) {
    c->bad = true;
    return;
  }
  memcpy(c->p + c->pos, v, n);
  c->pos += n;
}

static void get_bytes(struct cursor *c, uint8_t *v, uint32_t n) {
  if (c->pos + n > c->len) {
    c->bad = true;
    return;
  }
  memcpy(v, c->p + c->pos, n);
  c->pos += n;
}

static uint32_t get_u32(struct cursor *c) {
  if (c->pos + 4 > c->len) {
    c->bad = true;
    return 0;
  }
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)c->p[c->pos++] << (8 * i);
  return v;
}

static uint64_t get_u64(struct cursor *c) {
  uint64_t lo = get_u32(c);
  return lo | (uint64_t)get_u32(c) << 32;
}

/* The body size a message of this type must have; -1 for an unknown type. For
 * the replies that end in one value per device, `devices` is that count. */
static int64_t body_size(uint16_t type, uint32_t devices) {
  switch (type) {
  case MSG_HELLO: return 24;
  case MSG_HELLO_REPLY: return 32 + 8 * (int64_t)devices;
  case MSG_LOOKUP: return 32;
  case MSG_LOOKUP_REPLY: return 80 + 8 * (int64_t)devices;
  case MSG_DONE: return 16;
  case MSG_UNLINK: return 0;
  case MSG_UNLINK_REPLY: return 8;
  case MSG_DONE_REPLY: return 8;
  case MSG_AUTH: return 32;
  case MSG_AUTH_CHALLENGE: return 64;
  case MSG_AUTH_PROOF: return 32;
  case MSG_STREAM: return 40;
  case MSG_STREAM_REPLY: return 8;
  case MSG_UCX: return 8;
  case MSG_UCX_REPLY: return 16 + 16 * (int64_t)devices; /* and the blob's bytes */
  case MSG_UCX_KEYS: return 16;
  case MSG_UCX_KEYS_REPLY: return 16 + 16 * (int64_t)devices; /* and the keys' bytes */
  default: return -1;
  }
}

static uint32_t encode(const struct msg *m, uint8_t *buf) {
  struct cursor c = {buf + PROTO_HEADER_BYTES, PROTO_MAX_BODY, 0, false};
  switch (m->type) {
  case MSG_HELLO:
    put_u64(&c, m->u.hello.decoder_cluster);
    put_u64(&c, m->u.hello.expected_cluster);
    put_u32(&c, m->u.hello.abi_version);
    put_u32(&c, m->u.hello.devices);
    break;
  case MSG_HELLO_REPLY: {
    const struct msg_hello_reply *r = &m->u.hello_reply;
    put_u32(&c, (uint32_t)r->status);
    put_u32(&c, r->devices);
    put_u64(&c, r->cluster);
    put_u64(&c, r->pool_bytes);
    put_u32(&c, r->pid);
    put_u32(&c, 0);
    for (uint32_t d = 0; d < r->devices && d < MAX_DEVICES; d++) put_u64(&c, r->object_ids[d]);
    break;
  }
  case MSG_LOOKUP:
    put_u32(&c, m->u.lookup.kind);
    put_u32(&c, m->u.lookup.flags);
    for (int i = 0; i < 3; i++) put_u64(&c, m->u.lookup.k[i]);
    break;
  case MSG_LOOKUP_REPLY: {
    const struct msg_lookup_reply *r = &m->u.lookup_reply;
    put_u32(&c, (uint32_t)r->status);
    put_u32(&c, r->num_tensors);
    put_u64(&c, r->pin);
    put_u64(&c, r->layout_tag);
    put_u64(&c, r->tensor_bytes);
    put_u64(&c, r->batch_size);
    put_u64(&c, r->row);
    put_u64(&c, r->stride);
    put_u32(&c, r->devices);
    put_u32(&c, r->where);
    put_u64(&c, r->slot_gen);
    put_u64(&c, r->global_gen);
    for (uint32_t d = 0; d < r->devices && d < MAX_DEVICES; d++) put_u64(&c, r->offsets[d]);
    break;
  }
  case MSG_DONE:
    put_u64(&c, m->u.done.pin);
    put_u32(&c, m->u.done.flags);
    put_u32(&c, 0);
    break;
  case MSG_UNLINK:
    break;
  case MSG_UNLINK_REPLY:
    put_u32(&c, (uint32_t)m->u.unlink_status);
    put_u32(&c, 0);
    break;
  case MSG_DONE_REPLY:
    put_u32(&c, (uint32_t)m->u.done_status);
    put_u32(&c, 0);
    break;
  case MSG_AUTH:
    put_bytes(&c, m->u.auth.nonce, 32);
    break;
  case MSG_AUTH_CHALLENGE:
    put_bytes(&c, m->u.auth.nonce, 32);
    put_bytes(&c, m->u.auth.mac, 32);
    break;
  case MSG_AUTH_PROOF:
    put_bytes(&c, m->u.auth.mac, 32);
    break;
  case MSG_STREAM:
    put_u64(&c, m->u.stream.pin);
    put_u32(&c, m->u.stream.op);
    put_u32(&c, m->u.stream.num_blocks);
    put_u64(&c, m->u.stream.base);
    put_u64(&c, m->u.stream.block_bytes);
    put_u32(&c, (uint32_t)m->u.stream.tensor_start);
    put_u32(&c, m->u.stream.num_tensors);
    break;
  case MSG_STREAM_REPLY:
    put_u32(&c, (uint32_t)m->u.stream_status);
    put_u32(&c, 0);
    break;
  case MSG_UCX:
    put_u32(&c, 0);
    put_u32(&c, 0);
    break;
  case MSG_UCX_KEYS:
    put_u64(&c, m->u.ucx_keys_pin);
    put_u32(&c, 0);
    put_u32(&c, 0);
    break;
  case MSG_UCX_REPLY:
  case MSG_UCX_KEYS_REPLY: {
    const struct msg_ucx_reply *r = m->u.ucx_reply;
    uint32_t n = r->devices < MAX_DEVICES ? r->devices : MAX_DEVICES;
    uint64_t blob = r->address_bytes;
    put_u32(&c, (uint32_t)r->status);
    put_u32(&c, n);
    put_u32(&c, r->address_bytes);
    put_u32(&c, r->flags);
    for (uint32_t d = 0; d < n; d++) {
      put_u64(&c, r->bases[d]);
      put_u32(&c, r->rkey_bytes[d]);
      put_u32(&c, 0);
      blob += r->rkey_bytes[d];
    }
    if (r->flags & UCX_REPLY_GENERATIONS) {
      put_u64(&c, r->page_base);
      put_u32(&c, r->page_rkey_bytes);
      put_u32(&c, 0);
      blob += r->page_rkey_bytes;
    }
    put_bytes(&c, r->blob, blob <= UCX_BLOB_CAP ? (uint32_t)blob : UCX_BLOB_CAP + 1);
    break;
  }
  }
  struct cursor h = {buf, PROTO_HEADER_BYTES, 0, false};
  put_u32(&h, PROTO_MAGIC);
  put_u32(&h, PROTO_VERSION | (uint32_t)m->type << 16);
  put_u32(&h, c.pos);
  put_u32(&h, 0);
  put_u64(&h, m->seq);
  return PROTO_HEADER_BYTES + c.pos;
}

/* Decodes a body whose header was valid. Returns 0, or -1 when malformed. */
static int decode(uint16_t type, uint8_t *body, uint32_t len, struct msg *m,
                  struct msg_ucx_reply *ucx_into) {
  struct cursor c = {body, len, 0, false};
  uint32_t devices = 0, zero = 0;
  uint64_t blob = 0;       /* UCX_REPLY's bytes after its fixed part */
  uint64_t page_entry = 0; /* and its generation page's entry, when there is one */
  switch (type) {
  case MSG_HELLO:
    m->u.hello.decoder_cluster = get_u64(&c);
    m->u.hello.expected_cluster = get_u64(&c);
    m->u.hello.abi_version = get_u32(&c);
    m->u.hello.devices = get_u32(&c);
    break;
  case MSG_HELLO_REPLY: {
    struct msg_hello_reply *r = &m->u.hello_reply;
    r->status = (int32_t)get_u32(&c);
    r->devices = devices = get_u32(&c);
    r->cluster = get_u64(&c);
    r->pool_bytes = get_u64(&c);
    r->pid = get_u32(&c);
    zero = get_u32(&c);
    if (devices > MAX_DEVICES) return -1;
    for (uint32_t d = 0; d < devices; d++) r->object_ids[d] = get_u64(&c);
    break;
  }
  case MSG_LOOKUP:
    m->u.lookup.kind = get_u32(&c);
    m->u.lookup.flags = get_u32(&c);
    if (m->u.lookup.flags & ~LOOKUP_WRITE) return -1;
    for (int i = 0; i < 3; i++) m->u.lookup.k[i] = get_u64(&c);
    break;
  case MSG_LOOKUP_REPLY: {
    struct msg_lookup_reply *r = &m->u.lookup_reply;
    r->status = (int32_t)get_u32(&c);
    r->num_tensors = get_u32(&c);
    r->pin = get_u64(&c);
    r->layout_tag = get_u64(&c);
    r->tensor_bytes = get_u64(&c);
    r->batch_size = get_u64(&c);
    r->row = get_u64(&c);
    r->stride = get_u64(&c);
    r->devices = devices = get_u32(&c);
    r->where = get_u32(&c);
    r->slot_gen = get_u64(&c);
    r->global_gen = get_u64(&c);
    if (devices > MAX_DEVICES || r->where > LOOKUP_ELSEWHERE) return -1;
    for (uint32_t d = 0; d < devices; d++) r->offsets[d] = get_u64(&c);
    break;
  }
  case MSG_DONE:
    m->u.done.pin = get_u64(&c);
    m->u.done.flags = get_u32(&c);
    zero = get_u32(&c) | (m->u.done.flags & ~(DONE_CONSUME | DONE_ACK));
    break;
  case MSG_UNLINK:
    break;
  case MSG_UNLINK_REPLY:
    m->u.unlink_status = (int32_t)get_u32(&c);
    zero = get_u32(&c);
    break;
  case MSG_DONE_REPLY:
    m->u.done_status = (int32_t)get_u32(&c);
    zero = get_u32(&c);
    break;
  case MSG_AUTH:
    get_bytes(&c, m->u.auth.nonce, 32);
    break;
  case MSG_AUTH_CHALLENGE:
    get_bytes(&c, m->u.auth.nonce, 32);
    get_bytes(&c, m->u.auth.mac, 32);
    break;
  case MSG_AUTH_PROOF:
    get_bytes(&c, m->u.auth.mac, 32);
    break;
  case MSG_STREAM:
    m->u.stream.pin = get_u64(&c);
    m->u.stream.op = get_u32(&c);
    m->u.stream.num_blocks = get_u32(&c);
    m->u.stream.base = get_u64(&c);
    m->u.stream.block_bytes = get_u64(&c);
    m->u.stream.tensor_start = (int32_t)get_u32(&c);
    m->u.stream.num_tensors = get_u32(&c);
    break;
  case MSG_STREAM_REPLY:
    m->u.stream_status = (int32_t)get_u32(&c);
    zero = get_u32(&c);
    break;
  case MSG_UCX:
    zero = get_u32(&c) | get_u32(&c);
    break;
  case MSG_UCX_KEYS:
    m->u.ucx_keys_pin = get_u64(&c);
    zero = get_u32(&c) | get_u32(&c);
    break;
  case MSG_UCX_REPLY:
  case MSG_UCX_KEYS_REPLY: {
    if (ucx_into == NULL) return -1;
    struct msg_ucx_reply *r = m->u.ucx_reply = ucx_into;
    r->status = (int32_t)get_u32(&c);
    r->devices = devices = get_u32(&c);
    r->address_bytes = get_u32(&c);
    r->flags = get_u32(&c);
    zero = r->flags & ~(UCX_REPLY_WRITABLE | UCX_REPLY_GENERATIONS); /* unknown flags are malformed */
    /* Keys only: no worker address, no page. */
    if (type == MSG_UCX_KEYS_REPLY) zero |= r->address_bytes | (r->flags & UCX_REPLY_GENERATIONS);
    if (devices > MAX_DEVICES) return -1;
    blob = r->address_bytes;
    for (uint32_t d = 0; d < devices; d++) {
      r->bases[d] = get_u64(&c);
      r->rkey_bytes[d] = get_u32(&c);
      zero |= get_u32(&c);
      blob += r->rkey_bytes[d];
    }
    r->page_base = 0;
    r->page_rkey_bytes = 0;
    if (r->flags & UCX_REPLY_GENERATIONS) {
      r->page_base = get_u64(&c);
      r->page_rkey_bytes = get_u32(&c);
      zero |= get_u32(&c);
      blob += r->page_rkey_bytes;
      page_entry = 16;
    }
    if (blob > UCX_BLOB_CAP) return -1;
    get_bytes(&c, r->blob, (uint32_t)blob);
    break;
  }
  default:
    return -1;
  }
  /* Exactly the type's size, reserved fields zero. */
  if (c.bad || c.pos != len ||
      (int64_t)len != body_size(type, devices) + (int64_t)(page_entry + blob) ||
      zero != 0)
    return -1;
  return 0;
}

static int32_t malformed(const char *what) {
  return core_fail(LLMDD_LINK_FAILED, "the peer sent a malformed message (%s)", what);
}

/* Checks a complete header; returns the body size or a negative status. */
static int32_t check_header(struct proto_rx *rx, uint16_t *type, uint64_t *seq) {
  struct cursor h = {rx->buf, PROTO_HEADER_BYTES, 0, false};
  uint32_t magic = get_u32(&h);
  uint32_t version_type = get_u32(&h);
  uint32_t length = get_u32(&h);
  uint32_t flags = get_u32(&h);
  *seq = get_u64(&h);
  *type = (uint16_t)(version_type >> 16);
  if (magic != PROTO_MAGIC) return malformed("bad magic");
  if ((version_type & 0xffff) != PROTO_VERSION) return malformed("unknown protocol version");
  if (flags != 0) return malformed("unknown flags");
  if (body_size(*type, 0) < 0) return malformed("unknown message type");
  if (length > PROTO_MAX_BODY ||
      length > body_size(*type, MAX_DEVICES) +
                   (*type == MSG_UCX_REPLY || *type == MSG_UCX_KEYS_REPLY ? 16 + UCX_BLOB_CAP : 0))
    return malformed("too long");
  rx->body_bytes = length;
  return LLMDD_SUCCESS;
}

int32_t host_proto_recv(int fd, struct proto_rx *rx, struct msg *out, const struct core_guard *g,
                   int wake_fd, int64_t message_ns) {
  char text[CORE_ERRNO_TEXT_CAP];
  for (;;) {
    if (!rx->header_checked && rx->have >= PROTO_HEADER_BYTES) {
      uint16_t type;
      uint64_t seq;
      int32_t status = check_header(rx, &type, &seq);
      if (status != LLMDD_SUCCESS) return status;
      rx->header_checked = true;
    }
    uint32_t need = PROTO_HEADER_BYTES + (rx->header_checked ? rx->body_bytes : 0);
    if (rx->header_checked && rx->have >= need) {
      uint16_t type;
      uint64_t seq;
      check_header(rx, &type, &seq); /* valid: read its fields again */
      memset(out, 0, sizeof *out);
      out->type = type;
      out->seq = seq;
      int bad = decode(type, rx->buf + PROTO_HEADER_BYTES, rx->body_bytes, out, rx->ucx_into);
      /* What follows belongs to the next message. */
      memmove(rx->buf, rx->buf + need, rx->have - need);
      rx->have -= need;
      rx->header_checked = false;
      if (rx->have > 0) rx->started_ns = core_now_ns();
      return bad ? malformed("bad body") : LLMDD_SUCCESS;
    }
    /* The buffer holds any whole message, so there is always room to progress. */
    ssize_t n = recv(fd, rx->buf + rx->have, sizeof rx->buf - rx->have, MSG_DONTWAIT);
    if (n > 0) {
      if (rx->have == 0) rx->started_ns = core_now_ns();
      rx->have += (uint32_t)n;
      continue;
    }
    if (n == 0) return core_fail(LLMDD_LINK_FAILED, "the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return core_fail(LLMDD_LINK_FAILED, "the connection failed: %s",
                       core_errno_text(errno, text));
    struct core_guard bounded = *g;
    if (message_ns > 0 && rx->have > 0 && rx->started_ns + message_ns < bounded.until_ns)
      bounded.until_ns = rx->started_ns + message_ns;
    int32_t status = host_net_wait(fd, POLLIN, &bounded, wake_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
}

int32_t host_proto_send(int fd, const struct msg *m, const struct core_guard *g, int wake_fd,
                   bool *torn) {
  uint8_t buf[PROTO_HEADER_BYTES + PROTO_MAX_BODY];
  uint32_t len = encode(m, buf), sent = 0;
  char text[CORE_ERRNO_TEXT_CAP];
  *torn = false;
  while (sent < len) {
    ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += (uint32_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      *torn = sent > 0;
      return core_fail(LLMDD_LINK_FAILED, "the connection failed: %s",
                       core_errno_text(errno, text));
    }
    int32_t status = host_net_wait(fd, POLLOUT, g, wake_fd);
    if (status != LLMDD_SUCCESS) {
      *torn = sent > 0;
      return status;
    }
  }
  return LLMDD_SUCCESS;
}
