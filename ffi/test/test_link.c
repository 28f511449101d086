/* Links and pulls between a PROMPT and a DECODER engine in this process, over
 * loopback TCP and shared memory: data, every error status, deadlines, cancel,
 * finalize and unlink during pulls, concurrent pulls, and peers that misbehave. */
#define _GNU_SOURCE 1
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "harness.h"
#include "local.h"
#include "pool.h"
#include "proto.h"
#include "shm.h"
#include "util.h"

#define LAYOUT 0xABCull
#define MODEL 7

struct pair {
  uint64_t prompt, decoder;
  uint64_t prompt_cluster, decoder_cluster;
  uint16_t port;
};

/* A listening PROMPT and a DECODER linked to it, both with `options`. */
static bool pair_open(struct pair *p, const char *options) {
  memset(p, 0, sizeof *p);
  p->prompt_cluster = unique_cluster_id();
  p->decoder_cluster = unique_cluster_id();
  p->prompt = open_listening(LLMDD_ROLE_PROMPT, p->prompt_cluster, options, &p->port);
  p->decoder = open_role(LLMDD_ROLE_DECODER, p->decoder_cluster, options);
  if (p->prompt == 0 || p->decoder == 0) return false;
  if (EXPECT_STATUS(link_port(p->decoder, p->prompt_cluster, p->port, 2000), LLMDD_SUCCESS))
    return true;
  fprintf(stderr, "    link: %s\n", last_error());
  return false;
}

static void pair_close(struct pair *p) {
  if (p->decoder) EXPECT_STATUS(llmdd_engine_finalize(p->decoder), LLMDD_SUCCESS);
  if (p->prompt) EXPECT_STATUS(llmdd_engine_finalize(p->prompt), LLMDD_SUCCESS);
}

/* A cache of `tensors` tensors of `batch` rows of row_bytes, filled with the
 * pattern of its id; keys (prompt_cluster, first_req + i, MODEL) name rows
 * 0..num_keys-1. Returns the id (0 on failure) and the addresses in addrs. */
static uint64_t allocate_rows(uint64_t engine, int32_t devices, int32_t tensors,
                              uint64_t row_bytes, uint64_t batch, uint64_t layout,
                              uint64_t key_cluster, uint64_t first_req, int32_t num_keys,
                              bool fill, uint64_t *addrs) {
  uint64_t keys[3 * 8], id = 0;
  for (int32_t i = 0; i < num_keys; i++) {
    keys[3 * i] = key_cluster;
    keys[3 * i + 1] = first_req + (uint64_t)i;
    keys[3 * i + 2] = MODEL;
  }
  int32_t status = llmdd_cache_allocate(engine, tensors, row_bytes * batch, batch, layout,
                                        LLMDD_PLACEMENT_DEVICE, num_keys ? keys : NULL,
                                        num_keys, &id, addrs, devices * tensors);
  if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) {
    fprintf(stderr, "    allocate: %s\n", last_error());
    return 0;
  }
  if (fill)
    for (int32_t d = 0; d < devices; d++)
      for (int32_t t = 0; t < tensors; t++)
        fill_pattern((uint8_t *)(uintptr_t)addrs[d * tensors + t], row_bytes * batch, id, d, t);
  return id;
}

/* Checks a destination tensor: row dst_row's first n bytes come from row src_row
 * of the source cache; everything else is still the destination's own pattern,
 * except rows listed in `pulled` (a bitmask), which are not checked. */
static bool expect_row(const uint64_t *dst_addrs, uint64_t dst_id, uint64_t src_id, int32_t d,
                       int32_t tensors, int32_t t, uint64_t row_bytes, uint64_t dst_batch,
                       int32_t dst_row, int32_t src_row, uint64_t n, uint32_t pulled) {
  const uint8_t *p = (const uint8_t *)(uintptr_t)dst_addrs[d * tensors + t];
  for (uint64_t r = 0; r < dst_batch; r++) {
    if (r != (uint64_t)dst_row && (pulled >> r & 1)) continue;
    for (uint64_t i = 0; i < row_bytes; i++) {
      uint64_t at = r * row_bytes + i;
      uint8_t want = r == (uint64_t)dst_row && i < n
                         ? pattern_byte(src_id, d, t, (uint64_t)src_row * row_bytes + i)
                         : pattern_byte(dst_id, d, t, at);
      if (p[at] != want) {
        fprintf(stderr, "    device %d tensor %d row %llu byte %llu: %u, expected %u\n", d, t,
                (unsigned long long)r, (unsigned long long)i, p[at], want);
        return EXPECT(p[at] == want);
      }
    }
  }
  return true;
}

/* ---- data ---- */

TEST(pull_moves_one_row_by_key_and_by_id) {
  static const uint64_t rows[] = {64, 1000, 4096, 1 * MiB + 64};
  struct pair p;
  CHECK(pair_open(&p, "ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=67108864"));
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const uint64_t R = rows[i];
    uint64_t src_addrs[6], dst_addrs[6];
    uint64_t req = 100 * (i + 1);
    uint64_t src = allocate_rows(p.prompt, 2, 3, R, 4, LAYOUT, p.prompt_cluster, req, 4, true,
                                 src_addrs);
    uint64_t dst = allocate_rows(p.decoder, 2, 3, R, 2, LAYOUT, 0, 0, 0, true, dst_addrs);
    CHECK(src != 0 && dst != 0);
    uint64_t prompt_used = pool_used(p.prompt, 0);

    /* By key: row 2 into row 1, the whole row. */
    CHECK_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, req + 2, MODEL,
                          1, LLMDD_WHOLE_ROW, 5000),
                 LLMDD_SUCCESS);
    for (int32_t d = 0; d < 2; d++)
      for (int32_t t = 0; t < 3; t++) expect_row(dst_addrs, dst, src, d, 3, t, R, 2, 1, 2, R, 0);
    /* The key is consumed: the PROMPT released it. */
    EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, req + 2,
                           MODEL, 0, LLMDD_WHOLE_ROW, 5000),
                  LLMDD_KV_CACHE_NOT_EXIST);
    EXPECT(strstr(last_error(), "no cache holds key") != NULL);
    EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, p.prompt_cluster, req + 2, MODEL),
                  LLMDD_KV_CACHE_NOT_EXIST);

    /* By id: row 3 into row 0, half the row; nothing is consumed. */
    CHECK_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 3, 0, R / 2,
                          5000),
                 LLMDD_SUCCESS);
    for (int32_t d = 0; d < 2; d++)
      for (int32_t t = 0; t < 3; t++) {
        expect_row(dst_addrs, dst, src, d, 3, t, R, 2, 0, 3, R / 2, 1u << 1);
        expect_row(dst_addrs, dst, src, d, 3, t, R, 2, 1, 2, R, 1u << 0);
      }
    CHECK_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 3, 0,
                          LLMDD_WHOLE_ROW, 5000),
                 LLMDD_SUCCESS);
    for (int32_t d = 0; d < 2; d++)
      for (int32_t t = 0; t < 3; t++) expect_row(dst_addrs, dst, src, d, 3, t, R, 2, 0, 3, R, 2);
    /* size 0 moves nothing but is a pull all the same (it consumes the key). */
    EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, req, MODEL, 0,
                           0, 5000),
                  LLMDD_SUCCESS);
    for (int32_t t = 0; t < 3; t++) expect_row(dst_addrs, dst, src, 1, 3, t, R, 2, 0, 3, R, 2);

    /* The memory returns once the id and the keys left are released. */
    EXPECT(pool_used(p.prompt, 0) == prompt_used);
    EXPECT_STATUS(llmdd_cache_deallocate(p.prompt, src), LLMDD_SUCCESS);
    EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, p.prompt_cluster, req + 1, MODEL),
                  LLMDD_SUCCESS);
    EXPECT(pool_used(p.prompt, 0) == prompt_used);
    EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, p.prompt_cluster, req + 3, MODEL),
                  LLMDD_SUCCESS);
    EXPECT(wait_pool_used(p.prompt, 0, 0, 2000) && wait_pool_used(p.prompt, 1, 0, 2000));
    EXPECT_STATUS(llmdd_cache_deallocate(p.decoder, dst), LLMDD_SUCCESS);
    EXPECT(pool_used(p.decoder, 0) == 0);
  }
  pair_close(&p);
}

