// The exported llmdd_* functions end to end, with the fake backend in place of
// cann_calls.cpp: what the TypeScript side relies on (statuses, messages,
// handles, jobs with deadline / cancel / done callback, cache lifetime, links,
// pulls) is the adapter's logic and is checked here.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "abi_support.hpp"
#include "fake_backend.hpp"
#include "harness.hpp"
#include "llmdd.h"

using namespace abi;

namespace {

// Waits for background operations' done callbacks.
struct Done {
  std::mutex lock;
  std::condition_variable cv;
  std::vector<std::pair<uint64_t, int32_t>> calls;
  std::string message;  // read inside the callback
};
Done *g_done = nullptr;
void on_done(uint64_t job, int32_t status) {
  char buf[256];
  llmdd_job_message(job, reinterpret_cast<uint8_t *>(buf), sizeof buf);
  std::lock_guard<std::mutex> guard(g_done->lock);
  g_done->calls.emplace_back(job, status);
  g_done->message = buf;
  g_done->cv.notify_all();
}
bool wait_calls(Done &d, size_t n, int ms = 5000) {
  std::unique_lock<std::mutex> guard(d.lock);
  return d.cv.wait_for(guard, std::chrono::milliseconds(ms), [&] { return d.calls.size() >= n; });
}

}  // namespace

TEST(abi_version_is_the_headers) { EXPECT_EQ(llmdd_abi_version(), LLMDD_ABI_VERSION); }

TEST(abi_engine_init_validates_its_arguments) {
  fake::reset();
  uint64_t e = 0;
  EXPECT_STATUS(init(0, 1, "", &e), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "role 0"));
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, 1, nullptr, 0, nullptr), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, 1, nullptr, 3, &e), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, 1, nullptr, -1, &e), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.exec.deviceId=x", &e), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 1, "llm.listenIpInfo=1.2.3.4:5", &e), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 1, "ge.exec.deviceId=0;1", &e), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "one device per process"));
  EXPECT_EQ(fake::record().finalized, 0);  // the backend was never reached
}

TEST(abi_engine_init_hands_upstream_the_mapped_options) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 42,
                    "ge.exec.deviceId=3\nllm.listenIpInfo=10.1.1.1:26000\nllm.SyncKvCacheWaitTime=750\n"
                    "llm.BufPoolCfg={}",
                    &e),
               LLMDD_SUCCESS);
  auto &opts = fake::record().init_options;
  CHECK(opts.size() == 4);
  EXPECT(opts[0].first == "llm.DeviceId" && opts[0].second == "3");
  EXPECT(opts[1].first == "llm.ListenIpInfo" && opts[1].second == "10.1.1.1:26000");
  EXPECT(opts[2].first == "llm.SyncKvCacheWaitTime" && opts[2].second == "750");
  EXPECT(opts[3].first == "llm.BufPoolCfg" && opts[3].second == "{}");
  EXPECT_EQ(fake::record().init_role, LLMDD_ROLE_PROMPT);
  EXPECT_EQ(fake::record().init_cluster, 42);
  uint64_t info[5];
  CHECK_STATUS(llmdd_engine_info(e, info), LLMDD_SUCCESS);
  EXPECT_EQ(info[0], 1);
  EXPECT_EQ(info[1], 0);  // never host-accessible: no views
  EXPECT_EQ(info[2], uint64_t{1} << 30);
  EXPECT_EQ(info[3], LLMDD_ROLE_PROMPT);
  EXPECT_EQ(info[4], 26000);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_upstream_refusal_passes_through) {
  fake::reset();
  fake::knobs().init_status = static_cast<int32_t>(0x5010B005u);
  uint64_t e = 0;
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "fake: Initialize refused"));
  fake::knobs().init_status = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_SUCCESS);  // the failed init left no engine behind
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_one_engine_per_process_as_upstream) {
  fake::reset();
  uint64_t a = 0, b = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &a), LLMDD_SUCCESS);
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &b), LLMDD_FAILED);
  EXPECT(has(message(), "per process"));
  CHECK_STATUS(llmdd_engine_finalize(a), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &b), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(b), LLMDD_SUCCESS);
}

TEST(abi_handles_are_validated) {
  fake::reset();
  uint64_t e = 0, job = 0, info[5], usage[2];
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_job_create(-1, nullptr, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_info(job, info), LLMDD_PARAM_INVALID);  // a job is not an engine
  EXPECT_STATUS(llmdd_engine_info(0, info), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_info(12345, info), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_job_cancel(e), LLMDD_PARAM_INVALID);  // an engine is not a job
  EXPECT_STATUS(llmdd_engine_info(e, nullptr), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(e, 1, usage), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(e), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_info(e, info), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_ENGINE_FINALIZED);
  Cache c;
  EXPECT_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_deallocate(e, 1), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_finalize(job), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_PARAM_INVALID);
  EXPECT_EQ(llmdd_job_message(job, nullptr, 0), -1);
}

