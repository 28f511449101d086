/* Engines: option parsing, info, pool usage, finalize and handle validation;
 * shared-memory pools and the ownership of cluster ids. */
#define _DEFAULT_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static int32_t init_with(const char *options, uint64_t *engine) {
  return llmdd_engine_init(LLMDD_ROLE_PROMPT, unique_cluster_id(), (const uint8_t *)options,
                           (int32_t)strlen(options), engine);
}

TEST(init_uses_defaults_without_options) {
  uint64_t engine = 0, info[5];
  CHECK_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, 42, NULL, 0, &engine), LLMDD_SUCCESS);
  CHECK(engine != 0);
  CHECK_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[0] == 1);
  EXPECT(info[1] == LLMDD_INFO_HOST_ACCESSIBLE);
  EXPECT(info[2] == (uint64_t)1 << 30);
  EXPECT(info[3] == LLMDD_ROLE_DECODER);
  EXPECT(info[4] == 0); /* not listening */
  uint64_t usage[2];
  CHECK_STATUS(llmdd_pool_usage(engine, 0, usage), LLMDD_SUCCESS);
  EXPECT(usage[0] == 0 && usage[1] == (uint64_t)1 << 30);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(init_parses_good_options) {
  static const struct {
    const char *text;
    uint64_t devices, pool_bytes;
  } cases[] = {
      {"ge.exec.deviceId=0", 1, (uint64_t)1 << 30},
      {"ge.exec.deviceId=0;1;2\nge.flowGraphMemMaxSize=1048576\n", 3, 1048576},
      {"\n  ge.exec.deviceId = 5 ; 3 \r\n\nllm.SyncKvCacheWaitTime=1000\r\n"
       "ge.flowGraphMemMaxSize= 4096 \n",
       2, 4096},
      {"llm.listenIpInfo=127.0.0.1:0\nsomething.else=a=b", 1, (uint64_t)1 << 30},
      {"ge.flowGraphMemMaxSize=100\nge.flowGraphMemMaxSize=200", 1, 200},
      {"ge.exec.deviceId=2147483647", 1, (uint64_t)1 << 30},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t engine = 0, info[5];
    if (!EXPECT_STATUS(init_with(cases[i].text, &engine), LLMDD_SUCCESS)) {
      fprintf(stderr, "    options: %s -> %s\n", cases[i].text, last_error());
      continue;
    }
    EXPECT_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
    EXPECT(info[0] == cases[i].devices);
    EXPECT(info[2] == cases[i].pool_bytes);
    EXPECT(info[3] == LLMDD_ROLE_PROMPT);
    EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  }
}

