// Validated uint64 handles: the core's tables (ffi/core/handles.h, where the
// 53-bit layout is defined for both backends) behind a C++ face.
#ifndef LLMDD_CANN_HANDLES_HPP
#define LLMDD_CANN_HANDLES_HPP

#include <cstdint>
#include <functional>
#include <utility>

#include "core/handles.h"

namespace llmdd {

enum class HandleState { kOk, kStale, kInvalid };

class HandleTable {
 public:
  static constexpr uint32_t kEngine = CORE_HANDLE_ENGINE;
  static constexpr uint32_t kJob = CORE_HANDLE_JOB;

  // retain is called under the table lock on lookup, so an object cannot be
  // removed and freed between being found and being retained.
  HandleTable(uint32_t kind, std::function<void(void *)> retain) : retain_(std::move(retain)) {
    core_handle_table_init(&table_, kind, retain_one, this);
  }
  ~HandleTable() { core_handle_table_destroy(&table_); }
  // The core table points back at this object.
  HandleTable(const HandleTable &) = delete;
  HandleTable &operator=(const HandleTable &) = delete;

  // Stores object; returns false when out of memory or slots.
  bool insert(void *object, uint64_t *out_handle) {
    return core_handle_insert(&table_, object, out_handle) == 0;
  }
  // Finds and retains the object named by handle.
  HandleState acquire(uint64_t handle, void **out_object) {
    return state(core_handle_acquire(&table_, handle, out_object));
  }
  // Removes the object and hands the table's reference to the caller.
  HandleState remove(uint64_t handle, void **out_object) {
    return state(core_handle_remove(&table_, handle, out_object));
  }

 private:
  static void retain_one(void *self, void *object) {
    static_cast<HandleTable *>(self)->retain_(object);
  }
  static HandleState state(core_handle_state s) {
    return s == CORE_HANDLE_OK ? HandleState::kOk
           : s == CORE_HANDLE_STALE ? HandleState::kStale
                                    : HandleState::kInvalid;
  }

  std::function<void(void *)> retain_;
  core_handle_table table_;
};

}  // namespace llmdd

#endif
