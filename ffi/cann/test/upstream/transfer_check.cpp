// Block pulls and pushes through the adapter's C ABI over upstream's own
// LLM-DataDist, a PROMPT and a DECODER in one process (the adapter built with
// LLMDD_CANN_MAX_ENGINES=2 by ../../upstream_check.sh, which runs this). Only
// for upstream's stand-in toolkit, whose "device" memory is host memory: the
// bytes are written and checked in place. Prints one line per check and, last,
// "N passed, N failed"; exits 1 if any failed.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "llmdd.h"

namespace {

int passed = 0, failed = 0;

std::string last_error() {
  char buf[600];
  llmdd_last_error(reinterpret_cast<uint8_t *>(buf), sizeof buf);
  return buf;
}

void expect(bool ok, const std::string &what) {
  (ok ? passed : failed)++;
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
}

void expect_status(int32_t got, int32_t want, const std::string &what) {
  char line[900];
  std::snprintf(line, sizeof line, "%s: 0x%08x (want 0x%08x)%s%s", what.c_str(), static_cast<unsigned>(got),
                static_cast<unsigned>(want), got != 0 ? " — " : "", got != 0 ? last_error().c_str() : "");
  expect(got == want, line);
}

int32_t init(int32_t role, uint64_t cluster, const std::string &options, uint64_t *engine) {
  return llmdd_engine_init(role, cluster, reinterpret_cast<const uint8_t *>(options.data()),
                           static_cast<int32_t>(options.size()), engine);
}

constexpr uint64_t kBlock = 64;
constexpr uint64_t kBlocks = 4;

struct Cache {
  uint64_t id = 0;
  uint64_t addrs[2] = {0, 0};
  uint8_t *block(int tensor, uint64_t b) const {
    return reinterpret_cast<uint8_t *>(static_cast<uintptr_t>(addrs[tensor])) + b * kBlock;
  }
};

int32_t allocate(uint64_t engine, Cache *c) {
  return llmdd_cache_allocate(engine, 2, kBlock * kBlocks, kBlocks, 0, LLMDD_PLACEMENT_DEVICE, nullptr, 0, &c->id,
                              c->addrs, 2);
}

// Every byte of block b of tensor t is `value`.
bool block_is(const Cache &c, int t, uint64_t b, uint8_t value) {
  for (uint64_t i = 0; i < kBlock; i++)
    if (c.block(t, b)[i] != value) return false;
  return true;
}

}  // namespace

