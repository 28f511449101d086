/* The cache-manager calls of ABI 3: registration of caller-owned memory, block
 * copies (copy_blocks and swap_blocks), the host pool and role switches. */
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define POOLS "llm.MemPoolConfig={\"memory_size\": 16777216}\nllm.HostMemPoolConfig={\"memory_size\": 8388608}"

static uint64_t alloc_blocks(uint64_t engine, int32_t tensors, uint64_t blocks, uint64_t block_bytes,
                             int32_t placement, uint64_t *addrs) {
  uint64_t id = 0;
  EXPECT_STATUS(llmdd_cache_allocate(engine, tensors, blocks * block_bytes, blocks, 0, placement,
                                     NULL, 0, &id, addrs, tensors),
                LLMDD_SUCCESS);
  return id;
}

TEST(register_reads_and_copies_caller_memory_and_unregister_releases_it) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  uint8_t *mem = malloc(2 * 256);
  for (int i = 0; i < 512; i++) mem[i] = (uint8_t)i;
  uint64_t addrs[2] = {(uint64_t)(uintptr_t)mem, (uint64_t)(uintptr_t)(mem + 256)};
  uint64_t id = 0;
  CHECK_STATUS(llmdd_cache_register(engine, 2, 256, 4, 0, LLMDD_PLACEMENT_DEVICE, addrs, 2, NULL, 0,
                                    1, &id),
               LLMDD_SUCCESS);
  EXPECT(pool_used(engine, 0) == 0); /* registered memory is not the pool's */
  uint8_t out[256];
  EXPECT_STATUS(llmdd_cache_read(engine, id, 1, 0, out, 256, 0), LLMDD_SUCCESS);
  EXPECT(memcmp(out, mem + 256, 256) == 0);
  /* Block 0 -> 3 of both tensors, one call. */
  uint64_t pairs[2] = {0, 3};
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, id, id, pairs, 1, 0), LLMDD_SUCCESS);
  EXPECT(memcmp(mem + 192, mem, 64) == 0);
  EXPECT(memcmp(mem + 256 + 192, mem + 256, 64) == 0);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_unregister(engine, id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(engine, id), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_read(engine, id, 0, 0, out, 256, 0), LLMDD_KV_CACHE_NOT_EXIST);
  free(mem); /* the engine holds nothing of it now: ASan would see a later use */
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(register_refuses_bad_addresses_and_counts) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1");
  CHECK(engine != 0);
  uint8_t mem[256];
  uint64_t a = (uint64_t)(uintptr_t)mem, id;
  uint64_t two[2] = {a, a}, zero[2] = {a, 0}, wrap[2] = {a, UINT64_MAX - 8};
  /* Two devices: one address per device per tensor. */
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, two, 1, NULL, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, zero, 2, NULL, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, wrap, 2, NULL, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, NULL, 2, NULL, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 0, 64, 1, 0, 1, two, 0, NULL, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, two, 2, NULL, 0, 0, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, two, 2, NULL, 0, 0, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(engine, id), LLMDD_SUCCESS);
  uint64_t allocated, addrs[2];
  CHECK_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, NULL, 0, &allocated, addrs, 2), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(engine, allocated), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, two, 2, NULL, 0, 0, &id),
                LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_unregister(engine, 1), LLMDD_ENGINE_FINALIZED);
}

