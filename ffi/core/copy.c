#define _DEFAULT_SOURCE 1
#include "copy.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "error.h"
#include "llmdd.h"
#include "workers.h"

struct core_progress core_progress_start(const struct core_guard *g, core_copy_fn copy,
                                         uint64_t total, const char *verb) {
  return (struct core_progress){.guard = g, .copy = copy, .verb = verb, .total = total,
                                .since_check = LLMDD_COPY_CHUNK_BYTES};
}

int32_t core_progress_check(struct core_progress *p) {
  int32_t status = core_guard_check(p->guard);
  /* The guard's message says what was being done; this one says how far. */
  if (status == LLMDD_ENGINE_FINALIZED)
    return core_fail(status, "the engine was finalized after %llu of %llu bytes were %s",
                     (unsigned long long)p->copied, (unsigned long long)p->total, p->verb);
  if (status == LLMDD_WAIT_PROCESS_TIMEOUT)
    return core_fail(status, "the deadline passed after %llu of %llu bytes were %s",
                     (unsigned long long)p->copied, (unsigned long long)p->total, p->verb);
  if (status != LLMDD_SUCCESS) return status;
  if (p->peer_check != NULL && p->copied > 0) {
    status = p->peer_check(p->peer);
    if (status != LLMDD_SUCCESS) return status;
  }
  p->since_check = 0;
  return LLMDD_SUCCESS;
}

int32_t core_copy_chunked(struct core_progress *p, uint8_t *dst, const uint8_t *src,
                          uint64_t n) {
  while (n > 0) {
    if (p->since_check >= LLMDD_COPY_CHUNK_BYTES) {
      int32_t status = core_progress_check(p);
      if (status != LLMDD_SUCCESS) return status;
    }
    uint64_t step = LLMDD_COPY_CHUNK_BYTES - p->since_check;
    if (step > n) step = n;
    p->copy(dst, src, step);
    dst += step;
    src += step;
    n -= step;
    p->since_check += step;
    p->copied += step;
  }
  return LLMDD_SUCCESS;
}

/* ---- Copies shared with the copy helper ----
 *
 * One helper thread, started by the first shared copy. A copy offers its list
 * (a `struct share` on the caller's stack) in the one offer slot; the helper
 * takes it, setting `inside` under the slot's lock, and clears `inside` after
 * its last touch of the share. The caller, done with its own pieces, withdraws
 * the offer under the same lock and waits for `inside` to clear: once it
 * returns, the helper reads no byte of the share or of the ranges again. If the
 * slot holds another copy's offer, or no helper could be started, the caller
 * copies alone. */

/* Pieces are claimed a group at a time, at least this many bytes, so that
 * small blocks do not make the two threads fight over the counter's line. */
#define SHARE_CLAIM_BYTES ((uint64_t)256 << 10)

struct share {
  core_range_fn range;
  void *ctx;
  core_copy_fn copy;
  void (*copy_end)(void);
  uint64_t bytes;      /* of a range */
  uint64_t per_range;  /* pieces of a range */
  uint64_t pieces;     /* in all */
  uint64_t group;      /* pieces claimed at once */
  atomic_uint_fast64_t next; /* the first piece not yet claimed */
  atomic_bool stop;          /* the caller's check failed */
  atomic_int inside;         /* the helper may still touch the share */
  uint64_t helper_bytes;     /* written by the helper before it leaves */
};

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t helper_wake = PTHREAD_COND_INITIALIZER;
static struct share *offered;
static int helper_state; /* 0: not started, 1: running, -1: could not start */

/* Piece k of the share: where it goes and how long it is; false if none. */
static bool piece_of(const struct share *s, uint64_t k, uint8_t **dst, const uint8_t **src,
                     uint64_t *n) {
  uint64_t offset = (k % s->per_range) * LLMDD_COPY_CHUNK_BYTES;
  if (!s->range(s->ctx, k / s->per_range, dst, src)) return false;
  *dst += offset;
  *src += offset;
  *n = s->bytes - offset < LLMDD_COPY_CHUNK_BYTES ? s->bytes - offset : LLMDD_COPY_CHUNK_BYTES;
  return true;
}

/* Claims the next group: [*first, *end), or false when none is left. */
static bool claim(struct share *s, uint64_t *first, uint64_t *end) {
  *first = atomic_fetch_add(&s->next, s->group);
  if (*first >= s->pieces) return false;
  *end = *first + s->group < s->pieces ? *first + s->group : s->pieces;
  return true;
}

