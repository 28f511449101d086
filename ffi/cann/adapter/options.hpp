// The option text llmdd_engine_init() receives (`key=value` lines) and the
// std::map<AscendString, AscendString> it becomes for LlmDataDist::Initialize.
//
// Keys read (either spelling; both at once must agree):
//   ge.exec.deviceId | llm.DeviceId                  → llm.DeviceId
//   llm.listenIpInfo | llm.ListenIpInfo              → llm.ListenIpInfo
//   llm.SyncKvCacheWaitTime                          → llm.SyncKvCacheWaitTime
//   ge.flowGraphMemMaxSize   the adapter's per-device budget for caches; also
//                            passed on unchanged (an upstream GE option)
//   llmdd.cann.localIpInfo   the adapter's own key: this side's IPs for
//                            LinkLlmClusters' local_ip_infos; not passed on
//   llm.TransferBackend      passed on; read for upstream's rules ("hixl" only)
//   llm.LocalCommRes         passed on; read for upstream's rules (non-empty: set)
//   llm.GlobalResourceConfig passed on; read for upstream's rules (hixl only)
// Every other key is passed on unchanged (llm.BufPoolCfg, llm.EnableSwitchRole, ...).
#ifndef LLMDD_CANN_OPTIONS_HPP
#define LLMDD_CANN_OPTIONS_HPP

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmdd {

// Which upstream API the library was built for.
//   kV1: LLM-DataDist V1 (libllm_engine.so): AllocateCache/DeallocateCache; one
//        process may drive several devices ("0;1", addresses in device order).
//   kV2: LLM-DataDist V2 (libllm_datadist.so): caches are device memory from ACL
//        registered with RegisterKvCache; one device per process.
enum class Flavor { kV1 = 1, kV2 = 2 };
const char *flavor_name(Flavor flavor);

constexpr int32_t kMaxDevices = 64;  // as the host backend (and the TypeScript side)
constexpr uint64_t kDefaultPoolBytes = uint64_t{1} << 30;
constexpr uint64_t kPoolBytesLimit = uint64_t{1} << 62;
constexpr int32_t kDefaultSyncWaitMs = 1000;  // upstream's default SyncKvCacheWaitTime

struct IpPort {
  std::string ip;  // dotted IPv4, as given
  uint16_t port = 0;
};

struct EngineOptions {
  std::vector<int32_t> device_ids{0};
  uint64_t pool_bytes = kDefaultPoolBytes;
  int32_t sync_wait_ms = kDefaultSyncWaitMs;
  bool sync_wait_given = false;
  std::vector<IpPort> listen;        // empty: not listening
  std::vector<IpPort> local;         // llmdd.cann.localIpInfo
  bool hixl = false;                 // llm.TransferBackend=hixl
  bool local_comm_res = false;       // llm.LocalCommRes given and not empty
  // Keys passed on unchanged, in first-seen order (a later line for a key wins).
  std::vector<std::pair<std::string, std::string>> passthrough;
};

// Parses the option text. Returns SUCCESS or PARAM_INVALID with a message naming
// the key and the bad value.
int32_t parse_options(const uint8_t *text, int32_t len, EngineOptions *out);

// Checks what the role and the upstream flavour allow. PARAM_INVALID: a DECODER
// given a listen address without llm.TransferBackend=hixl (with hixl every side
// listens, and must be given an address), a V1 PROMPT without one (upstream
// requires it), a listen list whose length is not 1 or the number of devices,
// an llm.TransferBackend other than "hixl", llm.GlobalResourceConfig without
// hixl, more than one llmdd.cann.localIpInfo address (upstream's ClusterInfo
// takes one). FEATURE_NOT_ENABLED: several devices on V2, port 0 (upstream
// listens on the port it is given; "any free port" is a host-backend feature).
int32_t check_options(const EngineOptions &options, int32_t role, Flavor flavor);

// What LinkLlmClusters needs of this side: on V2 with upstream's default
// transfer engine and no llm.LocalCommRes, exactly one local address
// (ClusterInfo::local_ip_infos, from llmdd.cann.localIpInfo); PARAM_INVALID
// with a message otherwise.
int32_t check_link_options(const EngineOptions &options, Flavor flavor);

// The map for LlmDataDist::Initialize, as ordered key/value pairs.
std::vector<std::pair<std::string, std::string>> upstream_options(const EngineOptions &options);

// "ip:port" entries separated by ';' (link addresses, llm.listenIpInfo). Ports
// 0-65535; with allow_no_port an entry may be a bare IP (port 0).
bool parse_ip_list(const std::string &text, bool allow_no_port, std::vector<IpPort> *out);
std::string format_ip_list(const std::vector<IpPort> &list);

}  // namespace llmdd

#endif
