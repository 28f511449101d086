// The model of CacheManager.pushCache and pushBlocks across a link, for
// test/cache_manager_fuzz.test.ts: a DECODER with remote cache access pushes
// its caches (pooled and registered, blocks and rows, remote-accessible or
// not, freed ones) into a PROMPT's pooled caches (through the shared mapping)
// and registered ones (through the link's socket), and into a second PROMPT
// without remote access; a DECODER without remote access is refused first.
// The model holds both sides' bytes and predicts each call's outcome in the
// order the library checks: remote access here (LLM_PARAM_INVALID), argument
// types (TypeError, ValueError), upstream's rules (LLM_PARAM_INVALID: blocks
// or not, empty or unequal lists, layer ranges, size), a range naming no layer
// at all (success, nothing moves), the source alive (LLM_KV_CACHE_NOT_EXIST),
// then natively: the source remote-accessible, its row or block indexes (a
// destination index of -1 is 2^64 - 1, out of any cache), its tensor range,
// the link (LLM_NOT_YET_LINK); the PROMPT's answer (LLM_KV_CACHE_NOT_EXIST for
// an unknown key or id, LLM_PARAM_INVALID for a batch index out of range or a
// destination without remote access); then against the answer: the
// destination's tensor range, block sizes, destination block indexes.
import fc from "fast-check";
import { BlocksCacheKey, CacheKeyByIdAndIndex, LLMException, LLMStatusCode, ValueError } from "../../../mod.ts";
import {
  type Bytes,
  givenRange,
  type Index,
  index,
  isInt,
  type LayerSpec,
  type RangeSpec,
  rangeSpecs,
  type Want,
} from "./block_pulls.ts";

const S = LLMStatusCode;
const UINT32_MAX = 0xFFFF_FFFF;

/** A cache of the push model: `tensors` tensors of `batch` blocks (or rows) of `row` bytes. */
export interface PushShape {
  name: string;
  tensors: number;
  batch: number;
  row: number;
  blocks: boolean;
  /** Program memory registered (else the pool's). */
  registered?: boolean;
  /** Reachable by a linked peer (registered with remoteAccessible, or the pool of an engine with remote access). */
  remote: boolean;
  /** The BlocksCacheKey model id it is named by (blocks caches of a PROMPT). */
  model?: number;
  /** Freed before any push (a DECODER source). */
  freed?: boolean;
}

