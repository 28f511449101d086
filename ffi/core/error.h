/* The calling thread's last error message, and the copy-out rule that
 * llmdd_last_error() and llmdd_job_message() share. */
#ifndef LLMDD_CORE_ERROR_H
#define LLMDD_CORE_ERROR_H

#include <stdarg.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest message kept; longer ones are truncated when stored. Messages name one
 * argument and its value, so this is far more than they need. */
#define CORE_MESSAGE_CAP 512

/* Stores a formatted message as the thread's last error and returns status, so a
 * failure reads `return core_fail(LLMDD_PARAM_INVALID, "...", ...);`. */
int32_t core_fail(int32_t status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* core_fail with a va_list (for wrappers, such as the C++ adapter's). */
int32_t core_failv(int32_t status, const char *fmt, va_list ap);

/* errno's text for messages (strerror_r into the caller's buffer: thread-safe). */
#define CORE_ERRNO_TEXT_CAP 64
const char *core_errno_text(int err, char buf[CORE_ERRNO_TEXT_CAP]);

/* Keeps the thread's last error across calls that may overwrite it (cleanup
 * after a failure must not replace the failure's message). */
struct core_kept_error {
  int32_t length;
  char text[CORE_MESSAGE_CAP];
};
void core_error_keep(struct core_kept_error *k);
void core_error_restore(const struct core_kept_error *k);

/* The thread's last error as stored (for copying it into a job). */
const char *core_last_error_text(int32_t *len);

/* llmdd_last_error()'s copy-out contract: NUL-terminated, truncated to cap-1 bytes,
 * returns the full length. */
int32_t core_copy_message_out(const char *msg, int32_t len, uint8_t *buf, int32_t cap);

#ifdef __cplusplus
}
#endif

#endif
