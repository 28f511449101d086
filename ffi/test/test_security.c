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
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <spawn.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include "core/sha256.h"
#include "harness.h"
#include "util.h"

extern char **environ;

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

/* ---- a second account (root only) and same-account impostors ---- */

struct account {
  char name[32];
  uid_t uid;
  gid_t gid;
};

static int run_command(const char *const *argv) {
  pid_t pid;
  posix_spawn_file_actions_t quiet;
  posix_spawn_file_actions_init(&quiet);
  posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawnp(&pid, argv[0], &quiet, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&quiet);
  if (rc != 0) return -1;
  int status;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Makes a throw-away account (no home, no login). False, with the reason in
 * why, when this test cannot (not root, no useradd). */
static bool account_make(struct account *a, char *why, size_t why_cap) {
  if (geteuid() != 0) {
    snprintf(why, why_cap, "not root: cannot make a second account (run as root to test it)");
    return false;
  }
  snprintf(a->name, sizeof a->name, "llmddsec%d", (int)getpid() % 100000);
  const char *add[] = {"useradd", "-M", "-N", "-s", "/usr/sbin/nologin", a->name, NULL};
  if (run_command(add) != 0) {
    snprintf(why, why_cap, "useradd %s failed", a->name);
    return false;
  }
  struct passwd *pw = getpwnam(a->name);
  if (pw == NULL) {
    const char *del[] = {"userdel", a->name, NULL};
    run_command(del);
    snprintf(why, why_cap, "useradd made %s, but getpwnam cannot find it", a->name);
    return false;
  }
  a->uid = pw->pw_uid;
  a->gid = pw->pw_gid;
  return true;
}

/* Removes the account and whatever its processes left in /tmp. */
static void account_remove(const struct account *a) {
  char dir[64];
  snprintf(dir, sizeof dir, "/dev/shm/llmdd-%u", (unsigned)a->uid);
  const char *rm[] = {"rm", "-rf", dir, NULL};
  run_command(rm);
  const char *del[] = {"userdel", a->name, NULL};
  if (run_command(del) != 0) fprintf(stderr, "    could not remove the account %s\n", a->name);
}

static bool become(uid_t uid, gid_t gid) {
  return setgroups(0, NULL) == 0 && setgid(gid) == 0 && setuid(uid) == 0;
}

/* A stranger's HELLO, as the protocol before issue 10 spelt it (version 1) and
 * as it is now (version 2): the number of answer bytes that came back before
 * the server closed (or 2 s passed). Before, a HELLO naming the wrong cluster
 * was answered, with the right cluster id in the answer. */
static int stranger_hello(uint16_t port, uint16_t version) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  uint8_t m[48] = {0};
  uint32_t magic = 0x44444C4Cu, vt = version | 1u << 16, length = 24;
  memcpy(m, &magic, 4);
  memcpy(m + 4, &vt, 4);
  memcpy(m + 8, &length, 4);
  m[16] = 1;
  m[32] = 1; /* expected cluster 1: a guess */
  uint32_t abi = LLMDD_ABI_VERSION, devices = 1;
  memcpy(m + 40, &abi, 4);
  memcpy(m + 44, &devices, 4);
  send(fd, m, sizeof m, MSG_NOSIGNAL);
  int got = 0;
  for (double end = now_ms() + 2000; now_ms() < end;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    uint8_t buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    got += (int)n;
  }
  close(fd);
  return got;
}

/* other <uid> <gid> <action> [args]: runs `action` as that account.
 *   squat <cluster>       makes /dev/shm/llmdd.<cluster>.lock (flock held) and
 *                         .0, as engines before issue 10 named them; prints
 *                         "ready", holds them until stdin closes, removes them
 *   write_in <dir>        tries to make a file in dir; prints "denied" or "made"
 *   prompt <cluster>      starts a PROMPT; prints "status <hex> <message>"
 *   link <cluster> <port> links a DECODER to 127.0.0.1:port, and says a
 *                         stranger's HELLO there; prints "link <hex> hello <n>" */
