/* The long operations: llmdd_cache_read, llmdd_cache_copy and
 * llmdd_cache_copy_blocks.
 *
 * Each call is a task (task.h): claim the job, enter the engine, validate under
 * the engine lock, then run one of three ways:
 *   - small inline copies run under the lock (host_task_run_locked): cheapest for the
 *     common 64-byte read, and nothing can free the memory meanwhile;
 *   - larger inline copies pin their caches, raise the engine's `running` count and
 *     copy outside the lock, checking deadline, cancel and finalize per chunk;
 *   - jobs with a done callback pin their caches and go to a worker thread. */
#define _DEFAULT_SOURCE 1
#include "book.h"
#include "core/blocks.h"
#include "core/copy.h"
#include "core/error.h"
#include "engine.h"
#include "llmdd.h"
#include "memcopy.h"
#include "task.h"

/* Up to this many bytes are copied while holding the engine lock (about a
 * microsecond), which saves pinning and a second lock round trip. */
#define LOCKED_COPY_BYTES ((uint64_t)16 << 10)

struct operation {
  struct task task;
  struct cache *src;
  struct cache *dst; /* NULL for a read */
  /* read */
  int32_t tensor_index;
  int32_t device_index;
  uint8_t *out;
  /* copy */
  uint64_t dst_offset;
  uint64_t src_offset;
  uint64_t nbytes;
  /* copy_blocks (pairs: the caller's, valid until the operation ends) */
  const uint64_t *pairs;
  int32_t num_pairs;
  uint64_t total; /* bytes the operation moves */
};

/* core_tensor_fn over a block copy's two caches. */
static uint8_t *block_tensor(void *ctx, int side, int32_t device, int32_t tensor) {
  const struct operation *op = ctx;
  return host_cache_tensor(&op->task.engine->book, side == 0 ? op->dst : op->src, device, tensor);
}

/* A read's one range: the tensor into the caller's buffer (core_range_fn). */
static bool read_range(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src) {
  (void)i;
  const struct operation *op = ctx;
  *dst = op->out;
  *src = host_cache_tensor(&op->task.engine->book, op->src, op->device_index, op->tensor_index);
  return true;
}

/* A copy's range of tensor i % num_tensors of device i / num_tensors. */
static bool rows_range(void *ctx, uint64_t i, uint8_t **dst, const uint8_t **src) {
  const struct operation *op = ctx;
  const struct book *b = &op->task.engine->book;
  int32_t d = (int32_t)(i / (uint64_t)op->src->num_tensors);
  int32_t t = (int32_t)(i % (uint64_t)op->src->num_tensors);
  *dst = host_cache_tensor(b, op->dst, d, t) + op->dst_offset;
  *src = host_cache_tensor(b, op->src, d, t) + op->src_offset;
  return true;
}

/* The task's run: copies. The pools must stay mapped and the caches alive
 * throughout (the engine lock is held, or the caches are pinned). */
static int32_t execute(struct task *task) {
  const struct operation *op = (const struct operation *)task;
  const struct book *b = &task->engine->book;
  struct core_guard g = host_task_guard(task, "copying");
  bool fresh = op->dst == NULL && op->total >= PREFAULT_MIN_BYTES;
  struct core_progress p = core_progress_start(
      &g, fresh ? host_copy_prefaulted : host_copy_plain, op->total, "copied");
  p.shareable = true; /* both caches (and a read's buffer) are this process's memory */
  int32_t status = core_progress_check(&p); /* before the first chunk, even of none */
  if (status != LLMDD_SUCCESS) return status;
  if (op->pairs != NULL)
    return core_blocks_copy(&p, block_tensor, (void *)op, b->num_devices, op->src->num_tensors,
                            host_cache_row_bytes(op->src), op->pairs, op->num_pairs,
                            op->src == op->dst);
  if (op->dst == NULL) return core_copy_ranges(&p, read_range, (void *)op, 1, op->src->tensor_bytes);
  return core_copy_ranges(&p, rows_range, (void *)op,
                          (uint64_t)b->num_devices * (uint64_t)op->src->num_tensors, op->nbytes);
}

/* Keeps the caches alive while the copy runs outside the lock (engine locked). */
static void pin(struct operation *op) {
  host_book_pin(op->src);
  if (op->dst) host_book_pin(op->dst);
}

/* The task's end, with the engine locked: drops the pins dispatch() took. */
static void unpin(struct task *t) {
  struct operation *op = (struct operation *)t;
  host_book_unpin(&t->engine->book, op->src);
  if (op->dst) host_book_unpin(&t->engine->book, op->dst);
}

/* Runs a validated operation (engine locked). */
static int32_t dispatch(struct operation *op) {
  if (op->total <= LOCKED_COPY_BYTES && !host_task_in_background(&op->task))
    return host_task_run_locked(&op->task);
  pin(op);
  return host_task_dispatch(&op->task, sizeof *op);
}

