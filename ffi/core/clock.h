/* The library's one clock (CLOCK_MONOTONIC, immune to wall-clock changes), and
 * condition variables that wait on it. */
#ifndef LLMDD_CORE_CLOCK_H
#define LLMDD_CORE_CLOCK_H

#include <pthread.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nanoseconds on CLOCK_MONOTONIC: what every deadline and limit is measured in. */
int64_t core_now_ns(void);

/* now + timeout_ms, for a limit that must be met; negative means none (INT64_MAX). */
int64_t core_deadline_after_ms(int64_t timeout_ms);

/* Initialises c to time its waits on CLOCK_MONOTONIC. */
void core_cond_init_monotonic(pthread_cond_t *c);

/* Waits on c (lock held, c from core_cond_init_monotonic) for at most ms
 * milliseconds; wakes early when signalled or spuriously, as any condition wait. */
void core_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *lock, int64_t ms);

#ifdef __cplusplus
}
#endif

#endif
