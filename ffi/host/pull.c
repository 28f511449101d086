/* llmdd_cache_pull: one batch row of every tensor, from a linked PROMPT's shared
 * pools into a local cache.
 *
 * A pull by id or by BlocksCacheKey that was answered before and whose cache
 * has not moved since is one copy and no round trip (fast.h). Otherwise one
 * round trip and one copy: LOOKUP (the PROMPT pins the source cache and
 * answers where its tensors are), the copy straight out of the read-only mapping
 * of the PROMPT's pools, then DONE without waiting for an answer (the PROMPT
 * handles a connection's requests in order, so a later request sees the key
 * consumed). The copy runs in chunks, checking the deadline, the cancel flag, the
 * finalize, and that the PROMPT is still there; since the PROMPT shuts the
 * connection down before it drops a connection's pins, a pull that still sees the
 * connection open after its copy copied pinned memory. */
#define _DEFAULT_SOURCE 1
#include "book.h"
#include "core/blocks.h"
#include "core/copy.h"
#include "core/error.h"
#include "fast.h"
#include "link.h"
#include "llmdd.h"
#include "memcopy.h"
#include "stream.h"
#include "task.h"
#include "ucx.h"
#include "ucx_outside.h"

struct pull_task {
  struct task task;
  struct link *link;
  struct cache *dst;
  int32_t key_kind;
  uint64_t k[3];
  uint64_t dst_offset; /* of the destination row within each tensor */
  uint64_t size;       /* bytes per tensor; LLMDD_WHOLE_ROW until the answer */
  /* llmdd_cache_pull_blocks (pairs NULL for llmdd_cache_pull) */
  const uint64_t *pairs;
  int32_t num_pairs;
  int32_t src_start, dst_start, count; /* count 0: every tensor */
  bool kept_only; /* LLMDD_KEY_KEPT_ONLY: from a kept answer, or not at all */
  bool kept;      /* copying with a kept answer (no pin) */
  /* A kept pull over UCX: the stamp to read again after the copy, and the
   * slot's word of the generation page as the batch read it (fast.h). */
  const struct fast_stamp *check;
  uint64_t slot_gen;
  bool too_big; /* the kept pull over UCX reads more than it stages: ask the PROMPT */
};

static int32_t gone(const struct pull_task *p, const char *when) {
  return core_fail(LLMDD_LINK_FAILED, "the PROMPT of cluster %llu at %s went away %s",
              (unsigned long long)p->link->cluster_id, p->link->address, when);
}

/* The PROMPT's refusal, in this engine's words. */
static int32_t refused(const struct pull_task *p, int32_t status) {
  unsigned long long cluster = p->link->cluster_id;
  if (status == LLMDD_KV_CACHE_NOT_EXIST && p->key_kind == LLMDD_KEY_BLOCKS)
    return core_fail(status, "no blocks cache holds key (cluster %llu, model %llu) at cluster %llu",
                     (unsigned long long)p->k[0], (unsigned long long)p->k[2], cluster);
  if (status == LLMDD_KV_CACHE_NOT_EXIST && p->key_kind == LLMDD_KEY_CACHE_KEY)
    return core_fail(status, "no cache holds key (cluster %llu, req %llu, model %llu) at cluster %llu",
                (unsigned long long)p->k[0], (unsigned long long)p->k[1],
                (unsigned long long)p->k[2], cluster);
  if (status == LLMDD_KV_CACHE_NOT_EXIST)
    return core_fail(status, "cache %llu does not exist at cluster %llu", (unsigned long long)p->k[1],
                cluster);
  if (status == LLMDD_PARAM_INVALID)
    return core_fail(status, "batch index %llu is out of range for cache %llu at cluster %llu",
                (unsigned long long)p->k[2], (unsigned long long)p->k[1], cluster);
  if (status == LLMDD_ENGINE_FINALIZED) return gone(p, "(it is being finalized)");
  return core_fail(LLMDD_LINK_FAILED, "the PROMPT of cluster %llu refused the pull (status 0x%08x)",
              cluster, (unsigned)status);
}

