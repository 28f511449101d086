/* Repeat pulls (host/fast.h): the generation page a DECODER is given is checked
 * before it is mapped, it is only ever compared (never indexed by what it
 * holds), kept answers go stale with the counters, and a pull repeated after
 * the PROMPT moved its caches sees the new cache or the proper error. */
#define _GNU_SOURCE 1 /* memfd_create, F_ADD_SEALS */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fast.h"
#include "harness.h"
#include "llmdd.h"
#include "util.h"

/* A memfd of `bytes`, sealed against size changes when `sealed`, starting with
 * `magic`. */
static int page_like(uint64_t bytes, bool sealed, uint64_t magic) {
  int fd = memfd_create("test-page", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  if (ftruncate(fd, (off_t)bytes) != 0 || pwrite(fd, &magic, sizeof magic, 0) != sizeof magic ||
      (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(fast_page_is_checked_before_it_is_mapped) {
  struct fast_view *v = NULL;
  int good = page_like(FAST_PAGE_BYTES, true, FAST_MAGIC);
  CHECK(good >= 0);
  EXPECT_STATUS(host_fast_view_open(good, 1, &v), LLMDD_SUCCESS);
  host_fast_view_close(v);
  close(good);

  /* Unsealed: its size could change under the DECODER (SIGBUS). */
  int unsealed = page_like(FAST_PAGE_BYTES, false, FAST_MAGIC);
  CHECK(unsealed >= 0);
  v = NULL;
  EXPECT_STATUS(host_fast_view_open(unsealed, 1, &v), LLMDD_LINK_FAILED);
  EXPECT(v == NULL);
  close(unsealed);
  /* Smaller or larger than a page. */
  int small = page_like(FAST_PAGE_BYTES - 8, true, FAST_MAGIC);
  int large = page_like(2 * FAST_PAGE_BYTES, true, FAST_MAGIC);
  CHECK(small >= 0 && large >= 0);
  EXPECT_STATUS(host_fast_view_open(small, 1, &v), LLMDD_LINK_FAILED);
  EXPECT_STATUS(host_fast_view_open(large, 1, &v), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "bytes") != NULL);
  close(small);
  close(large);
  /* Not a page at all. */
  int other = page_like(FAST_PAGE_BYTES, true, 0x1234);
  CHECK(other >= 0);
  EXPECT_STATUS(host_fast_view_open(other, 1, &v), LLMDD_LINK_FAILED);
  close(other);
  int pipes[2];
  CHECK(pipe(pipes) == 0);
  EXPECT_STATUS(host_fast_view_open(pipes[0], 1, &v), LLMDD_LINK_FAILED);
  close(pipes[0]);
  close(pipes[1]);
}

TEST(fast_slots_stay_in_the_page_whatever_the_key) {
  uint64_t samples[] = {0, 1, 2, UINT64_MAX, UINT64_MAX - 1, (uint64_t)1 << 63, 0x5555555555555555u};
  for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
    EXPECT(host_fast_slot_id(samples[i]) < FAST_SLOTS);
    for (size_t j = 0; j < sizeof samples / sizeof samples[0]; j++)
      EXPECT(host_fast_slot_key(samples[i], LLMDD_BLOCKS_REQ_ID, samples[j]) < FAST_SLOTS);
  }
  for (uint64_t id = 0; id < 100000; id++) EXPECT(host_fast_slot_id(id * 0x9e3779b97f4a7c15u) < FAST_SLOTS);
}

/* A page of the PROMPT's side and a DECODER's view of it, in one process. */
struct pair {
  struct fast_page page;
  struct fast_view *view;
};

static bool pair_open(struct pair *p) {
  p->view = NULL;
  if (host_fast_page_create(&p->page) != 0) return false;
  return host_fast_view_open(p->page.ro_fd, 1, &p->view) == LLMDD_SUCCESS;
}

static void pair_close(struct pair *p) {
  host_fast_view_close(p->view);
  host_fast_page_destroy(&p->page);
}

static struct msg_lookup_reply answer(uint64_t offset) {
  struct msg_lookup_reply r = {.status = LLMDD_SUCCESS, .num_tensors = 1, .pin = 77,
                               .tensor_bytes = 4096, .batch_size = 1, .stride = 4096,
                               .devices = 1};
  r.offsets[0] = offset;
  return r;
}

TEST(fast_kept_answers_go_stale_with_their_counters) {
  struct pair p;
  CHECK(pair_open(&p));
  uint64_t by_id[3] = {1, 42, 0}, blocks[3] = {1, 0, 5}, other[3] = {1, 43, 0};
  struct fast_entry e;
  /* Kept with a stamp read before: found, pin dropped. */
  struct fast_stamp s = host_fast_page_stamp(&p.page, LLMDD_KEY_BY_ID, by_id);
  struct msg_lookup_reply r = answer(4096);
  host_fast_keep(p.view, LLMDD_KEY_BY_ID, by_id, &s, &r);
  CHECK(host_fast_find(p.view, LLMDD_KEY_BY_ID, by_id, &e));
  EXPECT(e.reply.offsets[0] == 4096 && e.reply.pin == 0);
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BY_ID, other, &e));
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BLOCKS, by_id, &e)); /* another kind */
  /* Another id's release leaves it (unless the two share a slot). */
  if (host_fast_slot_id(43) != host_fast_slot_id(42)) {
    host_fast_bump_id(&p.page, 43);
    EXPECT(host_fast_find(p.view, LLMDD_KEY_BY_ID, by_id, &e));
  }
  /* Its own id's release: stale, and forgotten. */
  host_fast_bump_id(&p.page, 42);
  EXPECT(!host_fast_valid(p.view, &s));
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BY_ID, by_id, &e));
  /* A stamp that went stale before the keep is not kept. */
  host_fast_keep(p.view, LLMDD_KEY_BY_ID, by_id, &s, &r);
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BY_ID, by_id, &e));

  /* A BlocksCacheKey is stamped by the key it is held under. */
  struct fast_stamp sb = host_fast_page_stamp(&p.page, LLMDD_KEY_BLOCKS, blocks);
  host_fast_keep(p.view, LLMDD_KEY_BLOCKS, blocks, &sb, &r);
  EXPECT(host_fast_find(p.view, LLMDD_KEY_BLOCKS, blocks, &e));
  host_fast_bump_key(&p.page, 1, LLMDD_BLOCKS_REQ_ID, 5);
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BLOCKS, blocks, &e));
  /* Finalize makes every answer stale. */
  sb = host_fast_page_stamp(&p.page, LLMDD_KEY_BLOCKS, blocks);
  host_fast_keep(p.view, LLMDD_KEY_BLOCKS, blocks, &sb, &r);
  EXPECT(host_fast_find(p.view, LLMDD_KEY_BLOCKS, blocks, &e));
  host_fast_bump_all(&p.page);
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BLOCKS, blocks, &e));
  /* A stamp whose slot was damaged is still only compared within the page. */
  struct fast_stamp bad = {.slot = UINT32_MAX, .slot_gen = 0, .global_gen = 0};
  (void)host_fast_valid(p.view, &bad);
  /* More keys than entries: the oldest go, nothing overflows. */
  for (uint64_t id = 100; id < 100 + 3 * FAST_ENTRIES; id++) {
    uint64_t k[3] = {1, id, 0};
    struct fast_stamp si = host_fast_page_stamp(&p.page, LLMDD_KEY_BY_ID, k);
    host_fast_keep(p.view, LLMDD_KEY_BY_ID, k, &si, &r);
  }
  uint64_t last[3] = {1, 100 + 3 * FAST_ENTRIES - 1, 0}, first[3] = {1, 100, 0};
  EXPECT(host_fast_find(p.view, LLMDD_KEY_BY_ID, last, &e));
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_BY_ID, first, &e));
  /* CacheKey pulls consume their key: never kept. */
  struct fast_stamp sk = host_fast_page_stamp(&p.page, LLMDD_KEY_CACHE_KEY, by_id);
  host_fast_keep(p.view, LLMDD_KEY_CACHE_KEY, by_id, &sk, &r);
  EXPECT(!host_fast_find(p.view, LLMDD_KEY_CACHE_KEY, by_id, &e));
  pair_close(&p);
}

