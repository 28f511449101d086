#define _DEFAULT_SOURCE 1
#include "harness.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CASES 256

struct test_case {
  const char *name;
  const char *file;
  int line;
  void (*fn)(void);
};

static struct test_case cases[MAX_CASES];

#define MAX_ROLES 16
static struct {
  const char *name;
  int (*fn)(int argc, char **argv);
} roles[MAX_ROLES];
static int num_roles;

void harness_register_role(const char *name, int (*fn)(int argc, char **argv)) {
  if (num_roles == MAX_ROLES) {
    fprintf(stderr, "harness: more than %d roles\n", MAX_ROLES);
    exit(2);
  }
  roles[num_roles].name = name;
  roles[num_roles++].fn = fn;
}
static int num_cases;
static atomic_int failures; /* of the running case */

void harness_register(const char *name, const char *file, int line, void (*fn)(void)) {
  if (num_cases == MAX_CASES) {
    fprintf(stderr, "harness: more than %d test cases\n", MAX_CASES);
    exit(2);
  }
  cases[num_cases++] = (struct test_case){name, file, line, fn};
}

int harness_fail(const char *file, int line, const char *what) {
  atomic_fetch_add(&failures, 1);
  fprintf(stderr, "    %s:%d: failed: %s\n", file, line, what);
  return 0;
}

int harness_expect_status(const char *file, int line, const char *expr, int32_t got,
                          int32_t want) {
  if (got == want) return 1;
  atomic_fetch_add(&failures, 1);
  fprintf(stderr, "    %s:%d: %s returned 0x%08x, expected 0x%08x\n", file, line, expr,
          (unsigned)got, (unsigned)want);
  return 0;
}

int harness_failed(void) { return atomic_load(&failures) > 0; }

/* Constructors run in an unspecified order; file then line keeps runs stable. */
static int by_location(const void *a, const void *b) {
  const struct test_case *x = a, *y = b;
  int c = strcmp(x->file, y->file);
  return c != 0 ? c : x->line - y->line;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Usage: llmdd_tests [substring]  runs the cases whose name contains substring.
 *        llmdd_tests --role name args...  runs a child role (for tests only).
 * With LLMDD_TEST_SHARD=k/n in the environment, only every n-th case from the
 * k-th (0-based, in file order) runs: `npm test` splits the slow valgrind run
 * in two processes that way. */
int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "--role") == 0) {
    for (int i = 0; i < num_roles; i++)
      if (strcmp(roles[i].name, argv[2]) == 0) return roles[i].fn(argc - 3, argv + 3);
    fprintf(stderr, "harness: no role %s\n", argv[2]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  qsort(cases, (size_t)num_cases, sizeof cases[0], by_location);
  int passed = 0, failed = 0, shard = 0, shards = 1;
  const char *sharding = getenv("LLMDD_TEST_SHARD");
  if (sharding != NULL &&
      (sscanf(sharding, "%d/%d", &shard, &shards) != 2 || shards < 1 || shard < 0 || shard >= shards)) {
    fprintf(stderr, "harness: LLMDD_TEST_SHARD=%s is not k/n with 0 <= k < n\n", sharding);
    return 2;
  }
  double start = now_ms();
  for (int i = 0; i < num_cases; i++) {
    if (i % shards != shard) continue;
    if (argc > 1 && strstr(cases[i].name, argv[1]) == NULL) continue;
    atomic_store(&failures, 0);
    double t0 = now_ms();
    cases[i].fn();
    double ms = now_ms() - t0;
    fflush(stderr);
    if (harness_failed()) {
      failed++;
      printf("FAIL %s (%.1f ms)\n", cases[i].name, ms);
    } else {
      passed++;
      printf("ok   %s (%.1f ms)\n", cases[i].name, ms);
    }
  }
  printf("total %.0f ms\n", now_ms() - start);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
