#define _GNU_SOURCE 1 /* getrandom */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "llmdd.h"
#include "rundir.h"

int32_t host_auth_nonce(uint8_t out[AUTH_NONCE_BYTES]) {
  size_t got = 0;
  while (got < AUTH_NONCE_BYTES) {
    ssize_t n = getrandom(out + got, AUTH_NONCE_BYTES - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      char text[CORE_ERRNO_TEXT_CAP];
      return core_fail(LLMDD_FAILED, "no random bytes for a link: %s", core_errno_text(errno, text));
    }
    got += (size_t)n;
  }
  return LLMDD_SUCCESS;
}

/* Reads the user's key, checking that it is a regular file of this user that
 * nobody else can read, of exactly the key's size. */
static int32_t read_user_key(int fd, const char *path, struct link_key *out) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 0077) != 0 || st.st_size != AUTH_USER_KEY_BYTES)
    return core_fail(LLMDD_FAILED,
                     "%s is not this user's link key (a %d-byte file of uid %u, mode 0600):"
                     " remove it and an engine makes a new one",
                     path, AUTH_USER_KEY_BYTES, (unsigned)geteuid());
  if (pread(fd, out->bytes, AUTH_USER_KEY_BYTES, 0) != AUTH_USER_KEY_BYTES)
    return core_fail(LLMDD_FAILED, "cannot read the link key %s", path);
  out->len = AUTH_USER_KEY_BYTES;
  return LLMDD_SUCCESS;
}

static int32_t user_key(struct link_key *out) {
  char path[RUNDIR_PATH_CAP], text[CORE_ERRNO_TEXT_CAP];
  int32_t status = host_rundir_path("key", path);
  if (status != LLMDD_SUCCESS) return status;
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      status = read_user_key(fd, path, out);
      close(fd);
      /* Another engine may be writing it right now (made, not yet filled). */
      if (status == LLMDD_SUCCESS || attempt == 99) return status;
      usleep(1000);
      continue;
    }
    if (errno != ENOENT)
      return core_fail(LLMDD_FAILED, "cannot open the link key %s: %s", path,
                       core_errno_text(errno, text));
    /* Made under a temporary name, filled, then linked into place: a reader
     * never sees a partial key, and two engines racing agree on one key. */
    char temp[RUNDIR_PATH_CAP + 16];
    uint8_t key[AUTH_USER_KEY_BYTES];
    status = host_auth_nonce(key);
    if (status != LLMDD_SUCCESS) return status;
    snprintf(temp, sizeof temp, "%s.%d", path, (int)getpid());
    int w = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (w < 0)
      return core_fail(LLMDD_FAILED, "cannot make the link key %s: %s", temp,
                       core_errno_text(errno, text));
    bool written = write(w, key, sizeof key) == (ssize_t)sizeof key && fsync(w) == 0;
    close(w);
    memset(key, 0, sizeof key);
    if (written) link(temp, path); /* EEXIST: another engine won; read theirs */
    unlink(temp);
  }
  return core_fail(LLMDD_FAILED, "cannot make the link key %s", path);
}

int32_t host_auth_key(const uint8_t *secret, int32_t secret_len, struct link_key *out) {
  memset(out, 0, sizeof *out);
  if (secret_len > 0) {
    if (secret_len > AUTH_KEY_CAP) secret_len = AUTH_KEY_CAP; /* the parser limits it */
    memcpy(out->bytes, secret, (size_t)secret_len);
    out->len = secret_len;
    out->from_secret = true;
    return LLMDD_SUCCESS;
  }
  return user_key(out);
}

static void mac(const struct link_key *k, const char *label, const uint8_t *nonce_d,
                const uint8_t *nonce_p, uint8_t out[AUTH_MAC_BYTES]) {
  struct core_bytes parts[3] = {{label, strlen(label)},
                                {nonce_d, AUTH_NONCE_BYTES},
                                {nonce_p, AUTH_NONCE_BYTES}};
  core_hmac_sha256(k->bytes, (size_t)k->len, parts, 3, out);
}

void host_auth_prompt_mac(const struct link_key *k, const uint8_t nonce_d[AUTH_NONCE_BYTES],
                          const uint8_t nonce_p[AUTH_NONCE_BYTES], uint8_t out[AUTH_MAC_BYTES]) {
  mac(k, "llmdd prompt", nonce_d, nonce_p, out);
}

void host_auth_decoder_mac(const struct link_key *k, const uint8_t nonce_d[AUTH_NONCE_BYTES],
                           const uint8_t nonce_p[AUTH_NONCE_BYTES], uint8_t out[AUTH_MAC_BYTES]) {
  mac(k, "llmdd decoder", nonce_d, nonce_p, out);
}
