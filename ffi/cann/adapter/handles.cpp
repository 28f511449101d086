#include "handles.hpp"

#include <utility>

namespace llmdd {
namespace {
constexpr uint32_t kSlotBits = 24;
constexpr uint32_t kKindBits = 2;
constexpr uint32_t kGenerationShift = kSlotBits + kKindBits;
constexpr uint32_t kGenerationBits = 27;
constexpr uint32_t kSlotLimit = (1u << kSlotBits) - 1;
constexpr uint32_t kGenerationLimit = (1u << kGenerationBits) - 1;

uint64_t make_handle(uint32_t kind, uint32_t slot, uint32_t generation) {
  return static_cast<uint64_t>(generation) << kGenerationShift |
         static_cast<uint64_t>(kind) << kSlotBits | (slot + 1);
}
}  // namespace

HandleTable::HandleTable(uint32_t kind, std::function<void(void *)> retain)
    : kind_(kind), retain_(std::move(retain)) {}

HandleTable::Slot *HandleTable::find(uint64_t handle, bool *stale) {
  uint64_t generation = handle >> kGenerationShift;
  uint32_t kind = static_cast<uint32_t>(handle >> kSlotBits) & ((1u << kKindBits) - 1);
  uint32_t index = static_cast<uint32_t>(handle) & kSlotLimit;
  *stale = false;
  if (kind != kind_ || index == 0 || index > slots_.size() || generation == 0 ||
      generation > kGenerationLimit)
    return nullptr;
  Slot *slot = &slots_[index - 1];
  if (generation == slot->generation && slot->object != nullptr) return slot;
  *stale = generation <= slot->generation;  // == only for a retired slot
  return nullptr;
}

bool HandleTable::insert(void *object, uint64_t *out_handle) {
  std::lock_guard<std::mutex> guard(lock_);
  uint32_t index;
  if (free_head_ != 0) {
    index = free_head_ - 1;
    free_head_ = slots_[index].next_free;
  } else {
    if (slots_.size() >= kSlotLimit) return false;
    slots_.emplace_back();
    index = static_cast<uint32_t>(slots_.size() - 1);
  }
  slots_[index].object = object;
  slots_[index].next_free = 0;
  *out_handle = make_handle(kind_, index, slots_[index].generation);
  return true;
}

HandleState HandleTable::acquire(uint64_t handle, void **out_object) {
  std::lock_guard<std::mutex> guard(lock_);
  bool stale;
  Slot *slot = find(handle, &stale);
  if (slot == nullptr) return stale ? HandleState::kStale : HandleState::kInvalid;
  retain_(slot->object);
  *out_object = slot->object;
  return HandleState::kOk;
}

HandleState HandleTable::remove(uint64_t handle, void **out_object) {
  std::lock_guard<std::mutex> guard(lock_);
  bool stale;
  Slot *slot = find(handle, &stale);
  if (slot == nullptr) return stale ? HandleState::kStale : HandleState::kInvalid;
  *out_object = slot->object;
  slot->object = nullptr;
  // A slot whose generation would wrap is retired instead of reused, so an old
  // handle can never come back to life.
  if (slot->generation < kGenerationLimit) {
    slot->generation++;
    slot->next_free = free_head_;
    free_head_ = static_cast<uint32_t>(slot - slots_.data()) + 1;
  }
  return HandleState::kOk;
}

}  // namespace llmdd
