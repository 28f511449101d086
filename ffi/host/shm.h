/* POSIX shared memory: the pools of PROMPT and MIX engines, and the lock that
 * makes one live engine the owner of a cluster id on the machine.
 *
 * Names (in /dev/shm):
 *   /llmdd.<cluster id>.<device index>  a pool, sparse, created O_EXCL, mode 0600
 *   /llmdd.<cluster id>.lock            held with flock(LOCK_EX) for the engine's life
 *
 * Nothing in shared memory is a lock or a pointer: a process killed at any moment
 * leaves only bytes, and the kernel drops its flock. A pool object is never
 * truncated once made, so a DECODER's read-only mapping stays valid (no SIGBUS)
 * even after the PROMPT died or unlinked it.
 *
 * What a dead owner leaves is removed when its cluster id starts again, and also
 * by any PROMPT or MIX engine starting (a sweep of lock objects nobody holds), so
 * crashed processes with cluster ids never reused do not pile up memory. Names of
 * engines still alive at exit() are removed then. */
#ifndef LLMDD_HOST_SHM_H
#define LLMDD_HOST_SHM_H

#include <stdint.h>

#define SHM_NAME_CAP 48

void host_shm_pool_name(char out[SHM_NAME_CAP], uint64_t cluster_id, int32_t device_index);

/* Sweeps dead owners' objects, takes ownership of cluster_id, then removes pool
 * objects a crashed owner of it left. Returns SUCCESS with the lock's fd, or
 * FAILED with a message (owned by a live engine; shared memory unavailable). */
int32_t host_shm_cluster_acquire(uint64_t cluster_id, int *out_fd);

/* Gives ownership up: removes the lock object's name, then drops the lock. */
void host_shm_cluster_release(uint64_t cluster_id, int fd);

/* Creates a new, empty object of `bytes` bytes. Returns its fd (read-write) and
 * writes its identity (inode number), or -1 with errno. */
int host_shm_create(const char *name, uint64_t bytes, uint64_t *out_id);

/* Maps another engine's pool read-only, after checking that the name still
 * refers to the object the engine reported (id) and that it is large enough.
 * Returns SUCCESS, or LINK_FAILED with a message. */
int32_t host_shm_map_peer(uint64_t cluster_id, int32_t device_index, uint64_t id, uint64_t bytes,
                     const uint8_t **out_base);

#endif
