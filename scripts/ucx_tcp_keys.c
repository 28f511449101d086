/* What UCX's remote keys guard over its TCP transport (docs/DESIGN.md §4.6,
 * "Trust"): two UCP workers of one process, linked over TCP; the target maps a
 * buffer for remote reads only (no UCP_MEM_MAP_PROT_REMOTE_WRITE) and packs its
 * key; the other side puts into that buffer, puts into memory that was never
 * mapped, and gets from it, all with that key. Prints what landed; exits 0 when
 * the keys were enforced (nothing outside the grant happened), 1 when they were
 * not, 2 when UCX could not be set up.
 *
 *   cc -o /tmp/ucx_tcp_keys scripts/ucx_tcp_keys.c -lucp -lucs
 *   UCX_TLS=tcp /tmp/ucx_tcp_keys
 *
 * With UCX 1.13.1 (Debian 12) over TCP all three succeed: exit 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

static void done(void *request, ucs_status_t status, void *user_data) {
  (void)request;
  *(ucs_status_t *)user_data = status;
}

/* Progresses both workers until the request completes. */
static ucs_status_t finish(ucp_worker_h a, ucp_worker_h b, ucs_status_ptr_t req, ucs_status_t *st) {
  if (req == NULL) return UCS_OK;
  if (UCS_PTR_IS_ERR(req)) return UCS_PTR_STATUS(req);
  for (long i = 0; i < 100000000 && *st == UCS_INPROGRESS; i++) {
    ucp_worker_progress(a);
    ucp_worker_progress(b);
  }
  ucp_request_free(req);
  return *st;
}

int main(void) {
  ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_RMA};
  ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                            .thread_mode = UCS_THREAD_MODE_SINGLE};
  ucp_context_h ctx;
  ucp_worker_h target, peer;
  ucp_address_t *address;
  size_t address_bytes, key_bytes;
  if (ucp_init(&params, NULL, &ctx) != UCS_OK || ucp_worker_create(ctx, &wp, &target) != UCS_OK ||
      ucp_worker_create(ctx, &wp, &peer) != UCS_OK ||
      ucp_worker_get_address(target, &address, &address_bytes) != UCS_OK)
    return 2;
  const size_t n = 1 << 20;
  char *granted = aligned_alloc(4096, n), *never = aligned_alloc(4096, n);
  if (granted == NULL || never == NULL) return 2;
  memset(granted, 0, n);
  memset(never, 0, n);
  strcpy(never + 4096, "bytes that were never mapped");
  ucp_mem_map_params_t mp = {
      .field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                    UCP_MEM_MAP_PARAM_FIELD_PROT,
      .address = granted,
      .length = n,
      .prot = UCP_MEM_MAP_PROT_LOCAL_READ | UCP_MEM_MAP_PROT_LOCAL_WRITE |
              UCP_MEM_MAP_PROT_REMOTE_READ};
  ucp_mem_h memh;
  void *packed;
  ucp_ep_params_t ep_params = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = address};
  ucp_ep_h ep;
  ucp_rkey_h rkey;
  if (ucp_mem_map(ctx, &mp, &memh) != UCS_OK || ucp_rkey_pack(ctx, memh, &packed, &key_bytes) != UCS_OK ||
      ucp_ep_create(peer, &ep_params, &ep) != UCS_OK || ucp_ep_rkey_unpack(ep, packed, &rkey) != UCS_OK)
    return 2;
  ucs_status_t st;
  ucp_request_param_t rp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                            .cb.send = done,
                            .user_data = &st};
  char data[64], got[64] = {0};
  memset(data, 0x5a, sizeof data);
  int breaches = 0;
  char *places[2] = {granted, never};
  const char *names[2] = {"into memory mapped for remote reads only", "into memory never mapped"};
  for (int i = 0; i < 2; i++) {
    st = UCS_INPROGRESS;
    ucs_status_t put = finish(target, peer, ucp_put_nbx(ep, data, sizeof data, (uintptr_t)places[i], rkey, &rp), &st);
    st = UCS_INPROGRESS;
    ucs_status_t flush = finish(target, peer, ucp_ep_flush_nbx(ep, &rp), &st);
    int landed = memcmp(places[i], data, sizeof data) == 0;
    breaches += landed;
    printf("put %s: %s, flush %s, %s\n", names[i], ucs_status_string(put), ucs_status_string(flush),
           landed ? "LANDED" : "did not land");
  }
  st = UCS_INPROGRESS;
  ucs_status_t get = finish(target, peer, ucp_get_nbx(ep, got, 28, (uintptr_t)(never + 4096), rkey, &rp), &st);
  int read = memcmp(got, never + 4096, 28) == 0;
  breaches += read;
  printf("get from memory never mapped: %s, %s\n", ucs_status_string(get), read ? "READ" : "not read");
  return breaches > 0 ? 1 : 0;
}
