// Link bookkeeping of one engine: which clusters it is linked to (at most
// LLMDD_MAX_LINKS, upstream's per-call limit), and at which addresses, so that
// unlink can hand upstream the same ClusterInfo that link did.
#ifndef LLMDD_CANN_LINKS_HPP
#define LLMDD_CANN_LINKS_HPP

#include <cstdint>
#include <vector>

#include "options.hpp"

namespace llmdd {

struct Link {
  uint64_t cluster_id = 0;
  std::vector<IpPort> remote;
  bool pending = true;  // LinkLlmClusters is running for it
  uint64_t epoch = 0;   // Links::epoch() once this link was reserved
};

class Links {
 public:
  // Takes a slot for a link about to be made: ALREADY_LINK (linked, or being
  // linked) or CLUSTER_NUM_EXCEED_LIMIT with a message.
  int32_t reserve(uint64_t cluster_id, const std::vector<IpPort> &remote);
  // The link call's outcome: success keeps the slot, failure frees it.
  void settle(uint64_t cluster_id, bool linked);
  // A link that is established (not pending), or null.
  Link *find(uint64_t cluster_id);
  // Removes an established link for unlink: NOT_YET_LINK when there is none.
  int32_t take(uint64_t cluster_id, Link *out);
  // Every established link (finalize unlinks them).
  std::vector<Link> take_all();
  int32_t count() const { return static_cast<int32_t>(links_.size()); }
  // How many links have been started: a cache records it when allocated, so a
  // pull can tell a cache registered after its link was made (upstream makes
  // only memory registered before LinkLlmClusters remotely accessible).
  uint64_t epoch() const { return epoch_; }

 private:
  std::vector<Link> links_;
  uint64_t epoch_ = 0;
};

// The remote addresses of a link ("ip:port", one per device on V1 with several
// devices, separated by ';'): PARAM_INVALID for a malformed text or a count that
// is neither 1 nor the number of devices; FEATURE_NOT_ENABLED for several on V2.
int32_t parse_link_address(const uint8_t *text, int32_t len, int32_t num_devices, Flavor flavor,
                           std::vector<IpPort> *out);

}  // namespace llmdd

#endif