TEST(abi_allocate_read_deallocate) {
  fake::reset();
  uint64_t e = 0, usage[2];
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.flowGraphMemMaxSize=1048576", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 2, 10000, 4, &c), LLMDD_SUCCESS);
  EXPECT_EQ(c.id, 1);
  EXPECT(c.addrs[0] != 0 && c.addrs[1] != 0);
  CHECK_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);
  EXPECT_EQ(usage[0], 2 * 10048);
  EXPECT_EQ(usage[1], 1048576);
  fill(c.addrs[1], 10000, 3);
  std::vector<uint8_t> out(10000);
  CHECK_STATUS(llmdd_cache_read(e, c.id, 1, 0, out.data(), out.size(), 0), LLMDD_SUCCESS);
  EXPECT(std::memcmp(out.data(), bytes_at(c.addrs[1]), out.size()) == 0);
  EXPECT_EQ(fake::record().reads, 3);  // 10000 bytes in chunks of 4096
  // Job 0: bounded by llm.SyncKvCacheWaitTime (default 1000 ms), never unbounded.
  EXPECT(fake::record().last_read_timeout > 0 && fake::record().last_read_timeout <= 1000);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 2, 0, out.data(), out.size(), 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 1, out.data(), out.size(), 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 9999, 0), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "out_len 9999"));
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, nullptr, 10000, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_read(e, 99, 0, 0, out.data(), 10000, 0), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(llmdd_cache_deallocate(e, c.id), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
  EXPECT_STATUS(llmdd_cache_deallocate(e, c.id), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 10000, 0), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);
  EXPECT_EQ(usage[0], 0);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_allocate_checks_memory_before_keys) {
  // As upstream's CacheManager::Allocate: memory first, then keys. A cache too
  // large for the pool is LLM_DEVICE_OUT_OF_MEMORY even with a key already held
  // (the fuzz model's seed 148161442 found the host backend's order wrong).
  fake::reset();
  uint64_t p = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.flowGraphMemMaxSize=4096", &p), LLMDD_SUCCESS);
  const std::vector<uint64_t> key = {7, 7, 0};
  Cache held, big;
  CHECK_STATUS(allocate(p, 1, 1, 64, 1, &held, key), LLMDD_SUCCESS);
  EXPECT_STATUS(allocate(p, 1, 1, 8192, 1, &big, key), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT_STATUS(allocate(p, 1, 1, 64, 1, &big, key), LLMDD_PARAM_INVALID);  // fits: now the key counts
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
}

TEST(abi_allocate_rules) {
  fake::reset();
  uint64_t p = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.flowGraphMemMaxSize=4096", &p), LLMDD_SUCCESS);
  uint64_t id = 0, addrs[4];
  EXPECT_STATUS(llmdd_cache_allocate(p, 1, 64, 1, 0, 5, nullptr, 0, &id, addrs, 4), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "placement 5"));
  EXPECT_STATUS(llmdd_cache_allocate(p, 2, 64, 1, 0, LLMDD_PLACEMENT_DEVICE, nullptr, 0, &id, addrs, 1),
                LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "addrs_cap 1"));
  Cache c;
  EXPECT_STATUS(allocate(p, 1, 1, 8192, 1, &c), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(has(message(), "ge.flowGraphMemMaxSize"));
  EXPECT_EQ(fake::record().live_caches, 0);  // refused before upstream was asked
  fake::knobs().allocate_status = static_cast<int32_t>(0x5010B00Eu);
  EXPECT_STATUS(allocate(p, 1, 1, 64, 1, &c), LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(has(message(), "fake: allocation refused"));
  fake::knobs().allocate_status = 0;
  fake::knobs().allocate_throws = true;
  EXPECT_STATUS(allocate(p, 1, 1, 64, 1, &c), LLMDD_OUT_OF_MEMORY);  // no exception crosses the ABI
  fake::knobs().allocate_throws = false;
  CHECK_STATUS(allocate(p, 1, 1, 64, 1, &c), LLMDD_SUCCESS);
  fake::knobs().forced_id = static_cast<int64_t>(c.id);  // upstream hands out an id still in use
  Cache twin;
  EXPECT_STATUS(allocate(p, 1, 1, 64, 1, &twin), LLMDD_FAILED);
  EXPECT(has(message(), "still in use"));
  EXPECT_EQ(fake::record().live_caches, 1);  // the twin's memory went back
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);

  uint64_t d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(allocate(d, 1, 1, 64, 2, &c, {1, 1, 0}), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "DECODER"));
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
}

