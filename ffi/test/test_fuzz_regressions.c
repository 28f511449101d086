/* Regression tests for what the ABI fuzzer (ffi/fuzz/fuzz_abi.c) found. Each
 * case names the input that showed it and what was wrong. */
#define _DEFAULT_SOURCE 1
#include <stdint.h>
#include <string.h>

#include "core/blocks.h"
#include "harness.h"
#include "util.h"

/* Found by fuzz_abi: llmdd_engine_init(role, id, NULL, 0, ...), which the header
 * allows ("options may be NULL when options_len is 0"), made the option parser
 * compute NULL + 0, undefined behaviour in C (clang's UBSan: "applying zero
 * offset to null pointer" in the option lexer). GCC's UBSan does not check that
 * case, so this test catches it when the suite is built with clang
 * (`make test CC=clang-14`); under GCC it still checks the defaults. Every role
 * takes the NULL path, and an empty non-NULL text must mean the same. */
TEST(init_with_null_or_empty_options_text_uses_the_defaults) {
  static const int32_t roles[] = {LLMDD_ROLE_PROMPT, LLMDD_ROLE_DECODER, LLMDD_ROLE_MIX};
  static const uint8_t empty[1] = {'x'}; /* a valid pointer, with length 0 */
  for (int r = 0; r < 3; r++) {
    for (int with_pointer = 0; with_pointer < 2; with_pointer++) {
      uint64_t engine = 0, info[5] = {0};
      CHECK_STATUS(llmdd_engine_init(roles[r], unique_cluster_id(), with_pointer ? empty : NULL, 0,
                                     &engine),
                   LLMDD_SUCCESS);
      CHECK_STATUS(llmdd_engine_info(engine, info), LLMDD_SUCCESS);
      EXPECT(info[0] == 1 && info[2] == (uint64_t)1 << 30 && info[3] == (uint64_t)roles[r] &&
             info[4] == 0);
      CHECK_STATUS(llmdd_engine_finalize(engine), LLMDD_SUCCESS);
    }
  }
}

/* Found by fuzz_abi (2026-12-01, crash-a41e8d8c...): a tensor range whose start
 * is INT32_MAX made the refusal's message compute start + count in int32_t,
 * a signed overflow (UBSan: "2147483647 + 4 cannot be represented in type
 * 'int'" in core/blocks.c). The range is refused, and its message names the
 * end in 64 bits. */
TEST(a_tensor_range_starting_at_int32_max_is_refused_without_overflow) {
  EXPECT_STATUS(core_tensor_range_check(INT32_MAX, 0, 4, 8, 8), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "src tensors [2147483647, 2147483651)") != NULL);
  EXPECT_STATUS(core_tensor_range_check(0, INT32_MAX, 4, 8, 8), LLMDD_PARAM_INVALID);
  EXPECT(strstr(last_error(), "dst tensors [2147483647, 2147483651)") != NULL);
  EXPECT_STATUS(core_tensor_range_check(INT32_MAX, INT32_MAX, INT32_MAX, 8, 8), LLMDD_PARAM_INVALID);
  EXPECT_STATUS(core_tensor_range_check(4, 4, 4, 8, 8), LLMDD_SUCCESS);
}
