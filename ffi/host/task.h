/* The long operations that talk to another engine — link, unlink, pull — share
 * one shape: claim the job, enter the engine, validate under the engine lock,
 * then run outside it, on the calling thread (job 0, or a job without a done
 * callback) or on a worker (a job with one). While running, the engine's `running`
 * count is raised, so finalize waits for the operation; the operation sees the
 * finalize within NET_SLICE_MS (or one copy chunk) and ends with ENGINE_FINALIZED.
 *
 * An operation embeds `struct task` first and sets run and end. */
#ifndef LLMDD_HOST_TASK_H
#define LLMDD_HOST_TASK_H

#include <stddef.h>

#include "engine.h"
#include "job.h"
#include "net.h"
#include "worker.h"

struct task {
  struct work work;
  struct engine *engine;
  struct job *job; /* NULL for job 0 */
  /* Runs outside the engine lock; returns the final status. */
  int32_t (*run)(struct task *t);
  /* Under the engine lock, once: after run, or instead of it when the engine was
   * finalized before a queued operation started. Drops what validation took. */
  void (*end)(struct task *t);
};

/* Claims the job and enters the engine (locked on success). */
int32_t task_begin(struct task *t, uint64_t engine, uint64_t job);

/* Ends an operation that failed validation (engine locked): returns status. */
int32_t task_abandon(struct task *t, int32_t status);

/* Runs a validated operation (engine locked; size is the embedding struct's).
 * Returns its final status, or for a background job SUCCESS once queued. */
int32_t task_dispatch(struct task *t, size_t size);

/* A guard for the operation's waits: its job, and the engine's finalize. */
struct guard task_guard(const struct task *t, const char *doing);

#endif
