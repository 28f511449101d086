/* Crash safety across processes: a PROMPT or a DECODER in a child process is
 * killed with SIGKILL at a chosen moment, and the engine in this process must
 * neither hang, crash nor lose memory. Children are this binary started again
 * with --role (a fresh exec: no threads, locks or sanitizer state inherited).
 * Every test here is named crash_*, so `llmdd_tests crash_` runs them alone. */
#define _GNU_SOURCE 1
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

#define LAYOUT 0xC0FFEEull
#define MODEL 3
#define LARGE (256 * MiB)

/* ---- the child roles ---- */

static void say(const char *fmt, unsigned long long a, unsigned long long b) {
  char line[128];
  int n = snprintf(line, sizeof line, fmt, a, b);
  if (write(1, line, (size_t)n) != n) _exit(4);
}

/* A child ends with the test process even if that one dies without killing it. */
static void die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }

/* prompt <cluster id> <bytes>: a listening PROMPT with one cache of `bytes`
 * (one tensor, one row, key (cluster, 1, MODEL)), filled. Prints
 * "ready <port> <cache id>", then serves until its stdin closes. */
ROLE(prompt) {
  die_with_parent();
  if (argc < 2) return 2;
  uint64_t cluster = strtoull(argv[0], NULL, 10), bytes = strtoull(argv[1], NULL, 10);
  char options[128];
  snprintf(options, sizeof options, "llm.listenIpInfo=127.0.0.1:0\nge.flowGraphMemMaxSize=%llu",
           (unsigned long long)(bytes + MiB));
  uint64_t engine, id, addr, keys[3] = {cluster, 1, MODEL};
  if (llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, (const uint8_t *)options,
                        (int32_t)strlen(options), &engine) != LLMDD_SUCCESS ||
      llmdd_cache_allocate(engine, 1, bytes, 1, LAYOUT, LLMDD_PLACEMENT_DEVICE, keys, 1, &id,
                           &addr, 1) != LLMDD_SUCCESS) {
    fprintf(stderr, "    prompt child: %s\n", last_error());
    say("error %llu %llu\n", 0, 0);
    return 1;
  }
  if (bytes <= MiB) fill_pattern((uint8_t *)(uintptr_t)addr, bytes, id, 0, 0);
  else memset((void *)(uintptr_t)addr, 0x5A, bytes);
  say("ready %llu %llu\n", listen_port(engine), id);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  return llmdd_engine_finalize(engine) == LLMDD_SUCCESS ? 0 : 1;
}

/* decoder <prompt cluster> <port> <bytes> <remote cache id>: links, prints
 * "linked", then pulls that cache by id again and again until killed (or its
 * stdin closes). */
ROLE(decoder) {
  die_with_parent();
  if (argc < 4) return 2;
  uint64_t cluster = strtoull(argv[0], NULL, 10), bytes = strtoull(argv[2], NULL, 10);
  uint16_t port = (uint16_t)strtoul(argv[1], NULL, 10);
  uint64_t remote = strtoull(argv[3], NULL, 10);
  char options[64];
  snprintf(options, sizeof options, "ge.flowGraphMemMaxSize=%llu", (unsigned long long)(bytes + MiB));
  uint64_t engine, id, addr;
  if (llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)options,
                        (int32_t)strlen(options), &engine) != LLMDD_SUCCESS ||
      link_port(engine, cluster, port, 5000) != LLMDD_SUCCESS ||
      llmdd_cache_allocate(engine, 1, bytes, 1, LAYOUT, LLMDD_PLACEMENT_DEVICE, NULL, 0, &id, &addr,
                           1) != LLMDD_SUCCESS) {
    fprintf(stderr, "    decoder child: %s\n", last_error());
    say("error %llu %llu\n", 0, 0);
    return 1;
  }
  say("linked %llu %llu\n", 0, 0);
  for (double end = now_ms() + 60000; now_ms() < end;) {
    struct pollfd in = {0, POLLIN, 0};
    if (poll(&in, 1, 0) > 0) break; /* the parent closed stdin */
    int32_t status = llmdd_cache_pull(engine, id, LLMDD_KEY_BY_ID, cluster, remote, 0, 0,
                                      LLMDD_WHOLE_ROW, 0);
    if (status != LLMDD_SUCCESS && status != LLMDD_KV_CACHE_NOT_EXIST) break;
  }
  return llmdd_engine_finalize(engine) == LLMDD_SUCCESS ? 0 : 1;
}

/* ---- helpers ---- */

struct child {
  pid_t pid;
  int to, from;
  uint16_t port;
  uint64_t cache;
};