TEST(abi_keys_hold_memory_until_released) {
  fake::reset();
  uint64_t p = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &p), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(p, 1, 1, 128, 2, &c, {1, 100, 0, 1, 101, 0}), LLMDD_SUCCESS);
  Cache clash;
  EXPECT_STATUS(allocate(p, 1, 1, 128, 2, &clash, {1, 101, 0}), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "already held by cache 1"));
  CHECK_STATUS(llmdd_cache_deallocate(p, c.id), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 1);
  CHECK_STATUS(llmdd_cache_key_remove(p, 1, 100, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 1);
  EXPECT_STATUS(llmdd_cache_key_remove(p, 1, 100, 0), LLMDD_KV_CACHE_NOT_EXIST);
  CHECK_STATUS(llmdd_cache_key_remove(p, 1, 101, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
}

TEST(abi_jobs_deadline_and_cancel) {
  fake::reset();
  uint64_t e = 0, job = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_SUCCESS);
  std::vector<uint8_t> out(64);
  // Timeout 0: already due, nothing is copied.
  CHECK_STATUS(llmdd_job_create(0, nullptr, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_EQ(fake::record().reads, 0);
  char buf[256];
  EXPECT(llmdd_job_message(job, reinterpret_cast<uint8_t *>(buf), sizeof buf) > 0);
  EXPECT(has(buf, "deadline passed"));
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  // A cancelled job stops at once with FAILED "cancelled".
  CHECK_STATUS(llmdd_job_create(-1, nullptr, &job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, job), LLMDD_FAILED);
  EXPECT(message() == "cancelled");
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  // The device wait gets what is left of the deadline.
  CHECK_STATUS(llmdd_job_create(500, nullptr, &job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, job), LLMDD_SUCCESS);
  EXPECT(fake::record().last_read_timeout > 0 && fake::record().last_read_timeout <= 500);
  EXPECT_EQ(llmdd_job_message(job, nullptr, 0), 0);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, job), LLMDD_PARAM_INVALID);  // released job
  EXPECT_STATUS(llmdd_job_create(5, nullptr, nullptr), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_deadline_passing_mid_read) {
  fake::reset();
  // 8 chunks of 80 ms: all of them take 640 ms, far past the 70 ms deadline
  // plus the margin a loaded 2-core machine needs (a 50 ms margin failed once).
  fake::knobs().read_delay_ms = 80;
  uint64_t e = 0, job = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 4096 * 8, 1, &c), LLMDD_SUCCESS);
  std::vector<uint8_t> out(4096 * 8);
  CHECK_STATUS(llmdd_job_create(70, nullptr, &job), LLMDD_SUCCESS);
  auto start = std::chrono::steady_clock::now();
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), out.size(), job), LLMDD_WAIT_PROCESS_TIMEOUT);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT(ms < 70 + 250);  // promptly after the deadline, not after all 8 chunks (640 ms)
  EXPECT(fake::record().reads < 8);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);  // an abandoned copy was waited for at finalize
}

TEST(abi_job_0_reads_are_bounded_by_sync_wait_time) {
  fake::reset();
  fake::knobs().read_delay_ms = 500;  // far past the 40 ms wait time plus a loaded machine's margin
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "llm.SyncKvCacheWaitTime=40", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_SUCCESS);
  std::vector<uint8_t> out(64);
  auto start = std::chrono::steady_clock::now();
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, 0), LLMDD_WAIT_PROCESS_TIMEOUT);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT(ms < 40 + 250);
  EXPECT(fake::record().last_read_timeout > 0 && fake::record().last_read_timeout <= 40);
  EXPECT(has(message(), "deadline passed"));
  fake::knobs().read_delay_ms = 0;
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
}

TEST(abi_abandoned_device_copy_keeps_the_cache_pinned) {
  fake::reset();
  uint64_t e = 0, job = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_SUCCESS);
  std::vector<uint8_t> out(64);
  fake::knobs().reads_time_out = true;
  fake::knobs().streams_idle = false;
  CHECK_STATUS(llmdd_job_create(100, nullptr, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), 64, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  fake::knobs().reads_time_out = false;
  CHECK_STATUS(llmdd_cache_deallocate(e, c.id), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 1);  // the device may still read it
  uint64_t usage[2];
  CHECK_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);
  EXPECT_EQ(usage[0], 64);
  fake::knobs().streams_idle = true;  // the copy has ended
  CHECK_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);  // pool_usage does not reap
  Cache other;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &other), LLMDD_SUCCESS);  // the next cache call reaps
  EXPECT_EQ(fake::record().live_caches, 1);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
}

TEST(abi_background_jobs_report_through_the_callback) {
  fake::reset();
  Done done;
  g_done = &done;
  uint64_t e = 0, job = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 5000, 1, &c), LLMDD_SUCCESS);
  fill(c.addrs[0], 5000, 9);
  std::vector<uint8_t> out(5000);
  CHECK_STATUS(llmdd_job_create(-1, on_done, &job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), out.size(), job), LLMDD_SUCCESS);  // accepted
  CHECK(wait_calls(done, 1));
  EXPECT_EQ(done.calls[0].first, job);
  EXPECT_STATUS(done.calls[0].second, LLMDD_SUCCESS);
  EXPECT(std::memcmp(out.data(), bytes_at(c.addrs[0]), out.size()) == 0);
  // A validation error is returned at once and the callback is not called.
  EXPECT_STATUS(llmdd_cache_read(e, 77, 0, 0, out.data(), out.size(), job), LLMDD_KV_CACHE_NOT_EXIST);
  // A failure is reported through the callback, with its message in the job.
  CHECK_STATUS(llmdd_job_cancel(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_read(e, c.id, 0, 0, out.data(), out.size(), job), LLMDD_SUCCESS);
  CHECK(wait_calls(done, 2));
  EXPECT_STATUS(done.calls[1].second, LLMDD_FAILED);
  EXPECT(done.message == "cancelled");
  EXPECT_EQ(done.calls.size(), 2);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  g_done = nullptr;
}

