// llmdd_engine_init / finalize / info and llmdd_pool_usage.
#include "engine.hpp"

#include <utility>

#include "handles.hpp"
#include "status.hpp"

namespace llmdd {
namespace {

HandleTable &engines() {
  static HandleTable table(HandleTable::kEngine,
                           [](void *object) { engine_retain(static_cast<Engine *>(object)); });
  return table;
}

// Upstream allows one LLM-DataDist per process; engines live at once are counted.
std::mutex live_lock;
int32_t live_engines = 0;

// A link still open at finalize is dropped with this limit.
constexpr int32_t kFinalizeUnlinkMs = 1000;

int32_t engine_acquire(uint64_t handle, Engine **out) {
  void *object = nullptr;
  switch (engines().acquire(handle, &object)) {
  case HandleState::kOk:
    *out = static_cast<Engine *>(object);
    return LLMDD_SUCCESS;
  case HandleState::kStale:
    return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                static_cast<unsigned long long>(handle));
  default:
    return fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                static_cast<unsigned long long>(handle));
  }
}

}  // namespace

Engine::Engine(int32_t role_, uint64_t cluster_id_, EngineOptions options_, BackendTraits traits_,
               std::unique_ptr<Backend> backend_)
    : role(role_),
      cluster_id(cluster_id_),
      options(std::move(options_)),
      traits(traits_),
      backend(std::move(backend_)),
      book(options.pool_bytes) {}

void engine_retain(Engine *e) { e->refs.fetch_add(1, std::memory_order_relaxed); }

void engine_release(Engine *e) {
  if (e->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete e;
}

int32_t engine_enter(uint64_t handle, Engine **out) {
  Engine *e = nullptr;
  int32_t status = engine_acquire(handle, &e);
  if (status != LLMDD_SUCCESS) return status;
  e->lock.lock();
  if (e->finalizing.load(std::memory_order_relaxed)) {
    // Finalize removed the handle after we found it.
    e->lock.unlock();
    engine_release(e);
    return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has been finalized",
                static_cast<unsigned long long>(handle));
  }
  *out = e;
  return LLMDD_SUCCESS;
}

void engine_leave(Engine *e) {
  e->lock.unlock();
  engine_release(e);
}

int32_t engine_free(Engine *e, std::vector<Released> &released) {
  int32_t first = LLMDD_SUCCESS;
  std::string message;
  for (Released &r : released) {
    int32_t status = e->backend->release(r.layout, &r.memory);
    if (status != LLMDD_SUCCESS && first == LLMDD_SUCCESS) {
      first = status;
      message = last_error();
    }
  }
  released.clear();
  if (first != LLMDD_SUCCESS) set_last_error(message);
  return first;
}

void engine_reap(Engine *e) {
  std::vector<uint64_t> drained;
  e->backend->reclaim(false, &drained);
  if (drained.empty()) return;
  std::vector<Released> released;
  for (uint64_t token : drained) {
    auto it = e->in_flight.find(token);
    if (it == e->in_flight.end()) {
      e->drained_early.insert(token);
      continue;
    }
    for (CacheRecord *record : it->second) e->book.unpin(record, &released);
    e->in_flight.erase(it);
  }
  std::string kept = last_error();
  (void)engine_free(e, released);  // a failure here belongs to no caller
  set_last_error(kept);
}

}  // namespace llmdd

using namespace llmdd;

extern "C" LLMDD_API int32_t llmdd_engine_init(int32_t role, uint64_t cluster_id,
                                               const uint8_t *options, int32_t options_len,
                                               uint64_t *out_engine) {
  return guarded([&]() -> int32_t {
    if (role != LLMDD_ROLE_PROMPT && role != LLMDD_ROLE_DECODER && role != LLMDD_ROLE_MIX)
      return fail(LLMDD_PARAM_INVALID, "role %d is not PROMPT (1), DECODER (2) or MIX (3)", role);
    if (out_engine == nullptr) return fail(LLMDD_PARAM_INVALID, "out_engine is NULL");
    if (options_len < 0)
      return fail(LLMDD_PARAM_INVALID, "options_len %d is negative", options_len);
    if (options == nullptr && options_len > 0)
      return fail(LLMDD_PARAM_INVALID, "options is NULL but options_len is %d", options_len);

    BackendTraits traits = backend_traits();
    EngineOptions parsed;
    int32_t status = parse_options(options, options_len, &parsed);
    if (status == LLMDD_SUCCESS) status = check_options(parsed, role, traits.flavor);
    if (status != LLMDD_SUCCESS) return status;

    {
      std::lock_guard<std::mutex> guard(live_lock);
      if (live_engines >= traits.max_engines)
        return fail(LLMDD_FAILED,
                    "upstream LLM-DataDist allows %d instance(s) per process and %d is live:"
                    " finalize it first",
                    traits.max_engines, live_engines);
      live_engines++;
    }
    std::unique_ptr<Backend> backend = make_backend();
    status = backend->initialize(role, cluster_id, parsed);
    if (status != LLMDD_SUCCESS) {
      std::lock_guard<std::mutex> guard(live_lock);
      live_engines--;
      return status;
    }
    Engine *e = new Engine(role, cluster_id, std::move(parsed), traits, std::move(backend));
    bool inserted;
    try {
      inserted = engines().insert(e, out_engine);
    } catch (...) {
      inserted = false;
    }
    if (!inserted) {
      e->backend->finalize();
      delete e;
      std::lock_guard<std::mutex> guard(live_lock);
      live_engines--;
      return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for engine handles");
    }
    return LLMDD_SUCCESS;
  });
}

