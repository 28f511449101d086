#define _DEFAULT_SOURCE 1
#include "worker.h"

#include <pthread.h>
#include <signal.h>

#include "error.h"
#include "llmdd.h"

/* Two threads: a copy is memory-bound, so more would mostly compete for the same
 * bandwidth, while a second one keeps a short operation from waiting behind a
 * long one. */
#define WORKER_THREADS 2

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static struct work *queue_head, *queue_tail;
static int threads_running;

static void *worker_main(void *unused) {
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&queue_lock);
    while (queue_head == NULL) pthread_cond_wait(&queue_ready, &queue_lock);
    struct work *w = queue_head;
    queue_head = w->next;
    if (queue_head == NULL) queue_tail = NULL;
    pthread_mutex_unlock(&queue_lock);
    w->run(w);
  }
  return NULL;
}

int worker_start(void) {
  pthread_mutex_lock(&queue_lock);
  if (threads_running < WORKER_THREADS) {
    /* Workers block every signal so the host runtime's handlers keep running on
     * the runtime's own threads. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (threads_running < WORKER_THREADS) {
      pthread_t thread;
      if (pthread_create(&thread, &attr, worker_main, NULL) != 0) break;
      threads_running++;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
  }
  int running = threads_running;
  pthread_mutex_unlock(&queue_lock);
  if (running > 0) return 0;
  fail(LLMDD_FAILED, "could not start a worker thread");
  return -1;
}

void worker_submit(struct work *w) {
  w->next = NULL;
  pthread_mutex_lock(&queue_lock);
  if (queue_tail) queue_tail->next = w;
  else queue_head = w;
  queue_tail = w;
  pthread_cond_signal(&queue_ready);
  pthread_mutex_unlock(&queue_lock);
}