/* ---- end to end: a PROMPT and a DECODER engine in this process ---- */

#define BLOCK 4096u
#define NBLOCKS 4u
#define TENSORS 2

static int32_t pull_all(uint64_t decoder, uint64_t dst, int32_t kind, uint64_t cluster,
                        uint64_t k1, uint64_t k2) {
  uint64_t pairs[2 * NBLOCKS];
  for (uint32_t i = 0; i < NBLOCKS; i++) pairs[2 * i] = pairs[2 * i + 1] = i;
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(5000, NULL, &job), LLMDD_SUCCESS);
  int32_t status = llmdd_cache_pull_blocks(decoder, dst, kind, cluster, k1, k2, pairs,
                                           (kind & ~LLMDD_KEY_KEPT_ONLY) == LLMDD_KEY_BLOCKS
                                               ? (int32_t)NBLOCKS
                                               : 1,
                                           0, 0,
                                           0, job);
  llmdd_job_release(job);
  return status;
}

/* A blocks cache of the PROMPT named (cluster, BLOCKS_REQ_ID, model), or a plain
 * one (model < 0), filled with the pattern of its id. */
static uint64_t prompt_cache_at(uint64_t prompt, uint64_t cluster, int64_t model,
                                uint64_t addrs[TENSORS]) {
  uint64_t key[3] = {cluster, LLMDD_BLOCKS_REQ_ID, (uint64_t)model}, id = 0;
  int32_t status = llmdd_cache_allocate(prompt, TENSORS, BLOCK * NBLOCKS, NBLOCKS, 3,
                                        LLMDD_PLACEMENT_DEVICE, key, model < 0 ? 0 : 1, &id,
                                        addrs, TENSORS);
  if (status != LLMDD_SUCCESS) return 0;
  for (int32_t t = 0; t < TENSORS; t++)
    fill_pattern((uint8_t *)(uintptr_t)addrs[t], BLOCK * NBLOCKS, id, 0, t);
  return id;
}

