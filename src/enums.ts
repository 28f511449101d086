/**
 * Roles and placements, with the numeric values of upstream LLM-DataDist.
 *
 * @module
 */

/** The role of an LLMDataDist instance (upstream `LLMRole`). */
export const LLMRole = {
  /** `1`: a prefill instance: computes KV caches and serves them to decoders. */
  PROMPT: 1,
  /** `2`: a decode instance: pulls KV caches from prompt instances. */
  DECODER: 2,
  /** `3`: both roles in one instance. */
  MIX: 3,
} as const;

/** One of the {@link LLMRole} values. */
export type LLMRole = typeof LLMRole[keyof typeof LLMRole];

/** Where a cache's memory lives (upstream `Placement`). */
export const Placement = {
  /** `0`: host memory. */
  HOST: 0,
  /** `1`: device memory (on the host backend, a host-memory pool per device). */
  DEVICE: 1,
} as const;

/** One of the {@link Placement} values. */
export type Placement = typeof Placement[keyof typeof Placement];
