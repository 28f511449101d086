#include "options.hpp"

#include <new>

#include "core/options.h"
#include "error.hpp"
#include "llmdd.h"

namespace llmdd {
namespace {

// Upstream option keys: llm_datadist/llm_datadist.h (OPTION_DEVICE_ID,
// OPTION_LISTEN_IP_INFO, OPTION_SYNC_CACHE_WAIT_TIME).
constexpr const char kUpDeviceId[] = "llm.DeviceId";
constexpr const char kUpListen[] = "llm.ListenIpInfo";
constexpr const char kUpSyncWait[] = "llm.SyncKvCacheWaitTime";
// The keys the TypeScript LLMConfig generates (and the host backend reads).
constexpr const char kHostDeviceId[] = "ge.exec.deviceId";
constexpr const char kHostListen[] = "llm.listenIpInfo";
constexpr const char kPoolBytes[] = "ge.flowGraphMemMaxSize";
// Upstream keys read for its rules (llm_datadist.h OPTION_TRANSFER_BACKEND,
// OPTION_LOCAL_COMM_RES, OPTION_GLOBAL_RESOURCE_CONFIG) and passed on unchanged.
constexpr const char kTransferBackend[] = "llm.TransferBackend";
constexpr const char kHixl[] = "hixl";  // the one backend upstream's TransferEngineFactory accepts
constexpr const char kLocalCommRes[] = "llm.LocalCommRes";
constexpr const char kGlobalResourceConfig[] = "llm.GlobalResourceConfig";
// The adapter's own key.
constexpr const char kLocalIps[] = "llmdd.cann.localIpInfo";

constexpr int kQuoteMax = 80;  // values are quoted in messages up to this many bytes

// The core's lexer (ffi/core/options.h) on std::string.
core_span span_of(const std::string &s) { return core_span{s.data(), static_cast<int32_t>(s.size())}; }

std::string string_of(core_span s) { return std::string(s.p, static_cast<size_t>(s.n)); }

std::string trim(const std::string &s) { return string_of(core_span_trim(span_of(s))); }

std::string quote(const std::string &s) {
  return s.size() <= static_cast<size_t>(kQuoteMax) ? s : s.substr(0, kQuoteMax) + "...";
}

// A plain decimal (digits only) up to limit.
bool parse_decimal(const std::string &s, uint64_t limit, uint64_t *out) {
  return core_span_decimal(span_of(s), limit, out) == 0;
}

// The parts of s between seps, each trimmed.
std::vector<std::string> split(const std::string &s, char sep) {
  std::vector<std::string> parts;
  core_span rest = span_of(s), item;
  for (bool more = true; more;) {
    more = core_span_split(&rest, sep, &item);
    parts.push_back(string_of(item));
  }
  return parts;
}

bool parse_ipv4(const std::string &s) {
  std::vector<std::string> parts = split(s, '.');
  if (parts.size() != 4) return false;
  for (const std::string &p : parts) {
    uint64_t v;
    if (p.size() > 3 || !parse_decimal(p, 255, &v)) return false;
  }
  return true;
}

int32_t parse_device_ids(const std::string &key, const std::string &value,
                         std::vector<int32_t> *out) {
  std::vector<int32_t> ids;
  for (const std::string &item : split(value, ';')) {
    uint64_t id;
    if (!parse_decimal(item, INT32_MAX, &id))
      return fail(LLMDD_PARAM_INVALID, "%s '%s': device id '%s' is not a non-negative integer",
                  key.c_str(), quote(value).c_str(), quote(item).c_str());
    if (ids.size() == static_cast<size_t>(kMaxDevices))
      return fail(LLMDD_PARAM_INVALID, "%s lists more than %d devices", key.c_str(), kMaxDevices);
    for (int32_t seen : ids)
      if (seen == static_cast<int32_t>(id))
        return fail(LLMDD_PARAM_INVALID, "%s lists device %d twice", key.c_str(), seen);
    ids.push_back(static_cast<int32_t>(id));
  }
  *out = ids;
  return LLMDD_SUCCESS;
}

struct Seen {
  bool given = false;
  std::string key;
  std::string value;
};

// Two spellings of one option must agree (compared after parsing).
int32_t check_same(const Seen &a, const Seen &b, bool same) {
  if (a.given && b.given && !same)
    return fail(LLMDD_PARAM_INVALID, "%s '%s' and %s '%s' disagree: give one of them",
                a.key.c_str(), quote(a.value).c_str(), b.key.c_str(), quote(b.value).c_str());
  return LLMDD_SUCCESS;
}

void set_passthrough(EngineOptions *out, const std::string &key, const std::string &value) {
  for (auto &kv : out->passthrough)
    if (kv.first == key) {
      kv.second = value;
      return;
    }
  out->passthrough.emplace_back(key, value);
}

bool same_ips(const std::vector<IpPort> &a, const std::vector<IpPort> &b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].ip != b[i].ip || a[i].port != b[i].port) return false;
  return true;
}

