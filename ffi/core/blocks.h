/* Block copies (upstream copy_blocks and swap_blocks), written once for both
 * backends: the checks of a list of (src_block, dst_block) pairs, and the loop
 * that copies every pair of every tensor of every device through one progress
 * (so a deadline, a cancel or a finalize stops it within one chunk). Where a
 * block lives and what moves its bytes are the backend's. */
#ifndef LLMDD_CORE_BLOCKS_H
#define LLMDD_CORE_BLOCKS_H

#include <stdint.h>

#include "copy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a block copy needs to know of one cache. */
struct core_block_cache {
  uint64_t id;          /* for messages */
  int32_t num_tensors;
  uint64_t num_blocks;  /* batch_size */
  uint64_t block_bytes; /* tensor_bytes / batch_size */
};

/* Checks a block copy: pairs not NULL, num_pairs >= 1, equal tensor counts and
 * block sizes, every index in range. Returns SUCCESS, or PARAM_INVALID with a
 * message naming the pair. */
int32_t core_blocks_check(const struct core_block_cache *dst,
                          const struct core_block_cache *src, const uint64_t *pairs,
                          int32_t num_pairs);

/* Checks a tensor range of a transfer between caches of src_tensors and
 * dst_tensors tensors: count 0 means all (equal counts, starts 0); otherwise
 * [src_start, +count) and [dst_start, +count) must lie within the caches.
 * Returns SUCCESS or PARAM_INVALID. */
int32_t core_tensor_range_check(int32_t src_start, int32_t dst_start, int32_t count,
                                int32_t src_tensors, int32_t dst_tensors);

/* Where tensor `tensor` of device `device` of one side starts (side 0: the
 * destination, 1: the source). */
typedef uint8_t *(*core_tensor_fn)(void *ctx, int side, int32_t device, int32_t tensor);

/* Copies every checked pair for every device and tensor. same_cache: a pair
 * naming one block twice is skipped. Returns SUCCESS or the status of the check
 * that stopped it. */
int32_t core_blocks_copy(struct core_progress *p, core_tensor_fn tensor, void *ctx,
                         int32_t num_devices, int32_t num_tensors, uint64_t block_bytes,
                         const uint64_t *pairs, int32_t num_pairs, int same_cache);

/* Bytes a checked block copy moves (pairs naming one block twice in one cache
 * move none). */
uint64_t core_blocks_total(int32_t num_devices, int32_t num_tensors, uint64_t block_bytes,
                           const uint64_t *pairs, int32_t num_pairs, int same_cache);

#ifdef __cplusplus
}
#endif

#endif
