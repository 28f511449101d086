/* UCX as a link's data path (host/ucx.h): what can be checked without loading
 * UCX into this sanitized binary — the declarations of host/ucx_api.h against
 * UCX's own header (where libucx-dev is installed), the UCX_REPLY message, the
 * option, and the message a machine without UCX gives. Pulls over UCX between
 * two processes are tested from TypeScript (test/ucx.test.ts). */
#define _GNU_SOURCE 1
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "llmdd.h"
#include "proto.h"
#include "ucx_api.h"
#include "util.h"

#if defined(__has_include)
#if __has_include(<ucp/api/ucp.h>)
#include <ucp/api/ucp.h>
#define SAME_OFFSET(ucx, ours, field) \
  _Static_assert(offsetof(ucx, field) == offsetof(ours, field), #ucx "." #field)
#define SAME_VALUE(a, b) _Static_assert((long long)(a) == (long long)(b), #a " == " #b)
SAME_OFFSET(ucp_params_t, struct ux_params, features);
_Static_assert(sizeof(ucp_params_t) <= sizeof(struct ux_params), "ucp_params_t fits");
SAME_OFFSET(ucp_worker_params_t, struct ux_worker_params, thread_mode);
_Static_assert(sizeof(ucp_worker_params_t) <= sizeof(struct ux_worker_params), "worker params fit");
SAME_OFFSET(ucp_ep_params_t, struct ux_ep_params, address);
SAME_OFFSET(ucp_ep_params_t, struct ux_ep_params, err_mode);
SAME_OFFSET(ucp_ep_params_t, struct ux_ep_params, err_handler);
_Static_assert(sizeof(ucp_ep_params_t) <= sizeof(struct ux_ep_params), "ep params fit");
SAME_OFFSET(ucp_mem_map_params_t, struct ux_mem_map_params, address);
SAME_OFFSET(ucp_mem_map_params_t, struct ux_mem_map_params, length);
SAME_OFFSET(ucp_mem_map_params_t, struct ux_mem_map_params, flags);
SAME_OFFSET(ucp_mem_map_params_t, struct ux_mem_map_params, prot);
_Static_assert(sizeof(ucp_mem_map_params_t) <= sizeof(struct ux_mem_map_params), "mem_map fits");
SAME_OFFSET(ucp_request_param_t, struct ux_request_param, flags);
SAME_OFFSET(ucp_request_param_t, struct ux_request_param, cb);
SAME_OFFSET(ucp_request_param_t, struct ux_request_param, user_data);
_Static_assert(sizeof(ucp_request_param_t) <= sizeof(struct ux_request_param), "request fits");
SAME_VALUE(UCS_OK, UX_OK);
SAME_VALUE(UCS_INPROGRESS, UX_INPROGRESS);
SAME_VALUE(UCS_ERR_BUSY, UX_ERR_BUSY);
SAME_VALUE(UCS_ERR_CANCELED, UX_ERR_CANCELED);
SAME_VALUE(UCS_ERR_LAST, UX_ERR_LAST);
SAME_VALUE(UCP_PARAM_FIELD_FEATURES, UX_PARAM_FIELD_FEATURES);
SAME_VALUE(UCP_FEATURE_RMA, UX_FEATURE_RMA);
SAME_VALUE(UCP_FEATURE_WAKEUP, UX_FEATURE_WAKEUP);
SAME_VALUE(UCS_THREAD_MODE_SERIALIZED, UX_THREAD_MODE_SERIALIZED);
SAME_VALUE(UCS_THREAD_MODE_MULTI, UX_THREAD_MODE_MULTI);
SAME_VALUE(UCP_WORKER_PARAM_FIELD_THREAD_MODE, UX_WORKER_PARAM_FIELD_THREAD_MODE);
SAME_VALUE(UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, UX_EP_PARAM_FIELD_REMOTE_ADDRESS);
SAME_VALUE(UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE, UX_EP_PARAM_FIELD_ERR_HANDLING_MODE);
SAME_VALUE(UCP_EP_PARAM_FIELD_ERR_HANDLER, UX_EP_PARAM_FIELD_ERR_HANDLER);
SAME_VALUE(UCP_ERR_HANDLING_MODE_PEER, UX_ERR_HANDLING_MODE_PEER);
SAME_VALUE(UCP_EP_CLOSE_FLAG_FORCE, UX_EP_CLOSE_FLAG_FORCE);
SAME_VALUE(UCP_MEM_MAP_PARAM_FIELD_ADDRESS, UX_MEM_MAP_PARAM_FIELD_ADDRESS);
SAME_VALUE(UCP_MEM_MAP_PARAM_FIELD_LENGTH, UX_MEM_MAP_PARAM_FIELD_LENGTH);
SAME_VALUE(UCP_MEM_MAP_PARAM_FIELD_PROT, UX_MEM_MAP_PARAM_FIELD_PROT);
SAME_VALUE(UCP_MEM_MAP_PROT_LOCAL_READ, UX_MEM_MAP_PROT_LOCAL_READ);
SAME_VALUE(UCP_MEM_MAP_PROT_LOCAL_WRITE, UX_MEM_MAP_PROT_LOCAL_WRITE);
SAME_VALUE(UCP_MEM_MAP_PROT_REMOTE_READ, UX_MEM_MAP_PROT_REMOTE_READ);
SAME_VALUE(UCP_MEM_MAP_PROT_REMOTE_WRITE, UX_MEM_MAP_PROT_REMOTE_WRITE);
SAME_VALUE(UCP_OP_ATTR_FIELD_CALLBACK, UX_OP_ATTR_FIELD_CALLBACK);
SAME_VALUE(UCP_OP_ATTR_FIELD_USER_DATA, UX_OP_ATTR_FIELD_USER_DATA);
SAME_VALUE(UCP_OP_ATTR_FIELD_FLAGS, UX_OP_ATTR_FIELD_FLAGS);
#define HAVE_UCX_HEADER 1
#endif
#endif

TEST(ucx_declarations_match_the_installed_header) {
#ifdef HAVE_UCX_HEADER
  printf("    checked against ucp/api/ucp.h (API %d.%d) at compile time\n", UCP_API_MAJOR,
         UCP_API_MINOR);
#else
  printf("    SKIPPED: ucp/api/ucp.h is not installed (package libucx-dev)\n");
#endif
}

/* What a receiver that expects a UCX answer (into `in`) makes of m, sent on a
 * fresh connection. */
static int32_t received_fresh(struct msg *m, struct proto_rx *rx, struct msg_ucx_reply *in) {
  int sv[2];
  if (!EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0)) return LLMDD_FAILED;
  struct core_guard g = core_guard_for(1000, "testing");
  bool torn;
  struct msg got;
  int32_t status = host_proto_send(sv[0], m, &g, -1, &torn);
  if (status == LLMDD_SUCCESS) {
    memset(rx, 0, sizeof *rx);
    rx->ucx_into = in;
    status = host_proto_recv(sv[1], rx, &got, &g, -1, 0);
  }
  close(sv[0]);
  close(sv[1]);
  return status;
}