TEST(abi_finalize_waits_and_queued_work_ends_finalized) {
  fake::reset();
  fake::knobs().read_delay_ms = 150;
  Done done;
  g_done = &done;
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_SUCCESS);
  std::vector<std::vector<uint8_t>> outs(4, std::vector<uint8_t>(64));
  std::vector<uint64_t> jobs(4);
  for (size_t i = 0; i < jobs.size(); i++) {
    CHECK_STATUS(llmdd_job_create(-1, on_done, &jobs[i]), LLMDD_SUCCESS);
    CHECK_STATUS(llmdd_cache_read(e, c.id, 0, 0, outs[i].data(), 64, jobs[i]), LLMDD_SUCCESS);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // two are running, two are queued
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT(wait_calls(done, 4));
  int finalized = 0, succeeded = 0;
  for (auto &call : done.calls) {
    finalized += call.second == LLMDD_ENGINE_FINALIZED;
    succeeded += call.second == LLMDD_SUCCESS;
  }
  EXPECT_EQ(succeeded, 2);
  EXPECT_EQ(finalized, 2);
  EXPECT_EQ(fake::record().live_caches, 0);
  for (uint64_t job : jobs) EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  g_done = nullptr;
}

TEST(abi_copy_uses_one_row_per_call) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache four, one;
  CHECK_STATUS(allocate(e, 1, 2, 256, 4, &four), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(e, 1, 2, 64, 1, &one), LLMDD_SUCCESS);
  fill(one.addrs[0], 64, 1);
  fill(one.addrs[1], 64, 2);
  CHECK_STATUS(llmdd_cache_copy(e, four.id, one.id, 64, 0, 64, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_copy.dst_batch_index, 1);
  EXPECT(std::memcmp(bytes_at(four.addrs[0]) + 64, bytes_at(one.addrs[0]), 64) == 0);
  EXPECT(std::memcmp(bytes_at(four.addrs[1]) + 64, bytes_at(one.addrs[1]), 64) == 0);
  EXPECT_STATUS(llmdd_cache_copy(e, four.id, four.id, 0, 128, 128, 0), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "row boundary"));
  EXPECT_STATUS(llmdd_cache_copy(e, four.id, four.id, 0, 68, 8, 0), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "one offset"));
  EXPECT_STATUS(llmdd_cache_copy(e, four.id, four.id, 0, 8, 16, 0), LLMDD_PARAM_INVALID);  // overlap
  EXPECT_STATUS(llmdd_cache_copy(e, four.id, 99, 0, 0, 8, 0), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT(has(message(), "source cache 99"));
  int copies = fake::record().copies;
  CHECK_STATUS(llmdd_cache_copy(e, four.id, one.id, 0, 0, 0, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().copies, copies);  // nothing to copy, nothing asked
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_link_pull_unlink) {
  fake::reset();
  fake::knobs().max_engines = 2;  // the fake lets two engines share the process
  uint64_t p = 0, d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.listenIpInfo=10.0.0.1:26000", &p), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2", &d), LLMDD_SUCCESS);
  Cache src, dst;
  CHECK_STATUS(allocate(p, 1, 2, 4 * 32, 4, &src, {1, 7, 0}), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(d, 1, 2, 2 * 32, 2, &dst), LLMDD_SUCCESS);
  fill(src.addrs[0], 128, 10);
  fill(src.addrs[1], 128, 20);
  const char *addr = "10.0.0.1:26000";
  auto link = [&](uint64_t engine, uint64_t cluster, const char *at, uint64_t job) {
    return llmdd_link(engine, cluster, reinterpret_cast<const uint8_t *>(at), static_cast<int32_t>(strlen(at)), job);
  };
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 2, 1, LLMDD_WHOLE_ROW, 0),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(link(p, 2, addr, 0), LLMDD_PARAM_INVALID);  // a PROMPT does not link
  EXPECT_STATUS(link(d, 1, "10.0.0.9:26000", 0), LLMDD_LINK_FAILED);
  EXPECT(has(message(), "nobody"));
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(300, nullptr, &job), LLMDD_SUCCESS);
  CHECK_STATUS(link(d, 1, addr, job), LLMDD_SUCCESS);
  EXPECT(fake::record().last_link_timeout > 0 && fake::record().last_link_timeout <= 300);
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1, addr, 0), LLMDD_ALREADY_LINK);
  EXPECT_EQ(fake::record().last_link_timeout, 300);  // unchanged: refused before upstream

  CHECK_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 2, 1, LLMDD_WHOLE_ROW, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_pull.batch_index, 2);
  EXPECT_EQ(fake::record().last_pull.dst_batch_index, 1);
  EXPECT(std::memcmp(bytes_at(dst.addrs[0]) + 32, bytes_at(src.addrs[0]) + 64, 32) == 0);
  EXPECT(std::memcmp(bytes_at(dst.addrs[1]) + 32, bytes_at(src.addrs[1]) + 64, 32) == 0);
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_CACHE_KEY, 1, 7, 0, 0, LLMDD_WHOLE_ROW, 0),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "CacheKeyByIdAndIndex"));
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, 999, 0, 0, LLMDD_WHOLE_ROW, 0),
                LLMDD_KV_CACHE_NOT_EXIST);  // upstream's answer, passed through
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, 2, LLMDD_WHOLE_ROW, 0),
                LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_pull(p, src.id, LLMDD_KEY_BY_ID, 2, 1, 0, 0, LLMDD_WHOLE_ROW, 0), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "PROMPT engine does not pull"));

  CHECK_STATUS(llmdd_unlink(d, 1, 0, 0), LLMDD_SUCCESS);
  EXPECT(!fake::record().last_unlink_force);
  EXPECT_STATUS(llmdd_unlink(d, 1, 1, 0), LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 2, 1, LLMDD_WHOLE_ROW, 0),
                LLMDD_NOT_YET_LINK);
  CHECK_STATUS(link(d, 1, addr, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_link_timeout, 600000);  // no deadline: the adapter's bound
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);  // unlinks what is still linked
  EXPECT(fake::record().last_unlink_force);
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
}

