#define _DEFAULT_SOURCE 1
#include "clock.h"

#include <time.h>

int64_t core_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t core_deadline_after_ms(int64_t timeout_ms) {
  return timeout_ms < 0 ? INT64_MAX : core_now_ns() + timeout_ms * 1000000;
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
