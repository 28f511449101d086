/**
 * Status codes, with the values of upstream `LLMStatusCode`: the Python enum
 * (`llm_datadist/status.py`) and the C++ codes it wraps
 * (`include/llm_datadist/llm_error_codes.h`: 0x5010B000 + n; two ACL runtime
 * codes; `ge::SUCCESS` and `ge::FAILED`).
 *
 * @module
 */

/**
 * Status codes of LLM-DataDist, as carried by {@link LLMException.statusCode}
 * (an unsigned 32-bit number). {@link statusName} names one.
 *
 * @example
 * ```ts
 * import { LLMStatusCode, statusName } from "llm-datadist";
 * console.log(LLMStatusCode.LLM_PARAM_INVALID.toString(16)); // "5010b005"
 * console.log(statusName(1343270917)); // "LLM_PARAM_INVALID"
 * ```
 */
export const LLMStatusCode = {
  /** `0` (`ge::SUCCESS`): success. */
  LLM_SUCCESS: 0,
  /** `0xFFFFFFFF` (4294967295, `ge::FAILED`): a general failure; also any code upstream does not name. */
  LLM_FAILED: 0xFFFFFFFF,
  /** `0x5010B001` (1343270913): a call ran past its `syncKvTimeout`. */
  LLM_WAIT_PROCESS_TIMEOUT: 0x5010B001,
  /** `0x5010B002` (1343270914): no such cache, or no such cache key. */
  LLM_KV_CACHE_NOT_EXIST: 0x5010B002,
  /** `0x5010B003` (1343270915): a repeated request. */
  LLM_REPEAT_REQUEST: 0x5010B003,
  /** `0x5010B004` (1343270916): the request was already completed. */
  LLM_REQUEST_ALREADY_COMPLETED: 0x5010B004,
  /** `0x5010B005` (1343270917): an argument is invalid. */
  LLM_PARAM_INVALID: 0x5010B005,
  /** `0x5010B006` (1343270918): the LLMDataDist was finalized. */
  LLM_ENGINE_FINALIZED: 0x5010B006,
  /** `0x5010B007` (1343270919): the cluster is not linked. */
  LLM_NOT_YET_LINK: 0x5010B007,
  /** `0x5010B008` (1343270920): the cluster is already linked. */
  LLM_ALREADY_LINK: 0x5010B008,
  /** `0x5010B009` (1343270921): linking failed. */
  LLM_LINK_FAILED: 0x5010B009,
  /** `0x5010B00A` (1343270922): unlinking failed. */
  LLM_UNLINK_FAILED: 0x5010B00A,
  /** `0x5010B00B` (1343270923): the PROMPT side could not be told to unlink. */
  LLM_NOTIFY_PROMPT_UNLINK_FAILED: 0x5010B00B,
  /** `0x5010B00C` (1343270924): more clusters than one call or engine allows (16). */
  LLM_CLUSTER_NUM_EXCEED_LIMIT: 0x5010B00C,
  /** `0x5010B00D` (1343270925): a link or unlink is in progress. */
  LLM_PROCESSING_LINK: 0x5010B00D,
  /** `0x5010B00E` (1343270926): device memory is exhausted. */
  LLM_DEVICE_OUT_OF_MEMORY: 0x5010B00E,
  /** `0x5010B00F` (1343270927): the prefix already exists. */
  LLM_PREFIX_ALREADY_EXIST: 0x5010B00F,
  /** `0x5010B010` (1343270928): the prefix does not exist. */
  LLM_PREFIX_NOT_EXIST: 0x5010B010,
  /** `0x5010B011` (1343270929): the sequence length is over the limit. */
  LLM_SEQ_LEN_OVER_LIMIT: 0x5010B011,
  /**
   * `0x5010B011` (1343270929): upstream Python's spelling of
   * {@link LLMStatusCode.LLM_SEQ_LEN_OVER_LIMIT} (same value; {@link statusName}
   * returns the C header's name).
   */
  LLM_SEQ_LENOVERLIMIT: 0x5010B011,
  /** `0x5010B012` (1343270930): no free block. */
  LLM_NO_FREE_BLOCK: 0x5010B012,
  /** `0x5010B013` (1343270931): the blocks are out of memory. */
  LLM_BLOCKS_OUT_OF_MEMORY: 0x5010B013,
  /** `0x5010B014` (1343270932): the caches are incompatible (C header only; upstream Python reports it as `LLM_FAILED`). */
  LLM_CACHE_INCOMPATIBLE: 0x5010B014,
  /** `0x5010B015` (1343270933): the cache key already exists (C header only; upstream Python reports it as `LLM_FAILED`). */
  LLM_CACHE_KEY_ALREADY_EXIST: 0x5010B015,
  /** `0x5010B016` (1343270934): copying a cache failed (C header only; upstream Python reports it as `LLM_FAILED`). */
  LLM_COPY_CACHE_FAILED: 0x5010B016,
  /** `0x5010B017` (1343270935): the cache id already exists (C header only; upstream Python reports it as `LLM_FAILED`). */
  LLM_CACHE_ID_ALREADY_EXIST: 0x5010B017,
  /** `0x5010B018` (1343270936): a link still exists (switching roles needs every link gone). */
  LLM_EXIST_LINK: 0x5010B018,
  /** `0x5010B019` (1343270937): the feature is not enabled by the options given to `init()`. */
  LLM_FEATURE_NOT_ENABLED: 0x5010B019,
  /** `0x5010B01A` (1343270938): a transfer or other operation timed out. */
  LLM_TIMEOUT: 0x5010B01A,
  /** `0x5010B01B` (1343270939): the link is busy with a conflicting call. */
  LLM_LINK_BUSY: 0x5010B01B,
  /** `0x5010B01C` (1343270940): the memory pool cannot hold the request. */
  LLM_OUT_OF_MEMORY: 0x5010B01C,
  /** `507053` (0x7BCAD, ACL `ACL_ERROR_RT_DEVICE_MEM_ERROR`): an uncorrectable device memory error (reserved upstream). */
  LLM_DEVICE_MEM_ERROR: 507053,
  /** `507057` (0x7BCB1, ACL `ACL_ERROR_RT_SUSPECT_REMOTE_ERROR`): a suspected memory error on the remote side. */
  LLM_SUSPECT_REMOTE_ERROR: 507057,
  /**
   * `-1`: an unknown error. Upstream's value; as upstream, no error carries it:
   * a status code is read as unsigned, so -1 from the native library is
   * {@link LLMStatusCode.LLM_FAILED}.
   */
  LLM_UNKNOWN_ERROR: -1,
} as const;

