// finalize, the small calls (poolUsage, isInitialized, ...), and the check after every command.

import { checkTensors } from "./caches.ts";
import { canDetach, counter, fail, S, show } from "./core.ts";
import { bytesOf, compareBytes, type Ctx, type InstModel, live } from "./model.ts";
import { attempt, OK, type Outcome } from "./outcomes.ts";
import { resolve } from "./resolve.ts";

// ---------------------------------------------------------------------------
// Finalize, and the small calls

export function doFinalize(inst: InstModel, viaDispose: boolean): Promise<void> | void {
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

export async function doMisc(ctx: Ctx, inst: InstModel, what: MiscSpec, any: unknown): Promise<void> {
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
      // As upstream, init() on an initialized instance returns at once.
      await attempt(
        `${label}(${show(any)})`,
        inst.finalized ? [{ k: "llm", codes: [S.LLM_ENGINE_FINALIZED] }] : [OK],
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

export async function verifyAll(ctx: Ctx): Promise<void> {
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