// What parse_options has read so far, one option at a time from the core's lexer
// (ffi/core/options.h).
struct Reading {
  EngineOptions *out = nullptr;
  Seen host_ids, up_ids, host_listen, up_listen;
  std::vector<int32_t> host_id_list, up_id_list;
  std::vector<IpPort> host_listen_list, up_listen_list;
  bool saw_global_config = false;
};

int32_t read_option(Reading &r, const std::string &key, const std::string &value) {
  EngineOptions *out = r.out;
  int32_t status = LLMDD_SUCCESS;
  if (key == kHostDeviceId || key == kUpDeviceId) {
    bool host = key == kHostDeviceId;
    status = parse_device_ids(key, value, host ? &r.host_id_list : &r.up_id_list);
    (host ? r.host_ids : r.up_ids) = Seen{true, key, value};
  } else if (key == kHostListen || key == kUpListen) {
    bool host = key == kHostListen;
    if (!parse_ip_list(value, false, host ? &r.host_listen_list : &r.up_listen_list))
      status = fail(LLMDD_PARAM_INVALID,
                    "%s '%s' is not an IPv4 address and port (\"ipv4:port\", several"
                    " separated by ';')",
                    key.c_str(), quote(value).c_str());
    (host ? r.host_listen : r.up_listen) = Seen{true, key, value};
  } else if (key == kUpSyncWait) {
    uint64_t ms;
    if (!parse_decimal(value, INT32_MAX, &ms) || ms == 0)
      status = fail(LLMDD_PARAM_INVALID,
                    "%s '%s' is not a positive integer number of milliseconds (at most %d)",
                    key.c_str(), quote(value).c_str(), INT32_MAX);
    else {
      out->sync_wait_ms = static_cast<int32_t>(ms);
      out->sync_wait_given = true;
    }
  } else if (key == kPoolBytes) {
    uint64_t bytes;
    if (!parse_decimal(value, kPoolBytesLimit, &bytes) || bytes == 0)
      status = fail(LLMDD_PARAM_INVALID,
                    "%s '%s' is not a positive integer number of bytes (at most %llu)",
                    key.c_str(), quote(value).c_str(),
                    static_cast<unsigned long long>(kPoolBytesLimit));
    else {
      out->pool_bytes = bytes;
      set_passthrough(out, key, value);
    }
  } else if (key == kLocalIps) {
    if (!parse_ip_list(value, true, &out->local))
      status = fail(LLMDD_PARAM_INVALID,
                    "%s '%s' is not a list of IPv4 addresses (\"ip\" or \"ip:port\","
                    " separated by ';')",
                    key.c_str(), quote(value).c_str());
  } else {
    if (key == kTransferBackend) {
      if (value != kHixl)
        status = fail(LLMDD_PARAM_INVALID,
                      "%s '%s' is not a transfer backend upstream has: the one it accepts is"
                      " \"%s\" (leave the option out for the default engine)",
                      key.c_str(), quote(value).c_str(), kHixl);
      out->hixl = true;
    } else if (key == kLocalCommRes) {
      // Upstream treats an empty value as not configured (it generates its own).
      out->local_comm_res = !value.empty();
    } else if (key == kGlobalResourceConfig) {
      r.saw_global_config = true;
    }
    set_passthrough(out, key, value);
  }
  return status;
}

// Called from C (the lexer): nothing may be thrown through it.
int32_t on_option(void *arg, core_span key, core_span value) {
  try {
    return read_option(*static_cast<Reading *>(arg), string_of(key), string_of(value));
  } catch (const std::bad_alloc &) {
    return fail(LLMDD_OUT_OF_MEMORY, "out of host memory for the options");
  }
}

}  // namespace

const char *flavor_name(Flavor flavor) {
  return flavor == Flavor::kV1 ? "LLM-DataDist V1 (libllm_engine.so)"
                               : "LLM-DataDist V2 (libllm_datadist.so)";
}

bool parse_ip_list(const std::string &text, bool allow_no_port, std::vector<IpPort> *out) {
  std::vector<IpPort> list;
  for (const std::string &item : split(trim(text), ';')) {
    IpPort entry;
    size_t colon = item.rfind(':');
    std::string ip = colon == std::string::npos ? item : item.substr(0, colon);
    if (colon == std::string::npos) {
      if (!allow_no_port) return false;
    } else {
      uint64_t port;
      if (!parse_decimal(item.substr(colon + 1), 65535, &port)) return false;
      entry.port = static_cast<uint16_t>(port);
    }
    if (!parse_ipv4(ip)) return false;
    entry.ip = ip;
    list.push_back(entry);
  }
  *out = list;
  return true;
}

std::string format_ip_list(const std::vector<IpPort> &list) {
  std::string text;
  for (size_t i = 0; i < list.size(); i++) {
    if (i > 0) text += ';';
    text += list[i].ip + ":" + std::to_string(list[i].port);
  }
  return text;
}

