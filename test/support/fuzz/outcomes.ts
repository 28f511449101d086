// Outcomes: what a call may end with, the oracle that collects the errors its arguments allow, and running a call against them.

import { LLMException, ValueError } from "../../../mod.ts";
import { counter, fail, HANG_MS, INT32_MAX, INT32_MIN, S, show, tally, UINT64_MAX } from "./core.ts";

// ---------------------------------------------------------------------------
// Outcomes

/** One outcome a call may have. */
export type Outcome =
  | { k: "ok" }
  | { k: "type" }
  | { k: "value" }
  | { k: "llm"; codes: number[] }
  | { k: "reason"; reason: unknown };

export const OK: Outcome = { k: "ok" };

export function codeName(code: number): string {
  return Object.entries(S).find(([, v]) => v === code)?.[0] ?? `0x${code.toString(16)}`;
}

function showOutcome(o: Outcome): string {
  switch (o.k) {
    case "llm":
      return `LLMException(${o.codes.map(codeName).join("|")})`;
    case "type":
      return "TypeError";
    case "value":
      return "ValueError";
    case "reason":
      return "the abort reason";
    default:
      return "success";
  }
}

/** Collects the errors a call's arguments and state allow; no errors means it must succeed. */
export class Oracle {
  readonly errors: Outcome[] = [];
  type(): void {
    this.errors.push({ k: "type" });
  }
  value(): void {
    this.errors.push({ k: "value" });
  }
  llm(...codes: number[]): void {
    this.errors.push({ k: "llm", codes });
  }
  get failed(): boolean {
    return this.errors.length > 0;
  }
}

export const BAD = Symbol("bad argument");
type Bad = typeof BAD;

export function intIn(o: Oracle, v: unknown, min: number, max: number, dflt?: number): number | Bad {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v)) {
    o.type();
    return BAD;
  }
  if (v < min || v > max) {
    o.value();
    return BAD;
  }
  return v;
}

export function int32(o: Oracle, v: unknown, dflt?: number): number | Bad {
  return intIn(o, v, INT32_MIN, INT32_MAX, dflt);
}

/** A batch row, as upstream's check_uint32: a TypeError or ValueError outside uint32. */
export function row32(o: Oracle, v: unknown, dflt?: number): number | Bad {
  return intIn(o, v, 0, 0xFFFF_FFFF, dflt);
}

/**
 * A copy's or pull's `size`, as upstream: check_int64 (here: down to -2^63, up
 * to the safe integers), then -1 or positive, else LLM_PARAM_INVALID.
 */
export function copySize(o: Oracle, v: unknown): number | Bad {
  const n = intIn(o, v, -(2 ** 63), Number.MAX_SAFE_INTEGER, -1);
  if (n !== BAD && n !== -1 && n <= 0) o.llm(S.LLM_PARAM_INVALID);
  return n;
}

export function uint64(o: Oracle, v: unknown, dflt?: bigint): bigint | Bad {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v === "bigint") {
    if (v < 0n || v > UINT64_MAX) {
      o.value();
      return BAD;
    }
    return v;
  }
  if (typeof v !== "number" || !Number.isInteger(v)) {
    o.type();
    return BAD;
  }
  if (v < 0 || !Number.isSafeInteger(v)) {
    o.value();
    return BAD;
  }
  return BigInt(v);
}

/** What `options` of the calls that wait does: undefined, or an object whose `signal` is an AbortSignal. */
export function callOptions(o: Oracle, v: unknown): { signal?: AbortSignal } | Bad {
  if (v === undefined) return {};
  if (typeof v !== "object" || v === null) {
    o.type();
    return BAD;
  }
  const signal = (v as { signal?: unknown }).signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    o.type();
    return BAD;
  }
  return { signal: signal as AbortSignal | undefined };
}

/** The reason the fuzz aborts signals with: the one non-library error a call may reject with. */
export class FuzzAbort extends Error {
  constructor() {
    super("aborted by the fuzz");
    this.name = "FuzzAbort";
  }
}

export type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Makes one public call: counts it, waits for it (with a hang watchdog) if it
 * returns a promise, and checks what came out against `expected`. Returns what
 * it settled with.
 */
export async function attempt(
  label: string,
  expected: Outcome[],
  invoke: () => unknown,
  returnsPromise: boolean,
): Promise<Settled> {
  counter.calls++;
  let settled: Settled;
  let result: unknown;
  try {
    result = invoke();
  } catch (error) {
    if (returnsPromise) {
      fail(`${label}: threw synchronously (${describeError(error)}) instead of returning a rejected promise`);
    }
    return check(label, expected, { ok: false, error });
  }
  if (returnsPromise) {
    if (!(result instanceof Promise)) fail(`${label}: returned ${show(result)}, not a promise`);
    settled = await watch(label, result);
  } else {
    settled = { ok: true, value: result };
  }
  return check(label, expected, settled);
}

/** Waits for a promise, failing if it takes longer than HANG_MS. */
export async function watch(label: string, promise: Promise<unknown>): Promise<Settled> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<Settled>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, error: HANG }), HANG_MS);
  });
  try {
    const settled = await Promise.race([
      promise.then((value): Settled => ({ ok: true, value }), (error): Settled => ({ ok: false, error })),
      hang,
    ]);
    if (!settled.ok && settled.error === HANG) fail(`${label}: did not settle within ${HANG_MS} ms (hang)`);
    return settled;
  } finally {
    clearTimeout(timer);
  }
}

const HANG = Symbol("hang");

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.constructor.name}: ${error.message}`;
  return show(error);
}

/** The outcome an error is, or undefined for one no call may produce. */
function classify(error: unknown, expected: Outcome[]): Outcome | undefined {
  for (const o of expected) if (o.k === "reason" && o.reason === error) return o;
  if (error instanceof LLMException) return { k: "llm", codes: [error.statusCode] };
  if (error instanceof ValueError) return { k: "value" };
  if (error instanceof TypeError) return { k: "type" };
  return undefined;
}

function matches(actual: Outcome, expected: Outcome): boolean {
  if (actual.k !== expected.k) return false;
  if (actual.k === "llm" && expected.k === "llm") return expected.codes.includes(actual.codes[0]);
  return true;
}

export function check(label: string, expected: Outcome[], settled: Settled): Settled {
  tally(label, settled);
  const wanted = expected.map(showOutcome).join(" or ");
  if (settled.ok) {
    if (!expected.some((o) => o.k === "ok")) fail(`${label}: succeeded, expected ${wanted}`);
    return settled;
  }
  const actual = classify(settled.error, expected);
  if (actual === undefined) {
    fail(`${label}: ${describeError(settled.error)} escaped — only TypeError, ValueError and LLMException may`);
  }
  if (!expected.some((o) => matches(actual, o))) {
    fail(`${label}: ${describeError(settled.error)}, expected ${wanted}`);
  }
  if (settled.error instanceof LLMException && !settled.error.message.startsWith(codeName(settled.error.statusCode))) {
    fail(`${label}: LLMException message does not start with its code's name: ${settled.error.message}`);
  }
  return settled;
}

/** A call whose outcome is certain: `expected` or the errors of `o`. */
export function expectations(o: Oracle, ifValid: Outcome[]): Outcome[] {
  return o.failed ? o.errors : ifValid;
}
