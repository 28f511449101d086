// The adapter's other pure parts: status mapping, deadline arithmetic, handles,
// cache and key bookkeeping, links, key-kind and copy translation, staging slots.
#include <cstring>
#include <string>
#include <thread>

#include "book.hpp"
#include "deadline.hpp"
#include "error.hpp"
#include "handles.hpp"
#include "harness.hpp"
#include "links.hpp"
#include "llmdd.h"
#include "staging.hpp"
#include "status.hpp"
#include "translate.hpp"

using namespace llmdd;

namespace {
bool has(const std::string &text, const char *part) { return text.find(part) != std::string::npos; }
CacheLayout layout(int32_t tensors, uint64_t bytes, uint64_t batch, int32_t devices = 1) {
  CacheLayout l;
  l.num_tensors = tensors;
  l.tensor_bytes = bytes;
  l.batch_size = batch;
  l.num_devices = devices;
  return l;
}
CacheMemory memory(int64_t id, size_t addrs) {
  CacheMemory m;
  m.id = id;
  for (size_t i = 0; i < addrs; i++) m.addrs.push_back(0x1000 * (i + 1));
  return m;
}
}  // namespace

// ---- statuses ----

TEST(status_upstream_values_pass_through_unchanged) {
  EXPECT_EQ(from_upstream(0u), LLMDD_SUCCESS);
  EXPECT_EQ(from_upstream(0xFFFFFFFFu), -1);
  EXPECT_EQ(from_upstream(0xFFFFFFFFu), LLMDD_FAILED);
  EXPECT_EQ(from_upstream(0x5010B001u), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_EQ(from_upstream(0x5010B019u), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_EQ(from_upstream(0x5010B016u), 0x5010B016);  // LLM_COPY_CACHE_FAILED, not in the ABI header
  EXPECT(std::string(status_name(LLMDD_KV_CACHE_NOT_EXIST)) == "LLM_KV_CACHE_NOT_EXIST");
  EXPECT(std::string(status_name(LLMDD_FAILED)) == "LLM_FAILED");
  EXPECT(std::string(status_name(0x1234)) == "unknown status");
}

TEST(status_acl_errors_map_to_llm_statuses) {
  EXPECT_EQ(from_acl(0), LLMDD_SUCCESS);
  EXPECT_EQ(from_acl(kAclRtStreamSyncTimeout), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_EQ(from_acl(kAclRtMemoryAllocation), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_EQ(from_acl(kAclBadAlloc), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_EQ(from_acl(100000), LLMDD_FAILED);
  EXPECT_EQ(from_acl(507018), LLMDD_FAILED);
}

TEST(status_cluster_results_fold_into_one) {
  EXPECT_EQ(fold_cluster_status(0, {0}), LLMDD_SUCCESS);
  EXPECT_EQ(fold_cluster_status(0, {}), LLMDD_SUCCESS);
  EXPECT_EQ(fold_cluster_status(0xFFFFFFFFu, {0x5010B009u}), LLMDD_LINK_FAILED);
  EXPECT_EQ(fold_cluster_status(0, {0x5010B008u}), LLMDD_ALREADY_LINK);
  EXPECT_EQ(fold_cluster_status(0x5010B005u, {}), LLMDD_PARAM_INVALID);
  EXPECT_EQ(fold_cluster_status(0xFFFFFFFFu, {0}), LLMDD_FAILED);
}

// ---- deadlines ----

TEST(deadline_from_timeouts) {
  EXPECT_EQ(deadline_after(-1, 5), kNoDeadline);
  EXPECT_EQ(deadline_after(0, 5), 5);
  EXPECT_EQ(deadline_after(1000, 5), 5 + 1000000000LL);
  EXPECT_EQ(deadline_after(INT32_MAX, 1LL << 60), (1LL << 60) + INT32_MAX * 1000000LL);
  EXPECT(deadline_passed(5, 5));
  EXPECT(!deadline_passed(6, 5));
  EXPECT(!deadline_passed(kNoDeadline, INT64_MAX - 1));
}

TEST(deadline_remaining_ms_rounds_up_and_clamps) {
  const int64_t ms = 1000000;
  EXPECT_EQ(remaining_ms(10 * ms, 10 * ms, INT32_MAX, -1), 0);
  EXPECT_EQ(remaining_ms(10 * ms, 11 * ms, INT32_MAX, -1), 0);
  EXPECT_EQ(remaining_ms(10 * ms + 1, 10 * ms, INT32_MAX, -1), 1);  // 1 ns left: still 1 ms
  EXPECT_EQ(remaining_ms(12 * ms, 10 * ms, INT32_MAX, -1), 2);
  EXPECT_EQ(remaining_ms(12 * ms + 500000, 10 * ms, INT32_MAX, -1), 3);
  EXPECT_EQ(remaining_ms(kNoDeadline, 0, INT32_MAX, -1), -1);
  EXPECT_EQ(remaining_ms(kNoDeadline, 0, INT32_MAX, 600000), 600000);
  EXPECT_EQ(remaining_ms(INT64_MAX - 1, 0, INT32_MAX, -1), INT32_MAX);
  EXPECT_EQ(remaining_ms(100 * ms, 0, 30, -1), 30);
  int64_t now = now_ns();
  int32_t left = remaining_ms(deadline_after(250, now), now_ns(), INT32_MAX, -1);
  EXPECT(left > 0 && left <= 250);
}

TEST(deadline_chunks_cover_the_total) {
  EXPECT_EQ(chunk_count(0, 4096), 0);
  EXPECT_EQ(chunk_count(1, 4096), 1);
  EXPECT_EQ(chunk_count(4096, 4096), 1);
  EXPECT_EQ(chunk_count(4097, 4096), 2);
  EXPECT_EQ(chunk_count(uint64_t{64} << 20, LLMDD_COPY_CHUNK_BYTES), 64);
}

// ---- handles ----

TEST(handles_tell_live_stale_and_foreign) {
  int retained = 0;
  HandleTable engines(HandleTable::kEngine, [&](void *) { retained++; });
  HandleTable jobs(HandleTable::kJob, [](void *) {});
  int a = 1, b = 2;
  uint64_t ha, hb, hj;
  CHECK(engines.insert(&a, &ha));
  CHECK(jobs.insert(&b, &hj));
  EXPECT(ha != 0 && ha < (uint64_t{1} << 53));
  void *got = nullptr;
  EXPECT(engines.acquire(ha, &got) == HandleState::kOk && got == &a);
  EXPECT_EQ(retained, 1);
  EXPECT(engines.acquire(hj, &got) == HandleState::kInvalid);  // a job handle is not an engine's
  EXPECT(engines.acquire(0, &got) == HandleState::kInvalid);
  EXPECT(engines.acquire(ha + 1, &got) == HandleState::kInvalid);
  EXPECT(engines.remove(ha, &got) == HandleState::kOk);
  EXPECT(engines.acquire(ha, &got) == HandleState::kStale);
  EXPECT(engines.remove(ha, &got) == HandleState::kStale);
  CHECK(engines.insert(&b, &hb));  // reuses the slot with a new generation
  EXPECT(hb != ha);
  EXPECT(engines.acquire(ha, &got) == HandleState::kStale);
  EXPECT(engines.acquire(hb, &got) == HandleState::kOk && got == &b);
}

// ---- cache bookkeeping ----

TEST(book_layout_checks) {
  EXPECT_STATUS(check_layout(layout(2, 64, 4), Flavor::kV2), LLMDD_SUCCESS);
  EXPECT_STATUS(check_layout(layout(0, 64, 4), Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(check_layout(layout(1, 0, 1), Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(check_layout(layout(1, 64, 0), Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(check_layout(layout(1, 65, 2), Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(check_layout(layout(1, uint64_t{1} << 63, 1), Flavor::kV2), LLMDD_PARAM_INVALID);
  CacheLayout host = layout(1, 64, 1);
  host.placement = LLMDD_PLACEMENT_HOST;
  EXPECT_STATUS(check_layout(host, Flavor::kV1), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "device memory only"));
  // V2 registers host memory: RegisterKvCache takes CachePlacement::kHost.
  EXPECT_STATUS(check_layout(host, Flavor::kV2), LLMDD_SUCCESS);
  host.placement = 7;
  EXPECT_STATUS(check_layout(host, Flavor::kV2), LLMDD_PARAM_INVALID);
}

TEST(book_v2_registers_at_most_240_addresses_per_cache) {
  // RegisterKvCache takes at most 240 addresses (one per tensor on V2).
  EXPECT_STATUS(check_layout(layout(240, 64, 1), Flavor::kV2), LLMDD_SUCCESS);
  EXPECT_STATUS(check_layout(layout(241, 64, 1), Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "at most 240 addresses"));
  EXPECT_STATUS(check_layout(layout(241, 64, 1), Flavor::kV1), LLMDD_SUCCESS);  // AllocateCache: no such rule
}

TEST(book_memory_returns_once_id_and_keys_are_released) {
  Book book(1 << 20);
  uint64_t keys[6] = {1, 10, 0, 1, 11, 0};
  CacheRecord *r = nullptr;
  CHECK_STATUS(book.add(layout(2, 100, 2), memory(7, 2), keys, 2, &r), LLMDD_SUCCESS);
  EXPECT_EQ(r->id, 7);
  EXPECT_EQ(book.in_use(), 2 * 128);  // tensors charged on 64-byte boundaries
  std::vector<Released> released;
  CHECK_STATUS(book.release_id(7, &released), LLMDD_SUCCESS);
  EXPECT(released.empty());
  EXPECT(book.find(7) == nullptr);
  EXPECT_STATUS(book.release_id(7, &released), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(book.release_key(CacheKey{1, 10, 0}, &released), LLMDD_SUCCESS);
  EXPECT(released.empty());
  EXPECT_STATUS(book.release_key(CacheKey{1, 10, 0}, &released), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(book.release_key(CacheKey{1, 11, 0}, &released), LLMDD_SUCCESS);
  EXPECT_EQ(released.size(), 1);
  EXPECT_EQ(released[0].id, 7);
  EXPECT_EQ(released[0].memory.addrs.size(), 2);
  EXPECT_EQ(book.in_use(), 0);
  EXPECT_EQ(book.live_caches(), 0);
}

TEST(book_pins_hold_memory) {
  Book book(1 << 20);
  CacheRecord *r = nullptr;
  CHECK_STATUS(book.add(layout(1, 64, 1), memory(1, 1), nullptr, 0, &r), LLMDD_SUCCESS);
  book.pin(r);
  std::vector<Released> released;
  CHECK_STATUS(book.release_id(1, &released), LLMDD_SUCCESS);
  EXPECT(released.empty());
  book.unpin(r, &released);
  EXPECT_EQ(released.size(), 1);
}

TEST(book_keys_and_ids_are_checked) {
  Book book(1 << 20);
  uint64_t keys[6] = {1, 10, 0, 1, 10, 0};
  EXPECT_STATUS(book.check_keys(keys, 2), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "repeats key 0"));
  CacheRecord *r = nullptr;
  CHECK_STATUS(book.add(layout(1, 64, 1), memory(3, 1), keys, 1, &r), LLMDD_SUCCESS);
  EXPECT_STATUS(book.check_keys(keys, 1), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "already held by cache 3"));
  EXPECT_STATUS(book.add(layout(1, 64, 1), memory(3, 1), nullptr, 0, &r), LLMDD_FAILED);
  EXPECT(has(last_error(), "still in use"));
  EXPECT_STATUS(book.add(layout(1, 64, 1), memory(0, 1), nullptr, 0, &r), LLMDD_FAILED);
  EXPECT_STATUS(book.add(layout(1, 64, 1), memory(-1, 1), nullptr, 0, &r), LLMDD_FAILED);
  EXPECT_STATUS(book.add(layout(2, 64, 1, 2), memory(4, 3), nullptr, 0, &r), LLMDD_FAILED);
  EXPECT(has(last_error(), "3 tensor addresses for 2 devices x 2 tensors"));
}

TEST(book_budget) {
  Book book(1000);
  EXPECT_STATUS(book.check_budget(1000), LLMDD_SUCCESS);
  EXPECT_STATUS(book.check_budget(1001), LLMDD_DEVICE_OUT_OF_MEMORY);
  CacheRecord *r = nullptr;
  CHECK_STATUS(book.add(layout(1, 640, 1), memory(1, 1), nullptr, 0, &r), LLMDD_SUCCESS);
  EXPECT_STATUS(book.check_budget(361), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(has(last_error(), "640 of 1000 bytes in use"));
  EXPECT_STATUS(book.check_budget(360), LLMDD_SUCCESS);
}

TEST(book_release_all_keeps_pinned_records_without_memory) {
  Book book(1 << 20);
  CacheRecord *pinned = nullptr, *plain = nullptr;
  uint64_t key[3] = {1, 2, 3};
  CHECK_STATUS(book.add(layout(1, 64, 1), memory(1, 1), key, 1, &pinned), LLMDD_SUCCESS);
  CHECK_STATUS(book.add(layout(1, 64, 1), memory(2, 1), nullptr, 0, &plain), LLMDD_SUCCESS);
  book.pin(pinned);
  std::vector<Released> released;
  book.release_all(&released);
  EXPECT_EQ(released.size(), 2);
  EXPECT_EQ(book.in_use(), 0);
  EXPECT_EQ(book.live_caches(), 1);
  EXPECT(!book.key_held(CacheKey{1, 2, 3}));
  released.clear();
  book.unpin(pinned, &released);
  EXPECT(released.empty());  // its memory went back already
  EXPECT_EQ(book.live_caches(), 0);
}

// ---- links ----

TEST(links_reserve_settle_take) {
  Links links;
  std::vector<IpPort> at{{"10.0.0.1", 26000}};
  CHECK_STATUS(links.reserve(5, at), LLMDD_SUCCESS);
  EXPECT(links.find(5) == nullptr);  // pending
  EXPECT_STATUS(links.reserve(5, at), LLMDD_ALREADY_LINK);
  EXPECT(has(last_error(), "being made"));
  Link l;
  EXPECT_STATUS(links.take(5, &l), LLMDD_NOT_YET_LINK);
  links.settle(5, true);
  EXPECT(links.find(5) != nullptr);
  EXPECT_STATUS(links.reserve(5, at), LLMDD_ALREADY_LINK);
  CHECK_STATUS(links.take(5, &l), LLMDD_SUCCESS);
  EXPECT(l.remote[0].ip == "10.0.0.1");
  EXPECT_STATUS(links.take(5, &l), LLMDD_NOT_YET_LINK);
  CHECK_STATUS(links.reserve(6, at), LLMDD_SUCCESS);
  links.settle(6, false);
  EXPECT_EQ(links.count(), 0);
}

TEST(links_at_most_16) {
  Links links;
  for (uint64_t c = 1; c <= LLMDD_MAX_LINKS; c++) {
    CHECK_STATUS(links.reserve(c, {}), LLMDD_SUCCESS);
    links.settle(c, true);
  }
  EXPECT_STATUS(links.reserve(100, {}), LLMDD_CLUSTER_NUM_EXCEED_LIMIT);
  EXPECT_EQ(links.take_all().size(), LLMDD_MAX_LINKS);
  EXPECT_STATUS(links.reserve(100, {}), LLMDD_SUCCESS);
}

TEST(links_addresses) {
  std::vector<IpPort> out;
  auto parse = [&](const char *text, int32_t devices, Flavor flavor) {
    return parse_link_address(reinterpret_cast<const uint8_t *>(text), static_cast<int32_t>(strlen(text)), devices,
                              flavor, &out);
  };
  EXPECT_STATUS(parse("10.0.0.1:26000", 1, Flavor::kV2), LLMDD_SUCCESS);
  EXPECT_STATUS(parse("10.0.0.1:0", 1, Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("nowhere", 1, Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("10.0.0.1:1;10.0.0.2:1", 2, Flavor::kV1), LLMDD_SUCCESS);
  EXPECT_EQ(out.size(), 2);
  EXPECT_STATUS(parse("10.0.0.1:1;10.0.0.2:1", 3, Flavor::kV1), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("10.0.0.1:1;10.0.0.2:1", 1, Flavor::kV2), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(parse_link_address(nullptr, 0, 1, Flavor::kV2, &out), LLMDD_PARAM_INVALID);
}

// ---- translations ----

TEST(translate_pull_by_id_becomes_a_cache_index) {
  PullPlan plan;
  CHECK_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, 2, 1, LLMDD_WHOLE_ROW, layout(2, 256, 4), &plan), LLMDD_SUCCESS);
  EXPECT_EQ(plan.cluster_id, 9);
  EXPECT_EQ(plan.cache_id, 4);
  EXPECT_EQ(plan.batch_index, 2);
  EXPECT_EQ(plan.dst_batch_index, 1);
  EXPECT_EQ(plan.size, -1);
  CHECK_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, 0, 3, 64, layout(2, 256, 4), &plan), LLMDD_SUCCESS);
  EXPECT_EQ(plan.size, 64);
}

TEST(translate_pull_rejections) {
  PullPlan plan;
  CacheLayout dst = layout(2, 256, 4);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_CACHE_KEY, 9, 100, 0, 0, LLMDD_WHOLE_ROW, dst, &plan), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "CacheIndex"));
  EXPECT(has(last_error(), "CacheKeyByIdAndIndex"));
  EXPECT_STATUS(plan_pull(7, 9, 4, 0, 0, LLMDD_WHOLE_ROW, dst, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, 0, 4, LLMDD_WHOLE_ROW, dst, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, 0, -1, LLMDD_WHOLE_ROW, dst, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, 0, 0, 65, dst, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 0, 0, 0, 64, dst, &plan), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, uint64_t{1} << 63, 0, 0, 64, dst, &plan), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(plan_pull(LLMDD_KEY_BY_ID, 9, 4, uint64_t{1} << 32, 0, 64, dst, &plan), LLMDD_PARAM_INVALID);
}

TEST(translate_copy_within_a_row) {
  CopyPlan plan;
  CacheLayout four = layout(2, 256, 4), one = layout(2, 64, 1);  // rows of 64 bytes
  // The upstream sample: a 1-batch source into row 1 of a 4-batch cache.
  CHECK_STATUS(plan_copy(four, one, false, 64, 0, 64, &plan), LLMDD_SUCCESS);
  EXPECT_EQ(plan.dst_batch_index, 1);
  EXPECT_EQ(plan.src_batch_index, 0);
  EXPECT_EQ(plan.offset, 0);
  EXPECT_EQ(plan.size, 64);
  CHECK_STATUS(plan_copy(four, four, true, 3 * 64 + 8, 8, 16, &plan), LLMDD_SUCCESS);
  EXPECT_EQ(plan.dst_batch_index, 3);
  EXPECT_EQ(plan.offset, 8);
  CHECK_STATUS(plan_copy(four, one, false, 0, 0, 0, &plan), LLMDD_SUCCESS);
  EXPECT(plan.nothing);
}

TEST(translate_copy_rejections) {
  CopyPlan plan;
  CacheLayout four = layout(2, 256, 4), three_tensors = layout(3, 256, 4);
  EXPECT_STATUS(plan_copy(four, three_tensors, false, 0, 0, 8, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_copy(four, four, false, 250, 0, 8, &plan), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(plan_copy(four, four, true, 0, 4, 8, &plan), LLMDD_PARAM_INVALID);  // overlap
  EXPECT(has(last_error(), "overlap"));
  EXPECT_STATUS(plan_copy(four, four, false, 0, 0, 128, &plan), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "row boundary"));
  EXPECT_STATUS(plan_copy(four, four, false, 8, 16, 8, &plan), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "one offset"));
}

TEST(translate_shape_is_rows_of_bytes) {
  std::vector<int64_t> shape = upstream_shape(layout(2, 4 * 96, 4));
  CHECK(shape.size() == 2);
  EXPECT_EQ(shape[0], 4);
  EXPECT_EQ(shape[1], 96);
}

// ---- staging slots ----

TEST(staging_slots_are_reused_and_drain) {
  StagingPool pool;
  EXPECT(pool.take(0) == nullptr);
  StagingSlot fresh;
  fresh.device_index = 0;
  StagingSlot *a = pool.add(fresh);
  EXPECT(a->state == StagingSlot::State::kBusy);
  EXPECT(pool.take(0) == nullptr);  // busy
  pool.give_back(a);
  EXPECT(pool.take(1) == nullptr);  // another device's
  EXPECT(pool.take(0) == a);
  pool.abandon(a, 42);
  EXPECT(pool.take(0) == nullptr);  // draining: not reused
  std::vector<uint64_t> drained;
  pool.reclaim([](const StagingSlot &) { return false; }, &drained);
  EXPECT(drained.empty());
  EXPECT_EQ(pool.count(StagingSlot::State::kDraining), 1);
  pool.reclaim([](const StagingSlot &) { return true; }, &drained);
  CHECK(drained.size() == 1);
  EXPECT_EQ(drained[0], 42);
  EXPECT(pool.take(0) == a);
  EXPECT_EQ(pool.take_all().size(), 1);
  EXPECT_EQ(pool.count(StagingSlot::State::kIdle), 0);
}

// ---- last error ----

TEST(last_error_is_per_thread) {
  fail(LLMDD_PARAM_INVALID, "on the test thread");
  std::string other = "unset";
  std::thread([&] { other = last_error(); }).join();
  EXPECT(other.empty());
  EXPECT(last_error() == "on the test thread");
  uint8_t buf[8];
  EXPECT_EQ(copy_message_out("abcdefghij", buf, 8), 10);
  EXPECT(std::string(reinterpret_cast<char *>(buf)) == "abcdefg");
  EXPECT_EQ(copy_message_out("abc", nullptr, 0), 3);
}