/* ---- block pulls (llmdd_cache_pull_blocks) ---- */

static int32_t pull_blocks(uint64_t engine, uint64_t cache_id, int32_t kind, uint64_t k0,
                           uint64_t k1, uint64_t k2, const uint64_t *pairs, int32_t n,
                           int32_t src_start, int32_t dst_start, int32_t count) {
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(5000, NULL, &job), LLMDD_SUCCESS);
  int32_t status = llmdd_cache_pull_blocks(engine, cache_id, kind, k0, k1, k2, pairs, n, src_start,
                                           dst_start, count, job);
  llmdd_job_release(job);
  return status;
}

/* Block b of tensor t on device d of dst holds block sb of tensor st of src
 * (pattern of src_id at sb * block + base), or the destination's own pattern. */
static bool expect_block(const uint64_t *dst_addrs, uint64_t dst_id, int32_t tensors, int32_t d,
                         int32_t t, uint64_t block, uint64_t b, uint64_t src_id, int32_t st,
                         uint64_t src_at) {
  const uint8_t *p = (const uint8_t *)(uintptr_t)dst_addrs[d * tensors + t] + b * block;
  for (uint64_t i = 0; i < block; i++) {
    uint8_t want = src_id ? pattern_byte(src_id, d, st, src_at + i)
                          : pattern_byte(dst_id, d, t, b * block + i);
    if (p[i] != want) {
      fprintf(stderr, "    device %d tensor %d block %llu byte %llu: %u, expected %u\n", d, t,
              (unsigned long long)b, (unsigned long long)i, p[i], want);
      return EXPECT(p[i] == want);
    }
  }
  return true;
}

TEST(pull_blocks_by_blocks_key_by_id_and_by_key_with_tensor_ranges) {
  struct pair p;
  CHECK(pair_open(&p, "ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=16777216"));
  const uint64_t B = 4096 + 64; /* more than one 1 MiB chunk in all, blocks not page-sized */
  uint64_t src_addrs[8], dst_addrs[8], row_addrs[8];
  /* A blocks cache of 4 tensors x 32 blocks, named by BlocksCacheKey (cluster, 3). */
  uint64_t key[3] = {p.prompt_cluster, LLMDD_BLOCKS_REQ_ID, 3}, src = 0, dst = 0, rows = 0;
  CHECK_STATUS(llmdd_cache_allocate(p.prompt, 4, 32 * B, 32, LAYOUT, LLMDD_PLACEMENT_DEVICE, key, 1,
                                    &src, src_addrs, 8),
               LLMDD_SUCCESS);
  for (int32_t d = 0; d < 2; d++)
    for (int32_t t = 0; t < 4; t++)
      fill_pattern((uint8_t *)(uintptr_t)src_addrs[d * 4 + t], 32 * B, src, d, t);
  /* A cache of 2 rows of 4 blocks each, row 1 named by request 9. */
  rows = allocate_rows(p.prompt, 2, 4, 4 * B, 2, LAYOUT, p.prompt_cluster, 8, 2, true, row_addrs);
  CHECK(rows != 0);
  CHECK_STATUS(llmdd_cache_allocate(p.decoder, 4, 16 * B, 16, 0, LLMDD_PLACEMENT_DEVICE, NULL, 0,
                                    &dst, dst_addrs, 8),
               LLMDD_SUCCESS);
  for (int32_t d = 0; d < 2; d++)
    for (int32_t t = 0; t < 4; t++)
      fill_pattern((uint8_t *)(uintptr_t)dst_addrs[d * 4 + t], 16 * B, dst, d, t);

  /* Every tensor, any order, a source block twice; the key is not consumed. */
  uint64_t pairs[8] = {31, 0, 2, 5, 2, 6, 17, 15};
  for (int rep = 0; rep < 2; rep++)
    CHECK_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, pairs, 4, 0,
                             0, 0),
                 LLMDD_SUCCESS);
  for (int32_t d = 0; d < 2; d++)
    for (int32_t t = 0; t < 4; t++)
      for (uint64_t b = 0; b < 16; b++) {
        uint64_t from = UINT64_MAX;
        for (int i = 0; i < 4; i++)
          if (pairs[2 * i + 1] == b) from = pairs[2 * i];
        expect_block(dst_addrs, dst, 4, d, t, B, b, from == UINT64_MAX ? 0 : src, t, from * B);
      }
  /* Tensors 2, 3 of the source into 0, 1: block 1 into block 1. */
  uint64_t one[2] = {1, 1};
  CHECK_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, 2, 0,
                           2),
               LLMDD_SUCCESS);
  for (int32_t d = 0; d < 2; d++) {
    expect_block(dst_addrs, dst, 4, d, 0, B, 1, src, 2, B);
    expect_block(dst_addrs, dst, 4, d, 1, B, 1, src, 3, B);
    expect_block(dst_addrs, dst, 4, d, 2, B, 1, 0, 0, 0);
  }
  /* By id: row 1 of `rows`, cut into blocks 0..3, into blocks 9, 8 (two of them). */
  uint64_t by_row[4] = {0, 9, 3, 8};
  CHECK_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, rows, 1, by_row, 2,
                           0, 0, 0),
               LLMDD_SUCCESS);
  for (int32_t d = 0; d < 2; d++)
    for (int32_t t = 0; t < 4; t++) {
      expect_block(dst_addrs, dst, 4, d, t, B, 9, rows, t, 4 * B);
      expect_block(dst_addrs, dst, 4, d, t, B, 8, rows, t, 4 * B + 3 * B);
    }
  /* By key (request 9 names row 1), consumed. */
  CHECK_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, 9, MODEL, by_row,
                           1, 0, 0, 0),
               LLMDD_SUCCESS);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, 9, MODEL, by_row,
                            1, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST);

  /* Refusals, before and after the PROMPT answers. */
  uint64_t bad_dst[2] = {0, 16}, bad_src[2] = {32, 0}, row_out[2] = {4, 0};
  EXPECT_STATUS(pull_blocks(p.decoder, dst, 3, p.prompt_cluster, 0, 3, one, 1, 0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, NULL, 1, 0, 0,
                            0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 0, 0, 0,
                            0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, bad_dst, 1, 0,
                            0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "dst_block_index:16") != NULL);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, bad_src, 1, 0,
                            0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src_block_index:32") != NULL);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, rows, 1, row_out, 1,
                            0, 0, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, 3, 0,
                            2),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src tensors [3, 5)") != NULL);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, 0, 3,
                            2),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, 1, 0,
                            0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, -1, 0,
                            1),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 4, one, 1, 0, 0,
                            0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "no blocks cache holds key") != NULL);
  EXPECT_STATUS(pull_blocks(p.decoder, dst + 100, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1,
                            0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(pull_blocks(p.decoder, dst, LLMDD_KEY_BLOCKS, p.prompt_cluster + 1000, 0, 3, one, 1,
                            0, 0, 0),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(pull_blocks(p.prompt, src, LLMDD_KEY_BLOCKS, p.prompt_cluster, 0, 3, one, 1, 0, 0,
                            0),
                LLMDD_PARAM_INVALID);
  /* Nothing pins anything afterwards. */
  EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, p.prompt_cluster, LLMDD_BLOCKS_REQ_ID, 3),
                LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(p.prompt, src), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(p.prompt, rows), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, p.prompt_cluster, 8, MODEL), LLMDD_SUCCESS);
  EXPECT(wait_pool_used(p.prompt, 0, 0, 2000) && wait_pool_used(p.prompt, 1, 0, 2000));
  EXPECT_STATUS(llmdd_cache_deallocate(p.decoder, dst), LLMDD_SUCCESS);
  pair_close(&p);
}