/** The PROMPT with remote access (cluster "P"): its caches, fresh for each run. */
export const P_CACHES: readonly PushShape[] = [
  { name: "P.blocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, remote: true, model: 0 },
  { name: "P.blocks2x6x64", tensors: 2, batch: 6, row: 64, blocks: true, remote: true, model: 1 },
  { name: "P.rows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, remote: true },
  { name: "P.regBlocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, registered: true, remote: true, model: 2 },
  { name: "P.regRows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, registered: true, remote: true },
  { name: "P.regClosed4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, registered: true, remote: false },
  { name: "P.regClosedBlocks", tensors: 4, batch: 8, row: 32, blocks: true, registered: true, remote: false, model: 3 },
];
/** The PROMPT without remote access (cluster "Q"): its pools are closed to pushes. */
export const Q_CACHES: readonly PushShape[] = [
  { name: "Q.blocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, remote: false, model: 0 },
  { name: "Q.rows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, remote: false },
];
/** The DECODER's sources (made once, before the link: registered remote memory cannot come after). */
export const D_CACHES: readonly PushShape[] = [
  { name: "D.blocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, remote: true },
  { name: "D.blocks2x6x64", tensors: 2, batch: 6, row: 64, blocks: true, remote: true },
  { name: "D.blocks4x8x16", tensors: 4, batch: 8, row: 16, blocks: true, remote: true },
  { name: "D.rows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, remote: true },
  { name: "D.rows2x2x64", tensors: 2, batch: 2, row: 64, blocks: false, remote: true },
  { name: "D.regBlocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, registered: true, remote: true },
  { name: "D.regRows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, registered: true, remote: true },
  { name: "D.localBlocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, registered: true, remote: false },
  { name: "D.localRows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, registered: true, remote: false },
  { name: "D.freedBlocks4x8x32", tensors: 4, batch: 8, row: 32, blocks: true, remote: true, freed: true },
  { name: "D.freedRows4x3x32", tensors: 4, batch: 3, row: 32, blocks: false, remote: true, freed: true },
];

// ---------------------------------------------------------------------------
// Commands

export type Cluster = "P" | "Q" | "unlinked";
/** A destination key: a BlocksCacheKey of a model id, a CacheKeyByIdAndIndex of a cache, or a wrong object. */
export type PushKey =
  | { kind: "blocks"; cluster: Cluster; model: number }
  | { kind: "byId"; cluster: Cluster; cache: number | "unknown"; batchIndex: number }
  | { kind: "bogus" };

export type PushCall =
  | {
    kind: "pushBlocks";
    noRemote: boolean; // from the DECODER without remote access
    key: PushKey;
    src: number; // D_CACHES index
    srcBlocks: Index[] | undefined;
    dstBlocks: Index[] | undefined;
    layers: LayerSpec | null;
  }
  | {
    kind: "pushCache";
    noRemote: boolean;
    key: PushKey;
    src: number;
    srcBatchIndex: Index | undefined;
    layers: LayerSpec | null;
    size: Index | undefined;
  };

export type PushCommand =
  | PushCall
  | { kind: "pushBurst"; calls: PushCall[] }
  | { kind: "decoderWrite"; cache: number; tensor: number; at: number; value: number }
  | { kind: "promptWrite"; cache: number; tensor: number; at: number; value: number }
  /** The PROMPT frees (pooled) or unregisters (registered) its cache `cache`: pushes to it fail from then on. */
  | { kind: "promptFree"; cache: number };

const rangeSpec = rangeSpecs(3);

const perLayer = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.constantFrom(1, 2) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(0, -1, 1.5, 3, 8, 2 ** 32) },
);

const layerSpec: fc.Arbitrary<LayerSpec | null> = fc.option(
  fc.record({ src: rangeSpec, dst: rangeSpec, perLayer }, { requiredKeys: [] }),
  { freq: 2 },
);

const cluster: fc.Arbitrary<Cluster> = fc.oneof(
  { weight: 14, arbitrary: fc.constant("P" as const) },
  { weight: 2, arbitrary: fc.constant("Q" as const) },
  { weight: 1, arbitrary: fc.constant("unlinked" as const) },
);

/** Model ids: P's 0 to 3 (Q's 0), and 5, which nothing holds. */
const blocksKey: fc.Arbitrary<PushKey> = fc.record({
  kind: fc.constant("blocks" as const),
  cluster,
  model: fc.oneof({ weight: 12, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: fc.constant(5) }),
});

const byIdKey: fc.Arbitrary<PushKey> = fc.record({
  kind: fc.constant("byId" as const),
  cluster,
  cache: fc.oneof(
    { weight: 12, arbitrary: fc.nat(P_CACHES.length - 1) },
    { weight: 1, arbitrary: fc.constant("unknown" as const) },
  ),
  batchIndex: fc.oneof({ weight: 8, arbitrary: fc.nat(2) }, { weight: 1, arbitrary: fc.constantFrom(3, 7, 8) }),
});

const noRemote = fc.oneof({ weight: 20, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) });

/** Block lists: mostly pairs of equal length, sometimes one longer, empty or left out. */
const blockLists = fc.tuple(
  fc.array(fc.tuple(index, index), { maxLength: 4 }),
  fc.constantFrom("pairs", "pairs", "pairs", "pairs", "pairs", "srcExtra", "dstExtra", "srcEmpty", "srcUndefined"),
  index,
).map(([pairs, how, extra]) => {
  let src: Index[] | undefined = pairs.map((p) => p[0]);
  let dst: Index[] | undefined = pairs.map((p) => p[1]);
  if (how === "srcExtra") src.push(extra);
  if (how === "dstExtra") dst.push(extra);
  if (how === "srcEmpty") src = [];
  if (how === "srcUndefined") src = undefined;
  if (how === "dstExtra" && pairs.length === 0) dst = undefined;
  return { src, dst };
});

/** One layer (of `per` tensors) below `layers`, as a pair or an object. */
const oneLayer = (layers: number) =>
  fc.tuple(fc.nat(layers - 1), fc.boolean()).map(([l, pair]) => pair ? [l, l + 1] as const : { start: l, stop: l + 1 });

/** Layer options that fit: none, or one layer of 2 tensors each side (`srcLayers`, `dstLayers` layers). */
const fitting = (srcLayers: number, dstLayers: number) =>
  fc.option(fc.record({ src: oneLayer(srcLayers), dst: oneLayer(dstLayers) }), { freq: 2 });

/** `n` pairs of in-range blocks (1 to 4). */
const pairsIn = (srcMax: number, dstMax: number) =>
  fc.array(fc.tuple(fc.nat(srcMax - 1), fc.nat(dstMax - 1)), { minLength: 1, maxLength: 4 });

/** pushBlocks that should mostly succeed: sources and destinations of one geometry. */
const plausiblePushBlocks: fc.Arbitrary<PushCall> = fc.oneof(
  // 4 × 8 × 32 (pooled or registered, or local or freed) into P's model 0 (pool) or 2 (registered).
  {
    weight: 6,
    arbitrary: fc.tuple(
      fc.constantFrom(0, 0, 5, 5, 7, 9),
      fc.constantFrom(0, 0, 2, 2, 3),
      pairsIn(8, 8),
      fitting(2, 2),
    ).map(([src, model, pairs, layers]) => ({
      kind: "pushBlocks" as const,
      noRemote: false,
      key: { kind: "blocks" as const, cluster: "P" as const, model },
      src,
      srcBlocks: pairs.map((p) => p[0]),
      dstBlocks: pairs.map((p) => p[1]),
      layers,
    })),
  },
  // 2 × 6 × 64 into P's model 1, all of it or one layer (of 2 tensors) into one.
  {
    weight: 3,
    arbitrary: fc.tuple(pairsIn(6, 6), fitting(1, 1)).map(([pairs, layers]) => ({
      kind: "pushBlocks" as const,
      noRemote: false,
      key: { kind: "blocks" as const, cluster: "P" as const, model: 1 },
      src: 1,
      srcBlocks: pairs.map((p) => p[0]),
      dstBlocks: pairs.map((p) => p[1]),
      layers,
    })),
  },
  // Into Q's pool, which is closed to pushes.
  {
    weight: 1,
    arbitrary: fc.tuple(pairsIn(8, 8)).map(([pairs]) => ({
      kind: "pushBlocks" as const,
      noRemote: false,
      key: { kind: "blocks" as const, cluster: "Q" as const, model: 0 },
      src: 0,
      srcBlocks: pairs.map((p) => p[0]),
      dstBlocks: pairs.map((p) => p[1]),
      layers: null,
    })),
  },
);

/** pushCache that should mostly succeed: a 32-byte row into a row (or a block) of P's. */
const plausiblePushCache: fc.Arbitrary<PushCall> = fc.tuple(
  fc.constantFrom(3, 3, 6, 6, 8, 10),
  fc.constantFrom(2, 2, 4, 4, 5, 0, 3),
  fc.nat(2),
  fc.nat(2),
  fitting(2, 2),
).map(([src, cache, row, batchIndex, layers]) => ({
  kind: "pushCache" as const,
  noRemote: false,
  key: { kind: "byId" as const, cluster: "P" as const, cache, batchIndex },
  src,
  srcBatchIndex: row,
  layers,
  size: undefined,
}));

const randomPushBlocks: fc.Arbitrary<PushCall> = fc.record({
  kind: fc.constant("pushBlocks" as const),
  noRemote,
  key: fc.oneof({ weight: 10, arbitrary: blocksKey }, { weight: 1, arbitrary: byIdKey }, {
    weight: 1,
    arbitrary: fc.constant({ kind: "bogus" as const }),
  }),
  src: fc.nat(D_CACHES.length - 1),
  lists: blockLists,
  layers: layerSpec,
}).map(({ lists, ...rest }) => ({ ...rest, srcBlocks: lists.src, dstBlocks: lists.dst }));

const randomPushCache: fc.Arbitrary<PushCall> = fc.record({
  kind: fc.constant("pushCache" as const),
  noRemote,
  key: fc.oneof({ weight: 10, arbitrary: byIdKey }, { weight: 1, arbitrary: blocksKey }, {
    weight: 1,
    arbitrary: fc.constant({ kind: "bogus" as const }),
  }),
  src: fc.nat(D_CACHES.length - 1),
  srcBatchIndex: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom<Index | undefined>(0, 1, 2, undefined) },
    { weight: 1, arbitrary: fc.constantFrom<Index | undefined>(3, -1, 1.5, "1", 2 ** 31, 2 ** 32) },
  ),
  layers: layerSpec,
  size: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom<Index | undefined>(-1, undefined) },
    { weight: 1, arbitrary: fc.constantFrom<Index | undefined>(0, 32, -2, 1.5) },
  ),
});

/** A destination index out of range with a key nobody holds, or of a cluster not linked: which check comes first. */
const badDestinationFirst: fc.Arbitrary<PushCall> = fc.tuple(
  fc.constantFrom<PushKey>(
    { kind: "blocks", cluster: "P", model: 5 },
    { kind: "blocks", cluster: "unlinked", model: 0 },
    { kind: "blocks", cluster: "P", model: 0 },
    { kind: "blocks", cluster: "Q", model: 0 },
  ),
  fc.constantFrom(-1, -2, 8, 3),
  fc.constantFrom(0, 7, 8, -1),
).map(([key, dst, src]) => ({
  kind: "pushBlocks" as const,
  noRemote: false,
  key,
  src: 0,
  srcBlocks: [src],
  dstBlocks: [dst],
  layers: null,
}));

const pushCall = fc.oneof(
  { weight: 8, arbitrary: plausiblePushBlocks },
  { weight: 5, arbitrary: plausiblePushCache },
  { weight: 5, arbitrary: randomPushBlocks },
  { weight: 4, arbitrary: randomPushCache },
  { weight: 1, arbitrary: badDestinationFirst },
);

export const pushCommand: fc.Arbitrary<PushCommand> = fc.oneof(
  { weight: 20, arbitrary: pushCall },
  {
    weight: 3,
    arbitrary: fc.array(pushCall, { minLength: 2, maxLength: 4 }).map((calls) => ({
      kind: "pushBurst" as const,
      calls,
    })),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom("decoderWrite" as const, "promptWrite" as const),
      cache: fc.nat(P_CACHES.length - 1),
      tensor: fc.nat(3),
      at: fc.nat(1023),
      value: fc.integer({ min: 0, max: 255 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("promptFree" as const), cache: fc.nat(P_CACHES.length - 1) }) },
);

// ---------------------------------------------------------------------------
// The model's state and predictions

export interface PushModel {
  /** P's caches' bytes, as P_CACHES; Q's, as Q_CACHES; the DECODER's, as D_CACHES (freed: never read). */
  p: Bytes[];
  q: Bytes[];
  d: Bytes[];
  /** Whether each of P's caches is alive (promptFree ends it). */
  pLive: boolean[];
}

export interface Prediction {
  want: Want;
  /** A piece of the error's message that tells which check refused (the exact error, not only its code). */
  why?: string;
  apply?: () => void;
}

class Refused extends Error {
  constructor(readonly want: Want, readonly why?: string) {
    super(String(want));
  }
}
const refuse = (want: Want, why?: string): never => {
  throw new Refused(want, why);
};

/** checkLayerRange: [start, stop] as given, or undefined; TypeError / LLM_PARAM_INVALID as the library. */
function layerRange(range: RangeSpec): [number, number] | undefined {
  const given = givenRange(range, refuse);
  if (given !== undefined && !(0 <= given[0] && given[0] < given[1])) {
    refuse(S.LLM_PARAM_INVALID, "check 0 <= range.start < range.stop failed");
  }
  return given;
}

/** pushTensorRanges: [source start, destination start, count], or null for no layer at all. */
function pushRanges(layers: LayerSpec | null, src: PushShape): [number, number, number] | null {
  const per = layers?.perLayer ?? 2;
  if (!isInt(per)) refuse("TypeError");
  if ((per as number) < 0 || (per as number) > UINT32_MAX) refuse("ValueError");
  if (per === 0) refuse(S.LLM_PARAM_INVALID, "tensor_num_per_layer (0) is invalid");
  const n = per as number;
  const given = [layerRange(layers?.src), layerRange(layers?.dst)];
  const all: [number, number] = [0, Math.floor(src.tensors / n)];
  const [s, d] = given.map((r) => r ?? all);
  if (s[1] - s[0] !== d[1] - d[0]) refuse(S.LLM_PARAM_INVALID, "src_layer_range size should be equal");
  if (s[1] === s[0]) return null;
  if (src.tensors % n !== 0) refuse(S.LLM_PARAM_INVALID, "must be a multiple of tensor_num_per_layer");
  return [s[0] * n, d[0] * n, (s[1] - s[0]) * n];
}

/** The destination a key names at its PROMPT (after the link): the cache, its row, or the refusal. */
function destination(model: PushModel, key: PushKey): { side: "p" | "q"; cache: number; row: number } {
  if (key.kind === "bogus") return refuse("TypeError");
  const caches = key.cluster === "P" ? P_CACHES : Q_CACHES;
  const live = (i: number) => key.cluster === "Q" || model.pLive[i];
  let cache: number;
  let row = 0;
  if (key.kind === "blocks") {
    cache = caches.findIndex((c, i) => c.model === key.model && live(i));
    if (cache < 0) refuse(S.LLM_KV_CACHE_NOT_EXIST, "no blocks cache holds key");
  } else {
    // By id: the id of P's cache `cache`, or at Q, of Q's cache `cache` modulo their number.
    if (key.cache === "unknown") return refuse(S.LLM_KV_CACHE_NOT_EXIST, "does not exist at cluster");
    cache = key.cluster === "Q" ? key.cache % Q_CACHES.length : key.cache;
    if (!live(cache)) refuse(S.LLM_KV_CACHE_NOT_EXIST, "does not exist at cluster");
    row = key.batchIndex;
    if (row >= caches[cache].batch) refuse(S.LLM_PARAM_INVALID, `batch index[${row}] is out of range`);
  }
  if (!caches[cache].remote) refuse(S.LLM_PARAM_INVALID, "remote cache is not remote accessible");
  return { side: key.cluster === "P" ? "p" : "q", cache, row };
}

/** The copy of `pairs` over `count` tensors, in the native loop's order. */
function copy(dst: Bytes, src: Bytes, block: number, [s0, d0, count]: [number, number, number], pairs: number[][]) {
  for (let t = 0; t < count; t++) {
    for (const [s, d] of pairs) {
      dst[d0 + t].set(src[s0 + t].subarray(s * block, (s + 1) * block), d * block);
    }
  }
}

/** What the native call checks with the PROMPT's answer, and the copy it then makes. */
function answered(
  model: PushModel,
  key: PushKey,
  from: number,
  ranges: [number, number, number],
  pairsOf: (row: number) => number[][],
): Prediction {
  const to = destination(model, key);
  const shape = (to.side === "p" ? P_CACHES : Q_CACHES)[to.cache];
  const src = D_CACHES[from];
  const [, d0, count] = ranges;
  if (d0 + count > shape.tensors) refuse(S.LLM_PARAM_INVALID, "dst tensors [");
  if (shape.row !== src.row) refuse(S.LLM_PARAM_INVALID, `src block size:${src.row} and dst block size:${shape.row}`);
  const pairs = pairsOf(to.row);
  if (pairs.some(([, d]) => d >= shape.batch)) refuse(S.LLM_PARAM_INVALID, "dst_block_index:");
  return {
    want: "ok",
    apply: () => copy((to.side === "p" ? model.p : model.q)[to.cache], model.d[from], src.row, ranges, pairs),
  };
}

export function predictPush(model: PushModel, c: PushCall): Prediction {
  try {
    if (c.noRemote) refuse(S.LLM_PARAM_INVALID, "is only supported while enable_remote_cache_accessible is True");
    const src = D_CACHES[c.src];
    if (c.kind === "pushBlocks") {
      if (c.key.kind !== "blocks") refuse("TypeError");
      const srcList = c.srcBlocks ?? [], dstList = c.dstBlocks ?? [];
      if (!srcList.every(isInt) || !dstList.every(isInt)) refuse("TypeError");
      if (!src.blocks) refuse(S.LLM_PARAM_INVALID, "cache should be blocks cache");
      if (dstList.length === 0) refuse(S.LLM_PARAM_INVALID, "dst_blocks can not be empty");
      const ranges = pushRanges(c.layers, src);
      if (srcList.length !== dstList.length) refuse(S.LLM_PARAM_INVALID, "not match dst_block num");
      if (ranges === null) return { want: "ok" };
      if (src.freed) refuse(S.LLM_KV_CACHE_NOT_EXIST, "was deallocated");
      if (!src.remote) refuse(S.LLM_PARAM_INVALID, "local cache is not remote accessible");
      const pairs = (srcList as number[]).map((s, i) => [s, dstList[i] as number]);
      // Unsigned natively: a negative source is beyond any cache, a destination of -1 is 2^64 - 1.
      for (const [s, d] of pairs) {
        if (s < 0 || s >= src.batch) refuse(S.LLM_PARAM_INVALID, "src_block_index:");
        if (d === -1) refuse(S.LLM_PARAM_INVALID, "dst_block_index:18446744073709551615");
      }
      if (ranges[0] + ranges[2] > src.tensors) refuse(S.LLM_PARAM_INVALID, "src tensors [");
      if (c.key.kind === "blocks" && c.key.cluster === "unlinked") refuse(S.LLM_NOT_YET_LINK, "not linked to cluster");
      // A negative destination other than -1 is huge: out of the destination's range.
      return answered(model, c.key, c.src, ranges, () => pairs.map(([s, d]) => [s, d < 0 ? Infinity : d]));
    }
    if (c.key.kind !== "byId") refuse("TypeError");
    const row = c.srcBatchIndex ?? 0;
    if (!isInt(row)) refuse("TypeError");
    if ((row as number) < 0 || (row as number) > UINT32_MAX) refuse("ValueError");
    if (src.blocks) refuse(S.LLM_PARAM_INVALID, "cache can not be blocks cache");
    const ranges = pushRanges(c.layers, src);
    const size = c.size ?? -1;
    if (!isInt(size)) refuse("TypeError");
    if (size !== -1) refuse(S.LLM_PARAM_INVALID, `size (${size}) is invalid, should be = -1`);
    if (ranges === null) return { want: "ok" };
    if (src.freed) refuse(S.LLM_KV_CACHE_NOT_EXIST, "was deallocated");
    if (!src.remote) refuse(S.LLM_PARAM_INVALID, "local cache is not remote accessible");
    // The native call takes an int32: 2^31 and up come wrapped, and are told as given.
    if ((row as number) >= src.batch) refuse(S.LLM_PARAM_INVALID, `src_batch_index ${row} is out of range`);
    if (ranges[0] + ranges[2] > src.tensors) refuse(S.LLM_PARAM_INVALID, "src tensors [");
    if (c.key.kind === "byId" && c.key.cluster === "unlinked") refuse(S.LLM_NOT_YET_LINK, "not linked to cluster");
    return answered(model, c.key, c.src, ranges, (dstRow) => [[row as number, dstRow]]);
  } catch (err) {
    if (err instanceof Refused) return { want: err.want, why: err.why };
    throw err;
  }
}

/** What a call ended with: the outcome, and the error's message. */
export async function pushOutcomeOf(call: () => unknown): Promise<{ want: Want; message: string }> {
  try {
    await call();
    return { want: "ok", message: "" };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof TypeError) return { want: "TypeError", message };
    if (err instanceof ValueError) return { want: "ValueError", message };
    if (err instanceof LLMException) return { want: err.statusCode, message };
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Making the calls

export interface PushWorld {
  p: bigint;
  q: bigint;
  unlinked: bigint;
  /** P's caches' ids, as P_CACHES (a freed one's id stays: it names nothing now); Q's, as Q_CACHES. */
  pIds: bigint[];
  qIds: bigint[];
}

export function pushKeyOf(world: PushWorld, key: PushKey): BlocksCacheKey | CacheKeyByIdAndIndex {
  if (key.kind === "bogus") return { clusterId: world.p, cacheId: 1n, batchIndex: 0 } as unknown as BlocksCacheKey;
  const cluster = key.cluster === "P" ? world.p : key.cluster === "Q" ? world.q : world.unlinked;
  if (key.kind === "blocks") return new BlocksCacheKey(cluster, key.model);
  const ids = key.cluster === "Q" ? world.qIds : world.pIds;
  const id = key.cache === "unknown"
    ? [...world.pIds, ...world.qIds].reduce((a, b) => (a > b ? a : b)) + 1000n
    : ids[key.cache % ids.length];
  return new CacheKeyByIdAndIndex(cluster, id, key.batchIndex);
}

// ---------------------------------------------------------------------------
// transferCacheAsync by TransferWithCacheKeyConfig, with a synchronous synchronizer

/** One target: a key, the source's layers [srcStart, +layers), the destination's from dstStart. */
export interface TargetSpec {
  key: Exclude<PushKey, { kind: "bogus" }>;
  srcStart: number;
  layers: number;
  dstStart: number;
  srcBatchIndex: number;
}

export interface TransferCall {
  kind: "transfer";
  src: number;
  targets: TargetSpec[];
  /** A plain object among the configs (TypeError). */
  wrongConfig: boolean;
  srcBlocks: Index[] | undefined;
  dstBlocks: Index[] | undefined;
  /** The layer the synchronizer refuses (returns false, or throws), if any. */
  refuseAt: number | null;
  throws: boolean;
}

const target: fc.Arbitrary<TargetSpec> = fc.record({
  key: fc.oneof({ weight: 3, arbitrary: blocksKey }, { weight: 2, arbitrary: byIdKey }) as fc.Arbitrary<
    TargetSpec["key"]
  >,
  srcStart: fc.nat(2),
  layers: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constant(2) }),
  dstStart: fc.oneof({ weight: 6, arbitrary: fc.nat(1) }, { weight: 1, arbitrary: fc.nat(3) }),
  srcBatchIndex: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.nat(3) }),
}).map((t) => (t.key.kind === "blocks" ? { ...t, srcBatchIndex: 0 } : t));

const transferIndex: fc.Arbitrary<Index> = fc.oneof(
  { weight: 16, arbitrary: fc.nat(9) },
  { weight: 1, arbitrary: fc.constantFrom<Index>(-1, 1.5) },
);

/** A target that fits a 4-tensor (2-layer) source: blocks into P's blocks caches, or a row into P's rows. */
const fittingTarget = (rows: boolean): fc.Arbitrary<TargetSpec> =>
  fc.record({
    key: rows
      ? fc.record({
        kind: fc.constant("byId" as const),
        cluster: fc.constant("P" as const),
        cache: fc.constantFrom(2, 4),
        batchIndex: fc.nat(2),
      })
      : fc.record({
        kind: fc.constant("blocks" as const),
        cluster: fc.constant("P" as const),
        model: fc.constantFrom(0, 2),
      }),
    srcStart: fc.nat(1),
    layers: fc.constant(1),
    dstStart: fc.nat(1),
    srcBatchIndex: rows ? fc.nat(2) : fc.constant(0),
  });

/** Transfers that should mostly succeed: blocks (or rows) of a 4-tensor source to one or two fitting targets. */
const plausibleTransfer: fc.Arbitrary<TransferCall> = fc.boolean().chain((rows) =>
  fc.record({
    kind: fc.constant("transfer" as const),
    src: rows ? fc.constantFrom(3, 6) : fc.constantFrom(0, 5),
    targets: fc.array(fittingTarget(rows), { minLength: 1, maxLength: 2 }),
    wrongConfig: fc.constant(false),
    srcBlocks: fc.constant<Index[] | undefined>(undefined),
    dstBlocks: fc.constant<Index[] | undefined>(undefined),
    refuseAt: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(1) }),
    throws: fc.boolean(),
  }).chain((c) =>
    rows ? fc.constant(c) : fc.array(fc.tuple(fc.nat(7), fc.nat(7)), { minLength: 1, maxLength: 3 }).map((pairs) => ({
      ...c,
      srcBlocks: pairs.map((p) => p[0]) as Index[],
      dstBlocks: pairs.map((p) => p[1]) as Index[],
    }))
  )
);

const randomTransfer: fc.Arbitrary<TransferCall> = fc.record({
  kind: fc.constant("transfer" as const),
  src: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(0, 1, 3, 5, 6) }, {
    weight: 1,
    arbitrary: fc.nat(D_CACHES.length - 1),
  }),
  targets: fc.array(target, { minLength: 1, maxLength: 3 }),
  wrongConfig: fc.oneof({ weight: 30, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  lists: fc.oneof(
    { weight: 3, arbitrary: fc.constant({ src: undefined, dst: undefined }) },
    {
      weight: 4,
      arbitrary: fc.array(fc.tuple(fc.nat(7), fc.nat(7)), { minLength: 1, maxLength: 3 }).map((pairs) => ({
        src: pairs.map((p) => p[0]) as Index[] | undefined,
        dst: pairs.map((p) => p[1]) as Index[] | undefined,
      })),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        src: fc.option(fc.array(transferIndex, { maxLength: 3 }), { nil: undefined }),
        dst: fc.option(fc.array(transferIndex, { maxLength: 3 }), { nil: undefined }),
      }),
    },
  ),
  refuseAt: fc.oneof({ weight: 3, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(2) }),
  throws: fc.boolean(),
}).map(({ lists, ...rest }) => ({ ...rest, srcBlocks: lists.src, dstBlocks: lists.dst }));

