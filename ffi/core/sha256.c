#include "sha256.h"

#include <string.h>

/* FIPS 180-4 §4.2.2: the first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* One 64-byte block into the state (FIPS 180-4 §6.2.2). */
static void compress(uint32_t s[8], const uint8_t *block) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++)
    w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
           (uint32_t)block[4 * t + 2] << 8 | (uint32_t)block[4 * t + 3];
  for (int t = 16; t < 64; t++) {
    uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
  for (int t = 0; t < 64; t++) {
    uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
    uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  s[0] += a, s[1] += b, s[2] += c, s[3] += d, s[4] += e, s[5] += f, s[6] += g, s[7] += h;
}

void core_sha256_init(struct core_sha256 *h) {
  /* FIPS 180-4 §5.3.3: square roots of the first 8 primes. */
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(h->state, iv, sizeof iv);
  h->length = 0;
  h->used = 0;
}

void core_sha256_update(struct core_sha256 *h, const void *data, size_t len) {
  const uint8_t *p = data;
  h->length += len;
  while (len > 0) {
    size_t take = CORE_SHA256_BLOCK - h->used;
    if (take > len) take = len;
    memcpy(h->block + h->used, p, take);
    h->used += take;
    p += take;
    len -= take;
    if (h->used == CORE_SHA256_BLOCK) {
      compress(h->state, h->block);
      h->used = 0;
    }
  }
}

void core_sha256_final(struct core_sha256 *h, uint8_t out[CORE_SHA256_BYTES]) {
  /* Padding (§5.1.1): a 1 bit, zeros, then the length in bits, big-endian. */
  uint64_t bits = h->length * 8;
  uint8_t pad = 0x80;
  core_sha256_update(h, &pad, 1);
  uint8_t zero = 0;
  while (h->used != CORE_SHA256_BLOCK - 8) core_sha256_update(h, &zero, 1);
  uint8_t len_be[8];
  for (int i = 0; i < 8; i++) len_be[i] = (uint8_t)(bits >> (56 - 8 * i));
  core_sha256_update(h, len_be, 8);
  for (int i = 0; i < 8; i++) {
    out[4 * i] = (uint8_t)(h->state[i] >> 24);
    out[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
    out[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
    out[4 * i + 3] = (uint8_t)h->state[i];
  }
  memset(h, 0, sizeof *h);
}

void core_hmac_sha256(const void *key, size_t key_len, const struct core_bytes *parts,
                      int num_parts, uint8_t out[CORE_SHA256_BYTES]) {
  /* RFC 2104: keys longer than a block are hashed first; then
   * H((K ^ opad) || H((K ^ ipad) || message)). */
  uint8_t k[CORE_SHA256_BLOCK] = {0}, pad[CORE_SHA256_BLOCK], inner[CORE_SHA256_BYTES];
  struct core_sha256 h;
  if (key_len > CORE_SHA256_BLOCK) {
    core_sha256_init(&h);
    core_sha256_update(&h, key, key_len);
    core_sha256_final(&h, k);
  } else if (key_len > 0) {
    memcpy(k, key, key_len);
  }
  for (int i = 0; i < CORE_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x36;
  core_sha256_init(&h);
  core_sha256_update(&h, pad, sizeof pad);
  for (int i = 0; i < num_parts; i++) core_sha256_update(&h, parts[i].p, parts[i].n);
  core_sha256_final(&h, inner);
  for (int i = 0; i < CORE_SHA256_BLOCK; i++) pad[i] = k[i] ^ 0x5c;
  core_sha256_init(&h);
  core_sha256_update(&h, pad, sizeof pad);
  core_sha256_update(&h, inner, sizeof inner);
  core_sha256_final(&h, out);
  memset(k, 0, sizeof k);
  memset(pad, 0, sizeof pad);
}

int core_equal_secret(const uint8_t *a, const uint8_t *b, size_t n) {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (uint8_t)(a[i] ^ b[i]);
  return diff == 0;
}
