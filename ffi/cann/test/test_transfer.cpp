// llmdd_cache_pull_blocks and llmdd_cache_push_blocks over the fake backend:
// the checks made before upstream is asked, the CacheIndex and KvCacheExtParam
// upstream is handed (the fake records them and checks them as upstream does),
// upstream's answers passed through, and the bytes moved.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "abi_support.hpp"
#include "fake_backend.hpp"
#include "harness.hpp"
#include "llmdd.h"
#include "translate.hpp"

using namespace abi;

namespace {

constexpr uint64_t kBlock = 32;  // bytes per block (row) of every cache here

// A PROMPT (cluster 1) and a DECODER (cluster 2) linked to it, each with a cache
// of 2 tensors x 4 blocks allocated before the link.
struct Pair {
  uint64_t p = 0, d = 0;
  Cache src, dst;
  bool ok = false;
  Pair() {
    fake::reset();
    fake::knobs().max_engines = 2;
    ok = init(LLMDD_ROLE_PROMPT, 1, "llm.listenIpInfo=10.0.0.1:26000", &p) == LLMDD_SUCCESS &&
         init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2", &d) == LLMDD_SUCCESS &&
         allocate(p, 1, 2, 4 * kBlock, 4, &src) == LLMDD_SUCCESS &&
         allocate(d, 1, 2, 4 * kBlock, 4, &dst) == LLMDD_SUCCESS &&
         llmdd_link(d, 1, reinterpret_cast<const uint8_t *>("10.0.0.1:26000"), 14, 0) == LLMDD_SUCCESS;
    for (int t = 0; ok && t < 2; t++)
      for (uint64_t b = 0; b < 4; b++) {
        std::memset(bytes_at(src.addrs[t]) + b * kBlock, 100 + 10 * t + static_cast<int>(b), kBlock);
        std::memset(bytes_at(dst.addrs[t]) + b * kBlock, 0, kBlock);
      }
  }
  ~Pair() {
    llmdd_engine_finalize(d);
    llmdd_engine_finalize(p);
  }
};

uint8_t block_of(const Cache &c, int tensor, uint64_t block) { return bytes_at(c.addrs[tensor])[block * kBlock + 5]; }

int32_t pull(const Pair &x, int32_t kind, uint64_t k1, uint64_t k2, const std::vector<uint64_t> &pairs,
             int32_t src_start = 0, int32_t dst_start = 0, int32_t n = 0, uint64_t job = 0) {
  return llmdd_cache_pull_blocks(x.d, x.dst.id, kind, 1, k1, k2, pairs.empty() ? nullptr : pairs.data(),
                                 static_cast<int32_t>(pairs.size() / 2), src_start, dst_start, n, job);
}

// The done callback of background transfers.
std::mutex done_lock;
std::condition_variable done_cv;
int32_t done_status = -1;
void on_done(uint64_t, int32_t status) {
  std::lock_guard<std::mutex> guard(done_lock);
  done_status = status;
  done_cv.notify_all();
}

bool range_is(const std::pair<int32_t, int32_t> &r, int32_t first, int32_t second) {
  return r.first == first && r.second == second;
}

}  // namespace