ROLE(other) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (argc < 3 || !become((uid_t)atoi(argv[0]), (gid_t)atoi(argv[1]))) {
    printf("error cannot become uid %s\n", argc > 0 ? argv[0] : "?");
    return 1;
  }
  const char *action = argv[2];
  if (strcmp(action, "squat") == 0 && argc >= 4) {
    char lock[64], pool[64];
    snprintf(lock, sizeof lock, "/llmdd.%s.lock", argv[3]);
    snprintf(pool, sizeof pool, "/llmdd.%s.0", argv[3]);
    int l = shm_open(lock, O_RDWR | O_CREAT | O_EXCL, 0600);
    int p = shm_open(pool, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (l < 0 || p < 0 || flock(l, LOCK_EX | LOCK_NB) != 0) {
      printf("error squat: %s\n", strerror(errno));
      return 1;
    }
    printf("ready\n");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    shm_unlink(lock);
    shm_unlink(pool);
    return 0;
  }
  if (strcmp(action, "write_in") == 0 && argc >= 4) {
    char path[128];
    snprintf(path, sizeof path, "%s/123.lock", argv[3]);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    printf("%s\n", fd >= 0 ? "made" : "denied");
    if (fd >= 0) {
      close(fd);
      unlink(path);
    }
    return 0;
  }
  if (strcmp(action, "prompt") == 0 && argc >= 4) {
    uint64_t engine;
    const char *options = "ge.flowGraphMemMaxSize=65536";
    int32_t status = llmdd_engine_init(LLMDD_ROLE_PROMPT, strtoull(argv[3], NULL, 10),
                                       (const uint8_t *)options, (int32_t)strlen(options), &engine);
    printf("status %08x %s\n", (unsigned)status, status == LLMDD_SUCCESS ? "" : last_error());
    if (status == LLMDD_SUCCESS) llmdd_engine_finalize(engine);
    return 0;
  }
  if (strcmp(action, "link") == 0 && argc >= 5) {
    uint64_t engine;
    const char *options = "ge.flowGraphMemMaxSize=65536";
    if (llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)options,
                          (int32_t)strlen(options), &engine) != LLMDD_SUCCESS) {
      printf("error init %s\n", last_error());
      return 1;
    }
    uint16_t port = (uint16_t)atoi(argv[4]);
    int32_t status = link_port(engine, strtoull(argv[3], NULL, 10), port, 3000);
    char why[256];
    snprintf(why, sizeof why, "%s", last_error());
    llmdd_engine_finalize(engine);
    printf("link %08x hello %d %d %s\n", (unsigned)status, stranger_hello(port, 1),
           stranger_hello(port, 2), why);
    return 0;
  }
  printf("error unknown action %s\n", action);
  return 2;
}

static pid_t start_other(const struct account *a, const char *const *rest, int *to, int *from) {
  char uid[16], gid[16];
  snprintf(uid, sizeof uid, "%u", (unsigned)a->uid);
  snprintf(gid, sizeof gid, "%u", (unsigned)a->gid);
  const char *args[8] = {uid, gid};
  int n = 2;
  for (int i = 0; rest[i] != NULL && n < 7; i++) args[n++] = rest[i];
  args[n] = NULL;
  return spawn_role("other", args, to, from);
}

static int run_other(const struct account *a, const char *const *rest, char *line, int cap) {
  int to, from;
  pid_t pid = start_other(a, rest, &to, &from);
  if (pid < 0) return -1;
  close(to);
  if (read_line(from, line, cap, 10000) < 0) line[0] = '\0';
  int status = wait_child(pid, 10000);
  close(from);
  return status;
}

/* impostor <cluster>: a process of this account squats the names engines
 * before issue 10 used (/dev/shm/llmdd.<cluster>.0 and .lock, the lock held);
 * prints "ready" and holds them until stdin closes. */
ROLE(impostor) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (argc < 1) return 2;
  char lock[64], pool[64];
  snprintf(lock, sizeof lock, "/llmdd.%s.lock", argv[0]);
  snprintf(pool, sizeof pool, "/llmdd.%s.0", argv[0]);
  int l = shm_open(lock, O_RDWR | O_CREAT | O_EXCL, 0600);
  int p = shm_open(pool, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (l < 0 || p < 0 || flock(l, LOCK_EX | LOCK_NB) != 0) return 1;
  char text[24];
  int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
  if (pwrite(l, text, (size_t)n, 0) != n) return 1;
  printf("ready\n");
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  shm_unlink(lock);
  shm_unlink(pool);
  return 0;
}

