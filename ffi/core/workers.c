#define _DEFAULT_SOURCE 1
#include "workers.h"

#include <signal.h>
#include <stddef.h>

#include "error.h"
#include "llmdd.h"

/* Two threads: a copy is memory-bound, so more would mostly compete for the same
 * bandwidth, while a second one keeps a short operation from waiting behind a
 * long one. */
#define WORKER_THREADS 2

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static struct core_work *queue_head, *queue_tail;
static int threads_running;

int core_thread_start(pthread_t *out, void *(*fn)(void *), void *arg) {
  /* The new thread inherits the mask in force when it is created. */
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_t detached;
  if (out == NULL) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(out != NULL ? out : &detached, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  return rc;
}

static void *worker_main(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&queue_lock);
    while (queue_head == NULL) pthread_cond_wait(&queue_ready, &queue_lock);
    struct core_work *w = queue_head;
    queue_head = w->next;
    if (queue_head == NULL) queue_tail = NULL;
    pthread_mutex_unlock(&queue_lock);
    w->run(w);
  }
  return NULL;
}

int core_workers_start(void) {
  pthread_mutex_lock(&queue_lock);
  while (threads_running < WORKER_THREADS && core_thread_start(NULL, worker_main, NULL) == 0)
    threads_running++;
  int running = threads_running;
  pthread_mutex_unlock(&queue_lock);
  if (running > 0) return 0;
  core_fail(LLMDD_FAILED, "could not start a worker thread");
  return -1;
}

void core_workers_submit(struct core_work *w) {
  w->next = NULL;
  pthread_mutex_lock(&queue_lock);
  if (queue_tail) queue_tail->next = w;
  else queue_head = w;
  queue_tail = w;
  pthread_cond_signal(&queue_ready);
  pthread_mutex_unlock(&queue_lock);
}