TEST(transfer_layer_ranges_have_inclusive_ends_one_tensor_per_layer) {
  llmdd::LayerRanges r = llmdd::layer_ranges(2, 5, 3, 1);
  EXPECT(range_is(r.src, 2, 4));
  EXPECT(range_is(r.dst, 5, 7));
  EXPECT_EQ(r.tensors_per_layer, 1);
  r = llmdd::layer_ranges(0, 0, 1, 1);
  EXPECT(range_is(r.src, 0, 0) && range_is(r.dst, 0, 0));
  r = llmdd::layer_ranges(0, 0, 0, 6);  // every tensor: upstream's default ranges
  EXPECT(range_is(r.src, -1, -1) && range_is(r.dst, -1, -1));
  EXPECT_EQ(r.tensors_per_layer, 6);
  llmdd::TransferPlan plan;
  uint64_t pairs[4] = {3, 0, 1, 2};
  CHECK_STATUS(llmdd::plan_push(LLMDD_KEY_BY_ID, 7, 9, 0, 0, pairs, 2, 0, 0, 0, 300, &plan), LLMDD_SUCCESS);
  EXPECT(plan.blocks && plan.src_blocks == (std::vector<uint64_t>{3, 1}) && plan.dst_blocks == (std::vector<uint64_t>{0, 2}));
  EXPECT_EQ(plan.layers.tensors_per_layer, 1);  // 300 tensors do not fit upstream's uint8_t
  CHECK_STATUS(llmdd::plan_push(LLMDD_KEY_BY_ID, 7, 9, 3, 1, nullptr, 0, 0, 0, 0, 2, &plan), LLMDD_SUCCESS);
  EXPECT(!plan.blocks && plan.cluster_id == 7 && plan.cache_id == 9 && plan.batch_index == 3 &&
         plan.src_batch_index == 1);
  EXPECT_EQ(plan.layers.tensors_per_layer, 2);
}

TEST(transfer_pull_blocks_maps_onto_pull_kv_blocks) {
  Pair x;
  CHECK(x.ok);
  CHECK_STATUS(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {2, 0, 3, 1}), LLMDD_SUCCESS);
  const fake::Record &r = fake::record();
  EXPECT(r.last_transfer_call == "PullKvBlocks");
  EXPECT(r.last_transfer.cluster_id == 1 && r.last_transfer.cache_id == static_cast<int64_t>(x.src.id) &&
         r.last_transfer.batch_index == 0);
  EXPECT(r.last_transfer.src_blocks == (std::vector<uint64_t>{2, 3}));
  EXPECT(r.last_transfer.dst_blocks == (std::vector<uint64_t>{0, 1}));
  EXPECT(range_is(r.last_transfer.layers.src, -1, -1) && range_is(r.last_transfer.layers.dst, -1, -1));
  for (int t = 0; t < 2; t++) {
    EXPECT_EQ(block_of(x.dst, t, 0), 102 + 10 * t);
    EXPECT_EQ(block_of(x.dst, t, 1), 103 + 10 * t);
    EXPECT_EQ(block_of(x.dst, t, 2), 0);
  }
  // Tensor 1 of the source into tensor 0 of the destination: layers {1, 1} → {0, 0}.
  CHECK_STATUS(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {1, 3}, 1, 0, 1), LLMDD_SUCCESS);
  EXPECT(range_is(r.last_transfer.layers.src, 1, 1) && range_is(r.last_transfer.layers.dst, 0, 0));
  EXPECT_EQ(r.last_transfer.layers.tensors_per_layer, 1);
  EXPECT_EQ(block_of(x.dst, 0, 3), 111);
  EXPECT_EQ(block_of(x.dst, 1, 3), 0);
  // One job: the deadline's and the callback's path, as every long operation.
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(5000, nullptr, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 2}, 0, 0, 2, job), LLMDD_SUCCESS);
  EXPECT(range_is(r.last_transfer.layers.src, 0, 1) && range_is(r.last_transfer.layers.dst, 0, 1));
  EXPECT_EQ(block_of(x.dst, 1, 2), 110);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
}