TEST(abi_at_most_16_links) {
  fake::reset();
  fake::knobs().link_anything = true;
  uint64_t d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.LocalCommRes={\"version\": \"1.3\"}", &d), LLMDD_SUCCESS);
  const char *addr = "10.0.0.1:26000";
  for (uint64_t c = 100; c < 100 + LLMDD_MAX_LINKS; c++)
    CHECK_STATUS(llmdd_link(d, c, reinterpret_cast<const uint8_t *>(addr), 14, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_link(d, 999, reinterpret_cast<const uint8_t *>(addr), 14, 0), LLMDD_CLUSTER_NUM_EXCEED_LIMIT);
  CHECK_STATUS(llmdd_unlink(d, 100, 1, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_link(d, 999, reinterpret_cast<const uint8_t *>(addr), 14, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_link(d, 5, reinterpret_cast<const uint8_t *>("bad"), 3, 0), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
}

TEST(abi_multi_device_on_v1) {
  fake::reset();
  fake::knobs().flavor = llmdd::Flavor::kV1;
  uint64_t p = 0;
  EXPECT_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.exec.deviceId=0;1", &p), LLMDD_PARAM_INVALID);  // V1 PROMPT listens
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "ge.exec.deviceId=0;1\nllm.listenIpInfo=10.0.0.1:1;10.0.0.2:1", &p),
               LLMDD_SUCCESS);
  uint64_t info[5];
  CHECK_STATUS(llmdd_engine_info(p, info), LLMDD_SUCCESS);
  EXPECT_EQ(info[0], 2);
  Cache c;
  CHECK_STATUS(allocate(p, 2, 3, 64, 1, &c), LLMDD_SUCCESS);
  EXPECT_EQ(c.addrs.size(), 6);
  fill(c.addrs[3 + 2], 64, 5);  // device 1, tensor 2
  std::vector<uint8_t> out(64);
  CHECK_STATUS(llmdd_cache_read(p, c.id, 2, 1, out.data(), 64, 0), LLMDD_SUCCESS);
  EXPECT(std::memcmp(out.data(), bytes_at(c.addrs[5]), 64) == 0);
  uint64_t usage[2];
  CHECK_STATUS(llmdd_pool_usage(p, 1, usage), LLMDD_SUCCESS);
  EXPECT_EQ(usage[0], 3 * 64);
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
}

TEST(abi_concurrent_reads_are_safe) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 2, 20000, 1, &c), LLMDD_SUCCESS);
  fill(c.addrs[0], 20000, 1);
  fill(c.addrs[1], 20000, 2);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([&, t] {
      std::vector<uint8_t> out(20000);
      for (int i = 0; i < 50; i++) {
        int tensor = (t + i) % 2;
        if (llmdd_cache_read(e, c.id, tensor, 0, out.data(), out.size(), 0) != LLMDD_SUCCESS ||
            std::memcmp(out.data(), bytes_at(c.addrs[static_cast<size_t>(tensor)]), out.size()) != 0)
          bad++;
      }
    });
  for (auto &th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

// ---- upstream's rules, as read in hicann/hixl (issue 11) ----

TEST(abi_v2_host_placement_registers_host_memory) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  uint64_t id = 0, addrs[2];
  CHECK_STATUS(llmdd_cache_allocate(e, 2, 64, 1, 0, LLMDD_PLACEMENT_HOST, nullptr, 0, &id, addrs, 2), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_allocate_placement, LLMDD_PLACEMENT_HOST);
  fill(addrs[1], 64, 3);
  std::vector<uint8_t> out(64);
  CHECK_STATUS(llmdd_cache_read(e, id, 1, 0, out.data(), 64, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_read_placement, LLMDD_PLACEMENT_HOST);  // the backend reads host memory directly
  EXPECT(std::memcmp(out.data(), bytes_at(addrs[1]), 64) == 0);
  CHECK_STATUS(llmdd_cache_deallocate(e, id), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);

  fake::knobs().flavor = llmdd::Flavor::kV1;  // AllocateCache: device memory only
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.listenIpInfo=10.0.0.1:26000", &e), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_allocate(e, 1, 64, 1, 0, LLMDD_PLACEMENT_HOST, nullptr, 0, &id, addrs, 2),
                LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(message(), "device memory only"));
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_v2_caches_register_at_most_240_addresses) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache c;
  EXPECT_STATUS(allocate(e, 1, 241, 64, 1, &c), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "at most 240 addresses"));
  EXPECT_EQ(fake::record().live_caches, 0);  // refused before upstream was asked
  CHECK_STATUS(allocate(e, 1, 240, 64, 1, &c), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_v2_copy_is_made_per_tensor_row_within_the_deadline) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.SyncKvCacheWaitTime=700", &e), LLMDD_SUCCESS);
  Cache four, one;
  CHECK_STATUS(allocate(e, 1, 3, 4 * 64, 4, &four), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(e, 1, 3, 64, 1, &one), LLMDD_SUCCESS);
  for (int t = 0; t < 3; t++) fill(one.addrs[t], 64, static_cast<uint8_t>(t * 50));
  // Bytes 8..40 of row 0 of `one` → the same bytes of row 2 of `four`, in every tensor.
  CHECK_STATUS(llmdd_cache_copy(e, four.id, one.id, 2 * 64 + 8, 8, 32, 0), LLMDD_SUCCESS);
  for (int t = 0; t < 3; t++) {
    EXPECT(std::memcmp(bytes_at(four.addrs[t]) + 2 * 64 + 8, bytes_at(one.addrs[t]) + 8, 32) == 0);
    EXPECT(bytes_at(four.addrs[t])[2 * 64 + 7] == 0 && bytes_at(four.addrs[t])[2 * 64 + 40] == 0);
  }
  // Job 0 is bounded by llm.SyncKvCacheWaitTime, as a read.
  EXPECT(fake::record().last_copy_timeout > 0 && fake::record().last_copy_timeout <= 700);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_abandoned_device_copy_keeps_both_caches_pinned) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  Cache a, b;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &b), LLMDD_SUCCESS);
  fake::knobs().copies_time_out = true;
  fake::knobs().streams_idle = false;
  EXPECT_STATUS(llmdd_cache_copy(e, a.id, b.id, 0, 0, 64, 0), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT(has(message(), "while copying"));
  CHECK_STATUS(llmdd_cache_deallocate(e, a.id), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_cache_deallocate(e, b.id), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 2);  // the device may still copy between them
  fake::knobs().streams_idle = true;
  uint64_t usage[2];
  CHECK_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &c), LLMDD_SUCCESS);  // the next call polls and frees them
  EXPECT_EQ(fake::record().live_caches, 1);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches, 0);
}

