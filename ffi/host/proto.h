/* The control protocol between a DECODER (or MIX) engine and the PROMPT (or MIX)
 * engine it links to, over one TCP connection per link. Data never goes through
 * it: the DECODER copies straight out of the PROMPT's shared-memory pools.
 *
 * Every message is a 24-byte header and a body, all little-endian:
 *   u32 magic   PROTO_MAGIC
 *   u16 version PROTO_VERSION
 *   u16 type    enum msg_type
 *   u32 length  body bytes, at most PROTO_MAX_BODY, exactly the type's size
 *   u32 flags   0
 *   u64 seq     the sender's request number; an answer repeats its request's
 *
 * First, before anything else is answered, the link is authenticated (auth.h):
 *   AUTH    32-byte nonce of the DECODER                                   (32)
 *     → AUTH_CHALLENGE  32-byte nonce of the PROMPT, 32-byte MAC            (64)
 *   AUTH_PROOF  32-byte MAC (no answer: the PROMPT closes on a wrong one)   (32)
 *
 * Then requests (DECODER → PROMPT) and their answers:
 *   HELLO   u64 decoder cluster id, u64 expected cluster id, u32 ABI version,
 *           u32 device count                                               (24)
 *     → HELLO_REPLY  i32 status, u32 device count n, u64 cluster id, u64 pool
 *           bytes per device, u32 pid, u32 0, then n × u64: each pool's object
 *           id (its inode: the DECODER checks that the descriptors it then
 *           receives on the Unix socket of process `pid` are these) (32 + 8n)
 *   LOOKUP  u32 kind (LLMDD_KEY_*), u32 flags (LOOKUP_WRITE: for a push, so
 *           the cache must be remote-accessible), u64 k0, u64 k1, u64 k2  (32)
 *     → LOOKUP_REPLY i32 status, u32 num_tensors, u64 pin, u64 layout_tag,
 *           u64 tensor_bytes, u64 batch_size, u64 row, u64 stride, u32 n,
 *           u32 where (LOOKUP_IN_POOLS, or LOOKUP_ELSEWHERE: registered memory or
 *           the host pool, reached through STREAM; offsets are then 0),
 *           u64 slot generation, u64 global generation (the words of the
 *           PROMPT's generation page, fast.h, for this key as it answered; 0
 *           without a page), then n × u64: the cache's offset in each device's
 *           pool                                                            (80 + 8n)
 *           On success the cache is pinned (its memory stays put) until DONE or
 *           the connection closes. The pin is the LOOKUP's seq. A LOOKUP_WRITE
 *           of a cache that is not remote-accessible answers FEATURE_NOT_ENABLED.
 *   STREAM  u64 pin, u32 op (STREAM_READ / STREAM_WRITE), u32 num_blocks,
 *           u64 base, u64 block_bytes, i32 tensor_start, u32 num_tensors     (40)
 *           followed on the stream by num_blocks × u64 block indexes and, for a
 *           write, the data: for each device, each tensor of the range, each
 *           index i, block_bytes bytes for [base + i × block_bytes, +block_bytes)
 *           of that tensor of the pinned cache (a write needs a LOOKUP_WRITE pin).
 *     → STREAM_REPLY i32 status, u32 0; after a successful read, the data in the
 *           same order.                                                       (8)
 *           A STREAM the PROMPT cannot take (unknown pin, a block outside the
 *           cache) closes the connection: the DECODER checked it beforehand.
 *   DONE    u64 pin, u32 flags (DONE_CONSUME: also release the key it was
 *           found by; DONE_ACK: answer once the pin is dropped), u32 0
 *           Requests on a connection are handled in order, so a DONE sent
 *           right after a LOOKUP (by a DECODER that gave up waiting) finds its
 *           pin, if the LOOKUP made one; an unknown pin is ignored.          (16)
 *     → DONE_REPLY (only with DONE_ACK) i32 status (0), u32 0: a push waits for
 *           it, so that once it returned the destination is free at the peer
 *           (an unregisterCache there is not refused as "in use").           (8)
 *   UNLINK  (empty) → UNLINK_REPLY i32 status, u32 0; then the PROMPT closes (0 / 8)
 *   UCX     u32 0, u32 0: the data of this link is to move over UCX (ucx.h)  (8)
 *     → UCX_REPLY i32 status, u32 device count n, u32 address bytes a, u32 flags
 *           (UCX_REPLY_WRITABLE, UCX_REPLY_GENERATIONS, or 0),
 *           then n × (u64 pool base address, u32 rkey bytes k_i, u32 0), and
 *           with UCX_REPLY_GENERATIONS one more such entry: the generation
 *           page's address and key size k_g (read-only to the DECODER); then
 *           the PROMPT's UCP worker address (a bytes), then each pool's packed
 *           remote key (k_i bytes each), then the page's (k_g)
 *                                                (16 + 16n [+ 16] + a + Σk_i [+ k_g])
 *           Of variable size (with UCX_KEYS_REPLY); a + Σk_i ≤ UCX_BLOB_CAP. It is
 *           decoded into proto_rx.ucx_into, and refused where that is NULL.
 *   UCX_KEYS  u64 pin, u32 0, u32 0: over UCX, keys for a pinned cache outside
 *           the pools (registered memory, the host pool)                     (16)
 *     → UCX_KEYS_REPLY  as UCX_REPLY with a = 0 (no worker address), n =
 *           devices × the pin's tensors (≤ MAX_DEVICES), entry d × tensors + t
 *           the address of tensor t (from the pin's window) on device d and its
 *           key; UCX_REPLY_WRITABLE when the pin is a LOOKUP_WRITE's. Status
 *           FEATURE_NOT_ENABLED: no keys (UCX not started, too many tensors or
 *           key bytes): the DECODER uses STREAM. The mapping lives as long as
 *           the pin. Decoded like UCX_REPLY (proto_rx.ucx_into).
 *
 * Anything malformed — bad magic, version or flags, unknown type, a length that
 * is not the type's, a request out of order — closes that connection only. */