static int32_t check_match(const struct pull_task *p, const struct msg_lookup_reply *r) {
  const struct cache *c = p->dst;
  uint64_t remote_row = r->tensor_bytes / r->batch_size;
  if ((int32_t)r->num_tensors != c->num_tensors)
    return core_fail(LLMDD_PARAM_INVALID, "the remote cache has %u tensors and cache %llu has %d",
                r->num_tensors, (unsigned long long)c->id, c->num_tensors);
  if (r->layout_tag != c->layout_tag)
    return core_fail(LLMDD_PARAM_INVALID,
                "the remote cache's layout (tag 0x%llx) differs from cache %llu's (tag 0x%llx)",
                (unsigned long long)r->layout_tag, (unsigned long long)c->id,
                (unsigned long long)c->layout_tag);
  if (remote_row != host_cache_row_bytes(c))
    return core_fail(LLMDD_PARAM_INVALID,
                "the remote cache's rows are %llu bytes and cache %llu's are %llu",
                (unsigned long long)remote_row, (unsigned long long)c->id,
                (unsigned long long)host_cache_row_bytes(c));
  return LLMDD_SUCCESS;
}

static const char *untrusted(const struct pull_task *p) {
  return p->pairs != NULL ? "during the pull: the blocks are not to be trusted"
                          : "during the pull: the row is not to be trusted";
}

/* Between chunks after the first: a PROMPT gone during the copy may have
 * reused the memory being copied. */
static int32_t peer_check(void *peer) {
  const struct pull_task *p = peer;
  if (!(p->kept ? host_link_alive_kept(p->link) : host_link_alive(p->link)))
    return gone(p, untrusted(p));
  return LLMDD_SUCCESS;
}

/* Over UCX (ucx.h) the copy loops below record the ranges they would copy,
 * and the batch then reads them from the PROMPT. */
static void ucx_begin(const struct pull_task *p, struct core_progress *progress,
                      struct ucx_batch *b, const struct ucx_regions *rg) {
  const struct link *l = p->link;
  progress->copy = host_ucx_record;
  progress->peer_check = NULL;
  if (rg != NULL) host_ucx_batch_begin_regions(b, l->ucx, false, rg);
  else host_ucx_batch_begin(b, l->ucx, false, l->pool_bytes, l->num_devices, l->bases);
  if (p->check != NULL) {
    host_ucx_batch_read_page(b, FAST_FIRST_SLOT + p->check->slot % FAST_SLOTS);
    host_ucx_batch_stage(b);
  }
}

/* rg: the keys of memory outside the pools (ucx_outside.h), released here. */
/* A kept pull (p->check) is staged: its bytes reach the destination only if
 * the page's word says the answer still held after they were read; a stale
 * answer leaves the destination as it was (the pull then asks the PROMPT, and
 * may fail). Larger ones are not made (p->too_big): the PROMPT is asked. */
static int32_t ucx_end(struct pull_task *p, struct ucx_batch *b, int32_t status,
                       const struct core_guard *g, struct ucx_regions *rg) {
  if (status == LLMDD_SUCCESS && p->check != NULL && host_ucx_batch_bytes(b) > UCX_STAGE_BYTES) {
    p->too_big = true;
    status = LLMDD_FEATURE_NOT_ENABLED;
  }
  if (status != LLMDD_SUCCESS) host_ucx_batch_abandon(b);
  else status = host_ucx_batch_run(b, g, peer_check, (void *)p);
  p->slot_gen = b->page_value;
  if (status == LLMDD_SUCCESS && b->stage)
    host_ucx_batch_deliver(b, host_fast_holds(p->check, b->page_value));
  host_ucx_regions_close(p->link->ucx, rg);
  return status;
}

/* Copies the row of every tensor on every device, in chunks (core/copy.h). */
static uint8_t *row_local(void *ctx, int32_t device, int32_t tensor, int32_t pair) {
  (void)pair;
  const struct pull_task *p = ctx;
  return host_cache_tensor(&p->task.engine->book, p->dst, device, tensor) + p->dst_offset;
}

