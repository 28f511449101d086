// Turning generated arguments (picks, refs, option specs) into the values a call receives.

import { CacheDesc, CacheKey, CacheKeyByIdAndIndex, DataType, KvCache, LLMConfig, Tensor } from "../../../mod.ts";
import { clusterInfo } from "./links.ts";
import { type CacheModel, compatible, type Ctx, type DescInfo, type InstModel, live } from "./model.ts";
import { FuzzAbort } from "./outcomes.ts";
import { Ref } from "./values.ts";

// ---------------------------------------------------------------------------
// Resolving generated arguments

/** Which cache a command means: among live or dead caches, of this or the other instance. */
export interface CachePick {
  /** "match": a live cache that can exchange rows with the other cache of the call (copies, pulls). */
  from: "live" | "dead" | "any" | "match";
  of: "same" | "other";
  i: number;
}

export function pickFrom<T>(list: T[], i: number): T | undefined {
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
export function resolve(ctx: Ctx, inst: InstModel, value: unknown): unknown {
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

export function resolveCache(ctx: Ctx, inst: InstModel, spec: CacheSpec, matchTo?: DescInfo): unknown {
  if ("any" in spec) return resolve(ctx, inst, spec.any);
  const c = pickCache(ctx, inst, spec.pick, matchTo);
  return c ? c.kv : resolve(ctx, inst, new Ref("protoFakeCache"));
}

/** An options argument of the calls that wait. */
export type OptionsSpec = "none" | "empty" | "signal" | "aborted" | "abortSoon" | "badSignal" | { any: unknown };

export interface ResolvedOptions {
  value: unknown;
  reason?: FuzzAbort;
  abortSoon?: () => void;
}

export function resolveOptions(ctx: Ctx, inst: InstModel, spec: OptionsSpec): ResolvedOptions {
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
