// Helpers of the tests that drive the exported llmdd_* functions (test_abi.cpp,
// test_transfer.cpp).
#ifndef LLMDD_CANN_TEST_ABI_SUPPORT_HPP
#define LLMDD_CANN_TEST_ABI_SUPPORT_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "llmdd.h"

namespace abi {

inline std::string message() {
  char buf[600];
  llmdd_last_error(reinterpret_cast<uint8_t *>(buf), sizeof buf);
  return buf;
}
inline bool has(const std::string &text, const char *part) { return text.find(part) != std::string::npos; }

inline int32_t init(int32_t role, uint64_t cluster, const std::string &options, uint64_t *engine) {
  return llmdd_engine_init(role, cluster, reinterpret_cast<const uint8_t *>(options.data()),
                           static_cast<int32_t>(options.size()), engine);
}

struct Cache {
  uint64_t id = 0;
  std::vector<uint64_t> addrs;
};

inline int32_t allocate(uint64_t engine, int32_t devices, int32_t tensors, uint64_t bytes, uint64_t batch, Cache *out,
                        const std::vector<uint64_t> &keys = {}, int32_t placement = LLMDD_PLACEMENT_DEVICE) {
  out->addrs.assign(static_cast<size_t>(devices * tensors), 0);
  return llmdd_cache_allocate(engine, tensors, bytes, batch, 0x7A6, placement,
                              keys.empty() ? nullptr : keys.data(), static_cast<int32_t>(keys.size() / 3),
                              &out->id, out->addrs.data(), static_cast<int32_t>(out->addrs.size()));
}

inline uint8_t *bytes_at(uint64_t addr) { return reinterpret_cast<uint8_t *>(static_cast<uintptr_t>(addr)); }

inline void fill(uint64_t addr, uint64_t n, uint8_t seed) {
  for (uint64_t i = 0; i < n; i++) bytes_at(addr)[i] = static_cast<uint8_t>(seed + i * 7);
}

}  // namespace abi

#endif
