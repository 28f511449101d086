/* libFuzzer target over the whole C ABI (include/llmdd.h), host backend compiled in.
 *
 * The input is a program: each step reads an opcode byte and then the arguments
 * it needs (a read past the end yields zeros, and the program ends when the
 * input does). The steps create and finalize engines with clean, malformed and
 * long option texts; allocate caches with random sizes, counts, keys and output
 * capacities; write through the returned addresses; read and copy with random
 * ids, indexes, offsets and lengths, inline or through jobs (with deadlines,
 * cancels and done callbacks); release caches and keys; and call every other
 * function with real, stale, foreign-kind and random handles.
 *
 * The ABI is exercised only as a correct caller may: a pointer is NULL only
 * where the header says the call rejects it, and every buffer is allocated with
 * exactly the length that is passed with it (so a length the library must
 * reject never comes with memory it could legitimately use).
 *
 * A model of every live engine, cache, key and job runs alongside, and the
 * fuzzer aborts (a crash for libFuzzer) when the library disagrees with it:
 *   - every status is one of the LLMDD_* values of the header, and failures
 *     leave a message;
 *   - the statuses the model can predict exactly (stale handles, ids, indexes,
 *     ranges, lengths, deadlines of 0, cancelled jobs) are the ones returned;
 *   - bytes written through returned addresses read back the same, through
 *     llmdd_cache_read, after llmdd_cache_copy and straight from memory; live
 *     caches never overlap; tensors are 64-byte aligned and strided;
 *   - pool usage is the sum of the live caches' blocks, and 0 once everything
 *     is released;
 *   - a background operation calls its done callback exactly once, and a
 *     rejected one never.
 * Every input ends by releasing everything, so no state leaks into the next one
 * (libFuzzer's leak check would see it).
 *
 * No traffic leaves the machine: engines listen only on 127.0.0.1 port 0, and
 * links go only to 127.0.0.1:1 (closed) or to addresses that do not parse, with
 * deadlines of at most 20 ms. */
#define _DEFAULT_SOURCE 1
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llmdd.h"
#include "net.h" /* host_net_parse_address: to keep fuzzed link addresses off the network */

/* ---- limits of one input ---- */
#define MAX_STEPS 96
#define MAX_ENGINES 3
#define MAX_CACHES 24 /* per engine, in the model */
#define MAX_KEYS 96   /* per engine, in the model */
#define MAX_JOBS 6
#define MAX_STALE 16
#define POOL_SMALL_MAX ((uint64_t)8 << 20)
#define SHADOW_BUDGET ((uint64_t)48 << 20) /* model bytes for written tensors */
#define MAX_MOVE ((uint64_t)16 << 20)      /* bytes one read or copy may move */
#define MAX_ADDRS 65536                    /* out_addrs capacity we allocate */
#define MESSAGE_CAP 512                    /* error.h's ERROR_MESSAGE_CAP */
#define DONE_WAIT_MS 20000

/* ---- failing loudly ---- */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  uint8_t msg[MESSAGE_CAP];
  llmdd_last_error(msg, sizeof msg);
  fprintf(stderr, "fuzz_abi: invariant violated: %s\n  (last error on this thread: %s)\n", buf,
          (const char *)msg);
  abort();
}

#define ASSERT(cond, ...) \
  do {                    \
    if (!(cond)) die(__VA_ARGS__); \
  } while (0)

static bool known_status(int32_t s) {
  switch (s) {
  case LLMDD_SUCCESS:
  case LLMDD_FAILED:
  case LLMDD_WAIT_PROCESS_TIMEOUT:
  case LLMDD_KV_CACHE_NOT_EXIST:
  case LLMDD_REPEAT_REQUEST:
  case LLMDD_PARAM_INVALID:
  case LLMDD_ENGINE_FINALIZED:
  case LLMDD_NOT_YET_LINK:
  case LLMDD_ALREADY_LINK:
  case LLMDD_LINK_FAILED:
  case LLMDD_UNLINK_FAILED:
  case LLMDD_CLUSTER_NUM_EXCEED_LIMIT:
  case LLMDD_DEVICE_OUT_OF_MEMORY:
  case LLMDD_FEATURE_NOT_ENABLED:
  case LLMDD_OUT_OF_MEMORY:
    return true;
  default:
    return false;
  }
}

/* FUZZ_ABI_TRACE=1 in the environment prints every call and its status (to
 * read what an input does: `FUZZ_ABI_TRACE=1 build/fuzz/fuzz_abi crash-...`). */
static int trace = -1;

/* Every status: a header value; a failure leaves a message on this thread. */
static int32_t checked(const char *call, int32_t s) {
  if (trace) {
    uint8_t msg[MESSAGE_CAP];
    llmdd_last_error(msg, sizeof msg);
    fprintf(stderr, "  %s -> 0x%08x%s%s\n", call, (unsigned)s, s ? ": " : "",
            s ? (const char *)msg : "");
  }
  ASSERT(known_status(s), "%s returned 0x%08x, which is no LLMDD_* status", call, (unsigned)s);
  if (s != LLMDD_SUCCESS) {
    int32_t len = llmdd_last_error(NULL, 0);
    ASSERT(len > 0 && len < MESSAGE_CAP, "%s failed with 0x%08x but the last error has length %d",
           call, (unsigned)s, len);
  }
  return s;
}

#define EXPECT_IS(call, got, want) \
  ASSERT((got) == (want), "%s returned 0x%08x, expected 0x%08x", call, (unsigned)(got), \
         (unsigned)(want))

/* ---- reading the program ---- */

struct input {
  const uint8_t *p;
  size_t n;
};

static uint8_t u8(struct input *in) {
  if (in->n == 0) return 0;
  in->n--;
  return *in->p++;
}
static uint16_t u16(struct input *in) { return (uint16_t)(u8(in) | u8(in) << 8); }
static uint32_t u32(struct input *in) { return (uint32_t)u16(in) | (uint32_t)u16(in) << 16; }
static uint64_t u64(struct input *in) { return (uint64_t)u32(in) | (uint64_t)u32(in) << 32; }

static const uint64_t special_u64[] = {
    0, 1, 2, 63, 64, 65, 4095, 4096, (uint64_t)1 << 20, ((uint64_t)1 << 20) + 1,
    (uint64_t)8 << 20, UINT32_MAX, (uint64_t)1 << 32, (uint64_t)1 << 62, ((uint64_t)1 << 62) + 1,
    (uint64_t)1 << 63, INT64_MAX, UINT64_MAX - 63, UINT64_MAX - 1, UINT64_MAX};
#define NSPECIAL (sizeof special_u64 / sizeof special_u64[0])

/* A byte count: mostly small, sometimes up to 1 MiB, sometimes extreme. */
static uint64_t pick_size(struct input *in) {
  switch (u8(in) % 10) {
  case 0: case 1: case 2: return u8(in);
  case 3: return 1 + u16(in) % 4096;
  case 4: return 64 * (uint64_t)(1 + u8(in) % 64);
  case 5: return 1 + u32(in) % ((uint32_t)1 << 20);
  case 6: return special_u64[u8(in) % NSPECIAL];
  case 7: return u64(in);
  default: return 1 + u8(in) % 128;
  }
}

/* An int32 index or count around [0, n): mostly valid, sometimes just outside. */
static int32_t pick_index(struct input *in, int32_t n) {
  uint8_t sel = u8(in);
  switch (sel % 12) {
  case 0: return -1;
  case 1: return n;
  case 2: return n + 1;
  case 3: return INT32_MIN;
  case 4: return INT32_MAX;
  case 5: return (int32_t)u32(in);
  default: return n > 0 ? (int32_t)(u8(in) % (uint32_t)n) : 0;
  }
}

/* ---- the model ---- */

struct shadow { /* what is known of one tensor's bytes */
  uint8_t *data;
  uint8_t *known;
};

struct mcache {
  bool used;
  uint64_t id;
  bool id_held;
  int32_t keys_held;
  int32_t num_tensors;
  uint64_t tensor_bytes, batch_size, stride, block;
  uint64_t *addrs;        /* [device][tensor] */
  struct shadow *shadows; /* [device][tensor], data NULL until written */
};

struct mkey {
  bool live;
  uint64_t k[3];
  int cache; /* index in caches[] */
};

struct mengine {
  bool live;
  uint64_t handle;
  int32_t role;
  uint64_t cluster_id;
  int32_t num_devices;
  uint64_t pool_bytes;
  bool listening;
  uint64_t next_id; /* the id the library hands out next */
  struct mcache caches[MAX_CACHES];
  struct mkey keys[MAX_KEYS];
  uint64_t released_ids[8]; /* a few ids given back, to try again */
  int num_released;
};

struct mjob {
  bool live;
  uint64_t handle;
  bool has_done;
  int32_t timeout_ms;
  bool cancelled;
};

static struct {
  struct mengine engines[MAX_ENGINES];
  struct mjob jobs[MAX_JOBS];
  uint64_t stale_engines[MAX_STALE];
  int num_stale_engines;
  uint64_t stale_jobs[MAX_STALE];
  int num_stale_jobs;
  uint64_t shadow_bytes;
  uint64_t cluster_base;
} M;

static void remember(uint64_t *list, int *n, uint64_t handle) {
  if (*n < MAX_STALE) list[(*n)++] = handle;
  else list[handle % MAX_STALE] = handle;
}

static bool in_list(const uint64_t *list, int n, uint64_t handle) {
  for (int i = 0; i < n; i++)
    if (list[i] == handle) return true;
  return false;
}

static int32_t tensors_total(const struct mengine *e, const struct mcache *c) {
  return e->num_devices * c->num_tensors;
}

static void free_cache(struct mcache *c, int32_t total) {
  if (c->shadows != NULL) {
    for (int32_t i = 0; i < total; i++) {
      if (c->shadows[i].data != NULL) M.shadow_bytes -= 2 * c->tensor_bytes;
      free(c->shadows[i].data);
      free(c->shadows[i].known);
    }
  }
  free(c->shadows);
  free(c->addrs);
  memset(c, 0, sizeof *c);
}

