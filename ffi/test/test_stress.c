/* Many threads on one engine and on two: allocations, reads (inline, with a job,
 * in the background), copies, keys and frees, with every byte read checked
 * against the pattern of the cache it came from. */
#define _DEFAULT_SOURCE 1
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define OWNER_ITERATIONS 600
#define MAX_PUBLISHED 256
#define MAX_OWNED 8

/* Caches whose pattern is written and final, for reader threads to check. */
struct published {
  uint64_t id;
  int32_t tensors;
  uint64_t bytes;
};

struct arena {
  uint64_t engine;
  int32_t devices;
  pthread_mutex_t lock;
  struct published caches[MAX_PUBLISHED];
  int count;
  atomic_bool stop;
  atomic_long reads_checked;
};

static uint64_t next_random(uint64_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

static void publish(struct arena *a, struct published p) {
  pthread_mutex_lock(&a->lock);
  if (a->count < MAX_PUBLISHED) a->caches[a->count++] = p;
  pthread_mutex_unlock(&a->lock);
}

static void unpublish(struct arena *a, uint64_t id) {
  pthread_mutex_lock(&a->lock);
  for (int i = 0; i < a->count; i++)
    if (a->caches[i].id == id) a->caches[i] = a->caches[--a->count];
  pthread_mutex_unlock(&a->lock);
}

/* ---- background completions ---- */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
#define MAX_PENDING 64
static struct {
  uint64_t job;
  int32_t status;
  int calls;
} pending[MAX_PENDING];

static void on_done(uint64_t job, int32_t status) {
  pthread_mutex_lock(&done_lock);
  for (int i = 0; i < MAX_PENDING; i++) {
    if (pending[i].job != job) continue;
    pending[i].status = status;
    pending[i].calls++;
  }
  pthread_cond_broadcast(&done_cond);
  pthread_mutex_unlock(&done_lock);
}

static int watch(uint64_t job) {
  pthread_mutex_lock(&done_lock);
  int slot = -1;
  for (int i = 0; i < MAX_PENDING && slot < 0; i++)
    if (pending[i].job == 0) slot = i;
  if (slot >= 0) pending[slot].job = job, pending[slot].calls = 0;
  pthread_mutex_unlock(&done_lock);
  return slot;
}

/* Waits for the one completion of a watched job and frees its slot. */
static int32_t wait_watched(int slot) {
  pthread_mutex_lock(&done_lock);
  while (pending[slot].calls == 0) pthread_cond_wait(&done_cond, &done_lock);
  int32_t status = pending[slot].status;
  EXPECT(pending[slot].calls == 1);
  pending[slot].job = 0;
  pthread_mutex_unlock(&done_lock);
  return status;
}

/* ---- the threads ---- */

/* Reads one tensor one of three ways and checks it. */
static int32_t read_checked(uint64_t engine, uint64_t id, int32_t tensor, int32_t device,
                            uint64_t bytes, int how) {
  uint8_t *out = malloc(bytes);
  uint64_t job = 0;
  int slot = -1;
  if (how > 0) EXPECT_STATUS(llmdd_job_create(-1, how == 2 ? on_done : NULL, &job), LLMDD_SUCCESS);
  if (how == 2) EXPECT((slot = watch(job)) >= 0);
  int32_t status = llmdd_cache_read(engine, id, tensor, device, out, bytes, job);
  if (how == 2 && status == LLMDD_SUCCESS) status = wait_watched(slot);
  else if (how == 2) {
    pthread_mutex_lock(&done_lock);
    EXPECT(pending[slot].calls == 0); /* rejected: no callback */
    pending[slot].job = 0;
    pthread_mutex_unlock(&done_lock);
  }
  if (status == LLMDD_SUCCESS) {
    uint64_t at = find_mismatch(out, bytes, id, device, tensor);
    if (!EXPECT(at == UINT64_MAX))
      fprintf(stderr, "    cache %llu device %d tensor %d: byte %llu of %llu differs\n",
              (unsigned long long)id, device, tensor, (unsigned long long)at,
              (unsigned long long)bytes);
  }
  if (job) EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  free(out);
  return status;
}

struct owner {
  struct arena *arena;
  uint64_t seed;
  int index;
};

struct owned {
  struct published p;
  bool keyed;
  uint64_t key[3];
};

static const uint64_t sizes[] = {1,     63,    64,    65,    100,   1000,  4095,
                                 4096,  5000,  16384, 16385, 40000, 70000, 1100000};

static void owner_allocate(struct owner *o, struct owned *mine, int *count, uint64_t *serial) {
  struct arena *a = o->arena;
  uint64_t r = next_random(&o->seed);
  struct owned c = {.p = {.tensors = (int32_t)(r % 4) + 1, .bytes = sizes[(r >> 8) % 14]}};
  if (c.p.bytes > 1000000) c.p.tensors = 1;
  c.keyed = (r >> 16) % 3 == 0;
  c.key[0] = 1000 + (uint64_t)o->index;
  c.key[1] = (*serial)++;
  c.key[2] = 0;
  uint64_t addrs[2 * 4];
  int32_t status = llmdd_cache_allocate(a->engine, c.p.tensors, c.p.bytes, 1, 0, 1,
                                        c.keyed ? c.key : NULL, c.keyed, &c.p.id, addrs,
                                        a->devices * c.p.tensors);
  if (status == LLMDD_DEVICE_OUT_OF_MEMORY) return;
  if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) return;
  for (int32_t d = 0; d < a->devices; d++)
    for (int32_t t = 0; t < c.p.tensors; t++)
      fill_pattern((uint8_t *)(uintptr_t)addrs[d * c.p.tensors + t], c.p.bytes, c.p.id, d, t);
  mine[(*count)++] = c;
  publish(a, c.p);
}

