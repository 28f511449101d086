/* Jobs: the deadline, cancel flag, completion callback and message of one long
 * operation at a time, behind the llmdd_job_* calls of the ABI.
 *
 * A job is opaque outside job.c, so that C++ (the CANN adapter) can hold one
 * without seeing C atomics. */
#ifndef LLMDD_CORE_JOB_H
#define LLMDD_CORE_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "llmdd.h"

#ifdef __cplusplus
extern "C" {
#endif

struct core_job;

/* Resolves a job handle, claims the job for one operation and clears its message.
 * Release it with core_job_finish() or core_job_report(). */
int32_t core_job_begin(uint64_t handle, struct core_job **out);

/* Ends the operation: keeps the thread's last error as the job's message when
 * status is a failure and frees the job for another operation. */
void core_job_complete(struct core_job *j, int32_t status);

/* Drops the operation's reference from core_job_begin(). */
void core_job_put(struct core_job *j);

/* core_job_complete() then core_job_put(); returns status. */
int32_t core_job_finish(struct core_job *j, int32_t status);

/* Ends a background operation: completes the job, calls its done callback and
 * drops the operation's reference. The job stays referenced during the callback
 * so llmdd_job_message() works from inside it (unless the caller already
 * released the handle). */
void core_job_report(struct core_job *j, int32_t status);

/* The done callback given to llmdd_job_create (NULL: the operation runs inline). */
llmdd_done_fn core_job_callback(const struct core_job *j);

bool core_job_cancelled(const struct core_job *j);

/* CLOCK_MONOTONIC nanoseconds (core_now_ns); CORE_NO_DEADLINE for none. */
int64_t core_job_deadline_ns(const struct core_job *j);

#ifdef __cplusplus
}
#endif

#endif
