/* llmdd_cache_push_blocks and llmdd_cache_push_addrs: from a local cache into
 * remote-accessible memory of the engine this one linked to.
 *
 * One LOOKUP_WRITE per destination (the PROMPT pins it, and answers only if it
 * is remote-accessible), then one copy: into the read-write mapping of the
 * PROMPT's pools when the destination is there and both engines enabled remote
 * access, in chunks checking the deadline, the cancel flag, the finalize and that
 * the PROMPT is alive; over UCX, when the PROMPT's keys allow writes, the same
 * loops record ranges that are then written with ucp_put_nbx and flushed
 * (ucx.h), also into registered and host-pool memory with the pin's keys
 * (ucx_outside.h); otherwise (a PROMPT without remote access over UCX, memory
 * outside the pools over shared memory, or a cache too large for keys)
 * through the link's socket in one STREAM request (stream.h). Then DONE, which
 * releases the pin. */
#define _DEFAULT_SOURCE 1
#include "book.h"
#include "core/blocks.h"
#include "core/copy.h"
#include "core/error.h"
#include "link.h"
#include "llmdd.h"
#include "memcopy.h"
#include "stream.h"
#include "task.h"
#include "ucx.h"
#include "ucx_outside.h"

struct push_task {
  struct task task;
  struct link *link;
  struct cache *src;
  int32_t key_kind; /* LLMDD_KEY_BY_ID, LLMDD_KEY_BLOCKS, or LOOKUP_BY_ADDR (push_addrs) */
  uint64_t k[3];
  int64_t src_row;        /* BY_ID: the source row */
  const uint64_t *pairs;  /* the caller's (BLOCKS, push_addrs); NULL: one pair of the row */
  int32_t num_pairs;
  int32_t src_start, dst_start, count; /* count 0: every tensor */
  /* push_addrs */
  const uint64_t *addrs;
  int32_t num_addrs;
  uint64_t block; /* bytes of a pair's blocks (push_addrs; push_blocks of a row: LLMDD_PUSH_ROW_BLOCKS) */
  uint64_t src_base; /* of the source's block 0 in each tensor */
  bool row_blocks;   /* LLMDD_PUSH_ROW_BLOCKS: a row cut into blocks of `block` bytes */
};

/* What one destination's copy needs (the task is shared by push_addrs' many). */
struct push_copy {
  const struct push_task *p;
  const struct msg_lookup_reply *r;
  const uint64_t *pairs;
  int32_t num_pairs;
  int32_t src_start, dst_start, count;
  uint64_t block, src_base;
  const struct ucx_regions *rg; /* over UCX, memory outside the pools; else NULL */
};

static int32_t gone(const struct push_task *p, const char *when) {
  return core_fail(LLMDD_LINK_FAILED, "the engine of cluster %llu at %s went away %s",
                   (unsigned long long)p->link->cluster_id, p->link->address, when);
}

static int32_t peer_check(void *peer) {
  const struct push_task *p = peer;
  if (!host_link_alive(p->link)) return gone(p, "during the push");
  return LLMDD_SUCCESS;
}