TEST(transfer_pull_blocks_refusals) {
  Pair x;
  CHECK(x.ok);
  const fake::Record &r = fake::record();
  auto refused_here = [&](int32_t status, int32_t want) {
    int before = r.transfers;
    bool same = EXPECT_STATUS(status, want);
    return same && EXPECT_EQ(r.transfers, before);
  };
  // Keys the C++ API cannot name: said before upstream is asked.
  refused_here(pull(x, LLMDD_KEY_CACHE_KEY, 7, 0, {0, 0}), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "CacheKeyByIdAndIndex"));
  refused_here(pull(x, LLMDD_KEY_BLOCKS, 0, 7, {0, 0}), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "BlocksCacheKey"));
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 1, {0, 0}), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "batch_index 0"));
  refused_here(pull(x, LLMDD_KEY_BY_ID, 0, 0, {0, 0}), LLMDD_KV_CACHE_NOT_EXIST);
  // The host backend's checks.
  refused_here(pull(x, 5, x.src.id, 0, {0, 0}), LLMDD_PARAM_INVALID);
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {}), LLMDD_PARAM_INVALID);
  refused_here(llmdd_cache_pull_blocks(x.d, x.dst.id, LLMDD_KEY_BY_ID, 1, x.src.id, 0, nullptr, 1, 0, 0, 0, 0),
               LLMDD_PARAM_INVALID);
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 4}), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "dst_block_index"));
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 0}, 0, 1, 2), LLMDD_PARAM_INVALID);  // dst tensors [1, 3)
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 0}, 1, 0, 0), LLMDD_PARAM_INVALID);  // starts, no count
  refused_here(llmdd_cache_pull_blocks(x.d, 99, LLMDD_KEY_BY_ID, 1, x.src.id, 0, nullptr, 0, 0, 0, 0, 0),
               LLMDD_KV_CACHE_NOT_EXIST);
  refused_here(llmdd_cache_pull_blocks(x.d, x.dst.id, LLMDD_KEY_BY_ID, 5, x.src.id, 0,
                                       std::vector<uint64_t>{0, 0}.data(), 1, 0, 0, 0, 0),
               LLMDD_NOT_YET_LINK);
  refused_here(llmdd_cache_pull_blocks(x.p, x.src.id, LLMDD_KEY_BY_ID, 2, x.dst.id, 0,
                                       std::vector<uint64_t>{0, 0}.data(), 1, 0, 0, 0, 0),
               LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "PROMPT engine does not pull"));
  // Upstream's own answers, passed through.
  EXPECT_STATUS(pull(x, LLMDD_KEY_BY_ID, 999, 0, {0, 0}), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {4, 0}), LLMDD_PARAM_INVALID);  // past the source
  fake::knobs().transfer_status = LLMDD_LINK_FAILED;
  EXPECT_STATUS(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 0}), LLMDD_LINK_FAILED);
  fake::knobs().transfer_status = 0;
  // A cache allocated after the link (the adapter's rule, as for pullCache).
  Cache late;
  CHECK_STATUS(allocate(x.d, 1, 2, 4 * kBlock, 4, &late), LLMDD_SUCCESS);
  std::vector<uint64_t> one{0, 0};
  refused_here(llmdd_cache_pull_blocks(x.d, late.id, LLMDD_KEY_BY_ID, 1, x.src.id, 0, one.data(), 1, 0, 0, 0, 0),
               LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "allocated after the link"));
  // Out of time before it starts: LLM_TIMEOUT, as pullCache.
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(1, nullptr, &job), LLMDD_SUCCESS);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  refused_here(pull(x, LLMDD_KEY_BY_ID, x.src.id, 0, {0, 0}, 0, 0, 0, job), LLMDD_TIMEOUT);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
}

