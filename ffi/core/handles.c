#define _DEFAULT_SOURCE 1
#include "handles.h"

#include <stdlib.h>

#define SLOT_BITS 24
#define KIND_BITS 2
#define GENERATION_SHIFT (SLOT_BITS + KIND_BITS)
#define GENERATION_BITS 27
#define SLOT_LIMIT ((1u << SLOT_BITS) - 1)
#define GENERATION_LIMIT ((1u << GENERATION_BITS) - 1)

static uint64_t make_handle(uint32_t kind, uint32_t slot, uint32_t generation) {
  return (uint64_t)generation << GENERATION_SHIFT | (uint64_t)kind << SLOT_BITS | (slot + 1);
}

/* Finds the slot a handle names, under the table lock; NULL when the handle was
 * never handed out by this table, with *stale set when it once was. */
static struct core_handle_slot *find(struct core_handle_table *t, uint64_t handle,
                                     int *stale) {
  uint64_t generation = handle >> GENERATION_SHIFT;
  uint32_t kind = (uint32_t)(handle >> SLOT_BITS) & ((1u << KIND_BITS) - 1);
  uint32_t index = (uint32_t)handle & SLOT_LIMIT;
  *stale = 0;
  if (kind != t->kind || index == 0 || index > t->used || generation == 0 ||
      generation > GENERATION_LIMIT)
    return NULL;
  struct core_handle_slot *slot = &t->slots[index - 1];
  if (generation == slot->generation && slot->object != NULL) return slot;
  *stale = generation <= slot->generation; /* == only for a retired slot */
  return NULL;
}

void core_handle_table_init(struct core_handle_table *t, uint32_t kind,
                            void (*retain)(void *context, void *object), void *context) {
  *t = (struct core_handle_table){.kind = kind, .retain = retain, .retain_context = context};
  pthread_mutex_init(&t->lock, NULL);
}

void core_handle_table_destroy(struct core_handle_table *t) {
  pthread_mutex_destroy(&t->lock);
  free(t->slots);
  t->slots = NULL;
}

int core_handle_insert(struct core_handle_table *t, void *object, uint64_t *out_handle) {
  int rc = -1;
  pthread_mutex_lock(&t->lock);
  uint32_t index;
  if (t->free_head != 0) {
    index = t->free_head - 1;
    t->free_head = t->slots[index].next_free;
  } else {
    if (t->used == t->capacity) {
      uint32_t capacity = t->capacity ? t->capacity * 2 : 16;
      if (capacity > SLOT_LIMIT) capacity = SLOT_LIMIT;
      if (capacity == t->capacity) goto out;
      struct core_handle_slot *slots = realloc(t->slots, (size_t)capacity * sizeof *slots);
      if (slots == NULL) goto out;
      t->slots = slots;
      t->capacity = capacity;
    }
    index = t->used++;
    t->slots[index].generation = 1;
  }
  t->slots[index].object = object;
  t->slots[index].next_free = 0;
  *out_handle = make_handle(t->kind, index, t->slots[index].generation);
  rc = 0;
out:
  pthread_mutex_unlock(&t->lock);
  return rc;
}

enum core_handle_state core_handle_acquire(struct core_handle_table *t, uint64_t handle,
                                           void **out_object) {
  int stale;
  pthread_mutex_lock(&t->lock);
  struct core_handle_slot *slot = find(t, handle, &stale);
  if (slot != NULL) {
    t->retain(t->retain_context, slot->object);
    *out_object = slot->object;
  }
  pthread_mutex_unlock(&t->lock);
  if (slot != NULL) return CORE_HANDLE_OK;
  return stale ? CORE_HANDLE_STALE : CORE_HANDLE_INVALID;
}

enum core_handle_state core_handle_remove(struct core_handle_table *t, uint64_t handle,
                                          void **out_object) {
  int stale;
  pthread_mutex_lock(&t->lock);
  struct core_handle_slot *slot = find(t, handle, &stale);
  if (slot != NULL) {
    *out_object = slot->object;
    slot->object = NULL;
    /* A slot whose generation would wrap is retired instead of reused, so an old
     * handle can never come back to life. */
    if (slot->generation < GENERATION_LIMIT) {
      slot->generation++;
      slot->next_free = t->free_head;
      t->free_head = (uint32_t)(slot - t->slots) + 1;
    }
  }
  pthread_mutex_unlock(&t->lock);
  if (slot != NULL) return CORE_HANDLE_OK;
  return stale ? CORE_HANDLE_STALE : CORE_HANDLE_INVALID;
}