static void owner_free(struct owner *o, struct owned *mine, int *count, int i) {
  struct arena *a = o->arena;
  struct owned c = mine[i];
  mine[i] = mine[--*count];
  unpublish(a, c.p.id);
  bool key_first = c.keyed && next_random(&o->seed) % 2;
  if (key_first) EXPECT_STATUS(llmdd_cache_key_remove(a->engine, c.key[0], c.key[1], c.key[2]), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(a->engine, c.p.id), LLMDD_SUCCESS);
  if (c.keyed && !key_first)
    EXPECT_STATUS(llmdd_cache_key_remove(a->engine, c.key[0], c.key[1], c.key[2]), LLMDD_SUCCESS);
}

/* Copies one of the owner's caches into a fresh private one and checks it. */
static void owner_copy(struct owner *o, const struct owned *c) {
  struct arena *a = o->arena;
  uint64_t scratch, addrs[2 * 4];
  int32_t status = llmdd_cache_allocate(a->engine, c->p.tensors, c->p.bytes, 1, 0, 1, NULL, 0, &scratch,
                                        addrs, a->devices * c->p.tensors);
  if (status == LLMDD_DEVICE_OUT_OF_MEMORY) return;
  if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) return;
  EXPECT_STATUS(llmdd_cache_copy(a->engine, scratch, c->p.id, 0, 0, c->p.bytes, 0), LLMDD_SUCCESS);
  for (int32_t d = 0; d < a->devices; d++)
    for (int32_t t = 0; t < c->p.tensors; t++)
      EXPECT(find_mismatch((uint8_t *)(uintptr_t)addrs[d * c->p.tensors + t], c->p.bytes,
                           c->p.id, d, t) == UINT64_MAX);
  EXPECT_STATUS(llmdd_cache_deallocate(a->engine, scratch), LLMDD_SUCCESS);
}

static void *owner_main(void *arg) {
  struct owner *o = arg;
  struct arena *a = o->arena;
  struct owned mine[MAX_OWNED];
  int count = 0;
  uint64_t serial = 0;
  for (int iteration = 0; iteration < OWNER_ITERATIONS && !harness_failed(); iteration++) {
    uint64_t r = next_random(&o->seed) % 10;
    if (count < 2 || (r < 3 && count < MAX_OWNED)) {
      owner_allocate(o, mine, &count, &serial);
    } else if (r < 7) {
      const struct owned *c = &mine[next_random(&o->seed) % (uint64_t)count];
      uint64_t pick = next_random(&o->seed);
      EXPECT_STATUS(read_checked(a->engine, c->p.id, (int32_t)(pick % (uint64_t)c->p.tensors),
                                 (int32_t)((pick >> 8) % (uint64_t)a->devices), c->p.bytes,
                                 (int)((pick >> 16) % 3)),
                    LLMDD_SUCCESS);
    } else if (r < 8) {
      owner_copy(o, &mine[next_random(&o->seed) % (uint64_t)count]);
    } else {
      owner_free(o, mine, &count, (int)(next_random(&o->seed) % (uint64_t)count));
    }
  }
  while (count > 0) owner_free(o, mine, &count, 0);
  return NULL;
}

/* Reads other threads' caches while they may be freed: a read either succeeds
 * with the right bytes or finds the cache gone. */
static void *reader_main(void *arg) {
  struct arena *a = arg;
  uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)a;
  while (!atomic_load(&a->stop) && !harness_failed()) {
    pthread_mutex_lock(&a->lock);
    struct published p = {0};
    if (a->count > 0) p = a->caches[next_random(&seed) % (uint64_t)a->count];
    pthread_mutex_unlock(&a->lock);
    if (p.id == 0) continue;
    uint64_t pick = next_random(&seed);
    int32_t status = read_checked(a->engine, p.id, (int32_t)(pick % (uint64_t)p.tensors),
                                  (int32_t)((pick >> 8) % (uint64_t)a->devices), p.bytes,
                                  (int)((pick >> 16) % 3));
    EXPECT(status == LLMDD_SUCCESS || status == LLMDD_KV_CACHE_NOT_EXIST);
    if (status == LLMDD_SUCCESS) atomic_fetch_add(&a->reads_checked, 1);
  }
  return NULL;
}