/* Frees the model of a cache whose id and keys are all released. */
static void maybe_free_cache(struct mengine *e, struct mcache *c) {
  if (!c->used || c->id_held || c->keys_held > 0) return;
  if (e->num_released < 8) e->released_ids[e->num_released++] = c->id;
  free_cache(c, tensors_total(e, c));
}

static void forget_engine(struct mengine *e) {
  for (int i = 0; i < MAX_CACHES; i++)
    if (e->caches[i].used) free_cache(&e->caches[i], tensors_total(e, &e->caches[i]));
  remember(M.stale_engines, &M.num_stale_engines, e->handle);
  memset(e, 0, sizeof *e);
}

static uint64_t model_usage(const struct mengine *e) {
  uint64_t used = 0;
  for (int i = 0; i < MAX_CACHES; i++)
    if (e->caches[i].used) used += e->caches[i].block;
  return used;
}

static struct mengine *engine_by_handle(uint64_t h) {
  for (int i = 0; i < MAX_ENGINES; i++)
    if (M.engines[i].live && M.engines[i].handle == h) return &M.engines[i];
  return NULL;
}

static struct mjob *job_by_handle(uint64_t h) {
  for (int i = 0; i < MAX_JOBS; i++)
    if (M.jobs[i].live && M.jobs[i].handle == h) return &M.jobs[i];
  return NULL;
}

static struct mcache *cache_by_id(struct mengine *e, uint64_t id) {
  for (int i = 0; i < MAX_CACHES; i++)
    if (e->caches[i].used && e->caches[i].id_held && e->caches[i].id == id) return &e->caches[i];
  return NULL;
}

static int live_engine_count(void) {
  int n = 0;
  for (int i = 0; i < MAX_ENGINES; i++) n += M.engines[i].live;
  return n;
}

/* A random live engine, or NULL. */
static struct mengine *any_engine(struct input *in) {
  int n = live_engine_count();
  if (n == 0) return NULL;
  int k = u8(in) % n;
  for (int i = 0; i < MAX_ENGINES; i++)
    if (M.engines[i].live && k-- == 0) return &M.engines[i];
  return NULL;
}

static struct mjob *any_job(struct input *in) {
  int n = 0;
  for (int i = 0; i < MAX_JOBS; i++) n += M.jobs[i].live;
  if (n == 0) return NULL;
  int k = u8(in) % n;
  for (int i = 0; i < MAX_JOBS; i++)
    if (M.jobs[i].live && k-- == 0) return &M.jobs[i];
  return NULL;
}

/* An engine handle: live, stale, a job's, zero, random, or a live one with a
 * flipped bit. The model resolves whatever comes out, so a flip that lands on
 * another live engine is simply that engine. */
static uint64_t pick_engine_handle(struct input *in) {
  uint8_t sel = u8(in) % 16;
  if (sel < 10) {
    struct mengine *e = any_engine(in);
    if (e != NULL) return e->handle;
    sel = 14;
  }
  switch (sel) {
  case 10: case 11:
    if (M.num_stale_engines > 0) return M.stale_engines[u8(in) % M.num_stale_engines];
    return 0;
  case 12: {
    struct mjob *j = any_job(in);
    return j ? j->handle : u64(in);
  }
  case 13: return 0;
  case 15: {
    struct mengine *e = any_engine(in);
    return e ? e->handle ^ ((uint64_t)1 << (u8(in) % 64)) : u64(in);
  }
  default: return u64(in);
  }
}

/* A job handle for an operation: mostly 0, else live, stale, an engine's,
 * random, or a live one with a flipped bit. */
static uint64_t pick_job_handle(struct input *in) {
  uint8_t sel = u8(in) % 16;
  switch (sel) {
  case 6: case 7: case 8: case 9: case 10: {
    struct mjob *j = any_job(in);
    return j ? j->handle : 0;
  }
  case 11:
    return M.num_stale_jobs > 0 ? M.stale_jobs[u8(in) % M.num_stale_jobs] : 0;
  case 12: {
    struct mengine *e = any_engine(in);
    return e ? e->handle : 0;
  }
  case 13: return u64(in);
  case 14: {
    struct mjob *j = any_job(in);
    return j ? j->handle ^ ((uint64_t)1 << (u8(in) % 64)) : 0;
  }
  default: return 0;
  }
}

/* A cache id on engine e (which may be NULL): a live one, a released one, or random. */
static uint64_t pick_cache_id(struct input *in, struct mengine *e) {
  uint8_t sel = u8(in) % 8;
  if (e != NULL && sel < 5) {
    int k = u8(in) % MAX_CACHES;
    for (int i = 0; i < MAX_CACHES; i++) {
      struct mcache *c = &e->caches[(k + i) % MAX_CACHES];
      if (c->used && c->id_held) return c->id;
    }
  }
  if (e != NULL && sel == 5 && e->num_released > 0) return e->released_ids[u8(in) % e->num_released];
  if (sel == 6) return u8(in) % 8;
  return u64(in);
}

/* ---- done callbacks ---- */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
#define MAX_DONE 16
static struct {
  uint64_t job;
  int32_t status;
  int32_t message_length;
} done_records[MAX_DONE];
static int num_done;

static void on_done(uint64_t job, int32_t status) {
  /* The job's message is readable from inside the callback (if not released). */
  uint8_t msg[MESSAGE_CAP];
  int32_t len = llmdd_job_message(job, msg, sizeof msg);
  pthread_mutex_lock(&done_lock);
  if (num_done < MAX_DONE) {
    done_records[num_done].job = job;
    done_records[num_done].status = status;
    done_records[num_done].message_length = len;
  }
  num_done++;
  pthread_cond_broadcast(&done_cond);
  pthread_mutex_unlock(&done_lock);
}

/* Waits for the one callback of job; returns its status. */
static int32_t wait_done(uint64_t job, bool released) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += DONE_WAIT_MS / 1000;
  pthread_mutex_lock(&done_lock);
  while (num_done == 0) {
    if (pthread_cond_timedwait(&done_cond, &done_lock, &until) != 0 && num_done == 0) {
      pthread_mutex_unlock(&done_lock);
      die("the done callback of accepted job 0x%llx was not called within %d ms",
          (unsigned long long)job, DONE_WAIT_MS);
    }
  }
  ASSERT(num_done == 1, "%d done callbacks for one accepted operation", num_done);
  ASSERT(done_records[0].job == job, "done callback for job 0x%llx, expected 0x%llx",
         (unsigned long long)done_records[0].job, (unsigned long long)job);
  int32_t status = done_records[0].status;
  if (trace) fprintf(stderr, "  done(0x%llx) -> 0x%08x\n", (unsigned long long)job, (unsigned)status);
  int32_t len = done_records[0].message_length;
  num_done = 0;
  pthread_mutex_unlock(&done_lock);
  ASSERT(known_status(status), "done callback with status 0x%08x", (unsigned)status);
  if (!released) {
    /* Not released before the callback ran: the message was readable inside. */
    ASSERT(len >= 0 && len < MESSAGE_CAP, "job_message inside the callback returned %d", len);
    ASSERT(status == LLMDD_SUCCESS || len > 0,
           "background failure 0x%08x left no job message", (unsigned)status);
  }
  return status;
}

static void expect_no_callbacks(const char *when) {
  pthread_mutex_lock(&done_lock);
  int n = num_done;
  pthread_mutex_unlock(&done_lock);
  ASSERT(n == 0, "%d unexpected done callback(s) %s", n, when);
}

/* ---- expectations shared by the long operations ---- */

/* What a call makes of its job and engine handles, which it checks first (the
 * job, then the engine): ok with the models of both, or the status it must
 * return. A handle the model does not know may be a stale one of an earlier
 * input, so for it either PARAM_INVALID or ENGINE_FINALIZED is right. */
struct preamble {
  bool ok;
  int32_t want; /* when !ok: exact status, or 1 for "PARAM_INVALID or ENGINE_FINALIZED" */
  struct mjob *job;
  struct mengine *engine;
};

static struct preamble check_preamble(uint64_t engine, uint64_t job) {
  struct preamble p = {0};
  if (job != 0) {
    p.job = job_by_handle(job);
    if (p.job == NULL) {
      p.want = LLMDD_PARAM_INVALID;
      return p;
    }
  }
  p.engine = engine_by_handle(engine);
  if (p.engine == NULL) {
    p.want = in_list(M.stale_engines, M.num_stale_engines, engine) ? LLMDD_ENGINE_FINALIZED : 1;
    return p;
  }
  p.ok = true;
  return p;
}

static void expect_preamble(const char *call, const struct preamble *p, int32_t got) {
  if (p->want == 1)
    ASSERT(got == LLMDD_PARAM_INVALID || got == LLMDD_ENGINE_FINALIZED,
           "%s with an unknown engine handle returned 0x%08x", call, (unsigned)got);
  else
    EXPECT_IS(call, got, p->want);
}

/* How a validated operation ends, given its job. *either: SUCCESS is also fine. */
static int32_t run_outcome(const struct mjob *j, bool *either) {
  *either = false;
  if (j == NULL) return LLMDD_SUCCESS;
  if (j->cancelled) return LLMDD_FAILED;
  if (j->timeout_ms == 0) return LLMDD_WAIT_PROCESS_TIMEOUT;
  if (j->timeout_ms > 0 && j->timeout_ms < 1000) {
    *either = true;
    return LLMDD_WAIT_PROCESS_TIMEOUT;
  }
  return LLMDD_SUCCESS;
}

/* ---- shadows: what the model knows of the caches' bytes ---- */

