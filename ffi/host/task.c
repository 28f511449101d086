#define _DEFAULT_SOURCE 1
#include "task.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "llmdd.h"

int32_t task_begin(struct task *t, uint64_t engine, uint64_t job) {
  if (job != 0) {
    int32_t status = job_begin(job, &t->job);
    if (status != LLMDD_SUCCESS) return status;
    /* Started before the engine lock is taken: creating threads is slow. */
    if (t->job->done != NULL && worker_start() != 0) return job_finish(t->job, LLMDD_FAILED);
  }
  int32_t status = engine_enter(engine, &t->engine);
  if (status != LLMDD_SUCCESS && t->job != NULL) job_finish(t->job, status);
  return status;
}

int32_t task_abandon(struct task *t, int32_t status) {
  engine_leave(t->engine);
  return t->job ? job_finish(t->job, status) : status;
}

struct guard task_guard(const struct task *t, const char *doing) {
  return (struct guard){.job = t->job, .stop = &t->engine->finalizing, .wake_fd = -1,
                        .until_ns = INT64_MAX, .doing = doing};
}

/* Runs t outside the lock. Called with the engine locked; returns unlocked. */
static int32_t execute_unlocked(struct task *t) {
  struct engine *e = t->engine;
  e->running++;
  pthread_mutex_unlock(&e->lock);
  int32_t status = t->run(t);
  pthread_mutex_lock(&e->lock);
  if (--e->running == 0 && atomic_load_explicit(&e->finalizing, memory_order_relaxed))
    pthread_cond_broadcast(&e->idle);
  t->end(t);
  pthread_mutex_unlock(&e->lock);
  return status;
}

static void run_in_background(struct work *w) {
  struct task *t = (struct task *)((char *)w - offsetof(struct task, work));
  struct engine *e = t->engine;
  int32_t status;
  pthread_mutex_lock(&e->lock);
  if (atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
    status = fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized before the operation started");
    t->end(t);
    pthread_mutex_unlock(&e->lock);
  } else {
    status = execute_unlocked(t);
  }
  engine_release(e);

  struct job *j = t->job;
  free(t);
  /* The job stays referenced during the callback so llmdd_job_message() works
   * from inside it (unless the caller already released the handle). */
  uint64_t handle = j->handle;
  llmdd_done_fn done = j->done;
  job_complete(j, status);
  done(handle, status);
  job_put(j);
}

int32_t task_run_locked(struct task *t) {
  struct engine *e = t->engine;
  int32_t status = t->run(t);
  pthread_mutex_unlock(&e->lock);
  engine_release(e);
  return t->job ? job_finish(t->job, status) : status;
}

int32_t task_dispatch(struct task *t, size_t size) {
  struct engine *e = t->engine;
  if (task_in_background(t)) {
    struct task *queued = malloc(size);
    if (queued == NULL) {
      t->end(t);
      return task_abandon(t, fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the operation"));
    }
    memcpy(queued, t, size);
    queued->work.run = run_in_background;
    /* The engine and job references, and whatever validation took, move to the
     * queued copy. */
    pthread_mutex_unlock(&e->lock);
    worker_submit(&queued->work);
    return LLMDD_SUCCESS;
  }
  int32_t status = execute_unlocked(t);
  engine_release(e);
  return t->job ? job_finish(t->job, status) : status;
}
