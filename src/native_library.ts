/**
 * The native library as the portable code uses it: every status goes through
 * {@link NativeLibrary.check}, which turns it into a typed error with the
 * library's own message. Stateless: each call that needs an out-parameter or a
 * message buffer makes its own, so nothing is shared between calls.
 *
 * @module
 */
import { LLMException } from "./errors.ts";
import type { NativeSymbols, RawLibrary } from "./native/symbols.ts";

/** Bytes of the buffer a message call (`llmdd_last_error`, `llmdd_job_message`) fills. */
const MESSAGE_BYTES = 1024;
const decoder = new TextDecoder();

/** A loaded native library, wrapped for the portable code. */
export class NativeLibrary {
  /** The runtime shim's view of the library. */
  readonly raw: RawLibrary;
  /** Shortcut to the synchronous functions. */
  readonly fn: NativeSymbols;

  /** Wraps a shim's library. */
  constructor(raw: RawLibrary) {
    this.raw = raw;
    this.fn = raw.symbols;
  }

  /** The calling thread's last native error message. */
  lastError(): string {
    const message = new Uint8Array(MESSAGE_BYTES);
    return decodeMessage(message, this.fn.llmdd_last_error(message, MESSAGE_BYTES));
  }

  /** The message a failed job left. */
  jobMessage(job: bigint): string {
    const message = new Uint8Array(MESSAGE_BYTES);
    return decodeMessage(message, this.fn.llmdd_job_message(job, message, MESSAGE_BYTES));
  }

  /** Throws the `LLMException` for a non-zero status, with the native message. */
  check(status: number, context: string): void {
    if (status !== 0) throw this.error(status, context);
  }

  /** The `LLMException` for a non-zero status, with the native message. */
  error(status: number, context: string, message: string = this.lastError()): LLMException {
    return new LLMException(status, message ? `${context}: ${message}` : context);
  }
}

// The buffer holds at most MESSAGE_BYTES - 1 bytes and a NUL; the native side
// returns the full length (or -1), which may be more.
function decodeMessage(message: Uint8Array, length: number): string {
  return decoder.decode(message.subarray(0, Math.max(0, Math.min(length, MESSAGE_BYTES - 1))));
}