static void help(struct share *s) {
  uint64_t first, end, moved = 0;
  while (!atomic_load(&s->stop) && claim(s, &first, &end)) {
    for (uint64_t k = first; k < end && !atomic_load(&s->stop); k++) {
      uint8_t *dst;
      const uint8_t *src;
      uint64_t n;
      if (!piece_of(s, k, &dst, &src, &n)) continue;
      s->copy(dst, src, n);
      moved += n;
    }
  }
  if (s->copy_end != NULL) s->copy_end();
  s->helper_bytes = moved;
  atomic_store_explicit(&s->inside, 0, memory_order_release); /* the last touch */
}

static void *helper_main(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&helper_lock);
    while (offered == NULL) pthread_cond_wait(&helper_wake, &helper_lock);
    struct share *s = offered;
    offered = NULL;
    atomic_store(&s->inside, 1);
    pthread_mutex_unlock(&helper_lock);
    help(s);
  }
  return NULL;
}

/* A child of fork() has no helper thread (and perhaps a lock taken by a thread
 * it does not have): it starts afresh. */
static void helper_forget(void) {
  pthread_mutex_init(&helper_lock, NULL);
  pthread_cond_init(&helper_wake, NULL);
  offered = NULL;
  helper_state = 0;
}

static bool offer(struct share *s) {
  pthread_mutex_lock(&helper_lock);
  if (helper_state == 0) {
    static bool registered;
    if (!registered) registered = pthread_atfork(NULL, NULL, helper_forget) == 0;
    helper_state = core_thread_start(NULL, helper_main, NULL) == 0 ? 1 : -1;
  }
  bool taken = helper_state == 1 && offered == NULL;
  if (taken) {
    offered = s;
    pthread_cond_signal(&helper_wake);
  }
  pthread_mutex_unlock(&helper_lock);
  return taken;
}

static void withdraw(struct share *s) {
  pthread_mutex_lock(&helper_lock);
  if (offered == s) offered = NULL;
  pthread_mutex_unlock(&helper_lock);
  /* The helper is within one piece of leaving (at most a chunk's copy). */
  while (atomic_load_explicit(&s->inside, memory_order_acquire) != 0) sched_yield();
}

bool core_copy_shared(const struct core_progress *p, uint64_t total) {
  return p->shareable && total >= CORE_SHARE_MIN_BYTES;
}

int32_t core_copy_ranges(struct core_progress *p, core_range_fn range, void *ctx, uint64_t count,
                         uint64_t bytes) {
  uint8_t *dst;
  const uint8_t *src;
  if (bytes == 0 || !core_copy_shared(p, count * bytes)) {
    for (uint64_t i = 0; i < count; i++) {
      if (!range(ctx, i, &dst, &src)) continue;
      int32_t status = core_copy_chunked(p, dst, src, bytes);
      if (status != LLMDD_SUCCESS) return status;
    }
    return LLMDD_SUCCESS;
  }
  struct share s = {.range = range, .ctx = ctx, .copy = p->copy, .copy_end = p->copy_end,
                    .bytes = bytes,
                    .per_range = (bytes + LLMDD_COPY_CHUNK_BYTES - 1) / LLMDD_COPY_CHUNK_BYTES};
  s.pieces = s.per_range * count;
  uint64_t piece = bytes < LLMDD_COPY_CHUNK_BYTES ? bytes : LLMDD_COPY_CHUNK_BYTES;
  s.group = (SHARE_CLAIM_BYTES + piece - 1) / piece;
  atomic_init(&s.next, 0);
  atomic_init(&s.stop, false);
  atomic_init(&s.inside, 0);
  bool shared = offer(&s);
  int32_t status = LLMDD_SUCCESS;
  uint64_t first, end;
  while (status == LLMDD_SUCCESS && claim(&s, &first, &end)) {
    for (uint64_t k = first; k < end && status == LLMDD_SUCCESS; k++) {
      uint64_t n;
      if (piece_of(&s, k, &dst, &src, &n)) status = core_copy_chunked(p, dst, src, n);
    }
  }
  if (status != LLMDD_SUCCESS) atomic_store(&s.stop, true);
  if (shared) withdraw(&s);
  p->copied += s.helper_bytes; /* for the messages of later checks */
  return status;
}
