// The model of CacheManager.pullBlocks and pullCache across a link, for
// test/cache_manager_fuzz.test.ts: what a PROMPT (blocks caches named by
// BlocksCacheKeys, a cache whose rows are named by CacheKeys) and a DECODER
// (blocks caches and row caches of several geometries, and freed ones) hold,
// byte for byte, and the outcome of every call — in the order the library
// checks: argument types (TypeError, ValueError), upstream's rules
// (LLM_PARAM_INVALID), the destination being alive (LLM_KV_CACHE_NOT_EXIST),
// the destination's block indexes, the link (LLM_NOT_YET_LINK), the PROMPT's
// answer (LLM_KV_CACHE_NOT_EXIST for an unknown key, LLM_PARAM_INVALID for a
// row out of range), then what the answer is checked against (tensor ranges,
// block sizes, source block indexes, for pullCache the layout and row size).
import fc from "fast-check";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKey,
  CacheKeyByIdAndIndex,
  type CacheManager,
  DataType,
  LLMException,
  LLMStatusCode,
  ValueError,
} from "../../../mod.ts";

const S = LLMStatusCode;
const UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFFn;
const UINT32_MAX = 0xFFFF_FFFF;

/** The outcome of a call: success, or the error it must end with. */
export type Want = "ok" | "TypeError" | "ValueError" | LLMStatusCode;

/** What a call ended with, in the model's terms (anything else is rethrown). */
export async function outcomeOf(call: () => Promise<unknown>): Promise<Want> {
  try {
    await call();
    return "ok";
  } catch (err) {
    if (err instanceof TypeError) return "TypeError";
    if (err instanceof ValueError) return "ValueError";
    if (err instanceof LLMException) return err.statusCode;
    throw err;
  }
}

export function wantName(want: Want): string {
  if (typeof want === "string") return want;
  const name = Object.entries(S).find(([, v]) => v === want)?.[0];
  return name ?? `0x${want.toString(16)}`;
}

// ---------------------------------------------------------------------------
// Geometry

/** A cache of the model: `tensors` tensors of `batch` blocks (or rows) of `row` bytes. */
export interface CacheShape {
  name: string;
  tensors: number;
  batch: number;
  row: number;
  /** The shape of one row of DT_UINT8 (its layout tag: what pullCache compares). */
  rowShape: number[];
  blocks: boolean;
}

/** The PROMPT's caches: two blocks caches (BlocksCacheKey models 0 and 1) and a row cache named by CacheKeys. */
export const PROMPT_CACHES: readonly CacheShape[] = [
  { name: "P.blocks0", tensors: 4, batch: 8, row: 32, rowShape: [32], blocks: true },
  { name: "P.blocks1", tensors: 2, batch: 6, row: 64, rowShape: [64], blocks: true },
  { name: "P.rows", tensors: 4, batch: 2, row: 128, rowShape: [128], blocks: false },
];
export const ROWS = 2; // index of P.rows
/** The requests P.rows' rows are named by: request r names row r - 1. */
export const REQUESTS = [1, 2] as const;

/** The DECODER's caches: blocks and row caches that match the PROMPT's or not, and two freed ones. */
export const DECODER_CACHES: readonly (CacheShape & { freed?: boolean })[] = [
  { name: "D.blocks4x8x32", tensors: 4, batch: 8, row: 32, rowShape: [32], blocks: true },
  { name: "D.blocks2x5x64", tensors: 2, batch: 5, row: 64, rowShape: [64], blocks: true },
  { name: "D.blocks4x6x64", tensors: 4, batch: 6, row: 64, rowShape: [64], blocks: true },
  { name: "D.rows4x3x128", tensors: 4, batch: 3, row: 128, rowShape: [128], blocks: false },
  { name: "D.rows4x2x64", tensors: 4, batch: 2, row: 64, rowShape: [64], blocks: false },
  { name: "D.rows4x3x(2x64)", tensors: 4, batch: 3, row: 128, rowShape: [2, 64], blocks: false },
  { name: "D.rows2x3x128", tensors: 2, batch: 3, row: 128, rowShape: [128], blocks: false },
  { name: "D.freedBlocks", tensors: 4, batch: 8, row: 32, rowShape: [32], blocks: true, freed: true },
  { name: "D.freedRows", tensors: 4, batch: 3, row: 128, rowShape: [128], blocks: false, freed: true },
];

