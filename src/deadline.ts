/**
 * Deadlines: each call's time limit is fixed when the call is made (cache
 * calls: `now + syncKvTimeout`; links: `now + timeout`), and everything after
 * it — waiting for the mutex, native work — counts against it.
 *
 * @module
 */
import { LLMException } from "./errors.ts";
import { LLMStatusCode } from "./status.ts";

/** A point in time (on `performance.now()`'s clock) by which a call must finish. */
export class Deadline {
  /** The time limit the deadline was made from, in milliseconds. */
  readonly timeoutMs: number;
  /** The name of that limit as the user set it, for messages (`syncKvTimeout`, `timeout`). */
  readonly limit: string;
  /** When the deadline falls, in `performance.now()` milliseconds. */
  readonly at: number;

  /** A deadline `timeoutMs` from now, enforcing the limit named `limit`. */
  constructor(timeoutMs: number, limit: string = "syncKvTimeout") {
    this.timeoutMs = timeoutMs;
    this.limit = limit;
    this.at = performance.now() + timeoutMs;
  }

  /** Milliseconds left; zero or negative once the deadline has passed. */
  remaining(): number {
    return this.at - performance.now();
  }

  /** The error a call named `what` rejects with once the deadline has passed. */
  error(what: string): LLMException {
    return new LLMException(
      LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT,
      `${what} did not finish within ${this.limit} (${this.timeoutMs} ms)`,
    );
  }
}

/** The longest delay a timer takes (2^31 - 1 ms); longer ones fire at once, with a warning. */
const TIMER_MAX_MS = 0x7FFF_FFFF;

/**
 * Calls `fire` once `ms` milliseconds have passed on `performance.now()`'s
 * clock, never before; returns what cancels it. Timers cut a fractional delay
 * to whole milliseconds, so on that clock they fire up to a millisecond early
 * (a queued call of a 30 ms limit was rejected after 28.9 ms), and take no
 * delay past 2^31 - 1 ms: a timer that finds time left waits again.
 */
export function after(ms: number, fire: () => void): () => void {
  const at = performance.now() + ms;
  const arm = (wait: number) => setTimeout(check, Math.min(TIMER_MAX_MS, Math.max(0, wait)));
  const check = () => {
    const left = at - performance.now();
    if (left > 0) timer = arm(Math.ceil(left));
    else fire();
  };
  let timer = arm(ms);
  return () => clearTimeout(timer);
}
