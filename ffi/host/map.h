/* An open-addressing hash map from a key of three uint64 to a pointer, used for
 * cache ids (id, 0, 0) and cache keys (cluster, req, model). Not thread-safe: the
 * owning engine's lock guards it. */
#ifndef LLMDD_HOST_MAP_H
#define LLMDD_HOST_MAP_H

#include <stdint.h>

struct map_key {
  uint64_t a, b, c;
};

struct map_entry {
  struct map_key key;
  void *value; /* NULL marks an empty entry */
  int32_t aux; /* a small payload kept with the value (a key's batch row) */
};

struct map {
  struct map_entry *entries;
  uint64_t capacity; /* a power of two, or 0 */
  uint64_t count;
};

void host_map_destroy(struct map *m);

/* Makes room so that `extra` inserts cannot fail. Returns 0, or -1 out of memory. */
int host_map_reserve(struct map *m, uint64_t extra);

/* The entry for key, or NULL. */
struct map_entry *host_map_find(const struct map *m, struct map_key key);

/* Inserts a key that is not present; room must have been reserved. */
void host_map_insert(struct map *m, struct map_key key, void *value, int32_t aux);

/* Removes a present entry (as returned by host_map_find). */
void host_map_remove(struct map *m, struct map_entry *entry);

#endif