export function descOf(shape: CacheShape): CacheDesc {
  return new CacheDesc(shape.tensors, [shape.batch, ...shape.rowShape], DataType.DT_UINT8);
}

const sameLayout = (a: CacheShape, b: CacheShape) => a.rowShape.join(",") === b.rowShape.join(",");

// ---------------------------------------------------------------------------
// Commands

/** What a block list or an index holds: in range or not, negative, or not an integer. */
export type Index = number | string | null;
/** A layer range as given: a pair, an object, null, or something else. */
export type RangeSpec = undefined | null | readonly unknown[] | { start: unknown; stop: unknown } | number;
export interface LayerSpec {
  src?: RangeSpec;
  dst?: RangeSpec;
  perLayer?: unknown;
}
export type KeySpec =
  | { kind: "blocks"; model: number; linked: boolean }
  | { kind: "cacheKey"; req: number; linked: boolean; variant: "plain" | "padding" | "prefix" }
  | { kind: "byId"; known: boolean; row: number; linked: boolean }
  | { kind: "bogus" };

/** A pull: pullBlocks or pullCache. */
export type PullCall = Extract<PullCommand, { kind: "pullBlocks" | "pullCache" }>;

export type PullCommand =
  | {
    kind: "pullBlocks";
    key: KeySpec;
    slot: number;
    src: Index[] | undefined;
    dst: Index[] | undefined;
    layers: LayerSpec | null;
  }
  | { kind: "pullCache"; key: KeySpec; slot: number; batchIndex: Index; size: Index; layers: LayerSpec | null }
  | { kind: "promptWrite"; cache: number; tensor: number; at: number; value: number }
  /** The PROMPT frees blocks cache `cache` (its key with it) and, unless `gap`, allocates it again with new bytes. */
  | { kind: "promptRealloc"; cache: number; gap: boolean }
  | { kind: "removeKey"; req: number }
  | { kind: "burst"; calls: PullCall[] };

/** A block or batch index: mostly in range (0-7), sometimes past it, negative or not a number. */
export const index: fc.Arbitrary<Index> = fc.oneof(
  { weight: 14, arbitrary: fc.integer({ min: 0, max: 7 }) },
  { weight: 2, arbitrary: fc.integer({ min: 8, max: 9 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, -2) },
  { weight: 1, arbitrary: fc.constantFrom<Index>(1.5, "2", null) },
);

/** A layer range in either spelling, in or out of range, absent (weight `absent`), or malformed. */
export function rangeSpecs(absent: number): fc.Arbitrary<RangeSpec> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.integer({ min: -1, max: 4 }), fc.integer({ min: -1, max: 4 })) },
    {
      weight: 3,
      arbitrary: fc.record({ start: fc.integer({ min: -1, max: 4 }), stop: fc.integer({ min: -1, max: 4 }) }),
    },
    { weight: absent, arbitrary: fc.constantFrom<RangeSpec>(undefined, null) },
    { weight: 1, arbitrary: fc.constantFrom<RangeSpec>(3, [0, 1, 2], ["0", 1], { start: 0, stop: 1.5 }) },
  );
}

const rangeSpec = rangeSpecs(2);

const layerSpec: fc.Arbitrary<LayerSpec | null> = fc.option(
  fc.record({
    src: rangeSpec,
    dst: rangeSpec,
    perLayer: fc.oneof(
      { weight: 6, arbitrary: fc.constant(undefined) },
      { weight: 3, arbitrary: fc.constantFrom(1, 2) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>(0, -1, 1.5, 2 ** 32) },
    ),
  }, { requiredKeys: [] }),
  { freq: 2 },
);

const linked = fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
const keySpec: fc.Arbitrary<KeySpec> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant("blocks" as const),
      model: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, 1) }, { weight: 1, arbitrary: fc.constant(5) }),
      linked,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("cacheKey" as const),
      req: fc.constantFrom(1, 2, 3),
      linked,
      variant: fc.oneof(
        { weight: 10, arbitrary: fc.constant("plain" as const) },
        { weight: 1, arbitrary: fc.constantFrom("padding" as const, "prefix" as const) },
      ),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("byId" as const),
      known: fc.oneof({ weight: 8, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      row: fc.constantFrom(0, 1, 2),
      linked,
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "bogus" as const }) },
);

