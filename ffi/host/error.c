#define _DEFAULT_SOURCE 1
#include "error.h"

#include <stdio.h>
#include <string.h>

#include "llmdd.h"

/* Thread-local, like errno: the TypeScript side reads the message right after the
 * failing call on the same thread, and other threads' failures must not clobber it. */
static _Thread_local char tl_message[ERROR_MESSAGE_CAP];
static _Thread_local int32_t tl_length;

int32_t format_message(char *buf, const char *fmt, va_list ap) {
  int n = vsnprintf(buf, ERROR_MESSAGE_CAP, fmt, ap);
  if (n < 0) {
    buf[0] = '\0';
    return 0;
  }
  return n < ERROR_MESSAGE_CAP ? (int32_t)n : ERROR_MESSAGE_CAP - 1;
}

int32_t fail(int32_t status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tl_length = format_message(tl_message, fmt, ap);
  va_end(ap);
  return status;
}

const char *errno_text(int err, char buf[ERRNO_TEXT_CAP]) {
  if (strerror_r(err, buf, ERRNO_TEXT_CAP) != 0) snprintf(buf, ERRNO_TEXT_CAP, "errno %d", err);
  return buf;
}

void error_keep(struct kept_error *k) {
  k->length = tl_length;
  memcpy(k->text, tl_message, (size_t)tl_length + 1);
}

void error_restore(const struct kept_error *k) {
  tl_length = k->length;
  memcpy(tl_message, k->text, (size_t)k->length + 1);
}

const char *last_error_text(int32_t *len) {
  *len = tl_length;
  return tl_message;
}

int32_t copy_message_out(const char *msg, int32_t len, uint8_t *buf, int32_t cap) {
  if (buf != NULL && cap > 0) {
    int32_t n = len < cap - 1 ? len : cap - 1;
    memcpy(buf, msg, (size_t)n);
    buf[n] = '\0';
  }
  return len;
}

LLMDD_API int32_t llmdd_last_error(uint8_t *buf, int32_t cap) {
  return copy_message_out(tl_message, tl_length, buf, cap);
}
