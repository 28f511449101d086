/**
 * Status codes, with the values of upstream `LLMStatusCode`
 * (`llm_datadist/llm_error_codes.h`: 0x5010B000 + n).
 *
 * @module
 */

/** Status codes of LLM-DataDist, as carried by {@link LLMException.statusCode}. */
export const LLMStatusCode = {
  LLM_SUCCESS: 0,
  LLM_FAILED: 0xFFFFFFFF,
  LLM_WAIT_PROCESS_TIMEOUT: 0x5010B001,
  LLM_KV_CACHE_NOT_EXIST: 0x5010B002,
  LLM_REPEAT_REQUEST: 0x5010B003,
  LLM_REQUEST_ALREADY_COMPLETED: 0x5010B004,
  LLM_PARAM_INVALID: 0x5010B005,
  LLM_ENGINE_FINALIZED: 0x5010B006,
  LLM_NOT_YET_LINK: 0x5010B007,
  LLM_ALREADY_LINK: 0x5010B008,
  LLM_LINK_FAILED: 0x5010B009,
  LLM_UNLINK_FAILED: 0x5010B00A,
  LLM_NOTIFY_PROMPT_UNLINK_FAILED: 0x5010B00B,
  LLM_CLUSTER_NUM_EXCEED_LIMIT: 0x5010B00C,
  LLM_PROCESSING_LINK: 0x5010B00D,
  LLM_DEVICE_OUT_OF_MEMORY: 0x5010B00E,
  LLM_PREFIX_ALREADY_EXIST: 0x5010B00F,
  LLM_PREFIX_NOT_EXIST: 0x5010B010,
  LLM_SEQ_LEN_OVER_LIMIT: 0x5010B011,
  LLM_NO_FREE_BLOCK: 0x5010B012,
  LLM_BLOCKS_OUT_OF_MEMORY: 0x5010B013,
  LLM_EXIST_LINK: 0x5010B018,
  LLM_FEATURE_NOT_ENABLED: 0x5010B019,
  LLM_TIMEOUT: 0x5010B01A,
  LLM_LINK_BUSY: 0x5010B01B,
  LLM_OUT_OF_MEMORY: 0x5010B01C,
} as const;

/** One of the {@link LLMStatusCode} values. */
export type LLMStatusCode = typeof LLMStatusCode[keyof typeof LLMStatusCode];

const names = new Map<number, string>(
  Object.entries(LLMStatusCode).map(([name, code]) => [code, name]),
);

/**
 * The name of a status code (`"LLM_PARAM_INVALID"`), or its hex spelling when
 * the code is not one of {@link LLMStatusCode}.
 */
export function statusName(code: number): string {
  const unsigned = code >>> 0;
  return names.get(unsigned) ?? `0x${unsigned.toString(16).toUpperCase()}`;
}
