#define _DEFAULT_SOURCE 1
#include "rundir.h"

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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/error.h"
#include "llmdd.h"

/* How long to keep trying for a lock that is held, but not by a live owner: by
 * another process's sweep for a moment, or by an owner that was killed and whose
 * files the kernel has not closed yet. Tries are 1 ms apart. */
#define LOCK_PATIENCE_NS ((int64_t)500 * 1000000)

/* Engines alive at exit() whose names are removed then (see unlink_at_exit). */
#define EXIT_SLOTS 256

/* "/dev/shm/llmdd-4294967295" and a NUL, with room. */
#define DIR_CAP 32
#define NAME_CAP 48

static void directory_path(char out[DIR_CAP]) {
  snprintf(out, DIR_CAP, "/dev/shm/llmdd-%u", (unsigned)geteuid());
}

/* Makes the directory if missing, then checks what is there: lstat, so a
 * symlink (to a directory another account controls) is refused, not followed.
 * /dev/shm is sticky (1777, like /tmp): once the directory is ours, only we and
 * root can rename or remove it, so checking its path once is as good as holding
 * it open. /dev/shm rather than /tmp: it is memory (tmpfs), so the small files
 * here cost no disk I/O (on this project's ext4 /tmp, creating, locking and
 * removing them took milliseconds per engine) and are gone after a reboot. */
static int32_t check_directory(char dir[DIR_CAP]) {
  char text[CORE_ERRNO_TEXT_CAP];
  directory_path(dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return core_fail(LLMDD_FAILED, "cannot make the private directory %s: %s", dir,
                     core_errno_text(errno, text));
  struct stat st;
  if (lstat(dir, &st) != 0)
    return core_fail(LLMDD_FAILED, "cannot inspect the private directory %s: %s", dir,
                     core_errno_text(errno, text));
  if (!S_ISDIR(st.st_mode))
    return core_fail(LLMDD_FAILED,
                     "%s is not a directory (a symlink or a file, owned by uid %u): the host"
                     " backend keeps its locks and sockets there; remove it",
                     dir, (unsigned)st.st_uid);
  if (st.st_uid != geteuid())
    return core_fail(LLMDD_FAILED,
                     "the private directory %s belongs to uid %u, not to this user (uid %u):"
                     " another account made it; it must be removed (as root)",
                     dir, (unsigned)st.st_uid, (unsigned)geteuid());
  if ((st.st_mode & 0077) != 0)
    return core_fail(LLMDD_FAILED,
                     "the private directory %s has mode %03o: other accounts could put files"
                     " there; chmod 700 it",
                     dir, (unsigned)(st.st_mode & 0777));
  return LLMDD_SUCCESS;
}

int32_t host_rundir_path(const char *name, char out[RUNDIR_PATH_CAP]) {
  char dir[DIR_CAP];
  int32_t status = check_directory(dir);
  if (status != LLMDD_SUCCESS) return status;
  snprintf(out, RUNDIR_PATH_CAP, "%s/%.47s", dir, name);
  return LLMDD_SUCCESS;
}

static void cluster_name(char out[NAME_CAP], uint64_t cluster_id, const char *suffix) {
  snprintf(out, NAME_CAP, "%llu.%s", (unsigned long long)cluster_id, suffix);
}

int32_t host_rundir_cluster_path(uint64_t cluster_id, const char *suffix,
                                 char out[RUNDIR_PATH_CAP]) {
  char name[NAME_CAP];
  cluster_name(name, cluster_id, suffix);
  return host_rundir_path(name, out);
}

/* Paths without the check (the directory was checked when the engine started). */
static void unchecked_path(char out[RUNDIR_PATH_CAP], uint64_t cluster_id, const char *suffix) {
  char dir[DIR_CAP], name[NAME_CAP];
  directory_path(dir);
  cluster_name(name, cluster_id, suffix);
  snprintf(out, RUNDIR_PATH_CAP, "%s/%.47s", dir, name);
}

static void unlink_names(uint64_t cluster_id) {
  char path[RUNDIR_PATH_CAP];
  unchecked_path(path, cluster_id, "sock");
  unlink(path);
  unchecked_path(path, cluster_id, "lock");
  unlink(path);
}

/* Whether fd is still the file that path names. */
static bool is_named(int fd, const char *path) {
  struct stat held, named;
  return fstat(fd, &held) == 0 && lstat(path, &named) == 0 && held.st_ino == named.st_ino &&
         held.st_dev == named.st_dev;
}

/* ---- names removed at exit ----
 *
 * A process that exits without finalizing its engines (a runtime's exit(), a
 * test runner ending) would leave their files until the same cluster id starts
 * again. exit() removes them instead. Slots are claimed with atomics, not a
 * mutex: exit() may run while another thread is inside the library. Only the
 * process that made an engine removes its names (a child made by fork without
 * exec inherits the slots). */

enum { SLOT_FREE, SLOT_CLAIMED, SLOT_READY };

static struct {
  atomic_int state;
  uint64_t cluster_id; /* written between claim and ready */
  pid_t pid;
} owned[EXIT_SLOTS];
static pthread_once_t exit_hook_once = PTHREAD_ONCE_INIT;

static void unlink_at_exit(void) {
  pid_t self = getpid();
  for (int i = 0; i < EXIT_SLOTS; i++)
    if (atomic_load(&owned[i].state) == SLOT_READY && owned[i].pid == self)
      unlink_names(owned[i].cluster_id);
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
  /* All slots taken: this engine's files are only removed by finalize or by
   * the sweep after the process ends. */
}

/* One owner per cluster id (per user), so at most one slot matches. */
static void forget_owned(uint64_t cluster_id) {
  for (int i = 0; i < EXIT_SLOTS; i++) {
    if (atomic_load(&owned[i].state) == SLOT_READY && owned[i].cluster_id == cluster_id &&
        owned[i].pid == getpid()) {
      atomic_store(&owned[i].state, SLOT_FREE);
      return;
    }
  }
}

/* ---- the sweep: files of dead owners of any cluster id ----
 *
 * A lock nobody holds belongs to an owner that died (or finalized between our
 * looks, which is harmless). Holding it, like an owner would, the sweep removes
 * the socket and then the lock's name: an engine starting with that cluster id
 * meanwhile waits for the lock (LOCK_PATIENCE_NS). */

/* Parses "<digits>.lock" exactly. */
static bool parse_lock_entry(const char *entry, uint64_t *cluster_id) {
  static const char suffix[] = ".lock";
  size_t len = strlen(entry), digits = len - (sizeof suffix - 1);
  if (len <= sizeof suffix - 1 || digits > 20 || strcmp(entry + digits, suffix) != 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < digits; i++) {
    char c = entry[i];
    if (c < '0' || c > '9' || v > (UINT64_MAX - (uint64_t)(c - '0')) / 10) return false;
    v = v * 10 + (uint64_t)(c - '0');
  }
  *cluster_id = v;
  return true;
}

static void sweep_one(uint64_t cluster_id) {
  char path[RUNDIR_PATH_CAP];
  unchecked_path(path, cluster_id, "lock");
  int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0 && is_named(fd, path)) unlink_names(cluster_id);
  close(fd); /* drops the lock, if taken */
}

