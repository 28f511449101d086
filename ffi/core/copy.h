/* The one chunked copy loop: a long copy moves LLMDD_COPY_CHUNK_BYTES at a
 * time and checks its guard between chunks (and before the first), so a cancel,
 * a deadline or a finalize stops it within one chunk. What moves the bytes of a
 * chunk (memcpy, non-temporal stores, a device copy) is the backend's choice. */
#ifndef LLMDD_CORE_COPY_H
#define LLMDD_CORE_COPY_H

#include <stdbool.h>
#include <stdint.h>

#include "guard.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Moves one chunk (at most LLMDD_COPY_CHUNK_BYTES) from src to dst. */
typedef void (*core_copy_fn)(uint8_t *dst, const uint8_t *src, uint64_t n);

/* One operation's progress over all the ranges it copies. */
struct core_progress {
  const struct core_guard *guard;
  core_copy_fn copy;
  /* Whether the other side of a transfer is still there, asked between chunks
   * after the first (the caller has just heard from it before the first): SUCCESS
   * or the failure, with its message. NULL when there is no other side. */
  int32_t (*peer_check)(void *peer);
  void *peer;
  /* Whether `copy` may also run on the library's copy helper thread, side by
   * side with the caller (core_copy_ranges): true only for a copy between
   * host memory both threads can reach (memcpy, non-temporal stores), set by
   * the backend. copy_end, if any, is what the helper runs after its share
   * (the fence that makes non-temporal stores visible). */
  bool shareable;
  void (*copy_end)(void);
  const char *verb;     /* "copied", "pulled": what messages say of the bytes */
  uint64_t total;       /* bytes the whole operation moves, for messages */
  uint64_t copied;      /* bytes moved so far */
  uint64_t since_check; /* bytes moved since the last check */
};

/* Starts progress over `total` bytes; the first chunk is preceded by a check. */
struct core_progress core_progress_start(const struct core_guard *g, core_copy_fn copy,
                                         uint64_t total, const char *verb);

/* Checks now (and restarts the count to the next check): SUCCESS, or the status
 * that ends the operation with a message saying how far it got. */
int32_t core_progress_check(struct core_progress *p);

/* Copies n bytes in chunks, checking at every LLMDD_COPY_CHUNK_BYTES of the
 * operation's bytes. Returns SUCCESS or the status of the check that stopped it. */
int32_t core_copy_chunked(struct core_progress *p, uint8_t *dst, const uint8_t *src,
                          uint64_t n);

/* Where range i of a list goes (dst, src); false when range i moves nothing. */
typedef bool (*core_range_fn)(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src);

/* A copy of at least this many bytes in all is shared with the helper. Waking
 * a thread whose vCPU is idle takes 100-250 us on the bench machine, about what
 * 4 MiB take to copy: below that the helper would mostly arrive too late. */
#define CORE_SHARE_MIN_BYTES ((uint64_t)4 << 20)

/* Whether core_copy_ranges shares a list of `total` bytes with the helper. */
bool core_copy_shared(const struct core_progress *p, uint64_t total);

/* Copies `count` ranges of `bytes` each, as core_copy_chunked would one after
 * another. When p->shareable and the ranges hold at least CORE_SHARE_MIN_BYTES,
 * the copy helper (one thread of the library's) is offered the list too: the
 * ranges are cut into pieces of at most LLMDD_COPY_CHUNK_BYTES that the caller
 * and the helper claim in turn, so the caller never waits for the helper to
 * arrive. Only the caller checks (between its own chunks); when a check
 * fails the helper stops within one piece. Returns once the helper has left
 * the list: SUCCESS, or the status of the check that stopped it. */
int32_t core_copy_ranges(struct core_progress *p, core_range_fn range, void *ctx, uint64_t count,
                         uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif
