/* A minimal test harness: TEST(name) { ... } registers a test case; CHECK stops
 * the case at the first failed condition, EXPECT records it and goes on (and is
 * the one to use from helper threads). The runner prints one line per case and,
 * last, "N passed, N failed". */
#ifndef LLMDD_TEST_HARNESS_H
#define LLMDD_TEST_HARNESS_H

#include <stdint.h>

void harness_register(const char *name, const char *file, int line, void (*fn)(void));
/* Records a failure of the running case; returns 0 so it can sit in expressions. */
int harness_fail(const char *file, int line, const char *what);
/* Returns 1 when got == want, else records a failure naming both statuses. */
int harness_expect_status(const char *file, int line, const char *expr, int32_t got,
                          int32_t want);
int harness_failed(void); /* whether the running case has failed so far */

#define TEST(name)                                                                \
  static void name(void);                                                         \
  __attribute__((constructor)) static void register_##name(void) {                \
    harness_register(#name, __FILE__, __LINE__, name);                            \
  }                                                                               \
  static void name(void)

/* Child processes. ROLE(name) { ... } defines the main of a child role, run
 * instead of the tests when the binary is started as `llmdd_tests --role name
 * args...` (see spawn_role in util.h). A child is a fresh exec of this binary,
 * so it inherits no threads, locks or sanitizer state from the test process. */
void harness_register_role(const char *name, int (*fn)(int argc, char **argv));

#define ROLE(name)                                                                \
  static int role_##name(int argc, char **argv);                                  \
  __attribute__((constructor)) static void register_role_##name(void) {           \
    harness_register_role(#name, role_##name);                                    \
  }                                                                               \
  static int role_##name(int argc, char **argv)

#define EXPECT(cond) ((cond) ? 1 : harness_fail(__FILE__, __LINE__, #cond))
#define CHECK(cond)                  \
  do {                               \
    if (!EXPECT(cond)) return;       \
  } while (0)

#define EXPECT_STATUS(expr, want) \
  harness_expect_status(__FILE__, __LINE__, #expr, (expr), (want))
#define CHECK_STATUS(expr, want)          \
  do {                                    \
    if (!EXPECT_STATUS(expr, want)) return; \
  } while (0)

#endif
