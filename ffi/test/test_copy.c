/* core_copy_ranges (core/copy.h): a list of ranges copied by the caller and,
 * from CORE_SHARE_MIN_BYTES, by the library's copy helper as well. */
#define _DEFAULT_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/copy.h"
#include "harness.h"
#include "util.h"

#define KiB ((uint64_t)1024)


/* Ranges of `bytes` each, laid out back to back in both buffers; every
 * `skip`-th range (if skip > 0) moves nothing. */
struct list {
  uint8_t *dst;
  const uint8_t *src;
  uint64_t bytes;
  uint64_t skip;
};

static bool list_range(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src) {
  const struct list *l = ctx;
  if (l->skip > 0 && i % l->skip == l->skip - 1) return false;
  *dst = l->dst + i * l->bytes;
  *src = l->src + i * l->bytes;
  return true;
}

/* The copy function's view of who copied what. */
static pthread_t caller;
static atomic_uint_fast64_t caller_calls, helper_calls, calls_after_return;
static atomic_bool returned;
static atomic_bool wait_for_helper; /* the caller's first copy waits until the helper copied */
static core_atomic_bool finalizing;
static atomic_uint_fast64_t finalize_after; /* calls before `finalizing` is raised (0: never) */

static void counting_copy(uint8_t *dst, const uint8_t *src, uint64_t n) {
  bool by_caller = pthread_equal(pthread_self(), caller);
  uint64_t calls = atomic_fetch_add(by_caller ? &caller_calls : &helper_calls, 1) + 1;
  if (atomic_load(&returned)) atomic_fetch_add(&calls_after_return, 1);
  if (by_caller && calls == 1 && atomic_load(&wait_for_helper)) {
    /* Up to 5 s for the helper to take a piece: it must arrive while the
     * caller is busy. */
    for (int i = 0; i < 5000 && atomic_load(&helper_calls) == 0; i++) usleep(1000);
  }
  uint64_t after = atomic_load(&finalize_after);
  if (after > 0 && atomic_load(&caller_calls) + atomic_load(&helper_calls) >= after) {
    atomic_store(&finalizing, true);
    /* Slow from here on, so the helper cannot finish the list before the
     * caller's next check sees the finalize. */
    if (!by_caller) usleep(5000);
  }
  memcpy(dst, src, n);
}

static void memcpy_copy(uint8_t *dst, const uint8_t *src, uint64_t n) { memcpy(dst, src, n); }

static void reset_counts(void) {
  caller = pthread_self();
  atomic_store(&caller_calls, 0);
  atomic_store(&helper_calls, 0);
  atomic_store(&calls_after_return, 0);
  atomic_store(&returned, false);
  atomic_store(&wait_for_helper, false);
  atomic_store(&finalizing, false);
  atomic_store(&finalize_after, 0);
}

