// init() on fresh instances.

import { LLMConfig, LLMDataDist, LLMRole } from "../../../mod.ts";
import { freshClusterId } from "../../helpers.ts";
import { counter, fail, INT32_MAX, S, show } from "./core.ts";
import type { Ctx } from "./model.ts";
import { attempt, expectations, OK, Oracle, type Outcome, uint64 } from "./outcomes.ts";
import { resolve } from "./resolve.ts";

// ---------------------------------------------------------------------------
// init() on fresh instances

/** An init fuzz case: constructor arguments and the options given to init(). */
export interface InitSpec {
  role: unknown;
  cluster: "fresh" | { any: unknown };
  ctorOptions: unknown;
  entries: [string, string | { any: unknown }][] | { any: unknown };
}

export const VALID_OPTION_VALUES: Record<string, string[]> = {
  "ge.exec.deviceId": ["0", "0;1", "3;1", " 2 ; 5 "],
  "ge.flowGraphMemMaxSize": ["4096", "65536", "1", "100"],
  "llm.SyncKvCacheWaitTime": ["1000", " 50 ", "2147483647"],
};

export async function doInit(ctx: Ctx, spec: InitSpec): Promise<void> {
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
