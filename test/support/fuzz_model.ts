// Property-based fuzzing of the whole public API (fast-check), shared by
// test/fuzz.test.ts (the short run in `npm test`) and bench/fuzz_long.ts (the
// long run). Runs unchanged on Deno, Bun and Node.
//
// - `sequenceProperty`, model-based: a PROMPT listening on 127.0.0.1:0 and a
//   DECODER (linked to it, or not) receive a random sequence of valid and invalid
//   calls — allocate (with and without keys), write through views, read, copy,
//   pull, remove keys, deallocate (also by `await using`'s dispose), link,
//   unlink, finalize late in the sequence, constructors, and bursts of cache
//   calls started together. A model keeps what the instances should hold — live
//   caches and the bytes written to them, cache keys, each pool's first-fit free
//   list, the link, finalization — and predicts every call's outcome: success,
//   or the errors its arguments and the state allow (TypeError, ValueError,
//   LLMException with given status codes). After every command every live cache
//   is read back with getCacheTensors and compared with the model, pool usage is
//   compared with the model's allocator, and kept views are checked (live ones
//   still show the bytes, revoked ones refuse access).
// - `statelessProperty`: constructors, setters and init() of fresh instances on
//   "any value"; `shortTimeoutProperty`: links that run out of time.
//
// Anything else that comes out (another error class, a synchronous throw from a
// promise-returning call, a call that does not settle, wrong data, a crash of
// the process) fails.
import fc from "fast-check";
import process from "node:process";
import {
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  DataType,
  KvCache,
  KvCacheManager,
  LLMClusterInfo,
  LLMConfig,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
  Placement,
  Tensor,
  type TensorData,
  ValueError,
} from "../../mod.ts";
import { freshClusterId } from "../helpers.ts";

// ---------------------------------------------------------------------------
// Runtime, counters, constants

/** The runtime this runs on. */
export const runtime: "deno" | "bun" | "node" = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "node";

/** Public calls made so far (constructors, setters, methods, getters that check something). */
export const counter = { calls: 0 };

/** How often each call ended each way ("P.pullCache → success"), for checking what a run covered. */
export const outcomes: Map<string, number> = new Map();

