/* Caches: allocation, reads, copies, keys and the pool accounting behind them. */
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

static uint64_t round64(uint64_t n) { return (n + 63) / 64 * 64; }

/* Reads every tensor on every device with job 0 and with a job, checking the
 * pattern allocate_filled() wrote. */
static void expect_cache_reads_back(uint64_t engine, uint64_t id, int32_t devices,
                                    int32_t tensors, uint64_t bytes) {
  uint8_t *out = malloc(bytes);
  uint64_t job;
  EXPECT_STATUS(llmdd_job_create(-1, NULL, &job), LLMDD_SUCCESS);
  for (int32_t d = 0; d < devices; d++) {
    for (int32_t t = 0; t < tensors; t++) {
      memset(out, 0, bytes);
      EXPECT_STATUS(llmdd_cache_read(engine, id, t, d, out, bytes, 0), LLMDD_SUCCESS);
      if (!EXPECT(find_mismatch(out, bytes, id, d, t) == UINT64_MAX))
        fprintf(stderr, "    cache %llu device %d tensor %d of %llu bytes\n",
                (unsigned long long)id, d, t, (unsigned long long)bytes);
      memset(out, 0, bytes);
      EXPECT_STATUS(llmdd_cache_read(engine, id, t, d, out, bytes, job), LLMDD_SUCCESS);
      EXPECT(find_mismatch(out, bytes, id, d, t) == UINT64_MAX);
    }
  }
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  free(out);
}