static int32_t refused(const struct push_task *p, int32_t status) {
  unsigned long long cluster = p->link->cluster_id;
  if (p->key_kind == (int32_t)LOOKUP_BY_ADDR && status == LLMDD_PARAM_INVALID)
    return core_fail(status,
                     "no remote-accessible memory of cluster %llu holds dst address 0x%llx"
                     " (+%llu bytes)",
                     cluster, (unsigned long long)p->k[0], (unsigned long long)p->k[1]);
  if (status == LLMDD_KV_CACHE_NOT_EXIST && p->key_kind == LLMDD_KEY_BLOCKS)
    return core_fail(status, "no blocks cache holds key (cluster %llu, model %llu) at cluster %llu",
                     (unsigned long long)p->k[0], (unsigned long long)p->k[2], cluster);
  if (status == LLMDD_KV_CACHE_NOT_EXIST)
    return core_fail(status, "cache %llu does not exist at cluster %llu",
                     (unsigned long long)p->k[1], cluster);
  if (status == LLMDD_PARAM_INVALID)
    return core_fail(status, "batch index[%llu] is out of range of cache %llu at cluster %llu",
                     (unsigned long long)p->k[2], (unsigned long long)p->k[1], cluster);
  if (status == LLMDD_FEATURE_NOT_ENABLED)
    return core_fail(LLMDD_PARAM_INVALID,
                     "remote cache is not remote accessible: the cache named at cluster %llu was"
                     " registered without remoteAccessible, or allocated by an engine without"
                     " llm.EnableRemoteCacheAccessible=1",
                     cluster);
  if (status == LLMDD_ENGINE_FINALIZED) return gone(p, "(it is being finalized)");
  return core_fail(LLMDD_LINK_FAILED, "the engine of cluster %llu refused the push (status 0x%08x)",
                   cluster, (unsigned)status);
}

/* ---- the copy ---- */

static uint8_t *mapped_tensor(void *ctx, int side, int32_t device, int32_t tensor) {
  const struct push_copy *c = ctx;
  if (side == 1)
    return host_cache_tensor(&c->p->task.engine->book, c->p->src, device, c->src_start + tensor) +
           c->src_base;
  if (c->rg != NULL) /* over UCX, outside the pools: its address there */
    return host_ucx_outside_tensor(c->rg, c->r->num_tensors, device, c->dst_start + tensor);
  /* Side 0, the destination: the PROMPT's pool, mapped read-write. */
  return (uint8_t *)c->p->link->bases[device] + c->r->offsets[device] +
         (uint64_t)(c->dst_start + tensor) * c->r->stride;
}

static uint8_t *stream_local(void *ctx, int32_t device, int32_t tensor, int32_t pair) {
  const struct push_copy *c = ctx;
  return host_cache_tensor(&c->p->task.engine->book, c->p->src, device, c->src_start + tensor) +
         c->src_base + c->pairs[2 * (int64_t)pair] * c->block;
}

static int32_t copy_out(struct push_copy *c, const struct core_guard *g) {
  const struct push_task *p = c->p;
  int32_t devices = p->link->num_devices;
  struct ucx_regions *rg = NULL;
  if (c->r->where != LOOKUP_IN_POOLS && p->link->ucx != NULL) {
    int32_t status = host_ucx_outside_open(p->link, c->r, true, g, &rg);
    if (status != LLMDD_SUCCESS && status != LLMDD_FEATURE_NOT_ENABLED) return status;
    c->rg = rg;
  }
  if (rg == NULL && (c->r->where != LOOKUP_IN_POOLS || !p->link->writable)) {
    struct stream_plan plan = {.op = STREAM_WRITE, .pin = c->r->pin, .base = 0,
                               .block_bytes = c->block, .remote_start = c->dst_start,
                               .num_tensors = c->count, .num_devices = devices,
                               .pairs = c->pairs, .num_pairs = c->num_pairs, .remote_side = 1,
                               .local = stream_local, .ctx = (void *)c, .what = "pushed"};
    return host_stream_run(p->link, &plan, g);
  }
  uint64_t total = core_blocks_total(devices, c->count, c->block, c->pairs, c->num_pairs, 0);
  const struct link *l = p->link;
  struct core_progress progress = host_progress_start(g, total, "pushed", l->ucx == NULL);
  progress.peer_check = peer_check;
  progress.peer = (void *)p;
  struct ucx_batch ucx;
  if (l->ucx != NULL) {
    /* Over UCX: the loops record the writes, then they are put and flushed. */
    progress.copy = host_ucx_record;
    progress.peer_check = NULL;
    if (rg != NULL) host_ucx_batch_begin_regions(&ucx, l->ucx, true, rg);
    else host_ucx_batch_begin(&ucx, l->ucx, true, l->pool_bytes, devices, l->bases);
  }
  int32_t status = core_blocks_copy(&progress, mapped_tensor, (void *)c, devices, c->count,
                                    c->block, c->pairs, c->num_pairs, 0);
  if (l->ucx != NULL) {
    if (status != LLMDD_SUCCESS) host_ucx_batch_abandon(&ucx);
    else status = host_ucx_batch_run(&ucx, g, peer_check, (void *)p);
    host_ucx_regions_close(l->ucx, rg);
    return status;
  }
  host_progress_end(&progress);
  return status;
}