static struct shadow *shadow_of(struct mengine *e, struct mcache *c, int32_t d, int32_t t,
                                bool create) {
  struct shadow *s = &c->shadows[(int64_t)d * c->num_tensors + t];
  (void)e;
  if (s->data == NULL && create) {
    if (M.shadow_bytes + 2 * c->tensor_bytes > SHADOW_BUDGET) return NULL;
    s->data = malloc(c->tensor_bytes);
    s->known = calloc(c->tensor_bytes, 1);
    if (s->data == NULL || s->known == NULL) die("out of memory for the model");
    M.shadow_bytes += 2 * c->tensor_bytes;
  }
  return s->data ? s : NULL;
}

static uint8_t *tensor_memory(const struct mcache *c, int32_t d, int32_t t) {
  return (uint8_t *)(uintptr_t)c->addrs[(int64_t)d * c->num_tensors + t];
}

static void compare_shadow(const char *what, struct mengine *e, struct mcache *c, int32_t d,
                           int32_t t, const uint8_t *bytes) {
  struct shadow *s = shadow_of(e, c, d, t, false);
  if (s == NULL) return;
  for (uint64_t i = 0; i < c->tensor_bytes; i++)
    ASSERT(!s->known[i] || s->data[i] == bytes[i],
           "%s: cache %llu device %d tensor %d byte %llu is 0x%02x, 0x%02x was written",
           what, (unsigned long long)c->id, d, t, (unsigned long long)i, bytes[i], s->data[i]);
}

/* ---- steps ---- */

static void step_engine_init(struct input *in) {
  int slot = -1;
  for (int i = 0; i < MAX_ENGINES; i++)
    if (!M.engines[i].live && slot < 0) slot = i;

  uint8_t rsel = u8(in);
  int32_t role = rsel % 8 < 6 ? 1 + rsel % 3 : (int32_t[]){0, 4, -1, INT32_MAX}[rsel % 4];
  bool role_ok = role >= 1 && role <= 3;
  /* PROMPT and MIX own their cluster id machine-wide: only ids of this process. */
  uint64_t cluster_id = M.cluster_base + u8(in) % 4;
  if (role == LLMDD_ROLE_DECODER && u8(in) % 4 == 0) cluster_id = u64(in);

  char *text = malloc(70000);
  if (text == NULL) die("out of memory");
  size_t len = 0;
  bool clean = false;       /* the model knows what init must do */
  bool pool_mine = true;    /* the last line sets the pool size */
  int32_t devices = 1;
  uint64_t pool = 0;
  bool listen = false, listen_ok = false;
  const uint8_t *options = (const uint8_t *)text;
  int32_t options_len = -1; /* set below */
  bool null_with_length = false, negative_length = false;

  static const uint64_t pools[] = {64, 4096, 65536, 1 << 20, 8 << 20, 63, 1, 100, 1000000, 65};
  pool = pools[u8(in) % (sizeof pools / sizeof pools[0])];

  uint8_t mode = u8(in) % 10;
  switch (mode) {
  case 0: /* clean */
  case 1:
  case 2: {
    devices = 1 + u8(in) % 4;
    len += (size_t)sprintf(text + len, "ge.exec.deviceId=");
    uint8_t first = u8(in) % 8;
    for (int32_t d = 0; d < devices; d++)
      len += (size_t)sprintf(text + len, "%s%d", d ? ";" : "", first + d);
    text[len++] = '\n';
    if (u8(in) % 2) len += (size_t)sprintf(text + len, "some.other.key = value\n");
    clean = true;
    break;
  }
  case 3: { /* garbage bytes from the input */
    size_t n = u8(in) % 200;
    for (size_t i = 0; i < n && in->n > 0; i++) text[len++] = (char)u8(in);
    break;
  }
  case 4: { /* device lists: malformed, duplicated, too long, the longest valid */
    static const char *const lists[] = {"", ";", "0;", ";0", "0;0", "-1", "a", "1;;2", " 3 ; 4 ",
                                        "2147483648", "2147483647", "0x1", "1 2", "+1",
                                        "99999999999999999999", "0;1;2;3;4;5;6;1"};
    uint8_t k = u8(in) % 18;
    len += (size_t)sprintf(text + len, "ge.exec.deviceId=");
    if (k < 16) {
      len += (size_t)sprintf(text + len, "%s", lists[k]);
    } else {
      int32_t n = k == 16 ? 64 : 65;
      for (int32_t d = 0; d < n; d++) len += (size_t)sprintf(text + len, "%s%d", d ? ";" : "", d);
      if (k == 16) {
        devices = 64;
        clean = true;
      }
    }
    text[len++] = '\n';
    break;
  }
  case 5: { /* pool sizes the parser or the machine must refuse (no pool line of ours) */
    static const char *const sizes[] = {"0", "-5", "abc", "", " ", "1e6", "4611686018427387905",
                                        "18446744073709551616", "4611686018427387904",
                                        "1099511627776"};
    len += (size_t)sprintf(text + len, "ge.flowGraphMemMaxSize=%s\n", sizes[u8(in) % 10]);
    pool_mine = false;
    break;
  }
  case 6: { /* long text: many lines, long keys and values, a line without '=' */
    int32_t lines = 1 + u16(in) % 2000;
    for (int32_t i = 0; i < lines && len < 60000; i++)
      len += (size_t)sprintf(text + len, "k%d=%0*d\n", i, 1 + i % 24, i);
    if (u8(in) % 2) {
      memset(text + len, 'x', 3000);
      len += 3000;
      text[len++] = '\n';
    }
    break;
  }
  case 7: { /* listen addresses: only 127.0.0.1 port 0 may be valid */
    static const char *const addrs[] = {"127.0.0.1:0", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536",
                                        "localhost:0", "1.2.3:4", "", "127.0.0.1:0:0",
                                        "::1:0", "127.0.0.1:-1", "127.000.000.001:0x",
                                        /* not loopback, and no llmdd.linkSecret: refused */
                                        "0.0.0.0:0", "10.1.2.3:0"};
    uint8_t k = u8(in) % 13;
    len += (size_t)sprintf(text + len, "llm.listenIpInfo=%s\n", addrs[k]);
    listen = true;
    listen_ok = k == 0;
    /* A link secret: 16 to 256 bytes is valid (also on loopback); shorter or
     * longer is PARAM_INVALID. Never with a non-loopback address: the fuzzer
     * must not listen beyond 127.0.0.1. */
    uint8_t secret = k == 0 ? u8(in) % 4 : 0;
    if (secret != 0) {
      static const int sizes[] = {0, 16, 15, 257};
      len += (size_t)sprintf(text + len, "llmdd.linkSecret=%0*d\n", sizes[secret], 7);
      listen_ok = secret == 1;
    }
    clean = listen_ok;
    break;
  }
  case 8: /* no options at all: device 0 and the default pool */
    options = NULL;
    options_len = 0;
    pool_mine = false;
    clean = true;
    break;
  default: /* bad pointer/length pairs the ABI rejects */
    if (u8(in) % 2) null_with_length = true;
    else negative_length = true;
    break;
  }
  /* Never let fuzzed text choose a listen address (it could reach past
   * 127.0.0.1). Only mode 3 copies bytes from the input; compared by hand, as
   * memcmp here would feed libFuzzer's comparison tracing for nothing. */
  if (mode == 3)
    for (size_t i = 0; i + 8 <= len; i++)
      if (text[i] == 'l' && text[i + 1] == 'i' && text[i + 2] == 's' && text[i + 3] == 't' &&
          text[i + 4] == 'e' && text[i + 5] == 'n' && text[i + 6] == 'I' && text[i + 7] == 'p')
        text[i + 6] = 'X';
  if (options_len < 0) {
    if (pool_mine) len += (size_t)sprintf(text + len, "\nge.flowGraphMemMaxSize=%llu",
                                          (unsigned long long)pool);
    options_len = (int32_t)len;
  }
  if (null_with_length) options = NULL, options_len = 1 + (int32_t)(u8(in) % 100);
  if (negative_length) options_len = -1 - (int32_t)(u8(in) % 100);
  bool null_out = u8(in) % 16 == 0;

  /* No more than MAX_ENGINES at once: then only calls that must fail. */
  if (slot < 0 && role_ok && !null_out && !null_with_length && !negative_length) role = 0;
  role_ok = role >= 1 && role <= 3;

  uint64_t handle = 0;
  int32_t s = checked("engine_init", llmdd_engine_init(role, cluster_id, options, options_len,
                                                       null_out ? NULL : &handle));
  free(text);

  bool owned = false; /* the cluster id has a live PROMPT or MIX here */
  for (int i = 0; i < MAX_ENGINES; i++)
    if (M.engines[i].live && M.engines[i].role != LLMDD_ROLE_DECODER &&
        M.engines[i].cluster_id == cluster_id)
      owned = true;

  if (!role_ok || null_out || null_with_length || negative_length) {
    EXPECT_IS("engine_init(bad arguments)", s, LLMDD_PARAM_INVALID);
    return;
  }
  if (listen && role == LLMDD_ROLE_DECODER) {
    EXPECT_IS("engine_init(listen on a DECODER)", s, LLMDD_PARAM_INVALID);
    return;
  }
  if (listen && !listen_ok) {
    EXPECT_IS("engine_init(malformed listen address or link secret)", s, LLMDD_PARAM_INVALID);
    return;
  }
  if (clean && role != LLMDD_ROLE_DECODER && owned) {
    EXPECT_IS("engine_init(cluster id owned)", s, LLMDD_FAILED);
    return;
  }
  if (clean) EXPECT_IS("engine_init(clean options)", s, LLMDD_SUCCESS);
  if (s != LLMDD_SUCCESS) return;
  ASSERT(role == LLMDD_ROLE_DECODER || !owned, "engine_init took a cluster id owned by a live engine");
  ASSERT(engine_by_handle(handle) == NULL, "engine_init returned the live handle 0x%llx again",
         (unsigned long long)handle);
  ASSERT(!in_list(M.stale_engines, M.num_stale_engines, handle),
         "engine_init returned the stale handle 0x%llx again", (unsigned long long)handle);
  ASSERT(handle != 0 && handle < ((uint64_t)1 << 53), "engine handle 0x%llx is not JS-safe",
         (unsigned long long)handle);

  struct mengine *e = &M.engines[slot];
  memset(e, 0, sizeof *e);
  e->live = true;
  e->handle = handle;
  e->role = role;
  e->cluster_id = cluster_id;
  e->next_id = 1;
  uint64_t info[5] = {0};
  EXPECT_IS("engine_info(new engine)", checked("engine_info", llmdd_engine_info(handle, info)),
            LLMDD_SUCCESS);
  ASSERT(info[0] >= 1 && info[0] <= 64, "engine_info reports %llu devices",
         (unsigned long long)info[0]);
  if (clean) ASSERT(info[0] == (uint64_t)devices, "engine_info reports %llu devices, not %d",
                    (unsigned long long)info[0], devices);
  if (pool_mine) ASSERT(info[2] == pool, "engine_info reports a pool of %llu, not %llu",
                        (unsigned long long)info[2], (unsigned long long)pool);
  ASSERT(info[1] == LLMDD_INFO_HOST_ACCESSIBLE && info[3] == (uint64_t)role,
         "engine_info flags %llu role %llu", (unsigned long long)info[1], (unsigned long long)info[3]);
  ASSERT((info[4] != 0) == listen, "engine_info port %llu, listening %d",
         (unsigned long long)info[4], listen);
  e->num_devices = (int32_t)info[0];
  e->pool_bytes = info[2];
  e->listening = listen;
}

