/* The lexer of llmdd_engine_init()'s option text: `key=value` lines separated
 * by '\n', blanks around keys and values ignored, empty lines skipped. What a
 * key means is each backend's business. */
#ifndef LLMDD_CORE_OPTIONS_H
#define LLMDD_CORE_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A piece of the option text (not NUL-terminated). */
struct core_span {
  const char *p;
  int32_t n;
};

/* Values are quoted in messages up to this many bytes: a "%.*s" takes
 * CORE_QUOTE(span). */
#define CORE_QUOTE_MAX 80
#define CORE_QUOTE(s) ((s).n < CORE_QUOTE_MAX ? (s).n : CORE_QUOTE_MAX), (s).p

struct core_span core_span_trim(struct core_span s);
bool core_span_equals(struct core_span s, const char *word);

/* Parses a plain decimal number (digits only: no sign, no blanks) up to limit.
 * Returns 0, or -1 when s is not one. */
int core_span_decimal(struct core_span s, uint64_t limit, uint64_t *out);

/* Splits *rest at the first sep: writes the trimmed part before it to *item and
 * leaves the part after it in *rest. Returns false (and *item is all of *rest,
 * trimmed) when there is no sep. */
bool core_span_split(struct core_span *rest, char sep, struct core_span *item);

/* Calls on_option(arg, key, value) for each line in order (text may be NULL when
 * len is 0; a later line for a key comes later, so it wins if the callee
 * overwrites). Returns SUCCESS, the first status other than SUCCESS that
 * on_option returns, or PARAM_INVALID with a message for a line that is not
 * key=value. */
int32_t core_options_each(const uint8_t *text, int32_t len,
                          int32_t (*on_option)(void *arg, struct core_span key,
                                               struct core_span value),
                          void *arg);

/* Parses upstream's memory pool configuration (llm.MemPoolConfig,
 * llm.HostMemPoolConfig): a JSON object {"memory_size": N, "page_shift": S} with
 * unsigned integers; memory_size is required, page_shift is optional, in
 * [10, 31), default 16, and memory_size >> page_shift must stay below 2^32 - 1
 * (upstream's checks, cache_mgr/data_cache_engine.cc). Other members are
 * ignored. key names the option in messages. Returns SUCCESS and *out_bytes, or
 * PARAM_INVALID with a message. */
int32_t core_parse_mem_pool_config(struct core_span value, const char *key,
                                   uint64_t *out_bytes);

#ifdef __cplusplus
}
#endif

#endif
