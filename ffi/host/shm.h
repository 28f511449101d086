/* Shared memory: the pools of PROMPT and MIX engines, as sealed memory files.
 *
 * A pool is a memfd (memfd_create): it has no name anywhere, so nothing can
 * squat it, sweep it or open it by guessing; a DECODER of the same user gets it
 * only as a file descriptor the PROMPT passes over its private Unix socket
 * (local.h). It is sealed against shrinking and growing (F_SEAL_SHRINK |
 * F_SEAL_GROW, then F_SEAL_SEAL) before anyone else sees it: its size can never
 * change, so no mapping of it can ever raise SIGBUS, whatever the PROMPT (or
 * whoever holds it) does. The DECODER checks the seals before mapping.
 *
 * Memfds live on the kernel's internal tmpfs, not on /dev/shm: filling /dev/shm
 * does not touch them. Their pages are reserved per cache (pool.h). */
#ifndef LLMDD_HOST_SHM_H
#define LLMDD_HOST_SHM_H

#include <stdbool.h>
#include <stdint.h>

/* Creates a new, empty, sealed pool object of `bytes` bytes. Returns its fd
 * (read-write), its identity (inode number) and a second, read-only fd of the
 * same object for DECODERs; or -1 with errno (nothing left open). */
int host_shm_create(uint64_t bytes, uint64_t *out_id, int *out_ro_fd);

/* Maps a pool that the PROMPT of cluster_id passed for device_index, read-only
 * (read-write when *writable and the descriptor is read-write; *writable then
 * says which it got), after checking that it is what it must be: sealed against size changes, the
 * object the PROMPT reported on its authenticated link (id), and large enough.
 * Returns SUCCESS, or LINK_FAILED with a message. Does not close fd. */
int32_t host_shm_map_peer(int fd, uint64_t cluster_id, int32_t device_index, uint64_t id,
                          uint64_t bytes, bool *writable, const uint8_t **out_base);

#endif
