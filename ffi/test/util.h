/* Helpers shared by the test files. */
#ifndef LLMDD_TEST_UTIL_H
#define LLMDD_TEST_UTIL_H

#include <stdint.h>

#include "llmdd.h"

#define MiB ((uint64_t)1 << 20)

/* Opens a MIX engine with the given option text (NULL for none); 0 on failure
 * (recorded as a test failure). */
uint64_t open_engine(const char *options);

/* Bytes in use in one device's pool (UINT64_MAX on error). */
uint64_t pool_used(uint64_t engine, int32_t device_index);

/* The calling thread's last error (a per-thread buffer, valid until the next call). */
const char *last_error(void);

/* A job's message (a per-thread buffer). */
const char *job_message(uint64_t job);

double now_ms(void);
void sleep_ms(double ms);

/* A byte pattern derived from (cache id, device, tensor, position), so any byte
 * read back tells whether it came from the right place. */
static inline uint8_t pattern_byte(uint64_t id, int32_t device, int32_t tensor, uint64_t i) {
  uint64_t x = id * 0x9E3779B97F4A7C15ull + (uint64_t)device * 0x100000001B3ull +
               (uint64_t)tensor * 0xC2B2AE3D27D4EB4Full + i;
  return (uint8_t)(x ^ (x >> 13) ^ (i >> 8));
}
void fill_pattern(uint8_t *p, uint64_t n, uint64_t id, int32_t device, int32_t tensor);
/* Index of the first byte that differs from the pattern, or UINT64_MAX. */
uint64_t find_mismatch(const uint8_t *p, uint64_t n, uint64_t id, int32_t device,
                       int32_t tensor);

/* Allocates a cache without keys and writes the pattern into every tensor on every
 * device through the returned addresses. Returns the status. */
int32_t allocate_filled(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
                        uint64_t *out_id);

#endif