TEST(mix_engines_serve_and_pull) {
  uint64_t a_cluster = unique_cluster_id(), b_cluster = unique_cluster_id();
  uint16_t a_port, b_port;
  const char *options = "ge.flowGraphMemMaxSize=1048576";
  uint64_t a = open_listening(LLMDD_ROLE_MIX, a_cluster, options, &a_port);
  uint64_t b = open_listening(LLMDD_ROLE_MIX, b_cluster, options, &b_port);
  CHECK(a != 0 && b != 0);
  CHECK_STATUS(link_port(a, b_cluster, b_port, 2000), LLMDD_SUCCESS);
  CHECK_STATUS(link_port(b, a_cluster, a_port, 2000), LLMDD_SUCCESS);
  CHECK_STATUS(link_port(a, a_cluster, a_port, 2000), LLMDD_SUCCESS); /* itself */
  uint64_t addrs_a[1], addrs_b[1], addrs_c[1];
  uint64_t in_a = allocate_rows(a, 1, 1, 256, 1, LAYOUT, a_cluster, 1, 1, true, addrs_a);
  uint64_t in_b = allocate_rows(b, 1, 1, 256, 1, LAYOUT, b_cluster, 1, 1, true, addrs_b);
  uint64_t scratch = allocate_rows(a, 1, 1, 256, 1, LAYOUT, 0, 0, 0, true, addrs_c);
  CHECK(in_a && in_b && scratch);
  EXPECT_STATUS(pull_row(b, in_b, LLMDD_KEY_CACHE_KEY, a_cluster, 1, MODEL, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT(expect_row(addrs_b, in_b, in_a, 0, 1, 0, 256, 1, 0, 0, 256, 0));
  EXPECT_STATUS(pull_row(a, scratch, LLMDD_KEY_BY_ID, a_cluster, in_a, 0, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT(expect_row(addrs_c, scratch, in_a, 0, 1, 0, 256, 1, 0, 0, 256, 0));
  EXPECT_STATUS(llmdd_engine_finalize(a), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(b), LLMDD_SUCCESS);
}

/* ---- errors ---- */

TEST(roles_keys_and_addresses_are_checked) {
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  uint64_t addrs[4], id;
  const uint64_t key[3] = {p.prompt_cluster, 1, MODEL};
  const char *address = "127.0.0.1:1";
  /* A PROMPT is linked to; it neither links, unlinks nor pulls. */
  uint64_t own = allocate_rows(p.prompt, 1, 1, 64, 1, LAYOUT, 0, 0, 0, false, addrs);
  EXPECT_STATUS(llmdd_link(p.prompt, 5, (const uint8_t *)address, 11, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "PROMPT") != NULL);
  EXPECT_STATUS(llmdd_unlink(p.prompt, 5, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_pull(p.prompt, own, 0, p.prompt_cluster, 1, MODEL, 0, LLMDD_WHOLE_ROW, 0),
                LLMDD_PARAM_INVALID);
  /* A DECODER's caches take no keys. */
  EXPECT_STATUS(llmdd_cache_allocate(p.decoder, 1, 64, 1, 0, 1, key, 1, &id, addrs, 1),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "DECODER") != NULL);
  /* Batch sizes and keys. */
  EXPECT_STATUS(llmdd_cache_allocate(p.prompt, 1, 64, 0, 0, 1, NULL, 0, &id, addrs, 1),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(p.prompt, 1, 64, 3, 0, 1, NULL, 0, &id, addrs, 1),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "multiple of batch_size 3") != NULL);
  EXPECT_STATUS(llmdd_cache_allocate(p.prompt, 1, 64, 1, 0, 1, (const uint64_t[]){1, 2, 3, 1, 2, 4},
                                     2, &id, addrs, 1),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "num_keys 2 is more than batch_size 1") != NULL);
  /* Addresses. */
  static const char *const bad[] = {"",         "127.0.0.1",   "127.0.0.1:0", "127.0.0.1:65536",
                                    "host:80",  "1.2.3:4",     "127.0.0.1:x", "127.0.0.1:80 "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    EXPECT_STATUS(llmdd_link(p.decoder, 99, (const uint8_t *)bad[i], (int32_t)strlen(bad[i]), 0),
                  LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "remote_addr") != NULL);
  EXPECT_STATUS(llmdd_link(p.decoder, 99, NULL, 5, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_link(p.decoder, 99, (const uint8_t *)address, -1, 0), LLMDD_PARAM_INVALID);
  /* Unknown jobs. */
  EXPECT_STATUS(llmdd_link(p.decoder, 99, (const uint8_t *)address, 11, 12345), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, 12345), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_pull(p.decoder, 1, 0, p.prompt_cluster, 1, 2, 0, 1, 12345),
                LLMDD_PARAM_INVALID);
  /* Links. */
  EXPECT_STATUS(link_port(p.decoder, p.prompt_cluster, p.port, 2000), LLMDD_ALREADY_LINK);
  EXPECT_STATUS(llmdd_unlink(p.decoder, 12345, 0, 0), LLMDD_NOT_YET_LINK);
  pair_close(&p);
}

TEST(pull_checks_both_caches) {
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  uint64_t a[4], b[4], dst_addrs[2];
  uint64_t src = allocate_rows(p.prompt, 1, 2, 128, 2, LAYOUT, p.prompt_cluster, 1, 2, true, a);
  uint64_t dst = allocate_rows(p.decoder, 1, 2, 128, 4, LAYOUT, 0, 0, 0, true, dst_addrs);
  uint64_t three = allocate_rows(p.decoder, 1, 3, 128, 1, LAYOUT, 0, 0, 0, false, b);
  uint64_t other_layout = allocate_rows(p.decoder, 1, 2, 128, 1, LAYOUT + 1, 0, 0, 0, false, b);
  uint64_t other_row = allocate_rows(p.decoder, 1, 2, 64, 4, LAYOUT, 0, 0, 0, false, b);
  CHECK(src && dst && three && other_layout && other_row);
  uint64_t used = pool_used(p.prompt, 0);
  const uint64_t c = p.prompt_cluster;
  /* Checked before anything is sent. */
  EXPECT_STATUS(pull_row(p.decoder, 99, LLMDD_KEY_BY_ID, c, src, 0, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "cache 99") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, dst, 2, c, src, 0, 0, LLMDD_WHOLE_ROW, 2000), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c, src, 0, 4, LLMDD_WHOLE_ROW, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "dst_batch_index 4") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c, src, 0, -1, LLMDD_WHOLE_ROW, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c, src, 0, 0, 129, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "size 129") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c + 1, src, 0, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, c + 1, 1, MODEL, 0, 64, 2000),
                LLMDD_NOT_YET_LINK);
  /* Checked by the PROMPT. */
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, c, 77, MODEL, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c, src + 50, 0, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "does not exist at cluster") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, c, src, 2, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "batch index 2 is out of range") != NULL);
  /* Checked against the PROMPT's answer: the pin is released, the key kept. */
  EXPECT_STATUS(pull_row(p.decoder, three, LLMDD_KEY_CACHE_KEY, c, 1, MODEL, 0, LLMDD_WHOLE_ROW, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "tensors") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, other_layout, LLMDD_KEY_CACHE_KEY, c, 1, MODEL, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "layout") != NULL);
  EXPECT_STATUS(pull_row(p.decoder, other_row, LLMDD_KEY_CACHE_KEY, c, 1, MODEL, 0, 64, 2000),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "rows are 128 bytes") != NULL);
  /* None of that consumed the key or left a pin. */
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, c, 1, MODEL, 3, LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  for (int32_t t = 0; t < 2; t++) expect_row(dst_addrs, dst, src, 0, 2, t, 128, 4, 3, 0, 128, 0);
  EXPECT(pool_used(p.prompt, 0) == used);
  EXPECT_STATUS(llmdd_cache_deallocate(p.prompt, src), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_key_remove(p.prompt, c, 2, MODEL), LLMDD_SUCCESS);
  EXPECT(wait_pool_used(p.prompt, 0, 0, 2000));
  pair_close(&p);
}

/* ---- links ---- */

TEST(link_limit_is_llmdd_max_links) {
  enum { N = LLMDD_MAX_LINKS + 1 };
  uint64_t prompts[N], clusters[N];
  uint16_t ports[N];
  const char *small = "ge.flowGraphMemMaxSize=65536";
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), small);
  CHECK(decoder != 0);
  for (int i = 0; i < N; i++) {
    clusters[i] = unique_cluster_id();
    prompts[i] = open_listening(LLMDD_ROLE_PROMPT, clusters[i], small, &ports[i]);
    CHECK(prompts[i] != 0);
  }
  for (int i = 0; i < LLMDD_MAX_LINKS; i++)
    EXPECT_STATUS(link_port(decoder, clusters[i], ports[i], 2000), LLMDD_SUCCESS);
  EXPECT_STATUS(link_port(decoder, clusters[N - 1], ports[N - 1], 2000),
                LLMDD_CLUSTER_NUM_EXCEED_LIMIT);
  EXPECT(strstr(last_error(), "16 clusters") != NULL);
  /* Unlinking makes room. */
  EXPECT_STATUS(llmdd_unlink(decoder, clusters[0], 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(link_port(decoder, clusters[N - 1], ports[N - 1], 2000), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  for (int i = 0; i < N; i++) EXPECT_STATUS(llmdd_engine_finalize(prompts[i]), LLMDD_SUCCESS);
}

/* A loopback port nobody listens on. */
static uint16_t closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &len);
  close(fd);
  return ntohs(a.sin_port);
}

