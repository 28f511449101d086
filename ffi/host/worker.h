/* The library's worker threads, which run operations whose job has a done
 * callback (for runtimes without asynchronous FFI calls). */
#ifndef LLMDD_HOST_WORKER_H
#define LLMDD_HOST_WORKER_H

struct work {
  struct work *next;
  void (*run)(struct work *w);
};

/* Starts the workers if they are not running yet. Returns 0 when at least one
 * runs, -1 (with a last-error message) when none could be started. */
int worker_start(void);

/* Queues w to run on a worker (FIFO). worker_start() must have succeeded. */
void worker_submit(struct work *w);

#endif
