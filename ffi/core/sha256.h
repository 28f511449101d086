/* SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), for authenticating links:
 * small, dependency-free, and tested against the standards' own vectors
 * (ffi/test/test_security.c). Not built for speed: a link hashes a few hundred
 * bytes once. */
#ifndef LLMDD_CORE_SHA256_H
#define LLMDD_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORE_SHA256_BYTES 32
#define CORE_SHA256_BLOCK 64

struct core_sha256 {
  uint32_t state[8];
  uint64_t length; /* bytes hashed so far */
  uint8_t block[CORE_SHA256_BLOCK];
  size_t used; /* bytes waiting in block */
};

void core_sha256_init(struct core_sha256 *h);
void core_sha256_update(struct core_sha256 *h, const void *data, size_t len);
void core_sha256_final(struct core_sha256 *h, uint8_t out[CORE_SHA256_BYTES]);

/* HMAC-SHA-256 of the concatenation of `parts` byte strings under key. */
struct core_bytes {
  const void *p;
  size_t n;
};
void core_hmac_sha256(const void *key, size_t key_len, const struct core_bytes *parts,
                      int num_parts, uint8_t out[CORE_SHA256_BYTES]);

/* Whether a and b hold the same n bytes, in time that does not depend on where
 * they differ (a MAC compared byte by byte early-out leaks it to a timer). */
int core_equal_secret(const uint8_t *a, const uint8_t *b, size_t n);

#ifdef __cplusplus
}
#endif

#endif
