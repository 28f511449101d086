#include "jobs.hpp"

#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <deque>
#include <new>
#include <thread>

#include "deadline.hpp"
#include "error.hpp"
#include "handles.hpp"

namespace llmdd {
namespace {

HandleTable &jobs() {
  static HandleTable table(HandleTable::kJob, [](void *object) {
    static_cast<Job *>(object)->refs.fetch_add(1, std::memory_order_relaxed);
  });
  return table;
}

int32_t job_acquire(uint64_t handle, Job **out) {
  void *object = nullptr;
  if (jobs().acquire(handle, &object) != HandleState::kOk)
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                static_cast<unsigned long long>(handle));
  *out = static_cast<Job *>(object);
  return LLMDD_SUCCESS;
}

void set_message(Job *job, const std::string &text) {
  std::lock_guard<std::mutex> guard(job->message_lock);
  job->message = text;
}

}  // namespace

void job_put(Job *job) {
  if (job->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete job;
}

int32_t job_begin(uint64_t handle, Job **out) {
  Job *job = nullptr;
  int32_t status = job_acquire(handle, &job);
  if (status != LLMDD_SUCCESS) return status;
  if (job->busy.exchange(true)) {
    job_put(job);
    return fail(LLMDD_PARAM_INVALID, "job 0x%llx is already running an operation",
                static_cast<unsigned long long>(handle));
  }
  set_message(job, "");
  *out = job;
  return LLMDD_SUCCESS;
}

void job_complete(Job *job, int32_t status) {
  if (status != LLMDD_SUCCESS) set_message(job, last_error());
  job->busy.store(false);
}

int32_t job_finish(Job *job, int32_t status) {
  job_complete(job, status);
  job_put(job);
  return status;
}

// ---- workers ----

namespace {
// Two threads, as the host backend: a second one keeps a short operation from
// waiting behind a long one (a pull or a link may wait for upstream's timeout).
constexpr int kWorkerThreads = 2;

struct Queue {
  std::mutex lock;
  std::condition_variable ready;
  std::deque<std::function<void()>> items;
  int threads = 0;
};

Queue &queue() {
  // Never destroyed: detached workers may still wait on it at process exit.
  static Queue *q = new Queue();
  return *q;
}

void worker_main() {
  Queue &q = queue();
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock<std::mutex> guard(q.lock);
      q.ready.wait(guard, [&] { return !q.items.empty(); });
      work = std::move(q.items.front());
      q.items.pop_front();
    }
    work();
  }
}
}  // namespace

int32_t worker_start() {
  Queue &q = queue();
  std::lock_guard<std::mutex> guard(q.lock);
  if (q.threads < kWorkerThreads) {
    // Workers block every signal so the host runtime's handlers keep running on
    // the runtime's own threads (the mask is inherited by new threads).
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    while (q.threads < kWorkerThreads) {
      try {
        std::thread(worker_main).detach();
      } catch (...) {
        break;
      }
      q.threads++;
    }
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }
  if (q.threads > 0) return LLMDD_SUCCESS;
  return fail(LLMDD_FAILED, "could not start a worker thread");
}

void worker_submit(std::function<void()> work) {
  Queue &q = queue();
  std::lock_guard<std::mutex> guard(q.lock);
  q.items.push_back(std::move(work));
  q.ready.notify_one();
}

}  // namespace llmdd

using namespace llmdd;

extern "C" LLMDD_API int32_t llmdd_job_create(int32_t timeout_ms, llmdd_done_fn done,
                                              uint64_t *out_job) {
  if (out_job == nullptr) return fail(LLMDD_PARAM_INVALID, "out_job is NULL");
  Job *job = new (std::nothrow) Job();
  if (job == nullptr) return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for a job");
  job->deadline = deadline_after(timeout_ms, now_ns());
  job->done = done;
  // The handle is written before anyone can look it up: insert() publishes under
  // the table lock, and only the caller learns the handle, after this returns.
  bool inserted;
  try {
    inserted = jobs().insert(job, &job->handle);
  } catch (...) {
    inserted = false;
  }
  if (!inserted) {
    job_put(job);
    return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for job handles");
  }
  *out_job = job->handle;
  return LLMDD_SUCCESS;
}

extern "C" LLMDD_API int32_t llmdd_job_cancel(uint64_t handle) {
  Job *job = nullptr;
  int32_t status = job_acquire(handle, &job);
  if (status != LLMDD_SUCCESS) return status;
  job->cancelled.store(true);
  job_put(job);
  return LLMDD_SUCCESS;
}

extern "C" LLMDD_API int32_t llmdd_job_message(uint64_t handle, uint8_t *buf, int32_t cap) {
  Job *job = nullptr;
  if (job_acquire(handle, &job) != LLMDD_SUCCESS) return -1;
  int32_t length;
  {
    std::lock_guard<std::mutex> guard(job->message_lock);
    length = copy_message_out(job->message, buf, cap);
  }
  job_put(job);
  return length;
}

extern "C" LLMDD_API int32_t llmdd_job_release(uint64_t handle) {
  void *object = nullptr;
  if (jobs().remove(handle, &object) != HandleState::kOk)
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not a live job handle",
                static_cast<unsigned long long>(handle));
  job_put(static_cast<Job *>(object));
  return LLMDD_SUCCESS;
}
