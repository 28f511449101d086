#define _DEFAULT_SOURCE 1
#include "shm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "llmdd.h"
#include "options.h"

/* How long to keep trying for a lock that is held, but not by a live owner: by
 * another process's sweep for a moment, or by an owner that was killed and whose
 * files the kernel has not closed yet. Tries are 1 ms apart. */
#define LOCK_PATIENCE_NS ((int64_t)500 * 1000000)

/* Where shm_open keeps its objects, for the sweep. */
#define SHM_DIRECTORY "/dev/shm"

/* Engines alive at exit() whose names are removed then (see unlink_at_exit). */
#define EXIT_SLOTS 256

void host_shm_pool_name(char out[SHM_NAME_CAP], uint64_t cluster_id, int32_t device_index) {
  snprintf(out, SHM_NAME_CAP, "/llmdd.%llu.%d", (unsigned long long)cluster_id, device_index);
}

static void lock_name(char out[SHM_NAME_CAP], uint64_t cluster_id) {
  snprintf(out, SHM_NAME_CAP, "/llmdd.%llu.lock", (unsigned long long)cluster_id);
}

/* Whether fd is still the object that `name` refers to. */
static bool is_named(int fd, const char *name) {
  struct stat held, named;
  int other = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
  if (other < 0) return false;
  bool same = fstat(fd, &held) == 0 && fstat(other, &named) == 0 &&
              held.st_ino == named.st_ino && held.st_dev == named.st_dev;
  close(other);
  return same;
}

static void unlink_pools(uint64_t cluster_id) {
  for (int32_t d = 0; d < MAX_DEVICES; d++) {
    char pool[SHM_NAME_CAP];
    host_shm_pool_name(pool, cluster_id, d);
    shm_unlink(pool);
  }
}

/* ---- names removed at exit ----
 *
 * A process that exits without finalizing its engines (a runtime's exit(), a
 * test runner ending) would leave their objects, and the memory their touched
 * pages hold, until the same cluster id starts again. exit() removes their names
 * instead; the process's mappings stay valid to its end, and so do a DECODER's.
 * Slots are claimed with atomics, not a mutex: exit() may run while another
 * thread is inside the library. Only the process that made an engine removes
 * its names (a child made by fork without exec inherits the slots). */

enum { SLOT_FREE, SLOT_CLAIMED, SLOT_READY };

static struct {
  atomic_int state;
  uint64_t cluster_id; /* written between claim and ready */
  pid_t pid;
} owned[EXIT_SLOTS];
static pthread_once_t exit_hook_once = PTHREAD_ONCE_INIT;

static void unlink_at_exit(void) {
  pid_t self = getpid();
  for (int i = 0; i < EXIT_SLOTS; i++) {
    if (atomic_load(&owned[i].state) != SLOT_READY || owned[i].pid != self) continue;
    char lock[SHM_NAME_CAP];
    unlink_pools(owned[i].cluster_id);
    lock_name(lock, owned[i].cluster_id);
    shm_unlink(lock); /* the lock itself goes with the process */
  }
}

static void install_exit_hook(void) { atexit(unlink_at_exit); }

static void remember_owned(uint64_t cluster_id) {
  pthread_once(&exit_hook_once, install_exit_hook);
  for (int i = 0; i < EXIT_SLOTS; i++) {
    int expected = SLOT_FREE;
    if (!atomic_compare_exchange_strong(&owned[i].state, &expected, SLOT_CLAIMED)) continue;
    owned[i].cluster_id = cluster_id;
    owned[i].pid = getpid();
    atomic_store(&owned[i].state, SLOT_READY);
    return;
  }
  /* All slots taken: this engine's objects are only removed by finalize or by
   * the sweep after the process ends. */
}

/* One owner per cluster id on the machine, so at most one slot matches. */
static void forget_owned(uint64_t cluster_id) {
  for (int i = 0; i < EXIT_SLOTS; i++) {
    if (atomic_load(&owned[i].state) == SLOT_READY && owned[i].cluster_id == cluster_id &&
        owned[i].pid == getpid()) {
      atomic_store(&owned[i].state, SLOT_FREE);
      return;
    }
  }
}

/* ---- the sweep: objects of dead owners of any cluster id ----
 *
 * A lock object that nobody holds belongs to an owner that died (or finalized
 * between our looks, which is harmless). Holding its lock, like an owner would,
 * the sweep removes the pools and then the lock's name: an engine starting with
 * that cluster id meanwhile waits for the lock (LOCK_PATIENCE_NS), and once the
 * name is gone the sweep touches nothing of that cluster id again. */

/* Parses "llmdd.<digits>.lock" exactly. */
static bool parse_lock_entry(const char *entry, uint64_t *cluster_id) {
  static const char prefix[] = "llmdd.", suffix[] = ".lock";
  const size_t fixed = sizeof prefix - 1 + sizeof suffix - 1;
  size_t len = strlen(entry);
  if (len <= fixed || len > fixed + 20 || strncmp(entry, prefix, sizeof prefix - 1) != 0 ||
      strcmp(entry + len - (sizeof suffix - 1), suffix) != 0)
    return false;
  size_t digits = len - fixed;
  uint64_t v = 0;
  for (size_t i = 0; i < digits; i++) {
    char c = entry[sizeof prefix - 1 + i];
    if (c < '0' || c > '9' || v > (UINT64_MAX - (uint64_t)(c - '0')) / 10) return false;
    v = v * 10 + (uint64_t)(c - '0');
  }
  *cluster_id = v;
  return true;
}

