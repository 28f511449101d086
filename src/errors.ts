/**
 * The error classes of LLM-DataDist. As upstream, a bad argument raises
 * `TypeError` or `ValueError`, and everything the engine reports raises
 * `LLMException` carrying an {@link LLMStatusCode}.
 *
 * @module
 */
import { type LLMStatusCode, statusName } from "./status.ts";

/**
 * An argument has the right type but a value outside what is allowed
 * (upstream Python's `ValueError`). Extends `RangeError`, so
 * `err instanceof RangeError` holds too.
 *
 * @example
 * ```ts
 * import { CacheDesc, DataType, ValueError } from "llm-datadist";
 * try {
 *   new CacheDesc(1, [4, -1], DataType.DT_FLOAT16);
 * } catch (err) {
 *   console.log(err instanceof ValueError); // true
 * }
 * ```
 */
export class ValueError extends RangeError {
  /** Creates a ValueError with the given message. */
  constructor(message: string) {
    super(message);
    this.name = "ValueError";
  }
}

/**
 * An error reported by the engine, with its upstream status code. The message
 * starts with the code's name, and `statusName` sits beside `statusCode`, so
 * printing the error (`console.log`, inspection) shows both.
 *
 * @example
 * ```ts
 * import { LLMException, LLMStatusCode } from "llm-datadist";
 * const err = new LLMException(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST, "cache 3 does not exist");
 * console.log(err.statusCode === LLMStatusCode.LLM_KV_CACHE_NOT_EXIST); // true
 * console.log(err.statusName); // "LLM_KV_CACHE_NOT_EXIST"
 * console.log(err.message); // "LLM_KV_CACHE_NOT_EXIST: cache 3 does not exist"
 * ```
 */
export class LLMException extends Error {
  /** The upstream status code (an unsigned 32-bit value). */
  readonly statusCode: LLMStatusCode;
  /** The name of {@link LLMException.statusCode} (`"LLM_PARAM_INVALID"`; see `statusName()`). */
  readonly statusName: string;

  /** Creates an exception for `statusCode`; the message is prefixed with the code's name. */
  constructor(statusCode: number, message: string, options?: ErrorOptions) {
    // Unsigned: a native call returns an int32, and upstream's codes are uint32.
    const code = (statusCode >>> 0) as LLMStatusCode;
    const name = statusName(code);
    super(`${name}: ${message}`, options);
    this.name = "LLMException";
    this.statusCode = code;
    this.statusName = name;
  }
}
