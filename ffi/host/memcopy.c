#define _DEFAULT_SOURCE 1
#include "memcopy.h"

#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __x86_64__
#include <emmintrin.h>
#endif

/* Why `rep movsb` from REP_MOVSB_MIN_BYTES (on CPUs with ERMS): glibc 2.36's
 * memcpy stops using it above the L2 size on AMD and runs a vector loop, which
 * copies 1 MiB between cached buffers in 21-25 us on the bench machine (AMD
 * EPYC, ERMS + FSRM), where `rep movsb` takes 18 (and JavaScript's
 * TypedArray.set 20-22): a repeat pull of 1 MiB was 60-69 % of the JavaScript
 * copy with memcpy. From 4 KiB to 256 KiB the two measure the same; calls here
 * are at most one chunk (1 MiB), and pulls of 4 MiB and more stream. */
#define REP_MOVSB_MIN_BYTES ((uint64_t)512 << 10)

#ifdef __x86_64__
#include <cpuid.h>
static bool has_erms(void) {
  static int known = -1; /* racing first calls compute the same answer */
  if (known < 0) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    known = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 9)) != 0;
  }
  return known == 1;
}
#endif

void host_copy_plain(uint8_t *dst, const uint8_t *src, uint64_t n) {
#ifdef __x86_64__
  if (n >= REP_MOVSB_MIN_BYTES && has_erms()) {
    size_t count = (size_t)n;
    __asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(count) : : "memory");
    return;
  }
#endif
  memcpy(dst, src, (size_t)n);
}

/* Why prefault (PREFAULT_MIN_BYTES): the caller's buffer for a large read is
 * usually brand-new pages (V8 takes big buffers from calloc); taking the faults
 * one page at a time inside memcpy made a 64 MiB read 10-25 % slower than a
 * plain copy in JavaScript. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Faults in the whole pages of [dst, dst + n) for writing, unless the first is
 * already resident (then the memory was reused and populating costs time).
 * Best effort: on older kernels madvise fails and memcpy takes the faults. */
static void prefault(uint8_t *dst, uint64_t n) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)dst + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)dst + n) & ~(page - 1);
  unsigned char resident = 0;
  if (end <= start) return;
  if (mincore((void *)start, page, &resident) == 0 && (resident & 1)) return;
  (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

void host_copy_prefaulted(uint8_t *dst, const uint8_t *src, uint64_t n) {
  prefault(dst, n);
  memcpy(dst, src, (size_t)n);
}

/* Why stream (STREAM_COPY_BYTES): glibc's memcpy switches to non-temporal
 * stores only within one call of at least x86.cpu_features.non_temporal_threshold
 * (240 MiB on the bench machine), which a copy in LLMDD_COPY_CHUNK_BYTES chunks
 * never makes: without them every destination line is first read
 * (write-allocate), a third more memory traffic. */
void host_copy_streaming(uint8_t *dst, const uint8_t *src, uint64_t n) {
#ifdef __x86_64__
  /* SSE2 is always there on x86-64. */
  for (; n > 0 && ((uintptr_t)dst & 15) != 0; n--) *dst++ = *src++;
  for (; n >= 64; n -= 64, dst += 64, src += 64) {
    __m128i a = _mm_loadu_si128((const __m128i *)src);
    __m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
    __m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
    __m128i d = _mm_loadu_si128((const __m128i *)(src + 48));
    _mm_stream_si128((__m128i *)dst, a);
    _mm_stream_si128((__m128i *)(dst + 16), b);
    _mm_stream_si128((__m128i *)(dst + 32), c);
    _mm_stream_si128((__m128i *)(dst + 48), d);
  }
#endif
  if (n > 0) memcpy(dst, src, (size_t)n);
}

void host_copy_streaming_end(void) {
#ifdef __x86_64__
  _mm_sfence();
#endif
}

struct core_progress host_progress_start(const struct core_guard *g, uint64_t total,
                                         const char *verb, bool shareable) {
  const bool stream = total >= STREAM_COPY_BYTES;
  struct core_progress p =
      core_progress_start(g, stream ? host_copy_streaming : host_copy_plain, total, verb);
  p.shareable = shareable;
  if (stream) p.copy_end = host_copy_streaming_end;
  return p;
}

void host_progress_end(const struct core_progress *p) {
  if (p->copy == host_copy_streaming) host_copy_streaming_end();
}
