// Runtime, counters, constants, options and the failure type shared by every part of the fuzz.

import fc from "fast-check";
import { LLMException, LLMStatusCode } from "../../../mod.ts";
import { codeName, type Settled } from "./outcomes.ts";

// ---------------------------------------------------------------------------
// Runtime, counters, constants

/** The runtime this runs on. */
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";

/** Public calls made so far (constructors, setters, methods, getters that check something). */
export const counter = { calls: 0 };

/** How often each call ended each way ("P.pullCache → success"), for checking what a run covered. */
export const outcomes: Map<string, number> = new Map();

export function tally(label: string, settled: Settled): void {
  const call = label.replace(/^(burst|check): /, "").replace(/cache \d+/g, "cache N").replace(/\(.*$/s, "").replace(
    /^[PD]\./,
    "",
  ).replace(
    / = .*$/s,
    "",
  );
  const what = settled.ok
    ? "success"
    : settled.error instanceof LLMException
    ? codeName(settled.error.statusCode)
    : settled.error instanceof Error
    ? settled.error.name
    : "other";
  const key = `${call} → ${what}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

/** Whether revoked views' buffers get detached here (Deno, Bun, Node ≥ 22). */
export const canDetach = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function";

export const S = LLMStatusCode;
export const INT32_MIN = -0x80000000;
export const INT32_MAX = 0x7FFFFFFF;
export const UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFFn;
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;
export const POOL_ALIGN = 64;
/** Native limit on one tensor's bytes and on stride × numTensors (ffi/host/cache.c). */
export const CACHE_BYTES_LIMIT = 1n << 62n;
/** A call that has not settled after this long is a hang. */
export const HANG_MS = 30_000;
/** A key no cache ever holds: pulling it is the barrier that waits for the PROMPT. */
export const BARRIER_REQ = UINT64_MAX - 1n;
/** Upstream's padding key's request id: never registered, and pulling it is LLM_PARAM_INVALID. */
export const PADDING_REQ = UINT64_MAX;
/** Per-instance cache deadline: long enough that nothing valid times out on a loaded machine. */
export const SYNC_KV_TIMEOUT = 10_000;

/** Options of a fuzz run. */
export interface FuzzOptions {
  /**
   * Also generate the inputs that trigger the bugs known when this was written
   * (see KNOWN BUG tests in test/fuzz.test.ts); off by default so that the fuzz
   * keeps looking for new ones.
   */
  knownBugs?: boolean;
  /** Most commands in one sequence. */
  maxCommands?: number;
}

/** The bugs the fuzz found (all fixed); each has a regression test in test/fuzz.test.ts. */
export const KNOWN_BUGS = [
  "sparse arrays (holes) pass the element checks of CacheDesc shape, allocateCache keys, linkClusters clusters, LLMConfig.deviceId",
  "allocateCache with a huge numTensors: a RangeError (not ValueError) from allocating the address array",
  "init() with an option key the native side reads differently (' ge.exec.deviceId') leaks the native engine",
  "Deno: -0 (a valid integer) as tensorIndex, batchIndex or placement fails in Deno's FFI with TypeError",
] as const;

// ---------------------------------------------------------------------------
// Failures

/** A property failure: the message says which call and what came out. */
export class FuzzFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FuzzFailure";
  }
}

export function fail(message: string): never {
  throw new FuzzFailure(message);
}

export function show(value: unknown): string {
  try {
    const text = fc.stringify(value);
    return text.length > 400 ? text.slice(0, 400) + "…" : text;
  } catch {
    return String(typeof value);
  }
}
