/* The library's threads: every thread it starts blocks all signals, so the host
 * runtime's handlers keep running on the runtime's own threads; and the worker
 * pool that runs operations whose job has a done callback (for runtimes
 * without asynchronous FFI calls). */
#ifndef LLMDD_CORE_WORKERS_H
#define LLMDD_CORE_WORKERS_H

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Starts fn(arg) on a new thread with every signal blocked: joinable into
 * *out, or detached when out is NULL. Returns 0 or pthread_create's error. */
int core_thread_start(pthread_t *out, void *(*fn)(void *), void *arg);

struct core_work {
  struct core_work *next;
  void (*run)(struct core_work *w);
};

/* Starts the workers if they are not running yet. Returns 0 when at least one
 * runs, -1 (with a last-error message) when none could be started. */
int core_workers_start(void);

/* Queues w to run on a worker (FIFO). core_workers_start() must have succeeded. */
void core_workers_submit(struct core_work *w);

#ifdef __cplusplus
}
#endif

#endif