function tally(label: string, settled: Settled): void {
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
const canDetach = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === "function";

const S = LLMStatusCode;
const INT32_MIN = -0x80000000;
const INT32_MAX = 0x7FFFFFFF;
const UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFFn;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const POOL_ALIGN = 64;
/** Native limit on one tensor's bytes and on stride × numTensors (ffi/host/cache.c). */
const CACHE_BYTES_LIMIT = 1n << 62n;
/** A call that has not settled after this long is a hang. */
const HANG_MS = 30_000;
/** A key no cache ever holds: pulling it is the barrier that waits for the PROMPT. */
const BARRIER_REQ = UINT64_MAX;
/** Per-instance cache deadline: long enough that nothing valid times out on a loaded machine. */
const SYNC_KV_TIMEOUT = 10_000;

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

function fail(message: string): never {
  throw new FuzzFailure(message);
}

function show(value: unknown): string {
  try {
    const text = fc.stringify(value);
    return text.length > 400 ? text.slice(0, 400) + "…" : text;
  } catch {
    return String(typeof value);
  }
}

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
const SPARSE: unknown[] = [
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
function rowOf(value: unknown, cache: unknown): unknown {
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

function partOf(value: unknown, cache: unknown): unknown {
  if (!(value instanceof Part)) return value;
  const desc = cache instanceof KvCache ? cache.cacheDesc : undefined;
  const row = desc ? desc.size / desc.batchSize : 1;
  return value.i < 0 ? -1 : 1 + (value.i % row);
}

/** Whether `value` is an array with a hole (or holds one, one level down). */
function hasHole(value: unknown): boolean {
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
function slot<T>(valid: fc.Arbitrary<T>, any: fc.Arbitrary<unknown>, weight = 6): fc.Arbitrary<T | unknown> {
  return fc.oneof({ weight, arbitrary: valid }, { weight: 1, arbitrary: any });
}

// ---------------------------------------------------------------------------
// Outcomes

/** One outcome a call may have. */
export type Outcome =
  | { k: "ok" }
  | { k: "type" }
  | { k: "value" }
  | { k: "llm"; codes: number[] }
  | { k: "reason"; reason: unknown };

const OK: Outcome = { k: "ok" };

function codeName(code: number): string {
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
class Oracle {
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

const BAD = Symbol("bad argument");
type Bad = typeof BAD;

function intIn(o: Oracle, v: unknown, min: number, max: number, dflt?: number): number | Bad {
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

function int32(o: Oracle, v: unknown, dflt?: number): number | Bad {
  return intIn(o, v, INT32_MIN, INT32_MAX, dflt);
}

function uint64(o: Oracle, v: unknown, dflt?: bigint): bigint | Bad {
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
function callOptions(o: Oracle, v: unknown): { signal?: AbortSignal } | Bad {
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

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };

/**
 * Makes one public call: counts it, waits for it (with a hang watchdog) if it
 * returns a promise, and checks what came out against `expected`. Returns what
 * it settled with.
 */
async function attempt(
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
async function watch(label: string, promise: Promise<unknown>): Promise<Settled> {
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

function describeError(error: unknown): string {
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

function check(label: string, expected: Outcome[], settled: Settled): Settled {
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
function expectations(o: Oracle, ifValid: Outcome[]): Outcome[] {
  return o.failed ? o.errors : ifValid;
}

// ---------------------------------------------------------------------------
// The model

/** First-fit allocator with coalescing, as ffi/host/pool.c: the same on every device of an instance. */
class PoolModel {
  ranges: { off: number; len: number }[] = [];
  used = 0;
  constructor(readonly capacity: number) {
    const usable = Math.floor(capacity / POOL_ALIGN) * POOL_ALIGN;
    if (usable > 0) this.ranges.push({ off: 0, len: usable });
  }
  /** Where a block of `len` bytes would go, or undefined. */
  fit(len: number): number | undefined {
    return this.ranges.find((r) => r.len >= len)?.off;
  }
  alloc(len: number): number {
    const i = this.ranges.findIndex((r) => r.len >= len);
    if (i < 0) fail(`model: alloc of ${len} bytes that does not fit`);
    const r = this.ranges[i];
    const off = r.off;
    r.off += len;
    r.len -= len;
    if (r.len === 0) this.ranges.splice(i, 1);
    this.used += len;
    return off;
  }
  free(off: number, len: number): void {
    this.used -= len;
    let i = 0;
    while (i < this.ranges.length && this.ranges[i].off < off) i++;
    const prev = i > 0 ? this.ranges[i - 1] : undefined;
    const next = i < this.ranges.length ? this.ranges[i] : undefined;
    const joinsPrev = prev !== undefined && prev.off + prev.len === off;
    const joinsNext = next !== undefined && off + len === next.off;
    if (joinsPrev && joinsNext) {
      prev.len += len + next.len;
      this.ranges.splice(i, 1);
    } else if (joinsPrev) {
      prev.len += len;
    } else if (joinsNext) {
      next.off = off;
      next.len += len;
    } else {
      this.ranges.splice(i, 0, { off, len });
    }
  }
}

/** A desc as the model sees it. */
interface DescInfo {
  numTensors: number;
  shape: readonly number[];
  dataType: number;
  batchDimIndex: number;
  size: number;
  batchSize: number;
  /** Bytes per row when the batch is dimension 0. */
  rowBytes: number;
}

function descInfo(desc: CacheDesc): DescInfo {
  return {
    numTensors: desc.numTensors,
    shape: desc.shape,
    dataType: desc.dataType,
    batchDimIndex: desc.batchDimIndex,
    size: desc.size,
    batchSize: desc.batchSize,
    rowBytes: desc.size / desc.batchSize,
  };
}

/** Whether two descs are equal except in batch size (what copyCache and pulls need). */
function compatible(a: DescInfo, b: DescInfo): boolean {
  return a.numTensors === b.numTensors && a.dataType === b.dataType && a.batchDimIndex === b.batchDimIndex &&
    a.shape.length === b.shape.length && a.shape.every((dim, i) => i === a.batchDimIndex || dim === b.shape[i]);
}

/** One cache as the model knows it. */
interface CacheModel {
  inst: InstModel;
  kv: KvCache | undefined; // undefined while its allocation is in flight (bursts)
  id: bigint;
  desc: CacheDesc;
  info: DescInfo;
  idHeld: boolean;
  keysHeld: number;
  offset: number;
  block: number;
  stride: number;
  /** Expected bytes and which of them are known, per `d * numTensors + t`. */
  data: Uint8Array[];
  known: Uint8Array[];
  /** Views kept past the call that made them, with their TypedArrays. */
  kept: { view: Tensor; array: TensorData; d: number; t: number }[];
  /** Tensors with known bytes (checks read these, and the first and last). */
  touched: Set<number>;
}

/** One instance as the model knows it. */
interface InstModel {
  name: "P" | "D" | "O";
  dd: LLMDataDist;
  role: number;
  clusterId: bigint;
  devices: number[];
  poolBytes: number;
  finalized: boolean;
  pool: PoolModel;
  bases: (bigint | undefined)[];
  nextId: bigint;
  caches: CacheModel[];
  /** PROMPT: key → cache and row. */
  keys: Map<string, { cache: CacheModel; row: number }>;
  /** PROMPT: keys held once, consumed or removed since. */
  pastKeys: string[];
  port: number;
  /** DECODER: whether the link table holds a link to the PROMPT. */
  linked: boolean;
}

function keyString(cluster: bigint, req: bigint, model: bigint): string {
  return `${cluster}|${req}|${model}`;
}

function live(c: CacheModel): boolean {
  return c.idHeld && !c.inst.finalized && c.kv !== undefined;
}

function releaseIfUnused(c: CacheModel): void {
  if (!c.inst.finalized && !c.idHeld && c.keysHeld === 0 && c.block > 0) {
    c.inst.pool.free(c.offset, c.block);
    c.block = 0;
  }
}

/** What a value passed as a cache is. */
interface CacheArg {
  /** Passes `instanceof KvCache`. */
  isKv: boolean;
  /** A real handle (its private state works), not a derived or fake object. */
  genuine: boolean;
  /** The cache it is (or is derived from). */
  m?: CacheModel;
}

/** Setup of one sequence. */
export interface SequenceSetup {
  devices: number[];
  poolBytes: number;
  big: boolean;
  linked: boolean;
  finalizeAfter: number;
  /** Families of the caches allocated before the first command: a keyed one on the PROMPT and one like it on the DECODER. */
  prefill: number[];
}

/** Everything one sequence runs against: model and real system together. */
export class Ctx {
  P!: InstModel;
  D!: InstModel;
  step = 0;
  nextReq = 0;
  readonly classes = new WeakMap<object, CacheArg>();
  readonly setup: SequenceSetup;
  readonly options: FuzzOptions;
  deadPort = 0;
  outsider!: CacheModel;
  readonly extra: LLMDataDist[] = [];

  constructor(setup: SequenceSetup, options: FuzzOptions) {
    this.setup = setup;
    this.options = options;
  }

  inst(name: "P" | "D"): InstModel {
    return name === "P" ? this.P : this.D;
  }

  other(inst: InstModel): InstModel {
    return inst === this.P ? this.D : this.P;
  }

  register(c: CacheModel): void {
    this.classes.set(c.kv!, { isKv: true, genuine: true, m: c });
  }

  /** Classifies a value passed where a KvCache is expected. */
  cacheArg(value: unknown): CacheArg {
    if (!(value instanceof KvCache)) return { isKv: false, genuine: false };
    const known = this.classes.get(value);
    if (!known) fail(`model: a KvCache the model does not know: ${show(value)}`);
    return known;
  }

  /** Finalizes both instances and anything else this sequence made. */
  dispose(): void {
    for (const dd of [this.D?.dd, this.P?.dd, ...this.extra]) {
      try {
        dd?.finalize();
      } catch {
        // finalize never throws for a valid instance; this is cleanup after a failure
      }
    }
  }
}

async function openInst(name: "P" | "D", setup: SequenceSetup): Promise<InstModel> {
  const role = name === "P" ? LLMRole.PROMPT : LLMRole.DECODER;
  const clusterId = freshClusterId();
  const dd = new LLMDataDist(role, clusterId);
  const options: Record<string, string> = {
    "ge.exec.deviceId": setup.devices.join(";"),
    "ge.flowGraphMemMaxSize": String(setup.poolBytes),
    "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT),
  };
  if (name === "P") options["llm.listenIpInfo"] = "127.0.0.1:0";
  counter.calls += 2;
  await dd.init(options);
  return {
    name,
    dd,
    role,
    clusterId,
    devices: setup.devices,
    poolBytes: setup.poolBytes,
    finalized: false,
    pool: new PoolModel(setup.poolBytes),
    bases: setup.devices.map(() => undefined),
    nextId: 1n,
    caches: [],
    keys: new Map(),
    pastKeys: [],
    port: dd.listenPort,
    linked: false,
  };
}

// Process-wide fixtures: a port nobody listens on, and a cache of a finalized instance.
let fixtures: Promise<{ deadPort: number; outsider: CacheModel }> | undefined;

function processFixtures(): Promise<{ deadPort: number; outsider: CacheModel }> {
  fixtures ??= (async () => {
    const prompt = new LLMDataDist(LLMRole.PROMPT, freshClusterId());
    await prompt.init({ "ge.flowGraphMemMaxSize": "4096", "llm.listenIpInfo": "127.0.0.1:0" });
    const deadPort = prompt.listenPort;
    prompt.finalize();
    const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
    await dd.init({ "ge.flowGraphMemMaxSize": "4096" });
    const desc = new CacheDesc(1, [2, 4], DataType.DT_UINT8);
    const kv = await dd.kvCacheManager.allocateCache(desc);
    dd.finalize();
    const inst: InstModel = {
      name: "O",
      dd,
      role: LLMRole.DECODER,
      clusterId: dd.clusterId,
      devices: [0],
      poolBytes: 4096,
      finalized: true,
      pool: new PoolModel(4096),
      bases: [undefined],
      nextId: 2n,
      caches: [],
      keys: new Map(),
      pastKeys: [],
      port: 0,
      linked: false,
    };
    const outsider: CacheModel = {
      inst,
      kv,
      id: kv.cacheId,
      desc,
      info: descInfo(desc),
      idHeld: false,
      keysHeld: 0,
      offset: 0,
      block: 0,
      stride: 64,
      data: [],
      known: [],
      kept: [],
      touched: new Set(),
    };
    inst.caches.push(outsider);
    return { deadPort, outsider };
  })();
  return fixtures;
}

/** Opens the PROMPT and the DECODER of a sequence (and links them if the setup says so). */
export async function openCtx(setup: SequenceSetup, options: FuzzOptions): Promise<Ctx> {
  const ctx = new Ctx(setup, options);
  const { deadPort, outsider } = await processFixtures();
  ctx.deadPort = deadPort;
  ctx.outsider = outsider;
  ctx.classes.set(outsider.kv!, { isKv: true, genuine: true, m: outsider });
  try {
    ctx.P = await openInst("P", setup);
    ctx.D = await openInst("D", setup);
    if (setup.linked) {
      const cluster = clusterInfo(ctx, { id: "P", port: "P", ipAsInt: false });
      counter.calls++;
      const [status] = await ctx.D.dd.linkClusters([cluster], 5000);
      if (status !== S.LLM_SUCCESS) fail(`setup: link failed with ${codeName(status)}`);
      ctx.D.linked = true;
    }
    for (const [i, family] of setup.prefill.entries()) {
      const spec: DescSpec = { family, batch: 1 + (i % 4), batchDim: 0, placement: 1, seqLen: false };
      const desc = buildDesc(ctx, ctx.P, spec);
      await runPlan(planAlloc(ctx, ctx.P, desc, buildKeys(ctx, ctx.P, { fresh: 4 }, desc)));
      const like = buildDesc(ctx, ctx.D, { ...spec, batch: 4 - (i % 4) });
      await runPlan(planAlloc(ctx, ctx.D, like, undefined));
    }
  } catch (err) {
    ctx.dispose();
    throw err;
  }
  return ctx;
}

// ---------------------------------------------------------------------------
// Resolving generated arguments

/** Which cache a command means: among live or dead caches, of this or the other instance. */
export interface CachePick {
  /** "match": a live cache that can exchange rows with the other cache of the call (copies, pulls). */
  from: "live" | "dead" | "any" | "match";
  of: "same" | "other";
  i: number;
}

function pickFrom<T>(list: T[], i: number): T | undefined {
  return list.length === 0 ? undefined : list[i % list.length];
}

function pickCache(ctx: Ctx, inst: InstModel, pick: CachePick, matchTo?: DescInfo): CacheModel | undefined {
  const owner = pick.of === "same" ? inst : ctx.other(inst);
  const all = owner.caches.filter((c) => c.kv !== undefined);
  const list = pick.from === "live"
    ? all.filter(live)
    : pick.from === "dead"
    ? all.filter((c) => !live(c))
    : pick.from === "match"
    ? all.filter((c) => live(c) && matchTo !== undefined && c.info.batchDimIndex === 0 && compatible(c.info, matchTo))
    : all;
  return pickFrom(list, pick.i) ?? pickFrom(all.filter(live), pick.i) ?? pickFrom(all, pick.i);
}

/** Resolves a value: a Ref becomes its run-time object, anything else is itself. */
function resolve(ctx: Ctx, inst: InstModel, value: unknown): unknown {
  if (!(value instanceof Ref)) return value;
  const anyLive = (of: InstModel) => of.caches.find(live) ?? of.caches.find((c) => c.kv !== undefined);
  const base = anyLive(inst) ?? anyLive(ctx.other(inst)) ?? ctx.outsider;
  switch (value.name) {
    case "cacheP":
      return (anyLive(ctx.P) ?? ctx.outsider).kv;
    case "cacheD":
      return (anyLive(ctx.D) ?? ctx.outsider).kv;
    case "freedCache":
      return ([...ctx.P.caches, ...ctx.D.caches].find((c) => c.kv !== undefined && !live(c)) ?? ctx.outsider).kv;
    case "outsiderCache":
      return ctx.outsider.kv;
    case "derivedCache": {
      const derived = Object.create(base.kv!) as KvCache;
      ctx.classes.set(derived, { isKv: true, genuine: false, m: base });
      return derived;
    }
    case "proxyCache": {
      const proxy = new Proxy(base.kv!, {});
      ctx.classes.set(proxy, { isKv: true, genuine: false, m: base });
      return proxy;
    }
    case "protoFakeCache": {
      const fake = Object.setPrototypeOf({ cacheId: 1n, cacheDesc: base.desc }, KvCache.prototype) as KvCache;
      ctx.classes.set(fake, { isKv: true, genuine: false, m: base });
      return fake;
    }
    case "desc":
      return new CacheDesc(1, [2, 4], DataType.DT_UINT8);
    case "key":
      return new CacheKey(ctx.P.clusterId, 3n);
    case "keyById":
      return new CacheKeyByIdAndIndex(ctx.P.clusterId, 1n, 0);
    case "cluster":
      return clusterInfo(ctx, { id: "P", port: "P", ipAsInt: false });
    case "config":
      return new LLMConfig();
    case "tensor":
      return new Tensor([2], DataType.DT_UINT8, new Uint8Array(2));
    case "manager":
      return inst.dd.kvCacheManager;
    case "dd":
      return inst.dd;
    case "signal":
      return new AbortController().signal;
    case "abortedSignal": {
      const controller = new AbortController();
      controller.abort(new FuzzAbort());
      return controller.signal;
    }
  }
}

/** A cache argument: a pick among the model's caches, or any value. */
export type CacheSpec = { pick: CachePick } | { any: unknown };

function resolveCache(ctx: Ctx, inst: InstModel, spec: CacheSpec, matchTo?: DescInfo): unknown {
  if ("any" in spec) return resolve(ctx, inst, spec.any);
  const c = pickCache(ctx, inst, spec.pick, matchTo);
  return c ? c.kv : resolve(ctx, inst, new Ref("protoFakeCache"));
}

/** An options argument of the calls that wait. */
export type OptionsSpec = "none" | "empty" | "signal" | "aborted" | "abortSoon" | "badSignal" | { any: unknown };

interface ResolvedOptions {
  value: unknown;
  reason?: FuzzAbort;
  abortSoon?: () => void;
}

function resolveOptions(ctx: Ctx, inst: InstModel, spec: OptionsSpec): ResolvedOptions {
  if (typeof spec === "object") {
    const value = resolve(ctx, inst, spec.any);
    const signal = value instanceof AbortSignal ? undefined : (value as { signal?: unknown } | null)?.signal;
    return { value, reason: signal instanceof AbortSignal && signal.aborted ? signal.reason : undefined };
  }
  switch (spec) {
    case "none":
      return { value: undefined };
    case "empty":
      return { value: {} };
    case "signal":
      return { value: { signal: new AbortController().signal } };
    case "badSignal":
      return { value: { signal: { aborted: true } } };
    case "aborted": {
      const controller = new AbortController();
      const reason = new FuzzAbort();
      controller.abort(reason);
      return { value: { signal: controller.signal }, reason };
    }
    case "abortSoon": {
      const controller = new AbortController();
      const reason = new FuzzAbort();
      return { value: { signal: controller.signal }, reason, abortSoon: () => controller.abort(reason) };
    }
  }
}

// ---------------------------------------------------------------------------
// Bytes

/** Fills `bytes` with a pattern of `seed` (xorshift32). */
function fillPattern(bytes: Uint8Array, seed: number): void {
  let x = (seed | 0) || 0x9E3779B9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xFF;
  }
}

function bytesOf(array: TensorData): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Checks that `bytes` equal the model's known bytes of tensor `t` on device `d` of `c`. */
function compareBytes(label: string, c: CacheModel, d: number, t: number, bytes: Uint8Array): void {
  const slot = d * c.info.numTensors + t;
  const want = c.data[slot];
  const known = c.known[slot];
  if (bytes.length !== want.length) fail(`${label}: ${bytes.length} bytes, expected ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    if (known[i] && bytes[i] !== want[i]) {
      fail(
        `${label}: cache ${c.id} (${c.inst.name}) tensor ${t} device ${d}: byte ${i} is ${bytes[i]}, ` +
          `the model says ${want[i]} (wrong data)`,
      );
    }
  }
}

/** Copies `len` bytes of row data between caches' models, every tensor and device. */
function copyModel(dst: CacheModel, dstAt: number, src: CacheModel, srcAt: number, len: number): void {
  const devices = dst.inst.devices.length;
  for (const t of src.touched) dst.touched.add(t);
  for (let d = 0; d < devices; d++) {
    for (let t = 0; t < dst.info.numTensors; t++) {
      const to = d * dst.info.numTensors + t;
      const from = d * src.info.numTensors + t;
      const bytes = src.data[from].slice(srcAt, srcAt + len);
      const known = src.known[from].slice(srcAt, srcAt + len);
      dst.data[to].set(bytes, dstAt);
      dst.known[to].set(known, dstAt);
    }
  }
}

function forgetModel(c: CacheModel, at: number, len: number): void {
  for (const known of c.known) known.fill(0, at, at + len);
}

// ---------------------------------------------------------------------------
// Plans: a call's expected outcomes, the call, and what it does to the model

/** One call, planned against the model. */
interface Plan {
  label: string;
  expected: Outcome[];
  returnsPromise: boolean;
  invoke(): unknown;
  /** Updates the model for the outcome that came (called after it was checked). */
  apply(settled: Settled): void;
  /** The call's abort, for "abortSoon" options. */
  afterInvoke?: () => void;
  /**
   * Bursts: applies a certain success to the model before the call settles, so
   * that the calls started after it are planned against the state they will
   * meet. `apply` then only checks the value (reads, allocations).
   */
  preApply?: () => void;
}

async function runPlan(plan: Plan): Promise<Settled> {
  let invoked = false;
  const settled = await attempt(plan.label, plan.expected, () => {
    const result = plan.invoke();
    invoked = true;
    plan.afterInvoke?.();
    return result;
  }, plan.returnsPromise);
  if (!invoked) plan.afterInvoke?.();
  plan.apply(settled);
  return settled;
}

/** A desc argument: a valid desc from a family, or any value. */
export type DescSpec =
  | { family: number; batch: number; batchDim: 0 | 1; placement: 0 | 1; seqLen: boolean }
  | { like: number; batch: number }
  | { huge: "numTensors" | "dims" | "stride"; value: number }
  | { any: unknown };

/** Families of compatible descs (equal but for the batch): rows of various sizes and types. */
const FAMILIES: { numTensors: number; rest: number[]; dataType: number }[] = [
  { numTensors: 2, rest: [4], dataType: DataType.DT_UINT8 },
  { numTensors: 2, rest: [2, 8], dataType: DataType.DT_FLOAT16 },
  { numTensors: 1, rest: [3], dataType: DataType.DT_INT32 },
  { numTensors: 3, rest: [5], dataType: DataType.DT_FLOAT },
  { numTensors: 1, rest: [2, 2], dataType: DataType.DT_INT64 },
  { numTensors: 2, rest: [7], dataType: DataType.DT_BOOL },
  { numTensors: 1, rest: [33], dataType: DataType.DT_BF16 },
];
/** Big families: tensors of 256 KiB rows, so that 4 rows take the off-thread paths. */
const BIG_FAMILIES: { numTensors: number; rest: number[]; dataType: number }[] = [
  { numTensors: 1, rest: [256, 1024], dataType: DataType.DT_UINT8 },
  { numTensors: 2, rest: [64, 1024], dataType: DataType.DT_FLOAT },
];

function buildDesc(ctx: Ctx, inst: InstModel, spec: DescSpec): unknown {
  if ("any" in spec) return resolve(ctx, inst, spec.any);
  counter.calls++;
  if ("like" in spec) {
    // The desc of an existing cache with another batch size: rows to copy and pull. Mostly
    // one of the other instance's (a DECODER's cache like a PROMPT's keyed one), else any.
    const keyed = ctx.other(inst).caches.filter((c) => c.keysHeld > 0 || live(c));
    const all = [...ctx.P.caches, ...ctx.D.caches];
    const like = spec.like % 3 !== 0
      ? pickFrom(keyed, spec.like) ?? pickFrom(all, spec.like)
      : pickFrom(all, spec.like);
    if (like) {
      const d = like.desc;
      const shape = d.shape.map((n, i) => (i === d.batchDimIndex ? spec.batch : n));
      return new CacheDesc(d.numTensors, shape, d.dataType, d.placement, d.batchDimIndex, d.seqLenDimIndex);
    }
    return new CacheDesc(2, [spec.batch, 4], DataType.DT_UINT8);
  }
  if ("huge" in spec) {
    if (spec.huge === "numTensors") return new CacheDesc(Math.min(spec.value, INT32_MAX), [1, 4], DataType.DT_UINT8);
    if (spec.huge === "dims") return new CacheDesc(1, [1, spec.value], DataType.DT_UINT64);
    return new CacheDesc(Math.max(1, spec.value >>> 12), [1, 2 ** 40], DataType.DT_UINT8);
  }
  const families = ctx.setup.big ? [...FAMILIES, ...BIG_FAMILIES] : FAMILIES;
  const family = families[spec.family % families.length];
  const shape = spec.batchDim === 0
    ? [spec.batch, ...family.rest]
    : [family.rest[0], spec.batch, ...family.rest.slice(1)];
  const seqLen = spec.seqLen ? (spec.batchDim === 0 ? 1 : 0) : -1;
  return new CacheDesc(family.numTensors, shape, family.dataType as DataType, spec.placement, spec.batchDim, seqLen);
}

/** A keys argument of allocateCache. */
export type KeysSpec =
  | { fresh: number }
  | { keys: { req: number; model: number; cluster: "P" | "other" }[] }
  | { any: unknown }
  | { elements: unknown[] }
  | "none";

function buildKeys(ctx: Ctx, inst: InstModel, spec: KeysSpec, desc: unknown): unknown {
  if (spec === "none") return undefined;
  if ("any" in spec) return resolve(ctx, inst, spec.any);
  if ("fresh" in spec) {
    // Keys never used before, one per row from row 0 (at most the batch).
    const batch = desc instanceof CacheDesc ? desc.batchSize : 1;
    return Array.from({ length: Math.min(spec.fresh, batch) }, () => {
      counter.calls++;
      return new CacheKey(ctx.P.clusterId, BigInt(100 + ctx.nextReq++));
    });
  }
  if ("elements" in spec) return spec.elements.map((e) => resolve(ctx, inst, e));
  return spec.keys.map((k) => {
    counter.calls++;
    return new CacheKey(k.cluster === "P" ? ctx.P.clusterId : 7n, BigInt(k.req), BigInt(k.model));
  });
}

function planAlloc(
  ctx: Ctx,
  inst: InstModel,
  descValue: unknown,
  keysValue: unknown,
  options: ResolvedOptions = { value: undefined },
): Plan {
  const o = new Oracle();
  let info: DescInfo | undefined;
  if (!(descValue instanceof CacheDesc)) o.type();
  else info = descInfo(descValue);
  const opts = callOptions(o, options.value);
  let keys: CacheKey[] | undefined;
  if (keysValue === undefined) keys = [];
  else if (!Array.isArray(keysValue)) o.type();
  else if (keysValue.some((k, i) => !(i in keysValue) || !(k instanceof CacheKey)) || hasHole(keysValue)) o.type();
  else keys = keysValue as CacheKey[];
  if (info && keys) {
    if (keys.length > info.batchSize) o.llm(S.LLM_PARAM_INVALID);
    if (keys.length > 0 && info.batchDimIndex !== 0) o.llm(S.LLM_PARAM_INVALID);
  }
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (keys && keys.length > 0 && inst.role === LLMRole.DECODER) o.llm(S.LLM_PARAM_INVALID);
  if (opts !== BAD && opts.signal?.aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
  let expected: Outcome[] = o.errors;
  let stride = 0;
  let block = 0;
  const keyStrings = (keys ?? []).map((k) => keyString(k.promptClusterId, k.reqId, k.modelId));
  if (!o.failed && info) {
    const size = BigInt(info.size);
    const strideBig = (size + 63n) / 64n * 64n;
    if (size > CACHE_BYTES_LIMIT || strideBig > CACHE_BYTES_LIMIT / BigInt(info.numTensors)) {
      expected = [{ k: "llm", codes: [S.LLM_PARAM_INVALID] }];
    } else if (new Set(keyStrings).size !== keyStrings.length || keyStrings.some((k) => inst.keys.has(k))) {
      expected = [{ k: "llm", codes: [S.LLM_PARAM_INVALID] }];
    } else {
      stride = Number(strideBig);
      block = stride * info.numTensors;
      expected = inst.pool.fit(block) === undefined ? [{ k: "llm", codes: [S.LLM_DEVICE_OUT_OF_MEMORY] }] : [OK];
    }
  }
  let model: CacheModel | undefined;
  return {
    label: `${inst.name}.allocateCache(${show(descValue)}, ${show(keysValue)}, ${show(options.value)})`,
    expected,
    returnsPromise: true,
    invoke: () =>
      inst.dd.kvCacheManager.allocateCache(descValue as CacheDesc, keysValue as CacheKey[], options.value as never),
    apply: (settled) => {
      if (!settled.ok) return;
      const kv = settled.value;
      if (!model) model = reserve();
      model.kv = kv as KvCache;
      verifyAllocated(model, kv);
      ctx.register(model);
    },
    preApply: () => {
      model = reserve();
    },
  };

  function reserve(): CacheModel {
    const desc = descValue as CacheDesc;
    const offset = inst.pool.alloc(block);
    const slots = inst.devices.length * info!.numTensors;
    const c: CacheModel = {
      inst,
      kv: undefined,
      id: inst.nextId++,
      desc,
      info: info!,
      idHeld: true,
      keysHeld: keyStrings.length,
      offset,
      block,
      stride,
      data: Array.from({ length: slots }, () => new Uint8Array(info!.size)),
      known: Array.from({ length: slots }, () => new Uint8Array(info!.size)),
      kept: [],
      touched: new Set(),
    };
    keyStrings.forEach((k, row) => inst.keys.set(k, { cache: c, row }));
    inst.caches.push(c);
    return c;
  }
}

function verifyAllocated(c: CacheModel, kv: unknown): void {
  const label = `${c.inst.name}.allocateCache`;
  if (!(kv instanceof KvCache)) fail(`${label}: resolved to ${show(kv)}, not a KvCache`);
  if (kv.cacheId !== c.id) fail(`${label}: cacheId ${kv.cacheId}, the model expected ${c.id} (from 1, never reused)`);
  if (kv.cacheDesc !== c.desc) fail(`${label}: cacheDesc is not the desc given`);
  const addrs = kv.perDeviceTensorAddrs;
  if (addrs.length !== c.inst.devices.length) fail(`${label}: ${addrs.length} devices of addresses`);
  addrs.forEach((row, d) => {
    if (row.length !== c.info.numTensors) fail(`${label}: device ${d} has ${row.length} tensor addresses`);
    const base = c.inst.bases[d] ??= row[0] - BigInt(c.offset);
    row.forEach((addr, t) => {
      const want = base + BigInt(c.offset + t * c.stride);
      if (addr !== want) {
        fail(
          `${label}: device ${d} tensor ${t} at pool offset ${addr - base}, the model's first fit says ${want - base}`,
        );
      }
      if (addr % 64n !== 0n) fail(`${label}: address ${addr} is not 64-byte aligned`);
    });
  });
}

function planDealloc(
  ctx: Ctx,
  inst: InstModel,
  value: unknown,
  viaDispose: boolean,
  options: ResolvedOptions = { value: undefined },
): Plan {
  const o = new Oracle();
  const arg = ctx.cacheArg(value);
  let expected: Outcome[];
  if (viaDispose) {
    // Symbol.asyncDispose on a real handle: deallocates it if it is live, else does nothing.
    expected = [OK];
  } else {
    if (!arg.isKv) o.type();
    const opts = callOptions(o, options.value);
    if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
    if (opts !== BAD && opts.signal?.aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
    if (arg.isKv && !arg.genuine) o.type();
    if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
      o.llm(S.LLM_KV_CACHE_NOT_EXIST);
    }
    expected = expectations(o, [OK]);
  }
  const target = arg.m;
  let done = false;
  return {
    label: viaDispose
      ? `${target?.inst.name}.cache[Symbol.asyncDispose]()`
      : `${inst.name}.deallocateCache(${show(value)}, ${show(options.value)})`,
    expected,
    returnsPromise: true,
    invoke: () =>
      viaDispose
        ? (value as KvCache)[Symbol.asyncDispose]()
        : inst.dd.kvCacheManager.deallocateCache(value as KvCache, options.value as never),
    apply: (settled) => {
      if (settled.ok && target && !done) release();
    },
    preApply: () => release(),
  };

  function release(): void {
    done = true;
    if (!target || !live(target)) return;
    target.idHeld = false;
    releaseIfUnused(target);
  }
}

function planRead(ctx: Ctx, inst: InstModel, value: unknown, index: unknown, options: ResolvedOptions): Plan {
  const o = new Oracle();
  const arg = ctx.cacheArg(value);
  if (!arg.isKv) o.type();
  const t = int32(o, index, 0);
  const opts = callOptions(o, options.value);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (arg.isKv && t !== BAD && (t < 0 || t >= arg.m!.info.numTensors)) o.llm(S.LLM_PARAM_INVALID);
  const aborted = opts !== BAD && opts.signal?.aborted;
  if (aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
  if (arg.isKv && !arg.genuine) o.type();
  if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
    o.llm(S.LLM_KV_CACHE_NOT_EXIST);
  }
  let expected = expectations(o, [OK]);
  if (!o.failed && options.abortSoon) expected = [OK, { k: "reason", reason: options.reason }];
  // What the read must return: the model's bytes now (a burst changes the model before the read settles).
  const c = arg.m;
  const snapshot = !o.failed && c && t !== BAD
    ? c.inst.devices.map((_, d) => {
      const slot = d * c.info.numTensors + t;
      return { data: c.data[slot].slice(), known: c.known[slot].slice() };
    })
    : [];
  return {
    label: `${inst.name}.getCacheTensors(${show(value)}, ${show(index)}, ${show(options.value)})`,
    expected,
    returnsPromise: true,
    invoke: () => inst.dd.kvCacheManager.getCacheTensors(value as KvCache, index as number, options.value as never),
    afterInvoke: options.abortSoon,
    apply: (settled) => {
      if (!settled.ok) return;
      checkTensors(`${inst.name}.getCacheTensors`, c!, t as number, settled.value, false, snapshot);
    },
  };
}

/** Checks the tensors a read or a views call returned: one per device, shape, type, and the known bytes. */
function checkTensors(
  label: string,
  c: CacheModel,
  t: number,
  value: unknown,
  views: boolean,
  snapshot?: { data: Uint8Array; known: Uint8Array }[],
): Tensor[] {
  if (!Array.isArray(value)) fail(`${label}: returned ${show(value)}, not an array`);
  const devices = c.inst.devices;
  if (value.length !== devices.length) fail(`${label}: ${value.length} tensors for ${devices.length} devices`);
  value.forEach((tensor: unknown, d) => {
    if (!(tensor instanceof Tensor)) fail(`${label}: element ${d} is not a Tensor`);
    if (tensor.deviceId !== devices[d]) fail(`${label}: tensor ${d} has deviceId ${tensor.deviceId}`);
    if (tensor.dataType !== c.info.dataType) fail(`${label}: dataType ${tensor.dataType}`);
    if (tensor.shape.length !== c.info.shape.length || tensor.shape.some((n, i) => n !== c.info.shape[i])) {
      fail(`${label}: shape [${tensor.shape}], expected [${c.info.shape}]`);
    }
    if (tensor.revoked) fail(`${label}: a fresh tensor is revoked`);
    if (tensor.byteLength !== c.info.size) fail(`${label}: byteLength ${tensor.byteLength}, expected ${c.info.size}`);
    const bytes = bytesOf(tensor.data);
    if (snapshot) {
      const { data, known } = snapshot[d];
      for (let i = 0; i < data.length; i++) {
        if (known[i] && bytes[i] !== data[i]) {
          fail(
            `${label}: cache ${c.id} (${c.inst.name}) tensor ${t} device ${d}: byte ${i} is ${bytes[i]}, ` +
              `the model says ${data[i]} (wrong data)`,
          );
        }
      }
    } else {
      compareBytes(label, c, d, t, bytes);
    }
    if (!views && tensor.data.buffer.byteLength < c.info.size) fail(`${label}: copy's buffer is too small`);
  });
  return value as Tensor[];
}

function planCopy(
  ctx: Ctx,
  inst: InstModel,
  dstValue: unknown,
  srcValue: unknown,
  args: { dstBatch: unknown; srcBatch: unknown; offset: unknown; size: unknown },
  options: ResolvedOptions,
): Plan {
  const o = new Oracle();
  const dst = ctx.cacheArg(dstValue);
  const src = ctx.cacheArg(srcValue);
  if (!dst.isKv) o.type();
  if (!src.isKv) o.type();
  const dstBatch = int32(o, args.dstBatch, 0);
  const srcBatch = int32(o, args.srcBatch, 0);
  const offset = intIn(o, args.offset, 0, MAX_SAFE, 0);
  const size = intIn(o, args.size, -1, MAX_SAFE, -1);
  if (size === 0) o.value();
  const opts = callOptions(o, options.value);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  let bytes = 0;
  let row = 0;
  if (dst.isKv && src.isKv) {
    const d = dst.m!.info;
    const s = src.m!.info;
    row = d.rowBytes;
    if (!compatible(d, s) || d.batchDimIndex !== 0) o.llm(S.LLM_PARAM_INVALID);
    if (dstBatch !== BAD && (dstBatch < 0 || dstBatch >= d.batchSize)) o.llm(S.LLM_PARAM_INVALID);
    if (srcBatch !== BAD && (srcBatch < 0 || srcBatch >= s.batchSize)) o.llm(S.LLM_PARAM_INVALID);
    if (offset !== BAD && size !== BAD && size !== 0) {
      bytes = size === -1 ? row - offset : size;
      if (offset >= row || offset + bytes > row) o.llm(S.LLM_PARAM_INVALID);
    }
  }
  if (opts !== BAD && opts.signal?.aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
  for (const arg of [dst, src]) {
    if (arg.isKv && !arg.genuine) o.type();
    if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
      o.llm(S.LLM_KV_CACHE_NOT_EXIST);
    }
  }
  // The native side refuses a copy of a row onto itself (overlapping ranges of one cache).
  const overlap = !o.failed && dst.m === src.m && dstBatch === srcBatch;
  let expected = expectations(o, overlap ? [{ k: "llm", codes: [S.LLM_PARAM_INVALID] }] : [OK]);
  // Aborted just after the call: a copy that runs off the JavaScript thread may
  // reject with the reason before its own outcome (the native refusal included).
  if (!o.failed && options.abortSoon) expected = [...expected, { k: "reason", reason: options.reason }];
  const valid = !o.failed && !overlap;
  let done = false;
  return {
    label: `${inst.name}.copyCache(${show(dstValue)}, ${show(srcValue)}, ${show(args.dstBatch)}, ` +
      `${show(args.srcBatch)}, ${show(args.offset)}, ${show(args.size)}, ${show(options.value)})`,
    expected,
    returnsPromise: true,
    invoke: () =>
      inst.dd.kvCacheManager.copyCache(
        dstValue as KvCache,
        srcValue as KvCache,
        args.dstBatch as number,
        args.srcBatch as number,
        args.offset as number,
        args.size as number,
        options.value as never,
      ),
    afterInvoke: options.abortSoon,
    apply: (settled) => {
      if (!valid || done) return;
      const at = (dstBatch as number) * row + (offset as number);
      if (settled.ok) copyModel(dst.m!, at, src.m!, (srcBatch as number) * row + (offset as number), bytes);
      else forgetModel(dst.m!, at, bytes); // aborted while copying: those bytes are unknown now
    },
    preApply: () => {
      done = true;
      copyModel(
        dst.m!,
        (dstBatch as number) * row + (offset as number),
        src.m!,
        (srcBatch as number) * row + (offset as number),
        bytes,
      );
    },
  };
}

// ---------------------------------------------------------------------------
// Cluster infos, links

/** A cluster to link to: the PROMPT's id or another, at the PROMPT's port, a dead one, port 0, or no address. */
export interface ClusterSpec {
  id: "P" | "wrong";
  port: "P" | "dead" | "zero" | "none";
  ipAsInt: boolean;
}

function clusterInfo(ctx: Ctx, spec: ClusterSpec): LLMClusterInfo {
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = spec.id === "P" ? ctx.P.clusterId : ctx.P.clusterId + 1_000_000n;
  cluster.remoteRoleType = LLMRole.PROMPT;
  counter.calls += 3;
  if (spec.port !== "none") {
    const port = spec.port === "P" ? ctx.P.port : spec.port === "dead" ? ctx.deadPort : 0;
    cluster.appendRemoteIpInfo(spec.ipAsInt ? 0x7F000001 : "127.0.0.1", port);
    counter.calls++;
  }
  return cluster;
}

/** What a cluster info (made by the fuzz) points at. */
function specOf(ctx: Ctx, info: LLMClusterInfo): ClusterSpec {
  const remote = info.remoteIpInfoList[0];
  const port = remote === undefined ? "none" : remote.port === 0 ? "zero" : remote.port === ctx.P.port ? "P" : "dead";
  if (port === "dead" && remote!.port !== ctx.deadPort) {
    fail(`model: a cluster info at an unknown port ${remote!.port}`);
  }
  return { id: info.remoteClusterId === ctx.P.clusterId ? "P" : "wrong", port, ipAsInt: false };
}

/** What linkClusters / unlinkClusters may answer for each cluster. */
function checkStatuses(
  label: string,
  value: unknown,
  allowed: number[][],
  exactlyOne: { indexes: number[]; status: number } | undefined,
): number[] {
  if (!Array.isArray(value) || value.length !== 2 || !Array.isArray(value[1])) {
    fail(`${label}: returned ${show(value)}, not [status, statuses]`);
  }
  const [overall, statuses] = value as [number, number[]];
  if (statuses.length !== allowed.length) fail(`${label}: ${statuses.length} statuses for ${allowed.length} clusters`);
  statuses.forEach((s, i) => {
    if (!allowed[i].includes(s)) {
      fail(`${label}: cluster ${i} status ${codeName(s)}, expected ${allowed[i].map(codeName).join(" or ")}`);
    }
  });
  const first = statuses.find((s) => s !== S.LLM_SUCCESS) ?? S.LLM_SUCCESS;
  if (overall !== first) {
    fail(`${label}: overall status ${codeName(overall)} but per-cluster ${statuses.map(codeName)}`);
  }
  if (exactlyOne && exactlyOne.indexes.length > 0) {
    const n = exactlyOne.indexes.filter((i) => statuses[i] === exactlyOne.status).length;
    if (n !== 1) fail(`${label}: ${n} clusters got ${codeName(exactlyOne.status)}, expected exactly one`);
  }
  return statuses;
}

/** A clusters argument: specs to build, or any value. */
export type ClustersSpec = { specs: ClusterSpec[] } | { many: number } | { any: unknown } | { elements: unknown[] };

function buildClusters(ctx: Ctx, inst: InstModel, spec: ClustersSpec): { value: unknown; specs?: ClusterSpec[] } {
  if ("any" in spec) return { value: resolve(ctx, inst, spec.any) };
  if ("elements" in spec) return { value: spec.elements.map((e) => resolve(ctx, inst, e)) };
  if ("many" in spec) {
    const specs = Array.from({ length: spec.many }, (): ClusterSpec => ({ id: "wrong", port: "dead", ipAsInt: false }));
    return { value: specs.map((s) => clusterInfo(ctx, s)), specs };
  }
  return { value: spec.specs.map((s) => clusterInfo(ctx, s)), specs: spec.specs };
}

function checkClustersArg(o: Oracle, clusters: unknown, timeout: unknown): LLMClusterInfo[] | undefined {
  let list: LLMClusterInfo[] | undefined;
  if (!Array.isArray(clusters)) o.type();
  else if (hasHole(clusters) || clusters.some((c) => !(c instanceof LLMClusterInfo))) o.type();
  else list = clusters;
  intIn(o, timeout, 1, INT32_MAX, 3000);
  if (Array.isArray(clusters) && clusters.length > 16) o.llm(S.LLM_CLUSTER_NUM_EXCEED_LIMIT);
  return list;
}

async function doLink(ctx: Ctx, inst: InstModel, clustersSpec: ClustersSpec, timeout: unknown): Promise<void> {
  const { value, specs } = buildClusters(ctx, inst, clustersSpec);
  const o = new Oracle();
  const list = checkClustersArg(o, value, timeout);
  if (list && list.some((c) => c.remoteIpInfoList.length === 0)) o.value();
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role === LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID);
  const label = `${inst.name}.linkClusters(${specs ? show(specs) : show(value)}, ${show(timeout)})`;
  const P = ctx.P;
  // Per-cluster outcomes, when the call gets that far (only specs reach the native side here).
  let allowed: number[][] = [];
  let exactlyOne: { indexes: number[]; status: number } | undefined;
  if (!o.failed) {
    const specs = list!.map((info) => specOf(ctx, info));
    const linkable = specs.map((s, i) => (s.id === "P" && s.port === "P" && !P.finalized ? i : -1)).filter((i) =>
      i >= 0
    );
    allowed = specs.map((s): number[] => {
      if (s.port === "zero") return [S.LLM_PARAM_INVALID];
      if (s.id === "wrong") return [S.LLM_LINK_FAILED];
      if (inst.linked) return P.finalized ? [S.LLM_ALREADY_LINK, S.LLM_LINK_FAILED] : [S.LLM_ALREADY_LINK];
      if (P.finalized) return [S.LLM_LINK_FAILED];
      if (s.port === "P") return [S.LLM_SUCCESS, S.LLM_ALREADY_LINK];
      return linkable.length > 0 ? [S.LLM_LINK_FAILED, S.LLM_ALREADY_LINK] : [S.LLM_LINK_FAILED];
    });
    if (!inst.linked) exactlyOne = { indexes: linkable, status: S.LLM_SUCCESS };
  }
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.linkClusters(value as LLMClusterInfo[], timeout as number),
    true,
  );
  if (settled.ok) {
    const statuses = checkStatuses(label, settled.value, allowed, exactlyOne);
    if (statuses.includes(S.LLM_SUCCESS)) inst.linked = true;
  }
}

async function doUnlink(
  ctx: Ctx,
  inst: InstModel,
  clustersSpec: ClustersSpec,
  timeout: unknown,
  force: unknown,
): Promise<void> {
  const { value, specs } = buildClusters(ctx, inst, clustersSpec);
  const o = new Oracle();
  checkClustersArg(o, value, timeout);
  if (force !== undefined && typeof force !== "boolean") o.type();
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role === LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID);
  const label = `${inst.name}.unlinkClusters(${specs ? show(specs) : show(value)}, ${show(timeout)}, ${show(force)})`;
  let allowed: number[][] = [];
  let exactlyOne: { indexes: number[]; status: number } | undefined;
  let mine: number[] = [];
  if (!o.failed) {
    const specs = (value as LLMClusterInfo[]).map((info) => specOf(ctx, info));
    mine = specs.map((s, i) => (s.id === "P" ? i : -1)).filter((i) => i >= 0);
    const done = !ctx.P.finalized || force === true ? S.LLM_SUCCESS : S.LLM_UNLINK_FAILED;
    allowed = specs.map((s) => (s.id === "P" && inst.linked ? [done, S.LLM_NOT_YET_LINK] : [S.LLM_NOT_YET_LINK]));
    if (inst.linked) exactlyOne = { indexes: mine, status: done };
  }
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.unlinkClusters(value as LLMClusterInfo[], timeout as number, force as boolean),
    true,
  );
  if (settled.ok) {
    checkStatuses(label, settled.value, allowed, exactlyOne);
    if (mine.length > 0) inst.linked = false;
  }
}

// ---------------------------------------------------------------------------
// Pulls and keys

/** A key argument of pullCache / removeCacheKey. */
export type KeySpec =
  | { kind: "held"; i: number }
  | { kind: "past"; i: number }
  | { kind: "key"; cluster: "P" | "other"; req: number; model: number }
  | { kind: "byId"; cluster: "P" | "other"; cache: number; row: number }
  | { any: unknown };

function buildKey(ctx: Ctx, inst: InstModel, spec: KeySpec): unknown {
  if ("any" in spec) return resolve(ctx, inst, spec.any);
  if (spec.kind === "held" || spec.kind === "past") {
    // One of the keys the PROMPT holds now, or held once.
    const names = spec.kind === "held" ? [...ctx.P.keys.keys()] : ctx.P.pastKeys;
    const name = pickFrom(names, spec.i) ?? keyString(ctx.P.clusterId, 0n, 0n);
    const [cluster, req, model] = name.split("|").map(BigInt);
    counter.calls++;
    return new CacheKey(cluster, req, model);
  }
  const cluster = spec.cluster === "P" ? ctx.P.clusterId : 7n;
  counter.calls++;
  if (spec.kind === "key") return new CacheKey(cluster, BigInt(spec.req), BigInt(spec.model));
  // By id: one of the PROMPT's cache ids (live or not), or one never used.
  const ids = ctx.P.caches.map((c) => c.id);
  const id = spec.cache < ids.length ? ids[spec.cache] : BigInt(1000 + spec.cache);
  return new CacheKeyByIdAndIndex(cluster, id, spec.row);
}

async function doPull(
  ctx: Ctx,
  inst: InstModel,
  keyValue: unknown,
  cacheSpec: CacheSpec,
  batchSpec: unknown,
  sizeSpec: unknown,
  options: ResolvedOptions,
): Promise<void> {
  const cacheValue = resolveCache(ctx, inst, cacheSpec, pullSource(ctx, keyValue)?.cache.info);
  const batch = rowOf(resolve(ctx, inst, batchSpec), cacheValue);
  const size = partOf(resolve(ctx, inst, sizeSpec), cacheValue);
  const o = new Oracle();
  const byKey = keyValue instanceof CacheKey;
  const byId = keyValue instanceof CacheKeyByIdAndIndex;
  if (!byKey && !byId) o.type();
  const arg = ctx.cacheArg(cacheValue);
  if (!arg.isKv) o.type();
  const b = int32(o, batch, 0);
  const n = intIn(o, size, -1, MAX_SAFE, -1);
  if (n === 0) o.value();
  const opts = callOptions(o, options.value);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role === LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID);
  const info = arg.m?.info;
  if (arg.isKv && info) {
    if (info.batchDimIndex !== 0) o.llm(S.LLM_PARAM_INVALID);
    if (b !== BAD && (b < 0 || b >= info.batchSize)) o.llm(S.LLM_PARAM_INVALID);
    if (n !== BAD && n > info.rowBytes) o.llm(S.LLM_PARAM_INVALID);
  }
  if (opts !== BAD && opts.signal?.aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
  if (arg.isKv && !arg.genuine) o.type();
  if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
    o.llm(S.LLM_KV_CACHE_NOT_EXIST);
  }
  // The native side, for a valid call.
  const P = ctx.P;
  let expected: Outcome[] = o.errors;
  let source: { cache: CacheModel; row: number; key?: string } | undefined;
  let reachesPrompt = false;
  if (!o.failed) {
    const k = keyValue as CacheKey | CacheKeyByIdAndIndex;
    const cluster = byKey ? (k as CacheKey).promptClusterId : (k as CacheKeyByIdAndIndex).clusterId;
    if (cluster !== P.clusterId || !inst.linked) {
      expected = [{ k: "llm", codes: [S.LLM_NOT_YET_LINK] }];
    } else if (P.finalized) {
      expected = [{ k: "llm", codes: [S.LLM_LINK_FAILED, S.LLM_NOT_YET_LINK] }];
    } else {
      reachesPrompt = true;
      const param = { k: "llm", codes: [S.LLM_PARAM_INVALID] } as Outcome;
      const notExist = { k: "llm", codes: [S.LLM_KV_CACHE_NOT_EXIST] } as Outcome;
      if (byKey) {
        const key = k as CacheKey;
        const name = keyString(key.promptClusterId, key.reqId, key.modelId);
        const entry = P.keys.get(name);
        if (entry) source = { ...entry, key: name };
        else expected = [notExist];
      } else {
        const key = k as CacheKeyByIdAndIndex;
        const cache = P.caches.find((c) => c.id === key.cacheId && c.idHeld);
        if (!cache) expected = [notExist];
        else if (key.batchIndex >= (cache.info.batchDimIndex === 0 ? cache.info.batchSize : 1)) expected = [param];
        else source = { cache, row: key.batchIndex };
      }
      if (source) {
        const s = source.cache.info;
        const rowsMatch = s.batchDimIndex === 0 && s.rowBytes === info!.rowBytes;
        expected = compatible(s, info!) && rowsMatch ? [OK] : [param];
        if (expected[0] !== OK) source = undefined;
      }
    }
  }
  const label = `${inst.name}.pullCache(${show(keyValue)}, ${show(cacheValue)}, ${show(batch)}, ${show(size)}, ` +
    `${show(options.value)})`;
  const settled = await attempt(
    label,
    expected,
    () =>
      inst.dd.kvCacheManager.pullCache(
        keyValue as CacheKey,
        cacheValue as KvCache,
        batch as number,
        size as number,
        options.value as never,
      ),
    true,
  );
  if (settled.ok && source) {
    const dst = arg.m!;
    const bytes = n === -1 ? info!.rowBytes : (n as number);
    copyModel(dst, (b as number) * info!.rowBytes, source.cache, source.row * source.cache.info.rowBytes, bytes);
    if (source.key) {
      P.keys.delete(source.key);
      P.pastKeys.push(source.key);
      source.cache.keysHeld--;
      releaseIfUnused(source.cache);
    }
  }
  if (reachesPrompt) await barrier(ctx, inst, arg.m!);
}

/** The PROMPT's cache and row a key names now, if any (whatever the link). */
function pullSource(ctx: Ctx, key: unknown): { cache: CacheModel; row: number } | undefined {
  if (key instanceof CacheKey) return ctx.P.keys.get(keyString(key.promptClusterId, key.reqId, key.modelId));
  if (key instanceof CacheKeyByIdAndIndex) {
    const cache = ctx.P.caches.find((c) => c.id === key.cacheId && c.idHeld);
    return cache ? { cache, row: key.batchIndex } : undefined;
  }
  return undefined;
}

/**
 * Waits until the PROMPT has handled everything this DECODER's pull sent: a
 * pull's DONE (which consumes the key and unpins the cache) goes out without an
 * answer, and the PROMPT handles a connection's messages in order, so the answer
 * to a look-up of a key nobody holds comes after it.
 */
async function barrier(ctx: Ctx, inst: InstModel, cache: CacheModel): Promise<void> {
  const key = new CacheKey(ctx.P.clusterId, BARRIER_REQ, BARRIER_REQ);
  counter.calls++;
  await attempt(
    `${inst.name}.pullCache(barrier key, cache ${cache.id})`,
    [{ k: "llm", codes: [S.LLM_KV_CACHE_NOT_EXIST] }],
    () => inst.dd.kvCacheManager.pullCache(key, cache.kv!, 0),
    true,
  );
}

async function doRemoveKey(inst: InstModel, keyValue: unknown, options: ResolvedOptions): Promise<void> {
  const o = new Oracle();
  if (!(keyValue instanceof CacheKey)) o.type();
  const opts = callOptions(o, options.value);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (opts !== BAD && opts.signal?.aborted && options.reason) o.errors.push({ k: "reason", reason: options.reason });
  let name = "";
  let expected = o.errors;
  if (!o.failed) {
    const key = keyValue as CacheKey;
    name = keyString(key.promptClusterId, key.reqId, key.modelId);
    expected = inst.keys.has(name) ? [OK] : [{ k: "llm", codes: [S.LLM_KV_CACHE_NOT_EXIST] }];
  }
  const settled = await attempt(
    `${inst.name}.removeCacheKey(${show(keyValue)}, ${show(options.value)})`,
    expected,
    () => inst.dd.kvCacheManager.removeCacheKey(keyValue as CacheKey, options.value as never),
    true,
  );
  if (settled.ok) {
    const entry = inst.keys.get(name)!;
    inst.keys.delete(name);
    inst.pastKeys.push(name);
    entry.cache.keysHeld--;
    releaseIfUnused(entry.cache);
  }
}

// ---------------------------------------------------------------------------
// Views and writes

async function doWrite(
  ctx: Ctx,
  inst: InstModel,
  value: unknown,
  index: unknown,
  write: { device: number; start: number; length: number; seed: number; keep: boolean },
): Promise<void> {
  const o = new Oracle();
  const arg = ctx.cacheArg(value);
  if (!arg.isKv) o.type();
  const t = int32(o, index, 0);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (arg.isKv && t !== BAD && (t < 0 || t >= arg.m!.info.numTensors)) o.llm(S.LLM_PARAM_INVALID);
  if (arg.isKv && !arg.genuine) o.type();
  if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
    o.llm(S.LLM_KV_CACHE_NOT_EXIST);
  }
  const label = `${inst.name}.getCacheTensorViews(${show(value)}, ${show(index)})`;
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.kvCacheManager.getCacheTensorViews(value as KvCache, index as number),
    false,
  );
  if (!settled.ok) return;
  const c = arg.m!;
  const views = checkTensors(label, c, t as number, settled.value, true);
  // Write a seeded pattern into a range of one device's view; the model follows.
  const d = write.device % views.length;
  const size = c.info.size;
  const start = write.start % size;
  const length = 1 + (write.length % (size - start));
  const view = views[d];
  const array = view.data;
  const pattern = new Uint8Array(length);
  fillPattern(pattern, write.seed);
  bytesOf(array).set(pattern, start);
  const slot = d * c.info.numTensors + (t as number);
  c.data[slot].set(pattern, start);
  c.known[slot].fill(1, start, start + length);
  c.touched.add(t as number);
  if (write.keep) {
    c.kept.push({ view, array, d, t: t as number });
    if (c.kept.length > 3) c.kept.shift();
  }
}

