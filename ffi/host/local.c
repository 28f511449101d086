#define _GNU_SOURCE 1 /* SO_PEERCRED, struct ucred, MSG_CMSG_CLOEXEC */
#include "local.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/error.h"
#include "llmdd.h"
#include "net.h"
#include "options.h"
#include "pool.h"
#include "rundir.h"

#define LOCAL_MAGIC 0x50444C4Cu /* "LLDP" on the wire */
#define LOCAL_VERSION 2
#define REQUEST_BYTES 16
#define ANSWER_BYTES 24

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static int32_t socket_address(uint64_t cluster_id, struct sockaddr_un *a) {
  char path[RUNDIR_PATH_CAP];
  int32_t status = host_rundir_cluster_path(cluster_id, "sock", path);
  if (status != LLMDD_SUCCESS) return status;
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "%s", path);
  return LLMDD_SUCCESS;
}

int32_t host_local_listen(uint64_t cluster_id, int *out_fd) {
  struct sockaddr_un a;
  char text[CORE_ERRNO_TEXT_CAP];
  int32_t status = socket_address(cluster_id, &a);
  if (status != LLMDD_SUCCESS) return status;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return core_fail(LLMDD_FAILED, "cannot create a Unix socket: %s", core_errno_text(errno, text));
  unlink(a.sun_path); /* a dead owner's: we own the cluster id */
  if (bind(fd, (const struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
    int err = errno;
    close(fd);
    return core_fail(LLMDD_FAILED, "cannot listen on %s: %s", a.sun_path,
                     core_errno_text(err, text));
  }
  *out_fd = fd;
  return LLMDD_SUCCESS;
}

int host_local_peer(int fd, uid_t *out_uid, pid_t *out_pid) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) return 0;
  *out_uid = cred.uid;
  *out_pid = cred.pid;
  return cred.uid == geteuid();
}

/* Reads exactly n bytes under g (the socket is non-blocking). */
static int32_t read_exact(int fd, uint8_t *buf, size_t n, const struct core_guard *g,
                          int wake_fd) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
    if (r > 0) {
      got += (size_t)r;
      continue;
    }
    if (r == 0) return core_fail(LLMDD_LINK_FAILED, "the peer closed the connection");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      char text[CORE_ERRNO_TEXT_CAP];
      return core_fail(LLMDD_LINK_FAILED, "the connection failed: %s",
                       core_errno_text(errno, text));
    }
    int32_t status = host_net_wait(fd, POLLIN, g, wake_fd);
    if (status != LLMDD_SUCCESS) return status;
  }
  return LLMDD_SUCCESS;
}

int32_t host_local_serve(int fd, uint64_t cluster_id, const struct pool *pools,
                         int32_t num_devices, uint64_t pool_bytes, bool writable, int page_fd,
                         const struct core_guard *g, int wake_fd) {
  uint8_t request[REQUEST_BYTES], answer[ANSWER_BYTES];
  int32_t status = read_exact(fd, request, sizeof request, g, wake_fd);
  if (status != LLMDD_SUCCESS) return status;
  if (get32(request) != LOCAL_MAGIC || get32(request + 4) != LOCAL_VERSION)
    return core_fail(LLMDD_LINK_FAILED, "a malformed request on the Unix socket");
  bool ours = get64(request + 8) == cluster_id;
  put32(answer, LOCAL_MAGIC);
  put32(answer + 4, (uint32_t)(ours ? LLMDD_SUCCESS : LLMDD_LINK_FAILED));
  put32(answer + 8, ours ? (uint32_t)num_devices : 0);
  bool page = ours && page_fd >= 0;
  put32(answer + 12, page ? 1 : 0);
  put64(answer + 16, ours ? pool_bytes : 0);

  union {
    struct cmsghdr align;
    uint8_t buf[CMSG_SPACE(sizeof(int) * (MAX_DEVICES + 1))];
  } control;
  struct iovec iov = {answer, sizeof answer};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
  if (ours) {
    memset(&control, 0, sizeof control);
    m.msg_control = control.buf;
    size_t n = (size_t)num_devices + (page ? 1 : 0);
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    for (int32_t d = 0; d < num_devices; d++)
      memcpy(CMSG_DATA(c) + sizeof(int) * (size_t)d, writable ? &pools[d].fd : &pools[d].ro_fd,
             sizeof(int));
    if (page) memcpy(CMSG_DATA(c) + sizeof(int) * (size_t)num_devices, &page_fd, sizeof(int));
  }
  /* 24 bytes into a fresh socket's empty buffer: one call sends them whole. */
  ssize_t n;
  do n = sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof answer)
    return core_fail(LLMDD_LINK_FAILED, "could not answer on the Unix socket");
  return LLMDD_SUCCESS;
}

