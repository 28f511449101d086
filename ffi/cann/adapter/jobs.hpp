// Jobs and workers: the core's (ffi/core/job.h, which also implements the
// llmdd_job_* calls; ffi/core/workers.h), with the C++ seams the adapter uses.
#ifndef LLMDD_CANN_JOBS_HPP
#define LLMDD_CANN_JOBS_HPP

#include <cstdint>
#include <functional>

#include "core/job.h"
#include "core/workers.h"

namespace llmdd {

using Job = core_job;

// Resolves a job handle and claims the job for one operation (clearing its
// message). Release it with job_finish(), or core_job_report() for a job with a
// done callback.
inline int32_t job_begin(uint64_t handle, Job **out) { return core_job_begin(handle, out); }

// Ends the operation: a failure's message (the thread's last error) becomes the
// job's message, and the job is free for another operation. Returns status.
inline int32_t job_finish(Job *job, int32_t status) { return core_job_finish(job, status); }

// Worker threads for background operations. worker_start() starts them on first
// use (FAILED with a message if none could be started).
int32_t worker_start();
void worker_submit(std::function<void()> work);

}  // namespace llmdd

#endif
