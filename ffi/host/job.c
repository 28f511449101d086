#define _DEFAULT_SOURCE 1
#include "job.h"

#include <stdlib.h>
#include <time.h>

#include "handles.h"

static void retain_object(void *object) {
  atomic_fetch_add_explicit(&((struct job *)object)->refs, 1, memory_order_relaxed);
}

static struct handle_table jobs = HANDLE_TABLE_INIT(HANDLE_KIND_JOB, retain_object);

void job_put(struct job *j) {
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1) {
    pthread_mutex_destroy(&j->message_lock);
    free(j);
  }
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int32_t job_acquire(uint64_t handle, struct job **out) {
  void *object = NULL;
  if (handle_acquire(&jobs, handle, &object) != HANDLE_OK)
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                (unsigned long long)handle);
  *out = object;
  return LLMDD_SUCCESS;
}

static void set_message(struct job *j, const char *text, int32_t length) {
  pthread_mutex_lock(&j->message_lock);
  for (int32_t i = 0; i < length; i++) j->message[i] = text[i];
  j->message[length] = '\0';
  j->message_length = length;
  pthread_mutex_unlock(&j->message_lock);
}

int32_t job_begin(uint64_t handle, struct job **out) {
  struct job *j = NULL;
  int32_t status = job_acquire(handle, &j);
  if (status != LLMDD_SUCCESS) return status;
  if (atomic_exchange(&j->busy, true)) {
    job_put(j);
    return fail(LLMDD_PARAM_INVALID, "job 0x%llx is already running an operation",
                (unsigned long long)handle);
  }
  set_message(j, "", 0);
  *out = j;
  return LLMDD_SUCCESS;
}

void job_complete(struct job *j, int32_t status) {
  if (status != LLMDD_SUCCESS) {
    int32_t length;
    const char *text = last_error_text(&length);
    set_message(j, text, length);
  }
  atomic_store(&j->busy, false);
}

int32_t job_finish(struct job *j, int32_t status) {
  job_complete(j, status);
  job_put(j);
  return status;
}

int32_t job_check(struct job *j, uint64_t copied, uint64_t total) {
  if (atomic_load_explicit(&j->cancelled, memory_order_relaxed))
    return fail(LLMDD_FAILED, "cancelled");
  if (j->deadline_ns != INT64_MAX && now_ns() >= j->deadline_ns)
    return fail(LLMDD_WAIT_PROCESS_TIMEOUT,
                "the job's deadline passed after %llu of %llu bytes were copied",
                (unsigned long long)copied, (unsigned long long)total);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_job_create(int32_t timeout_ms, llmdd_done_fn done,
                                   uint64_t *out_job) {
  if (out_job == NULL) return fail(LLMDD_PARAM_INVALID, "out_job is NULL");
  struct job *j = calloc(1, sizeof *j);
  if (j == NULL) return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a job");
  atomic_init(&j->refs, 1);
  atomic_init(&j->cancelled, false);
  atomic_init(&j->busy, false);
  j->deadline_ns = timeout_ms < 0 ? INT64_MAX : now_ns() + (int64_t)timeout_ms * 1000000;
  j->done = done;
  pthread_mutex_init(&j->message_lock, NULL);
  /* The handle is written under the table lock, before anyone can look it up. */
  if (handle_insert(&jobs, j, &j->handle) != 0) {
    job_put(j);
    return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for job handles");
  }
  *out_job = j->handle;
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_job_cancel(uint64_t job) {
  struct job *j = NULL;
  int32_t status = job_acquire(job, &j);
  if (status != LLMDD_SUCCESS) return status;
  atomic_store(&j->cancelled, true);
  job_put(j);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_job_message(uint64_t job, uint8_t *buf, int32_t cap) {
  struct job *j = NULL;
  if (job_acquire(job, &j) != LLMDD_SUCCESS) return -1;
  pthread_mutex_lock(&j->message_lock);
  int32_t length = copy_message_out(j->message, j->message_length, buf, cap);
  pthread_mutex_unlock(&j->message_lock);
  job_put(j);
  return length;
}

LLMDD_API int32_t llmdd_job_release(uint64_t job) {
  void *object = NULL;
  if (handle_remove(&jobs, job, &object) != HANDLE_OK)
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                (unsigned long long)job);
  job_put(object);
  return LLMDD_SUCCESS;
}
