/* The part of UCX's UCP API (ucp/api/ucp.h, API 1.10 and later) that ucx.c
 * calls, declared here rather than included: the library is built where UCX's
 * headers are absent (the npm package's prebuilt libraries, the AArch64 cross
 * build) and loads libucp only when a link uses it (ucx.h). Names carry the
 * prefix ux_ so that ffi/test/ucx_abi.c can include both these declarations and
 * UCX's own header and check, field by field and value by value, that they agree
 * (it does so wherever libucx-dev is installed).
 *
 * UCP's parameter structs are versioned by their field_mask: UCX reads only the
 * fields whose bits are set, so a prefix of each struct is enough; each is
 * padded well past UCX 1.13's size all the same. */
#ifndef LLMDD_HOST_UCX_API_H
#define LLMDD_HOST_UCX_API_H

#include <stddef.h>
#include <stdint.h>

typedef int ux_status_t; /* ucs_status_t, an enum of int's size (values -100..1) */
typedef void *ux_status_ptr_t;
typedef struct ux_opaque *ux_context_h, *ux_worker_h, *ux_ep_h, *ux_mem_h, *ux_rkey_h;
typedef struct ux_opaque_config ux_config_t;
typedef struct ux_opaque_address ux_address_t;

#define UX_OK 0
#define UX_INPROGRESS 1
#define UX_ERR_BUSY (-15)
#define UX_ERR_CANCELED (-16)
#define UX_ERR_LAST (-100)
#define UX_PTR_IS_ERR(p) ((uintptr_t)(p) >= (uintptr_t)UX_ERR_LAST)
#define UX_PTR_IS_PTR(p) ((uintptr_t)(p) - 1 < (uintptr_t)UX_ERR_LAST - 1)
#define UX_PTR_RAW_STATUS(p) ((int)(intptr_t)(p))

#define UX_API_MAJOR 1
#define UX_API_MINOR 10

#define UX_PARAM_FIELD_FEATURES (1ull << 0)
#define UX_FEATURE_RMA (1ull << 1)
#define UX_FEATURE_WAKEUP (1ull << 4)

#define UX_THREAD_MODE_SERIALIZED 1
#define UX_THREAD_MODE_MULTI 2
#define UX_WORKER_PARAM_FIELD_THREAD_MODE (1ull << 0)

#define UX_EP_PARAM_FIELD_REMOTE_ADDRESS (1ull << 0)
#define UX_EP_PARAM_FIELD_ERR_HANDLING_MODE (1ull << 1)
#define UX_EP_PARAM_FIELD_ERR_HANDLER (1ull << 2)
#define UX_ERR_HANDLING_MODE_PEER 1
#define UX_EP_CLOSE_FLAG_FORCE 1u

#define UX_MEM_MAP_PARAM_FIELD_ADDRESS (1ull << 0)
#define UX_MEM_MAP_PARAM_FIELD_LENGTH (1ull << 1)
#define UX_MEM_MAP_PARAM_FIELD_PROT (1ull << 3)
#define UX_MEM_MAP_PROT_LOCAL_READ (1u << 0)
#define UX_MEM_MAP_PROT_LOCAL_WRITE (1u << 1)
#define UX_MEM_MAP_PROT_REMOTE_READ (1u << 8)
#define UX_MEM_MAP_PROT_REMOTE_WRITE (1u << 9)

#define UX_OP_ATTR_FIELD_CALLBACK (1u << 1)
#define UX_OP_ATTR_FIELD_USER_DATA (1u << 2)
#define UX_OP_ATTR_FIELD_FLAGS (1u << 4)

struct ux_params { /* ucp_params_t */
  uint64_t field_mask;
  uint64_t features;
  uint8_t pad[256];
};

struct ux_worker_params { /* ucp_worker_params_t */
  uint64_t field_mask;
  int thread_mode;
  uint8_t pad[512];
};

typedef void (*ux_err_handler_cb_t)(void *arg, ux_ep_h ep, ux_status_t status);

struct ux_ep_params { /* ucp_ep_params_t */
  uint64_t field_mask;
  const ux_address_t *address;
  int err_mode;
  struct {
    ux_err_handler_cb_t cb;
    void *arg;
  } err_handler;
  uint8_t pad[256];
};

struct ux_mem_map_params { /* ucp_mem_map_params_t */
  uint64_t field_mask;
  void *address;
  size_t length;
  unsigned flags;
  unsigned prot;
  uint8_t pad[128];
};

typedef void (*ux_send_nbx_callback_t)(void *request, ux_status_t status, void *user_data);

struct ux_request_param { /* ucp_request_param_t */
  uint32_t op_attr_mask;
  uint32_t flags;
  void *request;
  union {
    ux_send_nbx_callback_t send;
  } cb;
  uint64_t datatype;
  void *user_data;
  uint8_t pad[128];
};

#endif
