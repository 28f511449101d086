// Deadline arithmetic for jobs: the core's (ffi/core/clock.h), under the names
// the adapter uses. A job's deadline is fixed when it is created
// (CLOCK_MONOTONIC), and each upstream wait inside an operation gets what is
// left of it.
#ifndef LLMDD_CANN_DEADLINE_HPP
#define LLMDD_CANN_DEADLINE_HPP

#include <cstdint>

#include "core/clock.h"

namespace llmdd {

// "No deadline" (a job created with a negative timeout, or job 0).
constexpr int64_t kNoDeadline = CORE_NO_DEADLINE;

inline int64_t now_ns() { return core_now_ns(); }

// The deadline of a job created at now with timeout_ms: negative → none,
// 0 → already due.
inline int64_t deadline_after(int32_t timeout_ms, int64_t now) {
  return core_deadline_at(now, timeout_ms);
}

inline bool deadline_passed(int64_t deadline, int64_t now) {
  return core_deadline_passed(deadline, now);
}

// The milliseconds left for an upstream wait (see core_remaining_ms): with no
// deadline, no_deadline (-1 = "wait indefinitely" for
// aclrtSynchronizeStreamWithTimeout, or a bounded default for link calls).
inline int32_t remaining_ms(int64_t deadline, int64_t now, int32_t cap, int32_t no_deadline) {
  return core_remaining_ms(deadline, now, cap, no_deadline);
}

// Number of chunks of `chunk` bytes that cover total bytes (0 for 0).
inline uint64_t chunk_count(uint64_t total, uint64_t chunk) {
  return total / chunk + (total % chunk != 0 ? 1 : 0);
}

}  // namespace llmdd

#endif
