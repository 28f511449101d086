#define _GNU_SOURCE 1 /* memfd_create, F_ADD_SEALS */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "llmdd.h"

/* What a pool object must carry before a DECODER maps it: with these its size is
 * fixed for good (seals cannot be removed). */
#define SIZE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

int host_shm_create(uint64_t bytes, uint64_t *out_id, int *out_ro_fd) {
  if (bytes > (uint64_t)INT64_MAX) {
    errno = EFBIG;
    return -1;
  }
  int fd = memfd_create("llmdd-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  /* ftruncate makes a sparse object: pages cost memory only once reserved or
   * touched. The seals come before any other process can see the object. */
  struct stat st;
  int ro = -1;
  if (ftruncate(fd, (off_t)bytes) == 0 &&
      fcntl(fd, F_ADD_SEALS, SIZE_SEALS | F_SEAL_SEAL) == 0 && fstat(fd, &st) == 0) {
    /* A read-only open file of the same object for DECODERs (a memfd's own fd
     * is read-write): reopened through /proc, which opens the object itself. */
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    ro = open(self, O_RDONLY | O_CLOEXEC);
  }
  if (ro < 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  *out_id = (uint64_t)st.st_ino;
  *out_ro_fd = ro;
  return fd;
}

int32_t host_shm_map_peer(int fd, uint64_t cluster_id, int32_t device_index, uint64_t id,
                          uint64_t bytes, bool *writable, const uint8_t **out_base) {
  char text[CORE_ERRNO_TEXT_CAP];
  unsigned long long cluster = (unsigned long long)cluster_id;
  struct stat st;
  if (fstat(fd, &st) != 0)
    return core_fail(LLMDD_LINK_FAILED, "cannot inspect pool %d of cluster %llu: %s",
                     device_index, cluster, core_errno_text(errno, text));
  int seals = fcntl(fd, F_GET_SEALS);
  if (!S_ISREG(st.st_mode) || seals < 0 || (seals & SIZE_SEALS) != SIZE_SEALS)
    return core_fail(LLMDD_LINK_FAILED,
                     "pool %d of cluster %llu is not sealed memory (seals 0x%x): its size could"
                     " change under this process, which is refused",
                     device_index, cluster, seals < 0 ? 0 : (unsigned)seals);
  if ((uint64_t)st.st_ino != id)
    return core_fail(LLMDD_LINK_FAILED,
                     "pool %d of cluster %llu is not the object its engine reported on the link",
                     device_index, cluster);
  if (st.st_size < 0 || (uint64_t)st.st_size < bytes || bytes > SIZE_MAX)
    return core_fail(LLMDD_LINK_FAILED, "pool %d of cluster %llu holds %lld bytes, not the %llu"
                     " reported", device_index, cluster, (long long)st.st_size,
                     (unsigned long long)bytes);
  /* Shared, and read-only unless pushes were asked for and the PROMPT allowed
   * them (it passes a read-write descriptor only with remote access enabled);
   * the object outlives the PROMPT for as long as it stays mapped here. */
  int mode = fcntl(fd, F_GETFL);
  *writable = *writable && mode >= 0 && (mode & O_ACCMODE) == O_RDWR;
  void *base = mmap(NULL, (size_t)bytes, *writable ? PROT_READ | PROT_WRITE : PROT_READ,
                    MAP_SHARED, fd, 0);
  if (base == MAP_FAILED)
    return core_fail(LLMDD_LINK_FAILED, "cannot map pool %d of cluster %llu: %s", device_index,
                     cluster, core_errno_text(errno, text));
  *out_base = base;
  return LLMDD_SUCCESS;
}
