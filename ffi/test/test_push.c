/* Pushes (llmdd_cache_push_blocks, llmdd_cache_push_addrs) and pulls of a
 * PROMPT's registered memory, between a PROMPT and a DECODER engine in this
 * process: data into pooled memory (the read-write mapping) and into registered
 * memory (the link's socket), tensor ranges, and every refusal. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

#define REMOTE "llm.EnableRemoteCacheAccessible=1\nge.flowGraphMemMaxSize=8388608"
#define B 4160ull /* a block: not page-sized */
#define MODEL 5

struct duo {
  uint64_t prompt, decoder, prompt_cluster;
};

static bool duo_open(struct duo *p, const char *prompt_options, const char *decoder_options) {
  memset(p, 0, sizeof *p);
  uint16_t port = 0;
  p->prompt_cluster = unique_cluster_id();
  p->prompt = open_listening(LLMDD_ROLE_PROMPT, p->prompt_cluster, prompt_options, &port);
  p->decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), decoder_options);
  if (p->prompt == 0 || p->decoder == 0) return false;
  return EXPECT_STATUS(link_port(p->decoder, p->prompt_cluster, port, 2000), LLMDD_SUCCESS);
}

static void duo_close(struct duo *p) {
  if (p->decoder) EXPECT_STATUS(llmdd_engine_finalize(p->decoder), LLMDD_SUCCESS);
  if (p->prompt) EXPECT_STATUS(llmdd_engine_finalize(p->prompt), LLMDD_SUCCESS);
}

static int32_t push(uint64_t engine, uint64_t cache, int32_t row, int32_t kind, uint64_t k0,
                    uint64_t k1, uint64_t k2, const uint64_t *pairs, int32_t n, int32_t src_start,
                    int32_t dst_start, int32_t count) {
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(5000, NULL, &job), LLMDD_SUCCESS);
  int32_t status = llmdd_cache_push_blocks(engine, cache, row, kind, k0, k1, k2, pairs, n,
                                           src_start, dst_start, count, job);
  llmdd_job_release(job);
  return status;
}

/* A cache of `tensors` x `blocks` blocks of B bytes on engine, in its pool, filled
 * with its pattern; key: a BlocksCacheKey (model) or none (0). */
static uint64_t pooled(uint64_t engine, int32_t tensors, uint64_t blocks, uint64_t cluster,
                       uint64_t model, uint64_t *addrs) {
  uint64_t key[3] = {cluster, LLMDD_BLOCKS_REQ_ID, model}, id = 0;
  if (!EXPECT_STATUS(llmdd_cache_allocate(engine, tensors, blocks * B, blocks, 0,
                                          LLMDD_PLACEMENT_DEVICE, model ? key : NULL,
                                          model ? 1 : 0, &id, addrs, tensors),
                     LLMDD_SUCCESS))
    return 0;
  for (int32_t t = 0; t < tensors; t++)
    fill_pattern((uint8_t *)(uintptr_t)addrs[t], blocks * B, id, 0, t);
  return id;
}

/* Registered memory: `tensors` buffers of `blocks` blocks, filled with `seed`'s pattern. */
static uint64_t registered(uint64_t engine, int32_t tensors, uint64_t blocks, int32_t remote,
                           uint64_t cluster, uint64_t model, uint8_t **buffers, uint64_t seed) {
  uint64_t addrs[8], key[3] = {cluster, LLMDD_BLOCKS_REQ_ID, model}, id = 0;
  for (int32_t t = 0; t < tensors; t++) {
    buffers[t] = malloc(blocks * B);
    fill_pattern(buffers[t], blocks * B, seed, 0, t);
    addrs[t] = (uint64_t)(uintptr_t)buffers[t];
  }
  if (!EXPECT_STATUS(llmdd_cache_register(engine, tensors, blocks * B, blocks, 0,
                                          LLMDD_PLACEMENT_DEVICE, addrs, tensors,
                                          model ? key : NULL, model ? 1 : 0, remote, &id),
                     LLMDD_SUCCESS)) {
    fprintf(stderr, "    register: %s\n", last_error());
    return 0;
  }
  return id;
}

