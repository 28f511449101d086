/* The calling thread's last error message, and the copy-out rule shared with
 * job messages. */
#ifndef LLMDD_HOST_ERROR_H
#define LLMDD_HOST_ERROR_H

#include <stdarg.h>
#include <stdint.h>

/* Longest message kept; longer ones are truncated when stored. Messages name one
 * argument and its value, so this is far more than they need. */
#define ERROR_MESSAGE_CAP 512

/* Stores a formatted message as the thread's last error and returns status, so a
 * failure reads `return fail(LLMDD_PARAM_INVALID, "...", ...);`. */
int32_t fail(int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* errno's text for messages (strerror_r into the caller's buffer: thread-safe). */
#define ERRNO_TEXT_CAP 64
const char *errno_text(int err, char buf[ERRNO_TEXT_CAP]);

/* Keeps the thread's last error across calls that may overwrite it (cleanup
 * after a failure must not replace the failure's message). */
struct kept_error {
  int32_t length;
  char text[ERROR_MESSAGE_CAP];
};
void error_keep(struct kept_error *k);
void error_restore(const struct kept_error *k);

/* The thread's last error as stored (for copying it into a job). */
const char *last_error_text(int32_t *len);

/* Formats into a fixed buffer of ERROR_MESSAGE_CAP bytes; returns the stored length. */
int32_t format_message(char *buf, const char *fmt, va_list ap);

/* llmdd_last_error()'s copy-out contract: NUL-terminated, truncated to cap-1 bytes,
 * returns the full length. */
int32_t copy_message_out(const char *msg, int32_t len, uint8_t *buf, int32_t cap);

#endif