TEST(init_accepts_64_devices) {
  char text[512] = "ge.flowGraphMemMaxSize=65536\nge.exec.deviceId=";
  for (int i = 0; i < 64; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), i ? ";%d" : "%d", i * 2);
  uint64_t engine, info[5];
  CHECK_STATUS(init_with(text, &engine), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[0] == 64);
  EXPECT_STATUS(llmdd_pool_usage(engine, 63, info), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_pool_usage(engine, 64, info), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(init_rejects_malformed_options_naming_the_key) {
  char too_many[512] = "ge.exec.deviceId=0";
  for (int i = 1; i < 65; i++)
    snprintf(too_many + strlen(too_many), sizeof too_many - strlen(too_many), ";%d", i);
  static const struct {
    const char *text;
    const char *names;
  } cases[] = {
      {"ge.exec.deviceId=", "ge.exec.deviceId"},
      {"ge.exec.deviceId=a", "ge.exec.deviceId"},
      {"ge.exec.deviceId=-1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=+1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1.5", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0;;1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0;", "ge.exec.deviceId"},
      {"ge.exec.deviceId=;0", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0,1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1 2", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1;2;1", "twice"},
      {"ge.exec.deviceId=2147483648", "ge.exec.deviceId"},
      {"ge.exec.deviceId=99999999999999999999999", "ge.exec.deviceId"},
      {"ge.flowGraphMemMaxSize=", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=0", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=-5", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=abc", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=1e9", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=12 34", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=0x100", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=4611686018427387905", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=99999999999999999999999", "ge.flowGraphMemMaxSize"},
      {"ge.exec.deviceId=0\njust some words", "line 2"},
      {"=5", "line 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0] + 1; i++) {
    const char *text = i < sizeof cases / sizeof cases[0] ? cases[i].text : too_many;
    const char *names = i < sizeof cases / sizeof cases[0] ? cases[i].names : "more than 64";
    uint64_t engine = 0;
    if (!EXPECT_STATUS(init_with(text, &engine), LLMDD_PARAM_INVALID)) {
      llmdd_engine_finalize(engine);
    } else if (!EXPECT(strstr(last_error(), names) != NULL)) {
      fprintf(stderr, "    options '%s' gave message '%s'\n", text, last_error());
    }
  }
}

TEST(init_rejects_bad_arguments) {
  uint64_t engine;
  const uint8_t text[] = "ge.exec.deviceId=0";
  EXPECT_STATUS(llmdd_engine_init(0, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(4, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(-1, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, 0, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, text, -1, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, 3, &engine), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "options") != NULL);
}

TEST(init_reports_a_pool_that_cannot_be_reserved) {
  uint64_t engine;
  /* 4 EiB: within the parser's range, beyond any address space. */
  EXPECT_STATUS(init_with("ge.flowGraphMemMaxSize=4611686018427387904", &engine),
                LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(strstr(last_error(), "reserve") != NULL);
}

TEST(info_and_usage_reject_bad_arguments) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=1000");
  CHECK(engine != 0);
  uint64_t out[5];
  EXPECT_STATUS(llmdd_engine_info(engine, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, 0, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, -1, out), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, 2, out), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "device_index 2 is out of range [0, 2)") != NULL);
  EXPECT_STATUS(llmdd_pool_usage(engine, 1, out), LLMDD_SUCCESS);
  EXPECT(out[0] == 0 && out[1] == 1000);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(finalized_engine_handles_are_stale) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  uint64_t out[5], id;
  uint8_t buf[64];
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_ENGINE_FINALIZED);
  EXPECT(strstr(last_error(), "finalized") != NULL);
  EXPECT_STATUS(llmdd_pool_usage(engine, 0, out), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, 0, 1, NULL, 0, &id, out, 4),
                LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, 1), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_read(engine, 1, 0, 0, buf, 64, 0), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_copy(engine, 1, 2, 0, 0, 8, 0), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_link(engine, 5, (const uint8_t *)"127.0.0.1:1", 11, 0), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_unlink(engine, 5, 1, 0), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_pull(engine, 1, 0, 5, 1, 0, 0, LLMDD_WHOLE_ROW, 0),
                LLMDD_ENGINE_FINALIZED);

  /* The slot is reused by the next engine; the old handle stays stale. */
  uint64_t next = open_engine(NULL);
  CHECK(next != 0);
  EXPECT(next != engine);
  EXPECT_STATUS(llmdd_engine_info(next, out), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_finalize(next), LLMDD_SUCCESS);
}