/** Block lists: mostly pairs of equal length, sometimes one list longer, empty or left out. */
const blockLists = fc.tuple(
  fc.array(fc.tuple(index, index), { maxLength: 4 }),
  fc.constantFrom("pairs", "pairs", "pairs", "pairs", "srcExtra", "dstExtra", "srcEmpty", "srcUndefined"),
  index,
).map(([pairs, how, extra]) => {
  let src: Index[] | undefined = pairs.map((p) => p[0]);
  const dst: Index[] = pairs.map((p) => p[1]);
  if (how === "srcExtra") src.push(extra);
  if (how === "dstExtra") dst.push(extra);
  if (how === "srcEmpty") src = [];
  if (how === "srcUndefined") src = undefined;
  return { src, dst };
});

/** A row key of the PROMPT's row cache: by CacheKey (request 1 or 2) or by id (row 0 or 1), linked. */
const rowKey: fc.Arbitrary<KeySpec> = fc.oneof(
  fc.record({
    kind: fc.constant("cacheKey" as const),
    req: fc.constantFrom(1, 2),
    linked: fc.constant(true),
    variant: fc.constant("plain" as const),
  }),
  fc.record({
    kind: fc.constant("byId" as const),
    known: fc.constant(true),
    row: fc.constantFrom(0, 1),
    linked: fc.constant(true),
  }),
);

/** `n` block indexes below `max` (1 to 4 of them), and as many below `srcMax`. */
const inRange = (max: number, srcMax: number) =>
  fc.integer({ min: 1, max: 4 }).chain((n) =>
    fc.tuple(
      fc.array(fc.nat(srcMax - 1), { minLength: n, maxLength: n }),
      fc.array(fc.nat(max - 1), { minLength: n, maxLength: n }),
    )
  );

/** One layer (of `perLayer` tensors) of `tensors` tensors, as a pair or an object. */
const oneLayer = (tensors: number, perLayer: number) =>
  fc.tuple(fc.nat(tensors / perLayer - 1), fc.boolean()).map(([l, pair]) =>
    pair ? [l, l + 1] as const : { start: l, stop: l + 1 }
  );

/** Layer options that fit a pull of `srcTensors` into `dstTensors` tensors, one layer each. */
const fittingLayers = (srcTensors: number, dstTensors: number): fc.Arbitrary<LayerSpec> =>
  fc.constantFrom(1, 2).chain((perLayer) =>
    fc.record({
      src: oneLayer(srcTensors, perLayer),
      dst: oneLayer(dstTensors, perLayer),
      perLayer: fc.constant(perLayer === 2 ? undefined : perLayer),
    })
  );

/** pullBlocks that should mostly succeed: keys, caches, indexes and layers that fit (sometimes not quite). */
const plausiblePullBlocks: fc.Arbitrary<PullCommand> = fc.oneof(
  // By BlocksCacheKey into a cache of the same geometry, all tensors or one layer.
  fc.tuple(inRange(8, 8), fc.option(fittingLayers(4, 4), { freq: 3 })).map(([[src, dst], layers]) => ({
    kind: "pullBlocks" as const,
    key: { kind: "blocks" as const, model: 0, linked: true },
    slot: 0,
    src,
    dst,
    layers,
  })),
  fc.tuple(inRange(5, 6), fc.option(fittingLayers(2, 2), { freq: 3 })).map(([[src, dst], layers]) => ({
    kind: "pullBlocks" as const,
    key: { kind: "blocks" as const, model: 1, linked: true },
    slot: 1,
    src,
    dst,
    layers,
  })),
  // Model 1's 2 tensors into a layer of a 4-tensor cache of the same block size.
  fc.tuple(inRange(6, 6), fittingLayers(2, 4)).map(([[src, dst], layers]) => ({
    kind: "pullBlocks" as const,
    key: { kind: "blocks" as const, model: 1, linked: true },
    slot: 2,
    src,
    dst,
    layers,
  })),
  // A row cut into blocks: 4 of 32 bytes, 2 of 64.
  fc.tuple(rowKey, fc.constantFrom(0, 2), fc.integer({ min: 1, max: 4 }), fc.nat(7)).map(([key, slot, n, at]) => ({
    kind: "pullBlocks" as const,
    key,
    slot,
    src: [],
    dst: Array.from({ length: slot === 0 ? n : Math.min(n, 2) }, (_, i) => (at + 3 * i) % DECODER_CACHES[slot].batch),
    layers: null,
  })),
  // A row into the 2-tensor cache: one layer of the row.
  fc.tuple(rowKey, fittingLayers(4, 2), fc.integer({ min: 1, max: 2 }), fc.nat(4)).map(([key, layers, n, at]) => ({
    kind: "pullBlocks" as const,
    key,
    slot: 1,
    src: [],
    dst: Array.from({ length: n }, (_, i) => (at + i) % 5),
    layers,
  })),
);