/* ---- attack 5: squatting a cluster id ---- */

/* Before: the names were global to the machine, so a process that made
 * /dev/shm/llmdd.<id>.lock (and held it) or .0 first kept every engine of that
 * cluster id from starting. */
TEST(security_an_impostor_of_the_same_account_cannot_squat_a_cluster_id) {
  uint64_t cluster = unique_cluster_id();
  char text[32], line[64];
  snprintf(text, sizeof text, "%llu", (unsigned long long)cluster);
  const char *args[] = {text, NULL};
  int to, from;
  pid_t pid = spawn_role("impostor", args, &to, &from);
  CHECK(pid > 0);
  if (EXPECT(read_line(from, line, sizeof line, 10000) > 0 && strcmp(line, "ready") == 0)) {
    uint64_t engine = 0;
    int32_t status = llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, NULL, 0, &engine);
    if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) fprintf(stderr, "    %s\n", last_error());
    if (status == LLMDD_SUCCESS) EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  }
  close(to);
  EXPECT(wait_child(pid, 10000) != -1);
  close(from);
}

static void another_account_cannot_take_a_cluster_id(const struct account *a) {
  uint64_t cluster = unique_cluster_id();
  char text[32], line[256], mine[64];
  snprintf(text, sizeof text, "%llu", (unsigned long long)cluster);
  /* It squats the old, machine-global names... */
  const char *squat[] = {"squat", text, NULL};
  int to, from;
  pid_t pid = start_other(a, squat, &to, &from);
  if (!EXPECT(pid > 0)) return;
  if (EXPECT(read_line(from, line, sizeof line, 10000) > 0 && strcmp(line, "ready") == 0)) {
    uint64_t engine = 0;
    int32_t status = llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, NULL, 0, &engine);
    if (!EXPECT_STATUS(status, LLMDD_SUCCESS)) fprintf(stderr, "    %s\n", last_error());
    if (status == LLMDD_SUCCESS) {
      /* ...and cannot put anything where the engine's names are now. */
      snprintf(mine, sizeof mine, "/dev/shm/llmdd-%u", (unsigned)geteuid());
      const char *write_in[] = {"write_in", mine, NULL};
      EXPECT(run_other(a, write_in, line, sizeof line) != -1 && strcmp(line, "denied") == 0);
      EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
    }
  }
  close(to);
  EXPECT(wait_child(pid, 10000) != -1);
  close(from);
}

TEST(security_another_account_cannot_take_a_cluster_id) {
  struct account a;
  char why[128];
  if (!account_make(&a, why, sizeof why)) {
    skip_loudly(__func__, why);
    return;
  }
  another_account_cannot_take_a_cluster_id(&a);
  account_remove(&a);
}

/* The one thing another account can still do: make a user's private directory
 * before that user does. Engines of that user then refuse to start, and say
 * who made it. (Before issue 10 there was no such directory, and the squatting
 * above worked instead.) */
static void squatted_directory_names_its_owner(const struct account *a) {
  char dir[64], line[512], text[32];
  snprintf(dir, sizeof dir, "/dev/shm/llmdd-%u", (unsigned)a->uid);
  if (!EXPECT(mkdir(dir, 0700) == 0)) return; /* made by root, for the other account */
  snprintf(text, sizeof text, "%llu", (unsigned long long)unique_cluster_id());
  const char *prompt[] = {"prompt", text, NULL};
  EXPECT(run_other(a, prompt, line, sizeof line) != -1);
  printf("    %s\n", line);
  char holder[32];
  snprintf(holder, sizeof holder, "belongs to uid %u", (unsigned)geteuid());
  EXPECT(strncmp(line, "status ffffffff", 15) == 0 && strstr(line, holder) != NULL);
}

TEST(security_a_private_directory_made_by_another_account_is_refused_naming_it) {
  struct account a;
  char why[128];
  if (!account_make(&a, why, sizeof why)) {
    skip_loudly(__func__, why);
    return;
  }
  squatted_directory_names_its_owner(&a);
  account_remove(&a);
}

/* ---- attack 1: the control port ---- */

