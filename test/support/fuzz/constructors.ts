// Stateless calls: constructors and setters on any value.

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
  LLMRole,
  Placement,
  Tensor,
} from "../../../mod.ts";
import { counter, fail, INT32_MAX, MAX_SAFE, S, show, UINT64_MAX } from "./core.ts";
import type { Ctx } from "./model.ts";
import { attempt, BAD, describeError, expectations, intIn, OK, Oracle, type Outcome, uint64 } from "./outcomes.ts";
import { resolve } from "./resolve.ts";
import { hasHole } from "./values.ts";

// ---------------------------------------------------------------------------
// Stateless calls: constructors and setters

export type CtorSpec =
  | { what: "CacheDesc"; args: unknown[] }
  | { what: "CacheKey"; args: unknown[] }
  | { what: "CacheKeyByIdAndIndex"; args: unknown[] }
  | { what: "LLMClusterInfo"; ops: { op: "id" | "role" | "local" | "remote"; a: unknown; b: unknown }[] }
  | { what: "LLMConfig"; ops: { op: ConfigOp; a: unknown }[] }
  | { what: "LLMDataDist"; args: unknown[]; preInit: number }
  | { what: "Tensor"; args: unknown[] }
  | { what: "KvCache" | "KvCacheManager"; args: unknown[] };

export type ConfigOp =
  | "deviceId"
  | "syncKvTimeout"
  | "listenIpInfo"
  | "geOptions"
  | "memUtilization"
  | "globalResourceConfig";

export const DATA_TYPES = Object.values(DataType) as number[];
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

// Upstream's integer form of an address: inet_aton's bytes read little-endian.
function ipText(ip: string | number): string {
  if (typeof ip === "string") return ip;
  return [0, 8, 16, 24].map((shift) => Math.floor(ip / 2 ** shift) % 256).join(".");
}

/** Upstream check_int64: a bigint in [-2^63, 2^63 - 1], or a safe integer. */
function int64(o: Oracle, v: unknown): bigint | typeof BAD {
  if (typeof v === "bigint") {
    if (v < -(2n ** 63n) || v >= 2n ** 63n) {
      o.value();
      return BAD;
    }
    return v;
  }
  if (typeof v !== "number" || !Number.isInteger(v)) {
    o.type();
    return BAD;
  }
  if (!Number.isSafeInteger(v)) {
    o.value();
    return BAD;
  }
  return BigInt(v);
}

export async function doCtor(ctx: Ctx, spec: CtorSpec): Promise<void> {
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
      // Upstream counts the arguments and requires the first two before any type check.
      let ids: (bigint | typeof BAD)[] = [];
      if (args.length > 4 || args[0] === undefined || args[1] === undefined) o.llm(S.LLM_PARAM_INVALID);
      else ids = [uint64(o, args[0]), uint64(o, args[1]), uint64(o, args[2], 0n), uint64(o, args[3], UINT64_MAX)];
      const settled = await attempt(
        `new CacheKey(${args.map(show).join(", ")})`,
        expectations(o, [OK]),
        () => new (CacheKey as unknown as new (...a: unknown[]) => CacheKey)(...args),
        false,
      );
      if (settled.ok) {
        const key = settled.value as CacheKey;
        if (
          key.promptClusterId !== ids[0] || key.reqId !== ids[1] || key.modelId !== ids[2] || key.prefixId !== ids[3]
        ) {
          fail(`new CacheKey: fields ${key}`);
        }
      }
      return;
    }
    case "CacheKeyByIdAndIndex": {
      const args = spec.args.map(r);
      const o = new Oracle();
      const a = uint64(o, args[0]);
      const b = int64(o, args[1]);
      const c = intIn(o, args[2], 0, 0xFFFFFFFF, 0);
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
          // Upstream's order: every id's type, then >= 0 (LLM_PARAM_INVALID), then the
          // library's count, then int32 and duplicates (ValueError).
          const ids = Array.isArray(a) ? Array.from(a) : [a];
          const isInt = (id: unknown) => typeof id === "number" && Number.isInteger(id);
          if (hasHole(Array.isArray(a) ? a : []) || !ids.every(isInt)) o.type();
          else if ((ids as number[]).some((id) => id < 0)) o.llm(S.LLM_PARAM_INVALID);
          else if (ids.length < 1 || ids.length > 64) o.value();
          else if ((ids as number[]).some((id) => id > INT32_MAX) || new Set(ids).size !== ids.length) o.value();
          if (!o.failed) text = ids.join(";");
        } else if (op === "syncKvTimeout") {
          // Upstream: int or str; a str all digits; > 0 (else LLM_PARAM_INVALID); then int32.
          const n = typeof a === "string" ? (/^[0-9]+$/.test(a) ? Number(a) : NaN) : a;
          if (typeof a === "string" && Number.isNaN(n)) o.llm(S.LLM_PARAM_INVALID);
          else if (typeof n !== "number" || !Number.isInteger(n)) o.type();
          else if (n <= 0) o.llm(S.LLM_PARAM_INVALID);
          else if (n > INT32_MAX) o.value();
          if (!o.failed) text = String(n);
        } else if (op === "memUtilization") {
          if (typeof a !== "number") o.type();
          else if (!(a >= 0 && a <= 1)) o.llm(S.LLM_PARAM_INVALID);
          if (!o.failed) text = String(a);
        } else if (op === "globalResourceConfig") {
          if (typeof a !== "string") o.type();
          text = a as string;
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
        if (op === "deviceId") {
          want["ge.exec.deviceId"] = text!;
          want["ge.session_device_id"] = text!.split(";")[0];
        } else if (op === "syncKvTimeout") want["llm.SyncKvCacheWaitTime"] = text!;
        else if (op === "memUtilization") want["llm.MemoryUtilization"] = text!;
        else if (op === "globalResourceConfig") want["llm.GlobalResourceConfig"] = text!;
        else if (op === "listenIpInfo") want["llm.listenIpInfo"] = text!;
        else geOptions = { ...(a as Record<string, string>) };
      }
      const settled = await attempt("LLMConfig.generateOptions()", [OK], () => config.generateOptions(), false);
      const options = settled.ok ? settled.value as Record<string, string> : {};
      const expected: Record<string, string> = { ...geOptions, ...want };
      if (expected["ge.exec.deviceId"] === undefined) {
        expected["ge.exec.deviceId"] = "0";
        expected["ge.session_device_id"] = "0";
      }
      expected["llm.SyncKvCacheWaitTime"] ??= "1000";
      expected["llm.MemoryUtilization"] ??= "0.95";
      // A float is written as Python writes it ("1.0", "5e-05"): compare memUtilization by value.
      const same = (k: string, got: string | undefined, v: string) =>
        k === "llm.MemoryUtilization" && k in want ? got !== undefined && Number(got) === Number(v) : got === v;
      for (const [k, v] of Object.entries(expected)) {
        if (!same(k, options[k], v)) {
          fail(`LLMConfig.generateOptions(): ${k}=${show(options[k])}, expected ${show(v)}`);
        }
      }
      if (!("llm.GlobalResourceConfig" in expected) && "llm.GlobalResourceConfig" in options) {
        fail("LLMConfig.generateOptions(): llm.GlobalResourceConfig emitted though never set");
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
