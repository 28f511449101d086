// Tables that turn objects into validated uint64 handles, with the same layout as
// the host backend's (so the TypeScript side sees the same kind of numbers):
//   handle = generation << 26 | kind << 24 | (slot + 1), 53 bits in all
// - slot + 1 so that 0 is never a handle;
// - kind so an engine handle is never taken for a job handle;
// - generation, bumped when a slot is freed, so a freed object's handle is "stale"
//   (once valid) rather than naming the slot's next tenant;
// - 53 bits so every handle is exact as a JavaScript number.
#ifndef LLMDD_CANN_HANDLES_HPP
#define LLMDD_CANN_HANDLES_HPP

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace llmdd {

enum class HandleState { kOk, kStale, kInvalid };

class HandleTable {
 public:
  static constexpr uint32_t kEngine = 1;
  static constexpr uint32_t kJob = 2;

  // retain is called under the table lock on lookup, so an object cannot be
  // removed and freed between being found and being retained.
  HandleTable(uint32_t kind, std::function<void(void *)> retain);

  // Stores object; returns false when out of slots.
  bool insert(void *object, uint64_t *out_handle);
  // Finds and retains the object named by handle.
  HandleState acquire(uint64_t handle, void **out_object);
  // Removes the object and hands the table's reference to the caller.
  HandleState remove(uint64_t handle, void **out_object);

 private:
  struct Slot {
    void *object = nullptr;
    uint32_t generation = 1;
    uint32_t next_free = 0;  // slot + 1 of the next free slot, 0 ends the list
  };
  Slot *find(uint64_t handle, bool *stale);

  std::mutex lock_;
  uint32_t kind_;
  std::function<void(void *)> retain_;
  std::vector<Slot> slots_;
  uint32_t free_head_ = 0;
};

}  // namespace llmdd

#endif