/* The row's range of tensor i % num_tensors of device i / num_tensors
 * (core_range_fn). */
struct row_ctx {
  const struct pull_task *p;
  const struct msg_lookup_reply *r;
  const struct ucx_regions *rg; /* over UCX, memory outside the pools; else NULL */
  uint64_t src_row;             /* the row's offset within each tensor */
};

static bool row_range(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src) {
  const struct row_ctx *c = ctx;
  const struct pull_task *p = c->p;
  int32_t d = (int32_t)(i / (uint64_t)p->dst->num_tensors);
  int32_t t = (int32_t)(i % (uint64_t)p->dst->num_tensors);
  *src = c->rg != NULL ? host_ucx_outside_tensor(c->rg, c->r->num_tensors, d, t) + c->src_row
                       : p->link->bases[d] + c->r->offsets[d] + (uint64_t)t * c->r->stride +
                             c->src_row;
  *dst = host_cache_tensor(&p->task.engine->book, p->dst, d, t) + p->dst_offset;
  return true;
}

static int32_t copy_row(struct pull_task *p, const struct msg_lookup_reply *r,
                        const struct core_guard *g) {
  const struct link *l = p->link;
  uint64_t src_row = r->row * (r->tensor_bytes / r->batch_size);
  struct ucx_regions *rg = NULL;
  if (r->where != LOOKUP_IN_POOLS && l->ucx != NULL) {
    int32_t status = host_ucx_outside_open(p->link, r, false, g, &rg);
    if (status != LLMDD_SUCCESS && status != LLMDD_FEATURE_NOT_ENABLED) return status;
  }
  if (r->where != LOOKUP_IN_POOLS && rg == NULL) {
    /* Memory outside the PROMPT's pools comes through the link's socket. */
    static const uint64_t one_pair[2] = {0, 0};
    struct stream_plan plan = {.op = STREAM_READ, .pin = r->pin, .base = src_row,
                               .block_bytes = p->size, .num_tensors = p->dst->num_tensors,
                               .num_devices = l->num_devices, .pairs = one_pair, .num_pairs = 1,
                               .local = row_local, .ctx = (void *)p, .what = "pulled"};
    return host_stream_run(p->link, &plan, g);
  }
  uint64_t total = p->size * (uint64_t)p->dst->num_tensors * (uint64_t)l->num_devices;
  struct core_progress progress = host_progress_start(g, total, "pulled", l->ucx == NULL);
  progress.peer_check = peer_check;
  progress.peer = (void *)p;
  struct ucx_batch ucx;
  if (l->ucx != NULL) ucx_begin(p, &progress, &ucx, rg);
  struct row_ctx ctx = {.p = p, .r = r, .rg = rg, .src_row = src_row};
  int32_t status = core_copy_ranges(&progress, row_range, &ctx,
                                    (uint64_t)l->num_devices * (uint64_t)p->dst->num_tensors,
                                    p->size);
  if (l->ucx != NULL) return ucx_end(p, &ucx, status, g, rg);
  host_progress_end(&progress);
  return status;
}

/* Copies every block pair of the tensor range, on every device (core/blocks.h). */
struct blocks_ctx {
  const struct pull_task *p;
  const struct msg_lookup_reply *r;
  const struct ucx_regions *rg; /* over UCX, memory outside the pools; else NULL */
  uint64_t src_base; /* of the source's block 0 within each tensor */
};

static uint8_t *blocks_tensor(void *ctx, int side, int32_t device, int32_t tensor) {
  const struct blocks_ctx *c = ctx;
  if (side == 0)
    return host_cache_tensor(&c->p->task.engine->book, c->p->dst, device,
                             c->p->dst_start + tensor);
  const struct link *l = c->p->link;
  if (c->rg != NULL)
    return host_ucx_outside_tensor(c->rg, c->r->num_tensors, device, c->p->src_start + tensor) +
           c->src_base;
  return (uint8_t *)l->bases[device] + c->r->offsets[device] +
         (uint64_t)(c->p->src_start + tensor) * c->r->stride + c->src_base;
}