#ifndef LLMDD_HOST_PROTO_H
#define LLMDD_HOST_PROTO_H

#include <stdbool.h>
#include <stdint.h>

#include "net.h"
#include "options.h"

#define PROTO_MAGIC 0x44444C4Cu /* "LLDD" on the wire */
#define PROTO_VERSION 4 /* 2: authentication, the PROMPT's pid; 3: LOOKUP_WRITE, STREAM, UCX, UCX_KEYS;
                           4: generations in LOOKUP_REPLY, the page's key in UCX_REPLY */
#define PROTO_HEADER_BYTES 24
/* The UCP worker address and packed remote keys of UCX_REPLY, together. */
#define UCX_BLOB_CAP 16384
#define PROTO_MAX_BODY (16 + 16 * (MAX_DEVICES + 1) + UCX_BLOB_CAP)

enum msg_type {
  MSG_HELLO = 1,
  MSG_HELLO_REPLY = 2,
  MSG_LOOKUP = 3,
  MSG_LOOKUP_REPLY = 4,
  MSG_DONE = 5,
  MSG_UNLINK = 6,
  MSG_UNLINK_REPLY = 7,
  MSG_AUTH = 8,
  MSG_AUTH_CHALLENGE = 9,
  MSG_AUTH_PROOF = 10,
  MSG_STREAM = 11,
  MSG_STREAM_REPLY = 12,
  MSG_UCX = 13,
  MSG_UCX_REPLY = 14,
  MSG_DONE_REPLY = 15,
  MSG_UCX_KEYS = 16,
  MSG_UCX_KEYS_REPLY = 17,
};

#define LOOKUP_WRITE 1u     /* msg_lookup.flags */
/* msg_lookup.kind besides LLMDD_KEY_*: k0 = an address of the PROMPT, k1 = bytes
 * (device 0). The answer describes the range as a cache of one tensor of one row
 * from that address to the end of the tensor holding it; only remote-accessible
 * memory is found. */
#define LOOKUP_BY_ADDR 3u
#define LOOKUP_IN_POOLS 0u  /* msg_lookup_reply.where */
#define LOOKUP_ELSEWHERE 1u
#define STREAM_READ 1u      /* msg_stream.op */
#define STREAM_WRITE 2u

/* AUTH: nonce only; CHALLENGE: nonce and mac; PROOF: mac only (auth.h). */
struct msg_auth {
  uint8_t nonce[32];
  uint8_t mac[32];
};

struct msg_hello {
  uint64_t decoder_cluster;
  uint64_t expected_cluster;
  uint32_t abi_version;
  uint32_t devices;
};