/**
 * A source index out of range with a key the PROMPT does not hold, or of a
 * cluster not linked: which check comes first. -1 is 2^64 - 1 natively, out of
 * any cache before the PROMPT is asked; any other is the PROMPT's to judge.
 */
const badSourceFirst: fc.Arbitrary<PullCommand> = fc.tuple(
  fc.constantFrom<KeySpec>(
    { kind: "blocks", model: 5, linked: true },
    { kind: "blocks", model: 0, linked: false },
    { kind: "blocks", model: 0, linked: true },
  ),
  fc.constantFrom(-1, -2, 8, 3),
  fc.nat(9),
).map(([key, src, dst]) => ({ kind: "pullBlocks" as const, key, slot: 0, src: [src], dst: [dst], layers: null }));

/** pullCache that should mostly succeed. */
const plausiblePullCache: fc.Arbitrary<PullCommand> = fc.oneof(
  // Same layout and row: whole rows or a part.
  fc.tuple(rowKey, fc.nat(2), fc.constantFrom(-1, -1, 1, 32, 100, 128)).map(([key, batchIndex, size]) => ({
    kind: "pullCache" as const,
    key,
    slot: 3,
    batchIndex,
    size,
    layers: null,
  })),
  // With layers: into another layout, into 2 tensors, into shorter rows.
  fc.tuple(rowKey, fc.constantFrom(5, 6, 4, 3)).chain(([key, slot]) =>
    fc.tuple(fittingLayers(4, DECODER_CACHES[slot].tensors), fc.nat(DECODER_CACHES[slot].batch - 1)).map((
      [layers, batchIndex],
    ) => ({ kind: "pullCache" as const, key, slot, batchIndex, size: -1, layers }))
  ),
);

/** pullBlocks with anything in it. */
const randomPullBlocks: fc.Arbitrary<PullCommand> = fc.record({
  kind: fc.constant("pullBlocks" as const),
  key: keySpec,
  slot: fc.nat(DECODER_CACHES.length - 1),
  lists: blockLists,
  layers: layerSpec,
}).map(({ lists, ...rest }) => ({ ...rest, src: lists.src, dst: lists.dst }));

/** pullCache with anything in it. */
const randomPullCache: fc.Arbitrary<PullCommand> = fc.record({
  kind: fc.constant("pullCache" as const),
  key: keySpec,
  slot: fc.nat(DECODER_CACHES.length - 1),
  batchIndex: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom<Index>(0, 1, 2) },
    { weight: 1, arbitrary: fc.constantFrom<Index>(3, -1, 1.5) },
  ),
  size: fc.oneof(
    { weight: 8, arbitrary: fc.constant<Index>(-1) },
    { weight: 3, arbitrary: fc.constantFrom<Index>(32, 64, 128, 200) },
    { weight: 1, arbitrary: fc.constantFrom<Index>(0, -2, 1.5) },
  ),
  layers: layerSpec,
});

export const pullCommand: fc.Arbitrary<PullCommand> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.array(
      fc.oneof(plausiblePullBlocks, plausiblePullCache, randomPullBlocks, randomPullCache, badSourceFirst),
      { minLength: 2, maxLength: 4 },
    ).map((calls) => ({ kind: "burst" as const, calls: calls as PullCall[] })),
  },
  { weight: 8, arbitrary: plausiblePullBlocks },
  { weight: 1, arbitrary: badSourceFirst },
  { weight: 5, arbitrary: plausiblePullCache },
  { weight: 6, arbitrary: randomPullBlocks },
  { weight: 4, arbitrary: randomPullCache },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("promptWrite" as const),
      cache: fc.nat(PROMPT_CACHES.length - 1),
      tensor: fc.nat(3),
      at: fc.nat(1023),
      value: fc.integer({ min: 0, max: 255 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("removeKey" as const), req: fc.constantFrom(1, 2, 3) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("promptRealloc" as const),
      cache: fc.constantFrom(0, 1),
      gap: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    }),
  },
);

