/**
 * The native library as the portable code uses it: every status goes through
 * {@link NativeLibrary.check}, which turns it into a typed error with the
 * library's own message; long operations go through
 * {@link NativeLibrary.runLong}, which adds the deadline and the abort signal.
 *
 * @module
 */
import { LLMException } from "../errors.ts";
import type { Operation } from "../operation.ts";
import { LLMStatusCode } from "../status.ts";
import type { LongSymbolName, NativeFunction, NativeSymbols, RawLibrary } from "./symbols.ts";

const MESSAGE_BYTES = 1024;
const decoder = new TextDecoder();

/** Drops the trailing job argument from a long operation's parameters. */
type WithoutJob<A extends readonly unknown[]> = A extends readonly [...infer Rest, bigint] ? Rest : never;

/** A loaded native library (one per file, shared by every engine using it). */
export class NativeLibrary {
  /** The runtime shim's view of the library. */
  readonly raw: RawLibrary;
  /** Shortcut to the synchronous functions. */
  readonly fn: NativeSymbols;
  // Reused for every out-parameter and message: calls on the JavaScript
  // thread never overlap, and the native side copies out before returning.
  readonly #out = new BigUint64Array(8);
  readonly #message = new Uint8Array(MESSAGE_BYTES);

  /** Wraps a shim's library. */
  constructor(raw: RawLibrary) {
    this.raw = raw;
    this.fn = raw.symbols;
  }

  /** The calling thread's last native error message. */
  lastError(): string {
    return this.#decodeMessage(this.fn.llmdd_last_error(this.#message, MESSAGE_BYTES));
  }

  /** Throws the `LLMException` for a non-zero status, with the native message. */
  check(status: number, context: string): void {
    if (status !== 0) throw this.error(status, context);
  }

  /** The `LLMException` for a non-zero status, with the native message. */
  error(status: number, context: string, message: string = this.lastError()): LLMException {
    return new LLMException(status, message ? `${context}: ${message}` : context);
  }

  /** The shared out-parameter buffer (read it right after the call that filled it). */
  get outBuffer(): BigUint64Array {
    return this.#out;
  }

  /**
   * Runs a long operation off the JavaScript thread, bounded by the
   * operation's deadline and signal. Rejects promptly when either fires, and
   * cancels the native work, which stops within one chunk; the operation keeps
   * the engine's lock until it has.
   */
  runLong<K extends LongSymbolName>(
    name: K,
    args: WithoutJob<Parameters<NativeFunction<K>>>,
    op: Operation,
    context: string,
  ): Promise<void> {
    const { deadline, signal } = op;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const remaining = Math.ceil(deadline.remaining());
    if (remaining <= 0) return Promise.reject(deadline.error(op.what));
    const status = this.fn.llmdd_job_create(remaining, this.raw.doneCallback, this.#out);
    this.check(status, "cannot create a job");
    const job = this.#out[0];
    let finished: Promise<number>;
    try {
      finished = this.raw.callLong(name, [...args, job] as unknown as Parameters<NativeFunction<K>>);
    } catch (err) {
      this.fn.llmdd_job_release(job); // the runtime refused the call: no operation holds the job
      throw err;
    }
    op.hold(finished);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        outcome();
      };
      const cancel = (reason: () => unknown) => {
        this.fn.llmdd_job_cancel(job);
        settle(() => reject(reason()));
      };
      const onAbort = () => cancel(() => signal!.reason);
      const timer = setTimeout(() => cancel(() => deadline.error(op.what)), remaining);
      signal?.addEventListener("abort", onAbort, { once: true });
      finished.then((code) => {
        const message = code === 0 ? "" : this.#jobMessage(job);
        this.fn.llmdd_job_release(job);
        settle(() =>
          code === 0 ? resolve() : reject(
            code === LLMStatusCode.LLM_WAIT_PROCESS_TIMEOUT
              ? deadline.error(op.what)
              : this.error(code, context, message),
          )
        );
      }, (err) => {
        this.fn.llmdd_job_release(job);
        settle(() => reject(err));
      });
    });
  }

  #jobMessage(job: bigint): string {
    return this.#decodeMessage(this.fn.llmdd_job_message(job, this.#message, MESSAGE_BYTES));
  }

  // The message buffer holds at most MESSAGE_BYTES - 1 bytes and a NUL; the
  // native side returns the full length (or -1), which may be more.
  #decodeMessage(length: number): string {
    return decoder.decode(this.#message.subarray(0, Math.max(0, Math.min(length, MESSAGE_BYTES - 1))));
  }
}
