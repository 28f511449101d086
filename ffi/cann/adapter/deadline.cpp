#include "deadline.hpp"

#include <ctime>

namespace llmdd {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

int64_t deadline_after(int32_t timeout_ms, int64_t now) {
  if (timeout_ms < 0) return kNoDeadline;
  // INT32_MAX ms is about 2.1e15 ns: far from overflowing int64 for any monotonic now.
  return now + static_cast<int64_t>(timeout_ms) * 1000000;
}

bool deadline_passed(int64_t deadline, int64_t now) {
  return deadline != kNoDeadline && now >= deadline;
}

int32_t remaining_ms(int64_t deadline, int64_t now, int32_t cap, int32_t no_deadline) {
  if (deadline == kNoDeadline) return no_deadline;
  if (now >= deadline) return 0;
  int64_t left_ns = deadline - now;
  int64_t ms = left_ns / 1000000 + (left_ns % 1000000 != 0 ? 1 : 0);
  return ms > cap ? cap : static_cast<int32_t>(ms);
}

uint64_t chunk_count(uint64_t total, uint64_t chunk) {
  return total / chunk + (total % chunk != 0 ? 1 : 0);
}

}  // namespace llmdd