TEST(allocate_read_deallocate_round_trips_many_sizes) {
  static const uint64_t sizes[] = {1,     7,     63,    64,         65,          1000,
                                   4096,  16384, 16385, 1 * MiB - 1, 1 * MiB,    1 * MiB + 7,
                                   3 * MiB + 5};
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint64_t id;
    CHECK_STATUS(allocate_filled(engine, 3, sizes[i], &id), LLMDD_SUCCESS);
    EXPECT(pool_used(engine, 0) == 3 * round64(sizes[i]));
    expect_cache_reads_back(engine, id, 1, 3, sizes[i]);
    EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
    EXPECT(pool_used(engine, 0) == 0);
  }
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(tensors_are_64_byte_aligned_and_strided) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1");
  CHECK(engine != 0);
  static const uint64_t sizes[] = {1, 63, 100, 129, 4095};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint64_t id, addrs[2 * 5];
    CHECK_STATUS(llmdd_cache_allocate(engine, 5, sizes[i], 1, 0, LLMDD_PLACEMENT_HOST, NULL, 0,
                                      &id, addrs, 10),
                 LLMDD_SUCCESS);
    for (int d = 0; d < 2; d++) {
      for (int t = 0; t < 5; t++) {
        EXPECT(addrs[d * 5 + t] % 64 == 0);
        if (t > 0) EXPECT(addrs[d * 5 + t] - addrs[d * 5 + t - 1] == round64(sizes[i]));
      }
    }
    EXPECT(addrs[0] != addrs[5]);
  }
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(cache_ids_start_at_1_and_are_never_reused) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t ids[5];
  for (int i = 0; i < 5; i++) {
    CHECK_STATUS(allocate_filled(engine, 1, 64, &ids[i]), LLMDD_SUCCESS);
    EXPECT(ids[i] == (uint64_t)i + 1);
  }
  EXPECT_STATUS(llmdd_cache_deallocate(engine, ids[4]), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, ids[0]), LLMDD_SUCCESS);
  uint64_t next;
  CHECK_STATUS(allocate_filled(engine, 1, 64, &next), LLMDD_SUCCESS);
  EXPECT(next == 6);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, ids[0]), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, 99), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "cache 99") != NULL);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(two_devices_hold_separate_copies) {
  uint64_t engine = open_engine("ge.exec.deviceId=3;7\nge.flowGraphMemMaxSize=8388608");
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 4, 1 * MiB + 100, &id), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 4 * round64(1 * MiB + 100));
  EXPECT(pool_used(engine, 1) == 4 * round64(1 * MiB + 100));
  expect_cache_reads_back(engine, id, 2, 4, 1 * MiB + 100);
  uint8_t *out = malloc(1 * MiB + 100);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 2, out, 1 * MiB + 100, 0), LLMDD_PARAM_INVALID);
  free(out);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0 && pool_used(engine, 1) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(read_rejects_bad_arguments) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 5, 100, &id), LLMDD_SUCCESS);
  uint8_t out[128];
  EXPECT_STATUS(llmdd_cache_read(engine, id, 5, 0, out, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "tensor_index 5 is out of range [0, 5)") != NULL);
  EXPECT_STATUS(llmdd_cache_read(engine, id, -1, 0, out, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 1, out, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "device_index 1") != NULL);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, -1, out, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, NULL, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 99, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "out_len 99") != NULL);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 101, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 128, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(engine, 0, 0, 0, out, 100, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_read(engine, id + 1, 0, 0, out, 100, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 4, 0, out, 100, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 100, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(allocate_rejects_bad_arguments) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1");
  CHECK(engine != 0);
  uint64_t id, addrs[8];
  const uint64_t key[3] = {1, 2, 3};
  EXPECT_STATUS(llmdd_cache_allocate(engine, 0, 64, 1, 0, 1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "num_tensors 0") != NULL);
  EXPECT_STATUS(llmdd_cache_allocate(engine, -3, 64, 1, 0, 1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 0, 1, 0, 1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, UINT64_MAX, 1, 0, 1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 4, (uint64_t)1 << 61, 1, 0, 1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "too large") != NULL);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 2, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "placement 2") != NULL);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, -1, NULL, 0, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, key, -1, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, NULL, 1, &id, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, NULL, 0, NULL, addrs, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, NULL, 0, &id, NULL, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 4, 64, 1, 0, 1, NULL, 0, &id, addrs, 7), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "addrs_cap 7") != NULL);
  EXPECT(pool_used(engine, 0) == 0 && pool_used(engine, 1) == 0);
  /* Neither the key nor an id was consumed by the failures. */
  CHECK_STATUS(llmdd_cache_allocate(engine, 4, 64, 1, 0, 1, key, 1, &id, addrs, 8), LLMDD_SUCCESS);
  EXPECT(id == 1);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(exhaustion_allocates_nothing_and_recovers_after_free) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=1048576");
  CHECK(engine != 0);
  uint64_t a, b, c;
  CHECK_STATUS(allocate_filled(engine, 3, 200000, &a), LLMDD_SUCCESS);
  uint64_t used = pool_used(engine, 0);
  EXPECT(used == 3 * round64(200000));
  EXPECT_STATUS(allocate_filled(engine, 3, 200000, &b), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(strstr(last_error(), "device 0") != NULL);
  EXPECT(pool_used(engine, 0) == used && pool_used(engine, 1) == used);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 3, 200000, &b), LLMDD_SUCCESS);
  EXPECT(b == a + 1);
  expect_cache_reads_back(engine, b, 2, 3, 200000);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, b), LLMDD_SUCCESS);

  /* The whole pool, exactly, then not a byte more. */
  CHECK_STATUS(allocate_filled(engine, 16, 65536, &c), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 1) == 1048576);
  EXPECT_STATUS(allocate_filled(engine, 1, 1, &b), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, c), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0 && pool_used(engine, 1) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(a_pool_that_is_not_a_multiple_of_64_uses_whole_blocks) {
  uint64_t engine = open_engine("ge.flowGraphMemMaxSize=1000");
  CHECK(engine != 0);
  uint64_t a, b;
  CHECK_STATUS(allocate_filled(engine, 15, 64, &a), LLMDD_SUCCESS);
  EXPECT_STATUS(allocate_filled(engine, 1, 1, &b), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, a), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(freed_blocks_coalesce) {
  uint64_t engine = open_engine("ge.flowGraphMemMaxSize=1048576");
  CHECK(engine != 0);
  uint64_t a, b, c, d, big;
  const uint64_t quarter = 256 * 1024;
  CHECK_STATUS(allocate_filled(engine, 1, quarter, &a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 1, quarter, &b), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 1, quarter, &c), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, b), LLMDD_SUCCESS);
  /* Two free quarters, not adjacent: a half does not fit. */
  EXPECT_STATUS(allocate_filled(engine, 1, 2 * quarter, &d), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 1, 2 * quarter, &d), LLMDD_SUCCESS);
  expect_cache_reads_back(engine, c, 1, 1, quarter);
  expect_cache_reads_back(engine, d, 1, 1, 2 * quarter);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, c), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, d), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 1, 4 * quarter, &big), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, big), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(keys_keep_memory_until_released) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  const uint64_t keys[6] = {1, 2, 3, 1, 2, 4};
  uint64_t id, addrs[2];
  CHECK_STATUS(llmdd_cache_allocate(engine, 2, 100, 2, 0, 1, keys, 2, &id, addrs, 2), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 256);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 256);
  uint8_t out[100];
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 100, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 256);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "req 2") != NULL);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 4), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0);

  /* Keys released first: the id still holds the memory. */
  CHECK_STATUS(llmdd_cache_allocate(engine, 2, 100, 2, 0, 1, keys, 2, &id, addrs, 2), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 4), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 256);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 1, 0, out, 100, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(duplicate_keys_are_rejected_without_side_effects) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  const uint64_t held[3] = {1, 2, 3};
  const uint64_t clash[6] = {9, 9, 9, 1, 2, 3};
  const uint64_t twice[6] = {5, 5, 5, 5, 5, 5};
  uint64_t a, b, addrs[1];
  CHECK_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, held, 1, &a, addrs, 1), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 2, 0, 1, clash, 2, &b, addrs, 1), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "already held by cache 1") != NULL);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 2, 0, 1, twice, 2, &b, addrs, 1), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "repeats key 0") != NULL);
  EXPECT(pool_used(engine, 0) == 64);
  /* The clashing call registered none of its keys. */
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 9, 9, 9), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 5, 5, 5), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, clash, 1, &b, addrs, 1), LLMDD_SUCCESS);
  EXPECT(b == 2);
  /* A released key can name a new cache. */
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, held, 1, &b, addrs, 1), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(many_keys_and_caches_are_found) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  enum { CACHES = 300, KEYS = 4 };
  for (uint64_t i = 0; i < CACHES; i++) {
    uint64_t keys[3 * KEYS], id, addr;
    for (uint64_t k = 0; k < KEYS; k++) {
      keys[3 * k] = 7;
      keys[3 * k + 1] = i;
      keys[3 * k + 2] = k;
    }
    CHECK_STATUS(llmdd_cache_allocate(engine, 1, 64, KEYS, 0, 1, keys, KEYS, &id, &addr, 1), LLMDD_SUCCESS);
    CHECK_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_SUCCESS);
  }
  EXPECT(pool_used(engine, 0) == CACHES * 64);
  for (uint64_t i = 0; i < CACHES; i++)
    for (uint64_t k = 0; k < KEYS; k++)
      EXPECT_STATUS(llmdd_cache_key_remove(engine, 7, (i * 7919) % CACHES, k), LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* Checks one tensor of dst after a copy: the copied range holds src's pattern, the
 * rest still holds dst's own. */
static void expect_copied(uint64_t engine, uint64_t dst, uint64_t src, int32_t device,
                          int32_t tensor, uint64_t bytes, uint64_t dst_off,
                          uint64_t src_off, uint64_t n) {
  uint8_t *out = malloc(bytes);
  EXPECT_STATUS(llmdd_cache_read(engine, dst, tensor, device, out, bytes, 0), LLMDD_SUCCESS);
  uint64_t bad = 0;
  for (uint64_t i = 0; i < bytes; i++) {
    uint8_t want = i >= dst_off && i < dst_off + n
                       ? pattern_byte(src, device, tensor, i - dst_off + src_off)
                       : pattern_byte(dst, device, tensor, i);
    bad += out[i] != want;
  }
  if (!EXPECT(bad == 0))
    fprintf(stderr, "    %llu wrong bytes in device %d tensor %d\n", (unsigned long long)bad,
            device, tensor);
  free(out);
}

TEST(copy_moves_a_range_of_every_tensor_on_every_device) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1");
  CHECK(engine != 0);
  static const struct {
    uint64_t bytes, dst_off, src_off, n;
  } cases[] = {
      {100, 0, 0, 100}, {100, 10, 50, 37}, {4096, 64, 0, 1000},
      {100, 0, 0, 0},   {3 * MiB + 3, 5, 1, 3 * MiB - 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t src, dst;
    CHECK_STATUS(allocate_filled(engine, 3, cases[i].bytes, &src), LLMDD_SUCCESS);
    CHECK_STATUS(allocate_filled(engine, 3, cases[i].bytes, &dst), LLMDD_SUCCESS);
    CHECK_STATUS(llmdd_cache_copy(engine, dst, src, cases[i].dst_off, cases[i].src_off,
                                  cases[i].n, 0),
                 LLMDD_SUCCESS);
    for (int32_t d = 0; d < 2; d++)
      for (int32_t t = 0; t < 3; t++)
        expect_copied(engine, dst, src, d, t, cases[i].bytes, cases[i].dst_off,
                      cases[i].src_off, cases[i].n);
    expect_cache_reads_back(engine, src, 2, 3, cases[i].bytes);
    EXPECT_STATUS(llmdd_cache_deallocate(engine, src), LLMDD_SUCCESS);
    EXPECT_STATUS(llmdd_cache_deallocate(engine, dst), LLMDD_SUCCESS);
  }
  EXPECT(pool_used(engine, 0) == 0);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(copy_between_caches_of_different_tensor_sizes) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t small, large;
  CHECK_STATUS(allocate_filled(engine, 2, 64, &small), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 2, 256, &large), LLMDD_SUCCESS);
  /* Batch row 1 of a 4-row cache from a 1-row cache, as upstream's sample does. */
  CHECK_STATUS(llmdd_cache_copy(engine, large, small, 64, 0, 64, 0), LLMDD_SUCCESS);
  for (int32_t t = 0; t < 2; t++) expect_copied(engine, large, small, 0, t, 256, 64, 0, 64);
  EXPECT_STATUS(llmdd_cache_copy(engine, large, small, 0, 0, 65, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "source range") != NULL);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(copy_within_one_cache_needs_disjoint_ranges) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t id;
  CHECK_STATUS(allocate_filled(engine, 2, 256, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_copy(engine, id, id, 0, 64, 65, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "overlap") != NULL);
  EXPECT_STATUS(llmdd_cache_copy(engine, id, id, 10, 10, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy(engine, id, id, 100, 0, 100, 0), LLMDD_SUCCESS);
  uint8_t out[256];
  for (int32_t t = 0; t < 2; t++) {
    EXPECT_STATUS(llmdd_cache_read(engine, id, t, 0, out, 256, 0), LLMDD_SUCCESS);
    for (int i = 0; i < 256; i++) {
      uint8_t want = pattern_byte(id, 0, t, i >= 100 && i < 200 ? (uint64_t)i - 100 : (uint64_t)i);
      if (!EXPECT(out[i] == want)) break;
    }
  }
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(copy_rejects_bad_arguments) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint64_t a, b, three;
  CHECK_STATUS(allocate_filled(engine, 2, 100, &a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 2, 100, &b), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 3, 100, &three), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, three, 0, 0, 10, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "tensors") != NULL);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, 0, 0, 101, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, 1, 0, 100, 0), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "destination range") != NULL);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, 0, 101, 0, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, UINT64_MAX, 0, 2, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, 0, 50, UINT64_MAX - 10, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, 77, 0, 0, 10, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "source cache 77") != NULL);
  EXPECT_STATUS(llmdd_cache_copy(engine, 78, a, 0, 0, 10, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(strstr(last_error(), "destination cache 78") != NULL);
  EXPECT_STATUS(llmdd_cache_copy(engine, a, b, 100, 100, 0, 0), LLMDD_SUCCESS);
  /* Nothing was written by the rejected calls. */
  expect_cache_reads_back(engine, a, 1, 2, 100);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(finalize_releases_caches_still_held) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  const uint64_t keys[3] = {4, 5, 6};
  uint64_t id, addrs[2];
  CHECK_STATUS(llmdd_cache_allocate(engine, 2, 5 * MiB, 1, 0, 1, keys, 1, &id, addrs, 2), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(engine, 1, 1000, &id), LLMDD_SUCCESS);
  /* Leak checking (LeakSanitizer) at exit covers the bookkeeping. */
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}