static void sweep_dead_owners(void) {
  char dir[DIR_CAP];
  directory_path(dir);
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *entry;
  while ((entry = readdir(d)) != NULL) {
    uint64_t cluster_id;
    if (parse_lock_entry(entry->d_name, &cluster_id)) sweep_one(cluster_id);
  }
  closedir(d);
}

/* The owner writes its pid into the lock file. Only used to tell "owned by a
 * live process: fail now" from "held for a moment: try again", and to name the
 * holder; the flock alone decides ownership. Returns the pid, or 0. */
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

int32_t host_cluster_acquire(uint64_t cluster_id, int *out_fd) {
  char path[RUNDIR_PATH_CAP], text[CORE_ERRNO_TEXT_CAP];
  int32_t status = host_rundir_cluster_path(cluster_id, "lock", path);
  if (status != LLMDD_SUCCESS) return status;
  sweep_dead_owners();
  for (int64_t give_up = core_now_ns() + LOCK_PATIENCE_NS;;) {
    /* O_NOFOLLOW: nothing but this user can put a link here, but a link of its
     * own making is no lock either. */
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      return core_fail(LLMDD_FAILED, "cannot open the cluster id's lock %s: %s", path,
                       core_errno_text(errno, text));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
      close(fd);
      return core_fail(LLMDD_FAILED, "%s is not a lock file of this user (uid %u)", path,
                       (unsigned)geteuid());
    }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      /* An owner finalizing unlinks the name while still holding the lock, so a
       * lock won on an unlinked file means nothing: take the new one instead. */
      if (is_named(fd, path)) {
        /* Ours. A socket carrying this cluster id was left by a dead owner. */
        char sock[RUNDIR_PATH_CAP];
        unchecked_path(sock, cluster_id, "sock");
        unlink(sock);
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
    if (err != EWOULDBLOCK)
      return core_fail(LLMDD_FAILED, "cannot lock %s: %s", path, core_errno_text(err, text));
    if (process_alive(owner))
      return core_fail(LLMDD_FAILED,
                       "cluster id %llu is owned by a live engine on this machine (uid %u, pid"
                       " %d, which holds %s)",
                       (unsigned long long)cluster_id, (unsigned)st.st_uid, (int)owner, path);
    if (core_now_ns() > give_up)
      return core_fail(LLMDD_FAILED,
                       "cluster id %llu is owned by a live engine on this machine (uid %u; %s"
                       " is locked)",
                       (unsigned long long)cluster_id, (unsigned)st.st_uid, path);
    struct timespec pause = {0, 1000000L};
    nanosleep(&pause, NULL);
  }
}

void host_cluster_release(uint64_t cluster_id, int fd) {
  forget_owned(cluster_id);
  unlink_names(cluster_id); /* the socket first, then the lock, still held */
  close(fd);
}
