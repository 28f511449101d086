#define _DEFAULT_SOURCE 1
#include "error.h"

#include <stdio.h>
#include <string.h>

#include "llmdd.h"

/* Thread-local, like errno: the TypeScript side reads the message right after the
 * failing call on the same thread, and other threads' failures must not clobber it. */
static _Thread_local char tl_message[CORE_MESSAGE_CAP];
static _Thread_local int32_t tl_length;

int32_t core_failv(int32_t status, const char *fmt, va_list ap) {
  int n = vsnprintf(tl_message, CORE_MESSAGE_CAP, fmt, ap);
  if (n < 0) tl_message[0] = '\0';
  tl_length = n < 0 ? 0 : n < CORE_MESSAGE_CAP ? (int32_t)n : CORE_MESSAGE_CAP - 1;
  return status;
}

int32_t core_fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  core_failv(status, fmt, ap);
  va_end(ap);
  return status;
}

const char *core_errno_text(int err, char buf[CORE_ERRNO_TEXT_CAP]) {
  if (strerror_r(err, buf, CORE_ERRNO_TEXT_CAP) != 0)
    snprintf(buf, CORE_ERRNO_TEXT_CAP, "errno %d", err);
  return buf;
}

void core_error_keep(struct core_kept_error *k) {
  k->length = tl_length;
  memcpy(k->text, tl_message, (size_t)tl_length + 1);
}

void core_error_restore(const struct core_kept_error *k) {
  tl_length = k->length;
  memcpy(tl_message, k->text, (size_t)k->length + 1);
}

const char *core_last_error_text(int32_t *len) {
  *len = tl_length;
  return tl_message;
}

int32_t core_copy_message_out(const char *msg, int32_t len, uint8_t *buf, int32_t cap) {
  if (buf != NULL && cap > 0) {
    int32_t n = len < cap - 1 ? len : cap - 1;
    memcpy(buf, msg, (size_t)n);
    buf[n] = '\0';
  }
  return len;
}

LLMDD_API int32_t llmdd_last_error(uint8_t *buf, int32_t cap) {
  return core_copy_message_out(tl_message, tl_length, buf, cap);
}
