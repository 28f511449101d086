#include "jobs.hpp"

#include <memory>
#include <type_traits>
#include <utility>

#include "llmdd.h"

namespace llmdd {
namespace {

// A std::function queued on the core's workers. Standard layout (the function
// is held by pointer), so the core's work item converts back to it.
struct Work {
  core_work work;
  std::function<void()> *run;
};

void run_work(core_work *w) {
  Work *item = reinterpret_cast<Work *>(w);
  std::function<void()> run = std::move(*item->run);
  delete item->run;
  delete item;
  run();
}

static_assert(std::is_standard_layout<Work>::value, "Work must convert from its core_work");

}  // namespace

int32_t worker_start() { return core_workers_start() == 0 ? LLMDD_SUCCESS : LLMDD_FAILED; }

void worker_submit(std::function<void()> work) {
  // Out of memory throws std::bad_alloc here, on the submitting thread.
  std::unique_ptr<std::function<void()>> run(new std::function<void()>(std::move(work)));
  Work *item = new Work{core_work{nullptr, run_work}, run.get()};
  run.release();
  core_workers_submit(&item->work);
}

}  // namespace llmdd
