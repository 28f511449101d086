/* Who may link: the key a link is authenticated with, and the challenge and
 * response that prove both ends hold it before anything else is said.
 *
 * The key is the engine's llmdd.linkSecret when one is set; otherwise the
 * user's own link key: 32 random bytes in the user's private directory
 * (rundir.h, "key", mode 0600), made by the first engine that needs it. Only
 * processes of that user (and root) can read it, so without configuration a
 * link succeeds between engines of one user on one machine, and nobody else
 * gets past the first message.
 *
 * The exchange (messages in proto.h), with fresh 32-byte nonces from both sides
 * and HMAC-SHA-256 (core/sha256.h):
 *   DECODER → AUTH        nonce_d
 *   PROMPT  → CHALLENGE   nonce_p, HMAC(key, "llmdd prompt"  || nonce_d || nonce_p)
 *   DECODER → PROOF       HMAC(key, "llmdd decoder" || nonce_d || nonce_p)
 * The PROMPT answers nothing else (not even HELLO) until the proof checks out,
 * and closes the connection on a wrong one. The DECODER checks the PROMPT's MAC
 * before it sends its proof or anything else, so it never talks to a peer that
 * does not hold the key either. The labels keep one side's MAC from serving as
 * the other's; the nonces keep an old exchange from being replayed. */
#ifndef LLMDD_HOST_AUTH_H
#define LLMDD_HOST_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sha256.h"

#define AUTH_NONCE_BYTES 32
#define AUTH_MAC_BYTES CORE_SHA256_BYTES
#define AUTH_KEY_CAP 256
#define AUTH_USER_KEY_BYTES 32

struct link_key {
  uint8_t bytes[AUTH_KEY_CAP];
  int32_t len;
  bool from_secret; /* llmdd.linkSecret, not the user's key (for messages) */
};

/* The key of an engine: its secret if it has one, else the user's key (made if
 * missing). Returns SUCCESS, or FAILED with a message. */
int32_t host_auth_key(const uint8_t *secret, int32_t secret_len, struct link_key *out);

/* Fresh random bytes (getrandom). Returns SUCCESS or FAILED with a message. */
int32_t host_auth_nonce(uint8_t out[AUTH_NONCE_BYTES]);

/* The two MACs of an exchange. */
void host_auth_prompt_mac(const struct link_key *k, const uint8_t nonce_d[AUTH_NONCE_BYTES],
                          const uint8_t nonce_p[AUTH_NONCE_BYTES], uint8_t out[AUTH_MAC_BYTES]);
void host_auth_decoder_mac(const struct link_key *k, const uint8_t nonce_d[AUTH_NONCE_BYTES],
                           const uint8_t nonce_p[AUTH_NONCE_BYTES], uint8_t out[AUTH_MAC_BYTES]);

#endif
