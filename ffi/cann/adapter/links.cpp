#include "links.hpp"

#include <string>

#include "error.hpp"
#include "llmdd.h"

namespace llmdd {

int32_t Links::reserve(uint64_t cluster_id, const std::vector<IpPort> &remote) {
  for (const Link &l : links_)
    if (l.cluster_id == cluster_id)
      return fail(LLMDD_ALREADY_LINK, l.pending ? "a link to cluster %llu is being made"
                                                : "already linked to cluster %llu",
                  static_cast<unsigned long long>(cluster_id));
  if (links_.size() >= static_cast<size_t>(LLMDD_MAX_LINKS))
    return fail(LLMDD_CLUSTER_NUM_EXCEED_LIMIT, "already linked to %d clusters, the most one engine links to",
                LLMDD_MAX_LINKS);
  Link l;
  l.cluster_id = cluster_id;
  l.remote = remote;
  l.epoch = ++epoch_;
  links_.push_back(l);
  return LLMDD_SUCCESS;
}

void Links::settle(uint64_t cluster_id, bool linked) {
  for (size_t i = 0; i < links_.size(); i++) {
    if (links_[i].cluster_id != cluster_id || !links_[i].pending) continue;
    if (linked) links_[i].pending = false;
    else links_.erase(links_.begin() + static_cast<std::ptrdiff_t>(i));
    return;
  }
}

Link *Links::find(uint64_t cluster_id) {
  for (Link &l : links_)
    if (l.cluster_id == cluster_id && !l.pending) return &l;
  return nullptr;
}

int32_t Links::take(uint64_t cluster_id, Link *out) {
  for (size_t i = 0; i < links_.size(); i++) {
    if (links_[i].cluster_id != cluster_id || links_[i].pending) continue;
    *out = links_[i];
    links_.erase(links_.begin() + static_cast<std::ptrdiff_t>(i));
    return LLMDD_SUCCESS;
  }
  return fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu", static_cast<unsigned long long>(cluster_id));
}

std::vector<Link> Links::take_all() {
  std::vector<Link> linked;
  for (const Link &l : links_)
    if (!l.pending) linked.push_back(l);
  links_.clear();
  return linked;
}

int32_t parse_link_address(const uint8_t *text, int32_t len, int32_t num_devices, Flavor flavor,
                           std::vector<IpPort> *out) {
  if (text == nullptr || len <= 0)
    return fail(LLMDD_PARAM_INVALID, "remote_addr is empty (expected \"ipv4:port\")");
  std::string address(reinterpret_cast<const char *>(text), static_cast<size_t>(len));
  std::vector<IpPort> list;
  if (!parse_ip_list(address, false, &list) || list.empty())
    return fail(LLMDD_PARAM_INVALID, "remote_addr '%.80s' is not an IPv4 address and port (\"ipv4:port\")",
                address.c_str());
  for (const IpPort &entry : list)
    if (entry.port == 0)
      return fail(LLMDD_PARAM_INVALID, "remote_addr '%.80s': port 0 cannot be linked to", address.c_str());
  if (list.size() > 1 && flavor == Flavor::kV2)
    return fail(LLMDD_FEATURE_NOT_ENABLED, "remote_addr '%.80s' lists %zu addresses; %s links to one",
                address.c_str(), list.size(), flavor_name(flavor));
  if (list.size() != 1 && list.size() != static_cast<size_t>(num_devices))
    return fail(LLMDD_PARAM_INVALID, "remote_addr '%.80s' lists %zu addresses for %d devices: give one,"
                " or one per device", address.c_str(), list.size(), num_devices);
  *out = list;
  return LLMDD_SUCCESS;
}

}  // namespace llmdd