/* Checks the answer for llmdd_cache_push_blocks and copies. */
static int32_t push_blocks_to(const struct push_task *p, const struct msg_lookup_reply *r,
                              const struct core_guard *g) {
  const struct cache *s = p->src;
  int32_t count = p->count ? p->count : s->num_tensors;
  int32_t status = core_tensor_range_check(p->src_start, p->dst_start, p->count, s->num_tensors,
                                           (int32_t)r->num_tensors);
  if (status != LLMDD_SUCCESS) return status;
  uint64_t own_pair[2] = {(uint64_t)p->src_row, r->row};
  const uint64_t *pairs = p->pairs == NULL ? own_pair : p->pairs;
  int32_t num_pairs = p->pairs == NULL ? 1 : p->num_pairs;
  struct core_block_cache dst = {.id = p->k[1], .num_tensors = count,
                                 .num_blocks = r->batch_size,
                                 .block_bytes = r->tensor_bytes / r->batch_size};
  struct core_block_cache src = {.id = s->id, .num_tensors = count, .num_blocks = s->batch_size,
                                 .block_bytes = host_cache_row_bytes(s)};
  if (p->row_blocks) {
    /* Upstream's ValidateRemoteCache: the size given is the destination's. */
    if (p->block != dst.block_bytes)
      return core_fail(LLMDD_PARAM_INVALID,
                       "dst_block_memory_size[%llu] is not equal to stride[%llu] of remote cache.",
                       (unsigned long long)p->block, (unsigned long long)dst.block_bytes);
    src.block_bytes = p->block;
    /* Whole blocks from the row on (upstream cuts the tensor from there). */
    src.num_blocks = (host_cache_row_bytes(s) * s->batch_size - p->src_base) / p->block;
  }
  status = core_blocks_check(&dst, &src, pairs, num_pairs);
  if (status != LLMDD_SUCCESS) return status;
  struct push_copy c = {.p = p, .r = r, .pairs = pairs, .num_pairs = num_pairs,
                        .src_start = p->src_start, .dst_start = p->dst_start, .count = count,
                        .block = src.block_bytes, .src_base = p->src_base};
  return copy_out(&c, g);
}

