// The long fuzz run: the properties of test/support/fuzz_model.ts, seed after
// seed, until at least 10^6 public calls were made. Runs on each runtime:
//
//   bun bench/fuzz_long.ts
//   deno run -A bench/fuzz_long.ts
//   node --import ./test/support/register.mjs bench/fuzz_long.ts
//
// Options (environment or arguments): LLMDD_FUZZ_CALLS / --calls N (default
// 1000000), LLMDD_FUZZ_SEED / --seed S (the first seed; default random),
// --no-known-bugs (leave out the inputs of the bugs it found, all fixed), --outcomes (print
// how often each call ended each way), --quiet.
// Prints runtime, first seed, calls, elapsed, failures (each with its seed and
// fast-check's counterexample and replay path) and RSS at start and end; exits
// 1 if anything failed.
import fc from "fast-check";
import process from "node:process";
import {
  counter,
  describeRun,
  type FuzzOptions,
  outcomes,
  runtime,
  sequenceProperty,
  shortTimeoutProperty,
  statelessProperty,
} from "../test/support/fuzz_model.ts";

function argument(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function env(name: string): string | undefined {
  try {
    return process.env[name];
  } catch {
    return undefined; // Deno without --allow-env
  }
}

const target = Number(argument("calls") ?? env("LLMDD_FUZZ_CALLS") ?? 1_000_000);
const firstSeed = Number(argument("seed") ?? env("LLMDD_FUZZ_SEED") ?? (Date.now() ^ (process.pid << 8)) >>> 0);
const quiet = process.argv.includes("--quiet");
const options: FuzzOptions = { knownBugs: !process.argv.includes("--no-known-bugs") };
const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(1)} MiB`;

const version = runtime === "deno"
  ? `Deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`
  : runtime === "bun"
  ? `Bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}`
  : `Node ${process.version}`;
const rssStart = process.memoryUsage().rss;
console.log(
  `fuzz_long: ${version}, ${describeRun(firstSeed, options)}, target ${target} calls, fast-check ${fc.__version}`,
);
console.log(`fuzz_long: RSS at start ${mib(rssStart)}`);

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.name === "FuzzFailure" ? `${error.name}: ${error.message}` : String(error.stack);
}

const failures: string[] = [];
const start = performance.now();
let seed = firstSeed;
let runs = 0;
let lastReport = start;
/** What one property did for one seed. */
interface Outcome {
  numRuns: number;
  failed: boolean;
  report: string;
}

async function run<T>(property: fc.IAsyncProperty<T>, seed: number, numRuns: number): Promise<Outcome> {
  const details = await fc.check(property, { seed, numRuns });
  const report = details.failed
    ? `${fc.defaultReportMessage(details) ?? "(no report)"}\nError: ${errorText(details.errorInstance)}`
    : "";
  return { numRuns: details.numRuns, failed: details.failed, report };
}

const properties: { name: string; check: (seed: number) => Promise<Outcome> }[] = [
  { name: "sequence", check: (seed) => run(sequenceProperty(options), seed, 20) },
  { name: "stateless", check: (seed) => run(statelessProperty(options), seed, 5) },
  { name: "short timeouts", check: (seed) => run(shortTimeoutProperty(), seed, 1) },
];
while (counter.calls < target) {
  for (const { name, check } of properties) {
    const { numRuns, failed, report } = await check(seed);
    runs += numRuns;
    if (failed) {
      failures.push(`${name} seed=${seed}:\n${report}`);
      console.log(`FAILURE in ${name} (${describeRun(seed, options)}):\n${report}\n`);
    }
  }
  seed = (seed + 1) >>> 0;
  const now = performance.now();
  if (!quiet && now - lastReport > 10_000) {
    lastReport = now;
    const rate = counter.calls / ((now - start) / 1000);
    console.log(
      `fuzz_long: ${counter.calls} calls, ${runs} runs, ${((now - start) / 1000).toFixed(0)} s, ` +
        `${rate.toFixed(0)} calls/s, RSS ${mib(process.memoryUsage().rss)}, failures ${failures.length}`,
    );
  }
}
if (process.argv.includes("--outcomes")) {
  for (const [key, n] of [...outcomes].sort(([a], [b]) => a.localeCompare(b))) console.log(`  ${key}: ${n}`);
}
const elapsed = (performance.now() - start) / 1000;
const rssEnd = process.memoryUsage().rss;
console.log(
  `fuzz_long: done. runtime=${version} first seed=${firstSeed} last seed=${(seed - 1) >>> 0} calls=${counter.calls} ` +
    `runs=${runs} elapsed=${elapsed.toFixed(1)} s (${(counter.calls / elapsed).toFixed(0)} calls/s) ` +
    `failures=${failures.length} RSS start=${mib(rssStart)} end=${mib(rssEnd)}`,
);
process.exit(failures.length === 0 ? 0 : 1);