static void run_arenas(struct arena *arenas, int num_arenas, int owners_per_arena) {
  pthread_t threads[16];
  struct owner owners[16];
  int n = 0;
  for (int i = 0; i < num_arenas; i++) {
    for (int k = 0; k < owners_per_arena; k++, n++) {
      owners[n] = (struct owner){&arenas[i], 0x1234567 + (uint64_t)n * 7919, n};
      pthread_create(&threads[n], NULL, owner_main, &owners[n]);
    }
  }
  pthread_t readers[4];
  for (int i = 0; i < num_arenas; i++) pthread_create(&readers[i], NULL, reader_main, &arenas[i]);
  for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < num_arenas; i++) {
    atomic_store(&arenas[i].stop, true);
    pthread_join(readers[i], NULL);
  }
}

static void arena_open(struct arena *a, const char *options, int32_t devices) {
  memset(a, 0, sizeof *a);
  a->engine = open_engine(options);
  a->devices = devices;
  pthread_mutex_init(&a->lock, NULL);
}

static void arena_close(struct arena *a) {
  for (int32_t d = 0; d < a->devices; d++) EXPECT(pool_used(a->engine, d) == 0);
  printf("    engine 0x%llx: %ld reads by the reader thread checked\n",
         (unsigned long long)a->engine, atomic_load(&a->reads_checked));
  EXPECT_STATUS(llmdd_engine_finalize(a->engine), LLMDD_SUCCESS);
  pthread_mutex_destroy(&a->lock);
}

TEST(concurrent_operations_on_one_engine_keep_data_intact) {
  struct arena a;
  arena_open(&a, "ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=67108864", 2);
  CHECK(a.engine != 0);
  run_arenas(&a, 1, 3);
  arena_close(&a);
}

TEST(concurrent_operations_on_two_engines_keep_data_intact) {
  struct arena a[2];
  arena_open(&a[0], "ge.flowGraphMemMaxSize=67108864", 1);
  arena_open(&a[1], "ge.exec.deviceId=4;5\nge.flowGraphMemMaxSize=67108864", 2);
  CHECK(a[0].engine != 0 && a[1].engine != 0);
  run_arenas(a, 2, 2);
  arena_close(&a[0]);
  arena_close(&a[1]);
}

/* Threads keep calling while the engine is finalized under them: each call either
 * works or reports the engine finalized (or the cache gone); nothing crashes. */
struct caller {
  uint64_t engine;
  uint64_t seed;
  atomic_bool *stop;
};

static bool acceptable(int32_t status) {
  return status == LLMDD_SUCCESS || status == LLMDD_ENGINE_FINALIZED ||
         status == LLMDD_KV_CACHE_NOT_EXIST || status == LLMDD_DEVICE_OUT_OF_MEMORY;
}

static void *caller_main(void *arg) {
  struct caller *c = arg;
  uint8_t *out = malloc(2 * MiB);
  while (!atomic_load(c->stop)) {
    uint64_t bytes = next_random(&c->seed) % 2 ? 64 : 2 * MiB, id, id2, addrs[2];
    int32_t status = llmdd_cache_allocate(c->engine, 1, bytes, 1, 0, 1, NULL, 0, &id, addrs, 2);
    EXPECT(acceptable(status));
    if (status == LLMDD_ENGINE_FINALIZED) break;
    if (status != LLMDD_SUCCESS) continue;
    EXPECT(acceptable(llmdd_cache_read(c->engine, id, 0, 1, out, bytes, 0)));
    status = llmdd_cache_allocate(c->engine, 1, bytes, 1, 0, 1, NULL, 0, &id2, addrs, 2);
    EXPECT(acceptable(status));
    if (status == LLMDD_SUCCESS) {
      EXPECT(acceptable(llmdd_cache_copy(c->engine, id2, id, 0, 0, bytes, 0)));
      EXPECT(acceptable(llmdd_cache_deallocate(c->engine, id2)));
    }
    EXPECT(acceptable(llmdd_cache_deallocate(c->engine, id)));
  }
  free(out);
  return NULL;
}

TEST(finalize_under_concurrent_calls) {
  for (int round = 0; round < 5; round++) {
    uint64_t engine = open_engine("ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=16777216");
    CHECK(engine != 0);
    atomic_bool stop = false;
    struct caller callers[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
      callers[i] = (struct caller){engine, 77 + (uint64_t)i * 13 + (uint64_t)round, &stop};
      pthread_create(&threads[i], NULL, caller_main, &callers[i]);
    }
    sleep_ms(5 + round * 3);
    EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
  }
}