static bool start_prompt(struct child *c, uint64_t cluster, uint64_t bytes) {
  char cluster_text[32], bytes_text[32], line[128];
  snprintf(cluster_text, sizeof cluster_text, "%llu", (unsigned long long)cluster);
  snprintf(bytes_text, sizeof bytes_text, "%llu", (unsigned long long)bytes);
  const char *args[] = {cluster_text, bytes_text, NULL};
  c->pid = spawn_role("prompt", args, &c->to, &c->from);
  if (c->pid < 0) return false;
  unsigned long long port = 0, cache = 0;
  if (!EXPECT(read_line(c->from, line, sizeof line, 20000) > 0 &&
              sscanf(line, "ready %llu %llu", &port, &cache) == 2)) {
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    return false;
  }
  c->port = (uint16_t)port;
  c->cache = cache;
  return true;
}

static void kill_child(struct child *c) {
  kill(c->pid, SIGKILL);
  int status = wait_child(c->pid, 10000);
  EXPECT(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  close(c->to);
  close(c->from);
}

/* Asks a child to finish (closes its stdin) and checks it exited cleanly (which
 * includes its own sanitizer and leak checks). */
static void end_child(struct child *c) {
  close(c->to);
  int status = wait_child(c->pid, 20000);
  if (!EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
    fprintf(stderr, "    child %d ended with wait status 0x%x\n", (int)c->pid, status);
  close(c->from);
}

/* Takes over a dead PROMPT's cluster id and gives it up again, which removes the
 * shared memory it left. */
static void reclaim(uint64_t cluster) {
  uint64_t engine = open_role(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=65536");
  if (engine) EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

/* ---- the tests ---- */

TEST(crash_prompt_killed_before_a_pull) {
  uint64_t cluster = unique_cluster_id();
  struct child c;
  CHECK(start_prompt(&c, cluster, 4096));
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(decoder != 0);
  CHECK_STATUS(link_port(decoder, cluster, c.port, 5000), LLMDD_SUCCESS);
  uint64_t id, addr;
  CHECK_STATUS(llmdd_cache_allocate(decoder, 1, 4096, 1, LAYOUT, 1, NULL, 0, &id, &addr, 1),
               LLMDD_SUCCESS);
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID, cluster, c.cache, 0, 0, LLMDD_WHOLE_ROW, 5000),
                LLMDD_SUCCESS);
  EXPECT(find_mismatch((const uint8_t *)(uintptr_t)addr, 4096, c.cache, 0, 0) == UINT64_MAX);

  /* A repeat pull from the answer kept: no socket in its way. */
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID | LLMDD_KEY_KEPT_ONLY, cluster, c.cache, 0, 0,
                         LLMDD_WHOLE_ROW, 5000),
                LLMDD_SUCCESS);

  kill_child(&c);
  double start = now_ms();
  /* The kept answer does not make a dead PROMPT look alive (its live lock). */
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID | LLMDD_KEY_KEPT_ONLY, cluster, c.cache, 0, 0,
                         LLMDD_WHOLE_ROW, 5000),
                LLMDD_LINK_FAILED);
  EXPECT(strstr(last_error(), "went away") != NULL);
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_CACHE_KEY, cluster, 1, MODEL, 0, LLMDD_WHOLE_ROW, 5000),
                LLMDD_LINK_FAILED);
  double elapsed = now_ms() - start;
  printf("    pull from a dead PROMPT: %.2f ms: %s\n", elapsed, last_error());
  EXPECT(elapsed < 100);
  /* The dead link stays, and keeps saying so, until unlinked. */
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID, cluster, c.cache, 0, 0, 64, 5000),
                LLMDD_LINK_FAILED);
  EXPECT_STATUS(llmdd_unlink(decoder, cluster, 0, 0), LLMDD_UNLINK_FAILED);
  EXPECT(strstr(last_error(), "dropped all the same") != NULL);
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID, cluster, c.cache, 0, 0, 64, 5000),
                LLMDD_NOT_YET_LINK);
  EXPECT_STATUS(link_port(decoder, cluster, c.port, 5000), LLMDD_LINK_FAILED);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  reclaim(cluster);
}

struct pull_thread {
  uint64_t engine, cache, cluster, remote, job;
  atomic_bool started;
  int32_t status;
  double ended_at;
  char message[256];
};

static void *pull_main(void *arg) {
  struct pull_thread *t = arg;
  atomic_store(&t->started, true);
  t->status = llmdd_cache_pull(t->engine, t->cache, LLMDD_KEY_BY_ID, t->cluster, t->remote, 0, 0,
                               LLMDD_WHOLE_ROW, t->job);
  t->ended_at = now_ms();
  snprintf(t->message, sizeof t->message, "%s", last_error());
  return NULL;
}

