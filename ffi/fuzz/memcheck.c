/* The native unit tests under valgrind memcheck (`make memcheck`).
 *
 * Linked into the unsanitized test binary with -Wl,--wrap=harness_register, so
 * every TEST() registers through __wrap_harness_register below, which
 *   - leaves out the cases in `skipped` (each with the reason), unless the
 *     environment has LLMDD_MEMCHECK_ALL=1;
 *   - runs each case through a trampoline that fails the case when valgrind
 *     reported an error while it ran (VALGRIND_COUNT_ERRORS), so the closing
 *     "N passed, N failed" line counts memory errors too;
 *   - adds one last case, memcheck_no_definite_leaks, that runs a leak check
 *     once every other case has finished and fails on definitely lost bytes.
 * Outside valgrind the client requests do nothing and every case just runs.
 * Lives in fuzz/ with the other memory-safety tooling; the tests are test/'s. */
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#include "harness.h"

void __real_harness_register(const char *name, const char *file, int line, void (*fn)(void));
void __wrap_harness_register(const char *name, const char *file, int line, void (*fn)(void));

/* Cases valgrind cannot run in a reasonable time or whose timing it breaks
 * (valgrind runs code 20-50 times slower, and all threads on one core). */
static const struct {
  const char *name;
  const char *why;
} skipped[] = {
    /* Spawn this binary as a child and kill it: under valgrind the child is
     * /proc/self/exe, which is valgrind itself, not the test binary. */
    {"crash_prompt_killed_before_a_pull", "spawns a child process"},
    {"crash_prompt_killed_during_a_large_pull", "spawns a child process, 256 MiB pull"},
    {"crash_prompt_killed_during_a_large_block_pull", "spawns a child process, 256 MiB pull"},
    {"crash_decoder_killed_during_a_pull_leaves_the_prompt_serving", "spawns a child process"},
    {"crash_restart_with_the_same_cluster_id", "spawns a child process"},
    {"exit_without_finalize_removes_the_names", "spawns a child process"},
    {"security_full_backing_store_is_out_of_memory_not_sigbus", "spawns a child process"},
    {"security_a_silent_connection_is_dropped_within_2_s", "times a 2 s handshake limit"},
    {"security_silent_sockets_do_not_starve_real_links", "80 connections timed against a link"},
    {"security_an_impostor_of_the_same_account_cannot_squat_a_cluster_id", "spawns a child process"},
    {"security_another_account_cannot_take_a_cluster_id", "spawns children as another account"},
    {"security_a_private_directory_made_by_another_account_is_refused_naming_it",
     "spawns a child as another account"},
    {"security_another_account_cannot_link_or_learn_the_cluster_id",
     "spawns a child as another account"},
    {"security_a_truncated_pool_cannot_kill_the_decoder", "spawns a child process"},
    /* A pool of twice the machine's memory: valgrind's own mmap refuses it. */
    {"security_a_cache_larger_than_the_machine_is_refused_at_allocate",
     "a pool of twice the machine's memory"},
    /* Large copies and throughput figures: minutes under valgrind. */
    {"pull_speed_report", "a throughput report over hundreds of MiB"},
    {"large_read_stops_soon_after_its_deadline", "a large read timed against a deadline"},
    {"large_pull_stops_at_its_deadline_and_on_cancel", "a large pull timed against a deadline"},
    {"cancel_from_another_thread_stops_a_large_copy", "a large copy timed against a cancel"},
    /* Valgrind's own mmap fails a 4 EiB mapping with EINVAL, not the kernel's
     * ENOMEM, so the library rightly reports FAILED instead of
     * DEVICE_OUT_OF_MEMORY: an artifact of running under valgrind. */
    {"init_reports_a_pool_that_cannot_be_reserved", "valgrind's mmap gives another errno"},
    /* 20 rounds of an engine with a 1 GiB shared pool: valgrind sets up its
     * shadow memory for every such mapping, over 30 s in all. */
    {"concurrent_finalize_succeeds_once", "20 engines with 1 GiB pools: over 30 s"},
};

#define MAX_WRAPPED 256

static struct {
  const char *file;
  int line;
  void (*fn)(void);
} wrapped[MAX_WRAPPED];
static int num_wrapped;

