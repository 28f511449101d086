#define _GNU_SOURCE 1 /* POLLRDHUP */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "llmdd.h"

int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct guard guard_for(int64_t timeout_ms, const char *doing) {
  return (struct guard){.wake_fd = -1, .until_ns = monotonic_ns() + timeout_ms * 1000000,
                        .doing = doing};
}

int32_t guard_check(const struct guard *g) {
  if (g->stop != NULL && atomic_load_explicit(g->stop, memory_order_relaxed))
    return fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized while %s", g->doing);
  if (g->job != NULL) {
    if (atomic_load_explicit(&g->job->cancelled, memory_order_relaxed))
      return fail(LLMDD_FAILED, "cancelled");
    if (g->job->deadline_ns != INT64_MAX && monotonic_ns() >= g->job->deadline_ns)
      return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "the job's deadline passed while %s", g->doing);
  }
  if (g->until_ns != INT64_MAX && monotonic_ns() >= g->until_ns)
    return fail(LLMDD_WAIT_PROCESS_TIMEOUT, "timed out while %s", g->doing);
  return LLMDD_SUCCESS;
}

/* How long one poll() may sleep: until the nearest limit, and no longer than a
 * slice when something that cannot wake poll (cancel, finalize) must be seen. */
static int poll_timeout_ms(const struct guard *g) {
  int64_t limit = g->until_ns;
  if (g->job != NULL && g->job->deadline_ns < limit) limit = g->job->deadline_ns;
  int timeout = -1;
  if (limit != INT64_MAX) {
    int64_t left = limit - monotonic_ns();
    int64_t ms = left <= 0 ? 0 : (left + 999999) / 1000000;
    timeout = ms > NET_SLICE_MS ? NET_SLICE_MS : (int)ms;
  }
  if ((g->job != NULL || g->stop != NULL) && (timeout < 0 || timeout > NET_SLICE_MS))
    timeout = NET_SLICE_MS;
  return timeout;
}

int32_t net_wait(int fd, short events, const struct guard *g) {
  for (;;) {
    int32_t status = guard_check(g);
    if (status != LLMDD_SUCCESS) return status;
    struct pollfd p[2] = {{fd, events, 0}, {g->wake_fd, POLLIN, 0}};
    int n = poll(p, g->wake_fd >= 0 ? 2 : 1, poll_timeout_ms(g));
    if (n < 0 && errno != EINTR) {
      char text[ERRNO_TEXT_CAP];
      return fail(LLMDD_FAILED, "poll failed while %s: %s", g->doing, errno_text(errno, text));
    }
    if (n <= 0) continue;
    if (g->wake_fd >= 0 && p[1].revents != 0)
      return fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized while %s", g->doing);
    if (p[0].revents != 0) return LLMDD_SUCCESS;
  }
}

bool net_peer_gone(int fd) {
  struct pollfd p = {fd, POLLRDHUP, 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  return n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

void net_set_nodelay(int fd) {
  /* Requests and answers are small and each waits for the other: Nagle's
   * algorithm would hold a request back for the previous one's delayed ACK. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int net_parse_address(const char *text, int32_t len, struct sockaddr_in *out) {
  const char *colon = NULL;
  for (int32_t i = 0; i < len; i++)
    if (text[i] == ':') colon = &text[i];
  if (colon == NULL) return -1;
  int32_t host_len = (int32_t)(colon - text);
  int32_t port_len = len - host_len - 1;
  if (host_len < 7 || host_len > 15 || port_len < 1 || port_len > 5) return -1;
  char host[16];
  memcpy(host, text, (size_t)host_len);
  host[host_len] = '\0';
  struct in_addr ip;
  if (inet_pton(AF_INET, host, &ip) != 1) return -1;
  uint32_t port = 0;
  for (int32_t i = 0; i < port_len; i++) {
    char c = colon[1 + i];
    if (c < '0' || c > '9') return -1;
    port = port * 10 + (uint32_t)(c - '0');
  }
  if (port > 65535) return -1;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_addr = ip;
  out->sin_port = htons((uint16_t)port);
  return 0;
}

void net_format_address(const struct sockaddr_in *a, char out[NET_ADDRESS_TEXT]) {
  char host[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  snprintf(out, NET_ADDRESS_TEXT, "%s:%u", host, (unsigned)ntohs(a->sin_port));
}

int32_t net_listen(const struct sockaddr_in *addr, int *out_fd, uint16_t *out_port) {
  char where[NET_ADDRESS_TEXT], text[ERRNO_TEXT_CAP];
  net_format_address(addr, where);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return fail(LLMDD_FAILED, "cannot create a socket to listen on %s: %s", where,
                errno_text(errno, text));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in bound;
  socklen_t bound_len = sizeof bound;
  if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
    int err = errno;
    close(fd);
    return fail(LLMDD_FAILED, "cannot listen on %s: %s", where, errno_text(err, text));
  }
  *out_fd = fd;
  *out_port = ntohs(bound.sin_port);
  return LLMDD_SUCCESS;
}

int32_t net_connect(const struct sockaddr_in *addr, const struct guard *g, int *out_fd) {
  char where[NET_ADDRESS_TEXT], text[ERRNO_TEXT_CAP];
  net_format_address(addr, where);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return fail(LLMDD_LINK_FAILED, "cannot create a socket to connect to %s: %s", where,
                errno_text(errno, text));
  int err = 0;
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      int32_t status = net_wait(fd, POLLOUT, g);
      if (status != LLMDD_SUCCESS) {
        close(fd);
        return status;
      }
      socklen_t len = sizeof err;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
  }
  if (err != 0) {
    close(fd);
    return fail(LLMDD_LINK_FAILED, "cannot connect to %s: %s", where, errno_text(err, text));
  }
  net_set_nodelay(fd);
  *out_fd = fd;
  return LLMDD_SUCCESS;
}