/* Before: a HELLO naming the wrong cluster was answered with the right one;
 * after it, LOOKUPs by sequential id pinned caches and consumed keys. */
TEST(security_a_stranger_learns_nothing_before_authenticating) {
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, unique_cluster_id(),
                                   "ge.flowGraphMemMaxSize=65536", &port);
  CHECK(prompt != 0);
  int v1 = stranger_hello(port, 1), v2 = stranger_hello(port, 2);
  printf("    answer bytes to a stranger's HELLO: %d (version 1), %d (version 2)\n", v1, v2);
  EXPECT(v1 == 0 && v2 == 0);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

static void another_account_cannot_link(const struct account *a) {
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=65536", &port);
  if (!EXPECT(prompt != 0)) return;
  char text[32], ports[16], line[512];
  snprintf(text, sizeof text, "%llu", (unsigned long long)cluster);
  snprintf(ports, sizeof ports, "%u", (unsigned)port);
  const char *link[] = {"link", text, ports, NULL};
  EXPECT(run_other(a, link, line, sizeof line) != -1);
  printf("    the other account: %s\n", line);
  unsigned status = 0;
  int v1 = -1, v2 = -1;
  EXPECT(sscanf(line, "link %x hello %d %d", &status, &v1, &v2) == 3);
  EXPECT(status == (unsigned)LLMDD_LINK_FAILED && v1 == 0 && v2 == 0);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

TEST(security_another_account_cannot_link_or_learn_the_cluster_id) {
  struct account a;
  char why[128];
  if (!account_make(&a, why, sizeof why)) {
    skip_loudly(__func__, why);
    return;
  }
  another_account_cannot_link(&a);
  account_remove(&a);
}

/* Before: llm.listenIpInfo=0.0.0.0:... opened all of the above to the network,
 * without a word. */
TEST(security_listening_beyond_loopback_needs_a_secret) {
  uint64_t cluster = unique_cluster_id();
  const char *open_text = "llm.listenIpInfo=0.0.0.0:0\nge.flowGraphMemMaxSize=65536";
  uint64_t engine = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, (const uint8_t *)open_text,
                                  (int32_t)strlen(open_text), &engine),
                LLMDD_PARAM_INVALID);
  printf("    %s\n", last_error());
  EXPECT(strstr(last_error(), "llmdd.linkSecret") != NULL);
  const char *short_text = "llm.listenIpInfo=0.0.0.0:0\nllmdd.linkSecret=short";
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, (const uint8_t *)short_text,
                                  (int32_t)strlen(short_text), &engine),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "short") == NULL); /* a secret is never repeated */

  const char *with_secret = "llm.listenIpInfo=0.0.0.0:0\nge.flowGraphMemMaxSize=1048576\n"
                            "llmdd.linkSecret=correct horse battery staple";
  uint64_t prompt = open_role(LLMDD_ROLE_PROMPT, cluster, with_secret);
  CHECK(prompt != 0);
  uint16_t port = listen_port(prompt);
  uint64_t keys[3] = {cluster, 1, 0}, id, addr;
  CHECK_STATUS(llmdd_cache_allocate(prompt, 1, 4096, 1, 5, LLMDD_PLACEMENT_HOST, keys, 1, &id,
                                    &addr, 1),
               LLMDD_SUCCESS);
  fill_pattern((uint8_t *)(uintptr_t)addr, 4096, id, 0, 0);
  static const struct {
    const char *options;
    int32_t want;
  } decoders[] = {
      {"ge.flowGraphMemMaxSize=65536", LLMDD_LINK_FAILED},
      {"ge.flowGraphMemMaxSize=65536\nllmdd.linkSecret=wrong horse battery staple", LLMDD_LINK_FAILED},
      {"ge.flowGraphMemMaxSize=65536\nllmdd.linkSecret=correct horse battery staple", LLMDD_SUCCESS},
  };
  for (int i = 0; i < 3; i++) {
    uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), decoders[i].options);
    if (!EXPECT(decoder != 0)) continue;
    int32_t status = link_port(decoder, cluster, port, 3000);
    printf("    decoder %d: 0x%08x %s\n", i, (unsigned)status,
           status == LLMDD_SUCCESS ? "" : last_error());
    EXPECT_STATUS(status, decoders[i].want);
    if (status != LLMDD_SUCCESS) EXPECT(strstr(last_error(), "llmdd.linkSecret") != NULL);
    if (status == LLMDD_SUCCESS) {
      uint64_t dst, dst_addr;
      EXPECT_STATUS(llmdd_cache_allocate(decoder, 1, 4096, 1, 5, LLMDD_PLACEMENT_HOST, NULL, 0,
                                         &dst, &dst_addr, 1),
                    LLMDD_SUCCESS);
      EXPECT_STATUS(pull_row(decoder, dst, LLMDD_KEY_CACHE_KEY, cluster, 1, 0, 0,
                             LLMDD_WHOLE_ROW, 3000),
                    LLMDD_SUCCESS);
      EXPECT(find_mismatch((const uint8_t *)(uintptr_t)dst_addr, 4096, id, 0, 0) == UINT64_MAX);
    }
    EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  }
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