/* The same pull, as blocks: the PROMPT's row cut into 64 blocks (one call). */
static void *pull_blocks_main(void *arg) {
  struct pull_thread *t = arg;
  uint64_t pairs[2 * 64];
  for (int i = 0; i < 64; i++) pairs[2 * i] = pairs[2 * i + 1] = (uint64_t)i;
  atomic_store(&t->started, true);
  t->status = llmdd_cache_pull_blocks(t->engine, t->cache, LLMDD_KEY_BY_ID, t->cluster, t->remote,
                                      0, pairs, 64, 0, 0, 0, t->job);
  t->ended_at = now_ms();
  snprintf(t->message, sizeof t->message, "%s", last_error());
  return NULL;
}

/* A DECODER linked to a PROMPT child holding a LARGE cache; `main` pulls it
 * (rows: the destination's batch, 1 for a row, 64 for blocks) on a thread, and
 * the child is killed 5 ms in: the pull must end LINK_FAILED within a second. */
struct killed_pull {
  struct child child;
  uint64_t cluster, decoder, cache;
};

static bool kill_prompt_during(struct killed_pull *k, void *(*main)(void *), uint64_t rows,
                               const char *what) {
  k->cluster = unique_cluster_id();
  if (!EXPECT(start_prompt(&k->child, k->cluster, LARGE))) return false;
  char options[64];
  snprintf(options, sizeof options, "ge.flowGraphMemMaxSize=%llu", (unsigned long long)(LARGE + MiB));
  k->decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), options);
  uint64_t addr, job;
  if (!EXPECT(k->decoder != 0) ||
      !EXPECT_STATUS(link_port(k->decoder, k->cluster, k->child.port, 5000), LLMDD_SUCCESS) ||
      !EXPECT_STATUS(llmdd_cache_allocate(k->decoder, 1, LARGE, rows, LAYOUT, 1, NULL, 0, &k->cache,
                                          &addr, 1),
                     LLMDD_SUCCESS) ||
      !EXPECT_STATUS(llmdd_job_create(20000, NULL, &job), LLMDD_SUCCESS))
    return false;
  struct pull_thread t = {.engine = k->decoder, .cache = k->cache, .cluster = k->cluster,
                          .remote = k->child.cache, .job = job};
  pthread_t thread;
  pthread_create(&thread, NULL, main, &t);
  while (!atomic_load(&t.started)) sleep_ms(0.1);
  sleep_ms(5);
  double killed_at = now_ms();
  kill_child(&k->child);
  pthread_join(thread, NULL);
  printf("    the %s ended %.2f ms after the kill: %s\n", what, t.ended_at - killed_at, t.message);
  EXPECT_STATUS(t.status, LLMDD_LINK_FAILED);
  EXPECT(t.ended_at - killed_at < 1000);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  return true;
}

static void killed_pull_end(struct killed_pull *k) {
  EXPECT_STATUS(llmdd_unlink(k->decoder, k->cluster, 1, 0), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(k->decoder), LLMDD_SUCCESS);
  reclaim(k->cluster);
}

TEST(crash_prompt_killed_during_a_large_block_pull) {
  struct killed_pull k;
  CHECK(kill_prompt_during(&k, pull_blocks_main, 64, "block pull"));
  uint64_t pair[2] = {0, 0};
  EXPECT_STATUS(llmdd_cache_pull_blocks(k.decoder, k.cache, LLMDD_KEY_BY_ID, k.cluster, k.child.cache,
                                        0, pair, 1, 0, 0, 0, 0),
                LLMDD_LINK_FAILED);
  killed_pull_end(&k);
}

TEST(crash_prompt_killed_during_a_large_pull) {
  struct killed_pull k;
  CHECK(kill_prompt_during(&k, pull_main, 1, "pull"));
  /* The mapping of the dead PROMPT's pool is still valid memory (no SIGBUS). */
  EXPECT_STATUS(pull_row(k.decoder, k.cache, LLMDD_KEY_BY_ID, k.cluster, k.child.cache, 0, 0, 64,
                         5000),
                LLMDD_LINK_FAILED);
  killed_pull_end(&k);
}

