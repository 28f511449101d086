#define _DEFAULT_SOURCE 1
#include "copy.h"

#include "error.h"
#include "llmdd.h"

struct core_progress core_progress_start(const struct core_guard *g, core_copy_fn copy,
                                         uint64_t total, const char *verb) {
  return (struct core_progress){.guard = g, .copy = copy, .verb = verb, .total = total,
                                .since_check = LLMDD_COPY_CHUNK_BYTES};
}

int32_t core_progress_check(struct core_progress *p) {
  int32_t status = core_guard_check(p->guard);
  /* The guard's message says what was being done; this one says how far. */
  if (status == LLMDD_ENGINE_FINALIZED)
    return core_fail(status, "the engine was finalized after %llu of %llu bytes were %s",
                     (unsigned long long)p->copied, (unsigned long long)p->total, p->verb);
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    return core_fail(status, "the deadline passed after %llu of %llu bytes were %s",
                     (unsigned long long)p->copied, (unsigned long long)p->total, p->verb);
  if (status != LLMDD_SUCCESS) return status;
  if (p->peer_check != NULL && p->copied > 0) {
    status = p->peer_check(p->peer);
    if (status != LLMDD_SUCCESS) return status;
  }
  p->since_check = 0;
  return LLMDD_SUCCESS;
}

int32_t core_copy_chunked(struct core_progress *p, uint8_t *dst, const uint8_t *src,
                          uint64_t n) {
  while (n > 0) {
    if (p->since_check >= LLMDD_COPY_CHUNK_BYTES) {
      int32_t status = core_progress_check(p);
      if (status != LLMDD_SUCCESS) return status;
    }
    uint64_t step = LLMDD_COPY_CHUNK_BYTES - p->since_check;
    if (step > n) step = n;
    p->copy(dst, src, step);
    dst += step;
    src += step;
    n -= step;
    p->since_check += step;
    p->copied += step;
  }
  return LLMDD_SUCCESS;
}
