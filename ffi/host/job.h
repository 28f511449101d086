/* Jobs: the deadline, cancel flag, completion callback and message of one long
 * operation at a time. */
#ifndef LLMDD_HOST_JOB_H
#define LLMDD_HOST_JOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "llmdd.h"

struct job {
  atomic_uint refs;     /* the handle table's (the caller's), plus a running operation's */
  atomic_bool cancelled; /* sticky: a later operation stops at once */
  atomic_bool busy;      /* an operation is using the job */
  int64_t deadline_ns;   /* CLOCK_MONOTONIC; INT64_MAX for none */
  llmdd_done_fn done;
  uint64_t handle;
  pthread_mutex_t message_lock; /* the message is written and read on different threads */
  int32_t message_length;
  char message[ERROR_MESSAGE_CAP];
};

/* Resolves a job handle, claims the job for one operation and clears its message.
 * Release it with job_finish(). */
int32_t job_begin(uint64_t handle, struct job **out);

/* Ends the operation: keeps the thread's last error as the job's message when
 * status is a failure and frees the job for another operation. */
void job_complete(struct job *j, int32_t status);

/* Drops the operation's reference from job_begin(). */
void job_put(struct job *j);

/* job_complete() then job_put(); returns status. */
int32_t job_finish(struct job *j, int32_t status);

/* Returns LLMDD_SUCCESS, or FAILED when cancelled, or WAIT_PROCESS_TIMEOUT past
 * the deadline, with a last-error message; copied/total go into the message. */
int32_t job_check(struct job *j, uint64_t copied, uint64_t total);

#endif
