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
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <poll.h>
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

/* ---- attack 4: idle connections ---- */

static int connect_loopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether the server closed fd (EOF or reset) within timeout_ms. */
static bool closed_within(int fd, double timeout_ms) {
  for (double end = now_ms() + timeout_ms; now_ms() < end;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    char scratch[256];
    ssize_t n = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
    if (n <= 0) return true;
  }
  return false;
}

/* Before: the 10 s message limit started with a message's first byte, so a
 * socket that never sent one kept its connection (and thread) forever. */
TEST(security_a_silent_connection_is_dropped_within_2_s) {
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, unique_cluster_id(),
                                   "ge.flowGraphMemMaxSize=65536", &port);
  CHECK(prompt != 0);
  int fd = connect_loopback(port);
  CHECK(fd >= 0);
  double start = now_ms();
  bool closed = closed_within(fd, 4000);
  double took = now_ms() - start;
  close(fd);
  printf("    silent connection %s after %.0f ms\n", closed ? "dropped" : "still open", took);
  EXPECT(closed && took < 3000);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

/* Before: 64 silent sockets took every connection slot, and every real link was
 * refused (closed at accept) for as long as they stayed. */
TEST(security_silent_sockets_do_not_starve_real_links) {
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  uint64_t prompt =
      open_listening(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=1048576", &port);
  CHECK(prompt != 0);
  uint64_t keys[3] = {cluster, 7, 0}, id, addr;
  CHECK_STATUS(llmdd_cache_allocate(prompt, 1, 4096, 1, 9, LLMDD_PLACEMENT_HOST, keys, 1, &id,
                                    &addr, 1),
               LLMDD_SUCCESS);
  fill_pattern((uint8_t *)(uintptr_t)addr, 4096, id, 0, 0);
  /* One DECODER links first: linked DECODERs have their own budget. */
  uint64_t early = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(early != 0);
  CHECK_STATUS(link_port(early, cluster, port, 3000), LLMDD_SUCCESS);

  enum { SILENT = 80 };
  int silent[SILENT];
  for (int i = 0; i < SILENT; i++) silent[i] = connect_loopback(port);
  sleep_ms(100); /* let the listener take them all */

  uint64_t late = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  uint64_t dst, dst_addr;
  EXPECT(late != 0);
  double start = now_ms();
  int32_t linked = link_port(late, cluster, port, 3000);
  printf("    link during %d silent connections: status 0x%08x after %.1f ms\n", SILENT,
         (unsigned)linked, now_ms() - start);
  if (!EXPECT_STATUS(linked, LLMDD_SUCCESS)) fprintf(stderr, "    %s\n", last_error());
  /* And the early link still pulls. */
  EXPECT_STATUS(llmdd_cache_allocate(early, 1, 4096, 1, 9, LLMDD_PLACEMENT_HOST, NULL, 0, &dst,
                                     &dst_addr, 1),
                LLMDD_SUCCESS);
  EXPECT_STATUS(pull_row(early, dst, LLMDD_KEY_CACHE_KEY, cluster, 7, 0, 0, LLMDD_WHOLE_ROW, 3000),
                LLMDD_SUCCESS);
  EXPECT(find_mismatch((const uint8_t *)(uintptr_t)dst_addr, 4096, id, 0, 0) == UINT64_MAX);
  for (int i = 0; i < SILENT; i++)
    if (silent[i] >= 0) close(silent[i]);
  if (late != 0) EXPECT_STATUS(llmdd_engine_finalize(late), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(early), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}
