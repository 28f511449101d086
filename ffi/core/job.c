#define _DEFAULT_SOURCE 1
#include "job.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "clock.h"
#include "error.h"
#include "handles.h"

struct core_job {
  atomic_uint refs;      /* the handle table's (the caller's), plus a running operation's */
  atomic_bool cancelled; /* sticky: a later operation stops at once */
  atomic_bool busy;      /* an operation is using the job */
  int64_t deadline_ns;   /* CLOCK_MONOTONIC; INT64_MAX for none */
  llmdd_done_fn done;
  uint64_t handle;
  pthread_mutex_t message_lock; /* the message is written and read on different threads */
  int32_t message_length;
  char message[CORE_MESSAGE_CAP];
};

static void retain_object(void *context, void *object) {
  (void)context;
  atomic_fetch_add_explicit(&((struct core_job *)object)->refs, 1, memory_order_relaxed);
}

static struct core_handle_table jobs = CORE_HANDLE_TABLE_INIT(CORE_HANDLE_JOB, retain_object);

void core_job_put(struct core_job *j) {
  if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1) {
    pthread_mutex_destroy(&j->message_lock);
    free(j);
  }
}

static int32_t job_acquire(uint64_t handle, struct core_job **out) {
  void *object = NULL;
  if (core_handle_acquire(&jobs, handle, &object) != CORE_HANDLE_OK)
    return core_fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                     (unsigned long long)handle);
  *out = object;
  return LLMDD_SUCCESS;
}

static void set_message(struct core_job *j, const char *text, int32_t length) {
  pthread_mutex_lock(&j->message_lock);
  for (int32_t i = 0; i < length; i++) j->message[i] = text[i];
  j->message[length] = '\0';
  j->message_length = length;
  pthread_mutex_unlock(&j->message_lock);
}

int32_t core_job_begin(uint64_t handle, struct core_job **out) {
  struct core_job *j = NULL;
  int32_t status = job_acquire(handle, &j);
  if (status != LLMDD_SUCCESS) return status;
  if (atomic_exchange(&j->busy, true)) {
    core_job_put(j);
    return core_fail(LLMDD_PARAM_INVALID, "job 0x%llx is already running an operation",
                     (unsigned long long)handle);
  }
  set_message(j, "", 0);
  *out = j;
  return LLMDD_SUCCESS;
}

void core_job_complete(struct core_job *j, int32_t status) {
  if (status != LLMDD_SUCCESS) {
    int32_t length;
    const char *text = core_last_error_text(&length);
    set_message(j, text, length);
  }
  atomic_store(&j->busy, false);
}

int32_t core_job_finish(struct core_job *j, int32_t status) {
  core_job_complete(j, status);
  core_job_put(j);
  return status;
}

void core_job_report(struct core_job *j, int32_t status) {
  uint64_t handle = j->handle;
  llmdd_done_fn done = j->done;
  core_job_complete(j, status);
  done(handle, status);
  core_job_put(j);
}

llmdd_done_fn core_job_callback(const struct core_job *j) { return j->done; }

bool core_job_cancelled(const struct core_job *j) {
  return atomic_load_explicit(&j->cancelled, memory_order_relaxed);
}

int64_t core_job_deadline_ns(const struct core_job *j) { return j->deadline_ns; }

LLMDD_API int32_t llmdd_job_create(int32_t timeout_ms, llmdd_done_fn done,
                                   uint64_t *out_job) {
  if (out_job == NULL) return core_fail(LLMDD_PARAM_INVALID, "out_job is NULL");
  struct core_job *j = calloc(1, sizeof *j);
  if (j == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a job");
  atomic_init(&j->refs, 1);
  atomic_init(&j->cancelled, false);
  atomic_init(&j->busy, false);
  j->deadline_ns = core_deadline_after_ms(timeout_ms);
  j->done = done;
  pthread_mutex_init(&j->message_lock, NULL);
  /* The handle is written under the table lock, before anyone can look it up. */
  if (core_handle_insert(&jobs, j, &j->handle) != 0) {
    core_job_put(j);
    return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for job handles");
  }
  *out_job = j->handle;
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_job_cancel(uint64_t job) {
  struct core_job *j = NULL;
  int32_t status = job_acquire(job, &j);
  if (status != LLMDD_SUCCESS) return status;
  atomic_store(&j->cancelled, true);
  core_job_put(j);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_job_message(uint64_t job, uint8_t *buf, int32_t cap) {
  struct core_job *j = NULL;
  if (job_acquire(job, &j) != LLMDD_SUCCESS) return -1;
  pthread_mutex_lock(&j->message_lock);
  int32_t length = core_copy_message_out(j->message, j->message_length, buf, cap);
  pthread_mutex_unlock(&j->message_lock);
  core_job_put(j);
  return length;
}

LLMDD_API int32_t llmdd_job_release(uint64_t job) {
  void *object = NULL;
  if (core_handle_remove(&jobs, job, &object) != CORE_HANDLE_OK)
    return core_fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                     (unsigned long long)job);
  core_job_put(object);
  return LLMDD_SUCCESS;
}
