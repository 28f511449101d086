#include "translate.hpp"

#include <utility>

#include "error.hpp"
#include "llmdd.h"

namespace llmdd {

int32_t check_pull_key(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2) {
  if (key_kind != LLMDD_KEY_CACHE_KEY && key_kind != LLMDD_KEY_BY_ID)
    return fail(LLMDD_PARAM_INVALID, "key_kind %d is not CACHE_KEY (0) or BY_ID (1)", key_kind);
  if (key_kind == LLMDD_KEY_CACHE_KEY)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pull by CacheKey (cluster %llu, req %llu, model %llu): the LLM-DataDist C++ API"
                " pulls by CacheIndex (cluster id, cache id, batch index) only; use"
                " CacheKeyByIdAndIndex",
                static_cast<unsigned long long>(k0), static_cast<unsigned long long>(k1),
                static_cast<unsigned long long>(k2));
  return LLMDD_SUCCESS;
}

int32_t plan_pull(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2,
                  int32_t dst_batch_index, uint64_t size, const CacheLayout &dst, PullPlan *out) {
  int32_t status = check_pull_key(key_kind, k0, k1, k2);
  if (status != LLMDD_SUCCESS) return status;
  if (dst_batch_index < 0 || static_cast<uint64_t>(dst_batch_index) >= dst.batch_size)
    return fail(LLMDD_PARAM_INVALID, "dst_batch_index %d is out of range [0, %llu)", dst_batch_index,
                static_cast<unsigned long long>(dst.batch_size));
  uint64_t row = dst.row_bytes();
  if (size != LLMDD_WHOLE_ROW && size > row)
    return fail(LLMDD_PARAM_INVALID, "size %llu is more than the %llu bytes of a row",
                static_cast<unsigned long long>(size), static_cast<unsigned long long>(row));
  if (k1 == 0 || k1 > static_cast<uint64_t>(INT64_MAX))
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu cannot exist at cluster %llu (upstream cache ids are"
                " positive int64)", static_cast<unsigned long long>(k1), static_cast<unsigned long long>(k0));
  if (k2 > UINT32_MAX)
    return fail(LLMDD_PARAM_INVALID, "batch index %llu is out of upstream's range (uint32)",
                static_cast<unsigned long long>(k2));
  out->cluster_id = k0;
  out->cache_id = static_cast<int64_t>(k1);
  out->batch_index = static_cast<uint32_t>(k2);
  out->dst_batch_index = static_cast<uint32_t>(dst_batch_index);
  out->size = size == LLMDD_WHOLE_ROW ? -1 : static_cast<int64_t>(size);
  return LLMDD_SUCCESS;
}

namespace {

// An id of the peer's cache: upstream's ids are positive int64.
int32_t peer_cache_id(uint64_t cluster, uint64_t id, int64_t *out) {
  if (id == 0 || id > static_cast<uint64_t>(INT64_MAX))
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu cannot exist at cluster %llu (upstream cache ids are"
                " positive int64)", static_cast<unsigned long long>(id), static_cast<unsigned long long>(cluster));
  *out = static_cast<int64_t>(id);
  return LLMDD_SUCCESS;
}

void split_pairs(const uint64_t *pairs, int32_t num_pairs, TransferPlan *out) {
  out->src_blocks.clear();
  out->dst_blocks.clear();
  for (int32_t i = 0; i < num_pairs; i++) {
    out->src_blocks.push_back(pairs[2 * i]);
    out->dst_blocks.push_back(pairs[2 * i + 1]);
  }
}

}  // namespace

LayerRanges layer_ranges(int32_t src_tensor_start, int32_t dst_tensor_start, int32_t num_tensors,
                         uint32_t whole_layer) {
  LayerRanges r;
  if (num_tensors == 0) {
    r.tensors_per_layer = whole_layer;
    return r;
  }
  r.src = {src_tensor_start, src_tensor_start + num_tensors - 1};
  r.dst = {dst_tensor_start, dst_tensor_start + num_tensors - 1};
  r.tensors_per_layer = 1;
  return r;
}

