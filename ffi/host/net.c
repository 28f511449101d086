#define _GNU_SOURCE 1 /* POLLRDHUP */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "llmdd.h"

int32_t host_net_wait(int fd, short events, const struct core_guard *g, int wake_fd) {
  for (;;) {
    int32_t status = core_guard_check(g);
    if (status != LLMDD_SUCCESS) return status;
    struct pollfd p[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = poll(p, wake_fd >= 0 ? 2 : 1, core_guard_sleep_ms(g));
    if (n < 0 && errno != EINTR) {
      char text[CORE_ERRNO_TEXT_CAP];
      return core_fail(LLMDD_FAILED, "poll failed while %s: %s", g->doing,
                       core_errno_text(errno, text));
    }
    if (n <= 0) continue;
    if (wake_fd >= 0 && p[1].revents != 0)
      return core_fail(LLMDD_ENGINE_FINALIZED, "the engine was finalized while %s", g->doing);
    if (p[0].revents != 0) return LLMDD_SUCCESS;
  }
}

bool host_net_peer_gone(int fd) {
  struct pollfd p = {fd, POLLRDHUP, 0};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  return n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

void host_net_set_nodelay(int fd) {
  /* Requests and answers are small and each waits for the other: Nagle's
   * algorithm would hold a request back for the previous one's delayed ACK. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int host_net_parse_address(const char *text, int32_t len, struct sockaddr_in *out) {
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

void host_net_format_address(const struct sockaddr_in *a, char out[NET_ADDRESS_TEXT]) {
  char host[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  snprintf(out, NET_ADDRESS_TEXT, "%s:%u", host, (unsigned)ntohs(a->sin_port));
}

bool host_net_is_loopback(const struct sockaddr_in *a) {
  return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
}

int32_t host_net_listen(const struct sockaddr_in *addr, int *out_fd, uint16_t *out_port) {
  char where[NET_ADDRESS_TEXT], text[CORE_ERRNO_TEXT_CAP];
  host_net_format_address(addr, where);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return core_fail(LLMDD_FAILED, "cannot create a socket to listen on %s: %s", where,
                     core_errno_text(errno, text));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in bound;
  socklen_t bound_len = sizeof bound;
  if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 64) != 0 ||
      getsockname(fd, (struct sockaddr *)&bound, &bound_len) != 0) {
    int err = errno;
    close(fd);
    return core_fail(LLMDD_FAILED, "cannot listen on %s: %s", where,
                     core_errno_text(err, text));
  }
  *out_fd = fd;
  *out_port = ntohs(bound.sin_port);
  return LLMDD_SUCCESS;
}

int32_t host_net_connect(const struct sockaddr_in *addr, const struct core_guard *g, int *out_fd) {
  char where[NET_ADDRESS_TEXT], text[CORE_ERRNO_TEXT_CAP];
  host_net_format_address(addr, where);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return core_fail(LLMDD_LINK_FAILED, "cannot create a socket to connect to %s: %s", where,
                     core_errno_text(errno, text));
  int err = 0;
  if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      int32_t status = host_net_wait(fd, POLLOUT, g, -1);
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
    return core_fail(LLMDD_LINK_FAILED, "cannot connect to %s: %s", where,
                     core_errno_text(err, text));
  }
  host_net_set_nodelay(fd);
  *out_fd = fd;
  return LLMDD_SUCCESS;
}