/* A socket that listens but never accepts nor answers; the kernel still
 * completes connections into its backlog. */
static int silent_listener(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  listen(fd, 8);
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return fd;
}

TEST(link_to_a_closed_port_fails_at_once) {
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL);
  CHECK(decoder != 0);
  double start = now_ms();
  EXPECT_STATUS(link_port(decoder, 5, closed_port(), 5000), LLMDD_LINK_FAILED);
  double elapsed = now_ms() - start;
  printf("    refused after %.2f ms: %s\n", elapsed, last_error());
  EXPECT(strstr(last_error(), "refused") != NULL);
  EXPECT(elapsed < 500);
  EXPECT_STATUS(llmdd_unlink(decoder, 5, 0, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
}

TEST(link_to_a_silent_listener_fails_at_the_deadline) {
  uint16_t port;
  int listener = silent_listener(&port);
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL);
  CHECK(decoder != 0);
  double start = now_ms();
  EXPECT_STATUS(link_port(decoder, 5, port, 200), LLMDD_LINK_FAILED);
  double elapsed = now_ms() - start;
  printf("    gave up after %.2f ms (deadline 200 ms): %s\n", elapsed, last_error());
  EXPECT(strstr(last_error(), "deadline") != NULL);
  EXPECT(elapsed >= 195 && elapsed < 400);
  /* An expired job stops before connecting at all. */
  EXPECT_STATUS(link_port(decoder, 5, port, 0), LLMDD_WAIT_PROCESS_TIMEOUT);
  close(listener);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
}