static void fill(uint8_t *p, uint64_t n, uint8_t seed) {
  for (uint64_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
}

/* Whether the list's ranges arrived and the skipped ones kept `old`. */
static bool list_ok(const struct list *l, uint64_t count, uint8_t old) {
  for (uint64_t i = 0; i < count; i++) {
    const uint8_t *d = l->dst + i * l->bytes, *s = l->src + i * l->bytes;
    bool skipped = l->skip > 0 && i % l->skip == l->skip - 1;
    for (uint64_t b = 0; b < l->bytes; b++)
      if (d[b] != (skipped ? old : s[b])) return false;
  }
  return true;
}

/* A list of `count` ranges of `bytes` over fresh buffers: the source filled
 * from `seed`, the destination zeroed, the copy function's counts reset.
 * False if the memory could not be had. */
static bool list_make(struct list *l, uint64_t bytes, uint64_t count, uint8_t seed) {
  uint8_t *src = malloc(bytes * count), *dst = malloc(bytes * count);
  *l = (struct list){.dst = dst, .src = src, .bytes = bytes};
  if (src == NULL || dst == NULL) {
    free(src);
    free(dst);
    return false;
  }
  fill(src, bytes * count, seed);
  memset(dst, 0, bytes * count);
  reset_counts();
  return true;
}

static void list_free(struct list *l) {
  free((void *)l->src);
  free(l->dst);
}

static struct core_progress progress_for(const struct core_guard *g, uint64_t total,
                                         bool shareable) {
  struct core_progress p = core_progress_start(g, counting_copy, total, "copied");
  p.shareable = shareable;
  return p;
}

/* Runs one list through core_copy_ranges; returns its status. */
static int32_t copy_list(struct list *l, uint64_t count, bool shareable, uint64_t *copied) {
  struct core_guard g = {.stop = &finalizing, .until_ns = INT64_MAX, .doing = "copying"};
  uint64_t moved = 0;
  for (uint64_t i = 0; i < count; i++)
    if (!(l->skip > 0 && i % l->skip == l->skip - 1)) moved += l->bytes;
  struct core_progress p = progress_for(&g, moved, shareable);
  int32_t status = core_copy_ranges(&p, list_range, l, count, l->bytes);
  atomic_store(&returned, true);
  if (copied) *copied = p.copied;
  return status;
}

/* Ranges of odd sizes, some skipped, some longer than a chunk: every byte of
 * every range arrives once, skipped ones stay, and the progress counts the
 * helper's bytes too. */
TEST(copy_ranges_shared_with_the_helper_moves_every_range_once) {
  static const uint64_t sizes[] = {300 * KiB + 7, 5 * MiB / 2 + 3, 16 * KiB, 1 * MiB};
  static const uint64_t counts[] = {40, 3, 1024, 9};
  for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
    uint64_t total = sizes[c] * counts[c];
    uint8_t *src = malloc(total), *dst = malloc(total);
    CHECK(src != NULL && dst != NULL);
    fill(src, total, (uint8_t)c);
    memset(dst, 0xEE, total);
    reset_counts();
    struct list l = {.dst = dst, .src = src, .bytes = sizes[c], .skip = c == 2 ? 0 : 7};
    uint64_t copied = 0, moved = 0;
    EXPECT_STATUS(copy_list(&l, counts[c], true, &copied), LLMDD_SUCCESS);
    for (uint64_t i = 0; i < counts[c]; i++)
      if (!(l.skip > 0 && i % l.skip == l.skip - 1)) moved += l.bytes;
    EXPECT(copied == moved);
    EXPECT(list_ok(&l, counts[c], 0xEE));
    free(src);
    free(dst);
  }
}

/* The helper takes part (the caller's first piece waits for it), and nothing
 * is copied once core_copy_ranges has returned. */
TEST(copy_ranges_the_helper_takes_pieces_and_is_gone_on_return) {
  uint64_t count = 64; /* of 256 KiB: 16 MiB */
  struct list l;
  CHECK(list_make(&l, 256 * KiB, count, 9));
  atomic_store(&wait_for_helper, true);
  EXPECT_STATUS(copy_list(&l, count, true, NULL), LLMDD_SUCCESS);
  EXPECT(atomic_load(&helper_calls) > 0);
  EXPECT(atomic_load(&caller_calls) > 0);
  EXPECT(atomic_load(&caller_calls) + atomic_load(&helper_calls) == count);
  EXPECT(list_ok(&l, count, 0));
  usleep(20 * 1000);
  EXPECT(atomic_load(&calls_after_return) == 0);
  list_free(&l);
}

/* Below CORE_SHARE_MIN_BYTES, or when the progress is not shareable, only the
 * caller copies. */