static uint64_t prompt_cache(uint64_t prompt, uint64_t cluster, int64_t model) {
  uint64_t addrs[TENSORS];
  return prompt_cache_at(prompt, cluster, model, addrs);
}

static bool holds(const uint64_t *addrs, uint64_t id, uint64_t bytes) {
  for (int32_t t = 0; t < TENSORS; t++)
    if (find_mismatch((const uint8_t *)(uintptr_t)addrs[t], bytes, id, 0, t) != UINT64_MAX)
      return false;
  return true;
}

/* The DECODER's options choose the transport (test_ucx.c runs this over UCX,
 * where LLMDD_KEY_KEPT_ONLY pulls nothing: a repeat pull waits for its reads). */
void fast_repeat_pulls_body(const char *decoder_options, bool over_ucx) {
  const int32_t kept_ok = over_ucx ? LLMDD_FEATURE_NOT_ENABLED : LLMDD_SUCCESS;
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=1048576",
                                   &port);
  CHECK(prompt != 0);
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), decoder_options);
  CHECK(decoder != 0);
  CHECK_STATUS(link_port(decoder, cluster, port, 3000), LLMDD_SUCCESS);
  uint64_t dst = 0, dst_addrs[TENSORS];
  CHECK_STATUS(llmdd_cache_allocate(decoder, TENSORS, BLOCK * NBLOCKS, NBLOCKS, 3,
                                    LLMDD_PLACEMENT_DEVICE, NULL, 0, &dst, dst_addrs, TENSORS),
               LLMDD_SUCCESS);
  uint64_t a_addrs[TENSORS];
  uint64_t a = prompt_cache_at(prompt, cluster, 5, a_addrs);
  CHECK(a != 0);
  /* Kept only: nothing kept before the first pull; CacheKeys are never kept. */
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS | LLMDD_KEY_KEPT_ONLY, cluster, 0, 5),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_CACHE_KEY | LLMDD_KEY_KEPT_ONLY, cluster, 1, 5),
                LLMDD_PARAM_INVALID);
  for (int i = 0; i < 3; i++) {
    memset((void *)(uintptr_t)dst_addrs[0], 0, BLOCK * NBLOCKS);
    memset((void *)(uintptr_t)dst_addrs[1], 0, BLOCK * NBLOCKS);
    EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_SUCCESS);
    EXPECT(holds(dst_addrs, a, BLOCK * NBLOCKS));
  }
  memset((void *)(uintptr_t)dst_addrs[0], 0, BLOCK * NBLOCKS);
  memset((void *)(uintptr_t)dst_addrs[1], 0, BLOCK * NBLOCKS);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS | LLMDD_KEY_KEPT_ONLY, cluster, 0, 5),
                kept_ok);
  if (over_ucx) { /* nothing copied: the same pull without the flag */
    EXPECT(!holds(dst_addrs, a, BLOCK * NBLOCKS));
    EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_SUCCESS);
  }
  EXPECT(holds(dst_addrs, a, BLOCK * NBLOCKS));
  /* The PROMPT writes the cache: the repeat pull reads it as it is now. */
  for (int32_t t = 0; t < TENSORS; t++)
    fill_pattern((uint8_t *)(uintptr_t)a_addrs[t], BLOCK * NBLOCKS, a + 1000, 0, t);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS | LLMDD_KEY_KEPT_ONLY, cluster, 0, 5),
                kept_ok);
  if (over_ucx) {
    EXPECT(!holds(dst_addrs, a + 1000, BLOCK * NBLOCKS));
    EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_SUCCESS);
  }
  EXPECT(holds(dst_addrs, a + 1000, BLOCK * NBLOCKS));
  /* Deallocated as deallocateBlocksCache does (key, then id), its memory taken
   * by a cache with other bytes, the key on a new cache elsewhere: the repeat
   * pull finds the new cache. */
  CHECK_STATUS(llmdd_cache_key_remove(prompt, cluster, LLMDD_BLOCKS_REQ_ID, 5), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_deallocate(prompt, a), LLMDD_SUCCESS);
  /* Other bytes where it was (as a reuse would write): a pull that fails
   * leaves the destination as it was, though an answer about that memory was
   * kept (over UCX its bytes are staged until the page says they hold). */
  for (int32_t t = 0; t < TENSORS; t++)
    fill_pattern((uint8_t *)(uintptr_t)a_addrs[t], BLOCK * NBLOCKS, a + 2000, 0, t);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS | LLMDD_KEY_KEPT_ONLY, cluster, 0, 5),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(holds(dst_addrs, a + 1000, BLOCK * NBLOCKS));
  uint64_t filler = prompt_cache(prompt, cluster, -1);
  uint64_t b = prompt_cache(prompt, cluster, 5);
  CHECK(filler != 0 && b != 0);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_SUCCESS);
  EXPECT(holds(dst_addrs, b, BLOCK * NBLOCKS));
  /* By id: the filler's row 0, then freed and its memory reused. */
  for (int i = 0; i < 2; i++) {
    EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BY_ID, cluster, filler, 0), LLMDD_SUCCESS);
    EXPECT(holds(dst_addrs, filler, BLOCK));
  }
  CHECK_STATUS(llmdd_cache_deallocate(prompt, filler), LLMDD_SUCCESS);
  uint64_t reuse = prompt_cache(prompt, cluster, -1);
  CHECK(reuse != 0);
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BY_ID, cluster, filler, 0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
  /* Finalized: the answers kept are stale, and the link is gone. */
  EXPECT_STATUS(pull_all(decoder, dst, LLMDD_KEY_BLOCKS, cluster, 0, 5), LLMDD_LINK_FAILED);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
}