static void step_engine_finalize(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  int32_t s = checked("engine_finalize", llmdd_engine_finalize(h));
  if (e != NULL) {
    EXPECT_IS("engine_finalize(live)", s, LLMDD_SUCCESS);
    forget_engine(e);
  } else if (in_list(M.stale_engines, M.num_stale_engines, h)) {
    EXPECT_IS("engine_finalize(stale)", s, LLMDD_ENGINE_FINALIZED);
  } else {
    ASSERT(s == LLMDD_PARAM_INVALID || s == LLMDD_ENGINE_FINALIZED,
           "engine_finalize(0x%llx) of no engine returned 0x%08x", (unsigned long long)h,
           (unsigned)s);
  }
}

static void step_engine_info(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  uint64_t info[5] = {0};
  int32_t s = checked("engine_info", llmdd_engine_info(h, info));
  struct preamble p = check_preamble(h, 0);
  if (e == NULL) {
    expect_preamble("engine_info", &p, s);
    return;
  }
  EXPECT_IS("engine_info(live)", s, LLMDD_SUCCESS);
  ASSERT(info[0] == (uint64_t)e->num_devices && info[2] == e->pool_bytes &&
             info[3] == (uint64_t)e->role && (info[4] != 0) == e->listening,
         "engine_info changed: %llu devices, pool %llu, role %llu, port %llu",
         (unsigned long long)info[0], (unsigned long long)info[2], (unsigned long long)info[3],
         (unsigned long long)info[4]);
}

static void expect_usage(struct mengine *e, int32_t d, const uint64_t out[2], const char *when) {
  ASSERT(out[0] == model_usage(e) && out[1] == e->pool_bytes,
         "pool_usage %s: device %d uses %llu of %llu, the model says %llu of %llu", when, d,
         (unsigned long long)out[0], (unsigned long long)out[1],
         (unsigned long long)model_usage(e), (unsigned long long)e->pool_bytes);
}

static void step_pool_usage(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  int32_t d = pick_index(in, e ? e->num_devices : 1);
  bool null_out = u8(in) % 8 == 0;
  uint64_t out[2] = {0, 0};
  int32_t s = checked("pool_usage", llmdd_pool_usage(h, d, null_out ? NULL : out));
  if (e == NULL) {
    struct preamble p = check_preamble(h, 0);
    expect_preamble("pool_usage", &p, s);
  } else if (d < 0 || d >= e->num_devices || null_out) {
    EXPECT_IS("pool_usage(bad device or NULL)", s, LLMDD_PARAM_INVALID);
  } else {
    EXPECT_IS("pool_usage(live)", s, LLMDD_SUCCESS);
    expect_usage(e, d, out, "");
  }
}

static void step_allocate(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);

  int32_t num_tensors;
  uint8_t nsel = u8(in) % 10;
  if (nsel < 7) num_tensors = 1 + u8(in) % 8;
  else num_tensors = (int32_t[]){0, -1, INT32_MIN, INT32_MAX, 1000, 65536, 40}[u8(in) % 7];
  uint64_t tensor_bytes = pick_size(in);
  uint64_t batch_size;
  switch (u8(in) % 8) {
  case 0: batch_size = tensor_bytes; break;
  case 1: batch_size = tensor_bytes + 1; break;
  case 2: batch_size = 0; break;
  case 3: batch_size = u64(in); break;
  case 4: batch_size = 1 + u8(in) % 16; break;
  case 5: batch_size = 2; break;
  default: batch_size = 1; break;
  }
  uint64_t layout_tag = u64(in);
  int32_t placement = u8(in) % 8 == 0 ? (int32_t)u32(in) : (int32_t)(u8(in) % 2);

  int32_t num_keys;
  uint8_t ksel = u8(in) % 8;
  if (ksel < 4) num_keys = 0;
  else if (ksel < 7) num_keys = 1 + u8(in) % 4;
  else num_keys = (int32_t[]){-1, INT32_MIN, 17, 200}[u8(in) % 4];
  bool keys_null = num_keys > 0 && u8(in) % 8 == 0;
  uint64_t *keys = NULL;
  if (num_keys > 0 && !keys_null) {
    keys = malloc(sizeof *keys * 3 * (size_t)num_keys);
    if (keys == NULL) die("out of memory");
    for (int32_t i = 0; i < num_keys; i++) {
      keys[3 * i] = u8(in) % 3;
      keys[3 * i + 1] = u8(in) % 5;
      keys[3 * i + 2] = u8(in) % 2;
    }
  } else if (num_keys < 0 && u8(in) % 2) {
    keys = malloc(1); /* a pointer the library must not read */
    if (keys == NULL) die("out of memory");
  }

  int64_t needed = e ? (int64_t)e->num_devices * num_tensors : num_tensors;
  int32_t addrs_cap;
  switch (u8(in) % 8) {
  case 0: addrs_cap = (int32_t)(needed - 1); break;
  case 1: addrs_cap = 0; break;
  case 2: addrs_cap = -1; break;
  case 3: addrs_cap = (int32_t)(needed + u8(in) % 4); break;
  case 4: addrs_cap = u16(in); break;
  default: addrs_cap = (int32_t)needed; break;
  }
  if (addrs_cap > MAX_ADDRS || needed > MAX_ADDRS) addrs_cap = (int32_t)(u16(in) % MAX_ADDRS);
  bool addrs_null = u8(in) % 16 == 0;
  bool id_null = u8(in) % 16 == 0;
  uint64_t *addrs = NULL;
  if (!addrs_null) {
    /* Exactly addrs_cap elements (0 bytes for a capacity <= 0). */
    addrs = malloc(sizeof *addrs * (size_t)(addrs_cap > 0 ? addrs_cap : 0));
    if (addrs == NULL && addrs_cap > 0) die("out of memory");
  }

  /* What the model expects. */
  uint64_t stride = (tensor_bytes + 63) / 64 * 64;
  bool invalid = num_tensors < 1 || tensor_bytes == 0 || tensor_bytes > ((uint64_t)1 << 62) ||
                 stride > ((uint64_t)1 << 62) / (uint64_t)num_tensors || batch_size == 0 ||
                 tensor_bytes % batch_size != 0 || (placement != 0 && placement != 1) ||
                 num_keys < 0 || keys_null || (uint64_t)(num_keys > 0 ? num_keys : 0) > batch_size ||
                 id_null || addrs_null;
  /* Repeated or held keys are refused after memory is taken, as upstream's
   * CacheManager::Allocate (host/book.c): a cache that does not fit is
   * DEVICE_OUT_OF_MEMORY whatever its keys. */
  bool keys_taken = false;
  if (e != NULL && !invalid) {
    if (num_keys > 0 && e->role == LLMDD_ROLE_DECODER) invalid = true;
    if (addrs_cap < needed) invalid = true;
    for (int32_t i = 0; !invalid && !keys_taken && i < num_keys; i++) {
      for (int32_t j = 0; j < i; j++)
        if (memcmp(&keys[3 * i], &keys[3 * j], 3 * sizeof *keys) == 0) keys_taken = true;
      for (int k = 0; k < MAX_KEYS; k++)
        if (e->keys[k].live && memcmp(e->keys[k].k, &keys[3 * i], sizeof e->keys[k].k) == 0)
          keys_taken = true;
    }
  }
  uint64_t block = invalid ? 0 : stride * (uint64_t)num_tensors;
  uint64_t usable = e ? e->pool_bytes / 64 * 64 : 0;
  int free_slot = -1, free_keys = 0;
  if (e != NULL) {
    for (int i = 0; i < MAX_CACHES; i++)
      if (!e->caches[i].used && free_slot < 0) free_slot = i;
    for (int k = 0; k < MAX_KEYS; k++) free_keys += !e->keys[k].live;
  }
  /* Keep the work bounded: skip a cache that could be placed but is large, or
   * one the model has no room for. */
  if (e != NULL && !invalid && block <= usable &&
      (tensor_bytes > ((uint64_t)8 << 20) || block > ((uint64_t)64 << 20) / (uint64_t)e->num_devices ||
       free_slot < 0 || free_keys < num_keys)) {
    free(keys);
    free(addrs);
    return;
  }

  uint64_t id = 0;
  int32_t s = checked("cache_allocate",
                      llmdd_cache_allocate(h, num_tensors, tensor_bytes, batch_size, layout_tag,
                                           placement, keys, num_keys, id_null ? NULL : &id,
                                           addrs, addrs_cap));
  if (e == NULL) {
    struct preamble p = check_preamble(h, 0);
    expect_preamble("cache_allocate", &p, s);
  } else if (invalid) {
    EXPECT_IS("cache_allocate(invalid)", s, LLMDD_PARAM_INVALID);
  } else if (block > usable) {
    EXPECT_IS("cache_allocate(larger than the pool)", s, LLMDD_DEVICE_OUT_OF_MEMORY);
  } else if (keys_taken) {
    /* Memory first: refused for its keys where it fits, for memory where not. */
    if (model_usage(e) == 0) EXPECT_IS("cache_allocate(repeated keys)", s, LLMDD_PARAM_INVALID);
    ASSERT(s == LLMDD_PARAM_INVALID || s == LLMDD_DEVICE_OUT_OF_MEMORY,
           "cache_allocate(keys taken) returned 0x%08x", (unsigned)s);
  } else if (model_usage(e) == 0) {
    EXPECT_IS("cache_allocate(fits an empty pool)", s, LLMDD_SUCCESS);
  } else {
    ASSERT(s == LLMDD_SUCCESS || s == LLMDD_DEVICE_OUT_OF_MEMORY,
           "cache_allocate(valid) returned 0x%08x", (unsigned)s);
  }
  if (s == LLMDD_SUCCESS) {
    /* From 1, never reused within the engine. */
    ASSERT(id >= e->next_id, "cache_allocate returned id %llu, but %llu was handed out before",
           (unsigned long long)id, (unsigned long long)e->next_id - 1);
    e->next_id = id + 1;
    struct mcache *c = &e->caches[free_slot];
    c->used = true;
    c->id = id;
    c->id_held = true;
    c->keys_held = num_keys;
    c->num_tensors = num_tensors;
    c->tensor_bytes = tensor_bytes;
    c->batch_size = batch_size;
    c->stride = stride;
    c->block = block;
    c->addrs = malloc(sizeof *c->addrs * (size_t)needed);
    c->shadows = calloc((size_t)needed, sizeof *c->shadows);
    if (c->addrs == NULL || c->shadows == NULL) die("out of memory");
    memcpy(c->addrs, addrs, sizeof *c->addrs * (size_t)needed);
    for (int32_t d = 0; d < e->num_devices; d++) {
      uint64_t base = c->addrs[(int64_t)d * num_tensors];
      ASSERT(base % 64 == 0, "tensor 0 of device %d is at 0x%llx, not 64-byte aligned", d,
             (unsigned long long)base);
      for (int32_t t = 1; t < num_tensors; t++)
        ASSERT(c->addrs[(int64_t)d * num_tensors + t] == base + (uint64_t)t * stride,
               "tensor %d of device %d is not %llu bytes after the one before", t, d,
               (unsigned long long)stride);
      /* No overlap with any other live cache, on any device. */
      for (int i = 0; i < MAX_CACHES; i++) {
        struct mcache *o = &e->caches[i];
        if (!o->used || o == c) continue;
        for (int32_t od = 0; od < e->num_devices; od++) {
          uint64_t ob = o->addrs[(int64_t)od * o->num_tensors];
          ASSERT(base + block <= ob || ob + o->block <= base,
                 "cache %llu on device %d overlaps cache %llu on device %d",
                 (unsigned long long)id, d, (unsigned long long)o->id, od);
        }
      }
      for (int32_t od = 0; od < d; od++) {
        uint64_t ob = c->addrs[(int64_t)od * num_tensors];
        ASSERT(base + block <= ob || ob + block <= base,
               "cache %llu overlaps itself on devices %d and %d", (unsigned long long)id, od, d);
      }
    }
    for (int32_t i = 0; i < num_keys; i++) {
      for (int k = 0; k < MAX_KEYS; k++) {
        if (e->keys[k].live) continue;
        e->keys[k].live = true;
        memcpy(e->keys[k].k, &keys[3 * i], sizeof e->keys[k].k);
        e->keys[k].cache = free_slot;
        break;
      }
    }
  }
  free(keys);
  free(addrs);
}