static void run(int i) {
  unsigned before = VALGRIND_COUNT_ERRORS;
  wrapped[i].fn();
  unsigned after = VALGRIND_COUNT_ERRORS;
  if (after > before) {
    char what[96];
    snprintf(what, sizeof what, "valgrind reported %u error(s) during this case (see its log)",
             after - before);
    harness_fail(wrapped[i].file, wrapped[i].line, what);
  }
}

/* One trampoline per slot: the harness calls cases without arguments. */
#define TRAMPOLINE(n) \
  static void trampoline_##n(void) { run(0x##n); }
#define TRAMPOLINES(h)                                                                       \
  TRAMPOLINE(h##0) TRAMPOLINE(h##1) TRAMPOLINE(h##2) TRAMPOLINE(h##3) TRAMPOLINE(h##4)       \
  TRAMPOLINE(h##5) TRAMPOLINE(h##6) TRAMPOLINE(h##7) TRAMPOLINE(h##8) TRAMPOLINE(h##9)       \
  TRAMPOLINE(h##a) TRAMPOLINE(h##b) TRAMPOLINE(h##c) TRAMPOLINE(h##d) TRAMPOLINE(h##e)       \
  TRAMPOLINE(h##f)
TRAMPOLINES(0) TRAMPOLINES(1) TRAMPOLINES(2) TRAMPOLINES(3) TRAMPOLINES(4) TRAMPOLINES(5)
TRAMPOLINES(6) TRAMPOLINES(7) TRAMPOLINES(8) TRAMPOLINES(9) TRAMPOLINES(a) TRAMPOLINES(b)
TRAMPOLINES(c) TRAMPOLINES(d) TRAMPOLINES(e) TRAMPOLINES(f)

#define ENTRY(n) trampoline_##n,
#define ENTRIES(h)                                                                           \
  ENTRY(h##0) ENTRY(h##1) ENTRY(h##2) ENTRY(h##3) ENTRY(h##4) ENTRY(h##5) ENTRY(h##6)        \
  ENTRY(h##7) ENTRY(h##8) ENTRY(h##9) ENTRY(h##a) ENTRY(h##b) ENTRY(h##c) ENTRY(h##d)        \
  ENTRY(h##e) ENTRY(h##f)
static void (*const trampolines[MAX_WRAPPED])(void) = {
    ENTRIES(0) ENTRIES(1) ENTRIES(2) ENTRIES(3) ENTRIES(4) ENTRIES(5) ENTRIES(6) ENTRIES(7)
    ENTRIES(8) ENTRIES(9) ENTRIES(a) ENTRIES(b) ENTRIES(c) ENTRIES(d) ENTRIES(e) ENTRIES(f)};

static void no_definite_leaks(void) {
  if (!RUNNING_ON_VALGRIND) return;
  unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
  VALGRIND_DO_LEAK_CHECK;
  VALGRIND_COUNT_LEAK_BLOCKS(leaked, dubious, reachable, suppressed);
  (void)dubious, (void)reachable, (void)suppressed;
  if (leaked > 0) {
    char what[96];
    snprintf(what, sizeof what, "%lu block(s) definitely lost (see the valgrind log)", leaked);
    harness_fail(__FILE__, __LINE__, what);
  }
}

void __wrap_harness_register(const char *name, const char *file, int line, void (*fn)(void)) {
  static int added_leak_case;
  if (!added_leak_case) {
    added_leak_case = 1;
    /* Cases run sorted by file then line: "~" sorts after "test/". */
    __real_harness_register("memcheck_no_definite_leaks", "~memcheck", 0, no_definite_leaks);
  }
  const char *all = getenv("LLMDD_MEMCHECK_ALL");
  for (size_t i = 0; !(all && strcmp(all, "1") == 0) && i < sizeof skipped / sizeof skipped[0]; i++)
    if (strcmp(skipped[i].name, name) == 0) {
      fprintf(stderr, "skip %s: %s\n", name, skipped[i].why);
      return;
    }
  if (num_wrapped == MAX_WRAPPED) {
    __real_harness_register(name, file, line, fn); /* runs, without its own error count */
    return;
  }
  wrapped[num_wrapped].file = file;
  wrapped[num_wrapped].line = line;
  wrapped[num_wrapped].fn = fn;
  __real_harness_register(name, file, line, trampolines[num_wrapped++]);
}