TEST(fast_repeat_pulls_follow_the_prompts_caches) {
  fast_repeat_pulls_body("ge.flowGraphMemMaxSize=1048576", false);
}

/* ---- resident pools (pool.h) ---- */

/* Whether every page of [p, p + n) is resident. */
static bool resident(const void *p, uint64_t n) {
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t pages = (n + page - 1) / page;
  unsigned char *v = malloc(pages);
  if (v == NULL) return false;
  bool all = mincore((void *)p, (size_t)n, v) == 0;
  for (uint64_t i = 0; all && i < pages; i++) all = (v[i] & 1) != 0;
  free(v);
  return all;
}

TEST(pools_keep_freed_memory_resident) {
  const uint64_t bytes = (uint64_t)4 << 20; /* above the old 1 MiB hand-back threshold */
  for (int32_t role = LLMDD_ROLE_PROMPT; role <= LLMDD_ROLE_DECODER; role++) {
    uint64_t e = open_role(role, unique_cluster_id(), "ge.flowGraphMemMaxSize=8388608");
    CHECK(e != 0);
    uint64_t id = 0, addr = 0, again = 0, addr2 = 0;
    CHECK_STATUS(llmdd_cache_allocate(e, 1, bytes, 1, 1, LLMDD_PLACEMENT_DEVICE, NULL, 0, &id,
                                      &addr, 1),
                 LLMDD_SUCCESS);
    memset((void *)(uintptr_t)addr, 0x5a, bytes);
    CHECK_STATUS(llmdd_cache_deallocate(e, id), LLMDD_SUCCESS);
    /* Freed, the pages stay (before: MADV_REMOVE / MADV_DONTNEED gave them back). */
    EXPECT(resident((void *)(uintptr_t)addr, bytes));
    CHECK_STATUS(llmdd_cache_allocate(e, 1, bytes, 1, 1, LLMDD_PLACEMENT_DEVICE, NULL, 0, &again,
                                      &addr2, 1),
                 LLMDD_SUCCESS);
    EXPECT(addr2 == addr && resident((void *)(uintptr_t)addr2, bytes));
    EXPECT_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  }
}

