/* The library's one clock (CLOCK_MONOTONIC, immune to wall-clock changes), and
 * condition variables that wait on it. */
#ifndef LLMDD_CORE_CLOCK_H
#define LLMDD_CORE_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nanoseconds on CLOCK_MONOTONIC: what every deadline and limit is measured in. */
int64_t core_now_ns(void);

/* "No deadline": a time never reached. */
#define CORE_NO_DEADLINE INT64_MAX

/* The deadline timeout_ms after now: negative → CORE_NO_DEADLINE, 0 → now
 * (already due). */
int64_t core_deadline_at(int64_t now, int64_t timeout_ms);

/* core_deadline_at(core_now_ns(), timeout_ms). */
int64_t core_deadline_after_ms(int64_t timeout_ms);

/* Whether the deadline has passed at now (a deadline equal to now has). */
bool core_deadline_passed(int64_t deadline, int64_t now);

/* The milliseconds left until the deadline, for a wait that takes a timeout in
 * ms: rounded up (a wait never ends before the deadline), so at least 1 while
 * any time is left, 0 once it has passed, and at most cap. With no deadline,
 * returns no_deadline (e.g. -1 for "until woken", or a bounded default). */
int32_t core_remaining_ms(int64_t deadline, int64_t now, int32_t cap, int32_t no_deadline);

/* Initialises c to time its waits on CLOCK_MONOTONIC. */
void core_cond_init_monotonic(pthread_cond_t *c);

/* Waits on c (lock held, c from core_cond_init_monotonic) for at most ms
 * milliseconds; wakes early when signalled or spuriously, as any condition wait. */
void core_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *lock, int64_t ms);

#ifdef __cplusplus
}
#endif

#endif
