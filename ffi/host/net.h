/* Sockets of the control path (links between engines): addresses, listening,
 * connecting, and waits bounded by a guard.
 *
 * Every wait on a socket is bounded: by the job's deadline and cancel flag, the
 * engine's finalize, a stop fd, or a limit of its own. Waits that cannot be woken
 * by a file descriptor poll in slices of NET_SLICE_MS, so a cancel or finalize is
 * seen within that. Sockets are non-blocking and close-on-exec, and every send
 * passes MSG_NOSIGNAL: a peer that died never raises SIGPIPE in this process. */
#ifndef LLMDD_HOST_NET_H
#define LLMDD_HOST_NET_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "job.h"

#define NET_SLICE_MS 10

/* "255.255.255.255:65535" and a NUL. */
#define NET_ADDRESS_TEXT 24

/* What a wait gives up on, besides the socket becoming ready. Zeroed fields are
 * unused, except wake_fd (-1 for none) and until_ns (INT64_MAX for none). */
struct guard {
  struct job *job;          /* its deadline and cancel flag */
  const atomic_bool *stop;  /* the engine's `finalizing` */
  int wake_fd;              /* readable means stop (a server shutting down) */
  int64_t until_ns;         /* CLOCK_MONOTONIC limit of the wait itself */
  const char *doing;        /* "waiting for ...", for messages */
};

/* A guard that waits at most timeout_ms and nothing else. */
struct guard guard_for(int64_t timeout_ms, const char *doing);

/* SUCCESS while the wait may go on; otherwise the status that ends it, with a
 * last-error message: ENGINE_FINALIZED (stop or wake), FAILED ("cancelled"),
 * WAIT_PROCESS_TIMEOUT (the job's deadline or until_ns). */
int32_t guard_check(const struct guard *g);

int64_t monotonic_ns(void);

/* Parses "a.b.c.d:port" (dotted decimal, port 0..65535, nothing else). Returns 0,
 * or -1 when malformed. */
int net_parse_address(const char *text, int32_t len, struct sockaddr_in *out);
void net_format_address(const struct sockaddr_in *a, char out[NET_ADDRESS_TEXT]);

/* Listens on addr (SO_REUSEADDR, so a restart after a crash finds its port).
 * Returns SUCCESS with the socket and the port it got, or FAILED with a message. */
int32_t net_listen(const struct sockaddr_in *addr, int *out_fd, uint16_t *out_port);

/* Connects within the guard. Returns SUCCESS with a connected socket
 * (TCP_NODELAY), LINK_FAILED when the connection is refused or fails, or the
 * guard's status. */
int32_t net_connect(const struct sockaddr_in *addr, const struct guard *g, int *out_fd);

/* Waits until fd reports one of events (or an error or hang-up, which the next
 * call on it will report). Returns SUCCESS or the guard's status. */
int32_t net_wait(int fd, short events, const struct guard *g);

/* Whether the peer has closed or reset the connection (does not wait, reads
 * nothing: data waiting to be read does not count). */
bool net_peer_gone(int fd);

void net_set_nodelay(int fd);

#endif