/* UCX_REPLY goes through whole and comes out only where one is expected. */
TEST(ucx_reply_round_trip_and_its_limits) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  struct msg_ucx_reply *out = calloc(2, sizeof *out), *in = out + 1;
  CHECK(out != NULL);
  out->status = LLMDD_SUCCESS;
  out->devices = 3;
  out->address_bytes = 77;
  out->flags = UCX_REPLY_WRITABLE;
  uint32_t blob = 77;
  for (uint32_t d = 0; d < 3; d++) {
    out->bases[d] = 0x7f0000000000ull + d * 0x100000000ull;
    out->rkey_bytes[d] = 10 + d;
    blob += 10 + d;
  }
  for (uint32_t i = 0; i < blob; i++) out->blob[i] = (uint8_t)(i * 7 + 1);
  struct msg m = {.type = MSG_UCX_REPLY, .seq = 5, .u.ucx_reply = out}, got;
  struct core_guard g = core_guard_for(1000, "testing");
  bool torn;
  CHECK_STATUS(host_proto_send(sv[0], &m, &g, -1, &torn), LLMDD_SUCCESS);
  struct proto_rx *rx = calloc(1, sizeof *rx);
  CHECK(rx != NULL);
  rx->ucx_into = in;
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_SUCCESS);
  EXPECT(got.type == MSG_UCX_REPLY && got.seq == 5 && got.u.ucx_reply == in);
  EXPECT(in->devices == 3 && in->address_bytes == 77 && in->rkey_bytes[2] == 12);
  EXPECT(in->bases[1] == out->bases[1] && in->flags == UCX_REPLY_WRITABLE);
  EXPECT(memcmp(in->blob, out->blob, blob) == 0);
  EXPECT(in->page_base == 0 && in->page_rkey_bytes == 0);

  /* With the generation page: its entry and key come through after the pools'. */
  out->flags = UCX_REPLY_WRITABLE | UCX_REPLY_GENERATIONS;
  out->page_base = 0x7e0000001000ull;
  out->page_rkey_bytes = 9;
  for (uint32_t i = blob; i < blob + 9; i++) out->blob[i] = (uint8_t)(i * 5 + 3);
  EXPECT_STATUS(received_fresh(&m, rx, in), LLMDD_SUCCESS);
  EXPECT(in->flags == out->flags && in->page_base == out->page_base && in->page_rkey_bytes == 9);
  EXPECT(in->devices == 3 && in->rkey_bytes[2] == 12 && memcmp(in->blob, out->blob, blob + 9) == 0);
  out->flags = UCX_REPLY_WRITABLE;

  /* Where none is expected (a PROMPT's connection), it is malformed. */
  CHECK_STATUS(host_proto_send(sv[0], &m, &g, -1, &torn), LLMDD_SUCCESS);
  memset(rx, 0, sizeof *rx);
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "malformed") != NULL);
  close(sv[0]);
  close(sv[1]);
  /* So is a flag this side does not know. */
  out->flags = 4;
  EXPECT_STATUS(received_fresh(&m, rx, in), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "malformed") != NULL);
  free(rx);
  free(out);
}

