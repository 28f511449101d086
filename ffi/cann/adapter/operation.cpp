// The long operations' common path: see operation.hpp.
#include "operation.hpp"

#include <memory>
#include <string>

#include "core/copy.h"
#include "status.hpp"

namespace llmdd {

namespace {

int32_t begin(Operation &op, uint64_t engine, uint64_t job) {
  if (job != 0) {
    int32_t status = job_begin(job, &op.job);
    if (status != LLMDD_SUCCESS) return status;
    op.deadline = core_job_deadline_ns(op.job);
    // Started before the engine lock is taken: creating threads is slow.
    if (core_job_callback(op.job) != nullptr && worker_start() != LLMDD_SUCCESS)
      return job_finish(op.job, LLMDD_FAILED);
  }
  int32_t status = engine_enter(engine, &op.engine);
  if (status != LLMDD_SUCCESS && op.job != nullptr) job_finish(op.job, status);
  return status;
}

// Ends an operation that failed validation (engine locked).
int32_t abandon(Operation &op, int32_t status) {
  engine_leave(op.engine);
  return op.job != nullptr ? job_finish(op.job, status) : status;
}

// Runs op outside the lock. Called with the engine locked; returns unlocked.
int32_t execute_unlocked(Operation &op) {
  Engine *e = op.engine;
  e->running++;
  e->lock.unlock();
  int32_t status;
  try {
    status = op.run(op);
  } catch (const std::bad_alloc &) {
    status = fail(LLMDD_OUT_OF_MEMORY, "out of host memory");
  } catch (...) {
    status = fail(LLMDD_FAILED, "unexpected error");
  }
  op.status = status;
  std::string message = last_error();
  e->lock.lock();
  if (--e->running == 0 && e->finalizing.load(std::memory_order_relaxed)) e->idle.notify_all();
  op.end(op);
  e->lock.unlock();
  set_last_error(message);
  return status;
}

void run_in_background(std::shared_ptr<Operation> op) {
  Engine *e = op->engine;
  int32_t status;
  e->lock.lock();
  if (e->finalizing.load(std::memory_order_relaxed)) {
    status = fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized before the operation started");
    op->status = status;
    op->end(*op);
    e->lock.unlock();
  } else {
    status = execute_unlocked(*op);
  }
  engine_release(e);
  // The job stays referenced during the callback so llmdd_job_message() works
  // from inside it (unless the caller already released the handle).
  Job *job = op->job;
  op.reset();
  core_job_report(job, status);
}

// Runs a validated operation (engine locked). Returns its final status, or for a
// background job SUCCESS once queued.
int32_t dispatch(Operation &op) {
  Engine *e = op.engine;
  if (op.job != nullptr && core_job_callback(op.job) != nullptr) {
    std::shared_ptr<Operation> queued;
    try {
      queued = std::make_shared<Operation>(op);
    } catch (...) {
      op.status = fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the operation");
      op.end(op);
      return abandon(op, op.status);
    }
    // The engine and job references, and whatever validation took, move to the
    // queued operation.
    e->lock.unlock();
    worker_submit([queued]() mutable { run_in_background(std::move(queued)); });
    return LLMDD_SUCCESS;
  }
  int32_t status = execute_unlocked(op);
  engine_release(e);
  return op.job != nullptr ? job_finish(op.job, status) : status;
}

}  // namespace

int32_t check(const Operation &op, uint64_t done, uint64_t total) {
  core_guard guard{op.job, &op.engine->finalizing, op.deadline, "copying"};
  core_progress progress = core_progress_start(&guard, nullptr, total, "copied");
  progress.copied = done;
  return core_progress_check(&progress);
}

// An exception thrown during validation (engine locked) ends the operation cleanly.
int32_t operation(uint64_t engine, uint64_t job, const std::function<int32_t(Operation &)> &validate) {
  return guarded([&]() -> int32_t {
    Operation op;
    int32_t status = begin(op, engine, job);
    if (status != LLMDD_SUCCESS) return status;
    try {
      engine_reap(op.engine);
      status = validate(op);
    } catch (...) {
      status = fail(LLMDD_OUT_OF_MEMORY, "out of host memory while validating the operation");
    }
    if (status != LLMDD_SUCCESS) return abandon(op, status);
    return dispatch(op);
  });
}

int32_t find_cache(Engine *e, uint64_t id, const char *role, CacheRecord **out) {
  *out = e->book.find(id);
  if (*out == nullptr)
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "%scache %llu does not exist", role,
                static_cast<unsigned long long>(id));
  return LLMDD_SUCCESS;
}

void unpin(Engine *e, CacheRecord *record) {
  std::vector<Released> released;
  e->book.unpin(record, &released);
  std::string kept = last_error();
  (void)engine_free(e, released);
  set_last_error(kept);
}

}  // namespace llmdd
