/* Security: what another account, or a process of the same account posing as
 * an engine, can do to a PROMPT or a DECODER (issue 10). Each case here failed
 * on the code before that issue; each says what the attack got then.
 *
 * Cases that need privileges (a mount namespace, a second account) say loudly
 * when they cannot run ("SKIP ..."), and clean up what they made even when a
 * check fails. Every case is named security_*: `llmdd_tests security_` runs
 * them alone. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static void skip_loudly(const char *test, const char *why) {
  fprintf(stderr, "    SKIP %s: %s\n", test, why);
  printf("    SKIP %s: %s\n", test, why);
}

/* Runs a child role and returns its stdout's first line in line (or "" when it
 * printed none) and its wait status. */
static int run_role(const char *role, const char *const *args, char *line, int cap,
                    double timeout_ms) {
  int to, from;
  pid_t pid = spawn_role(role, args, &to, &from);
  if (pid < 0) return -1;
  close(to);
  if (read_line(from, line, cap, timeout_ms) < 0) line[0] = '\0';
  int status = wait_child(pid, timeout_ms);
  close(from);
  return status;
}

/* ---- attack 3: a full backing store ---- */

/* full_backing_store: in a private mount namespace whose /dev/shm is a 4 MiB
 * tmpfs, a PROMPT with a 64 MiB pool allocates 1 MiB caches and writes each
 * whole until allocation fails. Prints "ok <caches> <status>" or "skip <why>".
 * Before issue 10 pools were sparse objects in /dev/shm: the write to the first
 * page past the tmpfs's 4 MiB ended this process with SIGBUS. */
ROLE(full_backing_store) {
  (void)argc, (void)argv;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=4m,mode=1777") != 0) {
    printf("skip no private mount namespace here (%s)\n", strerror(errno));
    return 0;
  }
  const char *options = "ge.flowGraphMemMaxSize=67108864";
  uint64_t engine;
  int32_t status = llmdd_engine_init(LLMDD_ROLE_PROMPT, unique_cluster_id(),
                                     (const uint8_t *)options, (int32_t)strlen(options), &engine);
  if (status != LLMDD_SUCCESS) {
    printf("init %d %s\n", status, last_error());
    return 1;
  }
  int caches = 0;
  for (;;) {
    uint64_t id, addr;
    status = llmdd_cache_allocate(engine, 1, MiB, 1, 0, LLMDD_PLACEMENT_HOST, NULL, 0, &id,
                                  &addr, 1);
    if (status != LLMDD_SUCCESS) break;
    memset((void *)(uintptr_t)addr, 0xA5, MiB); /* SIGBUS here before the fix */
    caches++;
  }
  printf("ok %d %d %s\n", caches, status, last_error());
  llmdd_engine_finalize(engine);
  return 0;
}

TEST(security_full_backing_store_is_out_of_memory_not_sigbus) {
  char line[512];
  const char *args[] = {NULL};
  int status = run_role("full_backing_store", args, line, sizeof line, 60000);
  if (strncmp(line, "skip", 4) == 0) {
    skip_loudly(__func__, line + 5);
    return;
  }
  if (!EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
    fprintf(stderr, "    child: %s (%s %d)\n", line,
            status != -1 && WIFSIGNALED(status) ? "killed by signal" : "status",
            status != -1 && WIFSIGNALED(status) ? WTERMSIG(status) : status);
  int caches = -1, last = 0;
  EXPECT(sscanf(line, "ok %d %d", &caches, &last) == 2);
  /* Either the pools no longer live on that tmpfs (all 64 fit), or the cache
   * that did not fit was refused with a typed error. */
  EXPECT(last == LLMDD_DEVICE_OUT_OF_MEMORY);
  printf("    %s\n", line);
}
