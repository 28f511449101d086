/* The generation page and the answers a DECODER keeps (fast.h). */
#define _GNU_SOURCE 1 /* F_GET_SEALS */
#include "fast.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "llmdd.h"
#include "shm.h"

/* ---- hashing (both ends) ---- */

static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= UINT64_C(0xbf58476d1ce4e5b9);
  x ^= x >> 27;
  x *= UINT64_C(0x94d049bb133111eb);
  x ^= x >> 31;
  return x;
}

uint32_t host_fast_slot_id(uint64_t id) { return (uint32_t)(mix(id ^ UINT64_C(0x6964)) % FAST_SLOTS); }

uint32_t host_fast_slot_key(uint64_t cluster, uint64_t req, uint64_t model) {
  uint64_t h = mix(cluster + UINT64_C(0x9e3779b97f4a7c15));
  h = mix(h ^ req);
  h = mix(h ^ model);
  return (uint32_t)(h % FAST_SLOTS);
}

uint32_t host_fast_slot(int32_t kind, const uint64_t k[3]) {
  if (kind == LLMDD_KEY_BY_ID) return host_fast_slot_id(k[1]);
  return host_fast_slot_key(k[0], kind == LLMDD_KEY_BLOCKS ? LLMDD_BLOCKS_REQ_ID : k[1], k[2]);
}

/* ---- PROMPT side ---- */

_Static_assert(sizeof(pthread_mutex_t) <= 8 * 8, "the live lock has 8 words of room");
_Static_assert(FAST_LIVE_LOCK + 8 <= FAST_FIRST_SLOT, "the live lock is before the slots");

static pthread_mutex_t *live_lock(struct fast_page *p) {
  return (pthread_mutex_t *)(void *)&p->words[FAST_LIVE_LOCK];
}

/* The lock's futex word: glibc's mutex starts with it (the kernel's robust
 * futex word); host_fast_live_hold checks that before it sets the mark. */
static const _Atomic uint32_t *live_futex(const _Atomic uint64_t *words) {
  return (const _Atomic uint32_t *)(const void *)&words[FAST_LIVE_LOCK];
}

int host_fast_page_create(struct fast_page *p) {
  uint64_t id;
  p->fd = p->ro_fd = -1;
  p->words = NULL;
  int fd = host_shm_create(FAST_PAGE_BYTES, &id, &p->ro_fd);
  if (fd < 0) return -1;
  void *base = mmap(NULL, (size_t)FAST_PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    close(fd);
    close(p->ro_fd);
    p->ro_fd = -1;
    errno = err;
    return -1;
  }
  p->fd = fd;
  p->words = base;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  p->live = pthread_mutex_init(live_lock(p), &attr) == 0;
  pthread_mutexattr_destroy(&attr);
  atomic_store_explicit(&p->words[0], FAST_MAGIC, memory_order_release);
  return 0;
}

void host_fast_page_destroy(struct fast_page *p) {
  if (p->words != NULL && p->live) pthread_mutex_destroy(live_lock(p));
  if (p->words != NULL) munmap((void *)p->words, (size_t)FAST_PAGE_BYTES);
  if (p->fd >= 0) close(p->fd);
  if (p->ro_fd >= 0) close(p->ro_fd);
  p->words = NULL;
  p->fd = p->ro_fd = -1;
}

struct fast_page *host_fast_page_new(void) {
  struct fast_page *p = malloc(sizeof *p);
  if (p != NULL && host_fast_page_create(p) != 0) {
    free(p);
    p = NULL;
  }
  return p;
}

void host_fast_page_free(struct fast_page *p) {
  if (p == NULL) return;
  host_fast_page_destroy(p);
  free(p);
}

void host_fast_live_hold(struct fast_page *p) {
  if (p == NULL || p->words == NULL || !p->live) return;
  int rc = pthread_mutex_lock(live_lock(p));
  if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(live_lock(p)); /* a thread of ours died holding it */
  if (rc != 0) return;
  uint32_t word = atomic_load_explicit(live_futex(p->words), memory_order_relaxed);
  if ((word & FUTEX_TID_MASK) == (uint32_t)syscall(SYS_gettid))
    atomic_store_explicit(&p->words[FAST_LIVE_WORD], FAST_LIVE_MARK, memory_order_release);
  p->held = true;
}

