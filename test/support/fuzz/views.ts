// Writes through getCacheTensorViews.

import type { KvCache } from "../../../mod.ts";
import { checkTensors } from "./caches.ts";
import { S, show } from "./core.ts";
import { bytesOf, type Ctx, fillPattern, type InstModel, live } from "./model.ts";
import { attempt, BAD, expectations, int32, OK, Oracle } from "./outcomes.ts";

// ---------------------------------------------------------------------------
// Views and writes

export async function doWrite(
  ctx: Ctx,
  inst: InstModel,
  value: unknown,
  index: unknown,
  write: { device: number; start: number; length: number; seed: number; keep: boolean },
): Promise<void> {
  const o = new Oracle();
  const arg = ctx.cacheArg(value);
  if (!arg.isKv) o.type();
  const t = int32(o, index, 0);
  if (inst.finalized) o.llm(S.LLM_ENGINE_FINALIZED);
  if (arg.isKv && t !== BAD && (t < 0 || t >= arg.m!.info.numTensors)) o.llm(S.LLM_PARAM_INVALID);
  if (arg.isKv && !arg.genuine) o.type();
  if (arg.isKv && arg.genuine && !o.failed && (arg.m!.inst !== inst || !live(arg.m!))) {
    o.llm(S.LLM_KV_CACHE_NOT_EXIST);
  }
  const label = `${inst.name}.getCacheTensorViews(${show(value)}, ${show(index)})`;
  const settled = await attempt(
    label,
    expectations(o, [OK]),
    () => inst.dd.kvCacheManager.getCacheTensorViews(value as KvCache, index as number),
    false,
  );
  if (!settled.ok) return;
  const c = arg.m!;
  const views = checkTensors(label, c, t as number, settled.value, true);
  // Write a seeded pattern into a range of one device's view; the model follows.
  const d = write.device % views.length;
  const size = c.info.size;
  const start = write.start % size;
  const length = 1 + (write.length % (size - start));
  const view = views[d];
  const array = view.data;
  const pattern = new Uint8Array(length);
  fillPattern(pattern, write.seed);
  bytesOf(array).set(pattern, start);
  const slot = d * c.info.numTensors + (t as number);
  c.data[slot].set(pattern, start);
  c.known[slot].fill(1, start, start + length);
  c.touched.add(t as number);
  if (write.keep) {
    c.kept.push({ view, array, d, t: t as number });
    if (c.kept.length > 3) c.kept.shift();
  }
}