static uint8_t *blocks_local(void *ctx, int32_t device, int32_t tensor, int32_t pair) {
  const struct pull_task *p = ctx;
  return host_cache_tensor(&p->task.engine->book, p->dst, device, p->dst_start + tensor) +
         p->pairs[2 * (int64_t)pair + 1] * host_cache_row_bytes(p->dst);
}

static int32_t copy_blocks(struct pull_task *p, const struct msg_lookup_reply *r,
                           const struct core_guard *g) {
  const struct cache *d = p->dst;
  uint64_t src_block = r->tensor_bytes / r->batch_size;
  struct blocks_ctx ctx = {.p = p, .r = r};
  struct core_block_cache dst = {.id = d->id,
                                 .num_tensors = p->count ? p->count : d->num_tensors,
                                 .num_blocks = d->batch_size,
                                 .block_bytes = host_cache_row_bytes(d)};
  struct core_block_cache src = {.id = p->k[1], .num_tensors = dst.num_tensors};
  int32_t status = core_tensor_range_check(p->src_start, p->dst_start, p->count,
                                           (int32_t)r->num_tensors, d->num_tensors);
  if (status != LLMDD_SUCCESS) return status;
  if (p->key_kind == LLMDD_KEY_BLOCKS) {
    src.num_blocks = r->batch_size;
    src.block_bytes = src_block;
  } else {
    /* A row, cut into blocks of the destination's size. */
    src.block_bytes = dst.block_bytes;
    src.num_blocks = src_block / dst.block_bytes;
    ctx.src_base = r->row * src_block;
  }
  status = core_blocks_check(&dst, &src, p->pairs, p->num_pairs);
  if (status != LLMDD_SUCCESS) return status;
  int32_t devices = p->link->num_devices;
  struct ucx_regions *rg = NULL;
  if (r->where != LOOKUP_IN_POOLS && p->link->ucx != NULL) {
    status = host_ucx_outside_open(p->link, r, false, g, &rg);
    if (status != LLMDD_SUCCESS && status != LLMDD_FEATURE_NOT_ENABLED) return status;
    ctx.rg = rg;
  }
  if (r->where != LOOKUP_IN_POOLS && rg == NULL) {
    struct stream_plan plan = {.op = STREAM_READ, .pin = r->pin, .base = ctx.src_base,
                               .block_bytes = dst.block_bytes, .remote_start = p->src_start,
                               .num_tensors = dst.num_tensors, .num_devices = devices,
                               .pairs = p->pairs, .num_pairs = p->num_pairs, .remote_side = 0,
                               .local = blocks_local, .ctx = (void *)p, .what = "pulled"};
    return host_stream_run(p->link, &plan, g);
  }
  uint64_t total =
      core_blocks_total(devices, dst.num_tensors, dst.block_bytes, p->pairs, p->num_pairs, 0);
  struct core_progress progress = host_progress_start(g, total, "pulled", p->link->ucx == NULL);
  progress.peer_check = peer_check;
  progress.peer = (void *)p;
  struct ucx_batch ucx;
  if (p->link->ucx != NULL) ucx_begin(p, &progress, &ucx, rg);
  status = core_blocks_copy(&progress, blocks_tensor, &ctx, devices, dst.num_tensors,
                            dst.block_bytes, p->pairs, p->num_pairs, 0);
  if (p->link->ucx != NULL) return ucx_end(p, &ucx, status, g, rg);
  host_progress_end(&progress);
  return status;
}

/* Copies with an answer (checked against the mapped pools): the block pairs,
 * or the row. */
static int32_t copy_with(struct pull_task *p, const struct msg_lookup_reply *r,
                         struct core_guard *g) {
  if (p->pairs != NULL) {
    g->doing = "pulling blocks";
    return copy_blocks(p, r, g);
  }
  int32_t status = check_match(p, r);
  if (status != LLMDD_SUCCESS) return status;
  if (p->size == LLMDD_WHOLE_ROW) p->size = host_cache_row_bytes(p->dst);
  g->doing = "pulling";
  return copy_row(p, r, g);
}