TEST(a_registered_cache_has_at_most_240_addresses) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  static uint8_t mem[241][64];
  uint64_t addrs[241], id;
  for (int i = 0; i < 241; i++) addrs[i] = (uint64_t)(uintptr_t)mem[i];
  EXPECT_STATUS(llmdd_cache_register(engine, 241, 64, 1, 0, 1, addrs, 241, NULL, 0, 0, &id),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(engine, 240, 64, 1, 0, 1, addrs, 240, NULL, 0, 0, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(engine, id), LLMDD_SUCCESS);
  /* Any number of caches may be registered. */
  for (int i = 0; i < 300; i++)
    CHECK_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, addrs, 1, NULL, 0, 0, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(registered_keys_go_with_unregister) {
  uint64_t engine = open_role(LLMDD_ROLE_PROMPT, 9101, NULL);
  CHECK(engine != 0);
  uint8_t mem[64];
  uint64_t a = (uint64_t)(uintptr_t)mem, key[3] = {9101, 5, 0}, id, id2;
  CHECK_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, &a, 1, key, 1, 0, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, &a, 1, key, 1, 0, &id2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_unregister(engine, id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 9101, 5, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_register(engine, 1, 64, 1, 0, 1, &a, 1, key, 1, 0, &id2), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(copy_blocks_moves_every_pair_in_one_call_and_checks_each) {
  uint64_t engine = open_engine(POOLS);
  CHECK(engine != 0);
  uint64_t a[2], b[2];
  uint64_t src = alloc_blocks(engine, 2, 8, 4096, LLMDD_PLACEMENT_DEVICE, a);
  uint64_t dst = alloc_blocks(engine, 2, 4, 4096, LLMDD_PLACEMENT_HOST, b);
  for (int t = 0; t < 2; t++)
    for (int k = 0; k < 8; k++) memset((uint8_t *)(uintptr_t)a[t] + k * 4096, 16 * t + k, 4096);
  uint64_t pairs[6] = {7, 0, 2, 1, 5, 3};
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, pairs, 3, 0), LLMDD_SUCCESS);
  for (int t = 0; t < 2; t++) {
    const uint8_t *d = (const uint8_t *)(uintptr_t)b[t];
    EXPECT(d[0] == 16 * t + 7 && d[4095] == 16 * t + 7);
    EXPECT(d[4096] == 16 * t + 2 && d[3 * 4096 + 17] == 16 * t + 5);
  }
  /* The HOST cache went to the host pool, not the device pool. */
  EXPECT(pool_used(engine, 0) == 2 * 8 * 4096);
  uint64_t out_of_range[2] = {8, 0}, dst_out[2] = {0, 4};
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, out_of_range, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, dst_out, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, pairs, 0, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, NULL, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, 999, pairs, 1, 0), LLMDD_KV_CACHE_NOT_EXIST);
  uint64_t c[1];
  uint64_t other = alloc_blocks(engine, 1, 4, 4096, LLMDD_PLACEMENT_DEVICE, c);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, other, src, pairs, 1, 0), LLMDD_PARAM_INVALID);
  uint64_t halves[2];
  uint64_t half = alloc_blocks(engine, 2, 4, 2048, LLMDD_PLACEMENT_DEVICE, halves);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, half, src, pairs, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(copy_blocks_with_a_job_stops_at_the_deadline_or_cancel) {
  uint64_t engine = open_engine("llm.MemPoolConfig={\"memory_size\": 67108864}");
  CHECK(engine != 0);
  uint64_t a[1], b[1];
  uint64_t src = alloc_blocks(engine, 1, 16, 1 << 20, 1, a);
  uint64_t dst = alloc_blocks(engine, 1, 16, 1 << 20, 1, b);
  uint64_t pairs[32];
  for (int i = 0; i < 16; i++) pairs[2 * i] = (uint64_t)i, pairs[2 * i + 1] = (uint64_t)(15 - i);
  uint64_t job;
  CHECK_STATUS(llmdd_job_create(0, NULL, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, pairs, 16, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_job_create(-1, NULL, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, pairs, 16, job), LLMDD_FAILED);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_job_create(10000, NULL, &job), LLMDD_SUCCESS);
  memset((void *)(uintptr_t)a[0], 0x5a, 16 << 20);
  EXPECT_STATUS(llmdd_cache_copy_blocks(engine, dst, src, pairs, 16, job), LLMDD_SUCCESS);
  EXPECT(((uint8_t *)(uintptr_t)b[0])[(16 << 20) - 1] == 0x5a);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(mem_pool_configs_are_checked_as_upstream) {
  uint64_t engine = 0;
  static const char *bad[] = {
      "llm.MemPoolConfig=100",
      "llm.MemPoolConfig={\"memory_size\": -1}",
      "llm.MemPoolConfig={\"memory_size\": 1.5}",
      "llm.MemPoolConfig={\"page_shift\": 16}",
      "llm.HostMemPoolConfig={\"memory_size\": 1048576, \"page_shift\": 9}",
      "llm.HostMemPoolConfig={\"memory_size\": 1048576, \"page_shift\": 31}",
      "llm.MemPoolConfig={\"memory_size\": 1048576",
      "llm.MemPoolConfig={\"memory_size\": 0}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, 1, (const uint8_t *)bad[i], (int32_t)strlen(bad[i]),
                                    &engine),
                  LLMDD_PARAM_INVALID);
  }
  const char *good = "llm.MemPoolConfig={ \"memory_size\" : 1048576, \"page_shift\": 10 }";
  CHECK_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, 1, (const uint8_t *)good, (int32_t)strlen(good), &engine),
               LLMDD_SUCCESS);
  uint64_t info[5];
  EXPECT_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[2] == 1048576);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(set_role_needs_enable_switch_role_and_listens_as_a_prompt) {
  uint64_t engine = open_role(LLMDD_ROLE_DECODER, 9102, NULL);
  CHECK(engine != 0);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_PROMPT, NULL, 0), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);

  engine = open_role(LLMDD_ROLE_DECODER, 9103, "llm.EnableSwitchRole=1");
  CHECK(engine != 0);
  const char *listen = "llm.listenIpInfo=127.0.0.1:0";
  EXPECT_STATUS(llmdd_engine_set_role(engine, 7, NULL, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_DECODER, (const uint8_t *)listen,
                                      (int32_t)strlen(listen)),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_PROMPT, (const uint8_t *)listen,
                                      (int32_t)strlen(listen)),
                LLMDD_SUCCESS);
  uint64_t info[5];
  EXPECT_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[3] == LLMDD_ROLE_PROMPT && info[4] != 0);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_DECODER, NULL, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[3] == LLMDD_ROLE_DECODER && info[4] == 0);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_MIX, (const uint8_t *)listen, (int32_t)strlen(listen)),
                LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_set_role(engine, LLMDD_ROLE_PROMPT, NULL, 0), LLMDD_ENGINE_FINALIZED);
}

TEST(a_key_clash_returns_the_host_pool_block) {
  uint64_t engine = open_role(LLMDD_ROLE_PROMPT, 9104, "llm.HostMemPoolConfig={\"memory_size\": 1048576}");
  CHECK(engine != 0);
  uint64_t key[3] = {9104, 1, 0}, id, addrs[1];
  CHECK_STATUS(llmdd_cache_allocate(engine, 1, 256 << 10, 1, 0, LLMDD_PLACEMENT_HOST, key, 1, &id, addrs, 1),
               LLMDD_SUCCESS);
  /* Memory is taken before keys are checked (as upstream): a leak on the key
   * failure would make the second attempt DEVICE_OUT_OF_MEMORY. */
  for (int i = 0; i < 3; i++)
    EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 512 << 10, 1, 0, LLMDD_PLACEMENT_HOST, key, 1, &id, addrs, 1),
                  LLMDD_PARAM_INVALID);
  EXPECT(pool_used(engine, 0) == 0); /* HOST caches are not in the device pool */
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}
