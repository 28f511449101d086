#define _DEFAULT_SOURCE 1
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

uint64_t open_engine(const char *options) {
  uint64_t engine = 0;
  int32_t len = options ? (int32_t)strlen(options) : 0;
  if (!EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 7, (const uint8_t *)options, len,
                                       &engine),
                     LLMDD_SUCCESS))
    return 0;
  return engine;
}

uint64_t pool_used(uint64_t engine, int32_t device_index) {
  uint64_t out[2];
  if (llmdd_pool_usage(engine, device_index, out) != LLMDD_SUCCESS) return UINT64_MAX;
  return out[0];
}

const char *last_error(void) {
  static _Thread_local char buf[1024];
  llmdd_last_error((uint8_t *)buf, sizeof buf);
  return buf;
}

const char *job_message(uint64_t job) {
  static _Thread_local char buf[1024];
  if (llmdd_job_message(job, (uint8_t *)buf, sizeof buf) < 0) return "<unknown job>";
  return buf;
}

double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (time_t)(ms / 1000) * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

void fill_pattern(uint8_t *p, uint64_t n, uint64_t id, int32_t device, int32_t tensor) {
  for (uint64_t i = 0; i < n; i++) p[i] = pattern_byte(id, device, tensor, i);
}

uint64_t find_mismatch(const uint8_t *p, uint64_t n, uint64_t id, int32_t device,
                       int32_t tensor) {
  for (uint64_t i = 0; i < n; i++)
    if (p[i] != pattern_byte(id, device, tensor, i)) return i;
  return UINT64_MAX;
}

int32_t allocate_filled(uint64_t engine, int32_t num_tensors, uint64_t tensor_bytes,
                        uint64_t *out_id) {
  uint64_t info[4];
  int32_t status = llmdd_engine_info(engine, info);
  if (status != LLMDD_SUCCESS) return status;
  int32_t devices = (int32_t)info[0];
  uint64_t *addrs = malloc(sizeof *addrs * (size_t)(devices * num_tensors));
  status = llmdd_cache_allocate(engine, num_tensors, tensor_bytes, LLMDD_PLACEMENT_DEVICE,
                                NULL, 0, out_id, addrs, devices * num_tensors);
  if (status == LLMDD_SUCCESS)
    for (int32_t d = 0; d < devices; d++)
      for (int32_t t = 0; t < num_tensors; t++)
        fill_pattern((uint8_t *)(uintptr_t)addrs[d * num_tensors + t], tensor_bytes, *out_id,
                     d, t);
  free(addrs);
  return status;
}
