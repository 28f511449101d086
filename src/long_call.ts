/**
 * Long native calls (reads, copies, pulls, links) run off the JavaScript
 * thread as jobs, bounded by their operation's deadline and abort signal.
 *
 * @module
 */
import type { NativeLibrary } from "./native_library.ts";
import type { LongSymbolName, NativeFunction } from "./native/symbols.ts";
import type { Operation } from "./operation.ts";
import { after } from "./deadline.ts";
import { LLMStatusCode } from "./status.ts";

/** A long operation's parameters without its trailing job argument. */
export type LongArgs<K extends LongSymbolName> = Parameters<NativeFunction<K>> extends readonly [...infer Rest, bigint]
  ? Rest
  : never;

/**
 * The arguments of the calls still running natively. The native side reads
 * their buffers (a block pull's pairs, a read's destination) until it ends,
 * and no runtime's FFI keeps them referenced after the call has returned: an
 * argument list stays here until its call finished, so no collection can free
 * a buffer under a worker thread (Bun did, for a pull's pairs).
 */
const inFlight = new Set<readonly unknown[]>();

/**
 * Runs the long operation `name` off the JavaScript thread, bounded by `op`'s
 * deadline and signal. Rejects promptly when either fires, and cancels the
 * native work, which stops within one chunk; the operation keeps the engine's
 * lock until it has. `args` (buffers included) stay referenced by the running
 * call until it settles.
 */
export function runLong<K extends LongSymbolName>(
  lib: NativeLibrary,
  name: K,
  args: LongArgs<K>,
  op: Operation,
  context: string,
): Promise<void> {
  const { deadline, signal } = op;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const remaining = Math.ceil(deadline.remaining());
  if (remaining <= 0) return Promise.reject(deadline.error(op.what));
  const out = new BigUint64Array(1);
  lib.check(lib.fn.llmdd_job_create(remaining, lib.raw.doneCallback, out), "cannot create a job");
  const job = out[0];
  let finished: Promise<number>;
  try {
    finished = lib.raw.callLong(name, [...args, job] as unknown as Parameters<NativeFunction<K>>);
  } catch (err) {
    lib.fn.llmdd_job_release(job); // the runtime refused the call: no operation holds the job
    throw err;
  }
  inFlight.add(args);
  const forget = () => inFlight.delete(args);
  finished.then(forget, forget);
  op.hold(finished);
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      stopTimer();
      signal?.removeEventListener("abort", onAbort);
      outcome();
    };
    const cancel = (reason: () => unknown) => {
      lib.fn.llmdd_job_cancel(job);
      settle(() => reject(reason()));
    };
    const onAbort = () => cancel(() => signal!.reason);
    const stopTimer = after(remaining, () => cancel(() => deadline.error(op.what)));
    signal?.addEventListener("abort", onAbort, { once: true });
    finished.then((code) => {
      const message = code === 0 ? "" : lib.jobMessage(job);
      lib.fn.llmdd_job_release(job);
      settle(() =>
        code === 0 ? resolve() : reject(
          code === LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT ? deadline.error(op.what) : lib.error(code, context, message),
        )
      );
    }, (err) => {
      lib.fn.llmdd_job_release(job);
      settle(() => reject(err));
    });
  });
}
