/**
 * Running a cache call under the engine's mutex with its deadline and abort
 * signal. Every call that touches caches goes through {@link runExclusive}.
 *
 * @module
 */
import { Deadline } from "./deadline.ts";
import type { AsyncMutex } from "./mutex.ts";

/** What a call's body sees: its deadline and signal, and a way to keep the lock. */
export class Operation {
  /** The call's name, for messages. */
  readonly what: string;
  /** Fixed when the call was made. */
  readonly deadline: Deadline;
  /** The caller's abort signal, if any. */
  readonly signal: AbortSignal | undefined;
  /** Native work that must end before the lock is released. */
  readonly held: Promise<unknown>[] = [];

  /**
   * Creates the operation of a call made now, within `timeoutMs` of the limit
   * named `limit` (what a timeout's message names).
   */
  constructor(what: string, timeoutMs: number, signal: AbortSignal | undefined, limit: string = "syncKvTimeout") {
    this.what = what;
    this.deadline = new Deadline(timeoutMs, limit);
    this.signal = signal;
  }

  /**
   * Keeps the lock until `work` settles, even if the call itself rejects
   * earlier (timeout, abort): the next caller must not start while native code
   * still touches the caches.
   */
  hold(work: Promise<unknown>): void {
    this.held.push(work);
  }
}

/**
 * Runs `body` once the mutex is free, in arrival order. Waiting counts
 * against the deadline and is cut short by the signal. When the lock is free
 * at once and `body` returns a plain value, everything happens synchronously
 * and only the returned promise is allocated.
 */
export function runExclusive<T>(
  mutex: AsyncMutex,
  what: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  body: (op: Operation) => T | Promise<T>,
): Promise<T> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  const op = new Operation(what, timeoutMs, signal);
  if (mutex.tryLock()) return runLocked(mutex, op, body);
  return mutex.lock(op.deadline.remaining(), signal, () => op.deadline.error(what))
    .then(() => {
      // Granted, but perhaps only after the deadline (the timer had not fired yet).
      if (op.deadline.remaining() <= 0) {
        mutex.unlock();
        throw op.deadline.error(what);
      }
      return runLocked(mutex, op, body);
    });
}

function runLocked<T>(mutex: AsyncMutex, op: Operation, body: (op: Operation) => T | Promise<T>): Promise<T> {
  let result: T | Promise<T>;
  try {
    result = body(op);
  } catch (err) {
    release(mutex, op);
    return Promise.reject(err);
  }
  if (!(result instanceof Promise)) {
    release(mutex, op);
    return Promise.resolve(result);
  }
  return result.finally(() => release(mutex, op));
}

function release(mutex: AsyncMutex, op: Operation): void {
  if (op.held.length === 0) {
    mutex.unlock();
  } else {
    Promise.allSettled(op.held).then(() => mutex.unlock());
  }
}

/**
 * Runs `start` and returns its promise, a synchronous throw (a call's argument
 * checks) turned into a rejection: what an async function does, without its
 * extra promise and turn of the microtask queue (about a microsecond per call
 * that the short cache calls can tell).
 */
export function rejecting<T>(start: () => Promise<T>): Promise<T> {
  try {
    return start();
  } catch (err) {
    return Promise.reject(err);
  }
}
