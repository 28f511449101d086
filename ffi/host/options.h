/* The engine options the host backend reads from llmdd_engine_init()'s
 * `key=value` text. */
#ifndef LLMDD_HOST_OPTIONS_H
#define LLMDD_HOST_OPTIONS_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#define MAX_DEVICES 64
/* llmdd.linkSecret: bytes kept, and the fewest that are accepted (a short
 * secret is guessed offline from one recorded exchange). */
#define SECRET_CAP 256
#define SECRET_MIN 16
#define DEFAULT_POOL_BYTES ((uint64_t)1 << 30)

/* llmdd.transport: how a DECODER's links move data (ucx.h). */
enum transport { TRANSPORT_AUTO = 0, TRANSPORT_SHM = 1, TRANSPORT_UCX = 2 };

struct engine_options {
  int32_t num_devices;
  int32_t device_ids[MAX_DEVICES];
  uint64_t pool_bytes; /* per device */
  uint64_t host_pool_bytes; /* llm.HostMemPoolConfig's memory_size; 0: no host pool */
  bool switch_role;         /* llm.EnableSwitchRole=1 */
  bool remote_access;       /* llm.EnableRemoteCacheAccessible=1: caches linked peers may push into */
  bool reserve_pools;       /* llmdd.reservePools=1: device pools taken whole at init */
  bool listen;         /* llm.listenIpInfo was given */
  struct sockaddr_in listen_address;
  int32_t secret_len; /* llmdd.linkSecret, 0 when not given */
  uint8_t secret[SECRET_CAP];
  int32_t transport; /* enum transport; AUTO: shm to this machine, ucx beyond it */
};

/* Fills *out from the option text. Returns LLMDD_SUCCESS or LLMDD_PARAM_INVALID
 * with a last-error message naming the key and the bad value. */
int32_t host_options_parse(const uint8_t *text, int32_t len, struct engine_options *out);

#endif