/* One destination: LOOKUP_WRITE, the copy, DONE. */
static int32_t push_one(struct push_task *p, int32_t kind, const uint64_t k[3], int32_t addr_index,
                        struct core_guard *g) {
  struct msg request = {.type = MSG_LOOKUP,
                        .u.lookup = {.kind = (uint32_t)kind, .flags = LOOKUP_WRITE,
                                     .k = {k[0], k[1], k[2]}}};
  struct msg answer;
  g->doing = "waiting for the peer's answer";
  int32_t status = host_link_lookup(p->link, &request, &answer, g);
  if (status != LLMDD_SUCCESS) return status;
  const struct msg_lookup_reply *r = &answer.u.lookup_reply;
  if (r->status != LLMDD_SUCCESS) return refused(p, r->status);
  g->doing = "pushing";
  if (addr_index < 0) {
    status = push_blocks_to(p, r, g);
  } else {
    /* push_addrs: the answer is one tensor of one row, from the address on. */
    static const uint64_t whole_row[2] = {0, 0};
    struct push_copy c = {.p = p, .r = r, .pairs = p->pairs ? p->pairs : whole_row,
                          .num_pairs = p->pairs ? p->num_pairs : 1,
                          .src_start = p->src_start + addr_index, .count = 1, .block = p->block,
                          .src_base = p->src_base};
    uint64_t top = 0;
    for (int32_t i = 0; i < c.num_pairs; i++)
      if (c.pairs[2 * i + 1] > top) top = c.pairs[2 * i + 1];
    if (c.block > r->tensor_bytes || top > (r->tensor_bytes - c.block) / c.block)
      status = core_fail(LLMDD_PARAM_INVALID,
                         "dst block %llu of %llu bytes at dst_addrs[%d] 0x%llx reaches beyond the"
                         " remote-accessible tensor holding it (%llu bytes from there)",
                         (unsigned long long)top, (unsigned long long)c.block, addr_index,
                         (unsigned long long)k[0], (unsigned long long)r->tensor_bytes);
    else
      status = copy_out(&c, g);
  }
  if (status != LLMDD_SUCCESS) {
    host_link_unpin(p->link, r->pin);
    return status;
  }
  if (!host_link_alive(p->link)) return gone(p, "during the push");
  /* Acknowledged: once the push returns, the peer has dropped the pin, so the
   * program there may unregister or free the destination at once. */
  struct msg done = {.type = MSG_DONE, .u.done = {.pin = r->pin, .flags = DONE_ACK}};
  struct core_guard quick = core_guard_for(1000, "releasing the pin");
  if (host_link_exchange(p->link, &done, MSG_DONE_REPLY, &answer, &quick) != LLMDD_SUCCESS)
    host_link_break(p->link); /* the bytes are there; the pin goes with the connection */
  return LLMDD_SUCCESS;
}

static int32_t push_run(struct task *t) {
  struct push_task *p = (struct push_task *)t;
  struct core_guard g = host_task_guard(t, "pushing");
  int32_t status = core_guard_check(&g);
  if (status != LLMDD_SUCCESS) return status;
  if (!host_link_alive(p->link)) return gone(p, "(unlink and link again)");
  if (p->key_kind == LLMDD_KEY_BY_ID) return push_one(p, LLMDD_KEY_BY_ID, p->k, -1, &g);
  if (p->key_kind == LLMDD_KEY_BLOCKS) {
    /* A BlocksCacheKey is held as a cache key under LLMDD_BLOCKS_REQ_ID. */
    uint64_t k[3] = {p->k[0], LLMDD_BLOCKS_REQ_ID, p->k[2]};
    return push_one(p, LLMDD_KEY_CACHE_KEY, k, -1, &g);
  }
  uint64_t top = 0;
  for (int32_t i = 0; p->pairs != NULL && i < p->num_pairs; i++)
    if (p->pairs[2 * i + 1] > top) top = p->pairs[2 * i + 1];
  for (int32_t i = 0; i < p->num_addrs && status == LLMDD_SUCCESS; i++) {
    /* The peer finds the whole range the pairs write, from the address on. */
    uint64_t k[3] = {p->addrs[i], (top + 1) * p->block, 0};
    p->k[0] = k[0];
    p->k[1] = k[1];
    status = push_one(p, (int32_t)LOOKUP_BY_ADDR, k, i, &g);
  }
  return status;
}

static void push_end(struct task *t) {
  struct push_task *p = (struct push_task *)t;
  host_book_unpin(&t->engine->book, p->src);
  host_link_pull_end(p->link);
  host_link_release(p->link);
}

/* The checks both calls share (engine locked): role, the source, and remote
 * access here (push_blocks only: upstream's TransferConfig, raw addresses, is the
 * mode without it; the peer still takes only remote-accessible memory). */