TEST(link_checks_the_peer) {
  const char *two = "ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=65536";
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, two, &port);
  uint64_t one_device = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL);
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), two);
  CHECK(prompt && one_device && decoder);
  EXPECT_STATUS(link_port(decoder, cluster + 1, port, 2000), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "is cluster") != NULL);
  EXPECT_STATUS(link_port(one_device, cluster, port, 2000), LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "devices") != NULL);
  /* Failed links leave nothing behind; a good one still works. */
  EXPECT_STATUS(llmdd_unlink(decoder, cluster + 1, 0, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(link_port(decoder, cluster, port, 2000), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(one_device), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

TEST(unlink_then_link_again) {
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  uint64_t a[1], b[1];
  uint64_t src = allocate_rows(p.prompt, 1, 1, 64, 1, LAYOUT, p.prompt_cluster, 1, 1, true, a);
  uint64_t dst = allocate_rows(p.decoder, 1, 1, 64, 1, LAYOUT, 0, 0, 0, true, b);
  uint64_t job;
  CHECK_STATUS(llmdd_job_create(0, NULL, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_STATUS(llmdd_cache_pull(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 0, 0,
                                 LLMDD_WHOLE_ROW, job),
                LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  /* The expired unlink changed nothing. */
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 0, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_unlink(p.decoder, p.prompt_cluster, 0, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, 1, MODEL, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(link_port(p.decoder, p.prompt_cluster, p.port, 2000), LLMDD_SUCCESS);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_CACHE_KEY, p.prompt_cluster, 1, MODEL, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT(expect_row(b, dst, src, 0, 1, 0, 64, 1, 0, 0, 64, 0));
  pair_close(&p);
}

/* ---- background jobs ---- */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
#define MAX_DONE 64
static struct {
  uint64_t job;
  int32_t status;
} done_list[MAX_DONE];
static int num_done;

static void on_done(uint64_t job, int32_t status) {
  pthread_mutex_lock(&done_lock);
  if (num_done < MAX_DONE) {
    done_list[num_done].job = job;
    done_list[num_done++].status = status;
  }
  pthread_cond_broadcast(&done_cond);
  pthread_mutex_unlock(&done_lock);
}

/* Waits up to 10 s for a job's completion; returns its status, or INT32_MIN. */
static int32_t wait_done(uint64_t job) {
  for (double end = now_ms() + 10000; now_ms() < end; sleep_ms(0.2)) {
    pthread_mutex_lock(&done_lock);
    int32_t status = INT32_MIN;
    int count = 0;
    for (int i = 0; i < num_done; i++)
      if (done_list[i].job == job) status = done_list[i].status, count++;
    pthread_mutex_unlock(&done_lock);
    if (count > 0) {
      EXPECT(count == 1);
      return status;
    }
  }
  return INT32_MIN;
}

TEST(background_link_pull_and_unlink_report_through_the_callback) {
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  const char *options = "ge.flowGraphMemMaxSize=1048576";
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, options, &port);
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), options);
  CHECK(prompt && decoder);
  uint64_t a[1], b[1];
  uint64_t src = allocate_rows(prompt, 1, 1, 4096, 1, LAYOUT, cluster, 1, 1, true, a);
  uint64_t dst = allocate_rows(decoder, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, true, b);
  char address[32];
  snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)port);
  uint64_t jobs[6];
  for (int i = 0; i < 6; i++) CHECK_STATUS(llmdd_job_create(2000, on_done, &jobs[i]), LLMDD_SUCCESS);

  /* Validation errors come back at once, without a callback. */
  EXPECT_STATUS(llmdd_cache_pull(decoder, dst, LLMDD_KEY_BY_ID, cluster, src, 0, 0, LLMDD_WHOLE_ROW,
                                 jobs[0]),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(llmdd_link(decoder, cluster, (const uint8_t *)address, 3, jobs[0]), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_link(decoder, cluster, (const uint8_t *)address, (int32_t)strlen(address),
                          jobs[0]),
               LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(jobs[0]), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_pull(decoder, dst, LLMDD_KEY_CACHE_KEY, cluster, 1, MODEL, 0,
                                LLMDD_WHOLE_ROW, jobs[1]),
               LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(jobs[1]), LLMDD_SUCCESS);
  EXPECT(expect_row(b, dst, src, 0, 1, 0, 4096, 1, 0, 0, 4096, 0));
  /* Failures found by the PROMPT come through the callback, with a message. */
  CHECK_STATUS(llmdd_cache_pull(decoder, dst, LLMDD_KEY_CACHE_KEY, cluster, 1, MODEL, 0,
                                LLMDD_WHOLE_ROW, jobs[2]),
               LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(jobs[2]), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(job_message(jobs[2]), "no cache holds key") != NULL);
  CHECK_STATUS(llmdd_link(decoder, cluster, (const uint8_t *)address, (int32_t)strlen(address),
                          jobs[3]),
               LLMDD_ALREADY_LINK);
  CHECK_STATUS(llmdd_unlink(decoder, cluster, 0, jobs[4]), LLMDD_SUCCESS);
  EXPECT_STATUS(wait_done(jobs[4]), LLMDD_SUCCESS);
  for (int i = 0; i < 6; i++) EXPECT_STATUS(llmdd_job_release(jobs[i]), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

/* ---- large pulls: deadline, cancel, finalize, unlink ---- */

#define LARGE (256 * MiB)

struct large {
  struct pair p;
  uint64_t src, dst;
  uint64_t src_addr, dst_addr;
};

/* A pair with one LARGE cache on each side. The PROMPT's is filled when asked
 * (its pages exist); else the pull faults the pages in, which is slower. */
static bool large_open(struct large *l, bool fill) {
  if (!pair_open(&l->p, "ge.flowGraphMemMaxSize=272629760")) return false;
  l->src = allocate_rows(l->p.prompt, 1, 1, LARGE, 1, LAYOUT, l->p.prompt_cluster, 1, 1, false,
                         &l->src_addr);
  l->dst = allocate_rows(l->p.decoder, 1, 1, LARGE, 1, LAYOUT, 0, 0, 0, false, &l->dst_addr);
  if (fill && l->src) memset((void *)(uintptr_t)l->src_addr, 0x5A, LARGE);
  return l->src != 0 && l->dst != 0;
}

struct pull_thread {
  uint64_t engine, cache, cluster, remote_cache, job;
  atomic_bool started;
  int32_t status;
  double ended_at;
  char message[256];
};

static void *pull_in_thread(void *arg) {
  struct pull_thread *t = arg;
  atomic_store(&t->started, true);
  t->status = llmdd_cache_pull(t->engine, t->cache, LLMDD_KEY_BY_ID, t->cluster, t->remote_cache,
                               0, 0, LLMDD_WHOLE_ROW, t->job);
  t->ended_at = now_ms();
  snprintf(t->message, sizeof t->message, "%s", last_error());
  return NULL;
}

static void start_pull(struct pull_thread *t, pthread_t *thread, struct large *l, uint64_t job) {
  *t = (struct pull_thread){.engine = l->p.decoder, .cache = l->dst,
                            .cluster = l->p.prompt_cluster, .remote_cache = l->src, .job = job};
  pthread_create(thread, NULL, pull_in_thread, t);
  while (!atomic_load(&t->started)) sleep_ms(0.1);
}

TEST(large_pull_stops_at_its_deadline_and_on_cancel) {
  struct large l;
  CHECK(large_open(&l, false));
  uint64_t job;
  /* Long enough for the look-up round trip even on a loaded machine (a 5 ms
   * deadline once passed before the copy began), far too short for 256 MiB. */
  CHECK_STATUS(llmdd_job_create(20, NULL, &job), LLMDD_SUCCESS);
  double start = now_ms();
  EXPECT_STATUS(llmdd_cache_pull(l.p.decoder, l.dst, LLMDD_KEY_BY_ID, l.p.prompt_cluster, l.src,
                                 0, 0, LLMDD_WHOLE_ROW, job),
                LLMDD_WAIT_PROCESS_TIMEOUT);
  double elapsed = now_ms() - start;
  printf("    20 ms deadline: returned after %.2f ms: %s\n", elapsed, job_message(job));
  EXPECT(strstr(job_message(job), "bytes were pulled") != NULL);
  EXPECT(elapsed < 200);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);

  struct pull_thread t;
  pthread_t thread;
  CHECK_STATUS(llmdd_job_create(-1, NULL, &job), LLMDD_SUCCESS);
  start_pull(&t, &thread, &l, job);
  sleep_ms(3);
  double cancelled_at = now_ms();
  EXPECT_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  pthread_join(thread, NULL);
  printf("    cancel: stopped %.2f ms after it\n", t.ended_at - cancelled_at);
  EXPECT_STATUS(t.status, LLMDD_FAILED);
  EXPECT(strcmp(t.message, "cancelled") == 0);
  EXPECT(t.ended_at - cancelled_at < 200);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);

  /* Neither left a pin: the PROMPT's memory returns. */
  EXPECT_STATUS(llmdd_cache_key_remove(l.p.prompt, l.p.prompt_cluster, 1, MODEL), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(l.p.prompt, l.src), LLMDD_SUCCESS);
  EXPECT(wait_pool_used(l.p.prompt, 0, 0, 2000));
  pair_close(&l.p);
}

TEST(finalize_of_the_decoder_during_a_pull) {
  struct large l;
  CHECK(large_open(&l, false));
  struct pull_thread t;
  pthread_t thread;
  start_pull(&t, &thread, &l, 0);
  sleep_ms(3);
  EXPECT_STATUS(llmdd_engine_finalize(l.p.decoder), LLMDD_SUCCESS);
  double finalized_at = now_ms();
  pthread_join(thread, NULL);
  printf("    the pull ended with 0x%08x: %s\n", (unsigned)t.status, t.message);
  EXPECT(t.status == LLMDD_ENGINE_FINALIZED || t.status == LLMDD_SUCCESS);
  EXPECT(t.ended_at - finalized_at < 200);
  /* The PROMPT got its pin back when the connection closed. */
  EXPECT_STATUS(llmdd_cache_key_remove(l.p.prompt, l.p.prompt_cluster, 1, MODEL), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(l.p.prompt, l.src), LLMDD_SUCCESS);
  EXPECT(wait_pool_used(l.p.prompt, 0, 0, 2000));
  EXPECT_STATUS(llmdd_engine_finalize(l.p.prompt), LLMDD_SUCCESS);
}

TEST(finalize_of_the_prompt_during_a_pull) {
  struct large l;
  CHECK(large_open(&l, false));
  struct pull_thread t;
  pthread_t thread;
  start_pull(&t, &thread, &l, 0);
  sleep_ms(3);
  double start = now_ms();
  EXPECT_STATUS(llmdd_engine_finalize(l.p.prompt), LLMDD_SUCCESS);
  double finalized_at = now_ms();
  pthread_join(thread, NULL);
  printf("    finalize took %.2f ms; the pull ended %.2f ms after it with 0x%08x: %s\n",
         finalized_at - start, t.ended_at - finalized_at, (unsigned)t.status, t.message);
  EXPECT(t.status == LLMDD_LINK_FAILED || t.status == LLMDD_SUCCESS);
  EXPECT(t.ended_at - finalized_at < 200);
  /* The link is broken, and says so, until unlinked. */
  EXPECT_STATUS(pull_row(l.p.decoder, l.dst, LLMDD_KEY_BY_ID, l.p.prompt_cluster, l.src, 0, 0, 64,
                         2000),
                LLMDD_LINK_FAILED);
  EXPECT_STATUS(llmdd_unlink(l.p.decoder, l.p.prompt_cluster, 0, 0), LLMDD_UNLINK_FAILED);
  EXPECT_STATUS(llmdd_unlink(l.p.decoder, l.p.prompt_cluster, 1, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(llmdd_engine_finalize(l.p.decoder), LLMDD_SUCCESS);
}

TEST(unlink_waits_for_a_running_pull) {
  struct large l;
  CHECK(large_open(&l, true));
  struct pull_thread t;
  pthread_t thread;
  start_pull(&t, &thread, &l, 0);
  sleep_ms(3);
  EXPECT_STATUS(llmdd_unlink(l.p.decoder, l.p.prompt_cluster, 0, 0), LLMDD_SUCCESS);
  pthread_join(thread, NULL);
  /* Had the unlink not waited, the PROMPT would have dropped the pull's pin and
   * closed the connection under it: LINK_FAILED. */
  EXPECT_STATUS(t.status, LLMDD_SUCCESS);
  const uint8_t *dst = (const uint8_t *)(uintptr_t)l.dst_addr;
  EXPECT(dst[0] == 0x5A && dst[LARGE / 2] == 0x5A && dst[LARGE - 1] == 0x5A);
  pair_close(&l.p);
}

/* ---- several pulls on one link ---- */

struct puller {
  struct pair *p;
  uint64_t src, dst, dst_addr;
  int index;
  int timeouts, successes;
};

/* Pulls with deadlines from 0 to a few ms, so that some give up while waiting
 * for the link or for their answer; the next reader must then skip the stale
 * answer and release its pin. */
static void *puller_main(void *arg) {
  struct puller *w = arg;
  uint64_t seed = 0x1234567u + (uint64_t)w->index;
  for (int i = 0; i < 300 && !harness_failed(); i++) {
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int32_t timeout = (int32_t)(seed % 4) == 0 ? (int32_t)(seed >> 8) % 3 : 2000;
    int32_t status = pull_row(w->p->decoder, w->dst, LLMDD_KEY_BY_ID, w->p->prompt_cluster, w->src,
                              0, 0, LLMDD_WHOLE_ROW, timeout);
    if (status == LLMDD_WAIT_PROCESS_TIMEOUT) {
      w->timeouts++;
      continue;
    }
    if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) {
      fprintf(stderr, "    %s\n", last_error());
      break;
    }
    w->successes++;
    EXPECT(find_mismatch((const uint8_t *)(uintptr_t)w->dst_addr, 4096, w->src, 0, 0) == UINT64_MAX);
  }
  return NULL;
}

TEST(concurrent_pulls_share_a_link) {
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  enum { THREADS = 4 };
  struct puller w[THREADS];
  pthread_t threads[THREADS];
  uint64_t src_addr;
  uint64_t src = allocate_rows(p.prompt, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, true, &src_addr);
  CHECK(src != 0);
  for (int i = 0; i < THREADS; i++) {
    w[i] = (struct puller){.p = &p, .src = src, .index = i};
    w[i].dst = allocate_rows(p.decoder, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, false, &w[i].dst_addr);
    CHECK(w[i].dst != 0);
  }
  for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, puller_main, &w[i]);
  int timeouts = 0, successes = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
    timeouts += w[i].timeouts;
    successes += w[i].successes;
  }
  printf("    %d pulls succeeded, %d timed out\n", successes, timeouts);
  EXPECT(successes > 0);
  /* No pin was left behind by the pulls that gave up (their answers may still
   * be unread), and the link is still in step. */
  uint64_t spare_addr;
  uint64_t spare = allocate_rows(p.prompt, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, true, &spare_addr);
  EXPECT_STATUS(llmdd_cache_deallocate(p.prompt, src), LLMDD_SUCCESS);
  EXPECT(wait_pool_used(p.prompt, 0, 4096, 2000));
  EXPECT_STATUS(pull_row(p.decoder, w[0].dst, LLMDD_KEY_BY_ID, p.prompt_cluster, spare, 0, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT(find_mismatch((const uint8_t *)(uintptr_t)w[0].dst_addr, 4096, spare, 0, 0) == UINT64_MAX);
  pair_close(&p);
}

/* ---- peers that misbehave ---- */

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A header: magic, this version (proto.h), type, body length, flags 0, seq 1. */
static void header(uint8_t h[24], uint32_t magic, uint16_t type, uint32_t length) {
  memset(h, 0, 24);
  put32(h, magic);
  put32(h + 4, PROTO_VERSION | (uint32_t)type << 16);
  put32(h + 8, length);
  h[16] = 1;
}

static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}

static bool recv_exact(int fd, uint8_t *buf, size_t n) {
  for (size_t got = 0; got < n;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0) return false;
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r <= 0) return false;
    got += (size_t)r;
  }
  return true;
}

/* The DECODER's side of the authentication (ffi/host/auth.h) with this user's
 * key, as a raw client: AUTH, check the CHALLENGE, PROOF. */
static bool raw_authenticate(int fd) {
  struct link_key key;
  uint8_t msg[24 + 64], nonce_d[32], want[32];
  if (host_auth_key(NULL, 0, &key) != LLMDD_SUCCESS || host_auth_nonce(nonce_d) != LLMDD_SUCCESS)
    return false;
  header(msg, 0x44444C4C, 8, 32);
  memcpy(msg + 24, nonce_d, 32);
  if (send(fd, msg, 56, MSG_NOSIGNAL) != 56 || !recv_exact(fd, msg, 24 + 64) || msg[6] != 9)
    return false;
  host_auth_prompt_mac(&key, nonce_d, msg + 24, want);
  if (memcmp(want, msg + 56, 32) != 0) return false;
  host_auth_decoder_mac(&key, nonce_d, msg + 24, want);
  uint8_t proof[56];
  header(proof, 0x44444C4C, 10, 32);
  memcpy(proof + 24, want, 32);
  return send(fd, proof, 56, MSG_NOSIGNAL) == 56;
}

static int raw_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether the server closes the connection within a second, after sending at
 * most `answer` bytes (which are read into buf). */
static bool closed_by_server(int fd, uint8_t *buf, size_t answer) {
  size_t got = 0;
  for (double end = now_ms() + 1000; now_ms() < end;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    uint8_t scratch[512];
    ssize_t n = recv(fd, scratch, sizeof scratch, 0);
    if (n <= 0) return got <= answer;
    if (buf && got + (size_t)n <= answer) memcpy(buf + got, scratch, (size_t)n);
    got += (size_t)n;
  }
  return false;
}

/* An authenticated peer's pins are bounded (1024 per connection) and all go
 * when its connection closes: even a linked DECODER cannot keep a pool full. */
TEST(pins_of_one_connection_are_bounded_and_go_with_it) {
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=1048576", &port);
  CHECK(prompt != 0);
  uint64_t id, addr;
  CHECK_STATUS(llmdd_cache_allocate(prompt, 1, 4096, 1, LAYOUT, 1, NULL, 0, &id, &addr, 1),
               LLMDD_SUCCESS);
  int fd = raw_connect(port);
  CHECK(fd >= 0);
  EXPECT(raw_authenticate(fd));
  uint8_t msg[24 + 64], answer[24 + 80 + 8];
  header(msg, 0x44444C4C, 1, 24);
  memset(msg + 24, 0, 24);
  put64(msg + 32, cluster);
  put32(msg + 40, LLMDD_ABI_VERSION);
  put32(msg + 44, 1);
  EXPECT(send(fd, msg, 48, MSG_NOSIGNAL) == 48);
  EXPECT(recv_exact(fd, answer, 24 + 40));
  int pinned = 0, refused = 0;
  for (int i = 0; i < 1100; i++) {
    header(msg, 0x44444C4C, 3, 32);
    put64(msg + 16, (uint64_t)i + 2); /* seq: the pin's name */
    memset(msg + 24, 0, 32);
    put32(msg + 24, LLMDD_KEY_BY_ID);
    put64(msg + 40, id);
    /* A refusal names no device: its body is shorter. */
    if (!EXPECT(send(fd, msg, 56, MSG_NOSIGNAL) == 56) || !EXPECT(recv_exact(fd, answer, 24)))
      break;
    uint32_t body = (uint32_t)answer[8] | (uint32_t)answer[9] << 8;
    if (!EXPECT(body <= 88 && recv_exact(fd, answer + 24, body))) break;
    uint32_t status = (uint32_t)answer[24] | (uint32_t)answer[25] << 8 |
                      (uint32_t)answer[26] << 16 | (uint32_t)answer[27] << 24;
    if (status == 0) pinned++;
    else refused++;
  }
  printf("    %d pinned, %d refused\n", pinned, refused);
  EXPECT(pinned == 1024 && refused == 76);
  /* Pinned: the memory stays after the id is released... */
  EXPECT_STATUS(llmdd_cache_deallocate(prompt, id), LLMDD_SUCCESS);
  EXPECT(pool_used(prompt, 0) > 0);
  /* ...until the connection closes. */
  close(fd);
  EXPECT(wait_pool_used(prompt, 0, 0, 3000));
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

TEST(malformed_messages_close_only_their_connection) {
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  uint64_t a[1], b[1];
  uint64_t src = allocate_rows(p.prompt, 1, 1, 64, 1, LAYOUT, 0, 0, 0, true, a);
  uint64_t dst = allocate_rows(p.decoder, 1, 1, 64, 1, LAYOUT, 0, 0, 0, true, b);
  uint8_t msg[24 + 64];
  struct {
    const char *what;
    uint32_t magic;
    uint16_t type;
    uint32_t length;
    uint32_t send_bytes;
  } cases[] = {
      {"bad magic", 0x12345678, 1, 24, 48},
      {"huge length", 0x44444C4C, 1, 0x7fffffff, 24},
      {"length beyond the largest message", 0x44444C4C, 1, 4096, 24},
      {"wrong length for HELLO", 0x44444C4C, 1, 16, 40},
      {"unknown type", 0x44444C4C, 99, 0, 24},
      {"an answer sent as a request", 0x44444C4C, 2, 24, 48},
      {"LOOKUP before HELLO", 0x44444C4C, 3, 32, 56},
      {"DONE before HELLO", 0x44444C4C, 5, 16, 40},
      {"HELLO before AUTH", 0x44444C4C, 1, 24, 48},
      {"PROOF before AUTH", 0x44444C4C, 10, 32, 56},
      {"a CHALLENGE sent as a request", 0x44444C4C, 9, 64, 88},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int fd = raw_connect(p.port);
    CHECK(fd >= 0);
    memset(msg, 0, sizeof msg);
    header(msg, cases[i].magic, cases[i].type, cases[i].length);
    EXPECT(send(fd, msg, cases[i].send_bytes, MSG_NOSIGNAL) == (ssize_t)cases[i].send_bytes);
    if (!EXPECT(closed_by_server(fd, NULL, 0))) fprintf(stderr, "    case: %s\n", cases[i].what);
    close(fd);
    /* The real link is unaffected. */
    EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 0, 0,
                           LLMDD_WHOLE_ROW, 2000),
                  LLMDD_SUCCESS);
  }

  /* A HELLO is not answered before the link is authenticated: a stranger does
   * not learn the cluster id (issue 10). */
  int fd = raw_connect(p.port);
  CHECK(fd >= 0);
  header(msg, 0x44444C4C, 1, 24);
  memset(msg + 24, 0, 24);
  msg[32] = 1;
  put32(msg + 40, LLMDD_ABI_VERSION);
  put32(msg + 44, 1);
  EXPECT(send(fd, msg, 48, MSG_NOSIGNAL) == 48);
  EXPECT(closed_by_server(fd, NULL, 0));
  close(fd);

  /* A wrong proof closes the connection without an answer. */
  fd = raw_connect(p.port);
  CHECK(fd >= 0);
  header(msg, 0x44444C4C, 8, 32);
  memset(msg + 24, 7, 32);
  EXPECT(send(fd, msg, 56, MSG_NOSIGNAL) == 56);
  uint8_t challenge[88];
  EXPECT(recv_exact(fd, challenge, sizeof challenge) && challenge[6] == 9);
  header(msg, 0x44444C4C, 10, 32);
  memset(msg + 24, 0, 32);
  EXPECT(send(fd, msg, 56, MSG_NOSIGNAL) == 56);
  EXPECT(closed_by_server(fd, NULL, 0));
  close(fd);

  /* Once authenticated, a HELLO for another cluster is answered (LINK_FAILED),
   * then closed. */
  fd = raw_connect(p.port);
  CHECK(fd >= 0);
  EXPECT(raw_authenticate(fd));
  header(msg, 0x44444C4C, 1, 24);
  memset(msg + 24, 0, 24);
  msg[32] = 1; /* expected cluster 1: not this PROMPT's */
  put32(msg + 40, LLMDD_ABI_VERSION);
  put32(msg + 44, 1);
  EXPECT(send(fd, msg, 48, MSG_NOSIGNAL) == 48);
  uint8_t answer[56];
  EXPECT(closed_by_server(fd, answer, sizeof answer));
  EXPECT(answer[24] == 0x09 && answer[25] == 0xB0 && answer[26] == 0x10 && answer[27] == 0x50);
  close(fd);

  /* Requests from a peer that resets the connection at once: the server's answer
   * hits a dead socket, which must not raise SIGPIPE (it would end this test). */
  for (int i = 0; i < 20; i++) {
    fd = raw_connect(p.port);
    CHECK(fd >= 0);
    header(msg, 0x44444C4C, 8, 32);
    memset(msg + 24, 0, 32);
    send(fd, msg, 56, MSG_NOSIGNAL); /* AUTH: answered with a CHALLENGE */
    struct linger hard = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close(fd);
  }
  sleep_ms(20);
  EXPECT_STATUS(pull_row(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 0, 0,
                         LLMDD_WHOLE_ROW, 2000),
                LLMDD_SUCCESS);
  EXPECT(expect_row(b, dst, src, 0, 1, 0, 64, 1, 0, 0, 64, 0));
  pair_close(&p);
}