void host_fast_live_drop(struct fast_page *p) {
  if (p == NULL || !p->held) return;
  p->held = false;
  pthread_mutex_unlock(live_lock(p));
}

/* The bump comes before whatever made it (memory freed, then reused by the
 * program's writes): the release fence orders it before those stores. */
static void bump(struct fast_page *p, uint32_t word) {
  if (p == NULL || p->words == NULL) return;
  atomic_fetch_add_explicit(&p->words[word], 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
}

void host_fast_bump_id(struct fast_page *p, uint64_t id) {
  bump(p, FAST_FIRST_SLOT + host_fast_slot_id(id));
}

void host_fast_bump_key(struct fast_page *p, uint64_t cluster, uint64_t req, uint64_t model) {
  bump(p, FAST_FIRST_SLOT + host_fast_slot_key(cluster, req, model));
}

/* Every slot too: a reader over UCX checks its slot's word only. */
void host_fast_bump_all(struct fast_page *p) {
  if (p == NULL || p->words == NULL) return;
  for (uint32_t w = FAST_FIRST_SLOT; w < FAST_FIRST_SLOT + FAST_SLOTS; w++)
    atomic_fetch_add_explicit(&p->words[w], 1, memory_order_relaxed);
  bump(p, 1);
}

struct fast_stamp host_fast_page_stamp(const struct fast_page *p, int32_t kind, const uint64_t k[3]) {
  struct fast_stamp s = {.slot = host_fast_slot(kind, k)};
  if (p == NULL || p->words == NULL) return s;
  s.global_gen = atomic_load_explicit(&p->words[1], memory_order_acquire);
  s.slot_gen = atomic_load_explicit(&p->words[FAST_FIRST_SLOT + s.slot], memory_order_acquire);
  return s;
}

/* ---- DECODER side ---- */

struct fast_stamp host_fast_answer_stamp(int32_t kind, const uint64_t k[3],
                                         const struct msg_lookup_reply *r) {
  return (struct fast_stamp){
      .slot = host_fast_slot(kind, k), .slot_gen = r->slot_gen, .global_gen = r->global_gen};
}

int32_t host_fast_view_open(int fd, uint64_t cluster_id, struct fast_view **out) {
  unsigned long long cluster = (unsigned long long)cluster_id;
  struct stat st;
  int seals = fcntl(fd, F_GET_SEALS);
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || seals < 0 ||
      (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
    return core_fail(LLMDD_LINK_FAILED,
                     "the generation page of cluster %llu is not sealed memory: refused", cluster);
  if (st.st_size != (off_t)FAST_PAGE_BYTES)
    return core_fail(LLMDD_LINK_FAILED,
                     "the generation page of cluster %llu holds %lld bytes, not %llu", cluster,
                     (long long)st.st_size, (unsigned long long)FAST_PAGE_BYTES);
  struct fast_view *v = calloc(1, sizeof *v);
  if (v == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a link");
  void *base = mmap(NULL, (size_t)FAST_PAGE_BYTES, PROT_READ, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    free(v);
    return core_fail(LLMDD_LINK_FAILED, "cannot map the generation page of cluster %llu", cluster);
  }
  v->words = base;
  if (atomic_load_explicit(&v->words[0], memory_order_acquire) != FAST_MAGIC) {
    munmap(base, (size_t)FAST_PAGE_BYTES);
    free(v);
    return core_fail(LLMDD_LINK_FAILED, "the generation page of cluster %llu is not one", cluster);
  }
  pthread_mutex_init(&v->lock, NULL);
  *out = v;
  return LLMDD_SUCCESS;
}

int32_t host_fast_view_remote(struct fast_view **out) {
  struct fast_view *v = calloc(1, sizeof *v);
  if (v == NULL) return core_fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a link");
  pthread_mutex_init(&v->lock, NULL);
  *out = v;
  return LLMDD_SUCCESS;
}

bool host_fast_remote(const struct fast_view *v) { return v->words == NULL; }

bool host_fast_holds(const struct fast_stamp *s, uint64_t slot_gen) {
  return s->slot_gen == slot_gen;
}

void host_fast_view_close(struct fast_view *v) {
  if (v == NULL) return;
  if (v->words != NULL) munmap((void *)v->words, (size_t)FAST_PAGE_BYTES);
  pthread_mutex_destroy(&v->lock);
  free(v);
}

int host_fast_alive(const struct fast_view *v) {
  if (v->words == NULL) return -1;
  if (atomic_load_explicit(&v->words[FAST_LIVE_WORD], memory_order_acquire) != FAST_LIVE_MARK)
    return -1;
  uint32_t word = atomic_load_explicit(live_futex(v->words), memory_order_acquire);
  return (word & FUTEX_TID_MASK) != 0 && (word & FUTEX_OWNER_DIED) == 0;
}

bool host_fast_kind(int32_t kind) { return kind == LLMDD_KEY_BY_ID || kind == LLMDD_KEY_BLOCKS; }

bool host_fast_valid(const struct fast_view *v, const struct fast_stamp *s) {
  atomic_thread_fence(memory_order_acquire);
  uint32_t slot = s->slot % FAST_SLOTS;
  return atomic_load_explicit(&v->words[FAST_FIRST_SLOT + slot], memory_order_relaxed) ==
             s->slot_gen &&
         atomic_load_explicit(&v->words[1], memory_order_relaxed) == s->global_gen;
}

static bool same(const struct fast_entry *e, int32_t kind, const uint64_t k[3]) {
  return e->used && e->kind == kind && e->k[0] == k[0] && e->k[1] == k[1] && e->k[2] == k[2];
}

bool host_fast_find(struct fast_view *v, int32_t kind, const uint64_t k[3], struct fast_entry *out) {
  bool found = false;
  pthread_mutex_lock(&v->lock);
  for (uint32_t i = 0; i < FAST_ENTRIES && !found; i++) {
    if (!same(&v->entries[i], kind, k)) continue;
    if (v->words == NULL || host_fast_valid(v, &v->entries[i].stamp)) {
      *out = v->entries[i];
      found = true;
    } else {
      v->entries[i].used = false; /* stale for good: counters only grow */
    }
    break;
  }
  pthread_mutex_unlock(&v->lock);
  return found;
}

void host_fast_keep(struct fast_view *v, int32_t kind, const uint64_t k[3],
                    const struct fast_stamp *s, const struct msg_lookup_reply *reply) {
  if (!host_fast_kind(kind) || (v->words != NULL && !host_fast_valid(v, s))) return;
  pthread_mutex_lock(&v->lock);
  struct fast_entry *slot = NULL;
  for (uint32_t i = 0; i < FAST_ENTRIES && slot == NULL; i++)
    if (same(&v->entries[i], kind, k)) slot = &v->entries[i];
  for (uint32_t i = 0; i < FAST_ENTRIES && slot == NULL; i++)
    if (!v->entries[i].used) slot = &v->entries[i];
  if (slot == NULL) {
    slot = &v->entries[v->next];
    v->next = (v->next + 1) % FAST_ENTRIES;
  }
  *slot = (struct fast_entry){.used = true, .kind = kind, .k = {k[0], k[1], k[2]},
                              .stamp = *s, .reply = *reply};
  slot->reply.pin = 0; /* released already: never sent again */
  pthread_mutex_unlock(&v->lock);
}

void host_fast_forget(struct fast_view *v, int32_t kind, const uint64_t k[3]) {
  pthread_mutex_lock(&v->lock);
  for (uint32_t i = 0; i < FAST_ENTRIES; i++)
    if (same(&v->entries[i], kind, k)) v->entries[i].used = false;
  pthread_mutex_unlock(&v->lock);
}
