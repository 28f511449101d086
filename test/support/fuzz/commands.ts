// The commands of a sequence and their arbitraries.

import fc from "fast-check";
import { type BurstItem, doBurst } from "./bursts.ts";
import {
  buildDesc,
  buildKeys,
  type DescSpec,
  type KeysSpec,
  planAlloc,
  planCopy,
  planDealloc,
  planRead,
  runPlan,
} from "./caches.ts";
import { doCtor } from "./constructors.ts";
import { type FuzzOptions, INT32_MAX, show } from "./core.ts";
import { doFinalize, doMisc, type MiscSpec, verifyAll } from "./lifecycle.ts";
import { type ClusterSpec, type ClustersSpec, doLink, doUnlink } from "./links.ts";
import type { Ctx } from "./model.ts";
import { buildKey, doPull, doRemoveKey, type KeySpec } from "./pulls.ts";
import { type CachePick, type CacheSpec, type OptionsSpec, resolve, resolveCache, resolveOptions } from "./resolve.ts";
import { ctorSpec } from "./stateless_cases.ts";
import { anyValue, Part, partOf, Row, rowOf, slot } from "./values.ts";
import { doWrite } from "./views.ts";

// ---------------------------------------------------------------------------
// Commands

class FuzzCommand implements fc.AsyncCommand<Ctx, Ctx> {
  constructor(
    readonly name: string,
    readonly args: unknown,
    readonly body: (ctx: Ctx) => Promise<void> | void,
    readonly when: (ctx: Ctx) => boolean = () => true,
  ) {}
  check(ctx: Readonly<Ctx>): boolean {
    return this.when(ctx as Ctx);
  }
  async run(ctx: Ctx): Promise<void> {
    ctx.step++;
    await this.body(ctx);
    await verifyAll(ctx);
  }
  toString(): string {
    return `${this.name}${show(this.args)}`;
  }
}

function command<A>(
  name: string,
  args: fc.Arbitrary<A>,
  body: (ctx: Ctx, a: A) => Promise<void> | void,
  when?: (ctx: Ctx) => boolean,
): fc.Arbitrary<fc.AsyncCommand<Ctx, Ctx>> {
  return args.map((a) => new FuzzCommand(name, a, (ctx) => body(ctx, a), when));
}