static int32_t check_source(struct push_task *p, uint64_t cache_id, bool need_remote) {
  struct engine *e = p->task.engine;
  if (e->role == LLMDD_ROLE_PROMPT)
    return core_fail(LLMDD_PARAM_INVALID,
                     "a PROMPT engine does not push: it links to nobody (DECODER and MIX engines"
                     " push into the engines they linked to)");
  if (need_remote && !e->options.remote_access)
    return core_fail(LLMDD_PARAM_INVALID,
                     "push is only supported while llm.EnableRemoteCacheAccessible is 1");
  p->src = host_book_find(&e->book, cache_id);
  if (p->src == NULL)
    return core_fail(LLMDD_KV_CACHE_NOT_EXIST, "cache %llu does not exist",
                     (unsigned long long)cache_id);
  if (need_remote && !p->src->remote)
    return core_fail(LLMDD_PARAM_INVALID,
                     "local cache is not remote accessible: cache %llu was registered without"
                     " remoteAccessible",
                     (unsigned long long)cache_id);
  return LLMDD_SUCCESS;
}

static int32_t find_link(struct push_task *p, uint64_t cluster_id) {
  p->link = host_links_find(p->task.engine, cluster_id);
  if (p->link == NULL)
    return core_fail(LLMDD_NOT_YET_LINK, "not linked to cluster %llu",
                     (unsigned long long)cluster_id);
  return LLMDD_SUCCESS;
}

static int32_t start(struct push_task *p) {
  host_book_pin(p->src);
  host_link_retain(p->link);
  host_link_pull_begin(p->link);
  return host_task_dispatch(&p->task, sizeof *p);
}