// ---------------------------------------------------------------------------
// Finalize, and the small calls

function doFinalize(inst: InstModel, viaDispose: boolean): Promise<void> | void {
  counter.calls++;
  const label = `${inst.name}.${viaDispose ? "[Symbol.asyncDispose]" : "finalize"}()`;
  const done = () => {
    inst.finalized = true;
    for (const c of inst.caches) c.block = 0;
    inst.keys.clear();
  };
  if (viaDispose) {
    return attempt(label, [OK], () => inst.dd[Symbol.asyncDispose](), true).then(done);
  }
  return attempt(label, [OK], () => inst.dd.finalize(), false).then(done);
}

export type MiscSpec = "poolUsage" | "isInitialized" | "listenPort" | "initAgain" | "role";

async function doMisc(ctx: Ctx, inst: InstModel, what: MiscSpec, any: unknown): Promise<void> {
  const label = `${inst.name}.${what}`;
  switch (what) {
    case "poolUsage":
      await checkPoolUsage(inst);
      return;
    case "isInitialized": {
      const settled = await attempt(label, [OK], () => inst.dd.kvCacheManager.isInitialized(), false);
      if (settled.ok && settled.value !== !inst.finalized) {
        fail(`${label}: ${settled.value} after finalized=${inst.finalized}`);
      }
      return;
    }
    case "listenPort": {
      const settled = await attempt(label, [OK], () => inst.dd.listenPort, false);
      const want = inst.finalized ? 0 : inst.port;
      if (settled.ok && settled.value !== want) fail(`${label}: ${settled.value}, expected ${want}`);
      return;
    }
    case "initAgain": {
      const code = inst.finalized ? S.LLM_ENGINE_FINALIZED : S.LLM_FAILED;
      await attempt(
        `${label}(${show(any)})`,
        [{ k: "llm", codes: [code] }],
        () => inst.dd.init(resolve(ctx, inst, any) as never),
        true,
      );
      return;
    }
    case "role": {
      const settled = await attempt(label, [OK], () => [inst.dd.role, inst.dd.clusterId], false);
      const [role, clusterId] = settled.ok ? settled.value as [number, bigint] : [0, 0n];
      if (role !== inst.role || clusterId !== inst.clusterId) fail(`${label}: role ${role} cluster ${clusterId}`);
      return;
    }
  }
}