/* ---- speed (printed; the bounds are loose, the sanitizers are on) ---- */

struct echo {
  int listener;
  int rounds;
};

static void *echo_main(void *arg) {
  struct echo *e = arg;
  int fd = accept(e->listener, NULL, NULL);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t buf[64];
  for (int i = 0; i < e->rounds; i++) {
    size_t got = 0;
    while (got < sizeof buf) {
      ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
      if (n <= 0) break;
      got += (size_t)n;
    }
    send(fd, buf, sizeof buf, MSG_NOSIGNAL);
  }
  close(fd);
  return NULL;
}

/* The mean time of a 64-byte request and answer over loopback TCP, in µs. */
static double loopback_round_trip_us(int rounds) {
  uint16_t port;
  struct echo e = {.listener = silent_listener(&port), .rounds = rounds};
  pthread_t thread;
  pthread_create(&thread, NULL, echo_main, &e);
  int fd = raw_connect(port);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t buf[64] = {0};
  double start = now_ms();
  for (int i = 0; i < rounds; i++) {
    send(fd, buf, sizeof buf, MSG_NOSIGNAL);
    size_t got = 0;
    while (got < sizeof buf) {
      ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
      if (n <= 0) break;
      got += (size_t)n;
    }
  }
  double us = (now_ms() - start) * 1000 / rounds;
  pthread_join(thread, NULL);
  close(fd);
  close(e.listener);
  return us;
}