/** One of the {@link LLMStatusCode} values. */
export type LLMStatusCode = typeof LLMStatusCode[keyof typeof LLMStatusCode];

// The first name of a value wins: LLM_SEQ_LEN_OVER_LIMIT over its Python alias.
const names = new Map<number, string>();
for (const [name, code] of Object.entries(LLMStatusCode)) if (!names.has(code)) names.set(code, name);

/**
 * The name of a status code (`"LLM_PARAM_INVALID"`), or its hex spelling when
 * the code is not one of {@link LLMStatusCode}. A code is read as upstream's
 * value first (`-1` is `"LLM_UNKNOWN_ERROR"`), then as unsigned 32-bit, so the
 * int32 a native call returns is named too.
 *
 * @example
 * ```ts
 * import { LLMStatusCode, statusName } from "llm-datadist";
 * console.log(statusName(LLMStatusCode.LLM_KV_CACHE_NOT_EXIST)); // "LLM_KV_CACHE_NOT_EXIST"
 * console.log(statusName(0x5010B0FF)); // "0x5010B0FF"
 * ```
 */
export function statusName(code: number): string {
  const unsigned = code >>> 0;
  return names.get(code) ?? names.get(unsigned) ?? `0x${unsigned.toString(16).toUpperCase()}`;
}