static void close_all(int *fds, int32_t n) {
  for (int32_t i = 0; i < n; i++) {
    if (fds[i] >= 0) close(fds[i]);
    fds[i] = -1;
  }
}

int32_t host_local_fetch(uint64_t cluster_id, pid_t prompt_pid, int32_t num_devices, int *fds,
                         uint64_t *out_pool_bytes, int *out_page_fd,
                         const struct core_guard *g) {
  char text[CORE_ERRNO_TEXT_CAP];
  unsigned long long cluster = (unsigned long long)cluster_id;
  for (int32_t d = 0; d < num_devices; d++) fds[d] = -1;
  *out_page_fd = -1;
  int page_fd = -1;
  struct sockaddr_un a;
  int32_t status = socket_address(cluster_id, &a);
  if (status != LLMDD_SUCCESS) {
    struct core_kept_error why;
    core_error_keep(&why);
    return core_fail(LLMDD_LINK_FAILED, "%s", why.text);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return core_fail(LLMDD_LINK_FAILED, "cannot create a Unix socket: %s",
                     core_errno_text(errno, text));
  /* The socket is blocking: every wait on it is bounded, connect included (it
   * waits only while the PROMPT's backlog is full; SO_SNDTIMEO bounds that). */
  struct timeval limit = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  if (connect(fd, (const struct sockaddr *)&a, sizeof a) != 0) {
    int err = errno;
    close(fd);
    return core_fail(LLMDD_LINK_FAILED,
                     "the engine of cluster %llu has no socket at %s (%s): the host backend"
                     " links engines of one user on one machine",
                     cluster, a.sun_path, core_errno_text(err, text));
  }
  uid_t uid = 0;
  pid_t pid = 0;
  if (!host_local_peer(fd, &uid, &pid) || pid != prompt_pid) {
    close(fd);
    return core_fail(LLMDD_LINK_FAILED,
                     "the process at %s (uid %u, pid %d) is not the engine of cluster %llu that"
                     " answered the link (uid %u, pid %d)",
                     a.sun_path, (unsigned)uid, (int)pid, cluster, (unsigned)geteuid(),
                     (int)prompt_pid);
  }
  uint8_t request[REQUEST_BYTES];
  put32(request, LOCAL_MAGIC);
  put32(request + 4, LOCAL_VERSION);
  put64(request + 8, cluster_id);
  if (send(fd, request, sizeof request, MSG_NOSIGNAL) != (ssize_t)sizeof request) {
    close(fd);
    return core_fail(LLMDD_LINK_FAILED, "cannot ask the engine of cluster %llu for its pools",
                     cluster);
  }

  uint8_t answer[ANSWER_BYTES];
  size_t got = 0;
  int32_t received = 0;
  bool extra = false;
  status = core_guard_check(g);
  while (status == LLMDD_SUCCESS && got < sizeof answer) {
    union {
      struct cmsghdr align;
      uint8_t buf[CMSG_SPACE(sizeof(int) * (MAX_DEVICES + 1))];
    } control;
    struct iovec iov = {answer + got, sizeof answer - got};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof control.buf};
    ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      status = core_fail(LLMDD_LINK_FAILED, "the engine of cluster %llu did not send its pools",
                         cluster);
      break;
    }
    got += (size_t)n;
    /* Every descriptor that came is taken (and closed on any failure), even
     * ones that were not expected: none may leak into this process. */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int passed;
        memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        if (received < num_devices) fds[received++] = passed;
        else if (page_fd < 0) page_fd = passed;
        else {
          close(passed);
          extra = true;
        }
      }
    }
    if ((m.msg_flags & MSG_CTRUNC) != 0) extra = true;
    status = core_guard_check(g);
  }
  close(fd);
  if (status == LLMDD_SUCCESS &&
      (get32(answer) != LOCAL_MAGIC || (int32_t)get32(answer + 4) != LLMDD_SUCCESS ||
       get32(answer + 8) != (uint32_t)num_devices || received != num_devices || extra ||
       get32(answer + 12) > 1 || (get32(answer + 12) == 1) != (page_fd >= 0)))
    status = core_fail(LLMDD_LINK_FAILED,
                       "the engine of cluster %llu answered with %d pool descriptors for %d"
                       " devices (status 0x%08x)",
                       cluster, (int)received, (int)num_devices, (unsigned)get32(answer + 4));
  if (status != LLMDD_SUCCESS) {
    close_all(fds, num_devices);
    if (page_fd >= 0) close(page_fd);
    return status;
  }
  *out_pool_bytes = get64(answer + 16);
  *out_page_fd = page_fd;
  return LLMDD_SUCCESS;
}
