/* Library-wide calls: the ABI version and the per-thread last error. */
#define _DEFAULT_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

TEST(abi_version_is_the_header_version) {
  CHECK(llmdd_abi_version() == LLMDD_ABI_VERSION);
  CHECK(llmdd_abi_version() == 6);
}

/* The built library (LLMDD_TEST_LIBRARY, set by `make test`) stays loaded once
 * closed: it is linked with -z nodelete (ffi/Makefile says why). Without it,
 * Deno's test runner, which closes the library after each module, hung its
 * next module on a copy helper left waiting in the old mapping. */
TEST(the_library_stays_loaded_after_dlclose) {
  const char *path = getenv("LLMDD_TEST_LIBRARY");
  if (path == NULL) {
    fprintf(stderr, "    LLMDD_TEST_LIBRARY is not set (make test sets it): nothing to open\n");
    return;
  }
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  CHECK(h != NULL);
  int32_t (*version)(void) = (int32_t(*)(void))dlsym(h, "llmdd_abi_version");
  CHECK(version != NULL && version() == LLMDD_ABI_VERSION);
  CHECK(dlclose(h) == 0);
  void *still = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  EXPECT(still != NULL);
  if (still != NULL) dlclose(still);
}

static void *read_fresh_error(void *out) {
  uint8_t buf[16];
  memset(buf, 'x', sizeof buf);
  ((int32_t *)out)[0] = llmdd_last_error(buf, sizeof buf);
  ((int32_t *)out)[1] = buf[0];
  return NULL;
}

TEST(last_error_is_empty_on_a_thread_without_errors) {
  int32_t result[2] = {-1, -1};
  pthread_t t;
  pthread_create(&t, NULL, read_fresh_error, result);
  pthread_join(t, NULL);
  CHECK(result[0] == 0);
  CHECK(result[1] == 0);
}

TEST(last_error_names_the_bad_argument) {
  uint64_t engine;
  CHECK_STATUS(llmdd_engine_init(99, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  CHECK(strstr(last_error(), "role 99") != NULL);
}

TEST(last_error_truncates_and_reports_the_full_length) {
  uint64_t engine;
  CHECK_STATUS(llmdd_engine_init(0, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  char full[256];
  int32_t len = llmdd_last_error((uint8_t *)full, sizeof full);
  CHECK(len > 10 && (size_t)len == strlen(full));

  char small[5];
  memset(small, 'x', sizeof small);
  CHECK(llmdd_last_error((uint8_t *)small, sizeof small) == len);
  CHECK(strlen(small) == 4 && memcmp(small, full, 4) == 0);

  char one = 'x';
  CHECK(llmdd_last_error((uint8_t *)&one, 1) == len);
  CHECK(one == '\0');

  CHECK(llmdd_last_error(NULL, 0) == len);
}

static void *fail_on_another_thread(void *unused) {
  (void)unused;
  uint64_t engine;
  llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, -1, &engine);
  return NULL;
}

TEST(last_error_is_per_thread) {
  uint64_t engine;
  CHECK_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, 0, NULL), LLMDD_PARAM_INVALID);
  char before[256];
  strcpy(before, last_error());
  pthread_t t;
  pthread_create(&t, NULL, fail_on_another_thread, NULL);
  pthread_join(t, NULL);
  CHECK(strcmp(before, last_error()) == 0);
  CHECK(strstr(before, "out_engine") != NULL);
  (void)engine;
}