int main() {
  int port = 30000 + static_cast<int>(getpid() % 20000);
  std::string listen = "llm.listenIpInfo=127.0.0.1:" + std::to_string(port);
  std::string common = "ge.exec.deviceId=0\nllm.SyncKvCacheWaitTime=2000\n";
  uint64_t p = 0, d = 0;
  expect_status(init(LLMDD_ROLE_PROMPT, 1, common + listen, &p), LLMDD_SUCCESS, "PROMPT init (listening)");
  expect_status(init(LLMDD_ROLE_DECODER, 2, common + "llmdd.cann.localIpInfo=127.0.0.1", &d), LLMDD_SUCCESS,
                "DECODER init in the same process");
  if (failed != 0) return 1;
  Cache src, dst;
  expect_status(allocate(p, &src), LLMDD_SUCCESS, "PROMPT cache (aclrtMalloc + RegisterKvCache)");
  expect_status(allocate(d, &dst), LLMDD_SUCCESS, "DECODER cache");
  for (int t = 0; t < 2; t++)
    for (uint64_t b = 0; b < kBlocks; b++) {
      std::memset(src.block(t, b), 100 + 10 * t + static_cast<int>(b), kBlock);
      std::memset(dst.block(t, b), 0, kBlock);
    }
  std::string at = "127.0.0.1:" + std::to_string(port);
  expect_status(llmdd_link(d, 1, reinterpret_cast<const uint8_t *>(at.data()), static_cast<int32_t>(at.size()), 0),
                LLMDD_SUCCESS, "DECODER links to the PROMPT (LinkLlmClusters)");

  // PullKvBlocks, every tensor: source blocks 2, 3 into destination blocks 0, 1.
  uint64_t pairs[4] = {2, 0, 3, 1};
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, pairs, 2, 0, 0, 0, 0),
                LLMDD_SUCCESS, "pull_blocks by id, every tensor");
  expect(block_is(dst, 0, 0, 102) && block_is(dst, 0, 1, 103) && block_is(dst, 1, 0, 112) &&
             block_is(dst, 1, 1, 113) && block_is(dst, 0, 2, 0),
         "  the blocks arrived, nothing else");
  // Tensor 1 into tensor 0: ext param layers {1, 1} -> {0, 0}.
  uint64_t one[2] = {1, 3};
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, one, 1, 1, 0, 1, 0),
                LLMDD_SUCCESS, "pull_blocks by id, tensor 1 -> tensor 0");
  expect(block_is(dst, 0, 3, 111) && block_is(dst, 1, 3, 0), "  only tensor 0's block 3 changed");
  // Upstream's answers and the adapter's refusals.
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, 99, 0, pairs, 1, 0, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST, "pull_blocks from a cache the PROMPT does not have (upstream)");
  uint64_t past[2] = {kBlocks, 0};
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, past, 1, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID, "pull_blocks of a block past the source (upstream)");
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 1, pairs, 1, 0, 0, 0, 0),
                LLMDD_FEATURE_NOT_ENABLED, "pull_blocks from row 1 (the adapter: PullKvBlocks takes row 0)");
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BLOCKS, 1, 0, 5, pairs, 1, 0, 0, 0, 0),
                LLMDD_FEATURE_NOT_ENABLED, "pull_blocks by BlocksCacheKey (no C++ equivalent)");

  // PushKvCache: the PROMPT pushes its row 1 into row 3 of the DECODER's cache.
  for (int t = 0; t < 2; t++) std::memset(dst.block(t, 3), 0, kBlock);
  expect_status(llmdd_cache_push_blocks(p, src.id, 1, LLMDD_KEY_BY_ID, 2, dst.id, 3, nullptr, 0, 0, 0, 0, 0),
                LLMDD_SUCCESS, "push_cache: PROMPT row 1 -> DECODER row 3 (PushKvCache)");
  expect(block_is(dst, 0, 3, 101) && block_is(dst, 1, 3, 111), "  the row arrived in both tensors");
  // PushKvBlocks: the DECODER pushes its block 0 of tensor 0 into block 2 of the PROMPT's tensor 1.
  std::memset(dst.block(0, 0), 7, kBlock);
  uint64_t back[2] = {0, 2};
  expect_status(llmdd_cache_push_blocks(d, dst.id, 0, LLMDD_KEY_BY_ID, 1, src.id, 0, back, 1, 0, 1, 1, 0),
                LLMDD_SUCCESS, "push blocks by id: DECODER tensor 0 block 0 -> PROMPT tensor 1 block 2 (PushKvBlocks)");
  expect(block_is(src, 1, 2, 7) && block_is(src, 0, 2, 102), "  only that block changed");
  expect_status(llmdd_cache_push_blocks(p, src.id, 0, LLMDD_KEY_BY_ID, 9, dst.id, 0, nullptr, 0, 0, 0, 0, 0),
                LLMDD_NOT_YET_LINK, "push to a cluster nobody linked (upstream)");
  expect_status(llmdd_cache_push_blocks(p, src.id, 0, LLMDD_KEY_BY_ID, 2, 99, 0, nullptr, 0, 0, 0, 0, 0),
                LLMDD_KV_CACHE_NOT_EXIST, "push into a cache the DECODER does not have (upstream)");
  expect_status(llmdd_cache_push_blocks(p, src.id, 0, LLMDD_KEY_BY_ID, 2, dst.id, kBlocks, nullptr, 0, 0, 0, 0, 0),
                LLMDD_PARAM_INVALID, "push into a row past the destination (upstream)");
  expect_status(llmdd_cache_push_blocks(p, src.id, 0, LLMDD_KEY_BLOCKS, 2, 0, 5, back, 1, 0, 0, 0, 0),
                LLMDD_FEATURE_NOT_ENABLED, "push_blocks by BlocksCacheKey (no C++ equivalent)");

  expect_status(llmdd_unlink(d, 1, 0, 0), LLMDD_SUCCESS, "unlink");
  expect_status(llmdd_cache_pull_blocks(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, pairs, 1, 0, 0, 0, 0),
                LLMDD_NOT_YET_LINK, "pull_blocks after unlink");
  expect_status(llmdd_engine_finalize(d), LLMDD_SUCCESS, "DECODER finalize");
  expect_status(llmdd_engine_finalize(p), LLMDD_SUCCESS, "PROMPT finalize");
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
