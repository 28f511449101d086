#define _GNU_SOURCE 1 /* pipe2 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

uint64_t unique_cluster_id(void) {
  static atomic_uint counter;
  return (uint64_t)getpid() << 24 | (atomic_fetch_add(&counter, 1) + 1);
}

uint64_t open_role(int32_t role, uint64_t cluster_id, const char *options) {
  uint64_t engine = 0;
  int32_t len = options ? (int32_t)strlen(options) : 0;
  if (!EXPECT_STATUS(llmdd_engine_init(role, cluster_id, (const uint8_t *)options, len, &engine),
                     LLMDD_SUCCESS)) {
    fprintf(stderr, "    init: %s\n", last_error());
    return 0;
  }
  return engine;
}

uint64_t open_engine(const char *options) {
  return open_role(LLMDD_ROLE_MIX, unique_cluster_id(), options);
}

uint16_t listen_port(uint64_t engine) {
  uint64_t info[5] = {0};
  if (llmdd_engine_info(engine, info) != LLMDD_SUCCESS) return 0;
  return (uint16_t)info[4];
}

uint64_t open_listening(int32_t role, uint64_t cluster_id, const char *options, uint16_t *port) {
  char text[1024];
  snprintf(text, sizeof text, "llm.listenIpInfo=127.0.0.1:0\n%s", options ? options : "");
  uint64_t engine = open_role(role, cluster_id, text);
  *port = engine ? listen_port(engine) : 0;
  if (engine != 0) EXPECT(*port != 0);
  return engine;
}

int32_t link_port(uint64_t engine, uint64_t cluster_id, uint16_t port, int32_t timeout_ms) {
  char address[32];
  snprintf(address, sizeof address, "127.0.0.1:%u", (unsigned)port);
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(timeout_ms, NULL, &job), LLMDD_SUCCESS);
  int32_t status = llmdd_link(engine, cluster_id, (const uint8_t *)address,
                              (int32_t)strlen(address), job);
  llmdd_job_release(job);
  return status;
}

int32_t pull_row(uint64_t engine, uint64_t cache_id, int32_t key_kind, uint64_t k0, uint64_t k1,
                 uint64_t k2, int32_t dst_row, uint64_t size, int32_t timeout_ms) {
  uint64_t job = 0;
  EXPECT_STATUS(llmdd_job_create(timeout_ms, NULL, &job), LLMDD_SUCCESS);
  int32_t status = llmdd_cache_pull(engine, cache_id, key_kind, k0, k1, k2, dst_row, size, job);
  llmdd_job_release(job);
  return status;
}

bool wait_pool_used(uint64_t engine, int32_t device_index, uint64_t want, double timeout_ms) {
  for (double end = now_ms() + timeout_ms;; sleep_ms(0.5)) {
    if (pool_used(engine, device_index) == want) return true;
    if (now_ms() > end) return false;
  }
}

bool shm_object_exists(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm%s", name);
  return access(path, F_OK) == 0;
}

void cluster_file_path(char out[96], uint64_t cluster, const char *suffix) {
  snprintf(out, 96, "/dev/shm/llmdd-%u/%llu.%s", (unsigned)geteuid(), (unsigned long long)cluster,
           suffix);
}

bool cluster_file_exists(uint64_t cluster, const char *suffix) {
  char path[96];
  cluster_file_path(path, cluster, suffix);
  return access(path, F_OK) == 0;
}

pid_t spawn_role(const char *role, const char *const *args, int *to_child, int *from_child) {
  int in[2], out[2];
  if (!EXPECT(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0)) return -1;
  char *argv[16];
  int argc = 0;
  argv[argc++] = "llmdd_tests";
  argv[argc++] = "--role";
  argv[argc++] = (char *)role;
  for (int i = 0; args[i] != NULL && argc < 15; i++) argv[argc++] = (char *)args[i];
  argv[argc] = NULL;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  /* dup2 clears close-on-exec on the copies; everything else this process has
   * open (sockets, shared memory, locks) stays out of the child. */
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/proc/self/exe", &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  if (!EXPECT(rc == 0)) {
    close(in[1]);
    close(out[0]);
    return -1;
  }
  *to_child = in[1];
  *from_child = out[0];
  return pid;
}

int read_line(int fd, char *buf, int cap, double timeout_ms) {
  int len = 0;
  double end = now_ms() + timeout_ms;
  while (len < cap - 1) {
    int left = (int)(end - now_ms());
    struct pollfd p = {fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return -1;
    ssize_t n = read(fd, &buf[len], 1);
    if (n <= 0) return -1;
    if (buf[len] == '\n') break;
    len++;
  }
  buf[len] = '\0';
  return len;
}

int wait_child(pid_t pid, double timeout_ms) {
  int status;
  for (double end = now_ms() + timeout_ms;; sleep_ms(1)) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    if (now_ms() > end) break;
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

uint64_t pool_used(uint64_t engine, int32_t device_index) {
  uint64_t out[2];
  if (llmdd_pool_usage(engine, device_index, out) != LLMDD_SUCCESS) return UINT64_MAX;
  return out[0];
}

const char *last_error(void) {
  static _Thread_local char buf[1024];
  llmdd_last_error((uint8_t *)buf, sizeof buf);
  return buf;
}

const char *job_message(uint64_t job) {
  static _Thread_local char buf[1024];
  if (llmdd_job_message(job, (uint8_t *)buf, sizeof buf) < 0) return "<unknown job>";
  return buf;
}

double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (time_t)(ms / 1000) * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

void fill_pattern(uint8_t *p, uint64_t n, uint64_t id, int32_t device, int32_t tensor) {
  for (uint64_t i = 0; i < n; i++) p[i] = pattern_byte(id, device, tensor, i);
}

uint64_t find_mismatch(const uint8_t *p, uint64_t n, uint64_t id, int32_t device,
                       int32_t tensor) {
  for (uint64_t i = 0; i < n; i++)
    if (p[i] != pattern_byte(id, device, tensor, i)) return i;
  return UINT64_MAX;
}

int32_t allocate_filled(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
                        uint64_t *out_id) {
  uint64_t info[5];
  int32_t status = llmdd_engine_info(engine, info);
  if (status != LLMDD_SUCCESS) return status;
  int32_t devices = (int32_t)info[0];
  uint64_t *addrs = malloc(sizeof *addrs * (size_t)(devices * num_tensors));
  status = llmdd_cache_allocate(engine, num_tensors, tensor_bytes, 1, 0, LLMDD_PLACEMENT_DEVICE,
                                NULL, 0, out_id, addrs, devices * num_tensors);
  if (status == LLMDD_SUCCESS)
    for (int32_t d = 0; d < devices; d++)
      for (int32_t t = 0; t < num_tensors; t++)
        fill_pattern((uint8_t *)(uintptr_t)addrs[d * num_tensors + t], tensor_bytes, *out_id,
                     d, t);
  free(addrs);
  return status;
}