/* The repeat pull (fast.h): with an answer kept from an earlier LOOKUP whose
 * stamp still holds, copy, then check the stamp again. *done is false when the
 * copy may be stale (or nothing was kept): the caller asks the PROMPT. */
static int32_t pull_kept(struct pull_task *p, struct core_guard *g, bool *done) {
  struct fast_view *v = p->link->fast;
  struct fast_entry kept;
  *done = false;
  if (!host_fast_find(v, p->key_kind, p->k, &kept)) return LLMDD_SUCCESS;
  bool remote = host_fast_remote(v);
  p->kept = true;
  p->check = remote ? &kept.stamp : NULL;
  p->too_big = false;
  int32_t status = copy_with(p, &kept.reply, g);
  p->kept = false;
  p->check = NULL;
  if (p->too_big) return LLMDD_SUCCESS; /* not done: through LOOKUP */
  /* Over UCX the page's words come with the copy's reads: a copy that did not
   * run says nothing (a broken connection stands, as for any pull). */
  if (remote && status == LLMDD_LINK_FAILED) {
    *done = true;
    return status;
  }
  bool valid = remote ? status == LLMDD_SUCCESS && host_fast_holds(&kept.stamp, p->slot_gen)
                      : host_fast_valid(v, &kept.stamp);
  if (valid) {
    /* Nothing moved: the outcome, good or bad, is what a LOOKUP would give. No
     * pin is held, so the counters are what made the copy safe; the PROMPT's
     * server still being there is what a LOOKUP would also have needed. */
    *done = true;
    if (status == LLMDD_SUCCESS && !host_link_alive_kept(p->link)) return gone(p, untrusted(p));
    return status;
  }
  host_fast_forget(v, p->key_kind, p->k);
  /* A deadline or cancel stands; anything else came from a stale answer. */
  status = core_guard_check(g);
  if (status != LLMDD_SUCCESS) *done = true;
  return status;
}

static int32_t pull_run(struct task *t) {
  struct pull_task *p = (struct pull_task *)t;
  struct core_guard g = host_task_guard(t, "waiting for the PROMPT's answer");
  int32_t status = core_guard_check(&g);
  if (status != LLMDD_SUCCESS) return status;
  if (atomic_load(&p->link->broken)) return gone(p, "(unlink and link again)");

  /* By id or BlocksCacheKey, nothing is consumed: an answer kept from an
   * earlier pull serves while the PROMPT's generation page says nothing moved.
   * Over UCX such a pull still waits for the PROMPT (its reads), so it is not
   * one LLMDD_KEY_KEPT_ONLY may make on the caller's thread. */
  bool repeatable = p->link->fast != NULL && host_fast_kind(p->key_kind);
  if (repeatable && !(p->kept_only && host_fast_remote(p->link->fast))) {
    bool done;
    status = pull_kept(p, &g, &done);
    if (done) return status;
  }
  if (p->kept_only)
    return core_fail(LLMDD_FEATURE_NOT_ENABLED,
                     "no answer of the PROMPT of cluster %llu is kept for this key, it is no"
                     " longer valid, or the link is over UCX (where such a pull waits): pull"
                     " without LLMDD_KEY_KEPT_ONLY",
                     (unsigned long long)p->link->cluster_id);
  if (!host_link_alive(p->link)) return gone(p, "(unlink and link again)");
  g.doing = "waiting for the PROMPT's answer";

  /* A BlocksCacheKey is held as a cache key under LLMDD_BLOCKS_REQ_ID. */
  bool blocks = p->key_kind == LLMDD_KEY_BLOCKS;
  struct msg request = {.type = MSG_LOOKUP,
                        .u.lookup = {.kind = blocks ? LLMDD_KEY_CACHE_KEY : (uint32_t)p->key_kind,
                                     .k = {p->k[0], blocks ? LLMDD_BLOCKS_REQ_ID : p->k[1],
                                           p->k[2]}}};
  struct msg answer;
  status = host_link_lookup(p->link, &request, &answer, &g);
  if (status != LLMDD_SUCCESS) return status;
  const struct msg_lookup_reply *r = &answer.u.lookup_reply;
  if (r->status != LLMDD_SUCCESS) return refused(p, r->status);
  status = copy_with(p, r, &g);
  if (status != LLMDD_SUCCESS) {
    host_link_unpin(p->link, r->pin);
    return status;
  }
  /* Checked after the copy: the PROMPT shuts the connection before unpinning. */
  if (!host_link_alive(p->link)) return gone(p, untrusted(p));
  /* Only answers about the pools are kept: memory outside them is read under
   * this LOOKUP's pin (through the socket, or with the pin's UCX keys), which
   * DONE releases. */
  if (repeatable && r->where == LOOKUP_IN_POOLS) {
    struct fast_stamp stamp = host_fast_answer_stamp(p->key_kind, p->k, r);
    host_fast_keep(p->link->fast, p->key_kind, p->k, &stamp, r);
  }
  struct msg done = {.type = MSG_DONE,
                     .u.done = {.pin = r->pin,
                                .flags = p->key_kind == LLMDD_KEY_CACHE_KEY ? DONE_CONSUME : 0}};
  struct core_guard quick = core_guard_for(1000, "releasing the pin");
  if (host_link_send(p->link, &done, &quick) != LLMDD_SUCCESS) {
    /* The row is here and intact; the PROMPT drops the pin with the connection,
     * but cannot consume the key. */
    host_link_break(p->link);
  }
  return LLMDD_SUCCESS;
}