TEST(transfer_push_maps_onto_push_kv_cache_and_push_kv_blocks) {
  Pair x;
  CHECK(x.ok);
  const fake::Record &r = fake::record();
  // The PROMPT pushes row 1 of its cache into row 3 of the DECODER's, which
  // linked to it (push_cache → PushKvCache, every tensor as one layer).
  CHECK_STATUS(llmdd_cache_push_blocks(x.p, x.src.id, 1, LLMDD_KEY_BY_ID, 2, x.dst.id, 3, nullptr, 0, 0, 0, 0, 0),
               LLMDD_SUCCESS);
  EXPECT(r.last_transfer_call == "PushKvCache");
  EXPECT(r.last_transfer.cluster_id == 2 && r.last_transfer.cache_id == static_cast<int64_t>(x.dst.id) &&
         r.last_transfer.batch_index == 3 && r.last_transfer.src_batch_index == 1);
  EXPECT(range_is(r.last_transfer.layers.src, -1, -1) && range_is(r.last_transfer.layers.dst, -1, -1));
  EXPECT_EQ(r.last_transfer.layers.tensors_per_layer, 2);
  EXPECT_EQ(block_of(x.dst, 0, 3), 101);
  EXPECT_EQ(block_of(x.dst, 1, 3), 111);
  EXPECT_EQ(block_of(x.dst, 0, 1), 0);
  // The DECODER pushes blocks of its cache into the PROMPT's by CacheIndex
  // (PushKvBlocks), tensor 0 into tensor 1: layers {0, 0} → {1, 1}.
  std::memset(bytes_at(x.dst.addrs[0]) + 2 * kBlock, 7, kBlock);
  uint64_t pairs[2] = {2, 0};
  CHECK_STATUS(llmdd_cache_push_blocks(x.d, x.dst.id, 0, LLMDD_KEY_BY_ID, 1, x.src.id, 0, pairs, 1, 0, 1, 1, 0),
               LLMDD_SUCCESS);
  EXPECT(r.last_transfer_call == "PushKvBlocks");
  EXPECT(r.last_transfer.src_blocks == (std::vector<uint64_t>{2}) && r.last_transfer.dst_blocks == (std::vector<uint64_t>{0}));
  EXPECT(range_is(r.last_transfer.layers.src, 0, 0) && range_is(r.last_transfer.layers.dst, 1, 1));
  EXPECT_EQ(r.last_transfer.layers.tensors_per_layer, 1);
  EXPECT_EQ(block_of(x.src, 1, 0), 7);
  EXPECT_EQ(block_of(x.src, 0, 0), 100);
}

TEST(transfer_push_refusals) {
  Pair x;
  CHECK(x.ok);
  const fake::Record &r = fake::record();
  auto push = [&](int32_t batch, int32_t kind, uint64_t k0, uint64_t k1, uint64_t k2, const uint64_t *pairs,
                  int32_t n_pairs, int32_t s = 0, int32_t d = 0, int32_t n = 0) {
    return llmdd_cache_push_blocks(x.p, x.src.id, batch, kind, k0, k1, k2, pairs, n_pairs, s, d, n, 0);
  };
  auto refused_here = [&](int32_t status, int32_t want) {
    int before = r.transfers;
    bool same = EXPECT_STATUS(status, want);
    return same && EXPECT_EQ(r.transfers, before);
  };
  uint64_t pair[2] = {0, 0}, far[2] = {4, 0};
  refused_here(push(0, LLMDD_KEY_BLOCKS, 2, 0, 5, pair, 1), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "BlocksCacheKey"));
  refused_here(push(0, LLMDD_KEY_BLOCKS | LLMDD_PUSH_ROW_BLOCKS, 2, 64, 5, pair, 1), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "row pushed into blocks"));
  refused_here(push(0, LLMDD_KEY_BY_ID | LLMDD_PUSH_ROW_BLOCKS, 2, x.dst.id, 0, pair, 1), LLMDD_PARAM_INVALID);
  refused_here(push(0, LLMDD_KEY_CACHE_KEY, 2, 1, 0, nullptr, 0), LLMDD_PARAM_INVALID);
  refused_here(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, pair, 0), LLMDD_PARAM_INVALID);  // pairs, no count
  refused_here(push(4, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0), LLMDD_PARAM_INVALID);
  refused_here(push(-1, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0), LLMDD_PARAM_INVALID);
  refused_here(push(1, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, pair, 1), LLMDD_PARAM_INVALID);  // blocks take row 0
  refused_here(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, far, 1), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "src_block_index"));
  refused_here(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 1, pair, 1), LLMDD_FEATURE_NOT_ENABLED);
  refused_here(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 1, 0, 2), LLMDD_PARAM_INVALID);  // src [1, 3)
  refused_here(push(0, LLMDD_KEY_BY_ID, 2, 0, 0, nullptr, 0), LLMDD_KV_CACHE_NOT_EXIST);
  refused_here(llmdd_cache_push_blocks(x.p, 99, 0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 0, 0, 0, 0),
               LLMDD_KV_CACHE_NOT_EXIST);
  Cache host;
  CHECK_STATUS(allocate(x.p, 1, 2, 4 * kBlock, 4, &host, {}, LLMDD_PLACEMENT_HOST), LLMDD_SUCCESS);
  refused_here(llmdd_cache_push_blocks(x.p, host.id, 0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 0, 0, 0, 0),
               LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "DEVICE caches only"));
  // Upstream's answers: no link to that cluster, no such cache there, a row
  // or a tensor range the destination does not have.
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 7, x.dst.id, 0, nullptr, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 2, 999, 0, nullptr, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 4, nullptr, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 0, 1, 2), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_unlink(x.d, 1, 0, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0), LLMDD_NOT_YET_LINK);
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(0, nullptr, &job), LLMDD_SUCCESS);
  refused_here(llmdd_cache_push_blocks(x.p, x.src.id, 0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 0, 0, 0, job),
               LLMDD_TIMEOUT);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(x.p), LLMDD_SUCCESS);
  EXPECT_STATUS(push(0, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0), LLMDD_ENGINE_FINALIZED);
}

