// The long operations' common path (ops.cpp, transfer.cpp): claim the job,
// enter the engine, validate under the engine lock (pinning what the operation
// will use), then run outside the lock, on the calling thread (job 0, or a job
// without a done callback) or on a worker (a job with one), and finally drop
// what validation took, under the lock, once.
#ifndef LLMDD_CANN_OPERATION_HPP
#define LLMDD_CANN_OPERATION_HPP

#include <cstdint>
#include <functional>

#include "deadline.hpp"
#include "engine.hpp"
#include "jobs.hpp"

namespace llmdd {

struct Operation {
  Engine *engine = nullptr;
  Job *job = nullptr;                       // null for job 0
  int64_t deadline = kNoDeadline;           // the job's, or the operation's own bound
  int32_t status = LLMDD_SUCCESS;           // run's result, for end
  std::function<int32_t(Operation &)> run;  // outside the lock
  std::function<void(Operation &)> end;     // under the lock, once: drops what validation took
};

// Runs an exported operation: validate (engine locked) sets op.run and op.end
// and returns SUCCESS, or returns a failure that ends the operation. No
// exception crosses the ABI. Returns the operation's status, or for a job with a
// done callback SUCCESS once queued.
int32_t operation(uint64_t engine, uint64_t job, const std::function<int32_t(Operation &)> &validate);

// The operation's check between steps, the core's (ffi/core/copy.h): finalize,
// cancel, the deadline (the job's, or the operation's own bound).
int32_t check(const Operation &op, uint64_t done, uint64_t total);

// Under the lock: the cache `id` of op's engine, or KV_CACHE_NOT_EXIST naming
// it with `role` ("", "destination ", "source ").
int32_t find_cache(Engine *e, uint64_t id, const char *role, CacheRecord **out);

// Under the lock: drops a pin, handing back memory released meanwhile.
void unpin(Engine *e, CacheRecord *record);

}  // namespace llmdd

#endif