static void step_deallocate(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  uint64_t id = pick_cache_id(in, e);
  int32_t s = checked("cache_deallocate", llmdd_cache_deallocate(h, id));
  if (e == NULL) {
    struct preamble p = check_preamble(h, 0);
    expect_preamble("cache_deallocate", &p, s);
    return;
  }
  struct mcache *c = cache_by_id(e, id);
  if (c == NULL) {
    EXPECT_IS("cache_deallocate(no such id)", s, LLMDD_KV_CACHE_NOT_EXIST);
    return;
  }
  EXPECT_IS("cache_deallocate(live id)", s, LLMDD_SUCCESS);
  c->id_held = false;
  maybe_free_cache(e, c);
}

static void step_key_remove(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  uint64_t k[3];
  struct mkey *held = NULL;
  if (e != NULL && u8(in) % 2) {
    int start = u8(in) % MAX_KEYS;
    for (int i = 0; i < MAX_KEYS && held == NULL; i++)
      if (e->keys[(start + i) % MAX_KEYS].live) held = &e->keys[(start + i) % MAX_KEYS];
  }
  if (held != NULL) {
    memcpy(k, held->k, sizeof k);
  } else {
    k[0] = u8(in) % 3;
    k[1] = u8(in) % 5;
    k[2] = u8(in) % 2;
    if (u8(in) % 8 == 0) k[1] = u64(in);
  }
  int32_t s = checked("cache_key_remove", llmdd_cache_key_remove(h, k[0], k[1], k[2]));
  if (e == NULL) {
    struct preamble p = check_preamble(h, 0);
    expect_preamble("cache_key_remove", &p, s);
    return;
  }
  held = NULL;
  for (int i = 0; i < MAX_KEYS; i++)
    if (e->keys[i].live && memcmp(e->keys[i].k, k, sizeof k) == 0) held = &e->keys[i];
  if (held == NULL) {
    EXPECT_IS("cache_key_remove(no such key)", s, LLMDD_KV_CACHE_NOT_EXIST);
    return;
  }
  EXPECT_IS("cache_key_remove(held key)", s, LLMDD_SUCCESS);
  held->live = false;
  struct mcache *c = &e->caches[held->cache];
  c->keys_held--;
  maybe_free_cache(e, c);
}

/* A live cache of engine e whose id is held, or NULL. */
static struct mcache *any_cache(struct input *in, struct mengine *e) {
  if (e == NULL) return NULL;
  int k = u8(in) % MAX_CACHES;
  for (int i = 0; i < MAX_CACHES; i++) {
    struct mcache *c = &e->caches[(k + i) % MAX_CACHES];
    if (c->used && c->id_held) return c;
  }
  return NULL;
}

static void step_write(struct input *in) {
  struct mengine *e = any_engine(in);
  struct mcache *c = any_cache(in, e);
  if (c == NULL) return;
  int32_t d = (int32_t)(u8(in) % (uint32_t)e->num_devices);
  int32_t t = (int32_t)(u16(in) % (uint32_t)c->num_tensors);
  uint64_t off, n;
  if (u8(in) % 4 == 0 && c->tensor_bytes <= ((uint64_t)1 << 20)) {
    off = 0;
    n = c->tensor_bytes; /* the whole tensor */
  } else {
    off = u32(in) % c->tensor_bytes;
    n = 1 + u16(in) % 4096;
    if (n > c->tensor_bytes - off) n = c->tensor_bytes - off;
  }
  struct shadow *s = shadow_of(e, c, d, t, true);
  if (s == NULL) return; /* over the model's budget */
  uint8_t seed = u8(in), *mem = tensor_memory(c, d, t);
  for (uint64_t i = 0; i < n; i++) {
    uint8_t b = (uint8_t)(seed + (off + i) * 131 + ((off + i) >> 9));
    mem[off + i] = b;
    s->data[off + i] = b;
    s->known[off + i] = 1;
  }
}

static void step_verify_memory(struct input *in) {
  struct mengine *e = any_engine(in);
  struct mcache *c = any_cache(in, e);
  if (c == NULL) return;
  int32_t d = (int32_t)(u8(in) % (uint32_t)e->num_devices);
  int32_t t = (int32_t)(u16(in) % (uint32_t)c->num_tensors);
  compare_shadow("memory at the returned address", e, c, d, t, tensor_memory(c, d, t));
}

/* An operation accepted in the background: maybe do something to it while it
 * may still run, then wait for the callback. Returns the final status and
 * reports through *interference what was done (for the model to apply after). */
enum interference { NOTHING, DEALLOC_SRC, DEALLOC_DST, CANCEL, RELEASE_JOB, FINALIZE };

static enum interference interfere(struct input *in, struct mengine *e, struct mjob *j,
                                   struct mcache *src, struct mcache *dst) {
  enum interference what = (enum interference)(u8(in) % 8);
  if (what > FINALIZE) what = NOTHING;
  switch (what) {
  case DEALLOC_SRC:
    EXPECT_IS("cache_deallocate(while a background operation runs)",
              checked("cache_deallocate", llmdd_cache_deallocate(e->handle, src->id)),
              LLMDD_SUCCESS);
    break;
  case DEALLOC_DST:
    if (dst == NULL || dst == src) return NOTHING;
    EXPECT_IS("cache_deallocate(while a background copy runs)",
              checked("cache_deallocate", llmdd_cache_deallocate(e->handle, dst->id)),
              LLMDD_SUCCESS);
    break;
  case CANCEL:
    EXPECT_IS("job_cancel(running)", checked("job_cancel", llmdd_job_cancel(j->handle)),
              LLMDD_SUCCESS);
    break;
  case RELEASE_JOB:
    EXPECT_IS("job_release(running)", checked("job_release", llmdd_job_release(j->handle)),
              LLMDD_SUCCESS);
    break;
  case FINALIZE:
    EXPECT_IS("engine_finalize(with a background operation)",
              checked("engine_finalize", llmdd_engine_finalize(e->handle)), LLMDD_SUCCESS);
    break;
  default:
    break;
  }
  return what;
}

