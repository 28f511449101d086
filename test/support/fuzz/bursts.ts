// Bursts: several cache calls on one instance started at once.

import { buildDesc, type DescSpec, type Plan, planAlloc, planCopy, planDealloc, planRead } from "./caches.ts";
import { counter, fail } from "./core.ts";
import type { Ctx, InstModel } from "./model.ts";
import { check, describeError, watch } from "./outcomes.ts";
import { type CacheSpec, resolveCache } from "./resolve.ts";
import { type Row, rowOf } from "./values.ts";

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

export async function doBurst(ctx: Ctx, inst: InstModel, items: BurstItem[]): Promise<void> {
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
