/* The one chunked copy loop: a long copy moves LLMDD_COPY_CHUNK_BYTES at a
 * time and checks its guard between chunks (and before the first), so a cancel,
 * a deadline or a finalize stops it within one chunk. What moves the bytes of a
 * chunk (memcpy, non-temporal stores, a device copy) is the backend's choice. */
#ifndef LLMDD_CORE_COPY_H
#define LLMDD_CORE_COPY_H

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

#ifdef __cplusplus
}
#endif

#endif