static int32_t find_cache(struct engine *e, uint64_t id, const char *role, struct cache **out) {
  *out = host_book_find(&e->book, id);
  if (*out == NULL)
    return core_fail(LLMDD_KV_CACHE_NOT_EXIST, "%scache %llu does not exist", role,
                (unsigned long long)id);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_read(uint64_t engine, uint64_t cache_id,
                                   int32_t tensor_index, int32_t device_index,
                                   uint8_t *out, uint64_t out_len, uint64_t job) {
  struct operation op = {.task = {.run = execute, .end = unpin}};
  int32_t status = host_task_begin(&op.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = op.task.engine;

  if (out == NULL) return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID, "out is NULL"));
  if (device_index < 0 || device_index >= e->options.num_devices)
    return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID,
                                       "device_index %d is out of range [0, %d)",
                                       device_index, e->options.num_devices));
  status = find_cache(e, cache_id, "", &op.src);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&op.task, status);
  if (tensor_index < 0 || tensor_index >= op.src->num_tensors)
    return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID,
                                       "tensor_index %d is out of range [0, %d)",
                                       tensor_index, op.src->num_tensors));
  if (out_len != op.src->tensor_bytes)
    return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID,
                                       "out_len %llu is not the tensor size %llu",
                                       (unsigned long long)out_len,
                                       (unsigned long long)op.src->tensor_bytes));

  op.tensor_index = tensor_index;
  op.device_index = device_index;
  op.out = out;
  op.total = out_len;
  return dispatch(&op);
}

static int32_t check_range(const char *role, uint64_t offset, uint64_t nbytes,
                           const struct cache *c) {
  if (offset > c->tensor_bytes || nbytes > c->tensor_bytes - offset)
    return core_fail(LLMDD_PARAM_INVALID,
                "%s range of %llu bytes at offset %llu is outside the tensor of %llu bytes",
                role, (unsigned long long)nbytes, (unsigned long long)offset,
                (unsigned long long)c->tensor_bytes);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_copy(uint64_t engine, uint64_t dst_cache_id,
                                   uint64_t src_cache_id, uint64_t dst_offset,
                                   uint64_t src_offset, uint64_t nbytes, uint64_t job) {
  struct operation op = {.task = {.run = execute, .end = unpin}};
  int32_t status = host_task_begin(&op.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = op.task.engine;

  status = find_cache(e, dst_cache_id, "destination ", &op.dst);
  if (status == LLMDD_SUCCESS) status = find_cache(e, src_cache_id, "source ", &op.src);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&op.task, status);
  if (op.dst->num_tensors != op.src->num_tensors)
    return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID,
                                       "destination cache %llu has %d tensors but source cache %llu"
                                       " has %d",
                                       (unsigned long long)dst_cache_id, op.dst->num_tensors,
                                       (unsigned long long)src_cache_id, op.src->num_tensors));
  status = check_range("destination", dst_offset, nbytes, op.dst);
  if (status == LLMDD_SUCCESS) status = check_range("source", src_offset, nbytes, op.src);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&op.task, status);
  if (op.dst == op.src && nbytes > 0 && dst_offset < src_offset + nbytes &&
      src_offset < dst_offset + nbytes)
    return host_task_abandon(&op.task, core_fail(LLMDD_PARAM_INVALID,
                                       "ranges of %llu bytes at offsets %llu and %llu overlap in"
                                       " cache %llu",
                                       (unsigned long long)nbytes, (unsigned long long)dst_offset,
                                       (unsigned long long)src_offset,
                                       (unsigned long long)src_cache_id));

  op.dst_offset = dst_offset;
  op.src_offset = src_offset;
  op.nbytes = nbytes;
  op.total = nbytes * (uint64_t)op.src->num_tensors * (uint64_t)e->options.num_devices;
  return dispatch(&op);
}

LLMDD_API int32_t llmdd_cache_copy_blocks(uint64_t engine, uint64_t dst_cache_id,
                                          uint64_t src_cache_id, const uint64_t *pairs,
                                          int32_t num_pairs, uint64_t job) {
  struct operation op = {.task = {.run = execute, .end = unpin}};
  int32_t status = host_task_begin(&op.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = op.task.engine;

  status = find_cache(e, dst_cache_id, "destination ", &op.dst);
  if (status == LLMDD_SUCCESS) status = find_cache(e, src_cache_id, "source ", &op.src);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&op.task, status);
  struct core_block_cache dst = {dst_cache_id, op.dst->num_tensors, op.dst->batch_size,
                                 host_cache_row_bytes(op.dst)};
  struct core_block_cache src = {src_cache_id, op.src->num_tensors, op.src->batch_size,
                                 host_cache_row_bytes(op.src)};
  status = core_blocks_check(&dst, &src, pairs, num_pairs);
  if (status != LLMDD_SUCCESS) return host_task_abandon(&op.task, status);

  op.pairs = pairs;
  op.num_pairs = num_pairs;
  op.total = core_blocks_total(e->options.num_devices, src.num_tensors, src.block_bytes, pairs,
                               num_pairs, op.src == op.dst);
  return dispatch(&op);
}
