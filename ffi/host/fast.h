/* Repeat pulls without a round trip: the PROMPT's generation page, and a linked
 * DECODER's memory of the answers it got (docs/DESIGN.md §4.3).
 *
 * A PROMPT (or MIX) with shared pools also has one small sealed memory file,
 * the generation page, passed read-only to its DECODERs with the pools over the
 * Unix socket (local.h). It holds counters only, never a layout or an offset:
 *
 *   word 0              FAST_MAGIC
 *   word 1              the global generation: bumped at finalize
 *   word 2              FAST_LIVE_MARK once the server holds the live lock
 *   words 8 .. 15       the live lock: a robust, process-shared mutex
 *   words 16 .. 16+SLOTS one counter per slot; a cache id and a cache key each
 *                       hash to one slot (collisions only cost a LOOKUP)
 *
 * The live lock tells a DECODER, without a system call, that the PROMPT's
 * server is still there: the server's thread holds the lock for as long as it
 * serves and unlocks it when it stops; if the thread dies with it (the process
 * killed), the kernel marks the lock's futex word "owner died" (robust futex)
 * before the process's sockets close. The PROMPT sets FAST_LIVE_MARK only after
 * checking that the word's owner bits are its thread id, so a DECODER reads the
 * word only where it means that; else it asks the socket (poll).
 *
 * The book (book.c) bumps, under the engine lock and before the memory can be
 * reused: the slot of a cache id when the id is released (deallocate,
 * unregister), the slot of a key whenever the key stops naming its cache
 * (removed, consumed, its cache unregistered), and the global word (and every
 * slot) at finalize.
 *
 * Every LOOKUP answer carries the slot's and the global word as the PROMPT
 * read them under the engine lock while answering (proto.h): its stamp. A
 * DECODER pulling by id (CacheKeyByIdAndIndex) or by BlocksCacheKey keeps the
 * (checked) answer of a pull that succeeded, with its stamp. A later pull of
 * the same key finds the answer, copies with it, and then reads the two words
 * again (a seqlock): equal means nothing that could move or free that cache
 * happened from the answer to after the copy, so the bytes are the cache's.
 * Different means the copy may be stale: it is done again through LOOKUP, and
 * nothing is reported. The pools are sealed and stay mapped, so a copy made
 * from memory freed meanwhile reads bytes that are thrown away, never a fault;
 * offsets only ever come from checked LOOKUP answers.
 *
 * Over UCX (ucx.h) the page is not mapped: the PROMPT registers it with UCP,
 * read-only, and a kept pull reads its slot's word with one more get, ordered
 * after the data's by a fence, in the same round trip. One word is enough:
 * finalize bumps every slot with the global word. (Each get is a message each
 * way over UCX's TCP transport; a second one cost about 8 µs here.) Such a
 * view has no words here (host_fast_remote); the caller compares what the get
 * brought (host_fast_holds). Nothing is checked before the reads there, so
 * they are staged (ucx.h) and reach the destination only if the answer held;
 * pulls of more than UCX_STAGE_BYTES do not use kept answers over UCX.
 * answers. */
#ifndef LLMDD_HOST_FAST_H
#define LLMDD_HOST_FAST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

#define FAST_MAGIC UINT64_C(0x324e454744444c4c) /* "LLDDGEN2" (1: before the live lock) */
#define FAST_OLD_MAGIC UINT64_C(0x314e454744444c4c)
#define FAST_SLOTS 4096
#define FAST_LIVE_WORD 2
#define FAST_LIVE_MARK UINT64_C(0x4556494c) /* "LIVE" */
#define FAST_LIVE_LOCK 8 /* the word the mutex starts at; 8 words are its room */
#define FAST_FIRST_SLOT 16
#define FAST_PAGE_BYTES ((uint64_t)(FAST_FIRST_SLOT + FAST_SLOTS) * 8)
/* Answers a DECODER keeps per link (the oldest is replaced). */
#define FAST_ENTRIES 64

/* ---- PROMPT side ---- */

struct fast_page {
  int fd;    /* read-write, kept for nothing but closing */
  int ro_fd; /* what DECODERs are given */
  _Atomic uint64_t *words;
  bool live; /* the live lock was made */
  bool held; /* the server's thread holds it (only that thread touches this) */
};

/* Creates the page (sealed, FAST_PAGE_BYTES). Returns 0, or -1 with errno. */
int host_fast_page_create(struct fast_page *p);
void host_fast_page_destroy(struct fast_page *p);
/* The same on the heap: a new page, or NULL (out of memory or memfds). */
struct fast_page *host_fast_page_new(void);
void host_fast_page_free(struct fast_page *p);

