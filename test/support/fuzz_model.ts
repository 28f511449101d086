// Property-based fuzzing of the whole public API (fast-check), shared by
// test/fuzz.test.ts (the short run in `npm test`) and bench/fuzz_long.ts (the
// long run). Runs unchanged on Deno, Bun and Node.
//
// - `sequenceProperty`, model-based: a PROMPT listening on 127.0.0.1:0 and a
//   DECODER (linked to it, or not) receive a random sequence of valid and invalid
//   calls — allocate (with and without keys), write through views, read, copy,
//   pull, remove keys, deallocate (also by `await using`'s dispose), link,
//   unlink, finalize late in the sequence, constructors, and bursts of cache
//   calls started together. A model keeps what the instances should hold — live
//   caches and the bytes written to them, cache keys, each pool's first-fit free
//   list, the link, finalization — and predicts every call's outcome: success,
//   or the errors its arguments and the state allow (TypeError, ValueError,
//   LLMException with given status codes). After every command every live cache
//   is read back with getCacheTensors and compared with the model, pool usage is
//   compared with the model's allocator, and kept views are checked (live ones
//   still show the bytes, revoked ones refuse access).
// - `statelessProperty`: constructors, setters and init() of fresh instances on
//   "any value"; `shortTimeoutProperty`: links that run out of time.
//
// Anything else that comes out (another error class, a synchronous throw from a
// promise-returning call, a call that does not settle, wrong data, a crash of
// the process) fails.
//
// This file only re-exports; the fuzz lives in test/support/fuzz/, one file per
// concern: core (runtime, constants, failures), values ("any value"), outcomes
// (the oracle), model (what the instances should hold) and resolve (arguments
// from specs); one file per API area (caches, pulls, links, views, lifecycle,
// constructors, init, bursts); commands, stateless_cases and properties (the
// fast-check glue).

export { counter, FuzzFailure, type FuzzOptions, KNOWN_BUGS, outcomes, runtime } from "./fuzz/core.ts";
export { anyValue, Part, Ref, type RefName, Row } from "./fuzz/values.ts";
export { FuzzAbort, type Outcome } from "./fuzz/outcomes.ts";
export { Ctx, openCtx, type SequenceSetup } from "./fuzz/model.ts";
export { type CachePick, type CacheSpec, type OptionsSpec } from "./fuzz/resolve.ts";
export { type DescSpec, type KeysSpec } from "./fuzz/caches.ts";
export { type ClusterSpec, type ClustersSpec } from "./fuzz/links.ts";
export { type KeySpec } from "./fuzz/pulls.ts";
export { type MiscSpec } from "./fuzz/lifecycle.ts";
export { type CtorSpec } from "./fuzz/constructors.ts";
export { type InitSpec } from "./fuzz/init.ts";
export { type BurstItem } from "./fuzz/bursts.ts";
export { sequenceCommands } from "./fuzz/commands.ts";
export { ctorSpec, initSpec } from "./fuzz/stateless_cases.ts";
export { describeRun, sequenceProperty, setupArb, shortTimeoutProperty, statelessProperty } from "./fuzz/properties.ts";
