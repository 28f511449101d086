#define _DEFAULT_SOURCE 1
#include "options.h"

#include <string.h>

#include "error.h"
#include "llmdd.h"

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

struct core_span core_span_trim(struct core_span s) {
  while (s.n > 0 && is_blank(s.p[0])) s.p++, s.n--;
  while (s.n > 0 && is_blank(s.p[s.n - 1])) s.n--;
  return s;
}

bool core_span_equals(struct core_span s, const char *word) {
  size_t n = strlen(word);
  return (size_t)s.n == n && memcmp(s.p, word, n) == 0;
}

int core_span_decimal(struct core_span s, uint64_t limit, uint64_t *out) {
  if (s.n == 0) return -1;
  uint64_t v = 0;
  for (int32_t i = 0; i < s.n; i++) {
    char c = s.p[i];
    if (c < '0' || c > '9') return -1;
    uint64_t digit = (uint64_t)(c - '0');
    if (v > (limit - digit) / 10) return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

bool core_span_split(struct core_span *rest, char sep, struct core_span *item) {
  const char *at = rest->n > 0 ? memchr(rest->p, sep, (size_t)rest->n) : NULL;
  if (at == NULL) {
    *item = core_span_trim(*rest);
    return false;
  }
  *item = core_span_trim((struct core_span){rest->p, (int32_t)(at - rest->p)});
  rest->n -= (int32_t)(at + 1 - rest->p);
  rest->p = at + 1;
  return true;
}

int32_t core_options_each(const uint8_t *text, int32_t len,
                          int32_t (*on_option)(void *arg, struct core_span key,
                                               struct core_span value),
                          void *arg) {
  /* text may be NULL when len is 0, and NULL + 0 is undefined behaviour in C. */
  if (len <= 0) return LLMDD_SUCCESS;
  struct core_span rest = {(const char *)text, len};
  int32_t line_number = 0;
  for (bool more = true; more;) {
    struct core_span line;
    more = core_span_split(&rest, '\n', &line);
    line_number++;
    if (line.n == 0) continue;
    const char *eq = memchr(line.p, '=', (size_t)line.n);
    struct core_span key =
        core_span_trim((struct core_span){line.p, eq ? (int32_t)(eq - line.p) : 0});
    if (eq == NULL || key.n == 0)
      return core_fail(LLMDD_PARAM_INVALID, "option line %d '%.*s' is not key=value",
                       line_number, CORE_QUOTE(line));
    struct core_span value =
        core_span_trim((struct core_span){eq + 1, (int32_t)(line.p + line.n - (eq + 1))});
    int32_t status = on_option(arg, key, value);
    if (status != LLMDD_SUCCESS) return status;
  }
  return LLMDD_SUCCESS;
}
