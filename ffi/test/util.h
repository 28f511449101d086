/* Helpers shared by the test files. */
#ifndef LLMDD_TEST_UTIL_H
#define LLMDD_TEST_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "llmdd.h"

#define MiB ((uint64_t)1 << 20)

/* A cluster id no other process uses. PROMPT and MIX engines own their cluster id
 * machine-wide, and other test runs (or the TypeScript tests) may be running:
 * the pid goes in the high bits, a counter in the low ones. */
uint64_t unique_cluster_id(void);

/* Opens a MIX engine (with a unique cluster id) with the given option text (NULL
 * for none); 0 on failure (recorded as a test failure). */
uint64_t open_engine(const char *options);

/* Opens an engine of any role; 0 on failure (recorded). */
uint64_t open_role(int32_t role, uint64_t cluster_id, const char *options);

/* Opens a PROMPT or MIX engine listening on 127.0.0.1 (any free port), with more
 * option lines (or NULL); writes the port. 0 on failure (recorded). */
uint64_t open_listening(int32_t role, uint64_t cluster_id, const char *options, uint16_t *port);

/* The engine's listen port (engine_info out[4]). */
uint16_t listen_port(uint64_t engine);

/* llmdd_link to 127.0.0.1:port with a job of timeout_ms (inline). */
int32_t link_port(uint64_t engine, uint64_t cluster_id, uint16_t port, int32_t timeout_ms);

/* llmdd_cache_pull with a job of timeout_ms (inline). */
int32_t pull_row(uint64_t engine, uint64_t cache_id, int32_t key_kind, uint64_t k0, uint64_t k1,
                 uint64_t k2, int32_t dst_row, uint64_t size, int32_t timeout_ms);

/* Waits up to timeout_ms for a pool's usage to become `want`; returns whether it did. */
bool wait_pool_used(uint64_t engine, int32_t device_index, uint64_t want, double timeout_ms);

/* Whether /dev/shm holds an object of this name ("/llmdd...."). */
bool shm_object_exists(const char *name);

/* The path of "<cluster>.<suffix>" in this user's private directory
 * (/dev/shm/llmdd-<uid>/, ffi/host/rundir.h), and whether it exists. */
void cluster_file_path(char out[96], uint64_t cluster, const char *suffix);
bool cluster_file_exists(uint64_t cluster, const char *suffix);

/* ---- child processes (roles, see harness.h) ---- */

/* Starts this test binary as `--role role args...` (args ends with NULL), with
 * its stdin and stdout on pipes: *to_child writes to its stdin, *from_child reads
 * its stdout. Returns the pid, or -1 (recorded). */
pid_t spawn_role(const char *role, const char *const *args, int *to_child, int *from_child);

/* Reads one line (without the newline) within timeout_ms; returns its length, or
 * -1 on timeout, EOF or error. */
int read_line(int fd, char *buf, int cap, double timeout_ms);

/* Waits up to timeout_ms for a child; returns its wait status, or -1 after killing
 * it because it did not end. */
int wait_child(pid_t pid, double timeout_ms);

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