/* The model's side of an interference, once the operation has ended. */
static void settle(enum interference what, struct mengine *e, struct mjob *j, struct mcache *src,
                   struct mcache *dst) {
  switch (what) {
  case DEALLOC_SRC:
    src->id_held = false;
    maybe_free_cache(e, src);
    break;
  case DEALLOC_DST:
    dst->id_held = false;
    maybe_free_cache(e, dst);
    break;
  case CANCEL:
    j->cancelled = true;
    break;
  case RELEASE_JOB:
    j->live = false;
    remember(M.stale_jobs, &M.num_stale_jobs, j->handle);
    break;
  case FINALIZE:
    forget_engine(e);
    break;
  default:
    break;
  }
}

/* Whether a final status fits what was expected, given the interference. */
static bool outcome_fits(int32_t got, int32_t want, bool either, enum interference what) {
  if (got == want || (either && got == LLMDD_SUCCESS)) return true;
  if (what == CANCEL && (got == LLMDD_FAILED || got == LLMDD_SUCCESS)) return true;
  if (what == FINALIZE && got == LLMDD_ENGINE_FINALIZED) return true;
  return false;
}

static void step_read(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  uint64_t jh = pick_job_handle(in);
  struct preamble p = check_preamble(h, jh);
  struct mengine *e = p.engine;
  uint64_t id = pick_cache_id(in, e);
  struct mcache *c = e ? cache_by_id(e, id) : NULL;
  int32_t t = pick_index(in, c ? c->num_tensors : 1);
  int32_t d = pick_index(in, e ? e->num_devices : 1);
  uint64_t out_len;
  switch (u8(in) % 8) {
  case 0: out_len = pick_size(in); break;
  case 1: out_len = c ? c->tensor_bytes - 1 : 0; break;
  case 2: out_len = c ? c->tensor_bytes + 1 : 1; break;
  default: out_len = c ? c->tensor_bytes : pick_size(in); break;
  }
  bool out_null = u8(in) % 16 == 0;
  /* A buffer of exactly out_len bytes; a length no cache can have (more than
   * MAX_MOVE, and the pools the model allows hold no such tensor) comes with a
   * small buffer, which the library must reject without touching. */
  uint8_t *out = NULL;
  if (!out_null) {
    if (out_len > MAX_MOVE) {
      if (c != NULL && out_len == c->tensor_bytes) return; /* never: the model bounds tensors */
      out = malloc(16);
    } else {
      out = malloc(out_len ? out_len : 1);
    }
    if (out == NULL) die("out of memory");
  }

  int32_t want = LLMDD_SUCCESS;
  bool either = false;
  if (p.ok) {
    if (out_null) want = LLMDD_PARAM_INVALID;
    else if (d < 0 || d >= e->num_devices) want = LLMDD_PARAM_INVALID;
    else if (c == NULL) want = LLMDD_KV_CACHE_NOT_EXIST;
    else if (t < 0 || t >= c->num_tensors) want = LLMDD_PARAM_INVALID;
    else if (out_len != c->tensor_bytes) want = LLMDD_PARAM_INVALID;
    else want = run_outcome(p.job, &either);
  }

  int32_t s = checked("cache_read", llmdd_cache_read(h, id, t, d, out, out_len, jh));
  if (!p.ok) {
    expect_preamble("cache_read", &p, s);
    free(out);
    return;
  }
  bool background = p.job != NULL && p.job->has_done && want != LLMDD_PARAM_INVALID &&
                    want != LLMDD_KV_CACHE_NOT_EXIST;
  enum interference what = NOTHING;
  struct mjob *j = p.job;
  if (background) {
    EXPECT_IS("cache_read(background, accepted)", s, LLMDD_SUCCESS);
    what = interfere(in, e, j, c, NULL);
    s = wait_done(jh, what == RELEASE_JOB);
  }
  ASSERT(outcome_fits(s, want, either, what), "cache_read returned 0x%08x, expected 0x%08x%s",
         (unsigned)s, (unsigned)want, either ? " or SUCCESS" : "");
  if (s == LLMDD_SUCCESS) compare_shadow("cache_read", e, c, d, t, out);
  if (background) settle(what, e, j, c, NULL);
  free(out);
}

static void copy_shadows(struct mengine *e, struct mcache *dst, struct mcache *src,
                         uint64_t dst_off, uint64_t src_off, uint64_t n, bool success) {
  for (int32_t d = 0; d < e->num_devices; d++) {
    for (int32_t t = 0; t < src->num_tensors; t++) {
      struct shadow *ss = shadow_of(e, src, d, t, false);
      struct shadow *ds = shadow_of(e, dst, d, t, success && ss != NULL);
      if (ds == NULL) continue;
      if (success && ss != NULL) {
        memmove(ds->data + dst_off, ss->data + src_off, n);
        memmove(ds->known + dst_off, ss->known + src_off, n);
      } else {
        memset(ds->known + dst_off, 0, n); /* unknown from here on */
      }
    }
  }
}

static void step_copy(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  uint64_t jh = pick_job_handle(in);
  struct preamble p = check_preamble(h, jh);
  struct mengine *e = p.engine;
  uint64_t dst_id = pick_cache_id(in, e), src_id = u8(in) % 4 == 0 ? dst_id : pick_cache_id(in, e);
  struct mcache *dst = e ? cache_by_id(e, dst_id) : NULL, *src = e ? cache_by_id(e, src_id) : NULL;
  uint64_t dst_bytes = dst ? dst->tensor_bytes : 64, src_bytes = src ? src->tensor_bytes : 64;
  uint64_t dst_off, src_off, n;
  switch (u8(in) % 6) {
  case 0: dst_off = pick_size(in), src_off = pick_size(in), n = pick_size(in); break;
  case 1: dst_off = 0, src_off = 0, n = dst_bytes < src_bytes ? dst_bytes : src_bytes; break;
  case 2: dst_off = 0, src_off = 0, n = dst_bytes + 1; break;
  default:
    dst_off = u32(in) % (dst_bytes + 1);
    src_off = u32(in) % (src_bytes + 1);
    n = u32(in) % ((dst_bytes < src_bytes ? dst_bytes : src_bytes) + 2);
    break;
  }

  int32_t want = LLMDD_SUCCESS;
  bool either = false;
  if (p.ok) {
    if (dst == NULL || src == NULL) want = LLMDD_KV_CACHE_NOT_EXIST;
    else if (dst->num_tensors != src->num_tensors) want = LLMDD_PARAM_INVALID;
    else if (dst_off > dst->tensor_bytes || n > dst->tensor_bytes - dst_off) want = LLMDD_PARAM_INVALID;
    else if (src_off > src->tensor_bytes || n > src->tensor_bytes - src_off) want = LLMDD_PARAM_INVALID;
    else if (dst == src && n > 0 && dst_off < src_off + n && src_off < dst_off + n)
      want = LLMDD_PARAM_INVALID;
    else {
      if (n * (uint64_t)src->num_tensors * (uint64_t)e->num_devices > MAX_MOVE) return;
      want = run_outcome(p.job, &either);
    }
  }

  int32_t s = checked("cache_copy", llmdd_cache_copy(h, dst_id, src_id, dst_off, src_off, n, jh));
  if (!p.ok) {
    expect_preamble("cache_copy", &p, s);
    return;
  }
  bool valid = want != LLMDD_PARAM_INVALID && want != LLMDD_KV_CACHE_NOT_EXIST;
  bool background = p.job != NULL && p.job->has_done && valid;
  enum interference what = NOTHING;
  struct mjob *j = p.job;
  if (background) {
    EXPECT_IS("cache_copy(background, accepted)", s, LLMDD_SUCCESS);
    what = interfere(in, e, j, src, dst);
    s = wait_done(jh, what == RELEASE_JOB);
  }
  ASSERT(outcome_fits(s, want, either, what), "cache_copy returned 0x%08x, expected 0x%08x%s",
         (unsigned)s, (unsigned)want, either ? " or SUCCESS" : "");
  if (valid) copy_shadows(e, dst, src, dst_off, src_off, n, s == LLMDD_SUCCESS);
  if (background) settle(what, e, j, src, dst);
}

static void step_job_create(struct input *in) {
  int slot = -1;
  for (int i = 0; i < MAX_JOBS; i++)
    if (!M.jobs[i].live && slot < 0) slot = i;
  int32_t timeout;
  switch (u8(in) % 8) {
  case 0: timeout = 0; break;
  case 1: timeout = 1 + u8(in) % 3; break;
  case 2: timeout = INT32_MIN; break;
  case 3: timeout = INT32_MAX; break;
  case 4: timeout = 60000; break;
  default: timeout = -1; break;
  }
  bool has_done = u8(in) % 3 == 0;
  bool null_out = slot < 0 || u8(in) % 16 == 0;
  uint64_t h = 0;
  int32_t s = checked("job_create", llmdd_job_create(timeout, has_done ? on_done : NULL,
                                                     null_out ? NULL : &h));
  if (null_out) {
    EXPECT_IS("job_create(NULL out)", s, LLMDD_PARAM_INVALID);
    return;
  }
  EXPECT_IS("job_create", s, LLMDD_SUCCESS);
  ASSERT(h != 0 && h < ((uint64_t)1 << 53) && job_by_handle(h) == NULL &&
             !in_list(M.stale_jobs, M.num_stale_jobs, h) && engine_by_handle(h) == NULL,
         "job_create returned handle 0x%llx, not new and JS-safe", (unsigned long long)h);
  M.jobs[slot] = (struct mjob){.live = true, .handle = h, .has_done = has_done,
                               .timeout_ms = timeout < 0 ? -1 : timeout};
}

static void step_job_cancel(struct input *in) {
  uint64_t h = pick_job_handle(in);
  if (h == 0 && u8(in) % 2) h = u64(in);
  struct mjob *j = job_by_handle(h);
  int32_t s = checked("job_cancel", llmdd_job_cancel(h));
  EXPECT_IS("job_cancel", s, j ? LLMDD_SUCCESS : LLMDD_PARAM_INVALID);
  if (j) j->cancelled = true;
}

