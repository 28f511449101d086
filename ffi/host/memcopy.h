/* How the host backend moves the bytes of one chunk (core_copy_fn): which of
 * these a copy uses depends on its size and destination, and each choice rests
 * on a measurement written beside it. */
#ifndef LLMDD_HOST_MEMCOPY_H
#define LLMDD_HOST_MEMCOPY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/copy.h"

/* Reads of at least this size into fresh memory are faulted in ahead of each
 * chunk (host_copy_prefaulted). */
#define PREFAULT_MIN_BYTES ((uint64_t)4 << 20)

/* Pulls of at least this many bytes in all are copied with non-temporal stores
 * (host_copy_streaming). */
#define STREAM_COPY_BYTES ((uint64_t)4 << 20)

/* memcpy. */
void host_copy_plain(uint8_t *dst, const uint8_t *src, uint64_t n);

/* memcpy into memory whose pages are faulted in first, when they are new. */
void host_copy_prefaulted(uint8_t *dst, const uint8_t *src, uint64_t n);

/* memcpy that bypasses the caches for the destination; call
 * host_copy_streaming_end() once after the last chunk. */
void host_copy_streaming(uint8_t *dst, const uint8_t *src, uint64_t n);

/* Makes streamed stores visible before the copy is reported done. */
void host_copy_streaming_end(void);

/* Progress over `total` bytes of host memory copied by this process: streamed
 * from STREAM_COPY_BYTES, else memcpy; `shareable` lets the copy helper take
 * part (core_copy_ranges), for copies between memory mapped here. */
struct core_progress host_progress_start(const struct core_guard *g, uint64_t total,
                                         const char *verb, bool shareable);

/* After the copies of host_progress_start's progress: the fence streamed stores need. */
void host_progress_end(const struct core_progress *p);

#endif