/* ---- attack 2: what a DECODER maps ---- */

/* truncate_and_pull: a PROMPT and a linked DECODER in this child; every pool
 * object this process can reach is truncated to 0 (before issue 10: by its
 * name in /dev/shm; now: through /proc/self/fd, which the seals refuse), then
 * the DECODER pulls. Prints "ok <truncated> <pull status>". Before, the pull
 * read past the object's end and the process died of SIGBUS. */
ROLE(truncate_and_pull) {
  (void)argc, (void)argv;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  uint64_t cluster = unique_cluster_id();
  char options[128];
  snprintf(options, sizeof options, "llm.listenIpInfo=127.0.0.1:0\nge.flowGraphMemMaxSize=%d",
           4 << 20);
  uint64_t prompt, decoder, id, addr, dst, dst_addr, keys[3] = {cluster, 1, 0};
  if (llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, (const uint8_t *)options,
                        (int32_t)strlen(options), &prompt) != LLMDD_SUCCESS ||
      llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL, 0, &decoder) !=
          LLMDD_SUCCESS ||
      llmdd_cache_allocate(prompt, 1, 2 << 20, 1, 5, LLMDD_PLACEMENT_HOST, keys, 1, &id, &addr,
                           1) != LLMDD_SUCCESS ||
      llmdd_cache_allocate(decoder, 1, 2 << 20, 1, 5, LLMDD_PLACEMENT_HOST, NULL, 0, &dst,
                           &dst_addr, 1) != LLMDD_SUCCESS ||
      link_port(decoder, cluster, listen_port(prompt), 3000) != LLMDD_SUCCESS) {
    printf("error %s\n", last_error());
    return 1;
  }
  memset((void *)(uintptr_t)addr, 0x42, 2 << 20);
  int truncated = 0;
  char name[64];
  snprintf(name, sizeof name, "/llmdd.%llu.0", (unsigned long long)cluster);
  int fd = shm_open(name, O_RDWR, 0);
  if (fd >= 0) {
    truncated += ftruncate(fd, 0) == 0;
    close(fd);
  }
  for (int n = 0; n < 1024; n++) {
    char link[64], target[128];
    snprintf(link, sizeof link, "/proc/self/fd/%d", n);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len <= 0) continue;
    target[len] = '\0';
    if (strstr(target, "memfd:") == NULL) continue;
    int rw = open(link, O_RDWR | O_CLOEXEC);
    if (rw < 0) continue;
    truncated += ftruncate(rw, 0) == 0;
    close(rw);
  }
  int32_t status = pull_row(decoder, dst, LLMDD_KEY_BY_ID, cluster, id, 0, 0, LLMDD_WHOLE_ROW, 3000);
  printf("ok %d %08x\n", truncated, (unsigned)status);
  llmdd_engine_finalize(decoder);
  llmdd_engine_finalize(prompt);
  return 0;
}