TEST(garbage_and_foreign_engine_handles_are_invalid) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0 && engine < ((uint64_t)1 << 53));
  uint64_t job;
  CHECK_STATUS(llmdd_job_create(-1, NULL, &job), LLMDD_SUCCESS);
  uint64_t out[5], id;
  uint8_t buf[64];
  const uint64_t bad[] = {
      0,
      1,
      0xdeadbeef,
      0xffffffffffffffffull,
      engine + ((uint64_t)1 << 40), /* a generation not handed out yet */
      engine | ((uint64_t)1 << 60), /* beyond the 53 bits a handle uses */
      engine + 1000,                /* a slot not handed out yet */
      job,                          /* a job is not an engine */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t h = bad[i];
    EXPECT_STATUS(llmdd_engine_info(h, out), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_pool_usage(h, 0, out), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_allocate(h, 1, 64, 1, 0, 1, NULL, 0, &id, out, 4), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_deallocate(h, 1), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_key_remove(h, 1, 2, 3), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_read(h, 1, 0, 0, buf, 64, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_copy(h, 1, 2, 0, 0, 8, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_link(h, 5, (const uint8_t *)"127.0.0.1:1", 11, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_unlink(h, 5, 1, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_pull(h, 1, 0, 5, 1, 0, 0, LLMDD_WHOLE_ROW, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_engine_finalize(h), LLMDD_PARAM_INVALID);
  }
  EXPECT(strstr(last_error(), "not an engine") != NULL);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(engines_are_independent) {
  uint64_t a = open_engine("ge.flowGraphMemMaxSize=1048576");
  uint64_t b = open_engine("ge.flowGraphMemMaxSize=1048576");
  CHECK(a != 0 && b != 0 && a != b);
  uint64_t id_a, id_b;
  CHECK_STATUS(allocate_filled(a, 2, 1000, &id_a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(b, 1, 64, &id_b), LLMDD_SUCCESS);
  EXPECT(id_a == 1 && id_b == 1); /* ids count per engine */
  EXPECT(pool_used(a, 0) == 2 * 1024);
  EXPECT(pool_used(b, 0) == 64);
  EXPECT_STATUS(llmdd_engine_finalize(a), LLMDD_SUCCESS);
  uint8_t buf[64];
  EXPECT_STATUS(llmdd_cache_read(b, id_b, 0, 0, buf, 64, 0), LLMDD_SUCCESS);
  EXPECT(find_mismatch(buf, 64, id_b, 0, 0) == UINT64_MAX);
  EXPECT_STATUS(llmdd_engine_finalize(b), LLMDD_SUCCESS);
}

/* ---- llm.listenIpInfo ---- */

TEST(listen_ip_info_listens_and_reports_its_port) {
  uint16_t port = 0;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, unique_cluster_id(), NULL, &port);
  CHECK(prompt != 0 && port != 0);
  uint64_t info[5];
  CHECK_STATUS(llmdd_engine_info(prompt, info), LLMDD_SUCCESS);
  EXPECT(info[4] == port && info[3] == LLMDD_ROLE_PROMPT);

  /* The same address again, while the first engine listens there. */
  char text[64];
  snprintf(text, sizeof text, "llm.listenIpInfo=127.0.0.1:%u", (unsigned)port);
  uint64_t other = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, unique_cluster_id(), (const uint8_t *)text,
                                  (int32_t)strlen(text), &other),
                LLMDD_FAILED);
  EXPECT(strstr(last_error(), "cannot listen on 127.0.0.1:") != NULL);
  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);

  /* A given port is used as given; MIX engines listen too. */
  uint64_t mix = open_role(LLMDD_ROLE_MIX, unique_cluster_id(), text);
  CHECK(mix != 0);
  EXPECT(listen_port(mix) == port);
  EXPECT_STATUS(llmdd_engine_finalize(mix), LLMDD_SUCCESS);
}

TEST(listen_ip_info_rejects_malformed_addresses) {
  static const char *const bad[] = {
      "",          "127.0.0.1",       "127.0.0.1:",      ":80",           "127.0.0.1:65536",
      "127.0.0.1:-1", "127.0.0.1:8a", "localhost:80",   "1.2.3:80",      "1.2.3.4.5:80",
      "256.0.0.1:80", "127.0.0.1:123456", "[::1]:80",   "127.0.0.1 :80", "127.0.0.01:80",
      "127.0.0.1:80:80",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char text[128];
    snprintf(text, sizeof text, "llm.listenIpInfo=%s", bad[i]);
    uint64_t engine = 0;
    if (!EXPECT_STATUS(init_with(text, &engine), LLMDD_PARAM_INVALID)) {
      fprintf(stderr, "    accepted '%s'\n", bad[i]);
      llmdd_engine_finalize(engine);
    } else {
      EXPECT(strstr(last_error(), "llm.listenIpInfo") != NULL);
    }
  }
}

TEST(listen_ip_info_on_a_decoder_is_invalid) {
  const char *text = "llm.listenIpInfo=127.0.0.1:0";
  uint64_t engine = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, unique_cluster_id(), (const uint8_t *)text,
                                  (int32_t)strlen(text), &engine),
                LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "DECODER") != NULL);
}

/* ---- shared-memory pools and the ownership of cluster ids ---- */

static void object_names(uint64_t cluster, char pool0[64], char pool1[64], char lock[64]) {
  snprintf(pool0, 64, "/llmdd.%llu.0", (unsigned long long)cluster);
  snprintf(pool1, 64, "/llmdd.%llu.1", (unsigned long long)cluster);
  snprintf(lock, 64, "/llmdd.%llu.lock", (unsigned long long)cluster);
}

/* Pools are sealed memory files without names (ffi/host/shm.h): nothing in
 * /dev/shm to squat or to fill; a PROMPT's only names are its lock and socket
 * in the user's private directory, gone at finalize. */
