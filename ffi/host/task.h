/* The long operations — read, copy, link, unlink, pull — share one shape: claim
 * the job, enter the engine, validate under the engine lock, then run outside it,
 * on the calling thread (job 0, or a job without a done callback) or on a worker
 * (a job with one). While running, the engine's `running` count is raised, so
 * finalize waits for the operation; the operation sees the finalize within
 * CORE_WAIT_SLICE_MS (or one copy chunk) and ends with ENGINE_FINALIZED. An inline
 * operation short enough to hold the lock throughout may instead run under it
 * (host_task_run_locked), taking nothing that would outlive the lock.
 *
 * An operation embeds `struct task` first and sets run and end. */
#ifndef LLMDD_HOST_TASK_H
#define LLMDD_HOST_TASK_H

#include <stdbool.h>
#include <stddef.h>

#include "core/guard.h"
#include "core/job.h"
#include "core/workers.h"
#include "engine.h"

struct task {
  struct core_work work;
  struct engine *engine;
  struct core_job *job; /* NULL for job 0 */
  /* Runs outside the engine lock (under it for host_task_run_locked); returns the
   * final status. */
  int32_t (*run)(struct task *t);
  /* Under the engine lock, once: after run, or instead of it when the engine was
   * finalized before a queued operation started. Drops what validation took. */
  void (*end)(struct task *t);
};

/* Claims the job and enters the engine (locked on success). */
int32_t host_task_begin(struct task *t, uint64_t engine, uint64_t job);

/* Ends an operation that failed validation (engine locked): returns status. */
int32_t host_task_abandon(struct task *t, int32_t status);

/* True when the operation goes to a worker: its job has a done callback. */
static inline bool host_task_in_background(const struct task *t) {
  return t->job != NULL && core_job_callback(t->job) != NULL;
}

/* Runs a validated inline operation (not host_task_in_background) on the calling
 * thread with the engine locked throughout, without raising `running`; end is
 * not called, so validation must have taken nothing. Returns with the engine
 * unlocked and left, and the operation's final status. */
int32_t host_task_run_locked(struct task *t);

/* Runs a validated operation (engine locked; size is the embedding struct's).
 * Returns its final status, or for a background job SUCCESS once queued. */
int32_t host_task_dispatch(struct task *t, size_t size);

/* A guard for the operation's waits and chunks: its job, and the engine's finalize. */
struct core_guard host_task_guard(const struct task *t, const char *doing);

#endif
