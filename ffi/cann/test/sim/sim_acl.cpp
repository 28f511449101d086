// SIMULATION, test-only: the AscendCL calls of ../../decls/acl/acl.h on host
// memory. Not CANN; see README.md.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "acl/acl.h"

namespace {
using Clock = std::chrono::steady_clock;
struct Copy {
  void *dst;
  const void *src;
  size_t n;
  Clock::time_point ready;
};
struct Stream {
  std::mutex lock;
  std::vector<Copy> pending;
};
std::mutex init_lock;
bool initialised = false;
thread_local aclrtContext current = nullptr;

int delay_ms() {
  const char *text = std::getenv("LLMDD_SIM_COPY_DELAY_MS");
  return text != nullptr ? std::atoi(text) : 0;
}

// Completes the stream's copies that are ready; true when none is left.
bool drain_ready(Stream *s) {
  Clock::time_point now = Clock::now();
  std::vector<Copy> left;
  for (const Copy &c : s->pending) {
    if (c.ready <= now) std::memcpy(c.dst, c.src, c.n);
    else left.push_back(c);
  }
  s->pending.swap(left);
  return s->pending.empty();
}

}  // namespace

extern "C" {

aclError aclInit(const char *) {
  std::lock_guard<std::mutex> guard(init_lock);
  if (initialised) return ACL_ERROR_REPEAT_INITIALIZE;
  initialised = true;
  return ACL_SUCCESS;
}
aclError aclFinalize(void) { return ACL_SUCCESS; }
const char *aclGetRecentErrMsg(void) { return "simulated ACL"; }

aclError aclrtSetDevice(int32_t deviceId) {
  if (deviceId < 0 || deviceId > 7) return 107001;  // no such device
  current = reinterpret_cast<aclrtContext>(static_cast<uintptr_t>(deviceId + 1));
  return ACL_SUCCESS;
}
aclError aclrtResetDevice(int32_t) { return ACL_SUCCESS; }
aclError aclrtGetCurrentContext(aclrtContext *context) {
  *context = current;
  return current != nullptr ? ACL_SUCCESS : 107002;
}
aclError aclrtSetCurrentContext(aclrtContext context) {
  if (context == nullptr) return 100000;
  current = context;
  return ACL_SUCCESS;
}

aclError aclrtCreateStream(aclrtStream *stream) {
  if (current == nullptr) return 107002;  // needs a context on this thread
  *stream = new Stream();
  return ACL_SUCCESS;
}
aclError aclrtDestroyStream(aclrtStream stream) {
  delete static_cast<Stream *>(stream);
  return ACL_SUCCESS;
}
aclError aclrtStreamQuery(aclrtStream stream, aclrtStreamStatus *status) {
  if (status == nullptr) return 100000;
  auto *s = static_cast<Stream *>(stream);
  std::lock_guard<std::mutex> guard(s->lock);
  *status = drain_ready(s) ? ACL_STREAM_STATUS_COMPLETE : ACL_STREAM_STATUS_NOT_READY;
  return ACL_SUCCESS;
}

aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout) {
  // As the runtime (hicann/runtime api_c_stream.cc): -1 or > 0, never 0.
  if (timeout < -1 || timeout == 0) return 107000;  // ACL_ERROR_RT_PARAM_INVALID
  auto *s = static_cast<Stream *>(stream);
  std::lock_guard<std::mutex> guard(s->lock);
  Clock::time_point last = Clock::now();
  for (const Copy &c : s->pending) last = std::max(last, c.ready);
  Clock::time_point limit = timeout < 0 ? last : Clock::now() + std::chrono::milliseconds(timeout);
  if (last > limit) {
    std::this_thread::sleep_until(limit);
    return 507046;  // ACL_ERROR_RT_STREAM_SYNC_TIMEOUT
  }
  std::this_thread::sleep_until(last);
  for (const Copy &c : s->pending) std::memcpy(c.dst, c.src, c.n);
  s->pending.clear();
  return ACL_SUCCESS;
}

aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy) {
  *devPtr = std::aligned_alloc(64, (size + 63) / 64 * 64);
  if (*devPtr == nullptr) return 207001;
  std::memset(*devPtr, 0xA5, size);  // "device memory" is not cleared
  return ACL_SUCCESS;
}
aclError aclrtFree(void *devPtr) {
  std::free(devPtr);
  return ACL_SUCCESS;
}
aclError aclrtMallocHost(void **hostPtr, size_t size) {
  *hostPtr = std::aligned_alloc(64, (size + 63) / 64 * 64);
  return *hostPtr != nullptr ? ACL_SUCCESS : 207001;
}
aclError aclrtFreeHost(void *hostPtr) {
  std::free(hostPtr);
  return ACL_SUCCESS;
}
aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind) {
  if (count > destMax) return 100000;
  std::memcpy(dst, src, count);
  return ACL_SUCCESS;
}
aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind,
                          aclrtStream stream) {
  if (count > destMax || reinterpret_cast<uintptr_t>(dst) % 64 != 0 || reinterpret_cast<uintptr_t>(src) % 64 != 0)
    return 100000;  // ACL_ERROR_INVALID_PARAM: async copies need 64-byte aligned addresses
  auto *s = static_cast<Stream *>(stream);
  std::lock_guard<std::mutex> guard(s->lock);
  s->pending.push_back(Copy{dst, src, count, Clock::now() + std::chrono::milliseconds(delay_ms())});
  return ACL_SUCCESS;
}

}  // extern "C"
