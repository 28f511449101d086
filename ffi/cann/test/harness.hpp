// A tiny test harness: TEST(name) { ... } registers a case; CHECK stops the case
// at the first failed condition, EXPECT records a failure and goes on. The runner
// prints one line per case and, last, "N passed, N failed".
#ifndef LLMDD_CANN_TEST_HARNESS_HPP
#define LLMDD_CANN_TEST_HARNESS_HPP

#include <cstdint>
#include <string>

namespace harness {
void add(const char *name, const char *file, int line, void (*fn)());
bool fail(const char *file, int line, const std::string &what);
bool expect_status(const char *file, int line, const char *expr, int32_t got, int32_t want);
bool expect_eq(const char *file, int line, const char *expr, long long got, long long want);
}  // namespace harness

#define TEST(name)                                                            \
  static void name();                                                         \
  namespace {                                                                 \
  struct Register_##name {                                                    \
    Register_##name() { harness::add(#name, __FILE__, __LINE__, name); }       \
  } register_##name;                                                          \
  }                                                                           \
  static void name()

#define EXPECT(cond) ((cond) ? true : harness::fail(__FILE__, __LINE__, #cond))
#define CHECK(cond)             \
  do {                          \
    if (!EXPECT(cond)) return;  \
  } while (0)
#define EXPECT_STATUS(expr, want) harness::expect_status(__FILE__, __LINE__, #expr, (expr), (want))
#define CHECK_STATUS(expr, want)                  \
  do {                                            \
    if (!EXPECT_STATUS(expr, want)) return;       \
  } while (0)
#define EXPECT_EQ(expr, want) \
  harness::expect_eq(__FILE__, __LINE__, #expr, static_cast<long long>(expr), static_cast<long long>(want))

#endif
