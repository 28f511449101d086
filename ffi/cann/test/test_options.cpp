// Option mapping: the ABI's key=value text → LlmDataDist::Initialize's map.
#include <cstring>
#include <string>

#include "error.hpp"
#include "harness.hpp"
#include "llmdd.h"
#include "options.hpp"

using namespace llmdd;

namespace {
int32_t parse(const std::string &text, EngineOptions *out) {
  return parse_options(reinterpret_cast<const uint8_t *>(text.data()), static_cast<int32_t>(text.size()), out);
}
std::string value_of(const std::vector<std::pair<std::string, std::string>> &map, const std::string &key) {
  for (const auto &kv : map)
    if (kv.first == key) return kv.second;
  return "<absent>";
}
bool has(const std::string &text, const char *part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST(options_defaults_map_to_device_0) {
  EngineOptions o;
  CHECK_STATUS(parse("", &o), LLMDD_SUCCESS);
  EXPECT_EQ(o.device_ids.size(), 1);
  EXPECT_EQ(o.device_ids[0], 0);
  EXPECT_EQ(o.pool_bytes, kDefaultPoolBytes);
  auto map = upstream_options(o);
  EXPECT_EQ(map.size(), 1);
  EXPECT(value_of(map, "llm.DeviceId") == "0");
}

TEST(options_host_keys_become_upstream_keys) {
  EngineOptions o;
  CHECK_STATUS(parse("ge.exec.deviceId=0;1\nllm.listenIpInfo=192.168.1.1:26000\n"
                     "llm.SyncKvCacheWaitTime=500\nge.flowGraphMemMaxSize=1048576\n",
                     &o),
               LLMDD_SUCCESS);
  auto map = upstream_options(o);
  EXPECT(value_of(map, "llm.DeviceId") == "0;1");
  EXPECT(value_of(map, "llm.ListenIpInfo") == "192.168.1.1:26000");
  EXPECT(value_of(map, "llm.SyncKvCacheWaitTime") == "500");
  EXPECT(value_of(map, "ge.flowGraphMemMaxSize") == "1048576");
  EXPECT(value_of(map, "ge.exec.deviceId") == "<absent>");
  EXPECT(value_of(map, "llm.listenIpInfo") == "<absent>");
  EXPECT_EQ(o.pool_bytes, 1048576);
  EXPECT_EQ(o.sync_wait_ms, 500);
}

TEST(options_upstream_spellings_are_accepted) {
  EngineOptions o;
  CHECK_STATUS(parse("llm.DeviceId=3\nllm.ListenIpInfo=10.0.0.1:26001", &o), LLMDD_SUCCESS);
  EXPECT_EQ(o.device_ids[0], 3);
  EXPECT_EQ(o.listen.size(), 1);
  EXPECT_EQ(o.listen[0].port, 26001);
}

TEST(options_two_spellings_must_agree) {
  EngineOptions o;
  EXPECT_STATUS(parse("ge.exec.deviceId=0;1\nllm.DeviceId=0;1", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(parse("ge.exec.deviceId=0\nllm.DeviceId=1", &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "disagree"));
  EXPECT_STATUS(parse("llm.listenIpInfo=1.2.3.4:1\nllm.ListenIpInfo=1.2.3.4:2", &o), LLMDD_PARAM_INVALID);
}

TEST(options_other_keys_pass_through_and_later_lines_win) {
  EngineOptions o;
  CHECK_STATUS(parse("llm.BufPoolCfg={\"buf_pool_size\": 2147483648}\nllm.EnableSwitchRole=0\n"
                     "  llm.EnableSwitchRole = 1  \n\nllm.LocalCommRes=\n",
                     &o),
               LLMDD_SUCCESS);
  auto map = upstream_options(o);
  EXPECT(value_of(map, "llm.BufPoolCfg") == "{\"buf_pool_size\": 2147483648}");
  EXPECT(value_of(map, "llm.EnableSwitchRole") == "1");
  EXPECT(value_of(map, "llm.LocalCommRes") == "");
  EXPECT_EQ(map.size(), 4);  // llm.DeviceId plus the three
}

TEST(options_adapter_key_local_ip_is_not_passed_on) {
  EngineOptions o;
  CHECK_STATUS(parse("llmdd.cann.localIpInfo=10.0.0.2;10.0.0.3:26002", &o), LLMDD_SUCCESS);
  EXPECT_EQ(o.local.size(), 2);
  EXPECT_EQ(o.local[0].port, 0);
  EXPECT_EQ(o.local[1].port, 26002);
  EXPECT(value_of(upstream_options(o), "llmdd.cann.localIpInfo") == "<absent>");
}

TEST(options_malformed_values_name_the_key) {
  EngineOptions o;
  EXPECT_STATUS(parse("novalue", &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "not key=value"));
  EXPECT_STATUS(parse("ge.exec.deviceId=a", &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "ge.exec.deviceId"));
  EXPECT_STATUS(parse("ge.exec.deviceId=1;1", &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "twice"));
  EXPECT_STATUS(parse("ge.exec.deviceId=-1", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("ge.exec.deviceId=2147483648", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("llm.SyncKvCacheWaitTime=0", &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "llm.SyncKvCacheWaitTime"));
  EXPECT_STATUS(parse("llm.SyncKvCacheWaitTime=2147483648", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("ge.flowGraphMemMaxSize=0", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("llm.listenIpInfo=localhost:1", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("llm.listenIpInfo=1.2.3.256:1", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("llm.listenIpInfo=1.2.3.4:65536", &o), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(parse("llm.listenIpInfo=1.2.3.4", &o), LLMDD_PARAM_INVALID);
  std::string many = "ge.exec.deviceId=0";
  for (int i = 1; i <= kMaxDevices; i++) many += ";" + std::to_string(i);
  EXPECT_STATUS(parse(many, &o), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "more than 64"));
}

TEST(options_role_and_flavor_rules) {
  EngineOptions o;
  CHECK_STATUS(parse("llm.listenIpInfo=1.2.3.4:26000", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_DECODER, Flavor::kV2), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV2), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_MIX, Flavor::kV1), LLMDD_SUCCESS);

  CHECK_STATUS(parse("", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV2), LLMDD_SUCCESS);  // a V2 client
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV1), LLMDD_PARAM_INVALID);
  EXPECT(has(last_error(), "needs llm.listenIpInfo"));

  CHECK_STATUS(parse("ge.exec.deviceId=0;1", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_DECODER, Flavor::kV2), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "one device per process"));
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_DECODER, Flavor::kV1), LLMDD_SUCCESS);

  CHECK_STATUS(parse("ge.exec.deviceId=0;1\nllm.listenIpInfo=1.1.1.1:1;1.1.1.2:1", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV1), LLMDD_SUCCESS);
  CHECK_STATUS(parse("ge.exec.deviceId=0;1;2\nllm.listenIpInfo=1.1.1.1:1;1.1.1.2:1", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV1), LLMDD_PARAM_INVALID);

  CHECK_STATUS(parse("llm.listenIpInfo=1.2.3.4:0", &o), LLMDD_SUCCESS);
  EXPECT_STATUS(check_options(o, LLMDD_ROLE_PROMPT, Flavor::kV2), LLMDD_FEATURE_NOT_ENABLED);
  EXPECT(has(last_error(), "port 0"));
}

TEST(options_ip_lists_round_trip) {
  std::vector<IpPort> list;
  CHECK(parse_ip_list(" 10.0.0.1:1 ; 10.0.0.2:65535 ", false, &list));
  EXPECT(format_ip_list(list) == "10.0.0.1:1;10.0.0.2:65535");
  EXPECT(!parse_ip_list("10.0.0.1:", false, &list));
  EXPECT(!parse_ip_list("10.0.0:1", false, &list));
  EXPECT(!parse_ip_list("", false, &list));
  EXPECT(!parse_ip_list("10.0.0.1;", true, &list));
}
