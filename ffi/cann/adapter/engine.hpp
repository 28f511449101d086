// Engines: one per LLM-DataDist instance, named by a handle, owning its backend,
// its cache books and its links.
//
// Locking: each engine has one mutex over its books, links and counters. It is
// held for validation and bookkeeping and around calls that allocate or release
// cache memory; reads, copies, links and pulls run outside it with their caches
// pinned and `running` raised, so finalize waits for them.
#ifndef LLMDD_CANN_ENGINE_HPP
#define LLMDD_CANN_ENGINE_HPP

#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <vector>

#include "backend.hpp"
#include "book.hpp"
#include "error.hpp"
#include "links.hpp"
#include "llmdd.h"
#include "options.hpp"

namespace llmdd {

struct Engine {
  Engine(int32_t role_, uint64_t cluster_id_, EngineOptions options_, BackendTraits traits_,
         std::unique_ptr<Backend> backend_);

  std::atomic<uint32_t> refs{1};         // the handle table's, plus each call using it
  std::atomic<bool> finalizing{false};   // set under the lock; read without it between chunks
  std::mutex lock;
  std::condition_variable idle;          // running dropped to 0 while finalizing
  int32_t role;  // changed by llmdd_engine_set_role, under the lock
  const uint64_t cluster_id;
  const EngineOptions options;
  const BackendTraits traits;
  const std::unique_ptr<Backend> backend;
  Book book;
  Links links;
  int32_t running = 0;  // operations working outside the lock
  // Reads and copies that gave up on device work still running: token → the
  // caches they keep pinned until the backend reports the work finished.
  std::map<uint64_t, std::vector<CacheRecord *>> in_flight;
  std::set<uint64_t> drained_early;  // reported before the read recorded its token
  uint64_t next_token = 1;

  int32_t num_devices() const { return static_cast<int32_t>(options.device_ids.size()); }
  // The layout of a cache of this engine, from a call's arguments.
  CacheLayout layout(int32_t num_tensors, uint64_t tensor_bytes, uint64_t batch_size, uint64_t layout_tag,
                     int32_t placement) const {
    CacheLayout l;
    l.num_tensors = num_tensors;
    l.tensor_bytes = tensor_bytes;
    l.batch_size = batch_size;
    l.layout_tag = layout_tag;
    l.placement = placement;
    l.num_devices = num_devices();
    return l;
  }
};

void engine_retain(Engine *e);
void engine_release(Engine *e);
// Resolves a handle, retains the engine and locks it; the engine is not
// finalizing. ENGINE_FINALIZED (stale handle) or PARAM_INVALID otherwise.
int32_t engine_enter(uint64_t handle, Engine **out);
// Unlocks and releases an engine from engine_enter().
void engine_leave(Engine *e);

// Under the lock: hands released memory back to the backend; returns the first
// failure (every cache is still handed back).
int32_t engine_free(Engine *e, std::vector<Released> &released);
// Under the lock: unpins the caches of abandoned reads whose copies finished.
void engine_reap(Engine *e);

// Runs f, turning a C++ exception into a status: no exception crosses the C ABI.
template <class F>
int32_t guarded(F f) {
  try {
    return f();
  } catch (const std::bad_alloc &) {
    return fail(LLMDD_OUT_OF_MEMORY, "out of host memory");
  } catch (const std::exception &e) {
    return fail(LLMDD_FAILED, "unexpected error: %s", e.what());
  } catch (...) {
    return fail(LLMDD_FAILED, "unexpected error");
  }
}

}  // namespace llmdd

#endif