LLMDD_API int32_t llmdd_cache_push_blocks(uint64_t engine, uint64_t cache_id,
                                          int32_t src_batch_index, int32_t key_kind,
                                          uint64_t k0, uint64_t k1, uint64_t k2,
                                          const uint64_t *pairs, int32_t num_pairs,
                                          int32_t src_tensor_start, int32_t dst_tensor_start,
                                          int32_t num_tensors, uint64_t job) {
  /* A row cut into blocks: only with LLMDD_KEY_BLOCKS, k1 the blocks' size. */
  bool row_blocks = (key_kind & LLMDD_PUSH_ROW_BLOCKS) != 0 &&
                    (key_kind & ~LLMDD_PUSH_ROW_BLOCKS) == LLMDD_KEY_BLOCKS;
  if (row_blocks) key_kind = LLMDD_KEY_BLOCKS;
  struct push_task p = {.task = {.run = push_run, .end = push_end},
                        .key_kind = key_kind,
                        .k = {k0, key_kind == LLMDD_KEY_BLOCKS ? 0 : k1, k2},
                        .row_blocks = row_blocks,
                        .block = row_blocks ? k1 : 0,
                        .src_row = src_batch_index,
                        .pairs = pairs != NULL || num_pairs != 0 ? pairs : NULL,
                        .num_pairs = num_pairs,
                        .src_start = src_tensor_start,
                        .dst_start = dst_tensor_start,
                        .count = num_tensors};
  int32_t status = host_task_begin(&p.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  status = check_source(&p, cache_id, true);
  if (status == LLMDD_SUCCESS && key_kind != LLMDD_KEY_BY_ID && key_kind != LLMDD_KEY_BLOCKS)
    status = core_fail(LLMDD_PARAM_INVALID, "key_kind %d is not BY_ID (1) or BLOCKS (2)", key_kind);
  /* By id with pairs: blocks of the cache named by id (its row 0), as the CANN
   * adapter's PushKvBlocks by CacheIndex. */
  bool blocks = key_kind == LLMDD_KEY_BLOCKS || (key_kind == LLMDD_KEY_BY_ID && (pairs != NULL || num_pairs != 0));
  if (status == LLMDD_SUCCESS && key_kind == LLMDD_KEY_BY_ID && blocks && k2 != 0)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "a push of blocks by CacheKeyByIdAndIndex names batch index 0, not %llu",
                       (unsigned long long)k2);
  if (status == LLMDD_SUCCESS && key_kind == LLMDD_KEY_BY_ID && !blocks &&
      (src_batch_index < 0 || (uint64_t)src_batch_index >= p.src->batch_size))
    /* As upstream's uint32 (the bindings pass 2^31 and up wrapped). */
    status = core_fail(LLMDD_PARAM_INVALID, "src_batch_index %u is out of range [0, %llu) of cache %llu",
                       (unsigned)src_batch_index, (unsigned long long)p.src->batch_size,
                       (unsigned long long)cache_id);
  if (status == LLMDD_SUCCESS && row_blocks) {
    uint64_t row = host_cache_row_bytes(p.src), tensor = row * p.src->batch_size;
    /* Upstream's GenerateCacheToBlocksTask (which cuts the tensor from the row on);
     * here every block is whole. */
    if (p.block == 0 || p.block >= tensor)
      status = core_fail(LLMDD_PARAM_INVALID,
                         "block_mem_size[%llu] must > 0 and < tensor size[%llu] when transfer from"
                         " continuous cache to blocks",
                         (unsigned long long)p.block, (unsigned long long)tensor);
    else if (src_batch_index < 0 || (uint64_t)src_batch_index >= p.src->batch_size)
      status = core_fail(LLMDD_PARAM_INVALID, "batch index[%u] is out of range[0, %llu)",
                         (unsigned)src_batch_index, (unsigned long long)p.src->batch_size);
    else if (pairs == NULL || num_pairs < 1)
      status = core_fail(LLMDD_PARAM_INVALID, "a row into blocks takes block pairs (num_pairs %d)",
                         num_pairs);
    p.src_base = (uint64_t)(src_batch_index < 0 ? 0 : src_batch_index) * row;
    if (status == LLMDD_SUCCESS) {
      struct core_block_cache src = {.id = cache_id, .num_tensors = p.src->num_tensors,
                                     .num_blocks = (tensor - p.src_base) / p.block,
                                     .block_bytes = p.block};
      struct core_block_cache any = src;
      any.num_blocks = UINT64_MAX;
      status = core_blocks_check(&any, &src, pairs, num_pairs);
    }
  } else if (status == LLMDD_SUCCESS && blocks && src_batch_index != 0)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "src_batch_index should be 0 when cache_key is BlocksCacheKey (got %d)",
                       src_batch_index);
  else if (status == LLMDD_SUCCESS && blocks) {
    /* The destination's bounds come with the answer; the source's are here. */
    struct core_block_cache src = {.id = cache_id,
                                   .num_tensors = p.src->num_tensors,
                                   .num_blocks = p.src->batch_size,
                                   .block_bytes = host_cache_row_bytes(p.src)};
    struct core_block_cache any = src;
    any.num_blocks = UINT64_MAX;
    status = core_blocks_check(&any, &src, pairs, num_pairs);
  }
  if (status == LLMDD_SUCCESS)
    status = num_tensors == 0
                 ? core_tensor_range_check(src_tensor_start, dst_tensor_start, 0, 1, 1)
                 : core_tensor_range_check(src_tensor_start, dst_tensor_start, num_tensors,
                                           p.src->num_tensors, INT32_MAX);
  if (status == LLMDD_SUCCESS) status = find_link(&p, k0);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&p.task, status);
  return start(&p);
}

