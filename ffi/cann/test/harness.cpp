#include "harness.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

namespace harness {
namespace {
struct Case {
  const char *name;
  const char *file;
  int line;
  void (*fn)();
};
std::vector<Case> &cases() {
  static std::vector<Case> all;
  return all;
}
std::atomic<int> failures{0};  // of the running case
}  // namespace

void add(const char *name, const char *file, int line, void (*fn)()) {
  cases().push_back(Case{name, file, line, fn});
}

bool fail(const char *file, int line, const std::string &what) {
  failures++;
  std::fprintf(stderr, "    %s:%d: failed: %s\n", file, line, what.c_str());
  return false;
}

bool expect_status(const char *file, int line, const char *expr, int32_t got, int32_t want) {
  if (got == want) return true;
  char text[512];
  std::snprintf(text, sizeof text, "%s returned 0x%08x, expected 0x%08x", expr, static_cast<unsigned>(got),
                static_cast<unsigned>(want));
  return fail(file, line, text);
}

bool expect_eq(const char *file, int line, const char *expr, long long got, long long want) {
  if (got == want) return true;
  char text[512];
  std::snprintf(text, sizeof text, "%s is %lld, expected %lld", expr, got, want);
  return fail(file, line, text);
}
}  // namespace harness

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (const auto &c : harness::cases()) {
    if (only != nullptr && std::strstr(c.name, only) == nullptr) continue;
    harness::failures = 0;
    auto start = std::chrono::steady_clock::now();
    c.fn();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    bool ok = harness::failures == 0;
    std::printf("%s %s (%.1f ms)\n", ok ? "ok  " : "FAIL", c.name, ms);
    std::fflush(stdout);
    (ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