/* Writes a raw message (header and body) to fd: for bodies encode() would not make. */
static void send_raw_message(int fd, uint16_t type, const uint8_t *body, uint32_t len) {
  uint8_t buf[64] = {0};
  uint32_t words[4] = {PROTO_MAGIC, PROTO_VERSION | (uint32_t)type << 16, len, 0};
  for (int w = 0; w < 4; w++)
    for (int i = 0; i < 4; i++) buf[4 * w + i] = (uint8_t)(words[w] >> (8 * i));
  buf[16] = 9; /* seq */
  memcpy(buf + PROTO_HEADER_BYTES, body, len);
  CHECK(write(fd, buf, PROTO_HEADER_BYTES + len) == (ssize_t)(PROTO_HEADER_BYTES + len));
}

/* UCX_KEYS and its answer: round trips, and what is malformed. */
TEST(ucx_keys_round_trip_and_its_limits) {
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  struct core_guard g = core_guard_for(1000, "testing");
  bool torn;
  struct proto_rx *rx = calloc(1, sizeof *rx);
  struct msg_ucx_reply *out = calloc(2, sizeof *out), *in = out + 1;
  CHECK(rx != NULL && out != NULL);
  struct msg q = {.type = MSG_UCX_KEYS, .seq = 4, .u.ucx_keys_pin = 0x1234567890ull}, got;
  CHECK_STATUS(host_proto_send(sv[0], &q, &g, -1, &torn), LLMDD_SUCCESS);
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_SUCCESS);
  EXPECT(got.type == MSG_UCX_KEYS && got.seq == 4 && got.u.ucx_keys_pin == 0x1234567890ull);

  /* The answer: MAX_DEVICES ranges (the most), keys only. */
  out->status = LLMDD_SUCCESS;
  out->devices = MAX_DEVICES;
  out->flags = UCX_REPLY_WRITABLE;
  uint32_t blob = 0;
  for (uint32_t i = 0; i < MAX_DEVICES; i++) {
    out->bases[i] = 0x7f0000000000ull + i * 0x1000ull;
    out->rkey_bytes[i] = 20 + i % 3;
    blob += out->rkey_bytes[i];
  }
  for (uint32_t i = 0; i < blob; i++) out->blob[i] = (uint8_t)(i * 5 + 3);
  struct msg a = {.type = MSG_UCX_KEYS_REPLY, .seq = 4, .u.ucx_reply = out};
  CHECK_STATUS(host_proto_send(sv[0], &a, &g, -1, &torn), LLMDD_SUCCESS);
  rx->ucx_into = in;
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_SUCCESS);
  EXPECT(got.type == MSG_UCX_KEYS_REPLY && got.u.ucx_reply == in && in->devices == MAX_DEVICES);
  EXPECT(in->bases[MAX_DEVICES - 1] == out->bases[MAX_DEVICES - 1] && in->rkey_bytes[2] == 22);
  EXPECT(memcmp(in->blob, out->blob, blob) == 0 && in->flags == UCX_REPLY_WRITABLE);

  /* Where no answer is expected (a PROMPT's connection): malformed. */
  CHECK_STATUS(host_proto_send(sv[0], &a, &g, -1, &torn), LLMDD_SUCCESS);
  memset(rx, 0, sizeof *rx);
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "malformed") != NULL);
  close(sv[0]);
  close(sv[1]);

  /* A worker address or a generation page in it (keys only): malformed. */
  out->address_bytes = 4;
  EXPECT_STATUS(received_fresh(&a, rx, in), LLMDD_LINK_FAILED);
  out->address_bytes = 0;
  out->flags = UCX_REPLY_GENERATIONS;
  out->page_rkey_bytes = 8;
  EXPECT_STATUS(received_fresh(&a, rx, in), LLMDD_LINK_FAILED);
  out->flags = UCX_REPLY_WRITABLE;
  out->page_rkey_bytes = 0;
  EXPECT_STATUS(received_fresh(&a, rx, in), LLMDD_SUCCESS);

  /* More ranges than MAX_DEVICES, and a request with a reserved word set. */
  uint8_t body[16] = {0};
  body[4] = MAX_DEVICES + 1; /* count */
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  send_raw_message(sv[0], MSG_UCX_KEYS_REPLY, body, 16);
  memset(rx, 0, sizeof *rx);
  rx->ucx_into = in;
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_LINK_FAILED);
  close(sv[0]);
  close(sv[1]);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  memset(body, 0, sizeof body);
  body[0] = 1; /* the pin */
  send_raw_message(sv[0], MSG_UCX_KEYS, body, 16);
  memset(rx, 0, sizeof *rx);
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_SUCCESS);
  body[12] = 1; /* the second reserved word */
  send_raw_message(sv[0], MSG_UCX_KEYS, body, 16);
  EXPECT_STATUS(host_proto_recv(sv[1], rx, &got, &g, -1, 0), LLMDD_LINK_FAILED);
  close(sv[0]);
  close(sv[1]);
  free(rx);
  free(out);
}