TEST(reserve_pools_takes_the_pools_at_init) {
  uint64_t e = 0;
  const char *bad = "llmdd.reservePools=yes";
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)bad,
                                  (int32_t)strlen(bad), &e),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "llmdd.reservePools") != NULL);
  for (int32_t role = LLMDD_ROLE_PROMPT; role <= LLMDD_ROLE_DECODER; role++) {
    e = open_role(role, unique_cluster_id(), "ge.flowGraphMemMaxSize=4194304\nllmdd.reservePools=1");
    CHECK(e != 0);
    uint64_t id = 0, addr = 0;
    CHECK_STATUS(llmdd_cache_allocate(e, 1, 1 << 20, 1, 1, LLMDD_PLACEMENT_DEVICE, NULL, 0, &id,
                                      &addr, 1),
                 LLMDD_SUCCESS);
    /* Resident before anything was written to it. */
    EXPECT(resident((void *)(uintptr_t)addr, 1 << 20));
    EXPECT_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  }
  /* Twice what the machine has left: refused at init (the address space alone
   * would be granted), not left to fail at a later write. */
  unsigned long long avail = 0, kib;
  char line[128];
  FILE *f = fopen("/proc/meminfo", "re");
  CHECK(f != NULL);
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1 || sscanf(line, "SwapFree: %llu kB", &kib) == 1)
      avail += kib;
  fclose(f);
  char huge[128];
  snprintf(huge, sizeof huge, "ge.flowGraphMemMaxSize=%llu\nllmdd.reservePools=1", avail * 2048);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)huge,
                                  (int32_t)strlen(huge), &e),
                LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(strstr(last_error(), "llmdd.reservePools") != NULL);
}

/* ---- the live lock (fast.h) ---- */

struct holder {
  struct fast_page *page;
  bool drop; /* unlock before the thread ends (a server that stops) */
};

static void *hold_main(void *arg) {
  struct holder *h = arg;
  host_fast_live_hold(h->page);
  if (h->drop) host_fast_live_drop(h->page);
  return NULL; /* without drop: the thread ends holding it, as in a killed process */
}

static void hold_in_thread(struct fast_page *page, bool drop) {
  struct holder h = {page, drop};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, hold_main, &h) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

TEST(fast_live_lock_says_whether_the_server_is_there) {
  struct pair p;
  CHECK(pair_open(&p));
  /* Never held: the page cannot say (the DECODER polls its socket instead). */
  EXPECT(host_fast_alive(p.view) == -1);
  /* Held by this thread (a server serving): there. */
  host_fast_live_hold(&p.page);
  EXPECT(host_fast_alive(p.view) == 1);
  host_fast_live_drop(&p.page);
  EXPECT(host_fast_alive(p.view) == 0); /* the server stopped */
  /* A thread that ends holding it: the kernel marks the owner dead. */
  hold_in_thread(&p.page, false);
  EXPECT(host_fast_alive(p.view) == 0);
  /* A later server takes it over and is there again; stopping clears it. */
  host_fast_live_hold(&p.page);
  EXPECT(host_fast_alive(p.view) == 1);
  host_fast_live_drop(&p.page);
  hold_in_thread(&p.page, true);
  EXPECT(host_fast_alive(p.view) == 0);

  /* Another process holding it, killed with SIGKILL: dead once it is reaped. */
  int ready[2];
  CHECK(pipe(ready) == 0);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    host_fast_live_hold(&p.page);
    char c = host_fast_alive(p.view) == 1 ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  char c = 0;
  EXPECT(read(ready[0], &c, 1) == 1 && c == 'y');
  close(ready[0]);
  EXPECT(host_fast_alive(p.view) == 1);
  kill(child, SIGKILL);
  int status;
  EXPECT(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
  EXPECT(host_fast_alive(p.view) == 0);
  /* ... and this process's next server takes it back. */
  host_fast_live_hold(&p.page);
  EXPECT(host_fast_alive(p.view) == 1);
  host_fast_live_drop(&p.page);
  pair_close(&p);
}
