// Jobs: the deadline, cancel flag, completion callback and message of one long
// operation at a time (llmdd_job_*), and the worker threads that run operations
// whose job has a completion callback.
#ifndef LLMDD_CANN_JOBS_HPP
#define LLMDD_CANN_JOBS_HPP

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "llmdd.h"

namespace llmdd {

struct Job {
  std::atomic<uint32_t> refs{1};     // the handle table's, plus a running operation's
  std::atomic<bool> cancelled{false}; // sticky: a later operation stops at once
  std::atomic<bool> busy{false};      // an operation is using the job
  int64_t deadline = 0;               // CLOCK_MONOTONIC ns, kNoDeadline for none
  llmdd_done_fn done = nullptr;
  uint64_t handle = 0;
  std::mutex message_lock;  // written and read on different threads
  std::string message;
};

// Resolves a job handle and claims the job for one operation (clearing its
// message). Release it with job_finish() / job_complete() + job_put().
int32_t job_begin(uint64_t handle, Job **out);
// Ends the operation: a failure's message (the thread's last error) becomes the
// job's message, and the job is free for another operation.
void job_complete(Job *job, int32_t status);
void job_put(Job *job);
int32_t job_finish(Job *job, int32_t status);

// Worker threads for background operations. worker_start() starts them on first
// use (FAILED with a message if none could be started).
int32_t worker_start();
void worker_submit(std::function<void()> work);

}  // namespace llmdd

#endif
