#include "error.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "llmdd.h"

namespace llmdd {
namespace {
// Thread-local, like errno: the TypeScript side reads the message right after the
// failing call on the same thread, and other threads' failures must not clobber it.
thread_local char tl_message[kMessageCap];
thread_local int32_t tl_length;
}  // namespace

int32_t fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(tl_message, kMessageCap, fmt, ap);
  va_end(ap);
  if (n < 0) {
    tl_message[0] = '\0';
    n = 0;
  }
  tl_length = n < kMessageCap ? n : kMessageCap - 1;
  return status;
}

std::string last_error() { return std::string(tl_message, static_cast<size_t>(tl_length)); }

void set_last_error(const std::string &text) {
  size_t n = text.size() < static_cast<size_t>(kMessageCap) ? text.size() : kMessageCap - 1;
  std::memcpy(tl_message, text.data(), n);
  tl_message[n] = '\0';
  tl_length = static_cast<int32_t>(n);
}

int32_t copy_message_out(const std::string &msg, uint8_t *buf, int32_t cap) {
  int32_t len = static_cast<int32_t>(msg.size());
  if (buf != nullptr && cap > 0) {
    int32_t n = len < cap - 1 ? len : cap - 1;
    std::memcpy(buf, msg.data(), static_cast<size_t>(n));
    buf[n] = '\0';
  }
  return len;
}

}  // namespace llmdd

extern "C" LLMDD_API int32_t llmdd_last_error(uint8_t *buf, int32_t cap) {
  return llmdd::copy_message_out(llmdd::last_error(), buf, cap);
}
