#include "error.hpp"

#include <cstdarg>

namespace llmdd {

int32_t fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  core_failv(status, fmt, ap);
  va_end(ap);
  return status;
}

std::string last_error() {
  int32_t length;
  const char *text = core_last_error_text(&length);
  return std::string(text, static_cast<size_t>(length));
}

void set_last_error(const std::string &text) {
  int n = text.size() < static_cast<size_t>(kMessageCap) ? static_cast<int>(text.size())
                                                          : kMessageCap - 1;
  core_fail(0, "%.*s", n, text.data());
}

}  // namespace llmdd
