// "Any value": edge numbers, bigints, strings, foreign objects, and references to objects that exist only at run time.

import fc from "fast-check";
import { KvCache } from "../../../mod.ts";
import { type FuzzOptions, UINT64_MAX } from "./core.ts";

// ---------------------------------------------------------------------------
// "Any value", and references to objects that exist only at run time

/** Objects that exist only once a sequence runs, resolved by name. */
export type RefName =
  | "cacheP" // a live cache of the PROMPT (foreign to the DECODER)
  | "cacheD" // a live cache of the DECODER (foreign to the PROMPT)
  | "freedCache" // a deallocated cache
  | "outsiderCache" // a cache of a third instance, finalized
  | "derivedCache" // Object.create(a real cache): passes instanceof, has no private state
  | "proxyCache" // new Proxy(a real cache, {})
  | "protoFakeCache" // { cacheId: 1n, cacheDesc } with KvCache.prototype
  | "desc"
  | "key"
  | "keyById"
  | "cluster"
  | "config"
  | "tensor"
  | "manager"
  | "dd"
  | "signal"
  | "abortedSignal";

/** A reference to a run-time object, resolved when the command runs. */
export class Ref {
  constructor(readonly name: RefName) {}
  [fc.toStringMethod](): string {
    return `Ref(${this.name})`;
  }
  toString(): string {
    return `Ref(${this.name})`;
  }
}

const REF_NAMES: RefName[] = [
  "cacheP",
  "cacheD",
  "freedCache",
  "outsiderCache",
  "derivedCache",
  "proxyCache",
  "protoFakeCache",
  "desc",
  "key",
  "keyById",
  "cluster",
  "config",
  "tensor",
  "manager",
  "dd",
  "signal",
  "abortedSignal",
];

const SPECIAL_NUMBERS = [
  NaN,
  Infinity,
  -Infinity,
  -0,
  0,
  1,
  -1,
  0.5,
  -0.5,
  1.5,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31),
  -(2 ** 31) - 1,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 53 + 2,
  -(2 ** 53),
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  Number.EPSILON,
  1e300,
  -1e300,
  65535,
  65536,
  3000,
];

const SPECIAL_BIGINTS = [
  0n,
  1n,
  -1n,
  2n,
  2n ** 31n,
  2n ** 53n,
  2n ** 63n,
  UINT64_MAX,
  2n ** 64n,
  -(2n ** 64n),
  2n ** 100n,
];

const SPECIAL_STRINGS = [
  "",
  "0",
  "1",
  "-1",
  "1.5",
  "NaN",
  "abc",
  " 3 ",
  "127.0.0.1",
  "256.1.1.1",
  "1.2.3",
  "0x10",
  "\u0000",
  "🙂",
];

function fuzzFunction(): number {
  return 1;
}

const OBJECTS: unknown[] = [
  {},
  Object.create(null),
  { cacheId: 1n },
  { valueOf: () => 1 },
  { length: 2, 0: 1, 1: 2 },
  [],
  [1, 2],
  [0],
  [[1]],
  new Date(0),
  new Map(),
  new Set([1]),
  new Uint8Array(4),
  new Float64Array([1.5]),
  new Proxy({}, {}),
  /re/,
  new Error("e"),
  fuzzFunction,
  () => 1,
  class {},
  Symbol("fuzz"),
  Symbol.iterator,
];

// Arrays with holes: the known sparse-array bug (KNOWN_BUGS[0]).
export const SPARSE: unknown[] = [
  // deno-lint-ignore no-sparse-arrays
  [, 1],
  // deno-lint-ignore no-sparse-arrays
  [1, , 2],
  new Array(3),
];

/** A batch row relative to the cache it is used with: row `i` modulo its batch size. */
export class Row {
  constructor(readonly i: number) {}
  [fc.toStringMethod](): string {
    return `Row(${this.i})`;
  }
}

/** A Row becomes a valid row of a cache of `batchSize` rows; anything else is itself. */
export function rowOf(value: unknown, cache: unknown): unknown {
  if (!(value instanceof Row)) return value;
  const batch = cache instanceof KvCache ? cache.cacheDesc?.batchSize : undefined;
  return typeof batch === "number" && batch > 0 ? value.i % batch : 0;
}

/** A byte count within a row: 1 + `i` modulo the row's bytes (the whole row when `i` is -1). */
export class Part {
  constructor(readonly i: number) {}
  [fc.toStringMethod](): string {
    return `Part(${this.i})`;
  }
}

export function partOf(value: unknown, cache: unknown): unknown {
  if (!(value instanceof Part)) return value;
  const desc = cache instanceof KvCache ? cache.cacheDesc : undefined;
  const row = desc ? desc.size / desc.batchSize : 1;
  return value.i < 0 ? -1 : 1 + (value.i % row);
}

/** Whether `value` is an array with a hole (or holds one, one level down). */
export function hasHole(value: unknown): boolean {
  if (!Array.isArray(value)) return false;
  for (let i = 0; i < value.length; i++) if (!(i in value) || hasHole(value[i])) return true;
  return false;
}

/** Any value: every type, edge numbers, bigints, foreign and freed objects. */
export function anyValue(options: FuzzOptions = {}): fc.Arbitrary<unknown> {
  const scalar = fc.oneof(
    fc.constantFrom(...SPECIAL_NUMBERS),
    fc.integer({ min: -5, max: 70 }),
    fc.integer(),
    fc.double(),
    fc.constantFrom(...SPECIAL_BIGINTS),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
    fc.constantFrom(...SPECIAL_STRINGS),
    fc.string({ maxLength: 12 }),
    fc.constantFrom(null, undefined, true, false),
  ).filter((v) => options.knownBugs || !Object.is(v, -0)); // -0: KNOWN_BUGS[3]
  const arbs: fc.Arbitrary<unknown>[] = [
    scalar,
    scalar,
    scalar,
    fc.constantFrom(...OBJECTS),
    fc.array(scalar, { maxLength: 4 }),
    fc.constantFrom(...REF_NAMES).map((name) => new Ref(name)),
  ];
  if (options.knownBugs) arbs.push(fc.constantFrom(...SPARSE));
  return fc.oneof(...arbs);
}

/** Mostly `valid`, sometimes any value. */
export function slot<T>(valid: fc.Arbitrary<T>, any: fc.Arbitrary<unknown>, weight = 6): fc.Arbitrary<T | unknown> {
  return fc.oneof({ weight, arbitrary: valid }, { weight: 1, arbitrary: any });
}
