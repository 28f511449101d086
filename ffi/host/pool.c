#define _GNU_SOURCE 1 /* fallocate */
#include "pool.h"

#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Blocks from this size up are checked against the memory available before
 * their pages are reserved (a read of /proc/meminfo, ~20 us, is noise next to
 * reserving 64 MiB). */
#define AVAILABLE_CHECK_BYTES ((uint64_t)64 << 20)

/* The one place that decides what backs a pool. MAP_NORESERVE and lazy faulting
 * make an untouched pool cost address space only; a shared pool is a sparse
 * object, which costs nothing until its caches reserve their pages either. */
static uint8_t *backing_reserve(struct pool *p, uint64_t capacity, bool shared) {
  if (capacity > SIZE_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  if (!shared) {
    void *base = mmap(NULL, (size_t)capacity, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return base == MAP_FAILED ? NULL : base;
  }
  int ro = -1;
  int fd = host_shm_create(capacity, &p->object_id, &ro);
  if (fd < 0) return NULL;
  void *base = mmap(NULL, (size_t)capacity, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    close(fd);
    close(ro);
    errno = err;
    return NULL;
  }
  p->fd = fd; /* kept: caches reserve their pages through it (host_pool_commit) */
  p->ro_fd = ro;
  return base;
}

static void backing_release(struct pool *p) {
  munmap(p->base, (size_t)p->capacity);
  /* A DECODER that still maps the object keeps it (and its bytes) until it
   * unmaps. */
  if (p->fd >= 0) close(p->fd);
  if (p->ro_fd >= 0) close(p->ro_fd);
}

int host_pool_init(struct pool *p, uint64_t capacity, bool shared) {
  memset(p, 0, sizeof *p);
  p->fd = p->ro_fd = -1;
  uint64_t usable = capacity / POOL_ALIGN * POOL_ALIGN;
  p->ranges_capacity = 4;
  p->ranges = malloc(p->ranges_capacity * sizeof *p->ranges);
  if (p->ranges == NULL) {
    errno = ENOMEM;
    return -1;
  }
  p->base = backing_reserve(p, capacity, shared);
  if (p->base == NULL) {
    int err = errno;
    free(p->ranges);
    memset(p, 0, sizeof *p);
    p->fd = p->ro_fd = -1;
    errno = err;
    return -1;
  }
  p->capacity = capacity;
  if (usable > 0) p->ranges[p->num_ranges++] = (struct free_range){0, usable};
  return 0;
}

void host_pool_destroy(struct pool *p) {
  if (p->base != NULL) backing_release(p);
  free(p->ranges);
  memset(p, 0, sizeof *p);
  p->fd = p->ro_fd = -1;
}

/* Bytes of memory the machine can still give (MemAvailable + SwapFree), or
 * UINT64_MAX when unknown. */
static uint64_t memory_available(void) {
  FILE *f = fopen("/proc/meminfo", "re");
  if (f == NULL) return UINT64_MAX;
  char line[128];
  unsigned long long kib, total = 0;
  int found = 0;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1 ||
        sscanf(line, "SwapFree: %llu kB", &kib) == 1) {
      total += kib;
      found++;
    }
  }
  fclose(f);
  return found == 0 ? UINT64_MAX : (uint64_t)total * 1024;
}

/* Bytes of [offset, offset + length) of a shared pool's object that have no
 * pages yet (freed blocks keep theirs); all of it when the file system cannot
 * tell (SEEK_HOLE). */
static uint64_t unbacked_bytes(const struct pool *p, uint64_t offset, uint64_t length) {
  uint64_t end = offset + length, missing = 0, at = offset;
  while (at < end) {
    off_t hole = lseek(p->fd, (off_t)at, SEEK_HOLE);
    if (hole < 0) return errno == ENXIO ? missing : length;
    if ((uint64_t)hole >= end) break;
    off_t data = lseek(p->fd, hole, SEEK_DATA);
    uint64_t hole_end = data < 0 || (uint64_t)data > end ? end : (uint64_t)data;
    missing += hole_end - (uint64_t)hole;
    at = hole_end;
  }
  return missing;
}

