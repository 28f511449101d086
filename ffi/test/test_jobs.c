/* Jobs: deadlines, cancellation, background completion and finalize while
 * operations run. */
#define _DEFAULT_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

/* ---- completions delivered to done callbacks ---- */

#define MAX_COMPLETIONS 1024

static pthread_mutex_t completions_lock = PTHREAD_MUTEX_INITIALIZER;
struct completion {
  uint64_t job;
  int32_t status;
  pthread_t thread;
};
static struct completion completions[MAX_COMPLETIONS];
static int num_completions;

static void on_done(uint64_t job, int32_t status) {
  pthread_mutex_lock(&completions_lock);
  if (num_completions < MAX_COMPLETIONS)
    completions[num_completions++] = (struct completion){job, status, pthread_self()};
  pthread_mutex_unlock(&completions_lock);
}

/* How many completions a job has had; *status gets the last one's status. */
static int completions_of(uint64_t job, int32_t *status, pthread_t *thread) {
  int count = 0;
  pthread_mutex_lock(&completions_lock);
  for (int i = 0; i < num_completions; i++) {
    if (completions[i].job != job) continue;
    count++;
    if (status) *status = completions[i].status;
    if (thread) *thread = completions[i].thread;
  }
  pthread_mutex_unlock(&completions_lock);
  return count;
}

/* Waits up to 10 s for a job's completion; returns its status, or INT32_MIN. */
static int32_t wait_done(uint64_t job) {
  int32_t status = INT32_MIN;
  for (double end = now_ms() + 10000; now_ms() < end; sleep_ms(0.2))
    if (completions_of(job, &status, NULL) > 0) return status;
  return INT32_MIN;
}

static uint64_t new_job(int32_t timeout_ms, llmdd_done_fn done) {
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(timeout_ms, done, &job), LLMDD_SUCCESS);
  return job;
}

/* ---- job handles ---- */

TEST(job_create_requires_an_output) {
  EXPECT_STATUS(llmdd_job_create(10, NULL, NULL), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "out_job") != NULL);
}

TEST(garbage_stale_and_foreign_job_handles_are_invalid) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 1, 64, &id), LLMDD_SUCCESS);
  uint64_t released = new_job(-1, NULL);
  CHECK_STATUS(llmdd_job_release(released), LLMDD_SUCCESS);
  uint64_t live = new_job(-1, NULL);
  const uint64_t bad[] = {1, 0xdeadbeef, UINT64_MAX, released,
                          live + ((uint64_t)1 << 32), engine};
  uint8_t out[64], msg[8];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    EXPECT_STATUS(llmdd_job_cancel(bad[i]), LLMDD_PARAM_INVALID);
    EXPECT(llmdd_job_message(bad[i], msg, sizeof msg) == -1);
    EXPECT_STATUS(llmdd_job_release(bad[i]), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 64, bad[i]), LLMDD_PARAM_INVALID);
    EXPECT(strstr(last_error(), "job") != NULL);
    EXPECT_STATUS(llmdd_cache_copy(engine, id, id, 0, 0, 0, bad[i]), LLMDD_PARAM_INVALID);
  }
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 64, live), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(live), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(live), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(reused_job_slots_give_distinct_js_safe_handles) {
  enum { ROUNDS = 2000 };
  static uint64_t handles[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    handles[i] = new_job(-1, NULL);
    EXPECT(handles[i] != 0 && handles[i] < ((uint64_t)1 << 53));
    for (int k = 0; k < i; k += 97) EXPECT(handles[k] != handles[i]);
    EXPECT_STATUS(llmdd_job_release(handles[i]), LLMDD_SUCCESS);
  }
  for (int i = 0; i < ROUNDS; i++) EXPECT_STATUS(llmdd_job_cancel(handles[i]), LLMDD_PARAM_INVALID);
}

TEST(job_message_copies_like_last_error) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 1, 64, &id), LLMDD_SUCCESS);
  uint64_t job = new_job(-1, NULL);
  uint8_t out[64];
  char buf[256];
  EXPECT(llmdd_job_message(job, (uint8_t *)buf, sizeof buf) == 0 && buf[0] == '\0');
  EXPECT_STATUS(llmdd_cache_read(engine, id, 3, 0, out, 64, job), LLMDD_PARAM_INVALID);
  int32_t len = llmdd_job_message(job, (uint8_t *)buf, sizeof buf);
  EXPECT(len > 0 && (size_t)len == strlen(buf));
  EXPECT(strstr(buf, "tensor_index 3") != NULL);
  char small[4];
  EXPECT(llmdd_job_message(job, (uint8_t *)small, sizeof small) == len);
  EXPECT(strlen(small) == 3 && memcmp(small, buf, 3) == 0);
  EXPECT(llmdd_job_message(job, NULL, 0) == len);
  /* A successful operation clears the message. */
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 64, job), LLMDD_SUCCESS);
  EXPECT(llmdd_job_message(job, NULL, 0) == 0);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* ---- deadlines ---- */

