/* One device's memory pool: a reserved range of address space and a first-fit
 * allocator over it. Not thread-safe: the owning engine's lock guards it.
 *
 * A pool is private memory, or a sealed memory file (PROMPT and MIX engines,
 * shm.h) whose read-only descriptor a DECODER process of the same user receives
 * and maps. */
#ifndef LLMDD_HOST_POOL_H
#define LLMDD_HOST_POOL_H

#include <stdbool.h>
#include <stdint.h>

/* Every block starts on this boundary (upstream tensors are 64-byte aligned, and
 * it keeps vector loads on the TypeScript side aligned). */
#define POOL_ALIGN ((uint64_t)64)

struct free_range {
  uint64_t offset;
  uint64_t length;
};

struct pool {
  uint8_t *base;
  uint64_t capacity; /* as configured; the usable part is rounded down to POOL_ALIGN */
  uint64_t in_use;
  uint64_t blocks; /* live allocations */
  /* Free ranges sorted by offset, never adjacent (they are coalesced). */
  struct free_range *ranges;
  uint64_t num_ranges;
  uint64_t ranges_capacity;
  /* Shared pools only (both fds are -1 for private ones). */
  uint64_t object_id; /* the object's inode, which a DECODER checks before mapping */
  int fd;             /* the object, read-write: caches reserve their pages through it */
  int ro_fd;          /* the same object, read-only: what DECODERs are given */
};

/* Reserves capacity bytes of address space: private memory, or a new sealed
 * memory file when shared. Returns 0, or -1 (nothing reserved, nothing left
 * open) with errno set. */
int host_pool_init(struct pool *p, uint64_t capacity, bool shared);

/* Returns the backing memory to the system (a DECODER that still maps a shared
 * pool keeps its object until it unmaps). Blocks still allocated are forgotten. */
void host_pool_destroy(struct pool *p);

/* Allocates length bytes (a multiple of POOL_ALIGN, > 0). Returns 0 and the
 * block's offset, -1 when no free range is large enough, -2 when out of host
 * memory for bookkeeping. */
int host_pool_alloc(struct pool *p, uint64_t length, uint64_t *out_offset);

/* Reserves the memory under a block just allocated, so that writing to it later
 * can never fail. A shared pool's pages are file pages: written lazily, a full
 * backing store would end the process with SIGBUS at the first touch, so they
 * are allocated now (fallocate). A block larger than the memory the machine has
 * available is refused first (ENOMEM) rather than left to the kernel's
 * out-of-memory killer. Private pools are anonymous memory, which cannot raise
 * SIGBUS; they stay lazy. Returns 0, or an errno (ENOSPC, ENOMEM). */
int host_pool_commit(struct pool *p, uint64_t offset, uint64_t length);

/* Takes the whole pool's memory now (llmdd.reservePools=1): a shared pool's
 * pages are allocated (as host_pool_commit) and both kinds are populated in this
 * process. Returns 0, or an errno (ENOSPC, ENOMEM). */
int host_pool_reserve(struct pool *p);

/* Frees a block returned by host_pool_alloc. Freed memory is not handed back to
 * the system: a pool stands in for device memory, resident once touched, so the
 * next cache placed there neither faults nor zeroes its pages again. Cannot
 * fail: host_pool_alloc keeps room for the free range this may add. */
void host_pool_free(struct pool *p, uint64_t offset, uint64_t length);

#endif