/* Block b of buf holds block sb of tensor st of source id's pattern. */
static bool block_is(const uint8_t *buf, uint64_t b, uint64_t id, int32_t st, uint64_t sb) {
  for (uint64_t i = 0; i < B; i++)
    if (buf[b * B + i] != pattern_byte(id, 0, st, sb * B + i)) {
      fprintf(stderr, "    block %llu byte %llu: %u, expected %u\n", (unsigned long long)b,
              (unsigned long long)i, buf[b * B + i], pattern_byte(id, 0, st, sb * B + i));
      return EXPECT(false);
    }
  return true;
}

/* Also run over UCX by test_ucx.c (after its missing-UCX case: UCX, once
 * loaded, stays loaded). */
void push_blocks_body(const char *decoder_options);
void push_blocks_body(const char *decoder_options) {
  struct duo p;
  CHECK(duo_open(&p, REMOTE, decoder_options));
  uint64_t src_addrs[4], dst_addrs[4];
  uint8_t *regs[4];
  uint64_t src = pooled(p.decoder, 4, 8, 0, 0, src_addrs);
  uint64_t dst = pooled(p.prompt, 4, 16, p.prompt_cluster, MODEL, dst_addrs);
  uint64_t reg = registered(p.prompt, 4, 16, 1, p.prompt_cluster, MODEL + 1, regs, 77);
  CHECK(src != 0 && dst != 0 && reg != 0);

  /* Into the pool (mapped read-write): blocks 7 -> 0, 2 -> 15, every tensor. */
  uint64_t pairs[4] = {7, 0, 2, 15};
  CHECK_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, MODEL, pairs, 2, 0,
                    0, 0),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) {
    const uint8_t *d = (const uint8_t *)(uintptr_t)dst_addrs[t];
    block_is(d, 0, src, t, 7);
    block_is(d, 15, src, t, 2);
    block_is(d, 1, dst, t, 1); /* untouched */
  }
  /* Into registered memory (the socket): tensors 2, 3 -> 0, 1, block 5 -> 9. */
  uint64_t one[2] = {5, 9};
  CHECK_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, MODEL + 1, one, 1, 2,
                    0, 2),
               LLMDD_SUCCESS);
  block_is(regs[0], 9, src, 2, 5);
  block_is(regs[1], 9, src, 3, 5);
  block_is(regs[2], 9, 77, 2, 9);
  block_is(regs[0], 8, 77, 0, 8);
  /* Blocks by id (the cache's row 0, as CANN's PushKvBlocks by CacheIndex): 6 -> 11. */
  uint64_t by_id[2] = {6, 11};
  CHECK_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BY_ID, p.prompt_cluster, reg, 0, by_id, 1, 0, 0, 0),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) block_is(regs[t], 11, src, t, 6);
  /* push_cache: row 3 of src into row 4 of the registered cache, by id. */
  CHECK_STATUS(push(p.decoder, src, 3, LLMDD_KEY_BY_ID, p.prompt_cluster, reg, 4, NULL, 0, 0, 0, 0),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) block_is(regs[t], 4, src, t, 3);
  /* And pulls of the registered cache (the socket the other way). */
  uint64_t back[4] = {4, 1, 9, 2};
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(5000, NULL, &job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_pull_blocks(p.decoder, src, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0,
                                       MODEL + 1, back, 2, 0, 0, 0, job),
               LLMDD_SUCCESS);
  llmdd_job_release(job);
  for (int32_t t = 0; t < 4; t++) block_is((const uint8_t *)(uintptr_t)src_addrs[t], 1, src, t, 3);
  block_is((const uint8_t *)(uintptr_t)src_addrs[0], 2, src, 2, 5);

  /* A cache cut into blocks from a row on (LLMDD_PUSH_ROW_BLOCKS, k1 the block
   * size): row 1 of a cache of two rows of 4 blocks, its blocks 0, 2, 3 -> 3, 14, 5
   * of the pool's cache; then from row 0, block 5 (in row 1) -> 6. */
  uint64_t rows = 0, rows_addrs[4];
  CHECK_STATUS(llmdd_cache_allocate(p.decoder, 4, 2 * 4 * B, 2, 0, LLMDD_PLACEMENT_DEVICE, NULL, 0,
                                    &rows, rows_addrs, 4),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) fill_pattern((uint8_t *)(uintptr_t)rows_addrs[t], 8 * B, rows, 0, t);
  const int32_t row_kind = LLMDD_KEY_BLOCKS | LLMDD_PUSH_ROW_BLOCKS;
  uint64_t cut[6] = {0, 3, 2, 14, 3, 5};
  CHECK_STATUS(push(p.decoder, rows, 1, row_kind, p.prompt_cluster, B, MODEL, cut, 3, 0, 0, 0),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) {
    const uint8_t *d = (const uint8_t *)(uintptr_t)dst_addrs[t];
    block_is(d, 3, rows, t, 4 + 0);
    block_is(d, 14, rows, t, 4 + 2);
    block_is(d, 5, rows, t, 4 + 3);
    block_is(d, 4, dst, t, 4); /* untouched */
  }
  uint64_t across[2] = {5, 6};
  CHECK_STATUS(push(p.decoder, rows, 0, row_kind, p.prompt_cluster, B, MODEL, across, 1, 0, 0, 0),
               LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) block_is((const uint8_t *)(uintptr_t)dst_addrs[t], 6, rows, t, 5);
  /* ... its refusals: a size not the destination's, none, one not smaller than a
   * tensor, a block beyond the tensor, a row out of range, the flag with BY_ID. */
  uint64_t past[2] = {4, 0};
  EXPECT_STATUS(push(p.decoder, rows, 1, row_kind, p.prompt_cluster, 2 * B, MODEL, cut, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "is not equal to stride") != NULL);
  EXPECT_STATUS(push(p.decoder, rows, 1, row_kind, p.prompt_cluster, 0, MODEL, cut, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "block_mem_size[0] must > 0") != NULL);
  EXPECT_STATUS(push(p.decoder, rows, 1, row_kind, p.prompt_cluster, 8 * B, MODEL, cut, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, rows, 1, row_kind, p.prompt_cluster, B, MODEL, past, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, rows, 2, row_kind, p.prompt_cluster, B, MODEL, cut, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, rows, 1, LLMDD_KEY_BY_ID | LLMDD_PUSH_ROW_BLOCKS, p.prompt_cluster, reg,
                     0, cut, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_deallocate(p.decoder, rows), LLMDD_SUCCESS);

  /* push_addrs: the whole row 6 of tensor 1 to block 3 of registered tensor 2. */
  uint64_t addr = (uint64_t)(uintptr_t)regs[2] + 3 * B;
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 6, p.prompt_cluster, &addr, 1, 1, NULL, 0, 0,
                                       0),
                LLMDD_SUCCESS);
  block_is(regs[2], 3, src, 1, 6);
  /* ... and blocks: pair (0, 2) of row 7 (block = row) to pool tensor 3 from block 10. */
  uint64_t to_pool = dst_addrs[3] + 10 * B, pool_pair[2] = {0, 2};
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 7, p.prompt_cluster, &to_pool, 1, 0,
                                       pool_pair, 1, 0, 0),
                LLMDD_SUCCESS);
  block_is((const uint8_t *)(uintptr_t)dst_addrs[3], 12, src, 0, 7);
  /* Addresses that are no remote-accessible memory of the PROMPT. */
  uint64_t stray = (uint64_t)(uintptr_t)&p, beyond = (uint64_t)(uintptr_t)regs[0] + 16 * B - 8;
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, p.prompt_cluster, &stray, 1, 0, NULL, 0,
                                       0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "no remote-accessible memory") != NULL);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, p.prompt_cluster, &beyond, 1, 0, NULL, 0,
                                       0, 0),
                LLMDD_PARAM_INVALID);

  /* Nothing stays pinned: both caches go. */
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(p.prompt, reg), LLMDD_SUCCESS);
  for (int32_t t = 0; t < 4; t++) free(regs[t]);
  duo_close(&p);
}

