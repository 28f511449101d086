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

/* A small reader for the one flat JSON object a pool configuration is: only
 * what upstream accepts there (string keys, number values). */
struct json_reader {
  const char *p, *end;
};

static void json_blanks(struct json_reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
    r->p++;
}

static bool json_take(struct json_reader *r, char c) {
  json_blanks(r);
  if (r->p < r->end && *r->p == c) {
    r->p++;
    return true;
  }
  return false;
}

/* A string without escapes (keys here are plain words). */
static bool json_string(struct json_reader *r, struct core_span *out) {
  if (!json_take(r, '"')) return false;
  const char *start = r->p;
  while (r->p < r->end && *r->p != '"' && *r->p != '\\') r->p++;
  if (r->p >= r->end || *r->p != '"') return false;
  *out = (struct core_span){start, (int32_t)(r->p - start)};
  r->p++;
  return true;
}

/* A number token, checked by the caller where it matters. */
static bool json_number(struct json_reader *r, struct core_span *out) {
  json_blanks(r);
  const char *start = r->p;
  while (r->p < r->end && (strchr("+-.eE", *r->p) != NULL || (*r->p >= '0' && *r->p <= '9')))
    r->p++;
  *out = (struct core_span){start, (int32_t)(r->p - start)};
  return out->n > 0;
}

int32_t core_parse_mem_pool_config(struct core_span value, const char *key,
                                   uint64_t *out_bytes) {
  struct json_reader r = {value.p, value.p + value.n};
  bool have_size = false;
  uint64_t size = 0, shift = 16; /* upstream: 64 KiB pages by default */
  if (!json_take(&r, '{')) goto malformed;
  if (!json_take(&r, '}')) {
    do {
      struct core_span name, number;
      if (!json_string(&r, &name) || !json_take(&r, ':') || !json_number(&r, &number))
        goto malformed;
      bool is_size = core_span_equals(name, "memory_size");
      bool is_shift = core_span_equals(name, "page_shift");
      uint64_t v = 0;
      if ((is_size || is_shift) && core_span_decimal(number, UINT64_MAX, &v) != 0)
        return core_fail(LLMDD_PARAM_INVALID, "%s '%.*s': %.*s is not an unsigned integer", key,
                         CORE_QUOTE(value), CORE_QUOTE(name));
      if (is_size) size = v, have_size = true;
      if (is_shift) {
        if (v < 10 || v >= 31)
          return core_fail(LLMDD_PARAM_INVALID, "%s '%.*s': page_shift (%llu) out of range: [10, 31)",
                           key, CORE_QUOTE(value), (unsigned long long)v);
        shift = v;
      }
    } while (json_take(&r, ','));
    if (!json_take(&r, '}')) goto malformed;
  }
  json_blanks(&r);
  if (r.p != r.end) goto malformed;
  if (!have_size)
    return core_fail(LLMDD_PARAM_INVALID, "%s '%.*s' has no memory_size", key, CORE_QUOTE(value));
  if ((size >> shift) >= UINT32_MAX)
    return core_fail(LLMDD_PARAM_INVALID,
                     "%s: memory_size (%llu) with page_shift (%llu) exceeds addressable limit", key,
                     (unsigned long long)size, (unsigned long long)shift);
  if (size == 0)
    return core_fail(LLMDD_PARAM_INVALID, "%s: memory_size is 0", key);
  *out_bytes = size;
  return LLMDD_SUCCESS;
malformed:
  return core_fail(LLMDD_PARAM_INVALID,
                   "%s '%.*s' is not a JSON object like {\"memory_size\": 102428800}", key,
                   CORE_QUOTE(value));
}
