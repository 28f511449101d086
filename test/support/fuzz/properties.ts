// The properties the fuzz test and the long run check.

import fc from "fast-check";
import process from "node:process";
import { sequenceCommands } from "./commands.ts";
import { type CtorSpec, doCtor } from "./constructors.ts";
import { counter, fail, type FuzzOptions, runtime, S, show } from "./core.ts";
import { doInit, type InitSpec } from "./init.ts";
import { verifyAll } from "./lifecycle.ts";
import { clusterInfo } from "./links.ts";
import { type Ctx, openCtx, type SequenceSetup } from "./model.ts";
import { attempt, codeName, OK } from "./outcomes.ts";
import { ctorSpec, initSpec } from "./stateless_cases.ts";

// ---------------------------------------------------------------------------
// Properties

/** The setup of a sequence: devices, pool size (small, to run out), big tensors or not, linked or not. */
export function setupArb(): fc.Arbitrary<SequenceSetup> {
  return fc.record({
    devices: fc.constantFrom<number[]>([0], [0], [0, 1], [3, 1]),
    poolBytes: fc.constantFrom(1024, 4096, 4096, 16384, 100_000),
    big: fc.constantFrom(false, false, false, false, false, false, false, false, false, true),
    linked: fc.constantFrom(true, true, true, false),
    finalizeAfter: fc.integer({ min: 15, max: 45 }),
    prefill: fc.array(fc.nat(20), { maxLength: 3 }),
  }).map((s) => (s.big ? { ...s, poolBytes: 8 << 20 } : s));
}

/** The model-based property: a random sequence of calls on a PROMPT and a DECODER. */
export function sequenceProperty(
  options: FuzzOptions = {},
): fc.IAsyncProperty<[SequenceSetup, Iterable<fc.AsyncCommand<Ctx, Ctx>>]> {
  return fc.asyncProperty(
    setupArb(),
    fc.commands(sequenceCommands(options), { maxCommands: options.maxCommands ?? 40, size: "max" }),
    async (setup, cmds) => {
      const ctx = await openCtx(setup, options);
      try {
        await verifyAll(ctx);
        await fc.asyncModelRun(() => ({ model: ctx, real: ctx }), cmds);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/** Constructors, setters and init() of fresh instances, on any value. */
export function statelessProperty(
  options: FuzzOptions = {},
): fc.IAsyncProperty<[SequenceSetup, CtorSpec[], InitSpec[]]> {
  return fc.asyncProperty(
    setupArb().map((s) => ({ ...s, linked: false, big: false, poolBytes: 4096, prefill: [] })),
    fc.array(ctorSpec(options), { minLength: 1, maxLength: 20 }),
    fc.array(initSpec(options), { maxLength: 3 }),
    async (setup, ctors, inits) => {
      const ctx = await openCtx(setup, options);
      try {
        for (const spec of ctors) await doCtor(ctx, spec);
        for (const spec of inits) await doInit(ctx, spec);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/**
 * Links and unlinks with timeouts short enough to run out (1–50 ms): the outcome
 * depends on timing, so only the kind of outcome is checked — a status from the
 * documented set, never a throw — and that the instances still work after.
 */
export function shortTimeoutProperty(): fc.IAsyncProperty<[number[], boolean[]]> {
  return fc.asyncProperty(
    fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 4 }),
    fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
    async (timeouts, forces) => {
      const setup: SequenceSetup = {
        devices: [0],
        poolBytes: 4096,
        big: false,
        linked: false,
        finalizeAfter: 0,
        prefill: [],
      };
      const ctx = await openCtx(setup, {});
      try {
        const cluster = clusterInfo(ctx, { id: "P", port: "P", ipAsInt: false });
        const statuses: number[] = [
          S.LLM_SUCCESS,
          S.LLM_ALREADY_LINK,
          S.LLM_LINK_FAILED,
          S.LLM_NOT_YET_LINK,
          S.LLM_UNLINK_FAILED,
        ];
        for (const [i, timeout] of timeouts.entries()) {
          const link = i % 2 === 0;
          const label = `${link ? "linkClusters" : "unlinkClusters"}([P], ${timeout})`;
          const settled = await attempt(
            label,
            [OK],
            () =>
              link
                ? ctx.D.dd.linkClusters([cluster], timeout)
                : ctx.D.dd.unlinkClusters([cluster], timeout, forces[i % forces.length]),
            true,
          );
          const [overall, each] = settled.ok ? settled.value as [number, number[]] : [0, []];
          if (!statuses.includes(overall) || each.length !== 1 || each[0] !== overall) {
            fail(`${label}: ${show(settled.ok ? settled.value : undefined)}`);
          }
        }
        // Let native link/unlink work whose call already timed out finish, then a
        // generous link settles it: linked (or already).
        await new Promise((resolve) => setTimeout(resolve, 30));
        counter.calls++;
        const [status] = await ctx.D.dd.linkClusters([cluster], 5000);
        if (status !== S.LLM_SUCCESS && status !== S.LLM_ALREADY_LINK) fail(`relink: ${codeName(status)}`);
      } finally {
        ctx.dispose();
      }
    },
  );
}

/** Prints a line with the runtime and the current seed, for reproducing a failure. */
export function describeRun(seed: number, options: FuzzOptions): string {
  return `runtime=${runtime} seed=${seed} knownBugs=${options.knownBugs ? 1 : 0} pid=${process.pid}`;
}
