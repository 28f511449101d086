/* The Unix socket of a PROMPT (or MIX) engine that listens for links: where a
 * DECODER of the same user, once linked over TCP, receives the pools as file
 * descriptors (SCM_RIGHTS) instead of finding them by name.
 *
 * The socket is <cluster id>.sock in the user's private directory (rundir.h),
 * where no other account can create anything; both ends also check the other's
 * credentials (SO_PEERCRED): same user only, and the DECODER checks that the
 * process answering is the one that answered its authenticated HELLO (its pid).
 *
 * One request and one answer per connection, then it closes:
 *   request  u32 magic LOCAL_MAGIC, u32 version 1, u64 cluster id        (16)
 *   answer   u32 magic, i32 status, u32 n, u32 page, u64 pool bytes      (24)
 *            with n read-only descriptors of the pools, in device order, then
 *            (page = 1) the read-only descriptor of the generation page (fast.h) */
#ifndef LLMDD_HOST_LOCAL_H
#define LLMDD_HOST_LOCAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/guard.h"

struct pool;

/* Binds and listens on the engine's socket (non-blocking). The caller owns the
 * cluster id, so whatever socket file is there is stale. Returns SUCCESS with
 * the socket, or FAILED with a message. */
int32_t host_local_listen(uint64_t cluster_id, int *out_fd);

/* Whether the process at the other end of a connected Unix socket runs as this
 * user; writes its uid and pid. */
int host_local_peer(int fd, uid_t *out_uid, pid_t *out_pid);

/* Serves one connection (PROMPT side): waits for the request under g (or until
 * wake_fd is readable), checks it names cluster_id, and answers with the pools'
 * read-only descriptors (read-write ones when `writable`: the engine enabled
 * remote cache access, so linked peers may push into its pools). Returns SUCCESS or the reason it gave up. */
int32_t host_local_serve(int fd, uint64_t cluster_id, const struct pool *pools,
                         int32_t num_devices, uint64_t pool_bytes, bool writable, int page_fd,
                         const struct core_guard *g, int wake_fd);

/* DECODER side: connects to the socket of cluster_id in this user's private
 * directory, checks that the process answering is prompt_pid of this user, and
 * receives num_devices descriptors into fds (closed by the caller), the pool
 * size, and the generation page's descriptor (-1 when none was sent; closed by
 * the caller). Returns SUCCESS, or LINK_FAILED / the guard's status with a
 * message. */
int32_t host_local_fetch(uint64_t cluster_id, pid_t prompt_pid, int32_t num_devices, int *fds,
                         uint64_t *out_pool_bytes, int *out_page_fd,
                         const struct core_guard *g);

#endif