TEST(abi_v2_link_needs_one_local_address_unless_local_comm_res) {
  fake::reset();
  fake::knobs().link_anything = true;
  const char *addr = "10.0.0.1:26000";
  auto link = [&](uint64_t engine, uint64_t cluster) {
    return llmdd_link(engine, cluster, reinterpret_cast<const uint8_t *>(addr), 14, 0);
  };
  uint64_t d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "exactly one in llmdd.cann.localIpInfo"));
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2;10.0.0.3", &d), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "exactly one local_ip_info"));
  // An empty llm.LocalCommRes is "not configured" upstream.
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.LocalCommRes=", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.LocalCommRes={\"version\": \"1.3\"}", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  fake::knobs().flavor = llmdd::Flavor::kV1;  // a rule of V2's link handler only
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "", &d), LLMDD_SUCCESS);
  EXPECT_STATUS(link(d, 1), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
}

TEST(abi_hixl_transfer_backend_rules) {
  fake::reset();
  fake::knobs().link_anything = true;
  uint64_t d = 0;
  // With HIXL every side listens: a DECODER is given an address, and must be.
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.TransferBackend=hixl\nllm.listenIpInfo=10.0.0.2:26001", &d),
               LLMDD_SUCCESS);
  uint64_t info[5];
  CHECK_STATUS(llmdd_engine_info(d, info), LLMDD_SUCCESS);
  EXPECT_EQ(info[4], 26001);
  EXPECT_STATUS(llmdd_link(d, 1, reinterpret_cast<const uint8_t *>("10.0.0.1:26000"), 14, 0),
                LLMDD_SUCCESS);  // no local address needed
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.TransferBackend=hixl", &d), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "needs llm.listenIpInfo on every side"));
  EXPECT_STATUS(init(LLMDD_ROLE_DECODER, 2, "llm.listenIpInfo=10.0.0.2:26001", &d), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "with llm.TransferBackend=hixl every side listens"));
  EXPECT_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.TransferBackend=rdma\nllm.listenIpInfo=10.0.0.1:1", &d),
                LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "'rdma' is not a transfer backend"));
  EXPECT_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.GlobalResourceConfig={}", &d), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "only with llm.TransferBackend=hixl"));
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1,
                    "llm.TransferBackend=hixl\nllm.listenIpInfo=10.0.0.1:1\n"
                    "llm.GlobalResourceConfig={\"comm_resource_config.max_active_channels\": 128}",
                    &d),
               LLMDD_SUCCESS);
  bool passed = false;
  for (const auto &kv : fake::record().init_options)
    if (kv.first == "llm.GlobalResourceConfig" && kv.second == "{\"comm_resource_config.max_active_channels\": 128}")
      passed = true;
  EXPECT(passed);  // handed to upstream unchanged
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
}

