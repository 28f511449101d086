// The FIFO mutex and runExclusive, driven directly so that "who holds the
// lock, and for how long" is exact rather than a matter of copy speed.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { LLMException, LLMStatusCode } from "../mod.ts";
import { after } from "../src/deadline.ts";
import { AsyncMutex } from "../src/mutex.ts";
import { runExclusive } from "../src/operation.ts";
import { sleep } from "./helpers.ts";

describe("AsyncMutex", () => {
  test("grants in arrival order", async () => {
    const mutex = new AsyncMutex();
    assert.ok(mutex.tryLock());
    const order: number[] = [];
    const waiters = [0, 1, 2, 3].map((i) =>
      mutex.lock(1000, undefined, () => new Error("timeout")).then(() => {
        order.push(i);
        mutex.unlock();
      })
    );
    mutex.unlock();
    await Promise.all(waiters);
    assert.deepEqual(order, [0, 1, 2, 3]);
    assert.equal(mutex.locked, false);
  });

  test("a waiter that times out or aborts leaves the queue; the rest are served", async () => {
    const mutex = new AsyncMutex();
    mutex.tryLock();
    const controller = new AbortController();
    const timedOut = mutex.lock(10, undefined, () => new Error("too late"));
    const aborted = mutex.lock(1000, controller.signal, () => new Error("x"));
    const served = mutex.lock(1000, undefined, () => new Error("x"));
    controller.abort(new Error("bye"));
    await assert.rejects(aborted, /bye/);
    await assert.rejects(timedOut, /too late/);
    mutex.unlock();
    await served;
    assert.equal(mutex.locked, true);
    mutex.unlock();
    assert.equal(mutex.locked, false);
  });

  test("failAll rejects every waiter", async () => {
    const mutex = new AsyncMutex();
    mutex.tryLock();
    const waiting = [mutex.lock(1000, undefined, () => 0), mutex.lock(1000, undefined, () => 0)];
    mutex.failAll(new Error("gone"));
    for (const w of waiting) await assert.rejects(w, /gone/);
  });
});

describe("after (the deadline timers)", () => {
  test("never fires before its time, fractional delays too (timers cut them to whole milliseconds)", async () => {
    // With a plain setTimeout, 9.7 ms came after 8.4-9.6 ms on all three runtimes.
    for (let i = 0; i < 10; i++) {
      await sleep(i % 3);
      const start = performance.now();
      await new Promise<void>((resolve) => after(9.7, resolve));
      const elapsed = performance.now() - start;
      assert.ok(elapsed >= 9.7, `fired after ${elapsed.toFixed(3)} ms of 9.7`);
    }
  });

  test("a delay past 2^31 - 1 ms (a uint32 timeout) does not fire at once", async () => {
    // A plain setTimeout takes such a delay as 1 ms: CacheTask.synchronize(0xFFFF_FFFF) timed out at once.
    let fired = false;
    const cancel = after(0xFFFF_FFFF, () => (fired = true));
    await sleep(30);
    cancel();
    assert.equal(fired, false);
  });

  test("its cancel stops it", async () => {
    let fired = false;
    const cancel = after(5, () => (fired = true));
    cancel();
    await sleep(20);
    assert.equal(fired, false);
  });
});

describe("runExclusive", () => {
  test("waiting counts against the deadline: rejects with LLM_WAIT_PROCESS_TIMEOUT while queued", async () => {
    const mutex = new AsyncMutex();
    mutex.tryLock(); // someone holds the lock past our deadline
    let ran = false;
    const start = performance.now();
    const call = runExclusive(mutex, "getCacheTensors", 30, undefined, () => {
      ran = true;
    });
    const err = await call.then(() => undefined, (e) => e);
    const elapsed = performance.now() - start;
    assert.ok(err instanceof LLMException);
    assert.equal(err.statusCode, LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT);
    assert.match(err.message, /getCacheTensors did not finish within syncKvTimeout \(30 ms\)/);
    assert.ok(elapsed >= 29, `rejected after ${elapsed} ms, before the deadline`);
    assert.equal(ran, false);
    mutex.unlock();
    assert.equal(await runExclusive(mutex, "next", 30, undefined, () => 7), 7, "the queue is clean");
  });

  test("a lock granted after the deadline is handed on without running the body", async () => {
    const mutex = new AsyncMutex();
    mutex.tryLock();
    let ran = false;
    const late = runExclusive(mutex, "late", 5, undefined, () => {
      ran = true;
    });
    // Block the event loop past the deadline so the grant comes before the timer.
    const until = performance.now() + 20;
    while (performance.now() < until) { /* busy */ }
    mutex.unlock();
    const err = await late.then(() => undefined, (e) => e);
    assert.equal(err?.statusCode, LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT);
    assert.equal(ran, false);
    assert.equal(mutex.locked, false);
  });

  test("the lock is kept until held native work settles, even after the call rejected", async () => {
    const mutex = new AsyncMutex();
    let finishNative!: () => void;
    const native = new Promise<void>((resolve) => (finishNative = resolve));
    const first = runExclusive(mutex, "first", 1000, undefined, (op) => {
      op.hold(native);
      return Promise.reject(new Error("gave up"));
    });
    await assert.rejects(first, /gave up/);
    let secondRan = false;
    const second = runExclusive(mutex, "second", 1000, undefined, () => {
      secondRan = true;
    });
    await sleep(10);
    assert.equal(secondRan, false, "must wait for the native work");
    finishNative();
    await second;
    assert.equal(secondRan, true);
  });

  test("a body that throws releases the lock", async () => {
    const mutex = new AsyncMutex();
    await assert.rejects(
      runExclusive(mutex, "x", 100, undefined, () => {
        throw new TypeError("bad");
      }),
      TypeError,
    );
    assert.equal(mutex.locked, false);
  });
});