TEST(pull_speed_report) {
  enum { ROUNDS = 2000 };
  double rtt = loopback_round_trip_us(ROUNDS);
  struct pair p;
  CHECK(pair_open(&p, "ge.flowGraphMemMaxSize=1048576"));
  uint64_t a, b;
  uint64_t src = allocate_rows(p.prompt, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, true, &a);
  uint64_t dst = allocate_rows(p.decoder, 1, 1, 4096, 1, LAYOUT, 0, 0, 0, false, &b);
  CHECK(src && dst);
  double start = now_ms();
  for (int i = 0; i < ROUNDS; i++)
    if (!EXPECT_STATUS(llmdd_cache_pull(p.decoder, dst, LLMDD_KEY_BY_ID, p.prompt_cluster, src, 0,
                                        0, LLMDD_WHOLE_ROW, 0),
                       LLMDD_SUCCESS))
      break;
  double pull = (now_ms() - start) * 1000 / ROUNDS;
  printf("    4 KiB pull: %.1f us; 64-byte loopback round trip: %.1f us (x%.2f)\n", pull, rtt,
         pull / rtt);
  EXPECT(pull < 2000);
  pair_close(&p);

  struct large l;
  CHECK(large_open(&l, true));
  double times[2];
  for (int i = 0; i < 2; i++) {
    start = now_ms();
    EXPECT_STATUS(pull_row(l.p.decoder, l.dst, LLMDD_KEY_BY_ID, l.p.prompt_cluster, l.src, 0, 0,
                           LLMDD_WHOLE_ROW, 20000),
                  LLMDD_SUCCESS);
    times[i] = now_ms() - start;
  }
  uint8_t *x = (uint8_t *)(uintptr_t)l.dst_addr, *y = malloc(LARGE);
  memset(y, 1, LARGE);
  __asm__ volatile("" : : "r"(y) : "memory"); /* keep the memset: the pages must exist */
  start = now_ms();
  memcpy(y, x, LARGE);
  double copy = now_ms() - start;
  EXPECT(y[LARGE / 3] == 0x5A); /* uses the copy, so it is not optimized away */
  free(y);
  printf("    256 MiB pull: %.2f GB/s into fresh pages, %.2f GB/s into touched ones;"
         " memcpy %.2f GB/s\n",
         LARGE / times[0] / 1e6, LARGE / times[1] / 1e6, LARGE / copy / 1e6);
  pair_close(&l.p);
}

/* ---- a PROMPT that lies: the DECODER must never trust what it is told ---- */

enum lie {
  LIE_NONE,           /* a correct answer */
  LIE_WRONG_KEY,      /* AUTH answered with a MAC under another key */
  LIE_BAD_MAGIC,      /* HELLO answered with garbage */
  LIE_SHORT_HELLO,    /* HELLO_REPLY one device short of its length */
  LIE_NO_SUCH_POOL,   /* a pool descriptor that is not the object reported */
  LIE_UNSEALED,       /* a pool that could shrink under the DECODER (SIGBUS) */
  LIE_OTHER_PID,      /* HELLO_REPLY names a process other than the socket's */
  LIE_HANG_UP,        /* closes right after HELLO */
  LIE_OFFSET_BEYOND,  /* LOOKUP: the cache starts past the pool */
  LIE_OFFSET_NEAR_END,/* LOOKUP: the cache runs past the pool's end */
  LIE_STRIDE,         /* LOOKUP: stride below the tensor size */
  LIE_OVERFLOW,       /* LOOKUP: num_tensors x stride overflows */
  LIE_ROW,            /* LOOKUP: row beyond the batch */
  LIE_BATCH,          /* LOOKUP: tensor_bytes not a multiple of batch_size */
  LIE_SEQ,            /* LOOKUP: answers a request that was never sent */
  LIE_COUNT
};

struct liar {
  int listener;
  int local_listener; /* its Unix socket, where the DECODER asks for the pools */
  uint16_t port;
  uint64_t cluster;
  uint64_t pool_bytes;
  uint64_t object_id, unsealed_id;
  int pool_ro, unsealed; /* descriptors it hands out */
  enum lie lie;
};