LLMDD_API int32_t llmdd_cache_push_addrs(uint64_t engine, uint64_t cache_id,
                                         int32_t src_batch_index, uint64_t cluster_id,
                                         const uint64_t *dst_addrs, int32_t num_addrs,
                                         int32_t src_tensor_start, const uint64_t *pairs,
                                         int32_t num_pairs, uint64_t dst_block_bytes,
                                         uint64_t job) {
  struct push_task p = {.task = {.run = push_run, .end = push_end},
                        .key_kind = (int32_t)LOOKUP_BY_ADDR,
                        .src_row = src_batch_index,
                        .pairs = num_pairs > 0 ? pairs : NULL,
                        .num_pairs = num_pairs,
                        .src_start = src_tensor_start,
                        .addrs = dst_addrs,
                        .num_addrs = num_addrs};
  int32_t status = host_task_begin(&p.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = p.task.engine;
  status = check_source(&p, cache_id, false);
  if (status == LLMDD_SUCCESS && e->options.num_devices != 1)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "a push to addresses takes one device; this engine has %d",
                       e->options.num_devices);
  if (status == LLMDD_SUCCESS && (dst_addrs == NULL || num_addrs < 1))
    status = core_fail(LLMDD_PARAM_INVALID, "dst_addrs: at least one address (num_addrs %d)",
                       num_addrs);
  for (int32_t i = 0; status == LLMDD_SUCCESS && i < num_addrs; i++)
    if (dst_addrs[i] == 0)
      status = core_fail(LLMDD_PARAM_INVALID, "dst_addrs[%d] is 0", i);
  if (status == LLMDD_SUCCESS &&
      (src_tensor_start < 0 || src_tensor_start > p.src->num_tensors - num_addrs))
    status = core_fail(LLMDD_PARAM_INVALID, "src tensors [%d, %lld) are out of range [0, %d)",
                       src_tensor_start, (long long)src_tensor_start + num_addrs,
                       p.src->num_tensors);
  if (status == LLMDD_SUCCESS &&
      (src_batch_index < 0 || (uint64_t)src_batch_index >= p.src->batch_size))
    /* As upstream's uint32 (the bindings pass 2^31 and up wrapped). */
    status = core_fail(LLMDD_PARAM_INVALID, "src_batch_index %u is out of range [0, %llu) of cache %llu",
                       (unsigned)src_batch_index, (unsigned long long)p.src->batch_size,
                       (unsigned long long)cache_id);
  if (status == LLMDD_SUCCESS && num_pairs < 0)
    status = core_fail(LLMDD_PARAM_INVALID, "num_pairs %d is negative", num_pairs);
  if (status == LLMDD_SUCCESS && num_pairs > 0 && pairs == NULL)
    status = core_fail(LLMDD_PARAM_INVALID, "pairs is NULL");
  uint64_t row = status == LLMDD_SUCCESS ? host_cache_row_bytes(p.src) : 0;
  p.block = num_pairs > 0 && dst_block_bytes != 0 ? dst_block_bytes : row;
  p.src_base = (uint64_t)(src_batch_index < 0 ? 0 : src_batch_index) * row;
  if (status == LLMDD_SUCCESS && num_pairs == 0 && dst_block_bytes != 0)
    status = core_fail(LLMDD_PARAM_INVALID,
                       "dst_block_bytes %llu given without block pairs",
                       (unsigned long long)dst_block_bytes);
  for (int32_t i = 0; status == LLMDD_SUCCESS && i < num_pairs; i++) {
    uint64_t k = pairs[2 * (int64_t)i], m = pairs[2 * (int64_t)i + 1];
    /* Source block k lies within row src_batch_index (or the whole cache, when
     * blocks are rows); the destination's bound is the peer's to tell. */
    uint64_t limit = p.block == row ? p.src->batch_size - (uint64_t)src_batch_index : row / p.block;
    if (k >= limit)
      status = core_fail(LLMDD_PARAM_INVALID,
                         "src block index %llu is out of range [0, %llu) (blocks of %llu bytes)",
                         (unsigned long long)k, (unsigned long long)limit,
                         (unsigned long long)p.block);
    else if (m > UINT64_MAX / p.block - 1)
      status = core_fail(LLMDD_PARAM_INVALID, "dst block index %llu is out of range",
                         (unsigned long long)m);
  }
  if (status == LLMDD_SUCCESS) status = find_link(&p, cluster_id);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&p.task, status);
  return start(&p);
}