TEST(copy_ranges_small_or_unshareable_copies_stay_on_the_caller) {
  uint64_t bytes = 1 * MiB;
  uint8_t *src = malloc(8 * bytes), *dst = malloc(8 * bytes);
  CHECK(src != NULL && dst != NULL);
  fill(src, 8 * bytes, 3);
  for (int shareable = 0; shareable < 2; shareable++) {
    uint64_t count = shareable ? CORE_SHARE_MIN_BYTES / bytes - 1 : 8;
    memset(dst, 0, 8 * bytes);
    reset_counts();
    struct list l = {.dst = dst, .src = src, .bytes = bytes};
    EXPECT_STATUS(copy_list(&l, count, shareable, NULL), LLMDD_SUCCESS);
    EXPECT(atomic_load(&helper_calls) == 0);
    EXPECT(atomic_load(&caller_calls) == count);
    EXPECT(list_ok(&l, count, 0));
  }
  free(src);
  free(dst);
}

/* A check that fails (here: the engine finalized after a few pieces) stops the
 * copy for both threads: the status is the check's, some pieces were never
 * copied, and none is copied after the return. */
TEST(copy_ranges_a_failed_check_stops_the_helper_too) {
  uint64_t bytes = 1 * MiB, count = 64;
  struct list l;
  CHECK(list_make(&l, bytes, count, 5));
  atomic_store(&wait_for_helper, true);
  atomic_store(&finalize_after, 4);
  uint64_t copied = 0;
  EXPECT_STATUS(copy_list(&l, count, true, &copied), LLMDD_ENGINE_FINALIZED);
  uint64_t calls = atomic_load(&caller_calls) + atomic_load(&helper_calls);
  EXPECT(calls >= 4 && calls < count);
  EXPECT(copied == calls * bytes);
  EXPECT(strstr(last_error(), "finalized after") != NULL);
  usleep(20 * 1000);
  EXPECT(atomic_load(&calls_after_return) == 0);
  list_free(&l);
}

/* Copies from several threads at once: one may have the helper, the others
 * copy alone, and all arrive. */
struct racer {
  uint8_t seed;
  bool ok;
};

static void *race(void *arg) {
  struct racer *r = arg;
  uint64_t bytes = 512 * KiB, count = 12; /* 6 MiB */
  uint8_t *src = malloc(bytes * count), *dst = malloc(bytes * count);
  r->ok = src != NULL && dst != NULL;
  if (!r->ok) return NULL;
  fill(src, bytes * count, r->seed);
  struct core_guard g = core_guard_for(60000, "copying");
  for (int round = 0; round < 20 && r->ok; round++) {
    memset(dst, 0, bytes * count);
    struct core_progress p = core_progress_start(&g, memcpy_copy, bytes * count, "copied");
    p.shareable = true;
    struct list l = {.dst = dst, .src = src, .bytes = bytes, .skip = 5};
    r->ok = core_copy_ranges(&p, list_range, &l, count, bytes) == LLMDD_SUCCESS &&
            list_ok(&l, count, 0);
  }
  free(src);
  free(dst);
  return NULL;
}

TEST(copy_ranges_from_several_threads_at_once) {
  pthread_t t[3];
  struct racer r[3];
  for (int i = 0; i < 3; i++) {
    r[i] = (struct racer){.seed = (uint8_t)(i * 40)};
    CHECK(pthread_create(&t[i], NULL, race, &r[i]) == 0);
  }
  for (int i = 0; i < 3; i++) {
    pthread_join(t[i], NULL);
    EXPECT(r[i].ok);
  }
}

/* A child of fork() has no helper thread: its shared copies start one of its
 * own (or copy alone) and arrive. */
TEST(copy_ranges_work_in_a_forked_child) {
  uint64_t bytes = 1 * MiB, count = 8;
  struct list l;
  CHECK(list_make(&l, bytes, count, 11));
  CHECK_STATUS(copy_list(&l, count, true, NULL), LLMDD_SUCCESS); /* the helper runs here */
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    memset(l.dst, 0, bytes * count);
    reset_counts();
    int32_t status = copy_list(&l, count, true, NULL);
    _exit(status == LLMDD_SUCCESS && list_ok(&l, count, 0) ? 0 : 1);
  }
  int wstatus = 0;
  CHECK(waitpid(child, &wstatus, 0) == child);
  EXPECT(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  list_free(&l);
}