int host_pool_commit(struct pool *p, uint64_t offset, uint64_t length) {
  if (p->fd < 0 || length == 0) return 0;
  /* Reserving more than the machine has would not fail: the kernel's
   * out-of-memory killer would end some process instead. Pages the object has
   * already (a freed block's, or llmdd.reservePools) need nothing. */
  if (length >= AVAILABLE_CHECK_BYTES) {
    uint64_t missing = unbacked_bytes(p, offset, length);
    if (missing >= AVAILABLE_CHECK_BYTES && missing > memory_available()) return ENOMEM;
  }
  /* Allocates the object's pages (zeroed; pages already there are kept): ENOSPC
   * now instead of SIGBUS at the first write. A signal arriving meanwhile makes
   * the kernel stop with EINTR; what was allocated stays, so trying again is
   * cheap. Mode 0 never changes the object's size. */
  for (;;) {
    if (fallocate(p->fd, 0, (off_t)offset, (off_t)length) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

/* Each live block can split a free range in two when it is freed, so keeping
 * room for blocks + 1 ranges means host_pool_free never needs to allocate. */
static int reserve_ranges(struct pool *p, uint64_t needed) {
  if (needed <= p->ranges_capacity) return 0;
  uint64_t capacity = p->ranges_capacity * 2;
  if (capacity < needed) capacity = needed;
  struct free_range *ranges = realloc(p->ranges, capacity * sizeof *ranges);
  if (ranges == NULL) return -1;
  p->ranges = ranges;
  p->ranges_capacity = capacity;
  return 0;
}

static void remove_range(struct pool *p, uint64_t i) {
  memmove(&p->ranges[i], &p->ranges[i + 1], (p->num_ranges - i - 1) * sizeof *p->ranges);
  p->num_ranges--;
}

int host_pool_alloc(struct pool *p, uint64_t length, uint64_t *out_offset) {
  for (uint64_t i = 0; i < p->num_ranges; i++) {
    struct free_range *r = &p->ranges[i];
    if (r->length < length) continue;
    if (reserve_ranges(p, p->blocks + 2) != 0) return -2;
    r = &p->ranges[i]; /* reserve_ranges may have moved the array */
    *out_offset = r->offset;
    r->offset += length;
    r->length -= length;
    if (r->length == 0) remove_range(p, i);
    p->in_use += length;
    p->blocks++;
    return 0;
  }
  return -1;
}

void host_pool_free(struct pool *p, uint64_t offset, uint64_t length) {
  /* The pages stay: a pool stands in for device memory, which stays with its
   * process once taken (pool.h). */
  p->in_use -= length;
  p->blocks--;

  /* First range after the block. */
  uint64_t lo = 0, hi = p->num_ranges;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    if (p->ranges[mid].offset < offset) lo = mid + 1;
    else hi = mid;
  }
  uint64_t i = lo;
  int joins_prev = i > 0 && p->ranges[i - 1].offset + p->ranges[i - 1].length == offset;
  int joins_next = i < p->num_ranges && offset + length == p->ranges[i].offset;
  if (joins_prev && joins_next) {
    p->ranges[i - 1].length += length + p->ranges[i].length;
    remove_range(p, i);
  } else if (joins_prev) {
    p->ranges[i - 1].length += length;
  } else if (joins_next) {
    p->ranges[i].offset = offset;
    p->ranges[i].length += length;
  } else {
    memmove(&p->ranges[i + 1], &p->ranges[i], (p->num_ranges - i) * sizeof *p->ranges);
    p->ranges[i] = (struct free_range){offset, length};
    p->num_ranges++;
  }
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

int host_pool_reserve(struct pool *p) {
  uint64_t usable = p->capacity / POOL_ALIGN * POOL_ALIGN;
  if (usable == 0) return 0;
  if (p->fd >= 0) {
    int err = host_pool_commit(p, 0, usable);
    if (err != 0) return err;
  } else if (usable > memory_available()) {
    return ENOMEM;
  }
  /* This process's page tables too, so the first cache does not fault. Best
   * effort for a shared pool (its pages are reserved already); a private one
   * is written page by page where the kernel cannot populate it. */
  if (madvise(p->base, (size_t)p->capacity, MADV_POPULATE_WRITE) == 0 || p->fd >= 0) return 0;
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  for (uint64_t at = 0; at < p->capacity; at += page) ((volatile uint8_t *)p->base)[at] = 0;
  return 0;
}
