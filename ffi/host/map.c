#define _DEFAULT_SOURCE 1
#include "map.h"

#include <stdlib.h>

static uint64_t mix(uint64_t x) {
  /* splitmix64's finalizer: sequential cache ids spread over the table. */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

static uint64_t hash(struct map_key k) {
  return mix(k.a ^ mix(k.b ^ mix(k.c)));
}

static int key_equals(struct map_key x, struct map_key y) {
  return x.a == y.a && x.b == y.b && x.c == y.c;
}

void host_map_destroy(struct map *m) {
  free(m->entries);
  m->entries = NULL;
  m->capacity = m->count = 0;
}

static void place(struct map_entry *entries, uint64_t mask, struct map_entry e) {
  uint64_t i = hash(e.key) & mask;
  while (entries[i].value != NULL) i = (i + 1) & mask;
  entries[i] = e;
}

int host_map_reserve(struct map *m, uint64_t extra) {
  uint64_t needed = m->count + extra;
  /* Load factor at most 1/2 keeps linear probes short. */
  if (needed <= m->capacity / 2) return 0;
  uint64_t capacity = m->capacity ? m->capacity : 16;
  while (needed > capacity / 2) {
    if (capacity > (UINT64_MAX / sizeof(struct map_entry)) / 2) return -1;
    capacity *= 2;
  }
  struct map_entry *entries = calloc(capacity, sizeof *entries);
  if (entries == NULL) return -1;
  for (uint64_t i = 0; i < m->capacity; i++)
    if (m->entries[i].value != NULL) place(entries, capacity - 1, m->entries[i]);
  free(m->entries);
  m->entries = entries;
  m->capacity = capacity;
  return 0;
}

struct map_entry *host_map_find(const struct map *m, struct map_key key) {
  if (m->count == 0) return NULL;
  uint64_t mask = m->capacity - 1;
  for (uint64_t i = hash(key) & mask;; i = (i + 1) & mask) {
    struct map_entry *e = &m->entries[i];
    if (e->value == NULL) return NULL;
    if (key_equals(e->key, key)) return e;
  }
}

void host_map_insert(struct map *m, struct map_key key, void *value, int32_t aux) {
  place(m->entries, m->capacity - 1, (struct map_entry){key, value, aux});
  m->count++;
}

void host_map_remove(struct map *m, struct map_entry *entry) {
  /* Backward-shift deletion: pull later members of the probe run into the hole, so
   * lookups never need tombstones. */
  uint64_t mask = m->capacity - 1;
  uint64_t hole = (uint64_t)(entry - m->entries);
  for (uint64_t i = (hole + 1) & mask; m->entries[i].value != NULL; i = (i + 1) & mask) {
    uint64_t home = hash(m->entries[i].key) & mask;
    /* Entry i may move to the hole only if its home is not in (hole, i]. */
    int stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
    if (stays) continue;
    m->entries[hole] = m->entries[i];
    hole = i;
  }
  m->entries[hole].value = NULL;
  m->count--;
}