/* Copies a message with a random capacity into a buffer of exactly that size
 * and checks it against the whole message. fetch(buf, cap) is the call. */
static int32_t pick_cap(struct input *in) {
  switch (u8(in) % 10) {
  case 0: return 0;
  case 1: return -1;
  case 2: return INT32_MIN;
  case 3: return 1;
  case 4: return 2;
  case 5: return MESSAGE_CAP;
  case 6: return MESSAGE_CAP + 1;
  case 7: return 4096;
  default: return 1 + u8(in) % 96;
  }
}

static void check_copy_out(const char *call, int32_t len, int32_t cap, const uint8_t *buf,
                           const uint8_t *whole, int32_t whole_len) {
  ASSERT(len == whole_len, "%s returned length %d, then %d", call, whole_len, len);
  if (cap <= 0 || buf == NULL) return;
  int32_t n = len < cap - 1 ? len : cap - 1;
  ASSERT(buf[n] == 0 && memcmp(buf, whole, (size_t)n) == 0,
         "%s with cap %d did not copy the first %d bytes and a NUL", call, cap, n);
}

static uint8_t *cap_buffer(int32_t cap) {
  /* Exactly cap bytes; for cap <= 0 an allocation of 0 bytes (or NULL for 0),
   * which AddressSanitizer reports on any write. */
  uint8_t *buf = malloc(cap > 0 ? (size_t)cap : 0);
  if (cap > 0 && buf == NULL) die("out of memory");
  return buf;
}

static void step_last_error(struct input *in) {
  uint8_t whole[MESSAGE_CAP];
  int32_t whole_len = llmdd_last_error(whole, sizeof whole);
  ASSERT(whole_len >= 0 && whole_len < MESSAGE_CAP, "last_error length %d", whole_len);
  ASSERT(strlen((char *)whole) == (size_t)whole_len, "last_error length %d but %zu bytes",
         whole_len, strlen((char *)whole));
  int32_t cap = pick_cap(in);
  bool null_buf = cap == 0 && u8(in) % 2;
  uint8_t *buf = null_buf ? NULL : cap_buffer(cap);
  int32_t len = llmdd_last_error(buf, cap);
  check_copy_out("last_error", len, cap, buf, whole, whole_len);
  free(buf);
}

static void step_job_message(struct input *in) {
  uint64_t h = pick_job_handle(in);
  struct mjob *j = job_by_handle(h);
  uint8_t whole[MESSAGE_CAP];
  int32_t whole_len = llmdd_job_message(h, whole, sizeof whole);
  if (j == NULL) {
    EXPECT_IS("job_message(unknown job)", whole_len, -1);
    return;
  }
  ASSERT(whole_len >= 0 && whole_len < MESSAGE_CAP, "job_message length %d", whole_len);
  int32_t cap = pick_cap(in);
  bool null_buf = cap == 0 && u8(in) % 2;
  uint8_t *buf = null_buf ? NULL : cap_buffer(cap);
  int32_t len = llmdd_job_message(h, buf, cap);
  check_copy_out("job_message", len, cap, buf, whole, whole_len);
  free(buf);
}

static void step_job_release(struct input *in) {
  uint64_t h = pick_job_handle(in);
  if (h == 0 && u8(in) % 2) h = u64(in);
  struct mjob *j = job_by_handle(h);
  int32_t s = checked("job_release", llmdd_job_release(h));
  EXPECT_IS("job_release", s, j ? LLMDD_SUCCESS : LLMDD_PARAM_INVALID);
  if (j) {
    j->live = false;
    remember(M.stale_jobs, &M.num_stale_jobs, h);
  }
}

/* llmdd_link, only to a closed port on 127.0.0.1 or to addresses that do not
 * parse, with a job of its own that has a deadline of at most 20 ms (unless the
 * picked job handle is not live: then the call must fail before connecting). */
static void step_link(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  uint64_t cluster = u8(in) % 4 == 0 ? u64(in) : u8(in) % 4;
  char addr[64];
  int32_t addr_len;
  switch (u8(in) % 6) {
  case 0: addr_len = sprintf(addr, "127.0.0.1:1"); break;
  case 1: addr_len = sprintf(addr, "127.0.0.1:0"); break;
  case 2: addr_len = 0; break;
  case 3: addr_len = sprintf(addr, "127.0.0.1"); break;
  default:
    addr_len = u8(in) % 40;
    for (int32_t i = 0; i < addr_len; i++) addr[i] = (char)u8(in);
    break;
  }
  struct sockaddr_in parsed;
  if (addr_len > 0 && host_net_parse_address(addr, addr_len, &parsed) == 0)
    addr_len = sprintf(addr, "127.0.0.1:1"); /* a parsable address: only the closed port */

  uint64_t jh = pick_job_handle(in);
  struct mjob *j = job_by_handle(jh);
  uint64_t own = 0;
  bool has_done = false;
  if (jh == 0 || j != NULL) { /* a fresh job with a short deadline */
    int32_t timeout = (int32_t[]){0, 5, 20, 20}[u8(in) % 4];
    has_done = u8(in) % 4 == 0;
    EXPECT_IS("job_create(for link)",
              checked("job_create", llmdd_job_create(timeout, has_done ? on_done : NULL, &own)),
              LLMDD_SUCCESS);
    if (u8(in) % 8 == 0) llmdd_job_cancel(own);
    jh = own;
  }
  struct mengine *e = engine_by_handle(h);
  int32_t s = checked("link", llmdd_link(h, cluster, addr_len ? (const uint8_t *)addr : NULL,
                                          addr_len, jh));
  if (own == 0) {
    EXPECT_IS("link(unknown job)", s, LLMDD_PARAM_INVALID);
    return;
  }
  bool bad = e == NULL || e->role == LLMDD_ROLE_PROMPT;
  if (!bad && s == LLMDD_SUCCESS && has_done) s = wait_done(own, false);
  else if (e != NULL && e->role == LLMDD_ROLE_PROMPT) EXPECT_IS("link(PROMPT)", s, LLMDD_PARAM_INVALID);
  ASSERT(s != LLMDD_SUCCESS && s != LLMDD_ALREADY_LINK,
         "link to nothing (%.*s) returned 0x%08x", addr_len, addr, (unsigned)s);
  EXPECT_IS("job_release(link)", checked("job_release", llmdd_job_release(own)), LLMDD_SUCCESS);
}

static void step_unlink(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  uint64_t jh = pick_job_handle(in);
  struct preamble p = check_preamble(h, jh);
  uint64_t cluster = u8(in) % 4 == 0 ? u64(in) : u8(in) % 4;
  int32_t force = (int32_t)(u8(in) % 3) - 1;
  int32_t s = checked("unlink", llmdd_unlink(h, cluster, force, jh));
  if (!p.ok) expect_preamble("unlink", &p, s);
  else if (p.engine->role == LLMDD_ROLE_PROMPT) EXPECT_IS("unlink(PROMPT)", s, LLMDD_PARAM_INVALID);
  else EXPECT_IS("unlink(not linked)", s, LLMDD_NOT_YET_LINK);
}


/* A pull's key kind as the host reads it: LLMDD_KEY_KEPT_ONLY (ABI 5) is a flag
 * stripped from any kind (llmdd_cache_pull) or from BY_ID and BLOCKS
 * (llmdd_cache_pull_blocks); any other value stays as it is. */
static int32_t kept_kind(int32_t kind, bool blocks) {
  if ((kind & LLMDD_KEY_KEPT_ONLY) == 0 || kind == LLMDD_KEY_KEPT_ONLY) return kind;
  int32_t base = kind & ~LLMDD_KEY_KEPT_ONLY;
  if (blocks && base != LLMDD_KEY_BY_ID && base != LLMDD_KEY_BLOCKS) return kind;
  return base;
}
static void step_pull(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  uint64_t jh = pick_job_handle(in);
  struct preamble p = check_preamble(h, jh);
  struct mengine *e = p.engine;
  uint64_t id = pick_cache_id(in, e);
  struct mcache *c = e ? cache_by_id(e, id) : NULL;
  int32_t kind = u8(in) % 8 == 0 ? (int32_t)u32(in) : (int32_t)(u8(in) % 2);
  uint64_t k0 = u8(in) % 4, k1 = u8(in) % 8, k2 = u8(in) % 4;
  int32_t row = pick_index(in, c && c->batch_size < INT32_MAX ? (int32_t)c->batch_size : 1);
  uint64_t size = u8(in) % 2 ? LLMDD_WHOLE_ROW : pick_size(in);
  int32_t s = checked("cache_pull", llmdd_cache_pull(h, id, kind, k0, k1, k2, row, size, jh));
  if (!p.ok) {
    expect_preamble("cache_pull", &p, s);
    return;
  }
  int32_t want;
  int32_t base = kept_kind(kind, false);
  if (e->role == LLMDD_ROLE_PROMPT) want = LLMDD_PARAM_INVALID;
  else if (base != 0 && base != 1) want = LLMDD_PARAM_INVALID;
  else if (c == NULL) want = LLMDD_KV_CACHE_NOT_EXIST;
  else if (row < 0 || (uint64_t)row >= c->batch_size) want = LLMDD_PARAM_INVALID;
  else if (size != LLMDD_WHOLE_ROW && size > c->tensor_bytes / c->batch_size)
    want = LLMDD_PARAM_INVALID;
  else want = LLMDD_NOT_YET_LINK;
  EXPECT_IS("cache_pull", s, want);
}

/* ABI 3's and 4's cache-manager calls, with arguments that must be refused: the model
 * does not track registered memory or block copies, so only calls whose status
 * is known without changing any state are made (a zero or missing address, no
 * pairs, a bad role, an unknown or allocated id). */
