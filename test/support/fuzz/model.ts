// The model: pools, descs, caches and instances as they should be, the context a sequence runs in, and the bytes each cache should hold.

import { CacheDesc, DataType, KvCache, LLMDataDist, LLMRole, type Tensor, type TensorData } from "../../../mod.ts";
import { freshClusterId } from "../../helpers.ts";
import { buildDesc, buildKeys, type DescSpec, planAlloc, runPlan } from "./caches.ts";
import { counter, fail, type FuzzOptions, POOL_ALIGN, S, show, SYNC_KV_TIMEOUT } from "./core.ts";
import { clusterInfo } from "./links.ts";
import { codeName } from "./outcomes.ts";

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
export interface DescInfo {
  numTensors: number;
  shape: readonly number[];
  dataType: number;
  batchDimIndex: number;
  size: number;
  batchSize: number;
  /** Bytes per row when the batch is dimension 0. */
  rowBytes: number;
}

export function descInfo(desc: CacheDesc): DescInfo {
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
export function compatible(a: DescInfo, b: DescInfo): boolean {
  return a.numTensors === b.numTensors && a.dataType === b.dataType && a.batchDimIndex === b.batchDimIndex &&
    a.shape.length === b.shape.length && a.shape.every((dim, i) => i === a.batchDimIndex || dim === b.shape[i]);
}

/** One cache as the model knows it. */
export interface CacheModel {
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
export interface InstModel {
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

export function keyString(cluster: bigint, req: bigint, model: bigint): string {
  return `${cluster}|${req}|${model}`;
}

export function live(c: CacheModel): boolean {
  return c.idHeld && !c.inst.finalized && c.kv !== undefined;
}

export function releaseIfUnused(c: CacheModel): void {
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
// Bytes

/** Fills `bytes` with a pattern of `seed` (xorshift32). */
export function fillPattern(bytes: Uint8Array, seed: number): void {
  let x = (seed | 0) || 0x9E3779B9;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xFF;
  }
}

export function bytesOf(array: TensorData): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** Checks that `bytes` equal the model's known bytes of tensor `t` on device `d` of `c`. */
export function compareBytes(label: string, c: CacheModel, d: number, t: number, bytes: Uint8Array): void {
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
export function copyModel(dst: CacheModel, dstAt: number, src: CacheModel, srcAt: number, len: number): void {
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

export function forgetModel(c: CacheModel, at: number, len: number): void {
  for (const known of c.known) known.fill(0, at, at + len);
}