// ---------------------------------------------------------------------------
// The model's state and predictions

/** The bytes of one cache, per tensor. */
export type Bytes = Uint8Array[];

export interface PullModel {
  /** The PROMPT's caches' bytes, as PROMPT_CACHES. */
  prompt: Bytes[];
  /** The DECODER's caches' bytes, as DECODER_CACHES (freed ones: never read). */
  decoder: Bytes[];
  /** Whether each of the PROMPT's caches is allocated now (a freed blocks cache's key names nothing). */
  promptLive: boolean[];
  /** The requests whose keys the PROMPT still holds. */
  keys: Set<number>;
}

/** A prediction: the outcome, and on success what the call does to the model. */
export interface Prediction {
  want: Want;
  apply?: () => void;
}

export const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

class Refused extends Error {
  constructor(readonly want: Want) {
    super(wantName(want));
  }
}
const refuse = (want: Want): never => {
  throw new Refused(want);
};

/**
 * layerRangeOf: a layer range's [start, stop] as given, or undefined when
 * absent; a malformed one is refused with `refuse("TypeError")` (each model
 * throws its own refusal).
 */
export function givenRange(range: RangeSpec, refuse: (want: "TypeError") => never): [number, number] | undefined {
  if (range === undefined || range === null) return undefined;
  let start: unknown, stop: unknown;
  if (Array.isArray(range)) {
    if (range.length !== 2) refuse("TypeError");
    [start, stop] = range;
  } else if (typeof range === "object") {
    ({ start, stop } = range as { start: unknown; stop: unknown });
  } else {
    refuse("TypeError");
  }
  if (!isInt(start) || !isInt(stop)) refuse("TypeError");
  return [start as number, stop as number];
}

/** tensorRangeOf: a layer range's [first tensor, count), or undefined (absent or empty: all). */
function rangeModel(range: RangeSpec, perLayer: number): [number, number] | undefined {
  const given = givenRange(range, refuse);
  if (given === undefined) return undefined;
  const [first, end] = given;
  if (end <= first) return undefined;
  if (first < 0) refuse(S.LLM_PARAM_INVALID);
  return [first * perLayer, (end - first) * perLayer];
}

/** tensorRanges: [source start, destination start, count] (count 0: every tensor). */
function rangesModel(layers: LayerSpec | null | undefined, dst: CacheShape): [number, number, number] {
  const perLayer = layers?.perLayer ?? 2;
  if (!isInt(perLayer)) refuse("TypeError");
  if ((perLayer as number) < 0 || (perLayer as number) > UINT32_MAX) refuse("ValueError");
  if (perLayer === 0) refuse(S.LLM_PARAM_INVALID);
  const src = rangeModel(layers?.src, perLayer as number);
  const dstRange = rangeModel(layers?.dst, perLayer as number);
  if (src === undefined && dstRange === undefined) return [0, 0, 0];
  const [dstStart, dstCount] = dstRange ?? [0, dst.tensors];
  if (src !== undefined && src[1] !== dstCount) refuse(S.LLM_PARAM_INVALID);
  if (dstStart + dstCount > dst.tensors) refuse(S.LLM_PARAM_INVALID);
  return [src?.[0] ?? 0, dstStart, dstCount];
}

/** The source the PROMPT answers for a key (after the link is checked), or the refusal. */
function lookup(model: PullModel, key: KeySpec): { cache: number; row: number } {
  if (key.kind === "blocks") {
    return key.model < 2 && model.promptLive[key.model]
      ? { cache: key.model, row: 0 }
      : refuse(S.LLM_KV_CACHE_NOT_EXIST);
  }
  if (key.kind === "cacheKey") {
    return model.keys.has(key.req) ? { cache: ROWS, row: key.req - 1 } : refuse(S.LLM_KV_CACHE_NOT_EXIST);
  }
  if (key.kind === "byId") {
    if (!key.known) refuse(S.LLM_KV_CACHE_NOT_EXIST);
    return key.row < PROMPT_CACHES[ROWS].batch ? { cache: ROWS, row: key.row } : refuse(S.LLM_PARAM_INVALID);
  }
  return refuse("TypeError");
}

