// pullCache and removeCacheKey.

import { CacheKey, CacheKeyByIdAndIndex, type KvCache, LLMRole } from "../../../mod.ts";
import { BARRIER_REQ, counter, PADDING_REQ, S, show } from "./core.ts";
import {
  type CacheModel,
  compatible,
  copyModel,
  type Ctx,
  type InstModel,
  keyString,
  live,
  releaseIfUnused,
} from "./model.ts";
import { attempt, BAD, callOptions, copySize, OK, Oracle, type Outcome, row32 } from "./outcomes.ts";
import { type CacheSpec, pickFrom, resolve, resolveCache, type ResolvedOptions } from "./resolve.ts";
import { partOf, rowOf } from "./values.ts";

// ---------------------------------------------------------------------------
// Pulls and keys

/** A key argument of pullCache / removeCacheKey. */
export type KeySpec =
  | { kind: "held"; i: number }
  | { kind: "past"; i: number }
  | { kind: "key"; cluster: "P" | "other"; req: number; model: number }
  | { kind: "byId"; cluster: "P" | "other"; cache: number; row: number }
  | { any: unknown };

export function buildKey(ctx: Ctx, inst: InstModel, spec: KeySpec): unknown {
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
  // Request 9 stands for upstream's padding key (reqId 2^64 - 1).
  if (spec.kind === "key") {
    return new CacheKey(cluster, spec.req === 9 ? PADDING_REQ : BigInt(spec.req), BigInt(spec.model));
  }
  // By id: one of the PROMPT's cache ids (live or not), or one never used.
  const ids = ctx.P.caches.map((c) => c.id);
  const id = spec.cache < ids.length ? ids[spec.cache] : BigInt(1000 + spec.cache);
  return new CacheKeyByIdAndIndex(cluster, id, spec.row);
}

export async function doPull(
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
  const b = row32(o, batch, 0);
  const n = copySize(o, size);
  // Upstream's padding key names no request (v1 check_cache_key).
  if (byKey && (keyValue as CacheKey).reqId === PADDING_REQ) o.llm(S.LLM_PARAM_INVALID);
  if (byKey && (keyValue as CacheKey).prefixId !== PADDING_REQ) o.llm(S.LLM_PARAM_INVALID); // request and prefix
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

export async function doRemoveKey(inst: InstModel, keyValue: unknown, options: ResolvedOptions): Promise<void> {
  const o = new Oracle();
  if (!(keyValue instanceof CacheKey)) o.type();
  const opts = callOptions(o, options.value);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (inst.role !== LLMRole.PROMPT) o.llm(S.LLM_PARAM_INVALID); // upstream v1: PROMPT only
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
