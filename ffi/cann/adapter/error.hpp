// The calling thread's last error: the core's (ffi/core/error.h, which also
// implements llmdd_last_error), with std::string at the seams the adapter uses.
#ifndef LLMDD_CANN_ERROR_HPP
#define LLMDD_CANN_ERROR_HPP

#include <cstdint>
#include <string>

#include "core/error.h"

namespace llmdd {

// Longest message kept; longer ones are truncated when stored.
constexpr int32_t kMessageCap = CORE_MESSAGE_CAP;

// Stores a formatted message as the thread's last error and returns status, so a
// failure reads `return fail(LLMDD_PARAM_INVALID, "...", ...);`.
int32_t fail(int32_t status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// The thread's last error as stored.
std::string last_error();

// Replaces the thread's last error with text (used to restore a kept message).
void set_last_error(const std::string &text);

// llmdd_last_error()'s contract: NUL-terminated, truncated to cap-1 bytes, returns
// the full length.
inline int32_t copy_message_out(const std::string &msg, uint8_t *buf, int32_t cap) {
  return core_copy_message_out(msg.data(), static_cast<int32_t>(msg.size()), buf, cap);
}

}  // namespace llmdd

#endif