struct msg_hello_reply {
  int32_t status;
  uint32_t devices;
  uint64_t cluster;
  uint64_t pool_bytes;
  uint32_t pid; /* the PROMPT's process, which the DECODER finds again on the Unix socket */
  uint64_t object_ids[MAX_DEVICES];
};

struct msg_lookup {
  uint32_t kind;
  uint32_t flags;
  uint64_t k[3];
};

struct msg_lookup_reply {
  int32_t status;
  uint32_t num_tensors;
  uint64_t pin;
  uint64_t layout_tag;
  uint64_t tensor_bytes;
  uint64_t batch_size;
  uint64_t row;
  uint64_t stride;
  uint32_t devices;
  uint32_t where;
  uint64_t slot_gen;   /* fast.h: the stamp of this answer */
  uint64_t global_gen;
  uint64_t offsets[MAX_DEVICES];
};

struct msg_stream {
  uint64_t pin;
  uint32_t op;
  uint32_t num_blocks;
  uint64_t base;
  uint64_t block_bytes;
  int32_t tensor_start;
  uint32_t num_tensors;
};

struct msg_done {
  uint64_t pin;
  uint32_t flags; /* DONE_CONSUME | DONE_ACK */
};
#define DONE_CONSUME 1u
#define DONE_ACK 2u

/* UCX_REPLY flags: the pools' keys allow remote writes (the PROMPT enabled
 * llm.EnableRemoteCacheAccessible), so pushes into them are ucp_put_nbx. */
#define UCX_REPLY_WRITABLE 1u
#define UCX_REPLY_GENERATIONS 2u /* UCX_REPLY only: the generation page's key follows */

struct msg_ucx_reply {
  int32_t status;
  uint32_t devices;
  uint32_t address_bytes;
  uint32_t flags; /* UCX_REPLY_* */
  uint64_t bases[MAX_DEVICES];
  uint32_t rkey_bytes[MAX_DEVICES];
  uint64_t page_base; /* UCX_REPLY_GENERATIONS */
  uint32_t page_rkey_bytes;
  uint8_t blob[UCX_BLOB_CAP]; /* the address, then the keys (the page's last) */
};

struct msg {
  uint16_t type;
  uint64_t seq;
  union {
    struct msg_hello hello;
    struct msg_hello_reply hello_reply;
    struct msg_lookup lookup;
    struct msg_lookup_reply lookup_reply;
    struct msg_done done;
    int32_t unlink_status;
    struct msg_auth auth;
    struct msg_stream stream;
    int32_t stream_status;
    int32_t done_status;
    struct msg_ucx_reply *ucx_reply; /* out of line: it is large (UCX_REPLY, UCX_KEYS_REPLY) */
    uint64_t ucx_keys_pin;           /* UCX_KEYS */
  } u;
};

/* A connection's receive state: bytes read but not yet consumed. A read takes
 * whatever has arrived (a whole answer, or a DONE and the next LOOKUP, in one
 * call), and a reader that gives up (deadline, cancel) leaves a partial message
 * here for the next one, so the stream stays in step. */
struct proto_rx {
  uint32_t have;       /* bytes in buf, starting with the current message */
  bool header_checked; /* the current message's header is complete and valid */
  uint32_t body_bytes; /* from that header */
  int64_t started_ns;  /* when the current message's first byte came */
  struct msg_ucx_reply *ucx_into; /* where a UCX_REPLY goes; NULL: none is expected */
  uint8_t buf[PROTO_HEADER_BYTES + PROTO_MAX_BODY];
};

/* Receives one whole message. message_ns > 0 bounds how long a message, once
 * started, may take to finish (a stalled peer); wake_fd is as host_net_wait's.
 * Returns SUCCESS; LINK_FAILED (the peer closed or reset the connection, or sent
 * something malformed — the connection is then unusable); or the guard's status
 * (the connection is intact). */
int32_t host_proto_recv(int fd, struct proto_rx *rx, struct msg *out, const struct core_guard *g,
                   int wake_fd, int64_t message_ns);

/* Sends one message. Returns SUCCESS, LINK_FAILED (peer gone), or the guard's
 * status. *torn is set when the message went out in part: the stream is then out
 * of step and the connection must be dropped. */
int32_t host_proto_send(int fd, const struct msg *m, const struct core_guard *g, int wake_fd,
                   bool *torn);

#endif
