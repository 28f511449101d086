#define _DEFAULT_SOURCE 1
#include "guard.h"

#include "clock.h"
#include "error.h"
#include "llmdd.h"

struct core_guard core_guard_for(int64_t timeout_ms, const char *doing) {
  return (struct core_guard){.until_ns = core_now_ns() + timeout_ms * 1000000, .doing = doing};
}

int32_t core_guard_check(const struct core_guard *g) {
  if (g->stop != NULL && atomic_load_explicit(g->stop, memory_order_relaxed))
    return core_fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized while %s", g->doing);
  if (g->job != NULL) {
    if (core_job_cancelled(g->job)) return core_fail(LLMDD_FAILED, "cancelled");
    if (core_deadline_passed(core_job_deadline_ns(g->job), core_now_ns()))
      return core_fail(LLMDD_WAIT_PROCESS_TIMEOUT, "the job's deadline passed while %s",
                       g->doing);
  }
  if (core_deadline_passed(g->until_ns, core_now_ns()))
    return core_fail(LLMDD_WAIT_PROCESS_TIMEOUT, "timed out while %s", g->doing);
  return LLMDD_SUCCESS;
}

int core_guard_sleep_ms(const struct core_guard *g) {
  int64_t limit = g->until_ns;
  if (g->job != NULL && core_job_deadline_ns(g->job) < limit) limit = core_job_deadline_ns(g->job);
  int timeout = core_remaining_ms(limit, core_now_ns(), CORE_WAIT_SLICE_MS, -1);
  if ((g->job != NULL || g->stop != NULL) && (timeout < 0 || timeout > CORE_WAIT_SLICE_MS))
    timeout = CORE_WAIT_SLICE_MS;
  return timeout;
}

int32_t core_guard_wait(const struct core_guard *g, pthread_cond_t *c, pthread_mutex_t *lock) {
  int32_t status = core_guard_check(g);
  if (status == LLMDD_SUCCESS) core_cond_wait_ms(c, lock, CORE_WAIT_SLICE_MS);
  return status;
}
