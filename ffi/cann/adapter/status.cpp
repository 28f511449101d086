#include "status.hpp"

#include "llmdd.h"

namespace llmdd {

int32_t from_upstream(uint32_t status) { return static_cast<int32_t>(status); }

int32_t from_acl(int32_t acl_error) {
  switch (acl_error) {
  case kAclSuccess:
    return LLMDD_SUCCESS;
  case kAclRtStreamSyncTimeout:
    return LLMDD_WAIT_PROCESS_TIMEOUT;
  case kAclBadAlloc:
  case kAclRtMemoryAllocation:
    return LLMDD_DEVICE_OUT_OF_MEMORY;
  default:
    return LLMDD_FAILED;
  }
}

int32_t fold_cluster_status(uint32_t call_status, const std::vector<uint32_t> &per_cluster) {
  if (per_cluster.size() == 1 && per_cluster[0] != 0) return from_upstream(per_cluster[0]);
  return from_upstream(call_status);
}

const char *status_name(int32_t status) {
  // Names and values: llm_datadist/llm_error_codes.h (LLMStatusCode, 0x5010B000 + n).
  switch (static_cast<uint32_t>(status)) {
  case 0x00000000u: return "LLM_SUCCESS";
  case 0xFFFFFFFFu: return "LLM_FAILED";
  case 0x5010B001u: return "LLM_WAIT_PROCESS_TIMEOUT";
  case 0x5010B002u: return "LLM_KV_CACHE_NOT_EXIST";
  case 0x5010B003u: return "LLM_REPEAT_REQUEST";
  case 0x5010B004u: return "LLM_REQUEST_ALREADY_COMPLETED";
  case 0x5010B005u: return "LLM_PARAM_INVALID";
  case 0x5010B006u: return "LLM_ENGINE_FINALIZED";
  case 0x5010B007u: return "LLM_NOT_YET_LINK";
  case 0x5010B008u: return "LLM_ALREADY_LINK";
  case 0x5010B009u: return "LLM_LINK_FAILED";
  case 0x5010B00Au: return "LLM_UNLINK_FAILED";
  case 0x5010B00Bu: return "LLM_NOTIFY_PROMPT_UNLINK_FAILED";
  case 0x5010B00Cu: return "LLM_CLUSTER_NUM_EXCEED_LIMIT";
  case 0x5010B00Du: return "LLM_PROCESSING_LINK";
  case 0x5010B00Eu: return "LLM_DEVICE_OUT_OF_MEMORY";
  case 0x5010B00Fu: return "LLM_PREFIX_ALREADY_EXIST";
  case 0x5010B010u: return "LLM_PREFIX_NOT_EXIST";
  case 0x5010B011u: return "LLM_SEQ_LEN_OVER_LIMIT";
  case 0x5010B012u: return "LLM_NO_FREE_BLOCK";
  case 0x5010B013u: return "LLM_BLOCKS_OUT_OF_MEMORY";
  case 0x5010B014u: return "LLM_CACHE_INCOMPATIBLE";
  case 0x5010B015u: return "LLM_CACHE_KEY_ALREADY_EXIST";
  case 0x5010B016u: return "LLM_COPY_CACHE_FAILED";
  case 0x5010B017u: return "LLM_CACHE_ID_ALREADY_EXIST";
  case 0x5010B018u: return "LLM_EXIST_LINK";
  case 0x5010B019u: return "LLM_FEATURE_NOT_ENABLED";
  case 0x5010B01Au: return "LLM_TIMEOUT";
  case 0x5010B01Bu: return "LLM_LINK_BUSY";
  case 0x5010B01Cu: return "LLM_OUT_OF_MEMORY";
  default: return "unknown status";
  }
}

}  // namespace llmdd
