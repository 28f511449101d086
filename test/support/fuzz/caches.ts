// Plans for the cache calls: allocateCache, deallocateCache, getCacheTensors and copyCache.

import { CacheDesc, CacheKey, DataType, KvCache, LLMRole, Tensor } from "../../../mod.ts";
import { CACHE_BYTES_LIMIT, counter, fail, INT32_MAX, MAX_SAFE, PADDING_REQ, S, show } from "./core.ts";
import {
  bytesOf,
  type CacheModel,
  compareBytes,
  compatible,
  copyModel,
  type Ctx,
  type DescInfo,
  descInfo,
  forgetModel,
  type InstModel,
  keyString,
  live,
  releaseIfUnused,
} from "./model.ts";
import {
  attempt,
  BAD,
  callOptions,
  copySize,
  expectations,
  int32,
  intIn,
  OK,
  Oracle,
  type Outcome,
  row32,
  type Settled,
} from "./outcomes.ts";
import { pickFrom, resolve, type ResolvedOptions } from "./resolve.ts";
import { hasHole } from "./values.ts";

// ---------------------------------------------------------------------------
// Plans: a call's expected outcomes, the call, and what it does to the model

/** One call, planned against the model. */
export interface Plan {
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

export async function runPlan(plan: Plan): Promise<Settled> {
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

export function buildDesc(ctx: Ctx, inst: InstModel, spec: DescSpec): unknown {
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

export function buildKeys(ctx: Ctx, inst: InstModel, spec: KeysSpec, desc: unknown): unknown {
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
    // Request 9 stands for upstream's padding key (reqId 2^64 - 1).
    const req = k.req === 9 ? PADDING_REQ : BigInt(k.req);
    return new CacheKey(k.cluster === "P" ? ctx.P.clusterId : 7n, req, BigInt(k.model));
  });
}

export function planAlloc(
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
  // Upstream's padding key marks a row without a request: not registered.
  const keyStrings = (keys ?? []).filter((k) => k.reqId !== PADDING_REQ)
    .map((k) => keyString(k.promptClusterId, k.reqId, k.modelId));
  const rows = (keys ?? []).flatMap((k, row) => k.reqId === PADDING_REQ ? [] : [row]);
  if (!o.failed && info) {
    const size = BigInt(info.size);
    const strideBig = (size + 63n) / 64n * 64n;
    // Memory before keys, as upstream: its CacheManager::Allocate takes every
    // tensor from the pool (LLM_OUT_OF_MEMORY) before CheckCacheKeys looks for a
    // key already bound (LLM_PARAM_INVALID) (hixl src/llm_datadist/cache_mgr/
    // cache_manager.cc); ffi/host's book does the same. A cache larger than the
    // whole pool is refused by allocateCache itself, before any native call
    // (seed 148161442: 2^31 - 1 tensors with a key another cache holds).
    const tooLarge = size > CACHE_BYTES_LIMIT || strideBig > CACHE_BYTES_LIMIT / BigInt(info.numTensors);
    const clash = new Set(keyStrings).size !== keyStrings.length || keyStrings.some((k) => inst.keys.has(k));
    if (strideBig * BigInt(info.numTensors) > BigInt(inst.pool.capacity)) {
      expected = [{ k: "llm", codes: [S.LLM_DEVICE_OUT_OF_MEMORY] }];
    } else if (tooLarge) {
      expected = [{ k: "llm", codes: [S.LLM_PARAM_INVALID] }];
    } else {
      stride = Number(strideBig);
      block = stride * info.numTensors;
      if (inst.pool.fit(block) === undefined) expected = [{ k: "llm", codes: [S.LLM_DEVICE_OUT_OF_MEMORY] }];
      else if (clash) expected = [{ k: "llm", codes: [S.LLM_PARAM_INVALID] }];
      else expected = [OK];
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
    keyStrings.forEach((k, i) => inst.keys.set(k, { cache: c, row: rows[i] }));
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

export function planDealloc(
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

export function planRead(ctx: Ctx, inst: InstModel, value: unknown, index: unknown, options: ResolvedOptions): Plan {
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
export function checkTensors(
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

export function planCopy(
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
  const dstBatch = row32(o, args.dstBatch, 0);
  const srcBatch = row32(o, args.srcBatch, 0);
  const offset = intIn(o, args.offset, 0, MAX_SAFE, 0);
  const size = copySize(o, args.size);
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
    if (offset !== BAD && size !== BAD && (size === -1 || size > 0)) {
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