TEST(transport_option_is_checked) {
  uint64_t e = 0;
  const char *bad = "llmdd.transport=rdma";
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)bad,
                                  (int32_t)strlen(bad), &e),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "llmdd.transport 'rdma'") != NULL);
  const char *shm = "ge.flowGraphMemMaxSize=1048576\nllmdd.transport=shm";
  CHECK_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)shm,
                                 (int32_t)strlen(shm), &e),
               LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

/* LLMDD_UCX_LIBRARY names the library to load; a missing one is what a machine
 * without UCX sees. (A failed load is not remembered, so this leaves nothing
 * behind.) */
TEST(missing_ucx_names_the_package) {
  setenv("LLMDD_UCX_LIBRARY", "/nonexistent/libucp.so.0", 1);
  const char *ucx = "ge.flowGraphMemMaxSize=1048576\nllmdd.transport=ucx";
  uint64_t e = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)ucx,
                                  (int32_t)strlen(ucx), &e),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(strstr(last_error(), "cannot load /nonexistent/libucp.so.0") != NULL);
  EXPECT(strstr(last_error(), "apt-get install libucx0") != NULL);
  /* A PROMPT never loads UCX at init: only when a DECODER asks for it. */
  uint64_t p = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, unique_cluster_id(), (const uint8_t *)ucx,
                                  (int32_t)strlen(ucx), &p),
                LLMDD_SUCCESS);
  if (p != 0) EXPECT_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
  unsetenv("LLMDD_UCX_LIBRARY");
}

void push_blocks_body(const char *decoder_options);       /* test_push.c */
void fast_repeat_pulls_body(const char *decoder_options, bool over_ucx); /* test_fast.c */

/* Whether UCX loads here; it is set up as the tests below need it. */
static bool ucx_here(void) {
  if (getenv("UCX_TLS") == NULL) setenv("UCX_TLS", "tcp", 0);
  /* UCX's memory hooks (patched mmap/munmap) crash LeakSanitizer's tracer at
   * exit; these tests need none of them. Read when UCX is loaded, below. */
  if (getenv("UCX_MEM_EVENTS") == NULL) setenv("UCX_MEM_EVENTS", "no", 0);
  const char *ucx = "ge.flowGraphMemMaxSize=1048576\nllmdd.transport=ucx";
  uint64_t probe = 0;
  if (llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)ucx,
                        (int32_t)strlen(ucx), &probe) != LLMDD_SUCCESS) {
    printf("    SKIPPED: UCX cannot be loaded here (%s)\n", last_error());
    return false;
  }
  EXPECT_STATUS(llmdd_engine_finalize(probe), LLMDD_SUCCESS);
  return true;
}

/* The same over UCX (TCP): into the pools and registered memory, pulls of
 * registered memory and pushes to its addresses as UCX reads and writes
 * (registered memory with the pin's keys, UCX_KEYS). */
TEST(push_blocks_into_pooled_and_registered_memory_over_ucx) {
  if (!ucx_here()) return;
  push_blocks_body("llm.EnableRemoteCacheAccessible=1\nge.flowGraphMemMaxSize=8388608\n"
                   "llmdd.transport=ucx");
}

/* Repeat pulls over UCX: the answer kept, the PROMPT's generation page read
 * with the data (fast.h), stale answers caught as over shared memory. */
TEST(fast_repeat_pulls_over_ucx_follow_the_prompts_caches) {
  if (!ucx_here()) return;
  fast_repeat_pulls_body("ge.flowGraphMemMaxSize=1048576\nllmdd.transport=ucx", true);
}
