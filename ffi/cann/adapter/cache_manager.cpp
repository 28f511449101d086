// The cache-manager calls of ABI 3: llmdd_cache_register, llmdd_cache_unregister,
// llmdd_cache_copy_blocks and llmdd_engine_set_role.
//
// Not mapped onto CANN yet: each checks its engine handle (so a stale or foreign
// handle reads as everywhere else) and then answers LLM_FEATURE_NOT_ENABLED
// with what is missing. The mapping planned (ffi/cann/README.md): register and
// unregister onto V2's RegisterKvCache / UnregisterKvCache, block copies and
// swaps through ACL as llmdd_cache_copy's V2 path, set_role onto SetRole.
#include "engine.hpp"
#include "jobs.hpp"

using namespace llmdd;

namespace {

int32_t not_yet(uint64_t engine, const char *what) {
  Engine *e = nullptr;
  int32_t status = engine_enter(engine, &e);
  if (status != LLMDD_SUCCESS) return status;
  engine_leave(e);
  return fail(LLMDD_FEATURE_NOT_ENABLED, "%s is not available on the CANN backend yet (see ffi/cann/README.md)",
              what);
}

}  // namespace

extern "C" LLMDD_API int32_t llmdd_cache_register(uint64_t engine, int32_t, uint64_t, uint64_t, uint64_t, int32_t,
                                                  const uint64_t *, int32_t, const uint64_t *, int32_t, int32_t,
                                                  uint64_t *) {
  return not_yet(engine, "registering caller-owned memory (llmdd_cache_register)");
}

extern "C" LLMDD_API int32_t llmdd_cache_unregister(uint64_t engine, uint64_t) {
  return not_yet(engine, "llmdd_cache_unregister");
}

extern "C" LLMDD_API int32_t llmdd_cache_copy_blocks(uint64_t engine, uint64_t, uint64_t, const uint64_t *, int32_t,
                                                     uint64_t job) {
  // A job given to an operation is finished by it, as every long operation does.
  int32_t status = not_yet(engine, "copying blocks (llmdd_cache_copy_blocks)");
  if (job != 0) {
    Job *j = nullptr;
    if (job_begin(job, &j) == LLMDD_SUCCESS) return job_finish(j, status);
  }
  return status;
}

extern "C" LLMDD_API int32_t llmdd_engine_set_role(uint64_t engine, int32_t, const uint8_t *, int32_t) {
  return not_yet(engine, "switching roles (llmdd_engine_set_role)");
}
