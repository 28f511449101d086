#define _DEFAULT_SOURCE 1
#include "clock.h"

#include <time.h>

int64_t core_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t core_deadline_at(int64_t now, int64_t timeout_ms) {
  /* INT32_MAX ms is about 2.1e15 ns: far from overflowing for any monotonic now. */
  return timeout_ms < 0 ? CORE_NO_DEADLINE : now + timeout_ms * 1000000;
}

int64_t core_deadline_after_ms(int64_t timeout_ms) {
  return core_deadline_at(core_now_ns(), timeout_ms);
}

bool core_deadline_passed(int64_t deadline, int64_t now) {
  return deadline != CORE_NO_DEADLINE && now >= deadline;
}

int32_t core_remaining_ms(int64_t deadline, int64_t now, int32_t cap, int32_t no_deadline) {
  if (deadline == CORE_NO_DEADLINE) return no_deadline;
  if (now >= deadline) return 0;
  int64_t left_ns = deadline - now;
  int64_t ms = left_ns / 1000000 + (left_ns % 1000000 != 0);
  return ms > cap ? cap : (int32_t)ms;
}

void core_cond_init_monotonic(pthread_cond_t *c) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(c, &attr);
  pthread_condattr_destroy(&attr);
}

void core_cond_wait_ms(pthread_cond_t *c, pthread_mutex_t *lock, int64_t ms) {
  int64_t until = core_now_ns() + ms * 1000000;
  struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
  pthread_cond_timedwait(c, lock, &ts);
}
