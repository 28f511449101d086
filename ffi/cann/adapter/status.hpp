// Statuses: upstream LLMStatusCode values pass through unchanged; ACL runtime
// errors become the LLMStatusCode a caller of LLM-DataDist would see.
#ifndef LLMDD_CANN_STATUS_HPP
#define LLMDD_CANN_STATUS_HPP

#include <cstdint>
#include <vector>

#include "llmdd.h"

namespace llmdd {

// ACL runtime error codes the adapter tells apart (acl/acl_base.h and
// acl/error_codes/rt_error_codes.h of the CANN runtime; unverified against a
// real toolkit, see decls/README.md).
constexpr int32_t kAclSuccess = 0;
constexpr int32_t kAclRepeatInitialize = 100002;   // ACL_ERROR_REPEAT_INITIALIZE
constexpr int32_t kAclBadAlloc = 200000;           // ACL_ERROR_BAD_ALLOC
constexpr int32_t kAclRtMemoryAllocation = 207001; // ACL_ERROR_RT_MEMORY_ALLOCATION
constexpr int32_t kAclRtStreamSyncTimeout = 507046; // ACL_ERROR_RT_STREAM_SYNC_TIMEOUT

// LLM_TIMEOUT (llm_datadist/llm_error_codes.h, 0x5010B01A): how upstream's
// PullKvCache reports a pull that ran out of time.
constexpr int32_t kLlmTimeout = LLMDD_TIMEOUT;

// An upstream ge::Status (uint32_t) as the ABI's int32 status: the same bits, so
// LLM_FAILED (0xFFFFFFFF) reads -1 and 0x5010B00x stays itself.
int32_t from_upstream(uint32_t status);

// The LLMStatusCode for an aclError: success, a stream-sync timeout
// (WAIT_PROCESS_TIMEOUT), an allocation failure (DEVICE_OUT_OF_MEMORY), or FAILED.
int32_t from_acl(int32_t acl_error);

// One cluster per LinkLlmClusters / UnlinkLlmClusters call: the call's status,
// or the cluster's own status when that one says more (the call may report
// success while the cluster failed, or a generic failure for a specific one).
int32_t fold_cluster_status(uint32_t call_status, const std::vector<uint32_t> &per_cluster);

// The upstream name of a status ("LLM_PARAM_INVALID"), or "unknown status".
const char *status_name(int32_t status);

}  // namespace llmdd

#endif