TEST(deadline_zero_times_out_before_touching_memory) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t a, b;
  CHECK_STATUS(allocate_filled(engine, 2, 100, &a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 2, 100, &b), LLMDD_SUCCESS);
  uint8_t out[100];
  memset(out, 0xAA, sizeof out);
  uint64_t job = new_job(0, NULL);
  EXPECT_STATUS(llmdd_cache_read(engine, a, 0, 0, out, 100, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT(strstr(job_message(job), "deadline") != NULL);
  EXPECT(strstr(last_error(), "deadline") != NULL);
  for (int i = 0; i < 100; i++) EXPECT(out[i] == 0xAA);
  EXPECT_STATUS(llmdd_cache_copy(engine, b, a, 0, 0, 100, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_STATUS(llmdd_cache_read(engine, b, 1, 0, out, 100, 0), LLMDD_SUCCESS);
  EXPECT(find_mismatch(out, 100, b, 0, 1) == UINT64_MAX);
  /* Validation still comes first. */
  EXPECT_STATUS(llmdd_cache_read(engine, a, 9, 0, out, 100, job), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);

  job = new_job(-1, NULL); /* no deadline */
  EXPECT_STATUS(llmdd_cache_read(engine, a, 0, 0, out, 100, job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(large_read_stops_soon_after_its_deadline) {
  const uint64_t bytes = 256 * MiB;
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id, addr;
  CHECK_STATUS(llmdd_cache_allocate(engine, 1, bytes, 1, 0, 1, NULL, 0, &id, &addr, 1), LLMDD_SUCCESS);
  uint8_t *out = malloc(bytes);
  CHECK(out != NULL);
  double start = now_ms();
  uint64_t job = new_job(5, NULL);
  int32_t status = llmdd_cache_read(engine, id, 0, 0, out, bytes, job);
  double elapsed = now_ms() - start;
  EXPECT_STATUS(status, LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT(strstr(job_message(job), "deadline passed") != NULL);
  printf("    256 MiB read with a 5 ms timeout returned after %.2f ms (%.2f ms past the "
         "deadline): %s\n",
         elapsed, elapsed - 5, job_message(job));
  EXPECT(elapsed >= 4.9);
  EXPECT(elapsed - 5 < 200);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  free(out);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* ---- cancellation ---- */

struct canceller {
  uint64_t job;
  atomic_bool started; /* set by the copying thread just before its call */
  double delay_ms;
  double cancelled_at;
};

static void *cancel_later(void *arg) {
  struct canceller *c = arg;
  while (!atomic_load(&c->started)) sleep_ms(0.1);
  sleep_ms(c->delay_ms);
  c->cancelled_at = now_ms();
  EXPECT_STATUS(llmdd_job_cancel(c->job), LLMDD_SUCCESS);
  return NULL;
}

/* Two caches of `bytes` (one tensor): the destination's pages are untouched, so
 * copying it is slow enough to be interrupted. */
static int32_t allocate_pair(uint64_t engine, uint64_t bytes, uint64_t *dst, uint64_t *src) {
  uint64_t addr;
  int32_t status = llmdd_cache_allocate(engine, 1, bytes, 1, 0, 1, NULL, 0, src, &addr, 1);
  if (status == LLMDD_SUCCESS)
    status = llmdd_cache_allocate(engine, 1, bytes, 1, 0, 1, NULL, 0, dst, &addr, 1);
  return status;
}

TEST(cancel_from_another_thread_stops_a_large_copy) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t dst, src;
  CHECK_STATUS(allocate_pair(engine, 256 * MiB, &dst, &src), LLMDD_SUCCESS);
  struct canceller c = {.job = new_job(-1, NULL), .delay_ms = 3};
  pthread_t thread;
  pthread_create(&thread, NULL, cancel_later, &c);
  atomic_store(&c.started, true);
  double start = now_ms();
  int32_t status = llmdd_cache_copy(engine, dst, src, 0, 0, 256 * MiB, c.job);
  double end = now_ms();
  pthread_join(thread, NULL);
  EXPECT_STATUS(status, LLMDD_FAILED);
  EXPECT(strcmp(job_message(c.job), "cancelled") == 0);
  EXPECT(strcmp(last_error(), "cancelled") == 0);
  printf("    copy ran %.2f ms; stopped %.2f ms after the cancel\n", end - start,
         end - c.cancelled_at);
  EXPECT(end - c.cancelled_at < 200);
  EXPECT_STATUS(llmdd_job_release(c.job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(a_cancelled_job_stops_the_next_operation_at_once) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 1, 64, &id), LLMDD_SUCCESS);
  uint64_t job = new_job(-1, NULL);
  EXPECT_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  uint8_t out[64];
  memset(out, 0xAA, sizeof out);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 64, job), LLMDD_FAILED);
  EXPECT(strcmp(job_message(job), "cancelled") == 0);
  for (int i = 0; i < 64; i++) EXPECT(out[i] == 0xAA);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* ---- background operations ---- */

TEST(background_read_completes_exactly_once_on_a_library_thread) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  const uint64_t bytes = 3 * MiB + 1;
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 2, bytes, &id), LLMDD_SUCCESS);
  uint8_t *out = calloc(1, bytes);
  uint64_t job = new_job(-1, on_done);
  CHECK_STATUS(llmdd_cache_read(engine, id, 1, 0, out, bytes, job), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(job), LLMDD_SUCCESS);
  EXPECT(find_mismatch(out, bytes, id, 0, 1) == UINT64_MAX);

  /* A small read goes through the same path. */
  uint8_t small[64];
  uint64_t job2 = new_job(-1, on_done);
  uint64_t id2;
  CHECK_STATUS(allocate_filled(engine, 1, 64, &id2), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_read(engine, id2, 0, 0, small, 64, job2), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(job2), LLMDD_SUCCESS);
  EXPECT(find_mismatch(small, 64, id2, 0, 0) == UINT64_MAX);

  sleep_ms(20);
  pthread_t thread;
  EXPECT(completions_of(job, NULL, &thread) == 1);
  EXPECT(!pthread_equal(thread, pthread_self()));
  EXPECT(completions_of(job2, NULL, NULL) == 1);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job2), LLMDD_SUCCESS);
  free(out);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(background_validation_errors_return_at_once_without_callback) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id, other;
  CHECK_STATUS(allocate_filled(engine, 2, 100, &id), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 3, 100, &other), LLMDD_SUCCESS);
  uint64_t job = new_job(-1, on_done);
  uint8_t out[100];
  EXPECT_STATUS(llmdd_cache_read(engine, id, 2, 0, out, 100, job), LLMDD_PARAM_INVALID);
  EXPECT(strstr(job_message(job), "tensor_index 2") != NULL);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 99, job), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, NULL, 100, job), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, 55, 0, 0, out, 100, job), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_copy(engine, id, other, 0, 0, 10, job), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(0x1234, id, 0, 0, out, 100, job), LLMDD_PARAM_INVALID);
  uint64_t dead = open_engine(NULL);
  EXPECT_STATUS(llmdd_engine_finalize(dead), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(dead, 1, 0, 0, out, 100, job), LLMDD_ENGINE_FINALIZED);
  sleep_ms(20);
  EXPECT(completions_of(job, NULL, NULL) == 0);
  /* The job is still good for an operation that passes validation. */
  EXPECT_STATUS(llmdd_cache_read(engine, id, 1, 0, out, 100, job), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(job), LLMDD_SUCCESS);
  EXPECT(find_mismatch(out, 100, id, 0, 1) == UINT64_MAX);
  EXPECT(completions_of(job, NULL, NULL) == 1);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(background_deadline_and_cancel_are_reported_through_the_callback) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 1, 100, &id), LLMDD_SUCCESS);
  uint8_t out[100];
  memset(out, 0xAA, sizeof out);
  uint64_t late = new_job(0, on_done);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 100, late), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(late), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT(strstr(job_message(late), "deadline") != NULL);
  for (int i = 0; i < 100; i++) EXPECT(out[i] == 0xAA);

  uint64_t dst, src;
  CHECK_STATUS(allocate_pair(engine, 128 * MiB, &dst, &src), LLMDD_SUCCESS);
  uint64_t job = new_job(-1, on_done);
  double start = now_ms();
  CHECK_STATUS(llmdd_cache_copy(engine, dst, src, 0, 0, 128 * MiB, job), LLMDD_SUCCESS);
  /* One operation per job at a time. */
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 100, job), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "already running") != NULL);
  sleep_ms(2);
  EXPECT_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(job), LLMDD_FAILED);
  printf("    background copy cancelled after %.2f ms\n", now_ms() - start);
  EXPECT(strcmp(job_message(job), "cancelled") == 0);
  EXPECT(completions_of(job, NULL, NULL) == 1);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(late), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(releasing_a_job_early_still_completes_its_operation) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  const uint64_t bytes = 2 * MiB;
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 1, bytes, &id), LLMDD_SUCCESS);
  uint8_t *out = malloc(bytes);
  uint64_t job = new_job(-1, on_done);
  CHECK_STATUS(llmdd_cache_read(engine, id, 0, 0, out, bytes, job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  /* Deallocating while the read may still run: the read finishes on intact memory. */
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(job), LLMDD_SUCCESS);
  EXPECT(find_mismatch(out, bytes, id, 0, 0) == UINT64_MAX);
  EXPECT(llmdd_job_message(job, NULL, 0) == -1);
  EXPECT(pool_used(engine, 0) == 0);
  free(out);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* ---- finalize while operations run ---- */

TEST(finalize_while_background_copies_run) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  enum { OPS = 4 };
  uint64_t dst[OPS], src[OPS], jobs[OPS];
  for (int i = 0; i < OPS; i++) {
    CHECK_STATUS(allocate_pair(engine, 64 * MiB, &dst[i], &src[i]), LLMDD_SUCCESS);
    jobs[i] = new_job(-1, on_done);
  }
  /* Two workers: two copies run, two wait in the queue. */
  for (int i = 0; i < OPS; i++)
    CHECK_STATUS(llmdd_cache_copy(engine, dst[i], src[i], 0, 0, 64 * MiB, jobs[i]), LLMDD_SUCCESS);
  sleep_ms(2);
  double start = now_ms();
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  printf("    finalize took %.2f ms; completions:", now_ms() - start);
  for (int i = 0; i < OPS; i++) {
    int32_t status = wait_done(jobs[i]);
    printf(" %s", status == LLMDD_SUCCESS ? "SUCCESS"
                  : status == LLMDD_ENGINE_FINALIZED ? "ENGINE_FINALIZED" : "other");
    EXPECT(status == LLMDD_SUCCESS || status == LLMDD_ENGINE_FINALIZED);
  }
  printf("\n");
  sleep_ms(10);
  for (int i = 0; i < OPS; i++) {
    EXPECT(completions_of(jobs[i], NULL, NULL) == 1);
    EXPECT_STATUS(llmdd_job_release(jobs[i]), LLMDD_SUCCESS);
  }
}