static void sweep_one(uint64_t cluster_id) {
  char name[SHM_NAME_CAP];
  lock_name(name, cluster_id);
  int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0); /* another user's: EACCES, skipped */
  if (fd < 0) return;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0 && is_named(fd, name)) {
    unlink_pools(cluster_id); /* pools first: the lock's name guards them */
    shm_unlink(name);
  }
  close(fd); /* drops the lock, if taken */
}

static void sweep_dead_owners(void) {
  DIR *dir = opendir(SHM_DIRECTORY);
  if (dir == NULL) return;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    uint64_t cluster_id;
    if (parse_lock_entry(entry->d_name, &cluster_id)) sweep_one(cluster_id);
  }
  closedir(dir);
}

/* The owner writes its pid into the lock object. Only used to tell "owned by a
 * live process: fail now" from "held for a moment: try again"; the flock alone
 * decides ownership. Returns the pid, or 0 when none is recorded. */
static pid_t recorded_owner(int fd) {
  char text[24];
  ssize_t n = pread(fd, text, sizeof text - 1, 0);
  pid_t pid = 0;
  for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9' && pid < 100000000; i++)
    pid = pid * 10 + (text[i] - '0');
  return pid;
}

static bool process_alive(pid_t pid) {
  return pid > 0 && (pid == getpid() || kill(pid, 0) == 0 || errno == EPERM);
}

static void record_owner(int fd) {
  char text[24];
  int n = snprintf(text, sizeof text, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
    /* Only makes a competing starter wait LOCK_PATIENCE_NS before failing. */
  }
}

int32_t host_shm_cluster_acquire(uint64_t cluster_id, int *out_fd) {
  char name[SHM_NAME_CAP], text[CORE_ERRNO_TEXT_CAP];
  lock_name(name, cluster_id);
  sweep_dead_owners();
  for (int64_t give_up = core_now_ns() + LOCK_PATIENCE_NS;; ) {
    int fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return core_fail(LLMDD_FAILED, "shared memory is unavailable: cannot open %s: %s", name,
                  core_errno_text(errno, text));
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      /* An owner finalizing unlinks the name while still holding the lock, so a
       * lock won on an unlinked object means nothing: take the new one instead. */
      if (is_named(fd, name)) {
        /* Ours. Whatever pools carry this cluster id were left by a dead owner. */
        unlink_pools(cluster_id);
        record_owner(fd);
        remember_owned(cluster_id);
        *out_fd = fd;
        return LLMDD_SUCCESS;
      }
      close(fd);
      continue;
    }
    int err = errno;
    pid_t owner = err == EWOULDBLOCK ? recorded_owner(fd) : 0;
    close(fd);
    if (err != EWOULDBLOCK) return core_fail(LLMDD_FAILED, "cannot lock %s: %s", name, core_errno_text(err, text));
    if (process_alive(owner))
      return core_fail(LLMDD_FAILED,
                  "cluster id %llu is owned by a live engine on this machine (process %d holds"
                  " %s)",
                  (unsigned long long)cluster_id, (int)owner, name);
    if (core_now_ns() > give_up)
      return core_fail(LLMDD_FAILED,
                  "cluster id %llu is owned by a live engine on this machine (%s is locked)",
                  (unsigned long long)cluster_id, name);
    struct timespec pause = {0, 1000000L};
    nanosleep(&pause, NULL);
  }
}

void host_shm_cluster_release(uint64_t cluster_id, int fd) {
  char name[SHM_NAME_CAP];
  lock_name(name, cluster_id);
  forget_owned(cluster_id);
  shm_unlink(name);
  close(fd);
}

int host_shm_create(const char *name, uint64_t bytes, uint64_t *out_id) {
  if (bytes > (uint64_t)INT64_MAX) {
    errno = EFBIG;
    return -1;
  }
  int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  struct stat st;
  /* ftruncate makes a sparse object: pages cost memory only once touched. */
  if (ftruncate(fd, (off_t)bytes) != 0 || fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    shm_unlink(name);
    errno = err;
    return -1;
  }
  *out_id = (uint64_t)st.st_ino;
  return fd;
}

int32_t host_shm_map_peer(uint64_t cluster_id, int32_t device_index, uint64_t id, uint64_t bytes,
                     const uint8_t **out_base) {
  char name[SHM_NAME_CAP], text[CORE_ERRNO_TEXT_CAP];
  host_shm_pool_name(name, cluster_id, device_index);
  int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    return core_fail(LLMDD_LINK_FAILED,
                "cannot open the pool %s of cluster %llu: %s (the host backend links engines"
                " on one machine only)",
                name, (unsigned long long)cluster_id, core_errno_text(errno, text));
  struct stat st;
  int32_t status = LLMDD_SUCCESS;
  if (fstat(fd, &st) != 0)
    status = core_fail(LLMDD_LINK_FAILED, "cannot inspect %s: %s", name, core_errno_text(errno, text));
  else if ((uint64_t)st.st_ino != id)
    status = core_fail(LLMDD_LINK_FAILED, "%s is not the pool the engine of cluster %llu reported"
                  " (it was replaced)", name, (unsigned long long)cluster_id);
  else if (st.st_size < 0 || (uint64_t)st.st_size < bytes || bytes > SIZE_MAX)
    status = core_fail(LLMDD_LINK_FAILED, "%s holds %lld bytes, not the %llu reported", name,
                  (long long)st.st_size, (unsigned long long)bytes);
  if (status == LLMDD_SUCCESS) {
    /* Read-only and shared: this process can never change the PROMPT's memory,
     * and the object outlives the PROMPT for as long as it stays mapped here. */
    void *base = mmap(NULL, (size_t)bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
      status = core_fail(LLMDD_LINK_FAILED, "cannot map %s: %s", name, core_errno_text(errno, text));
    else
      *out_base = base;
  }
  close(fd);
  return status;
}
