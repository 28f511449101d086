/* Sockets of the control path (links between engines): addresses, listening,
 * connecting, and waits bounded by a guard (core/guard.h).
 *
 * Every wait on a socket is bounded: by the job's deadline and cancel flag, the
 * engine's finalize, a wake fd, or a limit of its own. Waits that cannot be woken
 * by a file descriptor poll in slices of CORE_WAIT_SLICE_MS, so a cancel or
 * finalize is seen within that. Sockets are non-blocking and close-on-exec, and
 * every send passes MSG_NOSIGNAL: a peer that died never raises SIGPIPE in this
 * process. */
#ifndef LLMDD_HOST_NET_H
#define LLMDD_HOST_NET_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/guard.h"

/* "255.255.255.255:65535" and a NUL. */
#define NET_ADDRESS_TEXT 24

/* Parses "a.b.c.d:port" (dotted decimal, port 0..65535, nothing else). Returns 0,
 * or -1 when malformed. */
int host_net_parse_address(const char *text, int32_t len, struct sockaddr_in *out);
void host_net_format_address(const struct sockaddr_in *a, char out[NET_ADDRESS_TEXT]);

/* Whether a is in 127.0.0.0/8 (reachable from this machine only). */
bool host_net_is_loopback(const struct sockaddr_in *a);

/* Listens on addr (SO_REUSEADDR, so a restart after a crash finds its port).
 * Returns SUCCESS with the socket and the port it got, or FAILED with a message. */
int32_t host_net_listen(const struct sockaddr_in *addr, int *out_fd, uint16_t *out_port);

/* Connects within the guard. Returns SUCCESS with a connected socket
 * (TCP_NODELAY), LINK_FAILED when the connection is refused or fails, or the
 * guard's status. */
int32_t host_net_connect(const struct sockaddr_in *addr, const struct core_guard *g, int *out_fd);

/* Waits until fd reports one of events (or an error or hang-up, which the next
 * call on it will report), or until wake_fd (-1 for none) is readable: a server
 * shutting down. Returns SUCCESS, ENGINE_FINALIZED (woken) or the guard's status. */
int32_t host_net_wait(int fd, short events, const struct core_guard *g, int wake_fd);

/* Whether the peer has closed or reset the connection (does not wait, reads
 * nothing: data waiting to be read does not count). */
bool host_net_peer_gone(int fd);

void host_net_set_nodelay(int fd);

#endif