TEST(push_blocks_into_pooled_and_registered_memory) { push_blocks_body(REMOTE); }


/* A push that returned has released its destination at the peer: the program
 * there may unregister it at once (DONE is acknowledged). Before, the PROMPT
 * could still hold the push's pin for a moment and refuse ("in use"). */
TEST(a_returned_push_has_released_its_destination) {
  struct duo p;
  CHECK(duo_open(&p, REMOTE, REMOTE));
  uint64_t src_addrs[1];
  uint64_t src = pooled(p.decoder, 1, 2, 0, 0, src_addrs);
  uint64_t pair[2] = {1, 0};
  for (int i = 0; i < 200 && src != 0; i++) {
    uint8_t *buffer[1];
    uint64_t dst = registered(p.prompt, 1, 2, 1, p.prompt_cluster, MODEL, buffer, 3);
    if (dst == 0) break;
    int32_t pushed = push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, MODEL, pair, 1, 0, 0, 0);
    int32_t unregistered = llmdd_cache_unregister(p.prompt, dst);
    bool ok = EXPECT_STATUS(pushed, LLMDD_SUCCESS) && EXPECT_STATUS(unregistered, LLMDD_SUCCESS) &&
              block_is(buffer[0], 0, src, 0, 1);
    if (unregistered != LLMDD_SUCCESS) fprintf(stderr, "    round %d: %s\n", i, last_error());
    for (int tries = 0; unregistered != LLMDD_SUCCESS && tries < 1000; tries++) {
      usleep(1000); /* the memory must be the program's before it is freed */
      unregistered = llmdd_cache_unregister(p.prompt, dst);
    }
    free(buffer[0]);
    if (!ok) break;
  }
  duo_close(&p);
}