/* The PROMPT's side of the authentication, with this user's key (or another
 * key for LIE_WRONG_KEY). */
static bool liar_authenticate(int fd, enum lie lie) {
  struct link_key key;
  uint8_t in[24 + 32], out[24 + 64], nonce_p[32], want[32];
  if (host_auth_key(NULL, 0, &key) != LLMDD_SUCCESS || host_auth_nonce(nonce_p) != LLMDD_SUCCESS)
    return false;
  if (lie == LIE_WRONG_KEY) key.bytes[0] ^= 1;
  if (!recv_exact(fd, in, sizeof in) || in[6] != 8) return false;
  header(out, 0x44444C4C, 9, 64);
  memcpy(out + 16, in + 16, 8); /* seq */
  memcpy(out + 24, nonce_p, 32);
  host_auth_prompt_mac(&key, in + 24, nonce_p, out + 56);
  uint8_t nonce_d[32];
  memcpy(nonce_d, in + 24, 32);
  if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out) return false;
  if (!recv_exact(fd, in, sizeof in) || in[6] != 10) return false;
  host_auth_decoder_mac(&key, nonce_d, nonce_p, want);
  return memcmp(want, in + 24, 32) == 0;
}

/* Answers the DECODER's request on the Unix socket with the liar's pool. */
static void liar_serve_pools(struct liar *l) {
  struct pollfd p = {l->local_listener, POLLIN, 0};
  if (poll(&p, 1, 2000) <= 0) return;
  int fd = accept4(l->local_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  struct pool pool = {.fd = -1, .ro_fd = l->lie == LIE_UNSEALED ? l->unsealed : l->pool_ro};
  struct core_guard g = core_guard_for(2000, "serving the liar's pools");
  host_local_serve(fd, l->cluster, &pool, 1, l->pool_bytes, false, -1, &g, -1);
  close(fd);
}

/* Serves one connection the way `lie` says, then waits for the DECODER to go. */
static void *liar_main(void *arg) {
  struct liar *l = arg;
  int fd = accept(l->listener, NULL, NULL);
  uint8_t in[64], out[128];
  if (fd < 0) return NULL;
  if (!liar_authenticate(fd, l->lie)) goto done;
  if (!recv_exact(fd, in, 48)) goto done;
  memset(out, 0, sizeof out);
  header(out, l->lie == LIE_BAD_MAGIC ? 0xBADBAD : 0x44444C4C, 2,
         l->lie == LIE_SHORT_HELLO ? 32 : 40);
  memcpy(out + 16, in + 16, 8); /* seq */
  put32(out + 24, 0);
  put32(out + 28, 1);
  put64(out + 32, l->cluster);
  put64(out + 40, l->pool_bytes);
  put32(out + 48, (uint32_t)getpid() + (l->lie == LIE_OTHER_PID));
  put64(out + 56, l->lie == LIE_NO_SUCH_POOL ? l->object_id + 1
                  : l->lie == LIE_UNSEALED   ? l->unsealed_id
                                             : l->object_id);
  if (l->lie == LIE_HANG_UP) {
    close(fd);
    return NULL;
  }
  send(fd, out, l->lie == LIE_SHORT_HELLO ? 56 : 64, MSG_NOSIGNAL);
  if (l->lie == LIE_BAD_MAGIC || l->lie == LIE_SHORT_HELLO) goto done;
  liar_serve_pools(l);
  if (l->lie < LIE_OFFSET_BEYOND && l->lie != LIE_NONE) goto done;
  if (!recv_exact(fd, in, 56)) goto done;
  uint64_t tensor = 4096, batch = 1, row = 0, stride = 4096, tensors = 1, offset = 8192;
  switch (l->lie) {
  case LIE_OFFSET_BEYOND: offset = l->pool_bytes; break;
  case LIE_OFFSET_NEAR_END: offset = l->pool_bytes - 100; break;
  case LIE_STRIDE: stride = 64; break;
  case LIE_OVERFLOW: tensors = 0x7fffffff, stride = (uint64_t)1 << 40; break;
  case LIE_ROW: row = 1; break;
  case LIE_BATCH: batch = 3; break;
  default: break;
  }
  memset(out, 0, sizeof out);
  header(out, 0x44444C4C, 4, 88);
  memcpy(out + 16, in + 16, 8);
  if (l->lie == LIE_SEQ) out[16] += 5;
  put32(out + 24, 0);
  put32(out + 28, (uint32_t)tensors);
  memcpy(out + 32, in + 16, 8); /* pin = seq */
  put64(out + 40, LAYOUT);
  put64(out + 48, tensor);
  put64(out + 56, batch);
  put64(out + 64, row);
  put64(out + 72, stride);
  put32(out + 80, 1); /* devices; then where, the two generations: 0 */
  put64(out + 104, offset);
  send(fd, out, 112, MSG_NOSIGNAL);
done:
  /* Until the DECODER goes: DONE is read, UNLINK answered. */
  while (recv_exact(fd, in, 24)) {
    if (in[6] == 5 && !recv_exact(fd, in + 24, 16)) break;
    if (in[6] != 6) continue;
    memcpy(out, in, 24);
    out[6] = 7;
    out[8] = 8;
    memset(out + 24, 0, 8);
    send(fd, out, 32, MSG_NOSIGNAL);
  }
  close(fd);
  return NULL;
}

TEST(a_lying_prompt_breaks_the_link_not_the_decoder) {
  /* The liar's pool: a sealed memory file, as a real PROMPT's, and one that is
   * not sealed. */
  struct liar l = {.cluster = unique_cluster_id(), .pool_bytes = 1 * MiB};
  int pool = host_shm_create(l.pool_bytes, &l.object_id, &l.pool_ro);
  CHECK(pool >= 0);
  uint8_t row[4096];
  fill_pattern(row, sizeof row, 99, 0, 0);
  CHECK(pwrite(pool, row, sizeof row, 8192) == (ssize_t)sizeof row);
  l.unsealed = memfd_create("unsealed", MFD_CLOEXEC);
  CHECK(l.unsealed >= 0 && ftruncate(l.unsealed, (off_t)l.pool_bytes) == 0);
  struct stat st;
  CHECK(fstat(l.unsealed, &st) == 0);
  l.unsealed_id = (uint64_t)st.st_ino;
  CHECK_STATUS(host_local_listen(l.cluster, &l.local_listener), LLMDD_SUCCESS);
  l.listener = silent_listener(&l.port);
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(decoder != 0);
  uint64_t dst, addr;
  CHECK_STATUS(llmdd_cache_allocate(decoder, 1, 4096, 1, LAYOUT, 1, NULL, 0, &dst, &addr, 1),
               LLMDD_SUCCESS);
  for (int lie = LIE_NONE; lie < LIE_COUNT; lie++) {
    l.lie = (enum lie)lie;
    pthread_t thread;
    pthread_create(&thread, NULL, liar_main, &l);
    int32_t status = link_port(decoder, l.cluster, l.port, 2000);
    if (lie < LIE_OFFSET_BEYOND && lie != LIE_NONE) {
      if (!EXPECT_STATUS(status, LLMDD_LINK_FAILED)) fprintf(stderr, "    lie %d\n", lie);
      else printf("    lie %d: %s\n", lie, last_error());
    } else if (EXPECT_STATUS(status, LLMDD_SUCCESS)) {
      status = pull_row(decoder, dst, LLMDD_KEY_BY_ID, l.cluster, 1, 0, 0, LLMDD_WHOLE_ROW, 2000);
      if (lie == LIE_NONE) {
        EXPECT_STATUS(status, LLMDD_SUCCESS);
        EXPECT(find_mismatch((const uint8_t *)(uintptr_t)addr, 4096, 99, 0, 0) == UINT64_MAX);
      } else if (!EXPECT_STATUS(status, LLMDD_LINK_FAILED)) {
        fprintf(stderr, "    lie %d\n", lie);
      }
      EXPECT_STATUS(llmdd_unlink(decoder, l.cluster, 1, 0), LLMDD_SUCCESS);
    } else {
      fprintf(stderr, "    lie %d: %s\n", lie, last_error());
    }
    pthread_join(thread, NULL);
  }
  close(l.listener);
  close(l.local_listener);
  char path[96];
  cluster_file_path(path, l.cluster, "sock");
  unlink(path);
  close(pool);
  close(l.pool_ro);
  close(l.unsealed);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
}

