/* Engines: option parsing, info, pool usage, finalize and handle validation. */
#define _DEFAULT_SOURCE 1
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "util.h"

static int32_t init_with(const char *options, uint64_t *engine) {
  return llmdd_engine_init(LLMDD_ROLE_PROMPT, 1, (const uint8_t *)options,
                           (int32_t)strlen(options), engine);
}

TEST(init_uses_defaults_without_options) {
  uint64_t engine = 0, info[4];
  CHECK_STATUS(llmdd_engine_init(LLMDD_ROLE_DECODER, 42, NULL, 0, &engine), LLMDD_SUCCESS);
  CHECK(engine != 0);
  CHECK_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[0] == 1);
  EXPECT(info[1] == LLMDD_INFO_HOST_ACCESSIBLE);
  EXPECT(info[2] == (uint64_t)1 << 30);
  EXPECT(info[3] == LLMDD_ROLE_DECODER);
  uint64_t usage[2];
  CHECK_STATUS(llmdd_pool_usage(engine, 0, usage), LLMDD_SUCCESS);
  EXPECT(usage[0] == 0 && usage[1] == (uint64_t)1 << 30);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(init_parses_good_options) {
  static const struct {
    const char *text;
    uint64_t devices, pool_bytes;
  } cases[] = {
      {"ge.exec.deviceId=0", 1, (uint64_t)1 << 30},
      {"ge.exec.deviceId=0;1;2\nge.flowGraphMemMaxSize=1048576\n", 3, 1048576},
      {"\n  ge.exec.deviceId = 5 ; 3 \r\n\nllm.SyncKvCacheWaitTime=1000\r\n"
       "ge.flowGraphMemMaxSize= 4096 \n",
       2, 4096},
      {"llm.listenIpInfo=127.0.0.1:26000\nsomething.else=a=b", 1, (uint64_t)1 << 30},
      {"ge.flowGraphMemMaxSize=100\nge.flowGraphMemMaxSize=200", 1, 200},
      {"ge.exec.deviceId=2147483647", 1, (uint64_t)1 << 30},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t engine = 0, info[4];
    if (!EXPECT_STATUS(init_with(cases[i].text, &engine), LLMDD_SUCCESS)) {
      fprintf(stderr, "    options: %s -> %s\n", cases[i].text, last_error());
      continue;
    }
    EXPECT_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
    EXPECT(info[0] == cases[i].devices);
    EXPECT(info[2] == cases[i].pool_bytes);
    EXPECT(info[3] == LLMDD_ROLE_PROMPT);
    EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  }
}