TEST(crash_decoder_killed_during_a_pull_leaves_the_prompt_serving) {
  uint64_t cluster = unique_cluster_id();
  uint16_t port;
  char options[64];
  snprintf(options, sizeof options, "ge.flowGraphMemMaxSize=%llu", (unsigned long long)(LARGE + MiB));
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster, options, &port);
  CHECK(prompt != 0);
  uint64_t big, big_addr, small, small_addr, key[3] = {cluster, 42, MODEL};
  CHECK_STATUS(llmdd_cache_allocate(prompt, 1, LARGE, 1, LAYOUT, 1, NULL, 0, &big, &big_addr, 1),
               LLMDD_SUCCESS);
  memset((void *)(uintptr_t)big_addr, 0x5A, LARGE);
  CHECK_STATUS(llmdd_cache_allocate(prompt, 1, 4096, 1, LAYOUT, 1, key, 1, &small, &small_addr, 1),
               LLMDD_SUCCESS);
  fill_pattern((uint8_t *)(uintptr_t)small_addr, 4096, small, 0, 0);
  EXPECT_STATUS(llmdd_cache_deallocate(prompt, small), LLMDD_SUCCESS); /* the key holds it */

  char cluster_text[32], port_text[16], bytes_text[32], cache_text[32], line[64];
  snprintf(cluster_text, sizeof cluster_text, "%llu", (unsigned long long)cluster);
  snprintf(port_text, sizeof port_text, "%u", (unsigned)port);
  snprintf(bytes_text, sizeof bytes_text, "%llu", (unsigned long long)LARGE);
  snprintf(cache_text, sizeof cache_text, "%llu", (unsigned long long)big);
  const char *args[] = {cluster_text, port_text, bytes_text, cache_text, NULL};
  struct child d;
  d.pid = spawn_role("decoder", args, &d.to, &d.from);
  CHECK(d.pid > 0);
  CHECK(read_line(d.from, line, sizeof line, 20000) > 0 && strncmp(line, "linked", 6) == 0);
  sleep_ms(30); /* a pull is running: the child pulls without pause */
  EXPECT_STATUS(llmdd_cache_deallocate(prompt, big), LLMDD_SUCCESS);
  uint64_t held = pool_used(prompt, 0);
  printf("    the big cache was %s when the DECODER was killed\n",
         held > 4096 ? "pinned by its pull" : "between pulls");
  kill_child(&d);
  /* Its connection closed: the PROMPT dropped its pin, and only the key's cache
   * is left. */
  EXPECT(wait_pool_used(prompt, 0, 4096, 2000));

  /* The PROMPT serves the next DECODER as before. */
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(decoder != 0);
  CHECK_STATUS(link_port(decoder, cluster, port, 5000), LLMDD_SUCCESS);
  uint64_t id, addr;
  CHECK_STATUS(llmdd_cache_allocate(decoder, 1, 4096, 1, LAYOUT, 1, NULL, 0, &id, &addr, 1),
               LLMDD_SUCCESS);
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_CACHE_KEY, cluster, 42, MODEL, 0, LLMDD_WHOLE_ROW, 5000),
                LLMDD_SUCCESS);
  EXPECT(find_mismatch((const uint8_t *)(uintptr_t)addr, 4096, small, 0, 0) == UINT64_MAX);
  EXPECT(wait_pool_used(prompt, 0, 0, 2000)); /* the pull consumed the last key */
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
}

TEST(crash_restart_with_the_same_cluster_id) {
  uint64_t cluster = unique_cluster_id();
  struct child c;
  CHECK(start_prompt(&c, cluster, 4096));
  /* Owned by a live engine in another process. */
  uint64_t engine = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, NULL, 0, &engine), LLMDD_FAILED);
  EXPECT(strstr(last_error(), "owned by a live engine") != NULL);
  kill_child(&c);
  /* What the crash left (unless an engine starting in another process swept it). */
  printf("    after the crash: %s\n",
         cluster_file_exists(cluster, "lock") ? "its lock file is left" : "swept");

  CHECK(start_prompt(&c, cluster, 4096));
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(decoder != 0);
  CHECK_STATUS(link_port(decoder, cluster, c.port, 5000), LLMDD_SUCCESS);
  uint64_t id, addr;
  CHECK_STATUS(llmdd_cache_allocate(decoder, 1, 4096, 1, LAYOUT, 1, NULL, 0, &id, &addr, 1),
               LLMDD_SUCCESS);
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_CACHE_KEY, cluster, 1, MODEL, 0, LLMDD_WHOLE_ROW, 5000),
                LLMDD_SUCCESS);
  EXPECT(find_mismatch((const uint8_t *)(uintptr_t)addr, 4096, c.cache, 0, 0) == UINT64_MAX);
  end_child(&c);
  EXPECT(!cluster_file_exists(cluster, "lock") && !cluster_file_exists(cluster, "sock"));
  /* The restarted PROMPT finalized: the link notices. */
  EXPECT_STATUS(pull_row(decoder, id, LLMDD_KEY_BY_ID, cluster, c.cache, 0, 0, 64, 5000),
                LLMDD_LINK_FAILED);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
}
