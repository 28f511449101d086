// Arbitraries of the stateless cases: constructor and setter calls, init() options.

import fc from "fast-check";
import { DataType, LLMRole } from "../../../mod.ts";
import { type ConfigOp, type CtorSpec, DATA_TYPES } from "./constructors.ts";
import { type FuzzOptions, UINT64_MAX } from "./core.ts";
import { type InitSpec, VALID_OPTION_VALUES } from "./init.ts";
import { anyValue, slot, SPARSE } from "./values.ts";

/** Constructor and setter cases. */
export function ctorSpec(options: FuzzOptions = {}): fc.Arbitrary<CtorSpec> {
  const any = anyValue(options);
  const s = <T>(valid: fc.Arbitrary<T>) => slot(valid, any, 3);
  const u64 = fc.oneof(fc.bigInt({ min: 0n, max: UINT64_MAX }), fc.nat());
  const shape = fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 4 });
  const sparse = options.knownBugs ? fc.constantFrom(...SPARSE) : fc.constant([4]);
  const ip = fc.oneof(fc.constantFrom("127.0.0.1", "10.0.0.1", "255.255.255.255"), fc.nat({ max: 0xFFFFFFFF }));
  return fc.oneof(
    fc.record({
      what: fc.constant("CacheDesc" as const),
      args: fc.tuple(
        s(fc.integer({ min: 1, max: 4 })),
        fc.oneof({ weight: 6, arbitrary: shape }, { weight: 1, arbitrary: any }, { weight: 1, arbitrary: sparse }),
        s(fc.constantFrom(...DATA_TYPES)),
        s(fc.constantFrom(undefined, 0, 1)),
        s(fc.constantFrom(undefined, 0, 1, 2)),
        s(fc.constantFrom(undefined, -1, 0, 1, 2)),
      ),
    }),
    fc.record({
      what: fc.constant("CacheKey" as const),
      args: fc.oneof(
        { weight: 8, arbitrary: fc.tuple(s(u64), s(u64), s(fc.constantFrom(undefined, 0n))) },
        { weight: 3, arbitrary: fc.tuple(s(u64), s(u64), s(fc.constantFrom(undefined, 0n)), s(u64)) },
        { weight: 1, arbitrary: fc.tuple(s(u64), s(u64), s(u64), s(u64), s(u64)) },
      ),
    }),
    fc.record({
      what: fc.constant("CacheKeyByIdAndIndex" as const),
      args: fc.tuple(
        s(u64),
        s(fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.nat(), fc.constantFrom(2n ** 63n, -1))),
        s(fc.constantFrom(undefined, 0, 3, 2 ** 31, 2 ** 32 - 1, 2 ** 32, -1)),
      ),
    }),
    fc.record({
      what: fc.constant("LLMClusterInfo" as const),
      ops: fc.array(
        fc.record({
          op: fc.constantFrom<"id" | "role" | "local" | "remote">("id", "role", "local", "remote"),
          a: s(fc.oneof(u64, fc.constantFrom(1, 2, 3), ip)),
          b: s(fc.integer({ min: 0, max: 65535 })),
        }),
        { maxLength: 4 },
      ),
    }),
    fc.record({
      what: fc.constant("LLMConfig" as const),
      ops: fc.array(
        fc.record({
          op: fc.constantFrom<ConfigOp>(
            "deviceId",
            "syncKvTimeout",
            "listenIpInfo",
            "geOptions",
            "memUtilization",
            "globalResourceConfig",
          ),
          a: fc.oneof(
            { weight: 3, arbitrary: fc.constantFrom(0, 1, [0, 1], [2], 500, " 20 ", "20", "127.0.0.1:26000", "h:1") },
            { weight: 1, arbitrary: fc.constantFrom(0.5, 0.00005, 1.5, -1, [0, -1], "{}", "") },
            {
              weight: 1,
              arbitrary: fc.constantFrom(
                { "ge.flowGraphMemMaxSize": "4096" },
                { a: "b" },
                [0, 0],
                { "llm.MemoryUtilization": "0.5", "ge.session_device_id": "7" },
              ),
            },
            { weight: 2, arbitrary: any },
            { weight: 1, arbitrary: sparse },
          ),
        }),
        { maxLength: 4 },
      ),
    }),
    fc.record({
      what: fc.constant("LLMDataDist" as const),
      args: fc.tuple(
        s(fc.constantFrom(1, 2, 3)),
        s(u64),
        s(fc.constantFrom(undefined, {}, { backend: "host" }, { backend: "cann" }, { libraryPath: "/nonexistent.so" })),
      ),
      preInit: fc.nat(10),
    }),
    fc.record({
      what: fc.constant("Tensor" as const),
      args: fc.tuple(s(fc.constant([2])), s(fc.constant(DataType.DT_UINT8)), any, s(fc.constantFrom(undefined, 0))),
    }),
    fc.record({
      what: fc.constantFrom<"KvCache" | "KvCacheManager">("KvCache", "KvCacheManager"),
      args: fc.array(any, { maxLength: 3 }),
    }),
  );
}

/** init() cases on fresh instances. */
export function initSpec(options: FuzzOptions = {}): fc.Arbitrary<InitSpec> {
  const any = anyValue(options);
  const keys = [
    "ge.exec.deviceId",
    "ge.flowGraphMemMaxSize",
    "llm.SyncKvCacheWaitTime",
    "some.other.option",
    ...(options.knownBugs ? [" ge.exec.deviceId", "ge.exec.deviceId\t"] : []),
  ];
  const weirdValues = [
    "",
    "-1",
    "0",
    "1e3",
    "abc",
    "0;0",
    "0;;1",
    "99999999999",
    "4611686018427387904",
    "18446744073709551616",
    "0\u000b",
    " 7 ",
    "1;2;3;4;5;6;7;8;9;10;11;12;13;14;15;16;17;18;19;20;21;22;23;24;25;26;27;28;29;30;31;32;33;34;35;36;37;38;39;40;41;42;43;44;45;46;47;48;49;50;51;52;53;54;55;56;57;58;59;60;61;62;63;64",
  ];
  const entry = fc.constantFrom(...keys).chain((key) =>
    fc.tuple(
      fc.constant(key),
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...(VALID_OPTION_VALUES[key.trim()] ?? ["x"])) },
        { weight: 2, arbitrary: fc.constantFrom(...weirdValues) },
        { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
      ),
    )
  );
  return fc.record({
    role: slot(fc.constantFrom(LLMRole.PROMPT, LLMRole.DECODER, LLMRole.MIX), any, 8),
    cluster: fc.oneof(
      { weight: 8, arbitrary: fc.constant("fresh" as const) },
      { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    ),
    ctorOptions: slot(fc.constantFrom(undefined, {}, { backend: "host" }, { backend: "cann" }), any, 8),
    entries: fc.oneof(
      { weight: 8, arbitrary: fc.uniqueArray(entry, { maxLength: 4, selector: ([k]) => k }) },
      { weight: 1, arbitrary: any.map((v) => ({ any: v })) },
    ),
  });
}
