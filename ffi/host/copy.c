/* The long operations: llmdd_cache_read and llmdd_cache_copy.
 *
 * Each call is a task (task.h): claim the job, enter the engine, validate under
 * the engine lock, then run one of three ways:
 *   - small inline copies run under the lock (task_run_locked): cheapest for the
 *     common 64-byte read, and nothing can free the memory meanwhile;
 *   - larger inline copies pin their caches, raise the engine's `running` count and
 *     copy outside the lock, checking deadline, cancel and finalize per chunk;
 *   - jobs with a done callback pin their caches and go to a worker thread. */
#define _DEFAULT_SOURCE 1
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine.h"
#include "error.h"
#include "job.h"
#include "llmdd.h"
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
  uint64_t total; /* bytes the operation moves */
};

struct progress {
  const struct operation *op;
  uint64_t copied;
  uint64_t since_check;
};

static int32_t check(const struct progress *p) {
  if (atomic_load_explicit(&p->op->task.engine->finalizing, memory_order_relaxed))
    return fail(LLMDD_ENGINE_FINALIZED,
                "the engine was finalized after %llu of %llu bytes were copied",
                (unsigned long long)p->copied, (unsigned long long)p->op->total);
  if (p->op->task.job != NULL) return job_check(p->op->task.job, p->copied, p->op->total);
  return LLMDD_SUCCESS;
}

/* Reads of at least this size into fresh memory are faulted in ahead of each
 * chunk. The caller's buffer for a large read is usually brand-new pages (V8
 * takes big buffers from calloc); taking the faults one page at a time inside
 * memcpy made a 64 MiB read 10-25 % slower than a plain copy in JavaScript. */
#define PREFAULT_MIN_BYTES ((uint64_t)4 << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Faults in the whole pages of [dst, dst + n) for writing, unless the first is
 * already resident (then the memory was reused and populating costs time).
 * Best effort: on older kernels madvise fails and memcpy takes the faults. */