TEST(transfer_v1_has_no_block_pulls_or_pushes) {
  fake::reset();
  fake::knobs().flavor = llmdd::Flavor::kV1;
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 128, 2, &c), LLMDD_SUCCESS);
  uint64_t pair[2] = {0, 1};
  EXPECT_STATUS(llmdd_cache_pull_blocks(e, c.id, LLMDD_KEY_BY_ID, 1, 1, 0, pair, 1, 0, 0, 0, 0),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(llmdd_cache_push_blocks(e, c.id, 0, LLMDD_KEY_BY_ID, 1, 1, 0, nullptr, 0, 0, 0, 0, 0),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_EQ(fake::record().transfers, 0);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(transfer_in_the_background_keeps_its_cache_until_it_ends) {
  Pair x;
  CHECK(x.ok);
  Cache extra;  // pushed from, then released during the push
  CHECK_STATUS(allocate(x.p, 1, 2, 4 * kBlock, 4, &extra), LLMDD_SUCCESS);
  int live = fake::record().live_caches;
  for (int push = 1; push >= 0; push--) {
    uint64_t job = 0;
    CHECK_STATUS(llmdd_job_create(5000, on_done, &job), LLMDD_SUCCESS);
    {
      std::lock_guard<std::mutex> guard(done_lock);
      done_status = -1;
    }
    uint64_t pair[2] = {1, 1};
    fake::knobs().hold_transfers = true;  // until the cache is released
    if (push) {
      CHECK_STATUS(llmdd_cache_push_blocks(x.p, extra.id, 2, LLMDD_KEY_BY_ID, 2, x.dst.id, 0, nullptr, 0, 0, 0, 0, job),
                   LLMDD_SUCCESS);
    } else {
      CHECK_STATUS(llmdd_cache_pull_blocks(x.d, x.dst.id, LLMDD_KEY_BY_ID, 1, x.src.id, 0, pair, 1, 0, 0, 0, job),
                   LLMDD_SUCCESS);
    }
    // Released while the transfer runs: the memory stays until it ends.
    int gone = push ? 0 : 1;  // caches freed by earlier rounds
    EXPECT_STATUS(llmdd_cache_deallocate(push ? x.p : x.d, push ? extra.id : x.dst.id), LLMDD_SUCCESS);
    EXPECT_EQ(fake::record().live_caches, live - gone);
    fake::knobs().hold_transfers = false;
    std::unique_lock<std::mutex> guard(done_lock);
    CHECK(done_cv.wait_for(guard, std::chrono::seconds(5), [] { return done_status != -1; }));
    EXPECT_STATUS(done_status, LLMDD_SUCCESS);
    guard.unlock();
    EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
    // Freed once the transfer ended (the done callback runs after the end).
    EXPECT_EQ(fake::record().live_caches, live - gone - 1);
    EXPECT(fake::record().last_transfer_call == (push ? "PushKvCache" : "PullKvBlocks"));
  }
}
