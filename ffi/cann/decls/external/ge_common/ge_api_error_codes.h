// COMPILE-CHECK DECLARATIONS ONLY — NOT SHIPPED, NOT THE REAL HEADER.
// Hand-written stand-in for the parts of CANN's ge namespace that
// llm_datadist/llm_datadist.h relies on, so ffi/cann/adapter/cann_calls.cpp can be
// compiled without the toolkit. Types and signatures only; unverified against a
// real toolkit. Sources: see ../../README.md.
#ifndef LLMDD_DECLS_GE_API_ERROR_CODES_H
#define LLMDD_DECLS_GE_API_ERROR_CODES_H

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ge {

// ge::Status: an unsigned 32-bit code (LLM_SUCCESS = 0, LLM_FAILED = 0xFFFFFFFF).
using Status = uint32_t;

// ge::AscendString: the string type of the public API (no std::string in its ABI).
class AscendString {
 public:
  AscendString() = default;
  ~AscendString() = default;
  AscendString(const char *name);  // NOLINT: implicit, as upstream
  AscendString(const char *name, size_t length);
  const char *GetString() const;
  size_t GetLength() const;
  bool operator<(const AscendString &other) const;
  bool operator>(const AscendString &other) const;
  bool operator==(const AscendString &other) const;
  bool operator!=(const AscendString &other) const;

 private:
  std::shared_ptr<std::string> name_;
};

// ge::DataType (graph/types.h): the enumerators the project's SPEC lists; the
// adapter uses DT_UINT8.
enum DataType {
  DT_FLOAT = 0,
  DT_FLOAT16 = 1,
  DT_INT8 = 2,
  DT_INT32 = 3,
  DT_UINT8 = 4,
  DT_INT16 = 6,
  DT_UINT16 = 7,
  DT_UINT32 = 8,
  DT_INT64 = 9,
  DT_UINT64 = 10,
  DT_DOUBLE = 11,
  DT_BOOL = 12,
  DT_BF16 = 27,
  DT_UNDEFINED = 28,
};

}  // namespace ge

#endif