int32_t plan_pull_blocks(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2, const uint64_t *pairs,
                         int32_t num_pairs, int32_t src_tensor_start, int32_t dst_tensor_start,
                         int32_t num_tensors, TransferPlan *out) {
  if (key_kind == LLMDD_KEY_CACHE_KEY)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pullBlocks by CacheKey (cluster %llu, req %llu, model %llu): the LLM-DataDist C++ API"
                " names a source by CacheIndex (cluster id, cache id) only; use CacheKeyByIdAndIndex",
                static_cast<unsigned long long>(k0), static_cast<unsigned long long>(k1),
                static_cast<unsigned long long>(k2));
  if (key_kind == LLMDD_KEY_BLOCKS)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pullBlocks by BlocksCacheKey (cluster %llu, model %llu): the LLM-DataDist C++ API"
                " names a source by CacheIndex (cluster id, cache id) only, and this backend gives"
                " upstream no keys; use CacheKeyByIdAndIndex(cluster, cacheId, 0)",
                static_cast<unsigned long long>(k0), static_cast<unsigned long long>(k2));
  TransferPlan plan;
  int32_t status = peer_cache_id(k0, k1, &plan.cache_id);
  if (status != LLMDD_SUCCESS) return status;
  // PullKvBlocks: "only 0 is supported in pull block" (LLM_PARAM_INVALID), and
  // the source's row size, which would place another row, is not known here.
  if (k2 != 0)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pullBlocks from row %llu of cache %llu: upstream's PullKvBlocks pulls blocks counted from"
                " the start of the source (CacheIndex batch_index 0 only)",
                static_cast<unsigned long long>(k2), static_cast<unsigned long long>(k1));
  plan.cluster_id = k0;
  plan.blocks = true;
  split_pairs(pairs, num_pairs, &plan);
  plan.layers = layer_ranges(src_tensor_start, dst_tensor_start, num_tensors, 1);
  *out = std::move(plan);
  return LLMDD_SUCCESS;
}

int32_t plan_push(int32_t key_kind, uint64_t k0, uint64_t k1, uint64_t k2, int32_t src_batch_index,
                  const uint64_t *pairs, int32_t num_pairs, int32_t src_tensor_start, int32_t dst_tensor_start,
                  int32_t num_tensors, int32_t src_tensors, TransferPlan *out) {
  if (key_kind == LLMDD_KEY_CACHE_KEY)
    return fail(LLMDD_PARAM_INVALID, "a push names its destination by CacheKeyByIdAndIndex (BY_ID, 1) or"
                " BlocksCacheKey (BLOCKS, 2), not by CacheKey");
  if (key_kind == LLMDD_KEY_BLOCKS)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pushBlocks to BlocksCacheKey (cluster %llu, model %llu): the LLM-DataDist C++ API's"
                " PushKvBlocks names the destination by CacheIndex (cluster id, cache id), and a"
                " BlocksCacheKey has no C++ equivalent",
                static_cast<unsigned long long>(k0), static_cast<unsigned long long>(k2));
  if (key_kind != LLMDD_KEY_BY_ID)
    return fail(LLMDD_PARAM_INVALID, "key_kind %d is not BY_ID (1) or BLOCKS (2)", key_kind);
  TransferPlan plan;
  int32_t status = peer_cache_id(k0, k1, &plan.cache_id);
  if (status != LLMDD_SUCCESS) return status;
  if (k2 > UINT32_MAX)
    return fail(LLMDD_PARAM_INVALID, "batch index %llu is out of upstream's range (uint32)",
                static_cast<unsigned long long>(k2));
  plan.blocks = num_pairs > 0;
  if (plan.blocks && k2 != 0)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "pushing blocks into row %llu of cache %llu: upstream's PushKvBlocks pushes blocks counted"
                " from the start of the destination (CacheIndex batch_index 0 only)",
                static_cast<unsigned long long>(k2), static_cast<unsigned long long>(k1));
  plan.cluster_id = k0;
  plan.batch_index = static_cast<uint32_t>(k2);
  plan.src_batch_index = static_cast<uint32_t>(src_batch_index);
  split_pairs(pairs, num_pairs, &plan);
  // Every tensor: one layer of all of them (tensor_num_per_layer is a uint8_t),
  // so upstream makes one transfer, not one per tensor.
  uint32_t whole = src_tensors >= 1 && src_tensors <= UINT8_MAX ? static_cast<uint32_t>(src_tensors) : 1;
  plan.layers = layer_ranges(src_tensor_start, dst_tensor_start, num_tensors, whole);
  *out = std::move(plan);
  return LLMDD_SUCCESS;
}