/** The key's own checks (pullKeyOf): upstream's padding key, and a key naming a request and a prefix. */
function keyRules(key: KeySpec): void {
  if (key.kind === "cacheKey" && key.variant !== "plain") refuse(S.LLM_PARAM_INVALID);
}

const linkedKey = (key: KeySpec) => key.kind === "bogus" || key.linked;

/** The copy of `pairs` (source block, destination block) over tensors, in the native loop's order. */
function copyPairs(
  dst: Bytes,
  src: Bytes,
  block: number,
  srcBase: number,
  [srcStart, dstStart, count]: [number, number, number],
  pairs: [number, number][],
): void {
  for (let t = 0; t < count; t++) {
    for (const [s, d] of pairs) {
      dst[dstStart + t].set(src[srcStart + t].subarray(srcBase + s * block, srcBase + (s + 1) * block), d * block);
    }
  }
}

/** The outcome of pullBlocks(key, DECODER cache `slot`, src, dst, layers). */
export function predictPullBlocks(model: PullModel, c: Extract<PullCommand, { kind: "pullBlocks" }>): Prediction {
  try {
    if (c.key.kind === "bogus") refuse("TypeError");
    const srcList = c.src ?? [];
    const dstList = c.dst ?? [];
    if (!srcList.every(isInt) || !dstList.every(isInt)) refuse("TypeError");
    const src = srcList as number[], dst = dstList as number[];
    const shape = DECODER_CACHES[c.slot];
    if (!shape.blocks) refuse(S.LLM_PARAM_INVALID);
    if (dst.length === 0) refuse(S.LLM_PARAM_INVALID);
    const ranges = rangesModel(c.layers, shape);
    if (c.key.kind === "blocks") {
      if (src.length === 0 || src.length !== dst.length) refuse(S.LLM_PARAM_INVALID);
    } else if (src.length !== 0) {
      refuse(S.LLM_PARAM_INVALID);
    }
    keyRules(c.key);
    if (shape.freed) refuse(S.LLM_KV_CACHE_NOT_EXIST);
    // Natively, before the PROMPT is asked: the pairs against the destination
    // (a source index of -1 is 2^64 - 1, beyond any cache), then the link.
    const pairs: [number, number][] = dst.map((d, i) => [c.key.kind === "blocks" ? src[i] : i, d]);
    for (const [s, d] of pairs) {
      if (s === -1 || d < 0 || d >= shape.batch) refuse(S.LLM_PARAM_INVALID);
    }
    if (!linkedKey(c.key)) refuse(S.LLM_NOT_YET_LINK);
    const source = lookup(model, c.key);
    const from = PROMPT_CACHES[source.cache];
    // With the answer: tensor ranges, block sizes, source indexes.
    const [srcStart, dstStart, count] = ranges;
    if (count === 0 && from.tensors !== shape.tensors) refuse(S.LLM_PARAM_INVALID);
    if (count > 0 && srcStart + count > from.tensors) refuse(S.LLM_PARAM_INVALID);
    let blocks: number, srcBase = 0;
    if (c.key.kind === "blocks") {
      if (from.row !== shape.row) refuse(S.LLM_PARAM_INVALID);
      blocks = from.batch;
    } else {
      blocks = Math.floor(from.row / shape.row); // the row, cut into blocks of the destination's size
      srcBase = source.row * from.row;
    }
    if (pairs.some(([s]) => s < 0 || s >= blocks)) refuse(S.LLM_PARAM_INVALID);
    return {
      want: "ok",
      apply: () => {
        copyPairs(model.decoder[c.slot], model.prompt[source.cache], shape.row, srcBase, [
          srcStart,
          dstStart,
          count || shape.tensors,
        ], pairs);
        if (c.key.kind === "cacheKey") model.keys.delete(c.key.req);
      },
    };
  } catch (err) {
    if (err instanceof Refused) return { want: err.want };
    throw err;
  }
}

