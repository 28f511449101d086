/* What the host backend reads from the option text; the lexing is the core's. */
#define _DEFAULT_SOURCE 1
#include "options.h"

#include <string.h>

#include "core/error.h"
#include "core/options.h"
#include "llmdd.h"
#include "net.h"

#define KEY_DEVICE_ID "ge.exec.deviceId"
#define KEY_POOL_BYTES "ge.flowGraphMemMaxSize"
#define KEY_LISTEN "llm.listenIpInfo"
#define KEY_MEM_POOL "llm.MemPoolConfig"
#define KEY_HOST_MEM_POOL "llm.HostMemPoolConfig"
#define KEY_SWITCH_ROLE "llm.EnableSwitchRole"
#define KEY_REMOTE_ACCESS "llm.EnableRemoteCacheAccessible"
/* Ours, not upstream's (the llmdd. prefix says so): links of the host backend
 * are authenticated with this instead of the user's own key (auth.h). */
#define KEY_SECRET "llmdd.linkSecret"
/* Ours too: the device pools' memory is taken whole at init and stays, as
 * upstream's device pool (pool.h). */
#define KEY_RESERVE_POOLS "llmdd.reservePools"
/* Ours: how a DECODER's links move data (ucx.h): "shm", "ucx", or "auto" (the
 * default: shared memory to a PROMPT on this machine, UCX beyond it). */
#define KEY_TRANSPORT "llmdd.transport"

/* Pool sizes stay far below this, which keeps every size computation in range;
 * anything the machine cannot map fails later as DEVICE_OUT_OF_MEMORY. */
#define POOL_BYTES_LIMIT ((uint64_t)1 << 62)

static int32_t parse_device_ids(struct core_span value, struct engine_options *out) {
  int32_t count = 0;
  struct core_span rest = value, item;
  for (bool more = true; more;) {
    more = core_span_split(&rest, ';', &item);
    uint64_t id;
    if (core_span_decimal(item, INT32_MAX, &id) != 0)
      return core_fail(LLMDD_PARAM_INVALID,
                       KEY_DEVICE_ID " '%.*s': device id '%.*s' is not a non-negative integer",
                       CORE_QUOTE(value), CORE_QUOTE(item));
    if (count == MAX_DEVICES)
      return core_fail(LLMDD_PARAM_INVALID, KEY_DEVICE_ID " lists more than %d devices",
                       MAX_DEVICES);
    for (int32_t i = 0; i < count; i++)
      if (out->device_ids[i] == (int32_t)id)
        return core_fail(LLMDD_PARAM_INVALID, KEY_DEVICE_ID " lists device %d twice",
                         (int32_t)id);
    out->device_ids[count++] = (int32_t)id;
  }
  out->num_devices = count;
  return LLMDD_SUCCESS;
}

static int32_t parse_pool_bytes(struct core_span value, struct engine_options *out) {
  uint64_t bytes;
  if (core_span_decimal(value, POOL_BYTES_LIMIT, &bytes) != 0 || bytes == 0)
    return core_fail(LLMDD_PARAM_INVALID,
                     KEY_POOL_BYTES " '%.*s' is not a positive integer number of bytes"
                     " (at most %llu)",
                     CORE_QUOTE(value), (unsigned long long)POOL_BYTES_LIMIT);
  out->pool_bytes = bytes;
  return LLMDD_SUCCESS;
}

static int32_t parse_listen(struct core_span value, struct engine_options *out) {
  /* Port 0 is allowed here: the kernel picks a free port, reported by engine_info. */
  if (host_net_parse_address(value.p, value.n, &out->listen_address) != 0)
    return core_fail(LLMDD_PARAM_INVALID,
                     KEY_LISTEN " '%.*s' is not an IPv4 address and port (\"ipv4:port\")",
                     CORE_QUOTE(value));
  out->listen = true;
  return LLMDD_SUCCESS;
}