extern "C" LLMDD_API int32_t llmdd_engine_finalize(uint64_t engine) {
  return guarded([&]() -> int32_t {
    void *object = nullptr;
    switch (engines().remove(engine, &object)) {
    case HandleState::kOk:
      break;
    case HandleState::kStale:
      return fail(LLMDD_ENGINE_FINALIZED, "engine 0x%llx has already been finalized",
                  static_cast<unsigned long long>(engine));
    default:
      return fail(LLMDD_PARAM_INVALID, "0x%llx is not an engine handle",
                  static_cast<unsigned long long>(engine));
    }
    // From here no new call finds the engine. Calls that found it earlier see
    // `finalizing` when they take the lock, or stop at their next chunk; an
    // upstream call already made (a pull, a link) ends within its own timeout.
    Engine *e = static_cast<Engine *>(object);
    std::vector<Link> links;
    {
      std::unique_lock<std::mutex> guard(e->lock);
      e->finalizing.store(true, std::memory_order_relaxed);
      e->idle.wait(guard, [&] { return e->running == 0; });
      links = e->links.take_all();
    }
    for (const Link &l : links) {
      ClusterAddress address{l.cluster_id, l.remote, e->options.local};
      (void)e->backend->unlink(address, kFinalizeUnlinkMs, true);
    }
    // Device copies abandoned by timed-out reads must end before the memory they
    // read goes back.
    std::vector<uint64_t> drained;
    e->backend->reclaim(true, &drained);
    {
      std::lock_guard<std::mutex> guard(e->lock);
      std::vector<Released> released;
      for (auto &entry : e->in_flight)
        for (CacheRecord *record : entry.second) e->book.unpin(record, &released);
      e->in_flight.clear();
      e->drained_early.clear();
      e->book.release_all(&released);
      (void)engine_free(e, released);
    }
    e->backend->finalize();
    {
      std::lock_guard<std::mutex> guard(live_lock);
      live_engines--;
    }
    engine_release(e);  // the handle table's reference
    return LLMDD_SUCCESS;
  });
}

extern "C" LLMDD_API int32_t llmdd_engine_info(uint64_t engine, uint64_t *out) {
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    if (out == nullptr) {
      engine_leave(e);
      return fail(LLMDD_PARAM_INVALID, "out is NULL");
    }
    out[0] = static_cast<uint64_t>(e->num_devices());
    out[1] = 0;  // device memory: never LLMDD_INFO_HOST_ACCESSIBLE, so no views
    out[2] = e->book.capacity();
    out[3] = static_cast<uint64_t>(e->role);
    out[4] = e->options.listen.empty() ? 0 : e->options.listen[0].port;
    engine_leave(e);
    return LLMDD_SUCCESS;
  });
}

extern "C" LLMDD_API int32_t llmdd_pool_usage(uint64_t engine, int32_t device_index, uint64_t *out) {
  return guarded([&]() -> int32_t {
    Engine *e = nullptr;
    int32_t status = engine_enter(engine, &e);
    if (status != LLMDD_SUCCESS) return status;
    if (device_index < 0 || device_index >= e->num_devices())
      status = fail(LLMDD_PARAM_INVALID, "device_index %d is out of range [0, %d)", device_index,
                    e->num_devices());
    else if (out == nullptr)
      status = fail(LLMDD_PARAM_INVALID, "out is NULL");
    else {
      // The adapter's own accounting: every cache is charged on every device.
      out[0] = e->book.in_use();
      out[1] = e->book.capacity();
    }
    engine_leave(e);
    return status;
  });
}