static void pull_end(struct task *t) {
  struct pull_task *p = (struct pull_task *)t;
  host_book_unpin(&t->engine->book, p->dst);
  host_link_pull_end(p->link);
  host_link_release(p->link);
}

LLMDD_API int32_t llmdd_cache_pull(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                   uint64_t k0, uint64_t k1, uint64_t k2,
                                   int32_t dst_batch_index, uint64_t size, uint64_t job) {
  bool kept_only = (key_kind & LLMDD_KEY_KEPT_ONLY) != 0 && key_kind != LLMDD_KEY_KEPT_ONLY;
  if (kept_only) key_kind &= ~LLMDD_KEY_KEPT_ONLY;
  struct pull_task p = {.task = {.run = pull_run, .end = pull_end},
                        .key_kind = key_kind,
                        .k = {k0, k1, k2},
                        .size = size,
                        .kept_only = kept_only};
  int32_t status = host_task_begin(&p.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = p.task.engine;
  if (e->role == LLMDD_ROLE_PROMPT)
    return host_task_abandon(&p.task, core_fail(LLMDD_PARAM_INVALID,
                                      "a PROMPT engine does not pull: DECODER and MIX engines do"));
  if ((key_kind != LLMDD_KEY_CACHE_KEY || kept_only) && key_kind != LLMDD_KEY_BY_ID)
    return host_task_abandon(&p.task, core_fail(LLMDD_PARAM_INVALID,
                                      "key_kind %d is not CACHE_KEY (0) or BY_ID (1, or 0x101"
                                      " kept only)", key_kind));
  p.dst = host_book_find(&e->book, cache_id);
  if (p.dst == NULL)
    return host_task_abandon(&p.task, core_fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist",
                                      (unsigned long long)cache_id));
  if (dst_batch_index < 0 || (uint64_t)dst_batch_index >= p.dst->batch_size)
    return host_task_abandon(&p.task, core_fail(LLMDD_PARAM_INVALID,
                                      "dst_batch_index %d is out of range [0, %llu) of cache %llu",
                                      dst_batch_index, (unsigned long long)p.dst->batch_size,
                                      (unsigned long long)cache_id));
  uint64_t row = host_cache_row_bytes(p.dst);
  if (size != LLMDD_WHOLE_ROW && size > row)
    return host_task_abandon(&p.task, core_fail(LLMDD_PARAM_INVALID,
                                      "size %llu is more than the %llu bytes of a row of cache %llu",
                                      (unsigned long long)size, (unsigned long long)row,
                                      (unsigned long long)cache_id));
  p.link = host_links_find(e, k0);
  if (p.link == NULL)
    return host_task_abandon(&p.task, core_fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu",
                                      (unsigned long long)k0));
  p.dst_offset = (uint64_t)dst_batch_index * row;
  host_book_pin(p.dst);
  host_link_retain(p.link);
  host_link_pull_begin(p.link);
  return host_task_dispatch(&p.task, sizeof p);
}