static int32_t parse_secret(struct core_span value, struct engine_options *out) {
  /* The value is not repeated in messages: it is a secret. */
  if (value.n < SECRET_MIN || value.n > SECRET_CAP)
    return core_fail(LLMDD_PARAM_INVALID,
                     KEY_SECRET " has %d bytes: it must have %d to %d (the same on the PROMPT"
                     " and its DECODERs)",
                     (int)value.n, SECRET_MIN, SECRET_CAP);
  memcpy(out->secret, value.p, (size_t)value.n);
  out->secret_len = (int32_t)value.n;
  return LLMDD_SUCCESS;
}

static int32_t parse_transport(struct core_span value, struct engine_options *out) {
  if (core_span_equals(value, "auto")) out->transport = TRANSPORT_AUTO;
  else if (core_span_equals(value, "shm")) out->transport = TRANSPORT_SHM;
  else if (core_span_equals(value, "ucx")) out->transport = TRANSPORT_UCX;
  else
    return core_fail(LLMDD_PARAM_INVALID,
                     KEY_TRANSPORT " '%.*s' is not \"auto\", \"shm\" or \"ucx\"",
                     CORE_QUOTE(value));
  return LLMDD_SUCCESS;
}

/* Other keys are accepted and ignored: they belong to other layers or backends. */
static int32_t on_option(void *arg, struct core_span key, struct core_span value) {
  struct engine_options *out = arg;
  if (core_span_equals(key, KEY_DEVICE_ID)) return parse_device_ids(value, out);
  if (core_span_equals(key, KEY_POOL_BYTES)) return parse_pool_bytes(value, out);
  if (core_span_equals(key, KEY_LISTEN)) return parse_listen(value, out);
  if (core_span_equals(key, KEY_SECRET)) return parse_secret(value, out);
  if (core_span_equals(key, KEY_TRANSPORT)) return parse_transport(value, out);
  if (core_span_equals(key, KEY_MEM_POOL) || core_span_equals(key, KEY_HOST_MEM_POOL)) {
    /* Empty means not configured, as upstream (len(options[key]) > 0). */
    if (value.n == 0) return LLMDD_SUCCESS;
    bool host = core_span_equals(key, KEY_HOST_MEM_POOL);
    uint64_t bytes;
    int32_t status = core_parse_mem_pool_config(value, host ? KEY_HOST_MEM_POOL : KEY_MEM_POOL,
                                                &bytes);
    if (status == LLMDD_SUCCESS && bytes > POOL_BYTES_LIMIT)
      status = core_fail(LLMDD_PARAM_INVALID, "%s: memory_size %llu is more than %llu",
                         host ? KEY_HOST_MEM_POOL : KEY_MEM_POOL, (unsigned long long)bytes,
                         (unsigned long long)POOL_BYTES_LIMIT);
    if (status != LLMDD_SUCCESS) return status;
    *(host ? &out->host_pool_bytes : &out->pool_bytes) = bytes;
    return LLMDD_SUCCESS;
  }
  if (core_span_equals(key, KEY_RESERVE_POOLS)) {
    if (!core_span_equals(value, "0") && !core_span_equals(value, "1"))
      return core_fail(LLMDD_PARAM_INVALID, KEY_RESERVE_POOLS " '%.*s' is not 0 or 1",
                       CORE_QUOTE(value));
    out->reserve_pools = core_span_equals(value, "1");
    return LLMDD_SUCCESS;
  }
  if (core_span_equals(key, KEY_SWITCH_ROLE)) {
    out->switch_role = core_span_equals(value, "1");
    return LLMDD_SUCCESS;
  }
  if (core_span_equals(key, KEY_REMOTE_ACCESS)) {
    out->remote_access = core_span_equals(value, "1");
    return LLMDD_SUCCESS;
  }
  return LLMDD_SUCCESS;
}

int32_t host_options_parse(const uint8_t *text, int32_t len, struct engine_options *out) {
  out->num_devices = 1;
  out->device_ids[0] = 0;
  out->pool_bytes = DEFAULT_POOL_BYTES;
  out->host_pool_bytes = 0;
  out->switch_role = false;
  out->remote_access = false;
  out->reserve_pools = false;
  out->listen = false;
  out->secret_len = 0;
  out->transport = TRANSPORT_AUTO;
  return core_options_each(text, len, on_option, out);
}