TEST(push_refusals) {
  struct duo p;
  CHECK(duo_open(&p, REMOTE, REMOTE));
  uint64_t src_addrs[2], dst_addrs[2];
  uint8_t *regs[2], *local_regs[2];
  uint64_t src = pooled(p.decoder, 2, 8, 0, 0, src_addrs);
  uint64_t dst = pooled(p.prompt, 2, 16, p.prompt_cluster, MODEL, dst_addrs);
  uint64_t closed = registered(p.prompt, 2, 16, 0, p.prompt_cluster, MODEL + 1, regs, 3);
  uint64_t local_closed = registered(p.decoder, 2, 8, 0, 0, 0, local_regs, 4);
  CHECK(src && dst && closed && local_closed);
  uint64_t ok[2] = {1, 1}, bad_src[2] = {8, 0}, bad_dst[2] = {0, 16};
  uint64_t c = p.prompt_cluster;
  /* Remote access: the destination's, the source's. */
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL + 1, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "remote cache is not remote accessible") != NULL);
  EXPECT_STATUS(push(p.decoder, local_closed, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "local cache is not remote accessible") != NULL);
  /* Arguments. */
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_CACHE_KEY, c, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, NULL, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 1, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src_batch_index should be 0") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, bad_src, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src_block_index:8") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, bad_dst, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "dst_block_index:16") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BY_ID, c, dst, 1, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "names batch index 0") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 1, LLMDD_KEY_BY_ID, c, dst, 0, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BY_ID, c, dst, 0, NULL, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 8, LLMDD_KEY_BY_ID, c, dst, 0, NULL, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, -1, LLMDD_KEY_BY_ID, c, dst, 0, NULL, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  /* Rows of different sizes (8 blocks against 16 of B). */
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BY_ID, c, dst, 16, NULL, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "out of range") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 1, 0, 2),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src tensors [1, 3)") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 0, 1, 2),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "dst tensors [1, 3)") != NULL);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 1, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL + 9, ok, 1, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BY_ID, c, dst + 100, 0, NULL, 0, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(push(p.decoder, src + 100, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, c + 1000, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(push(p.prompt, dst, 0, LLMDD_KEY_BLOCKS, c, 0, MODEL, ok, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "a PROMPT engine does not push") != NULL);
  /* push_addrs' own. */
  uint64_t addr = dst_addrs[0];
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, NULL, 1, 0, NULL, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &addr, 0, 0, NULL, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &addr, 1, 2, NULL, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 8, c, &addr, 1, 0, NULL, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &addr, 1, 0, NULL, 1, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &addr, 1, 0, NULL, 0, 64, 0),
                LLMDD_PARAM_INVALID);
  uint64_t far[2] = {8, 0}, zero = 0;
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &addr, 1, 0, far, 1, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c, &zero, 1, 0, NULL, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_push_addrs(p.decoder, src, 0, c + 1000, &addr, 1, 0, NULL, 0, 0, 0),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(llmdd_unlink(p.decoder, c, 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(p.prompt, closed), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(p.decoder, local_closed), LLMDD_SUCCESS);
  for (int32_t t = 0; t < 2; t++) {
    free(regs[t]);
    free(local_regs[t]);
  }
  duo_close(&p);
}

