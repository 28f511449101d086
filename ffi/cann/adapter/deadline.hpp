// Deadline arithmetic for jobs: a job's deadline is fixed when it is created
// (CLOCK_MONOTONIC), and each wait inside an operation gets what is left of it.
#ifndef LLMDD_CANN_DEADLINE_HPP
#define LLMDD_CANN_DEADLINE_HPP

#include <cstdint>

namespace llmdd {

// "No deadline" (a job created with a negative timeout, or job 0).
constexpr int64_t kNoDeadline = INT64_MAX;

// CLOCK_MONOTONIC in nanoseconds.
int64_t now_ns();

// The deadline of a job created at now with timeout_ms: negative → none,
// 0 → already due.
int64_t deadline_after(int32_t timeout_ms, int64_t now);

// Whether the deadline has passed at now (a deadline equal to now has).
bool deadline_passed(int64_t deadline, int64_t now);

// The milliseconds left until the deadline, for an upstream wait that takes a
// timeout in ms: rounded up (so a wait never ends before the deadline), at least
// 1 while any time is left, 0 once it has passed, and at most cap. With no
// deadline, returns no_deadline (e.g. -1 = "wait indefinitely" for
// aclrtSynchronizeStreamWithTimeout, or a bounded default for link calls).
int32_t remaining_ms(int64_t deadline, int64_t now, int32_t cap, int32_t no_deadline);

// Number of chunks of `chunk` bytes that cover total bytes (0 for 0).
uint64_t chunk_count(uint64_t total, uint64_t chunk);

}  // namespace llmdd

#endif