static void prefault(uint8_t *dst, uint64_t n) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)dst + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)dst + n) & ~(page - 1);
  unsigned char resident = 0;
  if (end <= start) return;
  if (mincore((void *)start, page, &resident) == 0 && (resident & 1)) return;
  (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

static int32_t move(struct progress *p, uint8_t *dst, const uint8_t *src, uint64_t n) {
  while (n > 0) {
    if (p->since_check == LLMDD_COPY_CHUNK_BYTES) {
      int32_t status = check(p);
      if (status != LLMDD_SUCCESS) return status;
      p->since_check = 0;
    }
    uint64_t step = LLMDD_COPY_CHUNK_BYTES - p->since_check;
    if (step > n) step = n;
    if (p->op->dst == NULL && p->op->total >= PREFAULT_MIN_BYTES) prefault(dst, step);
    memcpy(dst, src, (size_t)step);
    dst += step;
    src += step;
    n -= step;
    p->since_check += step;
    p->copied += step;
  }
  return LLMDD_SUCCESS;
}

/* The task's run: copies. The pools must stay mapped and the caches alive
 * throughout (the engine lock is held, or the caches are pinned). */
static int32_t execute(struct task *task) {
  const struct operation *op = (const struct operation *)task;
  struct progress p = {op, 0, 0};
  int32_t status = check(&p); /* before the first chunk, too */
  if (status != LLMDD_SUCCESS) return status;
  const struct engine *e = task->engine;
  if (op->dst == NULL)
    return move(&p, op->out, cache_tensor(e, op->src, op->device_index, op->tensor_index),
                op->src->tensor_bytes);
  for (int32_t d = 0; d < e->options.num_devices; d++) {
    for (int32_t t = 0; t < op->src->num_tensors; t++) {
      status = move(&p, cache_tensor(e, op->dst, d, t) + op->dst_offset,
                    cache_tensor(e, op->src, d, t) + op->src_offset, op->nbytes);
      if (status != LLMDD_SUCCESS) return status;
    }
  }
  return LLMDD_SUCCESS;
}

/* Keeps the caches alive while the copy runs outside the lock (engine locked). */
static void pin(struct operation *op) {
  op->src->pins++;
  if (op->dst) op->dst->pins++;
}

static void unpin_one(struct engine *e, struct cache *c) {
  c->pins--;
  cache_release_if_unused(e, c);
}

/* The task's end, with the engine locked: drops the pins dispatch() took. */
static void unpin(struct task *t) {
  struct operation *op = (struct operation *)t;
  unpin_one(t->engine, op->src);
  if (op->dst) unpin_one(t->engine, op->dst);
}

/* Runs a validated operation (engine locked). */
static int32_t dispatch(struct operation *op) {
  if (op->total <= LOCKED_COPY_BYTES && !task_in_background(&op->task))
    return task_run_locked(&op->task);
  pin(op);
  return task_dispatch(&op->task, sizeof *op);
}

static int32_t find_cache(struct engine *e, uint64_t id, const char *role, struct cache **out) {
  *out = cache_find(e, id);
  if (*out == NULL)
    return fail(LLMDD_KV_CACHE_NOT_EXIST, "%scache %llu does not exist", role,
                (unsigned long long)id);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_read(uint64_t engine, uint64_t cache_id,
                                   int32_t tensor_index, int32_t device_index,
                                   uint8_t *out, uint64_t out_len, uint64_t job) {
  struct operation op = {.task = {.run = execute, .end = unpin}};
  int32_t status = task_begin(&op.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = op.task.engine;

  if (out == NULL) return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID, "out is NULL"));
  if (device_index < 0 || device_index >= e->options.num_devices)
    return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID,
                                       "device_index %d is out of range [0, %d)",
                                       device_index, e->options.num_devices));
  status = find_cache(e, cache_id, "", &op.src);
  if (status != LLMDD_SUCCESS) return task_abandon(&op.task, status);
  if (tensor_index < 0 || tensor_index >= op.src->num_tensors)
    return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID,
                                       "tensor_index %d is out of range [0, %d)",
                                       tensor_index, op.src->num_tensors));
  if (out_len != op.src->tensor_bytes)
    return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID,
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
    return fail(LLMDD_PARAM_INVALID,
                "%s range of %llu bytes at offset %llu is outside the tensor of %llu bytes",
                role, (unsigned long long)nbytes, (unsigned long long)offset,
                (unsigned long long)c->tensor_bytes);
  return LLMDD_SUCCESS;
}

LLMDD_API int32_t llmdd_cache_copy(uint64_t engine, uint64_t dst_cache_id,
                                   uint64_t src_cache_id, uint64_t dst_offset,
                                   uint64_t src_offset, uint64_t nbytes, uint64_t job) {
  struct operation op = {.task = {.run = execute, .end = unpin}};
  int32_t status = task_begin(&op.task, engine, job);
  if (status != LLMDD_SUCCESS) return status;
  struct engine *e = op.task.engine;

  status = find_cache(e, dst_cache_id, "destination ", &op.dst);
  if (status == LLMDD_SUCCESS) status = find_cache(e, src_cache_id, "source ", &op.src);
  if (status != LLMDD_SUCCESS) return task_abandon(&op.task, status);
  if (op.dst->num_tensors != op.src->num_tensors)
    return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID,
                                       "destination cache %llu has %d tensors but source cache %llu"
                                       " has %d",
                                       (unsigned long long)dst_cache_id, op.dst->num_tensors,
                                       (unsigned long long)src_cache_id, op.src->num_tensors));
  status = check_range("destination", dst_offset, nbytes, op.dst);
  if (status == LLMDD_SUCCESS) status = check_range("source", src_offset, nbytes, op.src);
  if (status != LLMDD_SUCCESS) return task_abandon(&op.task, status);
  if (op.dst == op.src && nbytes > 0 && dst_offset < src_offset + nbytes &&
      src_offset < dst_offset + nbytes)
    return task_abandon(&op.task, fail(LLMDD_PARAM_INVALID,
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
