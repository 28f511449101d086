// A Backend for the unit tests: "devices" are host memory, a process-wide
// registry stands in for the network, and knobs make it fail, time out or dawdle
// where the tests need it to. It replaces cann_calls.cpp in the test binary;
// it is never part of the library.
#ifndef LLMDD_CANN_TEST_FAKE_BACKEND_HPP
#define LLMDD_CANN_TEST_FAKE_BACKEND_HPP

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend.hpp"

namespace fake {

struct Knobs {
  llmdd::Flavor flavor = llmdd::Flavor::kV2;
  int32_t max_engines = 1;
  uint64_t read_chunk = 4096;         // small, so reads go in several chunks
  int32_t init_status = 0;            // Initialize's answer
  int32_t allocate_status = 0;        // AllocateCache / RegisterKvCache's answer
  int64_t forced_id = 0;              // when not 0: the next cache id upstream returns
  bool allocate_throws = false;       // throws std::bad_alloc from allocate
  std::atomic<bool> reads_time_out{false};  // reads report a timeout with the copy in flight
  std::atomic<bool> streams_idle{true};     // abandoned copies are seen finished when polled
  std::atomic<int> read_delay_ms{0};
  std::atomic<int> pull_delay_ms{0};
  std::atomic<bool> copies_time_out{false}; // copies report a timeout with the work in flight
  bool link_anything = false;         // links succeed without a listening peer
  int32_t transfer_status = 0;        // when not 0: PullKvBlocks / PushKv*'s answer
  std::atomic<bool> hold_transfers{false};  // PullKvBlocks / PushKv* wait while set
};

// What the backend was asked, for the tests to inspect.
struct Record {
  std::vector<std::pair<std::string, std::string>> init_options;
  int32_t init_role = 0;
  uint64_t init_cluster = 0;
  std::atomic<int> reads{0};
  std::atomic<int> last_read_timeout{0};
  std::atomic<int> copies{0};
  llmdd::CopyPlan last_copy;
  std::atomic<int> last_copy_timeout{0};
  std::atomic<int> last_read_placement{-1};
  std::atomic<int> last_allocate_placement{-1};
  std::atomic<int> pulls{0};
  llmdd::PullPlan last_pull;
  // PullKvBlocks / PushKvCache / PushKvBlocks: what upstream was handed.
  std::atomic<int> transfers{0};
  std::string last_transfer_call;  // "PullKvBlocks", "PushKvCache" or "PushKvBlocks"
  llmdd::TransferPlan last_transfer;
  std::atomic<int> last_link_timeout{0};
  bool last_unlink_force = false;
  std::atomic<int> live_caches{0};  // allocated and not yet released, all engines
  std::atomic<int> registrations{0};
  int32_t last_role = 0;
  std::string last_role_listen;
  std::atomic<int> finalized{0};
};

Knobs &knobs();
Record &record();
// Back to defaults; call at the start of every test.
void reset();

}  // namespace fake

#endif
