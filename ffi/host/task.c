#define _DEFAULT_SOURCE 1
#include "task.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "llmdd.h"

int32_t host_task_begin(struct task *t, uint64_t engine, uint64_t job) {
  if (job != 0) {
    int32_t status = core_job_begin(job, &t->job);
    if (status != LLMDD_SUCCESS) return status;
    /* Started before the engine lock is taken: creating threads is slow. */
    if (core_job_callback(t->job) != NULL && core_workers_start() != 0)
      return core_job_finish(t->job, LLMDD_FAILED);
  }
  int32_t status = host_engine_enter(engine, &t->engine);
  if (status != LLMDD_SUCCESS && t->job != NULL) core_job_finish(t->job, status);
  return status;
}

int32_t host_task_abandon(struct task *t, int32_t status) {
  host_engine_leave(t->engine);
  return t->job ? core_job_finish(t->job, status) : status;
}

struct core_guard host_task_guard(const struct task *t, const char *doing) {
  return (struct core_guard){.job = t->job, .stop = &t->engine->finalizing,
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

static void run_in_background(struct core_work *w) {
  struct task *t = (struct task *)((char *)w - offsetof(struct task, work));
  struct engine *e = t->engine;
  int32_t status;
  pthread_mutex_lock(&e->lock);
  if (atomic_load_explicit(&e->finalizing, memory_order_relaxed)) {
    status = core_fail(LLMDD_ENGINE_FINALIZED,
                       "the engine was finalized before the operation started");
    t->end(t);
    pthread_mutex_unlock(&e->lock);
  } else {
    status = execute_unlocked(t);
  }
  host_engine_release(e);

  struct core_job *j = t->job;
  free(t);
  core_job_report(j, status);
}

int32_t host_task_run_locked(struct task *t) {
  struct engine *e = t->engine;
  int32_t status = t->run(t);
  pthread_mutex_unlock(&e->lock);
  host_engine_release(e);
  return t->job ? core_job_finish(t->job, status) : status;
}

int32_t host_task_dispatch(struct task *t, size_t size) {
  struct engine *e = t->engine;
  if (host_task_in_background(t)) {
    struct task *queued = malloc(size);
    if (queued == NULL) {
      t->end(t);
      return host_task_abandon(t, core_fail(LLMDD_OUT_OF_MEMORY,
                                       "out of host memory for the operation"));
    }
    memcpy(queued, t, size);
    queued->work.run = run_in_background;
    /* The engine and job references, and whatever validation took, move to the
     * queued copy. */
    pthread_mutex_unlock(&e->lock);
    core_workers_submit(&queued->work);
    return LLMDD_SUCCESS;
  }
  int32_t status = execute_unlocked(t);
  host_engine_release(e);
  return t->job ? core_job_finish(t->job, status) : status;
}
