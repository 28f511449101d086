/**
 * A FIFO async mutex. Upstream forbids concurrent cache calls because it
 * fetches results in two phases over one shared queue; here they are
 * serialized instead: callers are served one at a time, in arrival order, and
 * a caller can stop waiting when its deadline passes or its signal aborts.
 *
 * @module
 */
import { after } from "./deadline.ts";

interface Waiter {
  /** Set once the waiter was granted the lock or gave up. */
  done: boolean;
  grant(): void;
  fail(reason: unknown): void;
}

/** A mutual-exclusion lock handed to waiters in arrival order. */
export class AsyncMutex {
  #locked = false;
  #queue: Waiter[] = [];
  #head = 0;

  /** Whether some caller holds the lock. */
  get locked(): boolean {
    return this.#locked;
  }

  /** Takes the lock if it is free and nobody waits; returns whether it did. */
  tryLock(): boolean {
    if (this.#locked) return false;
    this.#locked = true;
    return true;
  }

  /**
   * Resolves once the caller holds the lock. Rejects with `timeoutError()` if
   * `waitMs` elapses first, or with the signal's reason if it aborts; either
   * way the caller leaves the queue.
   */
  lock(waitMs: number, signal: AbortSignal | undefined, timeoutError: () => unknown): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryLock()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const cleanup = () => {
        waiter.done = true;
        stopTimer();
        signal?.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        done: false,
        grant: () => {
          cleanup();
          resolve();
        },
        fail: (reason) => {
          cleanup();
          reject(reason);
        },
      };
      const onAbort = () => waiter.fail(signal!.reason);
      const stopTimer = after(waitMs, () => waiter.fail(timeoutError()));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Releases the lock, handing it to the longest-waiting caller still waiting. */
  unlock(): void {
    while (this.#head < this.#queue.length) {
      const waiter = this.#queue[this.#head++];
      if (!waiter.done) {
        this.#compact();
        waiter.grant();
        return;
      }
    }
    if (this.#head !== 0) {
      this.#queue = [];
      this.#head = 0;
    }
    this.#locked = false;
  }

  /** Rejects every waiting caller with `reason` (used when the engine goes away). */
  failAll(reason: unknown): void {
    const waiting = this.#queue.slice(this.#head);
    this.#queue = [];
    this.#head = 0;
    for (const waiter of waiting) if (!waiter.done) waiter.fail(reason);
  }

  // Drops served waiters from the front now and then, so the queue stays small
  // without shifting the array on every unlock.
  #compact(): void {
    if (this.#head >= 1024 && this.#head * 2 >= this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }
}