export const transferCommand: fc.Arbitrary<TransferCall> = fc.oneof(
  { weight: 3, arbitrary: plausibleTransfer },
  { weight: 2, arbitrary: randomTransfer },
);

/** What a transfer does: refused at once (`throws`), or the layers asked, each target's status, and synchronize's. */
export interface TransferPrediction {
  throws?: { want: Want; why?: string };
  asked: number[];
  results: (LLMStatusCode | undefined)[];
  synchronize: LLMStatusCode;
}

const clusterOf = (key: PushKey) => (key.kind === "bogus" ? "P" : key.cluster);

/**
 * Predicts transferCacheAsync(D cache `src`, a synchronizer, configs, block
 * lists) and applies each layer it moves to the model as it goes (the layers
 * before a failure stay moved).
 */
export function predictTransfer(model: PushModel, c: TransferCall): TransferPrediction {
  const src = D_CACHES[c.src];
  const numLayers = src.tensors / 2;
  try {
    const list = (l: Index[] | undefined) => {
      for (const b of l ?? []) {
        if (!isInt(b)) refuse("TypeError");
        if ((b as number) < 0) refuse("ValueError");
      }
      return l?.length ? (l as number[]) : undefined;
    };
    const dst = list(c.dstBlocks), srcList = list(c.srcBlocks);
    if (srcList) {
      if (!dst) refuse(S.LLM_PARAM_INVALID, "transfer from blocks to cache is not supported");
      if (srcList.length !== dst!.length) refuse(S.LLM_PARAM_INVALID, "num_block_indices mismatches");
    } else if (dst) {
      refuse(S.LLM_PARAM_INVALID, "dst_block_memory_size must be set");
    }
    if (c.wrongConfig) refuse("TypeError");
    for (const t of c.targets) {
      if (srcList && t.srcBatchIndex !== 0) refuse(S.LLM_PARAM_INVALID, "!= 0 while src is blocks");
      if (t.srcStart + t.layers > numLayers) refuse(S.LLM_PARAM_INVALID, "out of range, src_layer_num");
    }
    const results = new Map<Cluster, LLMStatusCode>();
    const asked: number[] = [];
    run: for (let layer = 0; layer < numLayers; layer++) {
      const now = c.targets.filter((t) => t.srcStart <= layer && layer < t.srcStart + t.layers);
      if (now.length === 0) continue;
      asked.push(layer);
      if (layer === c.refuseAt) {
        for (const t of now) results.set(clusterOf(t.key), S.LLM_PARAM_INVALID);
        break;
      }
      for (const t of now) {
        const ranges: [number, number, number] = [2 * layer, 2 * (t.dstStart + layer - t.srcStart), 2];
        const p = layerPush(model, c.src, t, ranges, srcList, dst);
        if (p.want !== "ok") {
          results.set(clusterOf(t.key), p.want as LLMStatusCode);
          break run;
        }
        p.apply?.();
        if (layer === t.srcStart + t.layers - 1) results.set(clusterOf(t.key), S.LLM_SUCCESS);
      }
    }
    const list2 = c.targets.map((t) => results.get(clusterOf(t.key)));
    return {
      asked,
      results: list2,
      synchronize: list2.find((s) => s !== undefined && s !== S.LLM_SUCCESS) ?? S.LLM_SUCCESS,
    };
  } catch (err) {
    if (err instanceof Refused) {
      return { throws: { want: err.want, why: err.why }, asked: [], results: [], synchronize: S.LLM_SUCCESS };
    }
    throw err;
  }
}