TEST(prompt_pools_have_no_names_only_a_private_lock) {
  uint64_t cluster = unique_cluster_id();
  char pool0[64], pool1[64], lock[64];
  object_names(cluster, pool0, pool1, lock);
  uint16_t port;
  uint64_t prompt = open_listening(LLMDD_ROLE_PROMPT, cluster,
                                   "ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=1048576", &port);
  CHECK(prompt != 0);
  EXPECT(!shm_object_exists(pool0) && !shm_object_exists(pool1) && !shm_object_exists(lock));
  EXPECT(cluster_file_exists(cluster, "lock") && cluster_file_exists(cluster, "sock"));
  char dir[96];
  snprintf(dir, sizeof dir, "/dev/shm/llmdd-%u", (unsigned)geteuid());
  struct stat st;
  EXPECT(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
         (st.st_mode & 0777) == 0700);
  uint64_t id;
  CHECK_STATUS(allocate_filled(prompt, 2, 1000, &id), LLMDD_SUCCESS);

  /* DECODER pools are private: no lock, no socket. */
  uint64_t decoder_cluster = unique_cluster_id();
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, decoder_cluster, NULL);
  CHECK(decoder != 0);
  EXPECT(!cluster_file_exists(decoder_cluster, "lock"));
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);

  EXPECT_STATUS(llmdd_engine_finalize(prompt), LLMDD_SUCCESS);
  EXPECT(!cluster_file_exists(cluster, "lock") && !cluster_file_exists(cluster, "sock"));
}

TEST(a_cluster_id_has_one_live_owner) {
  uint64_t cluster = unique_cluster_id();
  const char *small = "ge.flowGraphMemMaxSize=65536";
  uint64_t owner = open_role(LLMDD_ROLE_PROMPT, cluster, small);
  CHECK(owner != 0);
  uint64_t engine = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_PROMPT, cluster, (const uint8_t *)small,
                                  (int32_t)strlen(small), &engine),
                LLMDD_FAILED);
  EXPECT(strstr(last_error(), "owned by a live engine") != NULL);
  char holder[48];
  snprintf(holder, sizeof holder, "uid %u, pid %d", (unsigned)geteuid(), (int)getpid());
  if (!EXPECT(strstr(last_error(), holder) != NULL)) fprintf(stderr, "    %s\n", last_error());
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, cluster, NULL, 0, &engine), LLMDD_FAILED);
  /* A DECODER owns no shared memory, so it does not compete for the id. */
  uint64_t decoder = open_role(LLMDD_ROLE_DECODER, cluster, small);
  EXPECT(decoder != 0);
  EXPECT_STATUS(llmdd_engine_finalize(decoder), LLMDD_SUCCESS);
  /* The failed attempts left the owner's files alone. */
  uint64_t id;
  EXPECT_STATUS(allocate_filled(owner, 1, 64, &id), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(owner), LLMDD_SUCCESS);
  uint64_t next = open_role(LLMDD_ROLE_MIX, cluster, small);
  EXPECT(next != 0);
  EXPECT_STATUS(llmdd_engine_finalize(next), LLMDD_SUCCESS);
}

/* Makes an empty file (or socket path stand-in) in the private directory. */
static bool make_cluster_file(uint64_t cluster, const char *suffix) {
  char path[96];
  cluster_file_path(path, cluster, suffix);
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  close(fd);
  return true;
}

TEST(files_left_by_a_dead_owner_are_replaced) {
  uint64_t cluster = unique_cluster_id();
  /* What a crashed owner leaves: its lock, unlocked, and its socket's name. */
  uint64_t warm = open_role(LLMDD_ROLE_DECODER, unique_cluster_id(), NULL); /* makes the directory */
  CHECK(warm != 0);
  EXPECT_STATUS(llmdd_engine_finalize(warm), LLMDD_SUCCESS);
  uint16_t port;
  uint64_t first = open_listening(LLMDD_ROLE_PROMPT, unique_cluster_id(), NULL, &port);
  CHECK(first != 0);
  EXPECT_STATUS(llmdd_engine_finalize(first), LLMDD_SUCCESS);
  CHECK(make_cluster_file(cluster, "lock") && make_cluster_file(cluster, "sock"));

  uint64_t engine = open_listening(LLMDD_ROLE_PROMPT, cluster, "ge.flowGraphMemMaxSize=1048576",
                                   &port);
  CHECK(engine != 0);
  char path[96];
  cluster_file_path(path, cluster, "sock");
  struct stat st;
  EXPECT(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)); /* a live socket replaced the file */
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  EXPECT(!cluster_file_exists(cluster, "lock") && !cluster_file_exists(cluster, "sock"));
}