/** The command arbitraries of a sequence. */
export function sequenceCommands(options: FuzzOptions = {}): fc.Arbitrary<fc.AsyncCommand<Ctx, Ctx>>[] {
  const any = anyValue(options);
  // Each argument is "any value" about one time in 16, so that most calls are
  // valid (and reach the state) and many have one bad argument.
  const arg = <T>(valid: fc.Arbitrary<T>) => slot(valid, any, 15);
  const instName = fc.constantFrom<"P" | "D">("P", "D");
  const small = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 2 }) }, {
    weight: 1,
    arbitrary: fc.constantFrom(-1, 3, 5, ...(options.knownBugs ? [-0] : [])), // -0: KNOWN_BUGS[3]
  });
  const cachePick: fc.Arbitrary<CachePick> = fc.record({
    from: fc.constantFrom<CachePick["from"]>("live", "live", "live", "live", "match", "match", "match", "dead", "any"),
    of: fc.constantFrom<CachePick["of"]>(
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "same",
      "other",
    ),
    i: fc.nat(20),
  });
  const cacheSpec: fc.Arbitrary<CacheSpec> = fc.oneof(
    { weight: 15, arbitrary: cachePick.map((pick) => ({ pick })) },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const descSpec: fc.Arbitrary<DescSpec> = fc.oneof(
    { weight: 8, arbitrary: fc.record({ like: fc.nat(30), batch: fc.integer({ min: 1, max: 4 }) }) },
    {
      weight: 12,
      arbitrary: fc.record({
        family: fc.nat(20),
        batch: fc.integer({ min: 1, max: 4 }),
        batchDim: fc.constantFrom<0 | 1>(0, 0, 0, 0, 1),
        placement: fc.constantFrom<0 | 1>(0, 1),
        seqLen: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: options.knownBugs
        ? fc.record({
          huge: fc.constantFrom<"numTensors" | "dims" | "stride">("numTensors", "dims", "stride"),
          value: fc.constantFrom(2 ** 31 - 1, 2 ** 28, 1e6, 2 ** 20, 2 ** 40),
        })
        : fc.record({
          huge: fc.constantFrom<"numTensors" | "dims" | "stride">("numTensors", "dims", "stride"),
          value: fc.constantFrom(2 ** 20, 1e6, 2 ** 16),
        }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const keysSpec: fc.Arbitrary<KeysSpec> = fc.oneof(
    { weight: 4, arbitrary: fc.constant<KeysSpec>("none") },
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 4 }).map((fresh) => ({ fresh })) },
    {
      weight: 4,
      arbitrary: fc.record({
        keys: fc.array(
          fc.record({
            req: fc.nat(9),
            model: fc.nat(1),
            cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "other"),
          }),
          { maxLength: 3 },
        ),
      }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    { weight: 1, arbitrary: fc.array(any, { minLength: 1, maxLength: 3 }).map((elements) => ({ elements })) },
  );
  const optionsSpec: fc.Arbitrary<OptionsSpec> = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom<OptionsSpec>("none", "empty", "signal") },
    { weight: 2, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "abortSoon", "badSignal") },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  // Options of the calls that only wait for their turn (no abort while they run).
  const waitOptions: fc.Arbitrary<OptionsSpec> = fc.oneof(
    { weight: 20, arbitrary: fc.constantFrom<OptionsSpec>("none", "none", "empty", "signal") },
    { weight: 2, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "badSignal") },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const keySpec: fc.Arbitrary<KeySpec> = fc.oneof(
    {
      weight: 8,
      arbitrary: fc.record({ kind: fc.constantFrom("held", "held", "held", "past"), i: fc.nat(20) }) as fc.Arbitrary<
        KeySpec
      >,
    },
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("key" as const),
        cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "P", "other"),
        req: fc.nat(9),
        model: fc.nat(1),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant("byId" as const),
        cluster: fc.constantFrom<"P" | "other">("P", "P", "P", "P", "other"),
        cache: fc.nat(12),
        row: fc.nat(4),
      }),
    },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
  );
  const clusterSpec: fc.Arbitrary<ClusterSpec> = fc.record({
    id: fc.constantFrom<"P" | "wrong">("P", "P", "P", "wrong"),
    port: fc.constantFrom<ClusterSpec["port"]>("P", "P", "P", "dead", "zero", "none"),
    ipAsInt: fc.boolean(),
  });
  const clustersSpec: fc.Arbitrary<ClustersSpec> = fc.oneof(
    { weight: 10, arbitrary: fc.array(clusterSpec, { maxLength: 3 }).map((specs) => ({ specs })) },
    { weight: 1, arbitrary: fc.constantFrom(17, 20).map((many) => ({ many })) },
    { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    { weight: 1, arbitrary: fc.array(any, { minLength: 1, maxLength: 2 }).map((elements) => ({ elements })) },
  );
  // Link timeouts: valid ones long enough that a link on loopback never runs
  // out of time (short ones are timing-dependent: see shortTimeoutProperty).
  const timeout = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(undefined, 3000, 5000, INT32_MAX) },
    {
      weight: 1,
      arbitrary: any.filter((v) => !(typeof v === "number" && Number.isInteger(v) && v >= 1 && v < 2000)),
    },
  );
  // Sizes of a row's bytes: the whole row, a few bytes, and out of range.
  const rowSize = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(undefined, -1) },
    { weight: 4, arbitrary: fc.nat(100).map((i) => new Part(i)) },
    { weight: 1, arbitrary: fc.constantFrom(0, -2, 12, 66, 1 << 20) },
  );
  // Batch rows: mostly a valid row of the cache, sometimes any small index.
  const row = fc.oneof({ weight: 6, arbitrary: fc.nat(11).map((i) => new Row(i)) }, { weight: 1, arbitrary: small });
  const late = (ctx: Ctx) => ctx.step >= ctx.setup.finalizeAfter;
  const writeArgs = fc.record({
    device: fc.nat(3),
    start: fc.nat(1 << 20),
    length: fc.nat(1 << 20),
    seed: fc.integer(),
    keep: fc.boolean(),
  });
  const burstItem: fc.Arbitrary<BurstItem> = fc.oneof(
    fc.record({ op: fc.constant("read" as const), cache: cacheSpec, index: fc.integer({ min: -1, max: 3 }) }),
    fc.record({
      op: fc.constant("copy" as const),
      dst: cacheSpec,
      src: cacheSpec,
      dstBatch: row,
      srcBatch: row,
      offset: fc.constantFrom(0, 0, 1, 8),
      size: fc.constantFrom(-1, -1, 1, 4, 1000),
    }),
    fc.record({ op: fc.constant("dealloc" as const), cache: cacheSpec }),
    fc.record({ op: fc.constant("alloc" as const), desc: descSpec }),
  );

  return [
    fc.oneof(
      {
        weight: 10,
        arbitrary: command(
          "allocateCache",
          fc.record({ inst: instName, desc: descSpec, keys: keysSpec, decoderKeys: fc.nat(7), options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const desc = buildDesc(ctx, inst, a.desc);
            // Keys are for the PROMPT; a DECODER gets them (and refuses them) one time in 8.
            const keys = inst === ctx.D && a.decoderKeys > 0 ? "none" : a.keys;
            const options = resolveOptions(ctx, inst, a.options);
            return runPlan(planAlloc(ctx, inst, desc, buildKeys(ctx, inst, keys, desc), options)).then(() => {});
          },
        ),
      },
      {
        weight: 5,
        arbitrary: command(
          "write",
          fc.record({ inst: instName, cache: cacheSpec, index: arg(small), w: writeArgs }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doWrite(ctx, inst, resolveCache(ctx, inst, a.cache), resolve(ctx, inst, a.index), a.w);
          },
        ),
      },
      {
        weight: 3,
        arbitrary: command(
          "deallocateCache",
          fc.record({ inst: instName, cache: cacheSpec, dispose: fc.boolean(), options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const value = resolveCache(ctx, inst, a.cache);
            const viaDispose = a.dispose && ctx.cacheArg(value).genuine;
            const options = resolveOptions(ctx, inst, a.options);
            return runPlan(planDealloc(ctx, inst, value, viaDispose, options)).then(() => {});
          },
        ),
      },
      {
        weight: 3,
        arbitrary: command(
          "getCacheTensors",
          fc.record({ inst: instName, cache: cacheSpec, index: arg(small), options: optionsSpec }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const plan = planRead(
              ctx,
              inst,
              resolveCache(ctx, inst, a.cache),
              resolve(ctx, inst, a.index),
              resolveOptions(ctx, inst, a.options),
            );
            return runPlan(plan).then(() => {});
          },
        ),
      },
      {
        weight: 5,
        arbitrary: command(
          "copyCache",
          fc.record({
            inst: instName,
            dst: cacheSpec,
            src: cacheSpec,
            dstBatch: arg(row),
            srcBatch: arg(row),
            offset: arg(fc.constantFrom(undefined, 0, 0, 0, 1, 2, 8, 33)),
            size: arg(rowSize),
            options: optionsSpec,
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            const dst = resolveCache(ctx, inst, a.dst);
            const src = resolveCache(ctx, inst, a.src, ctx.cacheArg(dst).m?.info);
            const plan = planCopy(
              ctx,
              inst,
              dst,
              src,
              {
                dstBatch: rowOf(resolve(ctx, inst, a.dstBatch), dst),
                srcBatch: rowOf(resolve(ctx, inst, a.srcBatch), src),
                offset: resolve(ctx, inst, a.offset),
                size: partOf(resolve(ctx, inst, a.size), dst),
              },
              resolveOptions(ctx, inst, a.options),
            );
            return runPlan(plan).then(() => {});
          },
        ),
      },
      {
        weight: 6,
        arbitrary: command(
          "pullCache",
          fc.record({
            inst: fc.constantFrom<"P" | "D">("D", "D", "D", "D", "D", "D", "D", "D", "D", "P"),
            key: keySpec,
            cache: cacheSpec,
            batch: arg(row),
            size: arg(rowSize),
            options: fc.oneof(
              { weight: 10, arbitrary: fc.constantFrom<OptionsSpec>("none", "empty", "signal") },
              { weight: 1, arbitrary: fc.constantFrom<OptionsSpec>("aborted", "badSignal") },
            ),
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doPull(
              ctx,
              inst,
              buildKey(ctx, inst, a.key),
              a.cache,
              a.batch,
              a.size,
              resolveOptions(ctx, inst, a.options),
            );
          },
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "removeCacheKey",
          fc.record({ inst: fc.constantFrom<"P" | "D">("P", "P", "P", "D"), key: keySpec, options: waitOptions }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doRemoveKey(inst, buildKey(ctx, inst, a.key), resolveOptions(ctx, inst, a.options));
          },
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "linkClusters",
          fc.record({ inst: fc.constantFrom<"P" | "D">("D", "D", "D", "P"), clusters: clustersSpec, timeout }),
          (ctx, a) => doLink(ctx, ctx.inst(a.inst), a.clusters, resolve(ctx, ctx.inst(a.inst), a.timeout)),
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "unlinkClusters",
          fc.record({
            inst: fc.constantFrom<"P" | "D">("D", "D", "D", "P"),
            clusters: clustersSpec,
            timeout,
            force: arg(fc.constantFrom(undefined, true, false)),
          }),
          (ctx, a) => {
            const inst = ctx.inst(a.inst);
            return doUnlink(ctx, inst, a.clusters, resolve(ctx, inst, a.timeout), resolve(ctx, inst, a.force));
          },
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "finalize",
          fc.record({ inst: instName, dispose: fc.boolean() }),
          (ctx, a) => doFinalize(ctx.inst(a.inst), a.dispose),
          late,
        ),
      },
      {
        weight: 1,
        arbitrary: command(
          "misc",
          fc.record({
            inst: instName,
            what: fc.constantFrom<MiscSpec>("poolUsage", "isInitialized", "listenPort", "initAgain", "role"),
            any,
          }),
          (ctx, a) => doMisc(ctx, ctx.inst(a.inst), a.what, a.any),
        ),
      },
      {
        weight: 2,
        arbitrary: command(
          "burst",
          fc.record({ inst: instName, items: fc.array(burstItem, { minLength: 2, maxLength: 6 }) }),
          (
            ctx,
            a,
          ) => doBurst(ctx, ctx.inst(a.inst), a.items),
        ),
      },
      { weight: 1, arbitrary: command("constructor", ctorSpec(options), (ctx, spec) => doCtor(ctx, spec)) },
    ),
  ];
}