/** One layer of a transfer to one target: one native push (transfer.ts transferLayer). */
function layerPush(
  model: PushModel,
  from: number,
  t: TargetSpec,
  ranges: [number, number, number],
  srcList: number[] | undefined,
  dstList: number[] | undefined,
): Prediction {
  try {
    const src = D_CACHES[from];
    if (src.freed) refuse(S.LLM_KV_CACHE_NOT_EXIST);
    if (t.key.kind === "blocks") {
      // Blocks to blocks; without lists, row (or block) 0 to block 0.
      const pairs = srcList && dstList ? srcList.map((s, i) => [s, dstList[i]]) : [[0, 0]];
      if (!src.remote) refuse(S.LLM_PARAM_INVALID);
      for (const [s] of pairs) if (s >= src.batch) refuse(S.LLM_PARAM_INVALID);
      if (t.key.cluster === "unlinked") refuse(S.LLM_NOT_YET_LINK);
      return answered(model, t.key, from, ranges, () => pairs);
    }
    if (srcList && dstList) {
      // Blocks into the blocks of the cache named by id, which must name batch index 0.
      if (!src.remote) refuse(S.LLM_PARAM_INVALID);
      if (t.key.batchIndex !== 0) refuse(S.LLM_PARAM_INVALID, "names batch index 0");
      const pairs = srcList.map((s, i) => [s, dstList[i]]);
      for (const [s] of pairs) if (s >= src.batch) refuse(S.LLM_PARAM_INVALID);
      if (t.key.cluster === "unlinked") refuse(S.LLM_NOT_YET_LINK);
      return answered(model, t.key, from, ranges, () => pairs);
    }
    if (!src.remote) refuse(S.LLM_PARAM_INVALID);
    if (t.srcBatchIndex >= src.batch) refuse(S.LLM_PARAM_INVALID);
    if (t.key.cluster === "unlinked") refuse(S.LLM_NOT_YET_LINK);
    return answered(model, t.key, from, ranges, (dstRow) => [[t.srcBatchIndex, dstRow]]);
  } catch (err) {
    if (err instanceof Refused) return { want: err.want, why: err.why };
    throw err;
  }
}

/** The push fuzz's commands: pushes, transfers, writes, frees. */
export type PushFuzzCommand = PushCommand | TransferCall;
export const pushFuzzCommand: fc.Arbitrary<PushFuzzCommand> = fc.oneof(
  { weight: 6, arbitrary: pushCommand },
  { weight: 1, arbitrary: transferCommand },
);