LLMDD_API int32_t llmdd_cache_pull_blocks(uint64_t engine, uint64_t cache_id, int32_t key_kind,
                                          uint64_t k0, uint64_t k1, uint64_t k2,
                                          const uint64_t *pairs, int32_t num_pairs,
                                          int32_t src_tensor_start, int32_t dst_tensor_start,
                                          int32_t num_tensors, uint64_t job) {
  bool kept_only = (key_kind & LLMDD_KEY_KEPT_ONLY) != 0 &&
                   ((key_kind & ~LLMDD_KEY_KEPT_ONLY) == LLMDD_KEY_BY_ID ||
                    (key_kind & ~LLMDD_KEY_KEPT_ONLY) == LLMDD_KEY_BLOCKS);
  if (kept_only) key_kind &= ~LLMDD_KEY_KEPT_ONLY;
  struct pull_task p = {.task = {.run = pull_run, .end = pull_end},
                        .key_kind = key_kind,
                        .kept_only = kept_only,
                        .k = {k0, key_kind == LLMDD_KEY_BLOCKS ? 0 : k1, k2},
                        .pairs = pairs,
                        .num_pairs = num_pairs,
                        .src_start = src_tensor_start,
                        .dst_start = dst_tensor_start,
                        .count = num_tensors};
  int32_t status = host_task_begin(&p.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = p.task.engine;
  if (e->role == LLMDD_ROLE_PROMPT)
    return host_task_abandon(&p.task, core_fail(LLMDD_PARAM_INVALID,
                                      "a PROMPT engine does not pull: DECODER and MIX engines do"));
  if (key_kind != LLMDD_KEY_CACHE_KEY && key_kind != LLMDD_KEY_BY_ID &&
      key_kind != LLMDD_KEY_BLOCKS)
    return host_task_abandon(
        &p.task, core_fail(LLMDD_PARAM_INVALID,
                           "key_kind %d is not CACHE_KEY (0), BY_ID (1) or BLOCKS (2)", key_kind));
  p.dst = host_book_find(&e->book, cache_id);
  if (p.dst == NULL)
    return host_task_abandon(&p.task, core_fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist",
                                      (unsigned long long)cache_id));
  /* What can be checked before asking the PROMPT: the list, the destination's
   * indexes and tensor range (the source's come with the answer). */
  struct core_block_cache dst = {.id = cache_id,
                                 .num_tensors = num_tensors ? num_tensors : p.dst->num_tensors,
                                 .num_blocks = p.dst->batch_size,
                                 .block_bytes = host_cache_row_bytes(p.dst)};
  struct core_block_cache any = dst;
  any.num_blocks = UINT64_MAX;
  status = core_blocks_check(&dst, &any, pairs, num_pairs);
  /* The source's tensor count is not known yet: only the destination's bound. */
  if (status == LLMDD_SUCCESS)
    status = num_tensors == 0 ? core_tensor_range_check(src_tensor_start, dst_tensor_start, 0, 1, 1)
                              : core_tensor_range_check(src_tensor_start, dst_tensor_start,
                                                        num_tensors, INT32_MAX,
                                                        p.dst->num_tensors);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&p.task, status);
  p.link = host_links_find(e, k0);
  if (p.link == NULL)
    return host_task_abandon(&p.task, core_fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu",
                                      (unsigned long long)k0));
  host_book_pin(p.dst);
  host_link_retain(p.link);
  host_link_pull_begin(p.link);
  return host_task_dispatch(&p.task, sizeof p);
}