TEST(abi_v2_pull_into_a_cache_registered_after_the_link_is_refused) {
  fake::reset();
  fake::knobs().max_engines = 2;
  uint64_t p = 0, d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.listenIpInfo=10.0.0.1:26000", &p), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2", &d), LLMDD_SUCCESS);
  Cache src, before, after;
  CHECK_STATUS(allocate(p, 1, 1, 64, 1, &src), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(d, 1, 1, 64, 1, &before), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_link(d, 1, reinterpret_cast<const uint8_t *>("10.0.0.1:26000"), 14, 0), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(d, 1, 1, 64, 1, &after), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_pull(d, before.id, LLMDD_KEY_BY_ID, 1, src.id, 0, 0, LLMDD_WHOLE_ROW, 0), LLMDD_SUCCESS);
  int pulls = fake::record().pulls;
  EXPECT_STATUS(llmdd_cache_pull(d, after.id, LLMDD_KEY_BY_ID, 1, src.id, 0, 0, LLMDD_WHOLE_ROW, 0),
                LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "allocated after the link"));
  EXPECT_EQ(fake::record().pulls, pulls);  // refused before upstream was asked
  CHECK_STATUS(llmdd_unlink(d, 1, 0, 0), LLMDD_SUCCESS);  // a new link covers what was registered before it
  CHECK_STATUS(llmdd_link(d, 1, reinterpret_cast<const uint8_t *>("10.0.0.1:26000"), 14, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_pull(d, after.id, LLMDD_KEY_BY_ID, 1, src.id, 0, 0, LLMDD_WHOLE_ROW, 0), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
}

TEST(abi_pull_out_of_time_is_llm_timeout) {
  fake::reset();
  fake::knobs().max_engines = 2;
  uint64_t p = 0, d = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "llm.listenIpInfo=10.0.0.1:26000", &p), LLMDD_SUCCESS);
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 2, "llmdd.cann.localIpInfo=10.0.0.2", &d), LLMDD_SUCCESS);
  Cache src, dst;
  CHECK_STATUS(allocate(p, 1, 1, 64, 1, &src), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(d, 1, 1, 64, 1, &dst), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_link(d, 1, reinterpret_cast<const uint8_t *>("10.0.0.1:26000"), 14, 0), LLMDD_SUCCESS);
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(1, nullptr, &job), LLMDD_SUCCESS);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_STATUS(llmdd_cache_pull(d, dst.id, LLMDD_KEY_BY_ID, 1, src.id, 0, 0, LLMDD_WHOLE_ROW, job),
                static_cast<int32_t>(0x5010B01Au));  // LLM_TIMEOUT, as upstream's PullKvCache
  EXPECT(has(message(), "before the pull started"));
  CHECK_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(d), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(p), LLMDD_SUCCESS);
}

// ABI 3: the cache manager's calls over the fake backend (V2 unless told).

TEST(abi_register_unregister_maps_onto_register_kv_cache) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_PROMPT, 1, "", &e), LLMDD_SUCCESS);
  alignas(64) static uint8_t mem[2][128];
  uint64_t addrs[2] = {reinterpret_cast<uintptr_t>(mem[0]), reinterpret_cast<uintptr_t>(mem[1])}, id = 0;
  CHECK_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, LLMDD_PLACEMENT_DEVICE, addrs, 2, nullptr, 0, 1, &id),
               LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().registrations.load(), 1);
  uint64_t usage[2];
  EXPECT_STATUS(llmdd_pool_usage(e, 0, usage), LLMDD_SUCCESS);
  EXPECT_EQ(usage[0], 0u);  // the caller's memory is not charged
  std::memset(mem[1], 7, 128);
  uint8_t out[128] = {};
  EXPECT_STATUS(llmdd_cache_read(e, id, 1, 0, out, 128, 0), LLMDD_SUCCESS);
  EXPECT(out[0] == 7 && out[127] == 7);
  EXPECT_STATUS(llmdd_cache_deallocate(e, id), LLMDD_PARAM_INVALID);
  int live = fake::record().live_caches;
  EXPECT_STATUS(llmdd_cache_unregister(e, id), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().live_caches.load(), live - 1);
  EXPECT_STATUS(llmdd_cache_unregister(e, id), LLMDD_KV_CACHE_NOT_EXIST);
  EXPECT_STATUS(llmdd_cache_read(e, id, 0, 0, out, 128, 0), LLMDD_KV_CACHE_NOT_EXIST);
  Cache allocated;
  CHECK_STATUS(allocate(e, 1, 1, 64, 1, &allocated), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_unregister(e, allocated.id), LLMDD_PARAM_INVALID);
  // Upstream's checks.
  uint64_t zero[2] = {addrs[0], 0}, key[3] = {1, 2, 3};
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, zero, 2, nullptr, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, addrs, 1, nullptr, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, nullptr, 2, nullptr, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, addrs, 2, nullptr, 0, 0, nullptr), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(e, 241, 128, 1, 0, 1, addrs, 241, nullptr, 0, 0, &id), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, addrs, 2, key, 1, 0, &id), LLMDD_FEATURE_NOT_ENABLED);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_register(e, 2, 128, 2, 0, 1, addrs, 2, nullptr, 0, 0, &id), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_unregister(e, 1), LLMDD_ENGINE_FINALIZED);
}