async function checkPoolUsage(inst: InstModel): Promise<void> {
  const label = `${inst.name}.poolUsage()`;
  const expected: Outcome[] = inst.finalized ? [{ k: "llm", codes: [S.LLM_ENGINE_FINALIZED] }] : [OK];
  const settled = await attempt(label, expected, () => inst.dd.kvCacheManager.poolUsage(), false);
  if (!settled.ok) return;
  const usage = settled.value as { deviceId: number; usedBytes: number; capacityBytes: number }[];
  if (!Array.isArray(usage) || usage.length !== inst.devices.length) fail(`${label}: ${show(usage)}`);
  usage.forEach((u, d) => {
    if (u.deviceId !== inst.devices[d] || u.capacityBytes !== inst.poolBytes || u.usedBytes !== inst.pool.used) {
      fail(
        `${label}: device ${d} is ${show(u)}, the model says ` +
          `{deviceId: ${inst.devices[d]}, usedBytes: ${inst.pool.used}, capacityBytes: ${inst.poolBytes}}`,
      );
    }
  });
}

// ---------------------------------------------------------------------------
// After every command: every live cache reads back what the model says

async function verifyAll(ctx: Ctx): Promise<void> {
  for (const inst of [ctx.P, ctx.D]) {
    await checkPoolUsage(inst);
    for (const c of inst.caches) {
      if (live(c)) {
        for (const t of new Set([0, ...c.touched, c.info.numTensors - 1])) {
          const label = `check: ${inst.name}.getCacheTensors(cache ${c.id}, ${t})`;
          const settled = await attempt(label, [OK], () => inst.dd.kvCacheManager.getCacheTensors(c.kv!, t), true);
          if (settled.ok) checkTensors(label, c, t, settled.value, false);
        }
        for (const { view, d, t } of c.kept) {
          counter.calls++;
          if (view.revoked) fail(`check: a view of live cache ${c.id} (${inst.name}) is revoked`);
          compareBytes(`check: kept view of cache ${c.id}`, c, d, t, bytesOf(view.data));
        }
      } else if (c.kept.length > 0) {
        for (const { view, array } of c.kept) {
          counter.calls++;
          if (!view.revoked) fail(`check: a view of freed cache ${c.id} (${inst.name}) is not revoked`);
          await attempt(
            `check: data of a revoked view of cache ${c.id} (${inst.name})`,
            [{ k: "llm", codes: [S.LLM_KV_CACHE_NOT_EXIST] }],
            () => view.data,
            false,
          );
          if (canDetach && array.byteLength !== 0) {
            fail(`check: the kept TypedArray of a revoked view of cache ${c.id} still has ${array.byteLength} bytes`);
          }
        }
        c.kept = [];
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Stateless calls: constructors and setters

export type CtorSpec =
  | { what: "CacheDesc"; args: unknown[] }
  | { what: "CacheKey"; args: unknown[] }
  | { what: "CacheKeyByIdAndIndex"; args: unknown[] }
  | { what: "LLMClusterInfo"; ops: { op: "id" | "role" | "local" | "remote"; a: unknown; b: unknown }[] }
  | { what: "LLMConfig"; ops: { op: "deviceId" | "syncKvTimeout" | "listenIpInfo" | "geOptions"; a: unknown }[] }
  | { what: "LLMDataDist"; args: unknown[]; preInit: number }
  | { what: "Tensor"; args: unknown[] }
  | { what: "KvCache" | "KvCacheManager"; args: unknown[] };

const DATA_TYPES = Object.values(DataType) as number[];
const DATA_TYPE_BYTES = new Map<number, number>([
  [0, 4],
  [1, 2],
  [2, 1],
  [3, 4],
  [4, 1],
  [6, 2],
  [7, 2],
  [8, 4],
  [9, 8],
  [10, 8],
  [11, 8],
  [12, 1],
  [27, 2],
]);

function descOracle(o: Oracle, args: unknown[]): void {
  const [numTensors, shape, dataType, placement, batchDim, seqLen] = args;
  intIn(o, numTensors, 1, INT32_MAX);
  let dims: number[] | undefined;
  if (!Array.isArray(shape)) o.type();
  else if (shape.length < 1 || shape.length > 32) o.value();
  else {
    let ok = true;
    for (let i = 0; i < shape.length; i++) {
      if (!(i in shape)) {
        o.type();
        ok = false;
      } else if (intIn(o, shape[i], 1, MAX_SAFE) === BAD) ok = false;
    }
    if (ok) dims = shape;
  }
  let elementBytes: number | undefined;
  if (typeof dataType !== "number") o.type();
  else if (!DATA_TYPES.includes(dataType)) o.value();
  else elementBytes = DATA_TYPE_BYTES.get(dataType);
  if (dims && elementBytes && !Number.isSafeInteger(dims.reduce((a, b) => a * b, 1) * elementBytes)) o.value();
  const p = intIn(o, placement, -Infinity, Infinity, Placement.DEVICE);
  if (p !== BAD && p !== 0 && p !== 1) o.value();
  const rank = Array.isArray(shape) ? shape.length : 0;
  const b = Array.isArray(shape) ? intIn(o, batchDim, 0, rank - 1, 0) : BAD;
  const s = Array.isArray(shape) ? intIn(o, seqLen, -1, rank - 1, -1) : BAD;
  if (b !== BAD && s !== BAD && b === s) o.value();
}

function ipOracle(o: Oracle, ip: unknown): void {
  if (typeof ip === "number") intIn(o, ip, 0, 0xFFFFFFFF);
  else if (typeof ip !== "string") o.type();
  else {
    const parts = ip.split(".");
    if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) o.value();
  }
}

function ipText(ip: string | number): string {
  if (typeof ip === "string") return ip;
  return [ip >>> 24, (ip >>> 16) & 0xFF, (ip >>> 8) & 0xFF, ip & 0xFF].join(".");
}

async function doCtor(ctx: Ctx, spec: CtorSpec): Promise<void> {
  const inst = ctx.D;
  const r = (v: unknown) => resolve(ctx, inst, v);
  switch (spec.what) {
    case "CacheDesc": {
      const args = spec.args.map(r);
      const o = new Oracle();
      descOracle(o, args);
      const settled = await attempt(
        `new CacheDesc(${args.map(show).join(", ")})`,
        expectations(o, [OK]),
        () => new (CacheDesc as unknown as new (...a: unknown[]) => CacheDesc)(...args),
        false,
      );
      if (settled.ok) {
        const desc = settled.value as CacheDesc;
        const shape = args[1] as number[];
        const bytes = shape.reduce((a, b) => a * b, 1) * DATA_TYPE_BYTES.get(args[2] as number)!;
        if (desc.size !== bytes || desc.batchSize !== shape[(args[4] as number | undefined) ?? 0]) {
          fail(`new CacheDesc: size ${desc.size} batchSize ${desc.batchSize}`);
        }
        if (!Object.isFrozen(desc.shape) || desc.shape.some((n, i) => n !== shape[i])) fail("new CacheDesc: shape");
        counter.calls++;
        String(desc);
      }
      return;
    }
    case "CacheKey": {
      const args = spec.args.map(r);
      const o = new Oracle();
      const ids = [uint64(o, args[0]), uint64(o, args[1]), uint64(o, args[2], 0n)];
      const settled = await attempt(
        `new CacheKey(${args.map(show).join(", ")})`,
        expectations(o, [OK]),
        () => new (CacheKey as unknown as new (...a: unknown[]) => CacheKey)(...args),
        false,
      );
      if (settled.ok) {
        const key = settled.value as CacheKey;
        if (key.promptClusterId !== ids[0] || key.reqId !== ids[1] || key.modelId !== ids[2]) {
          fail(`new CacheKey: fields ${key}`);
        }
      }
      return;
    }
    case "CacheKeyByIdAndIndex": {
      const args = spec.args.map(r);
      const o = new Oracle();
      const a = uint64(o, args[0]);
      const b = uint64(o, args[1]);
      const c = int32(o, args[2], 0);
      if (c !== BAD && c < 0) o.value();
      const settled = await attempt(
        `new CacheKeyByIdAndIndex(${args.map(show).join(", ")})`,
        expectations(o, [OK]),
        () => new (CacheKeyByIdAndIndex as unknown as new (...a: unknown[]) => CacheKeyByIdAndIndex)(...args),
        false,
      );
      if (settled.ok) {
        const key = settled.value as CacheKeyByIdAndIndex;
        if (key.clusterId !== a || key.cacheId !== b || key.batchIndex !== c) fail(`new CacheKeyByIdAndIndex: ${key}`);
      }
      return;
    }
    case "LLMClusterInfo": {
      counter.calls++;
      const info = new LLMClusterInfo();
      let id = 0n;
      let role: number = LLMRole.PROMPT;
      const local: string[] = [];
      const remote: string[] = [];
      for (const { op, a: rawA, b: rawB } of spec.ops) {
        const a = r(rawA);
        const b = r(rawB);
        const o = new Oracle();
        if (op === "id") {
          const v = uint64(o, a);
          const settled = await attempt(`LLMClusterInfo.remoteClusterId = ${show(a)}`, expectations(o, [OK]), () => {
            info.remoteClusterId = a as bigint;
          }, false);
          if (settled.ok) id = v as bigint;
        } else if (op === "role") {
          if (typeof a !== "number") o.type();
          else if (a !== 1 && a !== 2 && a !== 3) o.value();
          const settled = await attempt(`LLMClusterInfo.remoteRoleType = ${show(a)}`, expectations(o, [OK]), () => {
            info.remoteRoleType = a as LLMRole;
          }, false);
          if (settled.ok) role = a as number;
        } else {
          ipOracle(o, a);
          intIn(o, b, 0, 65535);
          const method = op === "local" ? "appendLocalIpInfo" : "appendRemoteIpInfo";
          const settled = await attempt(
            `LLMClusterInfo.${method}(${show(a)}, ${show(b)})`,
            expectations(o, [OK]),
            () => info[method](a as string, b as number),
            false,
          );
          if (settled.ok) (op === "local" ? local : remote).push(`${ipText(a as string | number)}:${b}`);
        }
      }
      counter.calls += 4;
      const got = [info.remoteClusterId, info.remoteRoleType, info.localIpInfoList, info.remoteIpInfoList] as const;
      const text = (list: readonly { ip: string; port: number }[]) => list.map((x) => `${x.ip}:${x.port}`).join(",");
      if (
        got[0] !== id || got[1] !== role || text(got[2]) !== local.join(",") || text(got[3]) !== remote.join(",")
      ) {
        fail(`LLMClusterInfo: state ${show(got)} after ${show(spec.ops)}`);
      }
      return;
    }
    case "LLMConfig": {
      counter.calls++;
      const config = new LLMConfig();
      const want: Record<string, string> = {};
      let geOptions: Record<string, string> = {};
      for (const { op, a: raw } of spec.ops) {
        const a = r(raw);
        const o = new Oracle();
        let text: string | undefined;
        if (op === "deviceId") {
          const ids = Array.isArray(a) ? a : [a];
          if (ids.length < 1 || ids.length > 64) o.value();
          else if (hasHole(ids)) o.type();
          else {
            const seen = new Set<unknown>();
            for (const id of ids) {
              if (intIn(o, id, 0, INT32_MAX) !== BAD) {
                if (seen.has(id)) o.value();
                seen.add(id);
              }
            }
          }
          if (!o.failed) text = ids.join(";");
        } else if (op === "syncKvTimeout") {
          const n = typeof a === "string" && /^\s*\d+\s*$/.test(a) ? Number(a) : a;
          if (typeof n !== "number") o.type();
          else intIn(o, n, 1, INT32_MAX);
          if (!o.failed) text = String(n);
        } else if (op === "listenIpInfo") {
          if (typeof a !== "string") o.type();
          else {
            const m = /^(.+):(\d{1,5})$/.exec(a);
            if (!m || Number(m[2]) > 65535 || /\s/.test(m[1])) o.value();
          }
          text = a as string;
        } else {
          if (typeof a !== "object" || a === null || Array.isArray(a)) o.type();
          else if (Object.values(a).some((v) => typeof v !== "string")) o.type();
        }
        const settled = await attempt(`LLMConfig.${op} = ${show(a)}`, expectations(o, [OK]), () => {
          (config as unknown as Record<string, unknown>)[op] = a;
        }, false);
        if (!settled.ok) continue;
        if (op === "deviceId") want["ge.exec.deviceId"] = text!;
        else if (op === "syncKvTimeout") want["llm.SyncKvCacheWaitTime"] = text!;
        else if (op === "listenIpInfo") want["llm.listenIpInfo"] = text!;
        else geOptions = { ...(a as Record<string, string>) };
      }
      const settled = await attempt("LLMConfig.generateOptions()", [OK], () => config.generateOptions(), false);
      const options = settled.ok ? settled.value as Record<string, string> : {};
      const expected: Record<string, string> = { ...geOptions, ...want };
      expected["ge.exec.deviceId"] ??= "0";
      expected["llm.SyncKvCacheWaitTime"] ??= "1000";
      for (const [k, v] of Object.entries(expected)) {
        if (options[k] !== v) fail(`LLMConfig.generateOptions(): ${k}=${show(options[k])}, expected ${show(v)}`);
      }
      return;
    }
    case "LLMDataDist": {
      const args = spec.args.map(r);
      const o = new Oracle();
      const [role, clusterId, options] = args;
      if (typeof role !== "number") o.type();
      else if (role !== 1 && role !== 2 && role !== 3) o.value();
      const id = uint64(o, clusterId);
      let badOptions = false;
      if (options !== undefined && (typeof options !== "object" || options === null)) {
        o.type();
        badOptions = true;
      }
      if (!badOptions && options !== undefined) {
        const backend = (options as { backend?: unknown }).backend ?? "host";
        if (typeof backend !== "string") o.type();
        else if (backend !== "host" && backend !== "cann") o.value();
        const path = (options as { libraryPath?: unknown }).libraryPath;
        if (path !== undefined && typeof path !== "string") o.type();
      }
      const settled = await attempt(
        `new LLMDataDist(${args.map(show).join(", ")})`,
        expectations(o, [OK]),
        () => new (LLMDataDist as unknown as new (...a: unknown[]) => LLMDataDist)(...args),
        false,
      );
      if (!settled.ok) return;
      const dd = settled.value as LLMDataDist;
      counter.calls += 4;
      if (dd.role !== role || dd.clusterId !== id || dd.listenPort !== 0 || dd.kvCacheManager.isInitialized()) {
        fail(`new LLMDataDist: role ${dd.role} cluster ${dd.clusterId} listenPort ${dd.listenPort}`);
      }
      if (!(dd.kvCacheManager instanceof KvCacheManager)) fail("new LLMDataDist: kvCacheManager");
      // Calls before init fail with LLM_FAILED; after finalize with LLM_ENGINE_FINALIZED.
      for (const finalized of [false, true]) {
        const code = finalized ? S.LLM_ENGINE_FINALIZED : S.LLM_FAILED;
        const e: Outcome[] = [{ k: "llm", codes: [code] }];
        const m = dd.kvCacheManager;
        const desc = new CacheDesc(1, [1, 4], DataType.DT_UINT8);
        const calls: [string, () => unknown, boolean][] = [
          ["poolUsage()", () => m.poolUsage(), false],
          ["allocateCache(desc)", () => m.allocateCache(desc), true],
          ["removeCacheKey(key)", () => m.removeCacheKey(new CacheKey(1n, 1n)), true],
          ["linkClusters([])", () => dd.linkClusters([]), true],
          ["unlinkClusters([])", () => dd.unlinkClusters([]), true],
          ["deallocateCache(outsider)", () => m.deallocateCache(ctx.outsider.kv!), true],
        ];
        const [name, call, async] = calls[spec.preInit % calls.length];
        await attempt(`uninitialized LLMDataDist.${name}`, e, call, async);
        if (!finalized) {
          counter.calls++;
          dd.finalize();
        }
      }
      await attempt(
        "LLMDataDist.init() after finalize",
        [{ k: "llm", codes: [S.LLM_ENGINE_FINALIZED] }],
        () => dd.init({}),
        true,
      );
      return;
    }
    case "Tensor": {
      const args = spec.args.map(r);
      // Tensor wraps what it is given; the only error it may raise is a TypeError (a shape it cannot copy).
      const settled = await attempt(
        `new Tensor(${args.map(show).join(", ")})`,
        [OK, { k: "type" }],
        () => new (Tensor as unknown as new (...a: unknown[]) => Tensor)(...args),
        false,
      );
      if (settled.ok) {
        const tensor = settled.value as Tensor;
        counter.calls += 3;
        void tensor.shape;
        void tensor.revoked;
        try {
          void tensor.byteLength;
          String(tensor);
        } catch (err) {
          if (!(err instanceof TypeError)) fail(`Tensor getters: ${describeError(err)}`);
        }
      }
      return;
    }
    case "KvCache":
    case "KvCacheManager": {
      const args = spec.args.map(r);
      const cls = (spec.what === "KvCache" ? KvCache : KvCacheManager) as unknown as new (...a: unknown[]) => unknown;
      await attempt(`new ${spec.what}(${args.map(show).join(", ")})`, [{ k: "type" }], () => new cls(...args), false);
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// init() on fresh instances

/** An init fuzz case: constructor arguments and the options given to init(). */
export interface InitSpec {
  role: unknown;
  cluster: "fresh" | { any: unknown };
  ctorOptions: unknown;
  entries: [string, string | { any: unknown }][] | { any: unknown };
}

const VALID_OPTION_VALUES: Record<string, string[]> = {
  "ge.exec.deviceId": ["0", "0;1", "3;1", " 2 ; 5 "],
  "ge.flowGraphMemMaxSize": ["4096", "65536", "1", "100"],
  "llm.SyncKvCacheWaitTime": ["1000", " 50 ", "2147483647"],
};

async function doInit(ctx: Ctx, spec: InitSpec): Promise<void> {
  const inst = ctx.D;
  const role = resolve(ctx, inst, spec.role);
  const fresh = spec.cluster === "fresh";
  const cluster = fresh ? freshClusterId() : resolve(ctx, inst, (spec.cluster as { any: unknown }).any);
  const ctorOptions = resolve(ctx, inst, spec.ctorOptions);
  const o = new Oracle();
  if (typeof role !== "number") o.type();
  else if (role !== 1 && role !== 2 && role !== 3) o.value();
  uint64(o, cluster);
  if (ctorOptions !== undefined) {
    if (typeof ctorOptions !== "object" || ctorOptions === null) o.type();
    else {
      const backend = (ctorOptions as { backend?: unknown }).backend ?? "host";
      if (typeof backend !== "string") o.type();
      else if (backend !== "host" && backend !== "cann") o.value();
      const path = (ctorOptions as { libraryPath?: unknown }).libraryPath;
      if (path !== undefined && typeof path !== "string") o.type();
    }
  }
  const settled = await attempt(
    `new LLMDataDist(${show(role)}, ${show(cluster)}, ${show(ctorOptions)})`,
    expectations(o, [OK]),
    () => new (LLMDataDist as unknown as new (...a: unknown[]) => LLMDataDist)(role, cluster, ctorOptions),
    false,
  );
  if (!settled.ok) return;
  const dd = settled.value as LLMDataDist;
  ctx.extra.push(dd);
  // The options dictionary.
  let options: unknown;
  let canonical = true;
  if ("any" in spec.entries) {
    options = resolve(ctx, inst, spec.entries.any);
    canonical = false;
  } else {
    const record: Record<string, unknown> = {};
    for (const [key, value] of spec.entries) {
      if (typeof value === "object") {
        record[key] = resolve(ctx, inst, value.any);
        canonical = false;
      } else {
        record[key] = value;
        if (!VALID_OPTION_VALUES[key]?.includes(value)) canonical = false;
      }
    }
    if (role === LLMRole.PROMPT) record["llm.listenIpInfo"] = "127.0.0.1:0";
    options = record;
  }
  const backend = (ctorOptions as { backend?: unknown } | undefined)?.backend;
  const path = (ctorOptions as { libraryPath?: unknown } | undefined)?.libraryPath;
  if (backend === "cann" || path !== undefined || !fresh) canonical = false;
  // What init must do: the checks of readEngineOptions, then the native side.
  const io = new Oracle();
  let devices: number[] | undefined;
  let poolBytes = 1 << 30;
  if (options instanceof LLMConfig) {
    canonical = false;
  } else if (typeof options !== "object" || options === null || Array.isArray(options)) {
    io.type();
  } else {
    const record = options as Record<string, unknown>;
    for (const [key, value] of Object.entries(record)) {
      if (typeof value !== "string") io.type();
      else if (key === "" || /[=\n\r\0]/.test(key) || /[\n\r\0]/.test(value)) io.value();
      else if (key.trim() !== key) io.value(); // blanks around a key: the native side would trim them
    }
    const ids = record["ge.exec.deviceId"] ?? "0";
    if (typeof ids === "string") {
      if (!/^\s*\d+\s*(;\s*\d+\s*)*$/.test(ids)) io.value();
      else {
        const list = ids.split(";").map(Number);
        if (list.length > 64 || list.some((n) => n > INT32_MAX) || new Set(list).size !== list.length) io.value();
        else devices = list;
      }
    }
    const timeout = record["llm.SyncKvCacheWaitTime"];
    if (typeof timeout === "string") {
      if (!/^\s*\d+\s*$/.test(timeout)) io.type();
      else if (Number(timeout) < 1 || Number(timeout) > INT32_MAX) io.value();
    }
    const pool = record["ge.flowGraphMemMaxSize"];
    if (typeof pool === "string") poolBytes = Number(pool);
  }
  const anyLLM: Outcome = { k: "llm", codes: Object.values(S).filter((c) => c !== 0) };
  const expected = io.failed ? io.errors : canonical ? [OK] : [OK, anyLLM];
  const init = await attempt(`LLMDataDist.init(${show(options)})`, expected, () => dd.init(options as never), true);
  if (init.ok) {
    counter.calls++;
    if (!dd.kvCacheManager.isInitialized()) fail("init resolved but isInitialized() is false");
    if (devices) {
      const usage = await attempt("poolUsage() after init", [OK], () => dd.kvCacheManager.poolUsage(), false);
      const list = usage.ok ? usage.value as { deviceId: number; capacityBytes: number }[] : [];
      if (list.length !== devices.length || list.some((u, i) => u.deviceId !== devices![i])) {
        fail(`poolUsage() after init(${show(options)}): ${show(list)}, expected devices ${show(devices)}`);
      }
      if (canonical && list.some((u) => u.capacityBytes !== poolBytes)) fail(`poolUsage() capacity: ${show(list)}`);
    }
  }
  counter.calls++;
  dd.finalize();
  // A PROMPT's cluster id is free again once it finalized (or failed to init).
  if (role === LLMRole.PROMPT && fresh) {
    const again = new LLMDataDist(LLMRole.PROMPT, cluster as bigint);
    ctx.extra.push(again);
    await attempt(
      `second PROMPT init with the same cluster id (${cluster}), after the first ${
        init.ok ? "finalized" : "failed to init"
      }`,
      [OK],
      () => again.init({ "ge.flowGraphMemMaxSize": "4096" }),
      true,
    );
    counter.calls++;
    again.finalize();
  }
}

// ---------------------------------------------------------------------------
// Bursts: several cache calls on one instance started at once

export type BurstItem =
  | { op: "read"; cache: CacheSpec; index: number }
  | {
    op: "copy";
    dst: CacheSpec;
    src: CacheSpec;
    dstBatch: number | Row;
    srcBatch: number | Row;
    offset: number;
    size: number;
  }
  | { op: "dealloc"; cache: CacheSpec }
  | { op: "alloc"; desc: DescSpec };

async function doBurst(ctx: Ctx, inst: InstModel, items: BurstItem[]): Promise<void> {
  // Calls on one manager run one at a time in arrival order, so the model can
  // apply them in order as they are started; each is started right after it is
  // planned. Only calls whose outcome is certain are pre-applied.
  const started: { plan: Plan; promise: Promise<unknown> }[] = [];
  for (const item of items) {
    let plan: Plan;
    if (item.op === "read") {
      plan = planRead(ctx, inst, resolveCache(ctx, inst, item.cache), item.index, { value: undefined });
    } else if (item.op === "copy") {
      const dst = resolveCache(ctx, inst, item.dst);
      const src = resolveCache(ctx, inst, item.src, ctx.cacheArg(dst).m?.info);
      plan = planCopy(
        ctx,
        inst,
        dst,
        src,
        { ...item, dstBatch: rowOf(item.dstBatch, dst), srcBatch: rowOf(item.srcBatch, src) },
        { value: undefined },
      );
    } else if (item.op === "dealloc") {
      plan = planDealloc(ctx, inst, resolveCache(ctx, inst, item.cache), false);
    } else {
      plan = planAlloc(ctx, inst, buildDesc(ctx, inst, item.desc), undefined);
    }
    if (plan.expected.length !== 1) continue;
    // Pre-apply a certain success to the model, so the next plans see it.
    if (plan.expected[0].k === "ok") plan.preApply?.();
    counter.calls++;
    let promise: Promise<unknown>;
    try {
      const result = plan.invoke();
      if (!(result instanceof Promise)) fail(`${plan.label}: did not return a promise`);
      promise = result;
      promise.catch(() => {}); // checked below, in order
    } catch (error) {
      fail(`${plan.label}: threw synchronously (${describeError(error)}) instead of returning a rejected promise`);
    }
    started.push({ plan, promise });
  }
  for (const { plan, promise } of started) {
    plan.apply(check(`burst: ${plan.label}`, plan.expected, await watch(plan.label, promise)));
  }
}

// ---------------------------------------------------------------------------
// Commands

class FuzzCommand implements fc.AsyncCommand<Ctx, Ctx> {
  constructor(
    readonly name: string,
    readonly args: unknown,
    readonly body: (ctx: Ctx) => Promise<void> | void,
    readonly when: (ctx: Ctx) => boolean = () => true,
  ) {}
  check(ctx: Readonly<Ctx>): boolean {
    return this.when(ctx as Ctx);
  }
  async run(ctx: Ctx): Promise<void> {
    ctx.step++;
    await this.body(ctx);
    await verifyAll(ctx);
  }
  toString(): string {
    return `${this.name}${show(this.args)}`;
  }
}

function command<A>(
  name: string,
  args: fc.Arbitrary<A>,
  body: (ctx: Ctx, a: A) => Promise<void> | void,
  when?: (ctx: Ctx) => boolean,
): fc.Arbitrary<fc.AsyncCommand<Ctx, Ctx>> {
  return args.map((a) => new FuzzCommand(name, a, (ctx) => body(ctx, a), when));
}

/** The command arbitraries of a sequence. */
export function sequenceCommands(options: FuzzOptions = {}): fc.Arbitrary<fc.AsyncCommand<Ctx, Ctx>>[] {
  const any = anyValue(options);
  // Each argument is "any value" about one time in 16, so that most calls are
  // valid (and reach the state) and many have one bad argument.
  const arg = <T>(valid: fc.Arbitrary<T>) => slot(valid, any, 15);
  const instName = fc.constantFrom<"P" | "D">("P", "D");
  const small = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 2 }) }, {
    weight: 1,
    arbitrary: fc.constantFrom(-1, 3, 5, ...(options.knownBugs ? [-0] : [])), // -0: KNOWN_BUGS[3]
  });
  const cachePick: fc.Arbitrary<CachePick> = fc.record({
    from: fc.constantFrom<CachePick["from"]>("live", "live", "live", "live", "match", "match", "match", "dead", "any"),
    of: fc.constantFrom<CachePick["of"]>(
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "other",
    ),
    i: fc.nat(20),
  });
  const cacheSpec: fc.Arbitrary<CacheSpec> = fc.oneof(
    { weight: 15, arbitrary: cachePick.map((pick) => ({ pick })) },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const descSpec: fc.Arbitrary<DescSpec> = fc.oneof(
    { weight: 8, arbitrary: fc.record({ like: fc.nat(30), batch: fc.integer({ min: 1, max: 4 }) }) },
    {
      weight: 12,
      arbitrary: fc.record({
        family: fc.nat(20),
        batch: fc.integer({ min: 1, max: 4 }),
        batchDim: fc.constantFrom<0 | 1>(0, 0, 0, 0, 1),
        placement: fc.constantFrom<0 | 1>(0, 1),
        seqLen: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: options.knownBugs
        ? fc.record({
          huge: fc.constantFrom<"numTensors" | "dims" | "stride">("numTensors", "dims", "stride"),
          value: fc.constantFrom(2 ** 31 - 1, 2 ** 28, 1e6, 2 ** 20, 2 ** 40),
        })
        : fc.record({
          huge: fc.constantFrom<"numTensors" | "dims" | "stride">("numTensors", "dims", "stride"),
          value: fc.constantFrom(2 ** 20, 1e6, 2 ** 16),
        }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const keysSpec: fc.Arbitrary<KeysSpec> = fc.oneof(
    { weight: 4, arbitrary: fc.constant<KeysSpec>("none") },
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 4 }).map((fresh) => ({ fresh })) },
    {
      weight: 4,
      arbitrary: fc.record({
        keys: fc.array(
          fc.record({
            req: fc.nat(9),
            model: fc.nat(1),
            cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "other"),
          }),
          { maxLength: 3 },
        ),
      }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    { weight: 1, arbitrary: fc.array(any, { minLength: 1, maxLength: 3 }).map((elements) => ({ elements })) },
  );
  const optionsSpec: fc.Arbitrary<OptionsSpec> = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom<OptionsSpec>("none", "empty", "signal") },
    { weight: 2, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "abortSoon", "badSignal") },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  // Options of the calls that only wait for their turn (no abort while they run).
  const waitOptions: fc.Arbitrary<OptionsSpec> = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom<OptionsSpec>("none", "none", "empty", "signal") },
    { weight: 2, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "badSignal") },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const keySpec: fc.Arbitrary<KeySpec> = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({ kind: fc.constantFrom("held", "held", "held", "past"), i: fc.nat(20) }) as fc.Arbitrary<
        KeySpec
      >,
    },
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("key" as const),
        cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "P", "other"),
        req: fc.nat(9),
        model: fc.nat(1),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant("byId" as const),
        cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "P", "other"),
        cache: fc.nat(12),
        row: fc.nat(4),
      }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const clusterSpec: fc.Arbitrary<ClusterSpec> = fc.record({
    id: fc.constantFrom<"P" | "wrong">("P", "P", "P", "wrong"),
    port: fc.constantFrom<ClusterSpec["port"]>("P", "P", "P", "dead", "zero", "none"),
    ipAsInt: fc.boolean(),
  });
  const clustersSpec: fc.Arbitrary<ClustersSpec> = fc.oneof(
    { weight: 10, arbitrary: fc.array(clusterSpec, { maxLength: 3 }).map((specs) => ({ specs })) },
    { weight: 1, arbitrary: fc.constantFrom(17, 20).map((many) => ({ many })) },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    { weight: 1, arbitrary: fc.array(any, { minLength: 1, maxLength: 2 }).map((elements) => ({ elements })) },
  );
  // Link timeouts: valid ones long enough that a link on loopback never runs
  // out of time (short ones are timing-dependent: see shortTimeoutProperty).
  const timeout = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(undefined, 3000, 5000, INT32_MAX) },
    {
      weight: 1,
      arbitrary: any.filter((v) => !(typeof v === "number" && Number.isInteger(v) && v >= 1 && v < 2000)),
    },
  );
  // Sizes of a row's bytes: the whole row, a few bytes, and out of range.
  const rowSize = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(undefined, -1) },
    { weight: 4, arbitrary: fc.nat(100).map((i) => new Part(i)) },
    { weight: 1, arbitrary: fc.constantFrom(0, -2, 12, 66, 1 << 20) },
  );
  // Batch rows: mostly a valid row of the cache, sometimes any small index.
  const row = fc.oneof({ weight: 6, arbitrary: fc.nat(11).map((i) => new Row(i)) }, { weight: 1, arbitrary: small });
  const late = (ctx: Ctx) => ctx.step >= ctx.setup.finalizeAfter;
  const writeArgs = fc.record({
    device: fc.nat(3),
    start: fc.nat(1 << 20),
    length: fc.nat(1 << 20),
    seed: fc.integer(),
    keep: fc.boolean(),
  });
  const burstItem: fc.Arbitrary<BurstItem> = fc.oneof(
    fc.record({ op: fc.constant("read" as const), cache: cacheSpec, index: fc.integer({ min: -1, max: 3 }) }),
    fc.record({
      op: fc.constant("copy" as const),
      dst: cacheSpec,
      src: cacheSpec,
      dstBatch: row,
      srcBatch: row,
      offset: fc.constantFrom(0, 0, 1, 8),
      size: fc.constantFrom(-1, -1, 1, 4, 1000),
    }),
    fc.record({ op: fc.constant("dealloc" as const), cache: cacheSpec }),
    fc.record({ op: fc.constant("alloc" as const), desc: descSpec }),
  );

  return [
    fc.oneof(
      {
        weight: 10,
        arbitrary: command(
          "allocateCache",
          fc.record({ inst: instName, desc: descSpec, keys: keysSpec, decoderKeys: fc.nat(7), options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const desc = buildDesc(ctx, inst, a.desc);
            // Keys are for the PROMPT; a DECODER gets them (and refuses them) one time in 8.
            const keys = inst === ctx.D && a.decoderKeys > 0 ? "none" : a.keys;
            const options = resolveOptions(ctx, inst, a.options);
            return runPlan(planAlloc(ctx, inst, desc, buildKeys(ctx, inst, keys, desc), options)).then(() => {});
          },
        ),
      },
      {
        weight: 5,
        arbitrary: command(
          "write",
          fc.record({ inst: instName, cache: cacheSpec, index: arg(small), w: writeArgs }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doWrite(ctx, inst, resolveCache(ctx, inst, a.cache), resolve(ctx, inst, a.index), a.w);
          },
        ),
      },
      {
        weight: 3,
        arbitrary: command(
          "deallocateCache",
          fc.record({ inst: instName, cache: cacheSpec, dispose: fc.boolean(), options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const value = resolveCache(ctx, inst, a.cache);
            const viaDispose = a.dispose && ctx.cacheArg(value).genuine;
            const options = resolveOptions(ctx, inst, a.options);
            return runPlan(planDealloc(ctx, inst, value, viaDispose, options)).then(() => {});
          },
        ),
      },
      {
        weight: 3,
        arbitrary: command(
          "getCacheTensors",
          fc.record({ inst: instName, cache: cacheSpec, index: arg(small), options: optionsSpec }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const plan = planRead(
              ctx,
              inst,
              resolveCache(ctx, inst, a.cache),
              resolve(ctx, inst, a.index),
              resolveOptions(ctx, inst, a.options),
            );
            return runPlan(plan).then(() => {});
          },
        ),
      },
      {
        weight: 5,
        arbitrary: command(
          "copyCache",
          fc.record({
            inst: instName,
            dst: cacheSpec,
            src: cacheSpec,
            dstBatch: arg(row),
            srcBatch: arg(row),
            offset: arg(fc.constantFrom(undefined, 0, 0, 0, 1, 2, 8, 33)),
            size: arg(rowSize),
            options: optionsSpec,
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const dst = resolveCache(ctx, inst, a.dst);
            const src = resolveCache(ctx, inst, a.src, ctx.cacheArg(dst).m?.info);
            const plan = planCopy(
              ctx,
              inst,
              dst,
              src,
              {
                dstBatch: rowOf(resolve(ctx, inst, a.dstBatch), dst),
                srcBatch: rowOf(resolve(ctx, inst, a.srcBatch), src),
                offset: resolve(ctx, inst, a.offset),
                size: partOf(resolve(ctx, inst, a.size), dst),
              },
              resolveOptions(ctx, inst, a.options),
            );
            return runPlan(plan).then(() => {});
          },
        ),
      },
      {
        weight: 6,
        arbitrary: command(
          "pullCache",
          fc.record({
            inst: fc.constantFrom<"P" | "D">("D", "D", "D", "D", "D", "D", "D", "D", "D", "P"),
            key: keySpec,
            cache: cacheSpec,
            batch: arg(row),
            size: arg(rowSize),
            options: fc.oneof(
              { weight: 10, arbitrary: fc.constantFrom<OptionsSpec>("none", "empty", "signal") },
              { weight: 1, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "badSignal") },
            ),
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doPull(
              ctx,
              inst,
              buildKey(ctx, inst, a.key),
              a.cache,
              a.batch,
              a.size,
              resolveOptions(ctx, inst, a.options),
            );
          },
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "removeCacheKey",
          fc.record({ inst: fc.constantFrom<"P" | "D">("P", "P", "P", "D"), key: keySpec, options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doRemoveKey(inst, buildKey(ctx, inst, a.key), resolveOptions(ctx, inst, a.options));
          },
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "linkClusters",
          fc.record({ inst: fc.constantFrom<"P" | "D">("D", "D", "D", "P"), clusters: clustersSpec, timeout }),
          (ctx, a) => doLink(ctx, ctx.inst(a.inst), a.clusters, resolve(ctx, ctx.inst(a.inst), a.timeout)),
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "unlinkClusters",
          fc.record({
            inst: fc.constantFrom<"P" | "D">("D", "D", "D", "P"),
            clusters: clustersSpec,
            timeout,
            force: arg(fc.constantFrom(undefined, true, false)),
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doUnlink(ctx, inst, a.clusters, resolve(ctx, inst, a.timeout), resolve(ctx, inst, a.force));
          },
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "finalize",
          fc.record({ inst: instName, dispose: fc.boolean() }),
          (ctx, a) => doFinalize(ctx.inst(a.inst), a.dispose),
          late,
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "misc",
          fc.record({
            inst: instName,
            what: fc.constantFrom<MiscSpec>("poolUsage", "isInitialized", "listenPort", "initAgain", "role"),
            any,
          }),
          (ctx, a) => doMisc(ctx, ctx.inst(a.inst), a.what, a.any),
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "burst",
          fc.record({ inst: instName, items: fc.array(burstItem, { minLength: 2, maxLength: 6 }) }),
          (
            ctx,
            a,
          ) => doBurst(ctx, ctx.inst(a.inst), a.items),
        ),
      },
      { weight: 1, arbitrary: command("constructor", ctorSpec(options), (ctx, spec) => doCtor(ctx, spec)) },
    ),
  ];
}

/** Constructor and setter cases. */
export function ctorSpec(options: FuzzOptions = {}): fc.Arbitrary<CtorSpec> {
  const any = anyValue(options);
  const s = <T>(valid: fc.Arbitrary<T>) => slot(valid, any, 3);
  const u64 = fc.oneof(fc.bigInt({ min: 0n, max: UINT64_MAX }), fc.nat());
  const shape = fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 4 });
  const sparse = options.knownBugs ? fc.constantFrom(...SPARSE) : fc.constant([4]);
  const ip = fc.oneof(fc.constantFrom("127.0.0.1", "10.0.0.1", "255.255.255.255"), fc.nat({ max: 0xFFFFFFFF }));
  return fc.oneof(
    fc.record({
      what: fc.constant("CacheDesc" as const),
      args: fc.tuple(
        s(fc.integer({ min: 1, max: 4 })),
        fc.oneof({ weight: 6, arbitrary: shape }, { weight: 1, arbitrary: any }, { weight: 1, arbitrary: sparse }),
        s(fc.constantFrom(...DATA_TYPES)),
        s(fc.constantFrom(undefined, 0, 1)),
        s(fc.constantFrom(undefined, 0, 1, 2)),
        s(fc.constantFrom(undefined, -1, 0, 1, 2)),
      ),
    }),
    fc.record({
      what: fc.constant("CacheKey" as const),
      args: fc.tuple(s(u64), s(u64), s(fc.constantFrom(undefined, 0n))),
    }),
    fc.record({
      what: fc.constant("CacheKeyByIdAndIndex" as const),
      args: fc.tuple(s(u64), s(u64), s(fc.constantFrom(undefined, 0, 3))),
    }),
    fc.record({
      what: fc.constant("LLMClusterInfo" as const),
      ops: fc.array(
        fc.record({
          op: fc.constantFrom<"id" | "role" | "local" | "remote">("id", "role", "local", "remote"),
          a: s(fc.oneof(u64, fc.constantFrom(1, 2, 3), ip)),
          b: s(fc.integer({ min: 0, max: 65535 })),
        }),
        { maxLength: 4 },
      ),
    }),
    fc.record({
      what: fc.constant("LLMConfig" as const),
      ops: fc.array(
        fc.record({
          op: fc.constantFrom<"deviceId" | "syncKvTimeout" | "listenIpInfo" | "geOptions">(
            "deviceId",
            "syncKvTimeout",
            "listenIpInfo",
            "geOptions",
          ),
          a: fc.oneof(
            { weight: 3, arbitrary: fc.constantFrom(0, 1, [0, 1], [2], 500, " 20 ", "127.0.0.1:26000", "h:1") },
            { weight: 1, arbitrary: fc.constantFrom({ "ge.flowGraphMemMaxSize": "4096" }, { a: "b" }, [0, 0]) },
            { weight: 2, arbitrary: any },
            { weight: 1, arbitrary: sparse },
          ),
        }),
        { maxLength: 4 },
      ),
    }),
    fc.record({
      what: fc.constant("LLMDataDist" as const),
      args: fc.tuple(
        s(fc.constantFrom(1, 2, 3)),
        s(u64),
        s(fc.constantFrom(undefined, {}, { backend: "host" }, { backend: "cann" }, { libraryPath: "/nonexistent.so" })),
      ),
      preInit: fc.nat(10),
    }),
    fc.record({
      what: fc.constant("Tensor" as const),
      args: fc.tuple(s(fc.constant([2])), s(fc.constant(DataType.DT_UINT8)), any, s(fc.constantFrom(undefined, 0))),
    }),
    fc.record({
      what: fc.constantFrom<"KvCache" | "KvCacheManager">("KvCache", "KvCacheManager"),
      args: fc.array(any, { maxLength: 3 }),
    }),
  );
}

/** init() cases on fresh instances. */
export function initSpec(options: FuzzOptions = {}): fc.Arbitrary<InitSpec> {
  const any = anyValue(options);
  const keys = [
    "ge.exec.deviceId",
    "ge.flowGraphMemMaxSize",
    "llm.SyncKvCacheWaitTime",
    "some.other.option",
    ...(options.knownBugs ? [" ge.exec.deviceId", "ge.exec.deviceId\t"] : []),
  ];
  const weirdValues = [
    "",
    "-1",
    "0",
    "1e3",
    "abc",
    "0;0",
    "0;;1",
    "99999999999",
    "4611686018427387904",
    "18446744073709551616",
    "0\u000b",
    " 7 ",
    "1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23;24;25;26;27;28;29;30;31;32;33;34;35;36;37;38;39;40;41;42;43;44;45;46;47;48;49;50;51;52;53;54;55;56;57;58;59;60;61;62;63;64",
  ];
  const entry = fc.constantFrom(...keys).chain((key) =>
    fc.tuple(
      fc.constant(key),
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...(VALID_OPTION_VALUES[key.trim()] ?? ["x"])) },
        { weight: 2, arbitrary: fc.constantFrom(...weirdValues) },
        { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
      ),
    )
  );
  return fc.record({
    role: slot(fc.constantFrom(LLMRole.PROMPT, LLMRole.DECODER, LLMRole.MIX), any, 8),
    cluster: fc.oneof(
      { weight: 8, arbitrary: fc.constant("fresh" as const) },
      { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    ),
    ctorOptions: slot(fc.constantFrom(undefined, {}, { backend: "host" }, { backend: "cann" }), any, 8),
    entries: fc.oneof(
      { weight: 8, arbitrary: fc.uniqueArray(entry, { maxLength: 4, selector: ([k]) => k }) },
      { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    ),
  });
}

// ---------------------------------------------------------------------------
// Properties

/** The setup of a sequence: devices, pool size (small, to run out), big tensors or not, linked or not. */
export function setupArb(): fc.Arbitrary<SequenceSetup> {
  return fc.record({
    devices: fc.constantFrom<number[]>([0], [0], [0, 1], [3, 1]),
    poolBytes: fc.constantFrom(1024, 4096, 4096, 16384, 100_000),
    big: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
    linked: fc.constantFrom(true, true, true, false),
    finalizeAfter: fc.integer({ min: 15, max: 45 }),
    prefill: fc.array(fc.nat(20), { maxLength: 3 }),
  }).map((s) => (s.big ? { ...s, poolBytes: 8 << 20 } : s));
}

/** The model-based property: a random sequence of calls on a PROMPT and a DECODER. */
export function sequenceProperty(
  options: FuzzOptions = {},
): fc.IAsyncProperty<[SequenceSetup, Iterable<fc.AsyncCommand<Ctx, Ctx>>]> {
  return fc.asyncProperty(
    setupArb(),
    fc.commands(sequenceCommands(options), { maxCommands: options.maxCommands ?? 40, size: "max" }),
    async (setup, cmds) => {
      const ctx = await openCtx(setup, options);
      try {
        await verifyAll(ctx);
        await fc.asyncModelRun(() => ({ model: ctx, real: ctx }), cmds);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/** Constructors, setters and init() of fresh instances, on any value. */
export function statelessProperty(
  options: FuzzOptions = {},
): fc.IAsyncProperty<[SequenceSetup, CtorSpec[], InitSpec[]]> {
  return fc.asyncProperty(
    setupArb().map((s) => ({ ...s, linked: false, big: false, poolBytes: 4096, prefill: [] })),
    fc.array(ctorSpec(options), { minLength: 1, maxLength: 20 }),
    fc.array(initSpec(options), { maxLength: 3 }),
    async (setup, ctors, inits) => {
      const ctx = await openCtx(setup, options);
      try {
        for (const spec of ctors) await doCtor(ctx, spec);
        for (const spec of inits) await doInit(ctx, spec);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/**
 * Links and unlinks with timeouts short enough to run out (1–50 ms): the outcome
 * depends on timing, so only the kind of outcome is checked — a status from the
 * documented set, never a throw — and that the instances still work after.
 */
export function shortTimeoutProperty(): fc.IAsyncProperty<[number[], boolean[]]> {
  return fc.asyncProperty(
    fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 4 }),
    fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    async (timeouts, forces) => {
      const setup: SequenceSetup = {
        devices: [0],
        poolBytes: 4096,
        big: false,
        linked: false,
        finalizeAfter: 0,
        prefill: [],
      };
      const ctx = await openCtx(setup, {});
      try {
        const cluster = clusterInfo(ctx, { id: "P", port: "P", ipAsInt: false });
        const statuses: number[] = [
          S.LLM_SUCCESS,
          S.LLM_ALREADY_LINK,
          S.LLM_LINK_FAILED,
          S.LLM_NOT_YET_LINK,
          S.LLM_UNLINK_FAILED,
        ];
        for (const [i, timeout] of timeouts.entries()) {
          const link = i % 2 === 0;
          const label = `${link ? "linkClusters" : "unlinkClusters"}([P], ${timeout})`;
          const settled = await attempt(
            label,
            [OK],
            () =>
              link
                ? ctx.D.dd.linkClusters([cluster], timeout)
                : ctx.D.dd.unlinkClusters([cluster], timeout, forces[i % forces.length]),
            true,
          );
          const [overall, each] = settled.ok ? settled.value as [number, number[]] : [0, []];
          if (!statuses.includes(overall) || each.length !== 1 || each[0] !== overall) {
            fail(`${label}: ${show(settled.ok ? settled.value : undefined)}`);
          }
        }
        // Let native link/unlink work whose call already timed out finish, then a
        // generous link settles it: linked (or already).
        await new Promise((resolve) => setTimeout(resolve, 30));
        counter.calls++;
        const [status] = await ctx.D.dd.linkClusters([cluster], 5000);
        if (status !== S.LLM_SUCCESS && status !== S.LLM_ALREADY_LINK) fail(`relink: ${codeName(status)}`);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/** Prints a line with the runtime and the current seed, for reproducing a failure. */
export function describeRun(seed: number, options: FuzzOptions): string {
  return `runtime=${runtime} seed=${seed} knownBugs=${options.knownBugs ? 1 : 0} pid=${process.pid}`;
}