TEST(push_needs_remote_access_here_and_there) {
  /* Without the option here: refused before anything is asked. */
  struct duo p;
  CHECK(duo_open(&p, REMOTE, "ge.flowGraphMemMaxSize=8388608"));
  uint64_t src_addrs[2], dst_addrs[2], one[2] = {0, 0};
  uint64_t src = pooled(p.decoder, 2, 4, 0, 0, src_addrs);
  uint64_t dst = pooled(p.prompt, 2, 4, p.prompt_cluster, MODEL, dst_addrs);
  CHECK(src && dst);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, MODEL, one, 1, 0, 0,
                     0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "EnableRemoteCacheAccessible") != NULL);
  duo_close(&p);
  /* Without it there: its pooled caches are not remote-accessible. */
  CHECK(duo_open(&p, "ge.flowGraphMemMaxSize=8388608", REMOTE));
  src = pooled(p.decoder, 2, 4, 0, 0, src_addrs);
  dst = pooled(p.prompt, 2, 4, p.prompt_cluster, MODEL, dst_addrs);
  CHECK(src && dst);
  EXPECT_STATUS(push(p.decoder, src, 0, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, MODEL, one, 1, 0, 0,
                     0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "remote cache is not remote accessible") != NULL);
  /* Pulls still work (the mapping is read-only). */
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(5000, NULL, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_pull_blocks(p.decoder, src, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0,
                                        MODEL, one, 1, 0, 0, 0, job),
                LLMDD_SUCCESS);
  llmdd_job_release(job);
  duo_close(&p);
}

TEST(mix_engines_push_into_each_other) {
  /* A PROMPT links to nobody; upstream's "PROMPT pushes to DECODER" takes two
   * MIX engines here, each linked to the other. */
  uint64_t a_cluster = unique_cluster_id(), b_cluster = unique_cluster_id();
  uint16_t a_port = 0, b_port = 0;
  uint64_t a = open_listening(LLMDD_ROLE_MIX, a_cluster, REMOTE, &a_port);
  uint64_t b = open_listening(LLMDD_ROLE_MIX, b_cluster, REMOTE, &b_port);
  CHECK(a != 0 && b != 0);
  uint64_t a_addrs[2], b_addrs[2], one[2] = {1, 2};
  uint64_t a_cache = pooled(a, 2, 4, a_cluster, MODEL, a_addrs);
  uint64_t b_cache = pooled(b, 2, 4, b_cluster, MODEL, b_addrs);
  CHECK(a_cache && b_cache);
  CHECK_STATUS(link_port(a, b_cluster, b_port, 2000), LLMDD_SUCCESS);
  CHECK_STATUS(link_port(b, a_cluster, a_port, 2000), LLMDD_SUCCESS);
  EXPECT_STATUS(push(a, a_cache, 0, LLMDD_KEY_BLOCKS, b_cluster, 0, MODEL, one, 1, 0, 0, 0),
                LLMDD_SUCCESS);
  EXPECT_STATUS(push(b, b_cache, 0, LLMDD_KEY_BLOCKS, a_cluster, 0, MODEL, one, 1, 0, 0, 0),
                LLMDD_SUCCESS);
  for (int32_t t = 0; t < 2; t++) {
    block_is((const uint8_t *)(uintptr_t)b_addrs[t], 2, a_cache, t, 1);
    block_is((const uint8_t *)(uintptr_t)a_addrs[t], 2, b_cache, t, 1);
  }
  EXPECT_STATUS(llmdd_engine_finalize(a), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(b), LLMDD_SUCCESS);
}