TEST(abi_copy_blocks_is_one_backend_copy_of_every_pair) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_SUCCESS);
  Cache c, other;
  CHECK_STATUS(allocate(e, 1, 2, 4 * 64, 4, &c), LLMDD_SUCCESS);
  CHECK_STATUS(allocate(e, 1, 2, 8 * 32, 8, &other), LLMDD_SUCCESS);
  for (int t = 0; t < 2; t++)
    for (int b = 0; b < 4; b++) std::memset(bytes_at(c.addrs[t]) + 64 * b, 10 * t + b, 64);
  uint64_t pairs[6] = {0, 3, 1, 2, 2, 2};
  int copies = fake::record().copies;
  CHECK_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, pairs, 3, 0), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().copies, copies + 1);
  EXPECT_EQ(fake::record().last_copy.blocks.size(), 3u);
  for (int t = 0; t < 2; t++) {
    EXPECT(bytes_at(c.addrs[t])[3 * 64 + 63] == 10 * t + 0);
    EXPECT(bytes_at(c.addrs[t])[2 * 64] == 10 * t + 1);
  }
  uint64_t bad[2] = {4, 0};
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, bad, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT(has(message(), "src_block_index"));
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, pairs, 0, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, nullptr, 1, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, other.id, c.id, pairs, 1, 0), LLMDD_PARAM_INVALID);  // block sizes
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, 99, pairs, 1, 0), LLMDD_KV_CACHE_NOT_EXIST);
  uint64_t job = 0;
  CHECK_STATUS(llmdd_job_create(0, nullptr, &job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, pairs, 3, job), LLMDD_WAIT_PROCESS_TIMEOUT);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}

TEST(abi_set_role_maps_onto_set_role) {
  fake::reset();
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_SUCCESS);
  const char *listen = "llm.listenIpInfo=10.0.0.1:26000";
  int32_t len = static_cast<int32_t>(std::strlen(listen));
  const uint8_t *text = reinterpret_cast<const uint8_t *>(listen);
  EXPECT_STATUS(llmdd_engine_set_role(e, 9, nullptr, 0), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_set_role(e, LLMDD_ROLE_DECODER, text, len), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_set_role(e, LLMDD_ROLE_PROMPT, text, len), LLMDD_SUCCESS);
  EXPECT_EQ(fake::record().last_role, LLMDD_ROLE_PROMPT);
  EXPECT(fake::record().last_role_listen == "10.0.0.1:26000");
  uint64_t info[5];
  EXPECT_STATUS(llmdd_engine_info(e, info), LLMDD_SUCCESS);
  EXPECT_EQ(info[3], static_cast<uint64_t>(LLMDD_ROLE_PROMPT));
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_set_role(e, LLMDD_ROLE_PROMPT, nullptr, 0), LLMDD_ENGINE_FINALIZED);
}

TEST(abi_v1_has_no_registration_block_copies_or_role_switch) {
  fake::reset();
  fake::knobs().flavor = llmdd::Flavor::kV1;
  uint64_t e = 0;
  CHECK_STATUS(init(LLMDD_ROLE_DECODER, 1, "", &e), LLMDD_SUCCESS);
  alignas(64) static uint8_t mem[64];
  uint64_t addr = reinterpret_cast<uintptr_t>(mem), id = 0;
  EXPECT_STATUS(llmdd_cache_register(e, 1, 64, 1, 0, 1, &addr, 1, nullptr, 0, 0, &id), LLMDD_FEATURE_NOT_ENABLED);
  Cache c;
  CHECK_STATUS(allocate(e, 1, 1, 128, 2, &c), LLMDD_SUCCESS);
  uint64_t pair[2] = {0, 1};
  EXPECT_STATUS(llmdd_cache_copy_blocks(e, c.id, c.id, pair, 1, 0), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT_STATUS(llmdd_engine_set_role(e, LLMDD_ROLE_PROMPT, nullptr, 0), LLMDD_FEATURE_NOT_ENABLED);
  CHECK_STATUS(llmdd_engine_finalize(e), LLMDD_SUCCESS);
}
