// SIMULATION, test-only: llm_datadist::LlmDataDist and ge::AscendString as
// declared in ../../decls, on host memory, without a network. Not CANN; see
// README.md. Built twice: as libllm_datadist.so (V2) and libllm_engine.so (V1).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "llm_datadist/llm_datadist.h"

namespace ge {
AscendString::AscendString(const char *name) : name_(std::make_shared<std::string>(name ? name : "")) {}
AscendString::AscendString(const char *name, size_t length)
    : name_(std::make_shared<std::string>(name ? std::string(name, length) : "")) {}
const char *AscendString::GetString() const { return name_ ? name_->c_str() : ""; }
size_t AscendString::GetLength() const { return name_ ? name_->size() : 0; }
bool AscendString::operator<(const AscendString &o) const { return std::strcmp(GetString(), o.GetString()) < 0; }
bool AscendString::operator>(const AscendString &o) const { return o < *this; }
bool AscendString::operator==(const AscendString &o) const { return std::strcmp(GetString(), o.GetString()) == 0; }
bool AscendString::operator!=(const AscendString &o) const { return !(*this == o); }
}  // namespace ge

namespace llm_datadist {

struct Entry {
  CacheDesc desc;
  std::vector<uintptr_t> addrs;
  bool owned;  // AllocateCache's (V1) memory, freed by DeallocateCache
};

class LlmDataDist::LlmDataDistImpl {
 public:
  uint64_t cluster_id = 0;
  bool initialised = false;
  int32_t devices = 1;
  int64_t next_id = 1;
  std::map<int64_t, Entry> caches;
};

namespace {
uint64_t tensor_bytes(const CacheDesc &desc) {
  uint64_t n = 1;
  for (int64_t d : desc.shape) n *= static_cast<uint64_t>(d);
  return n;  // DT_UINT8
}
void trace(const char *what) {
  if (std::getenv("LLMDD_SIM_TRACE") != nullptr) std::fprintf(stderr, "[sim llm_datadist] %s\n", what);
}
}  // namespace

LlmDataDist::LlmDataDist(uint64_t cluster_id, LlmRole) : impl_(new LlmDataDistImpl()) { impl_->cluster_id = cluster_id; }
LlmDataDist::~LlmDataDist() = default;

Status LlmDataDist::Initialize(const std::map<AscendString, AscendString> &options) {
  for (const auto &kv : options) {
    std::string line = std::string("option ") + kv.first.GetString() + "=" + kv.second.GetString();
    trace(line.c_str());
  }
  auto it = options.find(AscendString(OPTION_DEVICE_ID));
  if (it == options.end()) return LLM_PARAM_INVALID;
  impl_->devices = 1;
  for (const char *p = it->second.GetString(); *p; p++) impl_->devices += *p == ';';
  impl_->initialised = true;
  return LLM_SUCCESS;
}
void LlmDataDist::Finalize() {
  for (auto &entry : impl_->caches)
    if (entry.second.owned)
      for (uintptr_t a : entry.second.addrs) std::free(reinterpret_cast<void *>(a));
  impl_->caches.clear();
  impl_->initialised = false;
}
// V2 implements SetRole; V1's engine has no role switch in this simulation.
Status LlmDataDist::SetRole(LlmRole role, const std::map<AscendString, AscendString> &) {
#ifdef LLMDD_SIM_V2
  trace(role == LlmRole::kPrompt ? "SetRole(PROMPT)" : role == LlmRole::kDecoder ? "SetRole(DECODER)" : "SetRole(MIX)");
  return LLM_SUCCESS;
#else
  (void)role;
  return LLM_FEATURE_NOT_ENABLED;
#endif
}

Status LlmDataDist::LinkLlmClusters(const std::vector<ClusterInfo> &clusters, std::vector<Status> &rets, int32_t) {
  rets.assign(clusters.size(), LLM_LINK_FAILED);
  trace("LinkLlmClusters: the simulation has no network");
  return LLM_LINK_FAILED;
}
Status LlmDataDist::UnlinkLlmClusters(const std::vector<ClusterInfo> &clusters, std::vector<Status> &rets, int32_t,
                                      bool) {
  rets.assign(clusters.size(), LLM_SUCCESS);
  return LLM_SUCCESS;
}

// V2 (libllm_datadist.so, built with LLMDD_SIM_V2) answers AllocateCache,
// DeallocateCache, CopyKvCache and CopyKvBlocks with LLM_FEATURE_NOT_ENABLED,
// as upstream's V2 does.
Status LlmDataDist::AllocateCache(const CacheDesc &cache_desc, Cache &cache) {
#ifdef LLMDD_SIM_V2
  (void)cache_desc;
  (void)cache;
  return LLM_FEATURE_NOT_ENABLED;
#endif
  if (!impl_->initialised || cache_desc.placement != CachePlacement::kDevice) return LLM_PARAM_INVALID;
  uint64_t bytes = tensor_bytes(cache_desc);
  Entry entry{cache_desc, {}, true};
  for (int32_t d = 0; d < impl_->devices; d++)
    for (uint32_t t = 0; t < cache_desc.num_tensors; t++) {
      void *p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
      if (p == nullptr) return LLM_DEVICE_OUT_OF_MEMORY;
      std::memset(p, 0x5A, bytes);
      entry.addrs.push_back(reinterpret_cast<uintptr_t>(p));
    }
  cache.cache_id = impl_->next_id++;
  cache.tensor_addrs = entry.addrs;
  cache.cache_desc = cache_desc;
  impl_->caches[cache.cache_id] = entry;
  return LLM_SUCCESS;
}
Status LlmDataDist::DeallocateCache(int64_t cache_id) {
#ifdef LLMDD_SIM_V2
  (void)cache_id;
  return LLM_FEATURE_NOT_ENABLED;
#endif
  auto it = impl_->caches.find(cache_id);
  if (it == impl_->caches.end()) return LLM_SUCCESS;  // as documented: not an error
  for (uintptr_t a : it->second.addrs) std::free(reinterpret_cast<void *>(a));
  impl_->caches.erase(it);
  return LLM_SUCCESS;
}

Status LlmDataDist::PullKvCache(const CacheIndex &, const Cache &, uint32_t, int64_t, const KvCacheExtParam &) {
  return LLM_NOT_YET_LINK;
}
// Block pulls and pushes: upstream's checks of their arguments (hicann/hixl
// llm_datadist_impl.cc, CheckKvCacheExtParam), each call traced; then, with no
// network, no peer: LLM_NOT_YET_LINK.
namespace {
bool bad_range(const std::pair<int32_t, int32_t> &r) { return r.first < -1 || r.second < -1 || r.first > r.second; }
Status check_transfer(const char *call, const CacheIndex &index, const std::vector<uint64_t> &src_blocks,
                      const std::vector<uint64_t> &dst_blocks, const KvCacheExtParam &ext, bool same_size) {
  char line[256];
  std::snprintf(line, sizeof line, "%s cluster=%llu cache=%lld batch=%u blocks=%zu src_layers=[%d,%d]"
                " dst_layers=[%d,%d] tensor_num_per_layer=%u", call, static_cast<unsigned long long>(index.cluster_id),
                static_cast<long long>(index.cache_id), index.batch_index, src_blocks.size(), ext.src_layer_range.first,
                ext.src_layer_range.second, ext.dst_layer_range.first, ext.dst_layer_range.second,
                static_cast<unsigned>(ext.tensor_num_per_layer));
  trace(line);
  if (bad_range(ext.src_layer_range) || bad_range(ext.dst_layer_range) || ext.tensor_num_per_layer == 0)
    return LLM_PARAM_INVALID;
  if (same_size && ext.src_layer_range.second - ext.src_layer_range.first !=
                       ext.dst_layer_range.second - ext.dst_layer_range.first)
    return LLM_PARAM_INVALID;
  if (src_blocks.size() != dst_blocks.size()) return LLM_PARAM_INVALID;
  return LLM_NOT_YET_LINK;
}
}  // namespace

Status LlmDataDist::PullKvBlocks(const CacheIndex &index, const Cache &, const std::vector<uint64_t> &src_blocks,
                                 const std::vector<uint64_t> &dst_blocks, const KvCacheExtParam &ext) {
  if (index.batch_index != 0 || src_blocks.empty()) return LLM_PARAM_INVALID;
  return check_transfer("PullKvBlocks", index, src_blocks, dst_blocks, ext, false);
}
Status LlmDataDist::CopyKvCache(const Cache &src, const Cache &dst, uint32_t src_batch, uint32_t dst_batch,
                                uint64_t offset, int64_t size) {
#ifdef LLMDD_SIM_V2
  (void)src, (void)dst, (void)src_batch, (void)dst_batch, (void)offset, (void)size;
  return LLM_FEATURE_NOT_ENABLED;
#endif
  auto s = impl_->caches.find(src.cache_id), d = impl_->caches.find(dst.cache_id);
  if (s == impl_->caches.end() || d == impl_->caches.end()) return LLM_KV_CACHE_NOT_EXIST;
  if (src.tensor_addrs != s->second.addrs || dst.tensor_addrs != d->second.addrs) return LLM_PARAM_INVALID;
  uint64_t srow = tensor_bytes(s->second.desc) / static_cast<uint64_t>(s->second.desc.shape[0]);
  uint64_t drow = tensor_bytes(d->second.desc) / static_cast<uint64_t>(d->second.desc.shape[0]);
  uint64_t n = size < 0 ? srow - offset : static_cast<uint64_t>(size);
  if (offset + n > srow || offset + n > drow) return LLM_PARAM_INVALID;
  for (size_t i = 0; i < src.tensor_addrs.size(); i++)
    std::memcpy(reinterpret_cast<uint8_t *>(dst.tensor_addrs[i]) + dst_batch * drow + offset,
                reinterpret_cast<const uint8_t *>(src.tensor_addrs[i]) + src_batch * srow + offset, n);
  return LLM_SUCCESS;
}
Status LlmDataDist::CopyKvBlocks(const Cache &, const Cache &, const std::vector<uint64_t> &,
                                 const std::vector<std::vector<uint64_t>> &) {
  return LLM_FEATURE_NOT_ENABLED;
}
Status LlmDataDist::PushKvCache(const Cache &src, const CacheIndex &index, uint32_t, int64_t size,
                                const KvCacheExtParam &ext) {
  if (src.cache_desc.placement != CachePlacement::kDevice || size != -1) return LLM_PARAM_INVALID;
  return check_transfer("PushKvCache", index, {}, {}, ext, true);
}
Status LlmDataDist::PushKvBlocks(const Cache &src, const CacheIndex &index, const std::vector<uint64_t> &src_blocks,
                                 const std::vector<uint64_t> &dst_blocks, const KvCacheExtParam &ext) {
  if (src.cache_desc.placement != CachePlacement::kDevice || src_blocks.empty() || index.batch_index != 0)
    return LLM_PARAM_INVALID;
  return check_transfer("PushKvBlocks", index, src_blocks, dst_blocks, ext, true);
}

Status LlmDataDist::RegisterKvCache(const CacheDesc &cache_desc, const std::vector<uint64_t> &addrs,
                                    const RegisterCfg &, int64_t &cache_id) {
  if (!impl_->initialised || addrs.size() != cache_desc.num_tensors) return LLM_PARAM_INVALID;
  cache_id = impl_->next_id++;
  impl_->caches[cache_id] = Entry{cache_desc, std::vector<uintptr_t>(addrs.begin(), addrs.end()), false};
  return LLM_SUCCESS;
}
Status LlmDataDist::UnregisterKvCache(int64_t cache_id) {
  return impl_->caches.erase(cache_id) == 1 ? LLM_SUCCESS : LLM_KV_CACHE_NOT_EXIST;
}

}  // namespace llm_datadist