struct inline_copy {
  uint64_t engine, dst, src, bytes;
  atomic_bool started;
  int32_t status;
};

static void *copy_inline(void *arg) {
  struct inline_copy *c = arg;
  atomic_store(&c->started, true);
  c->status = llmdd_cache_copy(c->engine, c->dst, c->src, 0, 0, c->bytes, 0);
  return NULL;
}

TEST(finalize_while_an_inline_copy_runs) {
  struct inline_copy c = {.engine = open_engine(NULL), .bytes = 256 * MiB};
  CHECK(c.engine != 0);
  CHECK_STATUS(allocate_pair(c.engine, c.bytes, &c.dst, &c.src), LLMDD_SUCCESS);
  pthread_t thread;
  pthread_create(&thread, NULL, copy_inline, &c);
  while (!atomic_load(&c.started)) sleep_ms(0.1);
  sleep_ms(3);
  EXPECT_STATUS(llmdd_engine_finalize(c.engine), LLMDD_SUCCESS);
  pthread_join(thread, NULL);
  EXPECT(c.status == LLMDD_ENGINE_FINALIZED || c.status == LLMDD_SUCCESS);
  printf("    the copy ended with 0x%08x\n", (unsigned)c.status);
}

static void *finalize_engine(void *arg) {
  uint64_t engine = *(uint64_t *)arg;
  return (void *)(intptr_t)llmdd_engine_finalize(engine);
}

TEST(concurrent_finalize_succeeds_once) {
  for (int round = 0; round < 20; round++) {
    uint64_t engine = open_engine(NULL);
    CHECK(engine != 0);
    uint64_t id;
    CHECK_STATUS(allocate_filled(engine, 1, 4096, &id), LLMDD_SUCCESS);
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) pthread_create(&threads[i], NULL, finalize_engine, &engine);
    int successes = 0, finalized = 0;
    for (int i = 0; i < 3; i++) {
      void *result;
      pthread_join(threads[i], &result);
      int32_t status = (int32_t)(intptr_t)result;
      successes += status == LLMDD_SUCCESS;
      finalized += status == LLMDD_ENGINE_FINALIZED;
    }
    CHECK(successes == 1 && finalized == 2);
  }
}
