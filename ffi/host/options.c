#define _DEFAULT_SOURCE 1
#include "options.h"

#include <string.h>

#include "error.h"
#include "llmdd.h"
#include "net.h"

#define KEY_DEVICE_ID "ge.exec.deviceId"
#define KEY_POOL_BYTES "ge.flowGraphMemMaxSize"
#define KEY_LISTEN "llm.listenIpInfo"

/* Pool sizes stay far below this, which keeps every size computation in range;
 * anything the machine cannot map fails later as DEVICE_OUT_OF_MEMORY. */
#define POOL_BYTES_LIMIT ((uint64_t)1 << 62)

/* Values are quoted in messages up to this many bytes. */
#define QUOTE_MAX 80

struct span {
  const char *p;
  int32_t n;
};

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static struct span trim(struct span s) {
  while (s.n > 0 && is_blank(s.p[0])) s.p++, s.n--;
  while (s.n > 0 && is_blank(s.p[s.n - 1])) s.n--;
  return s;
}

static int span_equals(struct span s, const char *word) {
  size_t n = strlen(word);
  return (size_t)s.n == n && memcmp(s.p, word, n) == 0;
}

/* Parses a plain decimal number (digits only: no sign, no blanks) up to limit. */
static int parse_decimal(struct span s, uint64_t limit, uint64_t *out) {
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

static int32_t parse_device_ids(struct span value, struct engine_options *out) {
  int32_t count = 0;
  const char *end = value.p + value.n;
  const char *p = value.p;
  for (;;) {
    const char *sep = memchr(p, ';', (size_t)(end - p));
    struct span item = trim((struct span){p, (int32_t)((sep ? sep : end) - p)});
    uint64_t id;
    if (parse_decimal(item, INT32_MAX, &id) != 0)
      return fail(LLMDD_PARAM_INVALID,
                  KEY_DEVICE_ID " '%.*s': device id '%.*s' is not a non-negative integer",
                  value.n < QUOTE_MAX ? value.n : QUOTE_MAX, value.p,
                  item.n < QUOTE_MAX ? item.n : QUOTE_MAX, item.p);
    if (count == MAX_DEVICES)
      return fail(LLMDD_PARAM_INVALID, KEY_DEVICE_ID " lists more than %d devices",
                  MAX_DEVICES);
    for (int32_t i = 0; i < count; i++)
      if (out->device_ids[i] == (int32_t)id)
        return fail(LLMDD_PARAM_INVALID, KEY_DEVICE_ID " lists device %d twice",
                    (int32_t)id);
    out->device_ids[count++] = (int32_t)id;
    if (sep == NULL) break;
    p = sep + 1;
  }
  out->num_devices = count;
  return LLMDD_SUCCESS;
}

static int32_t parse_pool_bytes(struct span value, struct engine_options *out) {
  uint64_t bytes;
  if (parse_decimal(value, POOL_BYTES_LIMIT, &bytes) != 0 || bytes == 0)
    return fail(LLMDD_PARAM_INVALID,
                KEY_POOL_BYTES " '%.*s' is not a positive integer number of bytes"
                " (at most %llu)",
                value.n < QUOTE_MAX ? value.n : QUOTE_MAX, value.p,
                (unsigned long long)POOL_BYTES_LIMIT);
  out->pool_bytes = bytes;
  return LLMDD_SUCCESS;
}

static int32_t parse_listen(struct span value, struct engine_options *out) {
  /* Port 0 is allowed here: the kernel picks a free port, reported by engine_info. */
  if (net_parse_address(value.p, value.n, &out->listen_address) != 0)
    return fail(LLMDD_PARAM_INVALID,
                KEY_LISTEN " '%.*s' is not an IPv4 address and port (\"ipv4:port\")",
                value.n < QUOTE_MAX ? value.n : QUOTE_MAX, value.p);
  out->listen = true;
  return LLMDD_SUCCESS;
}

int32_t options_parse(const uint8_t *text, int32_t len, struct engine_options *out) {
  out->num_devices = 1;
  out->device_ids[0] = 0;
  out->pool_bytes = DEFAULT_POOL_BYTES;
  out->listen = false;
  /* text may be NULL when len is 0, and NULL + 0 is undefined behaviour in C. */
  if (len <= 0) return LLMDD_SUCCESS;

  const char *p = (const char *)text;
  const char *end = p + len;
  int32_t line_number = 0;
  /* A later line for the same key wins, as when the options came from a map. */
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    struct span line = trim((struct span){p, (int32_t)((nl ? nl : end) - p)});
    p = nl ? nl + 1 : end;
    line_number++;
    if (line.n == 0) continue;

    const char *eq = memchr(line.p, '=', (size_t)line.n);
    struct span key = trim((struct span){line.p, eq ? (int32_t)(eq - line.p) : 0});
    if (eq == NULL || key.n == 0)
      return fail(LLMDD_PARAM_INVALID, "option line %d '%.*s' is not key=value",
                  line_number, line.n < QUOTE_MAX ? line.n : QUOTE_MAX, line.p);
    struct span value =
        trim((struct span){eq + 1, (int32_t)(line.p + line.n - (eq + 1))});

    int32_t status = LLMDD_SUCCESS;
    if (span_equals(key, KEY_DEVICE_ID))
      status = parse_device_ids(value, out);
    else if (span_equals(key, KEY_POOL_BYTES))
      status = parse_pool_bytes(value, out);
    else if (span_equals(key, KEY_LISTEN))
      status = parse_listen(value, out);
    if (status != LLMDD_SUCCESS) return status;
  }
  return LLMDD_SUCCESS;
}
