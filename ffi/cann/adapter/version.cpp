#include "llmdd.h"

// The loader compares this with the version it was written for, so it must come
// from the header this library was compiled against.
extern "C" LLMDD_API int32_t llmdd_abi_version(void) { return LLMDD_ABI_VERSION; }