namespace {
int32_t check_range(const char *role, uint64_t offset, uint64_t nbytes, const CacheLayout &c) {
  if (offset > c.tensor_bytes || nbytes > c.tensor_bytes - offset)
    return fail(LLMDD_PARAM_INVALID,
                "%s range of %llu bytes at offset %llu is outside the tensor of %llu bytes", role,
                static_cast<unsigned long long>(nbytes), static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(c.tensor_bytes));
  return LLMDD_SUCCESS;
}
}  // namespace

int32_t plan_copy(const CacheLayout &dst, const CacheLayout &src, bool same_cache,
                  uint64_t dst_offset, uint64_t src_offset, uint64_t nbytes, CopyPlan *out) {
  if (dst.num_tensors != src.num_tensors)
    return fail(LLMDD_PARAM_INVALID, "the destination cache has %d tensors but the source has %d",
                dst.num_tensors, src.num_tensors);
  int32_t status = check_range("destination", dst_offset, nbytes, dst);
  if (status == LLMDD_SUCCESS) status = check_range("source", src_offset, nbytes, src);
  if (status != LLMDD_SUCCESS) return status;
  if (same_cache && nbytes > 0 && dst_offset < src_offset + nbytes && src_offset < dst_offset + nbytes)
    return fail(LLMDD_PARAM_INVALID, "ranges of %llu bytes at offsets %llu and %llu overlap",
                static_cast<unsigned long long>(nbytes), static_cast<unsigned long long>(dst_offset),
                static_cast<unsigned long long>(src_offset));
  *out = CopyPlan();
  if (nbytes == 0) {
    out->nothing = true;
    return LLMDD_SUCCESS;
  }
  uint64_t src_row = src.row_bytes(), dst_row = dst.row_bytes();
  uint64_t src_in = src_offset % src_row, dst_in = dst_offset % dst_row;
  if (src_in != dst_in)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "a copy from offset %llu of a row to offset %llu of a row: upstream CopyKvCache"
                " takes one offset for both rows",
                static_cast<unsigned long long>(src_in), static_cast<unsigned long long>(dst_in));
  if (src_in + nbytes > src_row || dst_in + nbytes > dst_row)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "a copy of %llu bytes at offset %llu crosses a row boundary: upstream CopyKvCache"
                " copies within one batch row",
                static_cast<unsigned long long>(nbytes), static_cast<unsigned long long>(src_in));
  uint64_t src_batch = src_offset / src_row, dst_batch = dst_offset / dst_row;
  if (src_batch > UINT32_MAX || dst_batch > UINT32_MAX)
    return fail(LLMDD_FEATURE_NOT_ENABLED, "batch index beyond upstream's uint32 range");
  out->src_batch_index = static_cast<uint32_t>(src_batch);
  out->dst_batch_index = static_cast<uint32_t>(dst_batch);
  out->offset = src_in;
  out->size = static_cast<int64_t>(nbytes);
  return LLMDD_SUCCESS;
}

std::vector<RowCopy> row_copies(const CacheLayout &dst_layout, const std::vector<uint64_t> &dst_addrs,
                                const CacheLayout &src_layout, const std::vector<uint64_t> &src_addrs,
                                const CopyPlan &plan) {
  std::vector<RowCopy> copies;
  if (!plan.blocks.empty()) {
    size_t n = dst_addrs.size() < src_addrs.size() ? dst_addrs.size() : src_addrs.size();
    for (size_t i = 0; i < n; i++)
      for (const auto &pair : plan.blocks) {
        if (plan.same_cache && pair.first == pair.second) continue;
        copies.push_back(RowCopy{dst_addrs[i] + pair.second * plan.block_bytes,
                                 src_addrs[i] + pair.first * plan.block_bytes, plan.block_bytes});
      }
    return copies;
  }
  if (plan.nothing || plan.size <= 0) return copies;
  uint64_t dst_at = plan.dst_batch_index * dst_layout.row_bytes() + plan.offset;
  uint64_t src_at = plan.src_batch_index * src_layout.row_bytes() + plan.offset;
  size_t n = dst_addrs.size() < src_addrs.size() ? dst_addrs.size() : src_addrs.size();
  for (size_t i = 0; i < n; i++)
    copies.push_back(RowCopy{dst_addrs[i] + dst_at, src_addrs[i] + src_at, static_cast<uint64_t>(plan.size)});
  return copies;
}

std::vector<int64_t> upstream_shape(const CacheLayout &layout) {
  return {static_cast<int64_t>(layout.batch_size), static_cast<int64_t>(layout.row_bytes())};
}

}  // namespace llmdd