TEST(security_a_truncated_pool_cannot_kill_the_decoder) {
  char line[256];
  const char *args[] = {NULL};
  int status = run_role("truncate_and_pull", args, line, sizeof line, 20000);
  printf("    child: %s\n", line);
  if (!EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
    fprintf(stderr, "    the child %s %d\n",
            status != -1 && WIFSIGNALED(status) ? "was killed by signal" : "ended with",
            status != -1 && WIFSIGNALED(status) ? WTERMSIG(status) : status);
  int truncated = -1;
  unsigned pulled = 1;
  EXPECT(sscanf(line, "ok %d %x", &truncated, &pulled) == 2);
  EXPECT(truncated == 0 && pulled == (unsigned)LLMDD_SUCCESS);
}

/* old_prompt <cluster>: an impostor of this account that speaks the protocol
 * engines spoke before issue 10 (no authentication) and names a pool it made
 * itself in /dev/shm, full of 0x66. Before, a DECODER mapped that pool and
 * pulled the impostor's bytes as KV cache. Prints "ready <port>". */
struct impostor_server {
  int listener;
  uint64_t cluster;
  uint64_t object_id;
};

static void *impostor_answer(void *arg) {
  struct impostor_server *s = arg;
  struct pollfd p = {s->listener, POLLIN, 0};
  if (poll(&p, 1, 5000) <= 0) return NULL;
  int fd = accept(s->listener, NULL, NULL);
  if (fd < 0) return NULL;
  uint8_t in[64];
  ssize_t n = recv(fd, in, sizeof in, 0);
  if (n >= 24) {
    uint8_t out[56] = {0};
    uint32_t magic = 0x44444C4Cu, vt = 1u | 2u << 16, length = 32, devices = 1;
    uint64_t pool_bytes = 1 << 20;
    memcpy(out, &magic, 4);
    memcpy(out + 4, &vt, 4);
    memcpy(out + 8, &length, 4);
    memcpy(out + 16, in + 16, 8);
    memcpy(out + 28, &devices, 4);
    memcpy(out + 32, &s->cluster, 8);
    memcpy(out + 40, &pool_bytes, 8);
    memcpy(out + 48, &s->object_id, 8);
    send(fd, out, sizeof out, MSG_NOSIGNAL);
  }
  char c;
  while (recv(fd, &c, 1, 0) > 0) {
  }
  close(fd);
  return NULL;
}

TEST(security_a_decoder_never_maps_an_impostors_pool) {
  struct impostor_server s = {.cluster = unique_cluster_id()};
  char name[64];
  snprintf(name, sizeof name, "/llmdd.%llu.0", (unsigned long long)s.cluster);
  int pool = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  CHECK(pool >= 0);
  struct stat st;
  bool made = ftruncate(pool, 1 << 20) == 0 && fstat(pool, &st) == 0;
  s.object_id = (uint64_t)st.st_ino;
  close(pool);
  s.listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  made = made && bind(s.listener, (struct sockaddr *)&a, sizeof a) == 0 &&
         listen(s.listener, 4) == 0 && getsockname(s.listener, (struct sockaddr *)&a, &len) == 0;
  pthread_t thread;
  if (EXPECT(made) && EXPECT(pthread_create(&thread, NULL, impostor_answer, &s) == 0)) {
    uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL);
    if (EXPECT(decoder != 0)) {
      int32_t status = link_port(decoder, s.cluster, ntohs(a.sin_port), 3000);
      printf("    link to the impostor: 0x%08x %s\n", (unsigned)status, last_error());
      EXPECT_STATUS(status, LLMDD_LINK_FAILED);
      EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
    }
    shutdown(s.listener, SHUT_RDWR);
    pthread_join(thread, NULL);
  }
  close(s.listener);
  shm_unlink(name);
}

/* ---- SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 4231) ---- */