/* The server's thread, when it starts and when it stops (p may be NULL). */
void host_fast_live_hold(struct fast_page *p);
void host_fast_live_drop(struct fast_page *p);

/* Bumps (engine lock held; p may be NULL: the engine has no shared pools). */
void host_fast_bump_id(struct fast_page *p, uint64_t id);
void host_fast_bump_key(struct fast_page *p, uint64_t cluster, uint64_t req, uint64_t model);
void host_fast_bump_all(struct fast_page *p);

/* The slots of an id and of a key (also used by the DECODER: both ends hash the
 * same way). Always < FAST_SLOTS. */
uint32_t host_fast_slot_id(uint64_t id);
uint32_t host_fast_slot_key(uint64_t cluster, uint64_t req, uint64_t model);
/* The slot of a pull or LOOKUP key: by id, by BlocksCacheKey (held as a cache
 * key under LLMDD_BLOCKS_REQ_ID), or by CacheKey. */
uint32_t host_fast_slot(int32_t kind, const uint64_t k[3]);

/* The values an answer was given with; it is valid while they hold. */
struct fast_stamp {
  uint32_t slot;
  uint64_t slot_gen;
  uint64_t global_gen;
};

/* The stamp of (kind, k) now (engine lock held, to answer a LOOKUP). A NULL
 * page gives zeros (nobody keeps answers without a page). */
struct fast_stamp host_fast_page_stamp(const struct fast_page *p, int32_t kind, const uint64_t k[3]);

/* ---- DECODER side ---- */

/* The stamp a LOOKUP answer came with, for a pull of (kind, k). */
struct fast_stamp host_fast_answer_stamp(int32_t kind, const uint64_t k[3],
                                         const struct msg_lookup_reply *r);

struct fast_entry {
  bool used;
  int32_t kind; /* LLMDD_KEY_BY_ID or LLMDD_KEY_BLOCKS, as the pull was asked */
  uint64_t k[3];
  struct fast_stamp stamp;
  struct msg_lookup_reply reply; /* checked against the mapped pools (pull.c) */
};

struct fast_view {
  const _Atomic uint64_t *words; /* the PROMPT's page, mapped read-only; NULL: over UCX */
  pthread_mutex_t lock;          /* entries */
  uint32_t next;                 /* the entry replaced next */
  struct fast_entry entries[FAST_ENTRIES];
};

/* Checks a page a PROMPT passed (a sealed regular file of exactly
 * FAST_PAGE_BYTES that starts with FAST_MAGIC) and maps it read-only. Returns
 * SUCCESS, or LINK_FAILED with a message. Does not close fd. */
int32_t host_fast_view_open(int fd, uint64_t cluster_id, struct fast_view **out);
void host_fast_view_close(struct fast_view *v);
/* A view of a page read over UCX: answers only, no words. SUCCESS or
 * OUT_OF_MEMORY. */
int32_t host_fast_view_remote(struct fast_view **out);
bool host_fast_remote(const struct fast_view *v);

/* Whether a stamp holds against its slot's word, read from the page over UCX
 * (finalize bumps every slot with the global word). */
bool host_fast_holds(const struct fast_stamp *s, uint64_t slot_gen);

/* Whether the PROMPT's server is there, from its live lock: 1 yes, 0 no (its
 * thread unlocked it or died holding it), -1 the page cannot say (no mark, or
 * a view over UCX). */
int host_fast_alive(const struct fast_view *v);

/* Whether a pull of this kind can use the page (by id, by BlocksCacheKey). */
bool host_fast_kind(int32_t kind);

/* Whether a stamp still holds (a mapped page only). The acquire fence orders
 * the copy's reads before the page's (seqlock). */
bool host_fast_valid(const struct fast_view *v, const struct fast_stamp *s);

/* Finds a kept answer for (kind, k) whose stamp still holds (over UCX: that
 * the copy then checks); copies it out. */
bool host_fast_find(struct fast_view *v, int32_t kind, const uint64_t k[3], struct fast_entry *out);

/* Keeps an answer after a pull succeeded with it. A stamp that no longer holds
 * (on a mapped page) is not kept. */
void host_fast_keep(struct fast_view *v, int32_t kind, const uint64_t k[3],
                    const struct fast_stamp *s, const struct msg_lookup_reply *reply);

/* Forgets a kept answer (a pull with it found the PROMPT's answer changed). */
void host_fast_forget(struct fast_view *v, int32_t kind, const uint64_t k[3]);

#endif