/* Threads sharing one link: pulls of registered memory (STREAM reads), pushes
 * into registered memory (STREAM writes) and pushes into the pool (LOOKUP and
 * the mapping) at once. The exchanges never interleave on the wire: every
 * operation succeeds and moves the right bytes. */
struct worker {
  uint64_t decoder, cluster, cache, *cache_addrs, model;
  int kind; /* 0: pull of registered, 1: push into registered, 2: push into the pool */
  int done, failed;
};

static void *work(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 40; i++) {
    uint64_t job = 0, pair[2] = {(uint64_t)(i % 4), (uint64_t)(4 + w->kind)};
    if (llmdd_job_create(10000, NULL, &job) != LLMDD_SUCCESS) break;
    int32_t s = w->kind == 0
                    ? llmdd_cache_pull_blocks(w->decoder, w->cache, LLMDD_KEY_BLOCKS, w->cluster, 0,
                                              w->model, pair, 1, 0, 0, 0, job)
                    : llmdd_cache_push_blocks(w->decoder, w->cache, 0, LLMDD_KEY_BLOCKS, w->cluster,
                                              0, w->model, pair, 1, 0, 0, 0, job);
    llmdd_job_release(job);
    if (s != LLMDD_SUCCESS) {
      w->failed++;
      continue;
    }
    w->done++;
  }
  return NULL;
}

TEST(streams_and_lookups_share_one_link) {
  struct duo p;
  CHECK(duo_open(&p, REMOTE, REMOTE));
  uint8_t *regs[2];
  uint64_t pool_addrs[2], src_addrs[2], pulled_addrs[2];
  uint64_t reg = registered(p.prompt, 2, 8, 1, p.prompt_cluster, MODEL + 1, regs, 41);
  uint64_t pool = pooled(p.prompt, 2, 8, p.prompt_cluster, MODEL, pool_addrs);
  uint64_t src = pooled(p.decoder, 2, 8, 0, 0, src_addrs);
  uint64_t pulled = pooled(p.decoder, 2, 8, 0, 0, pulled_addrs);
  CHECK(reg && pool && src && pulled);
  struct worker w[3] = {
      {p.decoder, p.prompt_cluster, pulled, pulled_addrs, MODEL + 1, 0, 0, 0},
      {p.decoder, p.prompt_cluster, src, src_addrs, MODEL + 1, 1, 0, 0},
      {p.decoder, p.prompt_cluster, src, src_addrs, MODEL, 2, 0, 0},
  };
  pthread_t threads[3];
  for (int i = 0; i < 3; i++) CHECK(pthread_create(&threads[i], NULL, work, &w[i]) == 0);
  for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < 3; i++) {
    fprintf(stderr, "    worker %d: %d done, %d failed\n", i, w[i].done, w[i].failed);
    EXPECT(w[i].done == 40 && w[i].failed == 0);
  }
  for (int32_t t = 0; t < 2; t++) {
    /* Last round: i = 39, block 3 of each source. */
    block_is((const uint8_t *)(uintptr_t)pulled_addrs[t], 4, 41, t, 3);
    block_is(regs[t], 5, src, t, 3);
    block_is((const uint8_t *)(uintptr_t)pool_addrs[t], 6, src, t, 3);
    block_is(regs[t], 0, 41, t, 0);
  }
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(p.prompt, reg), LLMDD_SUCCESS);
  for (int32_t t = 0; t < 2; t++) free(regs[t]);
  duo_close(&p);
}
