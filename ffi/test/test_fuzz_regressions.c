/* Regression tests for what the ABI fuzzer (ffi/fuzz/fuzz_abi.c) found. Each
 * case names the input that showed it and what was wrong. */
#define _DEFAULT_SOURCE 1
#include <string.h>

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
