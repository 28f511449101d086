/* The one check a long operation makes between chunks of work and between
 * slices of a wait: has the engine been finalized, the job been cancelled, its
 * deadline or the wait's own limit passed?
 *
 * Waits that cannot be woken by what a guard watches (a cancel flag, a finalize)
 * sleep at most CORE_WAIT_SLICE_MS at a time and check again, so a cancel or
 * finalize is seen within that. */
#ifndef LLMDD_CORE_GUARD_H
#define LLMDD_CORE_GUARD_H

#include <pthread.h>
#include <stdint.h>

#include "job.h"

#ifdef __cplusplus
#include <atomic>
extern "C" {
/* Layout-compatible with C's atomic_bool on the compilers we build with. */
typedef std::atomic<bool> core_atomic_bool;
#else
#include <stdatomic.h>
typedef atomic_bool core_atomic_bool;
#endif

#define CORE_WAIT_SLICE_MS 10

/* What a wait or a long operation gives up on. Zeroed fields are unused, except
 * until_ns (CORE_NO_DEADLINE for none). */
struct core_guard {
  struct core_job *job;         /* its deadline and cancel flag */
  const core_atomic_bool *stop; /* the engine's `finalizing` */
  int64_t until_ns;             /* CLOCK_MONOTONIC limit of the wait itself */
  const char *doing;            /* "waiting for ...", for messages */
};

/* A guard that waits at most timeout_ms and nothing else. */
struct core_guard core_guard_for(int64_t timeout_ms, const char *doing);

/* SUCCESS while the work may go on; otherwise the status that ends it, with a
 * last-error message: ENGINE_FINALIZED (stop), FAILED ("cancelled"),
 * WAIT_PROCESS_TIMEOUT (the job's deadline or until_ns). */
int32_t core_guard_check(const struct core_guard *g);

/* How long one sleep of a wait under g may last, in milliseconds (-1: until
 * woken): until the nearest limit, and no longer than CORE_WAIT_SLICE_MS when a
 * cancel or finalize must be seen. */
int core_guard_sleep_ms(const struct core_guard *g);

/* One step of a condition wait under g (lock held; c from
 * core_cond_init_monotonic): checks g, then sleeps one slice at most. Loop as
 * `while (waiting && (status = core_guard_wait(g, c, lock)) == LLMDD_SUCCESS) {}`.
 * Returns SUCCESS, or the guard's status (without sleeping). */
int32_t core_guard_wait(const struct core_guard *g, pthread_cond_t *c, pthread_mutex_t *lock);

#ifdef __cplusplus
}
#endif

#endif
