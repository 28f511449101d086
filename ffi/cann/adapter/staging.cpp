#include "staging.hpp"

namespace llmdd {

StagingSlot *StagingPool::take(int32_t device_index) {
  std::lock_guard<std::mutex> guard(lock_);
  for (auto &slot : slots_)
    if (slot->device_index == device_index && slot->state == StagingSlot::State::kIdle) {
      slot->state = StagingSlot::State::kBusy;
      return slot.get();
    }
  return nullptr;
}

StagingSlot *StagingPool::add(const StagingSlot &slot) {
  std::lock_guard<std::mutex> guard(lock_);
  slots_.push_back(std::make_unique<StagingSlot>(slot));
  slots_.back()->state = StagingSlot::State::kBusy;
  return slots_.back().get();
}

void StagingPool::give_back(StagingSlot *slot) {
  std::lock_guard<std::mutex> guard(lock_);
  slot->state = StagingSlot::State::kIdle;
  slot->token = 0;
}

void StagingPool::abandon(StagingSlot *slot, uint64_t token) {
  std::lock_guard<std::mutex> guard(lock_);
  slot->state = StagingSlot::State::kDraining;
  slot->token = token;
}

void StagingPool::reclaim(const std::function<bool(const StagingSlot &)> &idle,
                          std::vector<uint64_t> *drained) {
  std::lock_guard<std::mutex> guard(lock_);
  for (auto &slot : slots_) {
    if (slot->state != StagingSlot::State::kDraining || !idle(*slot)) continue;
    drained->push_back(slot->token);
    slot->state = StagingSlot::State::kIdle;
    slot->token = 0;
  }
}

std::vector<StagingSlot> StagingPool::take_all() {
  std::lock_guard<std::mutex> guard(lock_);
  std::vector<StagingSlot> all;
  for (auto &slot : slots_) all.push_back(*slot);
  slots_.clear();
  return all;
}

size_t StagingPool::count(StagingSlot::State state) const {
  std::lock_guard<std::mutex> guard(lock_);
  size_t n = 0;
  for (const auto &slot : slots_) n += slot->state == state;
  return n;
}

}  // namespace llmdd
