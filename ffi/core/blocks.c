#define _DEFAULT_SOURCE 1
#include "blocks.h"

#include <stddef.h>

#include "error.h"
#include "llmdd.h"

int32_t core_blocks_check(const struct core_block_cache *dst,
                          const struct core_block_cache *src, const uint64_t *pairs,
                          int32_t num_pairs) {
  if (num_pairs < 1)
    return core_fail(LLMDD_PARAM_INVALID, "num_pairs %d: at least one block must be copied",
                     num_pairs);
  if (pairs == NULL) return core_fail(LLMDD_PARAM_INVALID, "pairs is NULL");
  if (dst->num_tensors != src->num_tensors)
    return core_fail(LLMDD_PARAM_INVALID,
                     "destination cache %llu has %d tensors but source cache %llu has %d",
                     (unsigned long long)dst->id, dst->num_tensors,
                     (unsigned long long)src->id, src->num_tensors);
  if (dst->block_bytes != src->block_bytes)
    return core_fail(LLMDD_PARAM_INVALID,
                     "src block size:%llu and dst block size:%llu must be equal",
                     (unsigned long long)src->block_bytes, (unsigned long long)dst->block_bytes);
  for (int32_t i = 0; i < num_pairs; i++) {
    uint64_t s = pairs[2 * (size_t)i], d = pairs[2 * (size_t)i + 1];
    if (s >= src->num_blocks)
      return core_fail(LLMDD_PARAM_INVALID, "src_block_index:%llu must be in [0, %llu)",
                       (unsigned long long)s, (unsigned long long)src->num_blocks);
    if (d >= dst->num_blocks)
      return core_fail(LLMDD_PARAM_INVALID, "dst_block_index:%llu must be in [0, %llu)",
                       (unsigned long long)d, (unsigned long long)dst->num_blocks);
  }
  return LLMDD_SUCCESS;
}

int32_t core_tensor_range_check(int32_t src_start, int32_t dst_start, int32_t count,
                                int32_t src_tensors, int32_t dst_tensors) {
  if (count == 0) {
    if (src_start != 0 || dst_start != 0)
      return core_fail(LLMDD_PARAM_INVALID,
                       "tensor starts %d and %d given without a tensor count", src_start,
                       dst_start);
    if (src_tensors != dst_tensors)
      return core_fail(LLMDD_PARAM_INVALID,
                       "the source cache has %d tensors and the destination %d: give layer ranges",
                       src_tensors, dst_tensors);
    return LLMDD_SUCCESS;
  }
  if (count < 0 || src_start < 0 || dst_start < 0)
    return core_fail(LLMDD_PARAM_INVALID, "tensor range (%d, %d, count %d) is negative", src_start,
                     dst_start, count);
  /* The range's end in 64 bits: a start near INT32_MAX plus the count would
   * overflow an int32_t (libFuzzer found it). */
  if (src_start > src_tensors - count || count > src_tensors)
    return core_fail(LLMDD_PARAM_INVALID, "src tensors [%d, %lld) are out of range [0, %d)",
                     src_start, (long long)src_start + count, src_tensors);
  if (dst_start > dst_tensors - count || count > dst_tensors)
    return core_fail(LLMDD_PARAM_INVALID, "dst tensors [%d, %lld) are out of range [0, %d)",
                     dst_start, (long long)dst_start + count, dst_tensors);
  return LLMDD_SUCCESS;
}

/* The pairs as a list of ranges for core_copy_ranges: range i is pair
 * i % num_pairs of tensor (i / num_pairs) % num_tensors of device
 * i / (num_pairs * num_tensors), the order of the loop below. */
struct pair_ranges {
  core_tensor_fn tensor;
  void *ctx;
  int32_t num_tensors;
  uint64_t block_bytes;
  const uint64_t *pairs;
  int32_t num_pairs;
  int same_cache;
};

static bool pair_range(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src) {
  const struct pair_ranges *r = ctx;
  uint64_t pair = i % (uint64_t)r->num_pairs, dt = i / (uint64_t)r->num_pairs;
  int32_t d = (int32_t)(dt / (uint64_t)r->num_tensors), t = (int32_t)(dt % (uint64_t)r->num_tensors);
  uint64_t s = r->pairs[2 * pair], b = r->pairs[2 * pair + 1];
  if (r->same_cache && s == b) return false;
  *dst = r->tensor(r->ctx, 0, d, t) + b * r->block_bytes;
  *src = r->tensor(r->ctx, 1, d, t) + s * r->block_bytes;
  return true;
}

int32_t core_blocks_copy(struct core_progress *p, core_tensor_fn tensor, void *ctx,
                         int32_t num_devices, int32_t num_tensors, uint64_t block_bytes,
                         const uint64_t *pairs, int32_t num_pairs, int same_cache) {
  /* Only a copy the helper shares goes through the list of ranges; a smaller
   * one (a repeat pull of a few blocks, on the JavaScript thread) keeps this
   * loop's one lookup per tensor. */
  uint64_t ranges = (uint64_t)num_devices * (uint64_t)num_tensors * (uint64_t)num_pairs;
  if (core_copy_shared(p, ranges * block_bytes)) {
    struct pair_ranges r = {tensor, ctx, num_tensors, block_bytes, pairs, num_pairs, same_cache};
    return core_copy_ranges(p, pair_range, &r, ranges, block_bytes);
  }
  /* Device and tensor outermost: each tensor's base is looked up once, and the
   * pairs, usually in ascending order, walk its memory forwards. */
  for (int32_t d = 0; d < num_devices; d++) {
    for (int32_t t = 0; t < num_tensors; t++) {
      uint8_t *dst = tensor(ctx, 0, d, t);
      const uint8_t *src = tensor(ctx, 1, d, t);
      for (int32_t i = 0; i < num_pairs; i++) {
        uint64_t s = pairs[2 * (size_t)i], b = pairs[2 * (size_t)i + 1];
        if (same_cache && s == b) continue;
        int32_t status = core_copy_chunked(p, dst + b * block_bytes, src + s * block_bytes,
                                           block_bytes);
        if (status != LLMDD_SUCCESS) return status;
      }
    }
  }
  return LLMDD_SUCCESS;
}

uint64_t core_blocks_total(int32_t num_devices, int32_t num_tensors, uint64_t block_bytes,
                           const uint64_t *pairs, int32_t num_pairs, int same_cache) {
  uint64_t blocks = 0;
  for (int32_t i = 0; i < num_pairs; i++)
    if (!same_cache || pairs[2 * (size_t)i] != pairs[2 * (size_t)i + 1]) blocks++;
  return blocks * block_bytes * (uint64_t)num_tensors * (uint64_t)num_devices;
}