static void step_cache_manager(struct input *in) {
  uint64_t h = pick_engine_handle(in);
  struct mengine *e = engine_by_handle(h);
  struct preamble p = check_preamble(h, 0);
  uint64_t id = e != NULL ? pick_cache_id(in, e) : u64(in);
  struct mcache *c = e != NULL ? cache_by_id(e, id) : NULL;
  int32_t s;
  switch (u8(in) % 5) {
  case 4: {
    /* ABI 4's block pull with garbage: no engine of the model is linked, so
     * every call is refused (which check refuses it is the host's order). */
    uint64_t pairs[4] = {u64(in) % 64, u64(in) % 64, u64(in), u64(in)};
    int32_t n = (int32_t)(u8(in) % 4) - 1; /* -1..2: never past pairs */
    int32_t kind = u8(in) % 8 == 0 ? (int32_t)u32(in) : (int32_t)(u8(in) % 3);
    int32_t src_start = pick_index(in, 4), dst_start = pick_index(in, 4), count = pick_index(in, 4);
    s = checked("cache_pull_blocks",
                llmdd_cache_pull_blocks(h, id, kind, u8(in) % 4, u8(in) % 8, u8(in) % 4,
                                        (u8(in) & 1) ? pairs : NULL, n, src_start, dst_start, count, 0));
    if (e == NULL) {
      expect_preamble("cache_pull_blocks", &p, s);
    } else if (e->role == LLMDD_ROLE_PROMPT || kept_kind(kind, true) < 0 || kept_kind(kind, true) > 2) {
      EXPECT_IS("cache_pull_blocks(PROMPT or bad kind)", s, LLMDD_PARAM_INVALID);
    } else if (c == NULL) {
      EXPECT_IS("cache_pull_blocks(unknown cache)", s, LLMDD_KV_CACHE_NOT_EXIST);
    } else {
      EXPECT_IS("cache_pull_blocks(not linked)", s, s == LLMDD_NOT_YET_LINK ? s : LLMDD_PARAM_INVALID);
    }
    /* ABI 5's pushes with the same garbage, now and then a row into blocks (ABI
     * 6's LLMDD_PUSH_ROW_BLOCKS): refused alike (the remote-access and source
     * checks come before the link's). */
    int32_t row = pick_index(in, 4);
    int32_t push_kind = u8(in) % 4 == 0 ? (kind | LLMDD_PUSH_ROW_BLOCKS) : kind;
    s = checked("cache_push_blocks",
                llmdd_cache_push_blocks(h, id, row, push_kind, u8(in) % 4, u8(in) % 8, u8(in) % 4,
                                        (u8(in) & 1) ? pairs : NULL, n, src_start, dst_start, count, 0));
    if (e == NULL) expect_preamble("cache_push_blocks", &p, s);
    else if (s != LLMDD_NOT_YET_LINK && s != LLMDD_KV_CACHE_NOT_EXIST)
      EXPECT_IS("cache_push_blocks(refused)", s, LLMDD_PARAM_INVALID);
    uint64_t addrs[2] = {u64(in), u64(in)};
    s = checked("cache_push_addrs",
                llmdd_cache_push_addrs(h, id, row, u8(in) % 4, (u8(in) & 1) ? addrs : NULL, n, src_start,
                                       (u8(in) & 1) ? pairs : NULL, n, u8(in) % 2 ? 0 : u64(in), 0));
    if (e == NULL) expect_preamble("cache_push_addrs", &p, s);
    else if (e->role == LLMDD_ROLE_PROMPT)
      EXPECT_IS("cache_push_addrs(PROMPT)", s, LLMDD_PARAM_INVALID);
    else if (c == NULL)
      EXPECT_IS("cache_push_addrs(unknown cache)", s, LLMDD_KV_CACHE_NOT_EXIST);
    else
      EXPECT_IS("cache_push_addrs(not linked)", s, s == LLMDD_NOT_YET_LINK ? s : LLMDD_PARAM_INVALID);
    return;
  }
  case 0: {
    uint64_t addrs[2] = {0, u64(in)};
    uint64_t out;
    s = checked("cache_register", llmdd_cache_register(h, 1 + u8(in) % 2, 1 + u16(in), 1, u64(in), u8(in) % 3,
                                                        (u8(in) & 1) ? addrs : NULL, pick_index(in, 2), NULL, 0,
                                                        (int32_t)(u8(in) % 2), &out));
    if (e == NULL) expect_preamble("cache_register", &p, s);
    else EXPECT_IS("cache_register(zero or no address)", s, LLMDD_PARAM_INVALID);
    return;
  }
  case 1:
    s = checked("cache_unregister", llmdd_cache_unregister(h, id));
    if (e == NULL) expect_preamble("cache_unregister", &p, s);
    else EXPECT_IS("cache_unregister(allocated or unknown id)", s,
                   c != NULL ? LLMDD_PARAM_INVALID : LLMDD_KV_CACHE_NOT_EXIST);
    return;
  case 2: {
    uint64_t pairs[2] = {u64(in), u64(in)};
    int32_t n = (u8(in) & 1) ? -(int32_t)u8(in) : 1;
    s = checked("cache_copy_blocks", llmdd_cache_copy_blocks(h, id, id, n > 0 ? NULL : pairs, n, 0));
    if (e == NULL) expect_preamble("cache_copy_blocks", &p, s);
    else EXPECT_IS("cache_copy_blocks(no pairs)", s, c != NULL ? LLMDD_PARAM_INVALID : LLMDD_KV_CACHE_NOT_EXIST);
    return;
  }
  default: {
    int32_t role = (int32_t)u32(in);
    s = checked("engine_set_role", llmdd_engine_set_role(h, role, NULL, 0));
    if (e == NULL) {
      /* A bad role is refused before the handle is looked at. */
      if (role < 1 || role > 3) EXPECT_IS("engine_set_role(bad role)", s, LLMDD_PARAM_INVALID);
      else expect_preamble("engine_set_role", &p, s);
    } else {
      EXPECT_IS("engine_set_role(no llm.EnableSwitchRole)", s,
                role >= 1 && role <= 3 ? LLMDD_FEATURE_NOT_ENABLED : LLMDD_PARAM_INVALID);
    }
    return;
  }
  }
}

static void step_abi_version(struct input *in) {
  (void)in;
  EXPECT_IS("abi_version", llmdd_abi_version(), LLMDD_ABI_VERSION);
}

/* ---- one input ---- */

typedef void (*step_fn)(struct input *);

static const step_fn steps[] = {
    step_engine_init, step_engine_init, step_engine_init, step_engine_finalize,
    step_engine_info, step_pool_usage,  step_pool_usage,  step_allocate,
    step_allocate,    step_allocate,    step_allocate,    step_deallocate,
    step_deallocate,  step_key_remove,  step_key_remove,  step_write,
    step_write,       step_write,       step_read,        step_read,
    step_read,        step_copy,        step_copy,        step_copy,
    step_job_create,  step_job_create,  step_job_cancel,  step_job_message,
    step_job_release, step_last_error,  step_link,        step_unlink,
    step_pull,        step_verify_memory, step_abi_version, step_cache_manager,
};
#define NSTEPS (sizeof steps / sizeof steps[0])

/* Releases everything the input made, checking on the way that every cache's
 * memory returns to its pool. */
static void finish(bool release_first) {
  for (int i = 0; i < MAX_ENGINES; i++) {
    struct mengine *e = &M.engines[i];
    if (!e->live) continue;
    if (release_first) {
      for (int k = 0; k < MAX_KEYS; k++) {
        if (!e->keys[k].live) continue;
        EXPECT_IS("cache_key_remove(at the end)",
                  checked("cache_key_remove", llmdd_cache_key_remove(e->handle, e->keys[k].k[0],
                                                                     e->keys[k].k[1],
                                                                     e->keys[k].k[2])),
                  LLMDD_SUCCESS);
        e->keys[k].live = false;
        e->caches[e->keys[k].cache].keys_held--;
        maybe_free_cache(e, &e->caches[e->keys[k].cache]);
      }
      for (int c = 0; c < MAX_CACHES; c++) {
        if (!e->caches[c].used) continue;
        ASSERT(e->caches[c].id_held, "a cache without keys or id in the model");
        EXPECT_IS("cache_deallocate(at the end)",
                  checked("cache_deallocate", llmdd_cache_deallocate(e->handle, e->caches[c].id)),
                  LLMDD_SUCCESS);
        e->caches[c].id_held = false;
        maybe_free_cache(e, &e->caches[c]);
      }
      for (int32_t d = 0; d < e->num_devices; d++) {
        uint64_t out[2] = {1, 1};
        EXPECT_IS("pool_usage(at the end)",
                  checked("pool_usage", llmdd_pool_usage(e->handle, d, out)), LLMDD_SUCCESS);
        ASSERT(out[0] == 0, "device %d still uses %llu bytes after everything was released", d,
               (unsigned long long)out[0]);
      }
    }
    EXPECT_IS("engine_finalize(at the end)",
              checked("engine_finalize", llmdd_engine_finalize(e->handle)), LLMDD_SUCCESS);
    forget_engine(e);
  }
  for (int i = 0; i < MAX_JOBS; i++) {
    if (!M.jobs[i].live) continue;
    EXPECT_IS("job_release(at the end)", checked("job_release", llmdd_job_release(M.jobs[i].handle)),
              LLMDD_SUCCESS);
  }
  expect_no_callbacks("at the end of the input");
  ASSERT(M.shadow_bytes == 0, "the model still holds %llu shadow bytes",
         (unsigned long long)M.shadow_bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  memset(&M, 0, sizeof M);
  M.cluster_base = (uint64_t)1 << 60 | (uint64_t)getpid() << 24 | 0xF00000;
  struct input in = {data, size};
  if (trace < 0) trace = getenv("FUZZ_ABI_TRACE") != NULL;
  bool release_first = u8(&in) % 4 != 0;
  for (int i = 0; i < MAX_STEPS && in.n > 0; i++) {
    uint8_t op = u8(&in) % NSTEPS;
    if (trace) fprintf(stderr, "step %d: opcode %u\n", i, op);
    steps[op](&in);
  }
  if (trace) fprintf(stderr, "end of input\n");
  finish(release_first);
  return 0;
}
