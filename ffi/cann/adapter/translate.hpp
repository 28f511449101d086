// Translations from the ABI's arguments to upstream's: the key of a pull to a
// CacheIndex, a byte range of a copy to CopyKvCache's (batch, offset, size), and
// a cache's layout to a CacheDesc shape.
#ifndef LLMDD_CANN_TRANSLATE_HPP
#define LLMDD_CANN_TRANSLATE_HPP

#include <cstdint>
#include <utility>
#include <vector>

#include "book.hpp"

namespace llmdd {

// Arguments of LlmDataDist::PullKvCache(src_cache_index, dst_cache, batch_index, size).
struct PullPlan {
  uint64_t cluster_id = 0;   // CacheIndex::cluster_id
  int64_t cache_id = 0;      // CacheIndex::cache_id
  uint32_t batch_index = 0;  // CacheIndex::batch_index (the source row)
  uint32_t dst_batch_index = 0;
  int64_t size = -1;         // bytes of the row; -1 = the whole row
};

// Checks a pull's key kind: PARAM_INVALID for an unknown kind,
// FEATURE_NOT_ENABLED for LLMDD_KEY_CACHE_KEY (see plan_pull).
int32_t check_pull_key(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2);

// Checks a pull's key and destination against the local cache (geometry only;
// the engine checks the role, the cache's existence and the link).
//   LLMDD_KEY_BY_ID (cluster, cache id, batch index) → CacheIndex.
//   LLMDD_KEY_CACHE_KEY → FEATURE_NOT_ENABLED: the C++ API pulls by CacheIndex
//   only; a CacheKey lives at the PROMPT and has no C++ equivalent.
int32_t plan_pull(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2,
                  int32_t dst_batch_index, uint64_t size, const CacheLayout &dst, PullPlan *out);

// KvCacheExtParam as upstream's C++ API takes it: layer ranges with INCLUSIVE
// ends ({-1, -1}: every layer) and the tensors of one layer (hicann/hixl
// llm_datadist_impl.cc: CheckKvCacheExtParam, CalcIndicesWithValidRanges, which
// counts second - first + 1 layers).
struct LayerRanges {
  std::pair<int32_t, int32_t> src{-1, -1};
  std::pair<int32_t, int32_t> dst{-1, -1};
  uint32_t tensors_per_layer = 1;
};

// The ABI's tensor range as layer ranges. num_tensors 0 (every tensor):
// {-1, -1} with whole_layer tensors per layer; otherwise one tensor per layer,
// so tensors [start, start + n) are layers {start, start + n - 1}.
LayerRanges layer_ranges(int32_t src_tensor_start, int32_t dst_tensor_start, int32_t num_tensors,
                         uint32_t whole_layer);

// Arguments of PullKvBlocks(src_cache_index, dst_cache, src_blocks, dst_blocks,
// ext_param), PushKvCache(src_cache, dst_cache_index, src_batch_index, -1,
// ext_param) and PushKvBlocks(src_cache, dst_cache_index, src_blocks,
// dst_blocks, ext_param).
struct TransferPlan {
  uint64_t cluster_id = 0;  // CacheIndex of the peer's cache
  int64_t cache_id = 0;
  uint32_t batch_index = 0;
  uint32_t src_batch_index = 0;  // PushKvCache: the local row
  bool blocks = false;           // PullKvBlocks / PushKvBlocks; else PushKvCache
  std::vector<uint64_t> src_blocks;
  std::vector<uint64_t> dst_blocks;
  LayerRanges layers;
};

// A block pull's key as PullKvBlocks can name it (pairs and ranges already
// checked): LLMDD_KEY_BY_ID with batch index 0 → CacheIndex (cluster, cache
// id, 0). FEATURE_NOT_ENABLED with the reason for LLMDD_KEY_CACHE_KEY,
// LLMDD_KEY_BLOCKS and another batch index; KV_CACHE_NOT_EXIST for an id
// upstream cannot have given.
int32_t plan_pull_blocks(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2, const uint64_t *pairs,
                         int32_t num_pairs, int32_t src_tensor_start, int32_t dst_tensor_start,
                         int32_t num_tensors, TransferPlan *out);

// A push's key as PushKvCache / PushKvBlocks can name it (arguments already
// checked): LLMDD_KEY_BY_ID without pairs → PushKvCache to CacheIndex (k0, k1,
// k2) from row src_batch_index; LLMDD_KEY_BY_ID with pairs and k2 0 →
// PushKvBlocks to CacheIndex (k0, k1, 0) (the C++ API's way of naming a blocks
// cache). FEATURE_NOT_ENABLED with the reason for LLMDD_KEY_BLOCKS; PARAM_INVALID
// for LLMDD_KEY_CACHE_KEY. src_tensors: the local cache's tensor count.
int32_t plan_push(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2, int32_t src_batch_index,
                  const uint64_t *pairs, int32_t num_pairs, int32_t src_tensor_start, int32_t dst_tensor_start,
                  int32_t num_tensors, int32_t src_tensors, TransferPlan *out);

// Arguments of LlmDataDist::CopyKvCache(src, dst, src_batch_index, dst_batch_index, offset, size).
struct CopyPlan {
  bool nothing = false;  // 0 bytes: no call
  uint32_t src_batch_index = 0;
  uint32_t dst_batch_index = 0;
  uint64_t offset = 0;   // within the row, the same in both caches
  int64_t size = 0;
  // A block copy (llmdd_cache_copy_blocks) instead: (src_block, dst_block) pairs
  // of block_bytes each, checked by core_blocks_check; same_cache skips a pair
  // naming one block twice.
  std::vector<std::pair<uint64_t, uint64_t>> blocks;
  uint64_t block_bytes = 0;
  bool same_cache = false;
};

// The ABI's copy (nbytes from byte src_offset of every tensor of src to byte
// dst_offset of dst) checked as the host backend does (PARAM_INVALID), then as
// CopyKvCache can express it: within one row of each cache, at the same offset
// in both rows; other ranges → FEATURE_NOT_ENABLED with a message.
int32_t plan_copy(const CacheLayout &dst, const CacheLayout &src, bool same_cache,
                  uint64_t dst_offset, uint64_t src_offset, uint64_t nbytes, CopyPlan *out);

// One contiguous copy of a copy plan: a tensor's row range on one device.
struct RowCopy {
  uint64_t dst = 0;
  uint64_t src = 0;
  uint64_t bytes = 0;
};

// The copies a plan makes, one per tensor per device in [device][tensor] order
// (a block plan: one per pair of each tensor, pairs innermost):
// bytes [offset, offset + size) of row src_batch_index of each source tensor to
// the same bytes of row dst_batch_index of the destination tensor. A plan of
// nothing makes none.
std::vector<RowCopy> row_copies(const CacheLayout &dst_layout, const std::vector<uint64_t> &dst_addrs,
                                const CacheLayout &src_layout, const std::vector<uint64_t> &src_addrs,
                                const CopyPlan &plan);

// The CacheDesc shape the adapter gives upstream for a layout: [batch, row bytes]
// of DT_UINT8. The ABI carries sizes and an opaque layout tag, not the data type
// and dimensions, so both sides of a pull describe a row by its bytes.
std::vector<int64_t> upstream_shape(const CacheLayout &layout);

}  // namespace llmdd

#endif