/** The outcome of pullCache(key, DECODER cache `slot`, batchIndex, size, layers). */
export function predictPullCache(model: PullModel, c: Extract<PullCommand, { kind: "pullCache" }>): Prediction {
  try {
    if (c.key.kind === "bogus" || c.key.kind === "blocks") refuse("TypeError");
    if (!isInt(c.batchIndex)) refuse("TypeError");
    const row = c.batchIndex as number;
    if (row < 0 || row > UINT32_MAX) refuse("ValueError");
    if (!isInt(c.size)) refuse("TypeError");
    const size = c.size as number;
    const shape = DECODER_CACHES[c.slot];
    if (shape.blocks) refuse(S.LLM_PARAM_INVALID);
    if (size !== -1 && size <= 0) refuse(S.LLM_PARAM_INVALID);
    const ranges = rangesModel(c.layers, shape);
    const [srcStart, , count] = ranges;
    if (count !== 0 && size !== -1) refuse(S.LLM_PARAM_INVALID);
    keyRules(c.key);
    if (shape.freed) refuse(S.LLM_KV_CACHE_NOT_EXIST);
    const from = PROMPT_CACHES[ROWS];
    if (count === 0) {
      // llmdd_cache_pull: the row and size here, the link, the answer, then the layouts.
      if (row >= shape.batch) refuse(S.LLM_PARAM_INVALID);
      if (size !== -1 && size > shape.row) refuse(S.LLM_PARAM_INVALID);
      if (!linkedKey(c.key)) refuse(S.LLM_NOT_YET_LINK);
      const source = lookup(model, c.key);
      if (from.tensors !== shape.tensors || !sameLayout(from, shape) || from.row !== shape.row) {
        refuse(S.LLM_PARAM_INVALID);
      }
      const bytes = size === -1 ? shape.row : size;
      return {
        want: "ok",
        apply: () => {
          for (let t = 0; t < shape.tensors; t++) {
            const src = model.prompt[ROWS][t].subarray(source.row * from.row, source.row * from.row + bytes);
            model.decoder[c.slot][t].set(src, row * shape.row);
          }
          if (c.key.kind === "cacheKey") model.keys.delete(c.key.req);
        },
      };
    }
    // With layer ranges: one block (the row) of the row cut into blocks of this cache's rows.
    if (row >= shape.batch) refuse(S.LLM_PARAM_INVALID);
    if (!linkedKey(c.key)) refuse(S.LLM_NOT_YET_LINK);
    const source = lookup(model, c.key);
    if (srcStart + count > from.tensors) refuse(S.LLM_PARAM_INVALID);
    if (from.row < shape.row) refuse(S.LLM_PARAM_INVALID);
    return {
      want: "ok",
      apply: () => {
        copyPairs(model.decoder[c.slot], model.prompt[ROWS], shape.row, source.row * from.row, ranges, [[0, row]]);
        if (c.key.kind === "cacheKey") model.keys.delete(c.key.req);
      },
    };
  } catch (err) {
    if (err instanceof Refused) return { want: err.want };
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Making the calls

/** The objects a command's key spec names. */
export interface PullWorld {
  prompt: bigint; // the PROMPT's cluster, linked
  unlinked: bigint; // a cluster nobody linked
  rowsCacheId: bigint; // P.rows' id at the PROMPT
}

export function keyOf(world: PullWorld, key: KeySpec): BlocksCacheKey | CacheKey | CacheKeyByIdAndIndex {
  if (key.kind === "bogus") return { clusterId: world.prompt, modelId: 0n } as unknown as BlocksCacheKey;
  const cluster = key.linked ? world.prompt : world.unlinked;
  if (key.kind === "blocks") return new BlocksCacheKey(cluster, key.model);
  if (key.kind === "cacheKey") {
    if (key.variant === "padding") return new CacheKey(cluster, UINT64_MAX);
    if (key.variant === "prefix") return new CacheKey(cluster, key.req, 0n, 5n);
    return new CacheKey(cluster, key.req);
  }
  return new CacheKeyByIdAndIndex(cluster, key.known ? world.rowsCacheId : world.rowsCacheId + 1000n, key.row);
}

/** The options object of a command's layer spec. */
export function optionsOf(layers: LayerSpec | null | undefined): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  if (layers === undefined || layers === null) return options;
  if ("src" in layers) options.srcLayerRange = layers.src;
  if ("dst" in layers) options.dstLayerRange = layers.dst;
  if ("perLayer" in layers) options.tensorNumPerLayer = layers.perLayer;
  return options;
}

/** The bytes of every tensor of `cache` (zero-copy views: the host backend). */
export function viewsOf(manager: CacheManager, cache: Cache): Uint8Array[] {
  return Array.from({ length: cache.cacheDesc.numTensors }, (_, t) => {
    const view = manager.getCacheTensorViews(cache, t)[0];
    return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
  });
}
