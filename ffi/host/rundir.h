/* The user's private runtime directory, and the ownership of cluster ids in it.
 *
 *   /dev/shm/llmdd-<uid>/             mode 0700, owned by the user (checked with
 *                                     lstat: a real directory, not a symlink)
 *     <cluster id>.lock               held with flock(LOCK_EX) for a PROMPT or
 *                                     MIX engine's life; holds "<pid>\n"
 *     <cluster id>.sock               the engine's Unix socket (local.h): where
 *                                     DECODERs of this user get its pools
 *     key                             32 random bytes: the user's link key (auth.h)
 *
 * Only this user (and root) can create anything in the directory, so another
 * account can neither take a cluster id, nor put a socket or a key where an
 * engine looks for one. The names are per user: two accounts may use the same
 * cluster id without meeting (they cannot link to each other anyway: pools go
 * to the same user only). Another account can at most make the directory
 * itself before this user does; every engine then refuses to start, with a
 * message naming that account.
 *
 * Nothing here is a pointer or a lock in memory: a process killed at any moment
 * leaves two small files, and the kernel drops its flock. Whatever a dead owner
 * left is removed when its cluster id starts again, and by any PROMPT or MIX
 * engine starting (a sweep of locks nobody holds). Names of engines still alive
 * at exit() are removed then. */
#ifndef LLMDD_HOST_RUNDIR_H
#define LLMDD_HOST_RUNDIR_H

#include <stdint.h>

/* Fits a sockaddr_un's sun_path (108 bytes) with room to spare. */
#define RUNDIR_PATH_CAP 96

/* The path of `name` in the user's private directory, which is made (0700) if
 * missing and checked. Returns SUCCESS, or FAILED with a message (the directory
 * belongs to another account, is too open, is not a directory). */
int32_t host_rundir_path(const char *name, char out[RUNDIR_PATH_CAP]);

/* The path of "<cluster id>.<suffix>" in the directory (as host_rundir_path). */
int32_t host_rundir_cluster_path(uint64_t cluster_id, const char *suffix,
                                 char out[RUNDIR_PATH_CAP]);

/* Sweeps dead owners' files, then takes ownership of cluster_id. Returns SUCCESS
 * with the lock's fd, or FAILED with a message naming the holder (uid, pid). */
int32_t host_cluster_acquire(uint64_t cluster_id, int *out_fd);

/* Gives ownership up: removes the socket's and the lock's names, then drops the
 * lock. */
void host_cluster_release(uint64_t cluster_id, int fd);

#endif