static void hex(const uint8_t *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static bool sha256_is(const void *data, size_t len, const char *want) {
  struct core_sha256 h;
  uint8_t d[32];
  char text[65];
  core_sha256_init(&h);
  core_sha256_update(&h, data, len);
  core_sha256_final(&h, d);
  hex(d, 32, text);
  if (strcmp(text, want) != 0) fprintf(stderr, "    sha256 %s, want %s\n", text, want);
  return strcmp(text, want) == 0;
}

static bool hmac_is(const void *key, size_t key_len, const void *data, size_t len,
                    const char *want) {
  uint8_t d[32];
  char text[65];
  struct core_bytes part = {data, len};
  core_hmac_sha256(key, key_len, &part, 1, d);
  hex(d, 32, text);
  if (strcmp(text, want) != 0) fprintf(stderr, "    hmac %s, want %s\n", text, want);
  return strcmp(text, want) == 0;
}

TEST(security_sha256_matches_fips_180_4) {
  EXPECT(sha256_is("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  EXPECT(sha256_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT(sha256_is(two, strlen(two),
                   "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
  /* One million 'a', fed in uneven pieces (the block buffer's edges). */
  struct core_sha256 h;
  uint8_t d[32], piece[997];
  char text[65];
  memset(piece, 'a', sizeof piece);
  core_sha256_init(&h);
  for (size_t left = 1000000; left > 0;) {
    size_t n = left < sizeof piece ? left : sizeof piece;
    core_sha256_update(&h, piece, n);
    left -= n;
  }
  core_sha256_final(&h, d);
  hex(d, 32, text);
  EXPECT(strcmp(text, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

TEST(security_hmac_sha256_matches_rfc_4231) {
  uint8_t k20[20], d50[50], k25[25], k131[131];
  memset(k20, 0x0b, sizeof k20);
  EXPECT(hmac_is(k20, 20, "Hi There", 8,
                 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  const char *what = "what do ya want for nothing?";
  EXPECT(hmac_is("Jefe", 4, what, strlen(what),
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
  memset(k20, 0xaa, sizeof k20);
  memset(d50, 0xdd, sizeof d50);
  EXPECT(hmac_is(k20, 20, d50, 50,
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"));
  for (int i = 0; i < 25; i++) k25[i] = (uint8_t)(i + 1);
  memset(d50, 0xcd, sizeof d50);
  EXPECT(hmac_is(k25, 25, d50, 50,
                 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"));
  memset(k131, 0xaa, sizeof k131);
  const char *big_key = "Test Using Larger Than Block-Size Key - Hash Key First";
  EXPECT(hmac_is(k131, 131, big_key, strlen(big_key),
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
  const char *big_both = "This is a test using a larger than block-size key and a larger than "
                         "block-size data. The key needs to be hashed before being used by the "
                         "HMAC algorithm.";
  EXPECT(hmac_is(k131, 131, big_both, strlen(big_both),
                 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"));
  /* Test case 5 (truncated to 128 bits): the first 16 bytes. */
  uint8_t d[32];
  char text[65];
  memset(k20, 0x0c, sizeof k20);
  struct core_bytes part = {"Test With Truncation", 20};
  core_hmac_sha256(k20, 20, &part, 1, d);
  hex(d, 16, text);
  EXPECT(strcmp(text, "a3b6167473100ee06e0c796c2955552b") == 0);
}

/* A cache larger than the memory the machine can give (MemAvailable +
 * SwapFree) is refused at allocate. Before, it was accepted (pages were
 * reserved lazily) and writing it ended with the out-of-memory killer or, on a
 * full /dev/shm, SIGBUS. Nothing is written here: the refusal is the test. */
TEST(security_a_cache_larger_than_the_machine_is_refused_at_allocate) {
  FILE *f = fopen("/proc/meminfo", "r");
  CHECK(f != NULL);
  char line[128];
  unsigned long long kib, total = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "MemTotal: %llu kB", &kib) == 1 || sscanf(line, "SwapTotal: %llu kB", &kib) == 1)
      total += kib;
  fclose(f);
  uint64_t bytes = (uint64_t)total * 1024 * 2; /* twice memory and swap together */
  char options[96];
  snprintf(options, sizeof options, "ge.flowGraphMemMaxSize=%llu", (unsigned long long)bytes);
  uint64_t prompt = open_role(LLMDD_ROLE_PROMPT, unique_cluster_id(), options);
  CHECK(prompt != 0);
  uint64_t id, addr;
  EXPECT_STATUS(llmdd_cache_allocate(prompt, 1, bytes / 2, 1, 0, LLMDD_PLACEMENT_HOST, NULL, 0,
                                     &id, &addr, 1),
                LLMDD_DEVICE_OUT_OF_MEMORY);
  printf("    %s\n", last_error());
  EXPECT(pool_used(prompt, 0) == 0);
  /* The pool is intact: a small cache still fits. */
  EXPECT_STATUS(llmdd_cache_allocate(prompt, 1, 4096, 1, 0, LLMDD_PLACEMENT_HOST, NULL, 0, &id,
                                     &addr, 1),
                LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}
