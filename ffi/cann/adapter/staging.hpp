// The device-to-host read path's resources: per device, a stream and a pinned
// host staging buffer of one chunk. A read copies a chunk device → staging with
// an async copy on the stream, waits for the stream within the job's remaining
// time, then copies staging → the caller's buffer. The caller's buffer (memory
// JavaScript owns) is therefore never the target of a device copy.
//
// When the wait times out the copy may still be running: the slot is "draining"
// and is neither reused nor freed until its stream is seen idle; the operation
// that gave up on it leaves a token, so the cache it read from stays pinned
// (its device memory is not released under a running copy) until then.
#ifndef LLMDD_CANN_STAGING_HPP
#define LLMDD_CANN_STAGING_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace llmdd {

struct StagingSlot {
  enum class State { kIdle, kBusy, kDraining };
  int32_t device_index = 0;
  void *stream = nullptr;  // aclrtStream
  void *buffer = nullptr;  // aclrtMallocHost, `bytes` long
  uint64_t bytes = 0;
  State state = State::kBusy;
  uint64_t token = 0;  // while draining: the token of the read that gave up
};

class StagingPool {
 public:
  // An idle slot of the device, now busy, or null (the caller makes one and adds it).
  StagingSlot *take(int32_t device_index);
  // Adds a slot the caller made; it is busy.
  StagingSlot *add(const StagingSlot &slot);
  // Busy → idle.
  void give_back(StagingSlot *slot);
  // Busy → draining: its copy was abandoned, possibly still running.
  void abandon(StagingSlot *slot, uint64_t token);
  // Draining slots for which idle(slot) is true become idle; their tokens are
  // appended to drained.
  void reclaim(const std::function<bool(const StagingSlot &)> &idle, std::vector<uint64_t> *drained);
  // Removes every slot (for destruction; the caller has made sure none is busy
  // and every stream is idle).
  std::vector<StagingSlot> take_all();
  size_t count(StagingSlot::State state) const;

 private:
  mutable std::mutex lock_;
  std::vector<std::unique_ptr<StagingSlot>> slots_;
};

}  // namespace llmdd

#endif