TEST(init_accepts_64_devices) {
  char text[512] = "ge.flowGraphMemMaxSize=65536\nge.exec.deviceId=";
  for (int i = 0; i < 64; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), i ? ";%d" : "%d", i * 2);
  uint64_t engine, info[4];
  CHECK_STATUS(init_with(text, &engine), LLMDD_SUCCESS);
  CHECK_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
  EXPECT(info[0] == 64);
  EXPECT_STATUS(llmdd_pool_usage(engine, 63, info), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_pool_usage(engine, 64, info), LLMDD_PARAM_INVALID);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(init_rejects_malformed_options_naming_the_key) {
  char too_many[512] = "ge.exec.deviceId=0";
  for (int i = 1; i < 65; i++)
    snprintf(too_many + strlen(too_many), sizeof too_many - strlen(too_many), ";%d", i);
  static const struct {
    const char *text;
    const char *names;
  } cases[] = {
      {"ge.exec.deviceId=", "ge.exec.deviceId"},
      {"ge.exec.deviceId=a", "ge.exec.deviceId"},
      {"ge.exec.deviceId=-1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=+1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1.5", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0;;1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0;", "ge.exec.deviceId"},
      {"ge.exec.deviceId=;0", "ge.exec.deviceId"},
      {"ge.exec.deviceId=0,1", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1 2", "ge.exec.deviceId"},
      {"ge.exec.deviceId=1;2;1", "twice"},
      {"ge.exec.deviceId=2147483648", "ge.exec.deviceId"},
      {"ge.exec.deviceId=99999999999999999999999", "ge.exec.deviceId"},
      {"ge.flowGraphMemMaxSize=", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=0", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=-5", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=abc", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=1e9", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=12 34", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=0x100", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=4611686018427387905", "ge.flowGraphMemMaxSize"},
      {"ge.flowGraphMemMaxSize=99999999999999999999999", "ge.flowGraphMemMaxSize"},
      {"ge.exec.deviceId=0\njust some words", "line 2"},
      {"=5", "line 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0] + 1; i++) {
    const char *text = i < sizeof cases / sizeof cases[0] ? cases[i].text : too_many;
    const char *names = i < sizeof cases / sizeof cases[0] ? cases[i].names : "more than 64";
    uint64_t engine = 0;
    if (!EXPECT_STATUS(init_with(text, &engine), LLMDD_PARAM_INVALID)) {
      llmdd_engine_finalize(engine);
    } else if (!EXPECT(strstr(last_error(), names) != NULL)) {
      fprintf(stderr, "    options '%s' gave message '%s'\n", text, last_error());
    }
  }
}

TEST(init_rejects_bad_arguments) {
  uint64_t engine;
  const uint8_t text[] = "ge.exec.deviceId=0";
  EXPECT_STATUS(llmdd_engine_init(0, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(4, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(-1, 0, NULL, 0, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, 0, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, text, -1, &engine), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_engine_init(LLMDD_ROLE_MIX, 0, NULL, 3, &engine), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "options") != NULL);
}

TEST(init_reports_a_pool_that_cannot_be_reserved) {
  uint64_t engine;
  /* 4 EiB: within the parser's range, beyond any address space. */
  EXPECT_STATUS(init_with("ge.flowGraphMemMaxSize=4611686018427387904", &engine),
                LLMDD_DEVICE_OUT_OF_MEMORY);
  EXPECT(strstr(last_error(), "reserve") != NULL);
}

TEST(info_and_usage_reject_bad_arguments) {
  uint64_t engine = open_engine("ge.exec.deviceId=0;1\nge.flowGraphMemMaxSize=1000");
  CHECK(engine != 0);
  uint64_t out[4];
  EXPECT_STATUS(llmdd_engine_info(engine, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, 0, NULL), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, -1, out), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(llmdd_pool_usage(engine, 2, out), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "device_index 2 is out of range [0, 2)") != NULL);
  EXPECT_STATUS(llmdd_pool_usage(engine, 1, out), LLMDD_SUCCESS);
  EXPECT(out[0] == 0 && out[1] == 1000);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(finalized_engine_handles_are_stale) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0);
  CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
  uint64_t out[4], id;
  uint8_t buf[64];
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_ENGINE_FINALIZED);
  EXPECT(strstr(last_error(), "finalized") != NULL);
  EXPECT_STATUS(llmdd_pool_usage(engine, 0, out), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_allocate(engine, 1, 64, 1, NULL, 0, &id, out, 4),
                LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_deallocate(engine, 1), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_key_remove(engine, 1, 2, 3), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_read(engine, 1, 0, 0, buf, 64, 0), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_cache_copy(engine, 1, 2, 0, 0, 8, 0), LLMDD_ENGINE_FINALIZED);

  /* The slot is reused by the next engine; the old handle stays stale. */
  uint64_t next = open_engine(NULL);
  CHECK(next != 0);
  EXPECT(next != engine);
  EXPECT_STATUS(llmdd_engine_info(next, out), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_ENGINE_FINALIZED);
  EXPECT_STATUS(llmdd_engine_finalize(next), LLMDD_SUCCESS);
}

TEST(garbage_and_foreign_engine_handles_are_invalid) {
  uint64_t engine = open_engine(NULL);
  CHECK(engine != 0 && engine < ((uint64_t)1 << 53));
  uint64_t job;
  CHECK_STATUS(llmdd_job_create(-1, NULL, &job), LLMDD_SUCCESS);
  uint64_t out[4], id;
  uint8_t buf[64];
  const uint64_t bad[] = {
      0,
      1,
      0xdeadbeef,
      0xffffffffffffffffull,
      engine + ((uint64_t)1 << 40), /* a generation not handed out yet */
      engine | ((uint64_t)1 << 60), /* beyond the 53 bits a handle uses */
      engine + 1000,                /* a slot not handed out yet */
      job,                          /* a job is not an engine */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t h = bad[i];
    EXPECT_STATUS(llmdd_engine_info(h, out), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_pool_usage(h, 0, out), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_allocate(h, 1, 64, 1, NULL, 0, &id, out, 4), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_deallocate(h, 1), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_key_remove(h, 1, 2, 3), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_read(h, 1, 0, 0, buf, 64, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_cache_copy(h, 1, 2, 0, 0, 8, 0), LLMDD_PARAM_INVALID);
    EXPECT_STATUS(llmdd_engine_finalize(h), LLMDD_PARAM_INVALID);
  }
  EXPECT(strstr(last_error(), "not an engine") != NULL);
  EXPECT_STATUS(llmdd_engine_info(engine, out), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_job_release(job), LLMDD_SUCCESS);
  EXPECT_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
}

TEST(engines_are_independent) {
  uint64_t a = open_engine("ge.flowGraphMemMaxSize=1048576");
  uint64_t b = open_engine("ge.flowGraphMemMaxSize=1048576");
  CHECK(a != 0 && b != 0 && a != b);
  uint64_t id_a, id_b;
  CHECK_STATUS(allocate_filled(a, 2, 1000, &id_a), LLMDD_SUCCESS);
  CHECK_STATUS(allocate_filled(b, 1, 64, &id_b), LLMDD_SUCCESS);
  EXPECT(id_a == 1 && id_b == 1); /* ids count per engine */
  EXPECT(pool_used(a, 0) == 2 * 1024);
  EXPECT(pool_used(b, 0) == 64);
  EXPECT_STATUS(llmdd_engine_finalize(a), LLMDD_SUCCESS);
  uint8_t buf[64];
  EXPECT_STATUS(llmdd_cache_read(b, id_b, 0, 0, buf, 64, 0), LLMDD_SUCCESS);
  EXPECT(find_mismatch(buf, 64, id_b, 0, 0) == UINT64_MAX);
  EXPECT_STATUS(llmdd_engine_finalize(b), LLMDD_SUCCESS);
}