/* Makes and locks a cluster's lock file, as a live owner holds it. Another
 * process's sweep (tests run side by side in CI) may remove the file between
 * its making and its locking: then it is made again. The fd, or -1. */
static int hold_cluster_lock(uint64_t cluster) {
  char path[96];
  cluster_file_path(path, cluster, "lock");
  for (int tries = 0; tries < 1000; tries++) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    struct stat held, named;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &held) == 0 && stat(path, &named) == 0 &&
        held.st_ino == named.st_ino)
      return fd;
    close(fd);
    usleep(1000);
  }
  return -1;
}

TEST(starting_a_prompt_sweeps_what_dead_owners_left) {
  /* A dead owner of another cluster id: its lock, nobody holding it. */
  uint64_t dead = unique_cluster_id(), busy = unique_cluster_id();
  uint64_t warm = open_role(LLMDD_ROLE_PROMPT, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(warm != 0); /* makes the directory */
  EXPECT_STATUS(llmdd_engine_finalize(warm), LLMDD_SUCCESS);
  /* Its socket first: a sweep (of any process) goes by lock files and takes the
   * socket with the lock, so a socket made after its lock was swept would stay. */
  CHECK(make_cluster_file(dead, "sock") && make_cluster_file(dead, "lock"));
  /* A live owner in another process holds its lock: this fd stands for it. It
   * is locked before its socket is made, so no other sweep takes either. */
  char busy_lock[96];
  cluster_file_path(busy_lock, busy, "lock");
  int held = hold_cluster_lock(busy);
  CHECK(held >= 0 && make_cluster_file(busy, "sock"));

  uint64_t engine = open_role(LLMDD_ROLE_PROMPT, unique_cluster_id(), "ge.flowGraphMemMaxSize=65536");
  CHECK(engine != 0);
  /* Gone: by this engine's sweep, or by the sweep of another process (tests
   * run side by side in CI) that held the lock at that moment, which this
   * sweep then leaves alone. Alone, nothing but this engine removes them. */
  double until = now_ms() + 2000;
  while ((cluster_file_exists(dead, "lock") || cluster_file_exists(dead, "sock")) && now_ms() < until)
    sleep_ms(1);
  EXPECT(!cluster_file_exists(dead, "lock") && !cluster_file_exists(dead, "sock"));
  EXPECT(cluster_file_exists(busy, "lock") && cluster_file_exists(busy, "sock"));
  /* The live owner's cluster id stays taken. */
  uint64_t other = 0;
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, busy, NULL, 0, &other), LLMDD_FAILED);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  char busy_sock[96];
  cluster_file_path(busy_sock, busy, "sock");
  unlink(busy_sock);
  unlink(busy_lock);
  close(held);
}

/* exit_without_finalize <cluster id>: a PROMPT with a cache, then exit(0). */
ROLE(exit_without_finalize) {
  if (argc < 1) return 2;
  uint64_t engine, id, addr;
  const char *options = "ge.flowGraphMemMaxSize=1048576";
  if (llmdd_engine_init(LLMDD_ROLE_PROMPT, strtoull(argv[0], NULL, 10), (const uint8_t *)options,
                        (int32_t)strlen(options), &engine) != LLMDD_SUCCESS ||
      llmdd_cache_allocate(engine, 1, 4096, 1, 0, 1, NULL, 0, &id, &addr, 1) != LLMDD_SUCCESS)
    return 1;
  memset((void *)(uintptr_t)addr, 1, 4096);
  if (write(1, "ready\n", 6) != 6) return 1;
  char c;
  while (read(0, &c, 1) > 0) {
  }
  exit(0);
}

TEST(exit_without_finalize_removes_the_names) {
  uint64_t cluster = unique_cluster_id();
  char text[32], line[16];
  snprintf(text, sizeof text, "%llu", (unsigned long long)cluster);
  const char *args[] = {text, NULL};
  int to, from;
  pid_t pid = spawn_role("exit_without_finalize", args, &to, &from);
  CHECK(pid > 0);
  EXPECT(read_line(from, line, sizeof line, 20000) > 0 && strcmp(line, "ready") == 0);
  EXPECT(cluster_file_exists(cluster, "lock"));
  close(to);
  int status = wait_child(pid, 20000);
  close(from);
  EXPECT(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT(!cluster_file_exists(cluster, "lock"));
}