int32_t parse_options(const uint8_t *text, int32_t len, EngineOptions *out) {
  *out = EngineOptions();
  Reading r;
  r.out = out;
  int32_t status = core_options_each(text, len, on_option, &r);
  if (status != LLMDD_SUCCESS) return status;

  status = check_same(r.host_ids, r.up_ids, r.host_id_list == r.up_id_list);
  if (status == LLMDD_SUCCESS)
    status = check_same(r.host_listen, r.up_listen, same_ips(r.host_listen_list, r.up_listen_list));
  if (status != LLMDD_SUCCESS) return status;
  if (r.host_ids.given) out->device_ids = r.host_id_list;
  else if (r.up_ids.given) out->device_ids = r.up_id_list;
  if (r.host_listen.given) out->listen = r.host_listen_list;
  else if (r.up_listen.given) out->listen = r.up_listen_list;
  if (r.saw_global_config && !out->hixl)
    return fail(LLMDD_PARAM_INVALID,
                "%s is HIXL's configuration and takes effect only with %s=%s (upstream would"
                " ignore it): add %s=%s or leave it out",
                kGlobalResourceConfig, kTransferBackend, kHixl, kTransferBackend, kHixl);
  return LLMDD_SUCCESS;
}

int32_t check_options(const EngineOptions &options, int32_t role, Flavor flavor) {
  size_t devices = options.device_ids.size();
  if (flavor == Flavor::kV2 && devices > 1)
    return fail(LLMDD_FEATURE_NOT_ENABLED,
                "%zu devices configured, but %s drives one device per process: start one"
                " process per device",
                devices, flavor_name(flavor));
  if (!options.listen.empty() && role == LLMDD_ROLE_DECODER && !options.hixl)
    return fail(LLMDD_PARAM_INVALID,
                "llm.listenIpInfo is for PROMPT and MIX engines: a DECODER links, it is not"
                " linked to (with llm.TransferBackend=hixl every side listens)");
  if (options.listen.empty() && options.hixl)
    return fail(LLMDD_PARAM_INVALID,
                "llm.TransferBackend=hixl needs llm.listenIpInfo on every side, DECODER"
                " included: with HIXL each side is both client and server");
  if (options.local.size() > 1)
    return fail(LLMDD_PARAM_INVALID,
                "llmdd.cann.localIpInfo lists %zu addresses: upstream's ClusterInfo takes"
                " exactly one local_ip_info",
                options.local.size());
  if (options.listen.empty() && role == LLMDD_ROLE_PROMPT && flavor == Flavor::kV1)
    return fail(LLMDD_PARAM_INVALID,
                "a PROMPT engine on %s needs llm.listenIpInfo (the device IP and port it"
                " listens on)",
                flavor_name(flavor));
  if (!options.listen.empty() && options.listen.size() != 1 && options.listen.size() != devices)
    return fail(LLMDD_PARAM_INVALID,
                "llm.listenIpInfo lists %zu addresses for %zu devices: give one, or one per"
                " device",
                options.listen.size(), devices);
  if (flavor == Flavor::kV2 && options.listen.size() > 1)
    return fail(LLMDD_FEATURE_NOT_ENABLED, "%s listens on one address, %zu were given",
                flavor_name(flavor), options.listen.size());
  for (const IpPort &entry : options.listen)
    if (entry.port == 0)
      return fail(LLMDD_FEATURE_NOT_ENABLED,
                  "llm.listenIpInfo '%s:0': upstream listens on the port it is given; port 0"
                  " (any free port) is a host-backend feature",
                  entry.ip.c_str());
  return LLMDD_SUCCESS;
}

int32_t check_link_options(const EngineOptions &options, Flavor flavor) {
  if (flavor != Flavor::kV2 || options.hixl || options.local_comm_res) return LLMDD_SUCCESS;
  if (options.local.size() != 1)
    return fail(LLMDD_PARAM_INVALID,
                "linking on %s without llm.LocalCommRes needs this side's address: give"
                " exactly one in llmdd.cann.localIpInfo (upstream's local_ip_infos), or"
                " set llm.LocalCommRes",
                flavor_name(flavor));
  return LLMDD_SUCCESS;
}

std::vector<std::pair<std::string, std::string>> upstream_options(const EngineOptions &options) {
  std::vector<std::pair<std::string, std::string>> map;
  std::string ids;
  for (size_t i = 0; i < options.device_ids.size(); i++) {
    if (i > 0) ids += ';';
    ids += std::to_string(options.device_ids[i]);
  }
  map.emplace_back(kUpDeviceId, ids);
  if (!options.listen.empty()) map.emplace_back(kUpListen, format_ip_list(options.listen));
  if (options.sync_wait_given) map.emplace_back(kUpSyncWait, std::to_string(options.sync_wait_ms));
  for (const auto &kv : options.passthrough) map.push_back(kv);
  return map;
}

}  // namespace llmdd
