/* Tables that turn objects into validated uint64 handles.
 *
 * A handle is  generation << 26 | kind << 24 | (slot + 1), 53 bits in all:
 *   - slot + 1 so that 0 is never a handle;
 *   - kind so an engine handle is never mistaken for a job handle (and the reverse)
 *     even when both tables have a live object at the same slot and generation;
 *   - generation, bumped each time a slot is freed, so a handle to a freed object
 *     is recognised as stale rather than silently naming the slot's next tenant;
 *   - 53 bits so every handle is exact as a JavaScript number, whichever way a
 *     runtime's FFI chooses to hand a uint64 to JavaScript.
 * Every generation below a slot's current one was handed out once, which is what
 * lets the table tell "stale" (once valid) from "invalid" (never valid). */
#ifndef LLMDD_CORE_HANDLES_H
#define LLMDD_CORE_HANDLES_H

#include <pthread.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum core_handle_kind { CORE_HANDLE_ENGINE = 0x1, CORE_HANDLE_JOB = 0x2 };

enum core_handle_state {
  CORE_HANDLE_OK,      /* live; the object was retained */
  CORE_HANDLE_STALE,   /* named an object that has since been removed */
  CORE_HANDLE_INVALID, /* zero, another kind, or never handed out */
};

struct core_handle_slot {
  void *object;      /* NULL while free */
  uint32_t generation;
  uint32_t next_free; /* slot + 1 of the next free slot, 0 ends the list */
};

struct core_handle_table {
  pthread_mutex_t lock;
  uint32_t kind;
  /* Called under the table lock on lookup, so the object cannot be removed and
   * freed between being found and being retained; context is retain_context. */
  void (*retain)(void *context, void *object);
  void *retain_context;
  struct core_handle_slot *slots;
  uint32_t used; /* slots ever handed out (the high-water mark) */
  uint32_t capacity;
  uint32_t free_head;
};

/* A table with static storage (C); it lives as long as the library. */
#define CORE_HANDLE_TABLE_INIT(kind_, retain_) \
  { PTHREAD_MUTEX_INITIALIZER, (kind_), (retain_), NULL, NULL, 0, 0, 0 }

/* A table anywhere else (a C++ member); release it with core_handle_table_destroy. */
void core_handle_table_init(struct core_handle_table *t, uint32_t kind,
                            void (*retain)(void *context, void *object), void *context);
void core_handle_table_destroy(struct core_handle_table *t);

/* Stores object and writes its handle. Returns 0, or -1 when out of memory or slots. */
int core_handle_insert(struct core_handle_table *t, void *object, uint64_t *out_handle);

/* Finds and retains the object named by handle. */
enum core_handle_state core_handle_acquire(struct core_handle_table *t, uint64_t handle,
                                           void **out_object);

/* Removes the object named by handle and hands the table's reference to the
 * caller; the handle is stale from then on. */
enum core_handle_state core_handle_remove(struct core_handle_table *t, uint64_t handle,
                                          void **out_object);

#ifdef __cplusplus
}
#endif

#endif
