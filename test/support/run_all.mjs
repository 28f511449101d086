// `npm test`: builds the native library if needed, then runs every suite —
// the native tests (ASan + UBSan), and the same test files on Deno, Bun and
// Node, one after another (the suites time things; running them side by side
// on a 2-core machine would only add noise), except the two halves of the
// valgrind run, the libFuzzer run and the CANN adapter's checks, which share
// the two cores (SIDE_BY_SIDE).
// Prints each suite's output, a summary, and a closing "N passed, N failed"
// line; exits non-zero on any failure.
//
// Counts come from machine-readable results: the runtimes' test runners write
// JUnit XML (test/support/junit.mjs reads it), and the native suites, this
// project's own C harness and scripts, close with one fixed line each
// ("N passed, N failed", "fuzz: N runs, N crashes").
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { junitCounts } from "./junit.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

const suites = [
  {
    name: "native",
    command: "make",
    args: ["-s", "-C", "ffi", "test"],
    counts: (out) => match(out, /^(\d+) passed, (\d+) failed$/m),
  },
  {
    // libFuzzer over the whole C ABI with ASan + UBSan, a short run.
    name: "fuzz",
    needs: { "clang-14": "clang-14 libclang-rt-14-dev" },
    command: "make",
    args: ["-s", "-C", "ffi", "fuzz-short", "FUZZ_TIME=20"],
    // One run counts as one test: passed when it found no crash.
    counts: (out) => {
      const m = out.match(/^fuzz: (\d+) runs, (\d+) crashes$/m);
      return m ? { passed: m[2] === "0" ? 1 : 0, failed: m[2] === "0" ? 0 : 1 } : undefined;
    },
  },
  {
    // The native unit tests, unsanitized, under valgrind memcheck, in two
    // halves (every other case: LLMDD_TEST_SHARD, ffi/test/harness.c) that run
    // side by side (SIDE_BY_SIDE below); the binary is built before either.
    name: "memcheck",
    needs: { valgrind: "valgrind" },
    prepare: ["make", ["-s", "-C", "ffi", "build/memcheck/llmdd_tests"]],
    command: "make",
    args: ["-s", "-C", "ffi", "memcheck"],
    env: { LLMDD_TEST_SHARD: "0/2" },
    counts: (out) => match(out, /^(\d+) passed, (\d+) failed$/m),
  },
  {
    name: "memcheck2",
    needs: { valgrind: "valgrind" },
    prepare: ["make", ["-s", "-C", "ffi", "build/memcheck/llmdd_tests"]],
    command: "make",
    args: ["-s", "-C", "ffi", "memcheck"],
    env: { LLMDD_TEST_SHARD: "1/2" },
    counts: (out) => match(out, /^(\d+) passed, (\d+) failed$/m),
  },
  {
    // The CANN adapter's own logic, and its thin layer compiled against
    // hand-written declarations of the CANN API (no toolkit here).
    name: "cann",
    command: "make",
    args: ["-s", "-C", "ffi/cann", "check"],
    counts: (out) => match(out, /^(\d+) passed, (\d+) failed$/m),
  },
  {
    // The CANN backend over upstream's own LLM-DataDist: with LLMDD_CANN_TOOLKIT
    // naming a toolkit (a CANN toolkit, or the stand-in built from upstream's
    // public sources, ffi/cann/README.md), the adapter is built against it here
    // and test/cann_upstream.test.ts runs in the deno, bun and node suites;
    // without it those tests are skipped and say so.
    name: "cann-upstream",
    needsEnv: "LLMDD_CANN_TOOLKIT",
    command: "sh",
    args: ["ffi/cann/upstream_check.sh"],
    counts: () => ({ passed: 1, failed: 0 }), // judged by the exit status
  },
  {
    name: "deno",
    command: bin("deno"),
    args: (junit) => [
      "test",
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-net=127.0.0.1",
      "--v8-flags=--expose-gc", // test/reliability.test.ts forces collections
      `--junit-path=${junit}`,
    ],
    files: true,
  },
  {
    // Deno's own documentation tests: every code block of the README files
    // and the JSDoc, type-checked and run (test/docs.test.ts runs them on Bun
    // and Node). "llm-datadist" is pointed at this checkout's mod.ts.
    name: "deno-doc",
    command: bin("deno"),
    args: (junit) => [
      "test",
      "--doc",
      "--import-map=test/support/doc_imports.json",
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      `--junit-path=${junit}`,
      "mod.ts",
      "src/",
      ...["README.md", "ffi/cann/README.md", "docs/DESIGN.md"].filter((f) => existsSync(join(root, f))),
    ],
  },
  {
    name: "bun",
    command: bin("bun"),
    args: (junit) => ["test", "--timeout", "120000", "--reporter=junit", `--reporter-outfile=${junit}`],
    files: true,
  },
  {
    name: "node",
    command: process.execPath,
    args: (junit) => [
      "--expose-gc", // test/reliability.test.ts forces collections
      "--import",
      "./test/support/register.mjs",
      "--test",
      "--test-concurrency=1",
      ...nodeReporters(junit),
    ],
    files: true,
  },
  {
    // The packages as users get them: npm pack + install + Node/Bun/Deno, and
    // the JSR file set over HTTP. Node drives the other runtimes itself.
    name: "package",
    needs: { "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu" },
    command: process.execPath,
    args: (junit) => [
      "--import",
      "./test/support/register.mjs",
      "--test",
      ...nodeReporters(junit),
      "test/package/package.test.ts",
    ],
  },
  {
    // Types, lint, format, docs and the JSR publish check (npm run check).
    name: "check",
    command: "npm",
    args: ["run", "-s", "check"],
    counts: () => ({ passed: 1, failed: 0 }), // judged by the exit status
  },
];

/** Node's human-readable report on stdout, and JUnit XML into `junit`. */
function nodeReporters(junit) {
  return [
    "--test-reporter=spec",
    "--test-reporter-destination=stdout",
    "--test-reporter=junit",
    `--test-reporter-destination=${junit}`,
  ];
}

// Deno colours its output even with NO_COLOR in some places; counts are read without.
const ESC = String.fromCharCode(27);
function stripColours(text) {
  return text.split(ESC).map((part, i) => (i === 0 ? part : part.replace(/^\[[0-9;]*m/, ""))).join("");
}

function match(out, re) {
  const m = out.match(re);
  return m ? { passed: Number(m[1]), failed: Number(m[2]) } : undefined;
}

/** Runs a command, echoing its output as it comes, or (`buffered`) only returning it. */
function run(command, args, buffered = false, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, NO_COLOR: "1", ...env } });
    let out = "";
    const take = (stream, sink) =>
      stream.on("data", (chunk) => {
        out += chunk;
        if (!buffered) sink.write(chunk);
      });
    take(child.stdout, process.stdout);
    take(child.stderr, process.stderr);
    child.on("error", (err) => resolve({ code: 1, out: stripColours(out + String(err)) }));
    child.on("close", (code) => resolve({ code, out: stripColours(out) }));
  });
}

// The test files every runtime runs: test/*.test.ts (test/package/ is the package suite's).
async function testFiles() {
  const { readdir } = await import("node:fs/promises");
  return (await readdir(join(root, "test"))).filter((f) => f.endsWith(".test.ts")).sort().map((f) => `./test/${f}`);
}

const only = process.argv.slice(2);
const build = await run("make", ["-s", "-C", "ffi"]);
if (build.code !== 0) {
  console.error("building the native library failed");
  process.exit(1);
}
// A suite whose tools are missing is skipped, loudly: .ci/run installs them,
// a developer's machine may not have them.
function missingTools(suite) {
  return Object.entries(suite.needs ?? {}).filter(([tool]) =>
    spawnSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" }).status !== 0
  );
}

const results = [];
const reports = mkdtempSync(join(tmpdir(), "llmdd-reports-"));

/** Runs one suite; its output is echoed live, or printed whole at its end when `buffered`. */
async function runSuite(suite, buffered) {
  const say = (text) => (buffered ? text + "\n" : (console.log(text), ""));
  let log = say(`\n=== ${suite.name} ===`);
  if (suite.needsEnv && !process.env[suite.needsEnv]) {
    log += say(`SKIPPED: ${suite.needsEnv} is not set (see the comment on this suite in test/support/run_all.mjs)`);
    return { log, result: { name: suite.name, skipped: `set ${suite.needsEnv}` } };
  }
  const missing = missingTools(suite);
  if (missing.length > 0) {
    const packages = missing.map(([, pkg]) => pkg).join(" ");
    log += say(`SKIPPED: needs ${missing.map(([tool]) => tool).join(", ")} (apt-get install ${packages})`);
    return { log, result: { name: suite.name, skipped: packages } };
  }
  const start = performance.now();
  const junit = join(reports, `${suite.name}.xml`);
  const base = typeof suite.args === "function" ? suite.args(junit) : suite.args;
  const args = suite.files ? [...base, ...(await testFiles())] : base;
  const { code, out } = await run(suite.command, args, buffered, suite.env);
  log += buffered ? out : "";
  const counts = suite.counts ? suite.counts(out) : junitCounts(junit);
  if (counts?.failures?.length) log += say(`\n${suite.name}: failed:\n  ${counts.failures.join("\n  ")}`);
  return { log, result: { name: suite.name, code, counts, seconds: (performance.now() - start) / 1000 } };
}

// Suites run one after another, except the ones named in SIDE_BY_SIDE, in two
// lanes: a valgrind process takes one core for minutes whatever else runs, so
// the two halves of the valgrind run, the libFuzzer run and the CANN adapter's
// checks (one process each, and timing nothing that valgrind's slowness would
// not already have to tolerate) share the two cores. Their output is printed
// whole as each ends. The second half of the valgrind run is the longer one
// (92-102 s against 44 s in CI on 2026-12-01, with fuzz 36 s and cann 32 s),
// so it has a lane to itself.
const SIDE_BY_SIDE = [["memcheck", "fuzz", "cann"], ["memcheck2"]];
const chosen = suites.filter((suite) => only.length === 0 || only.includes(suite.name));
const lanes = SIDE_BY_SIDE.map((names) => chosen.filter((suite) => names.includes(suite.name)));
const together = new Set(lanes.flat());
let lanesRun = false;
for (const suite of chosen) {
  if (!together.has(suite)) {
    results.push((await runSuite(suite, false)).result);
    continue;
  }
  if (lanesRun) continue;
  lanesRun = true;
  // What the lanes share is built before they start (never twice at once).
  const prepared = new Set();
  for (const member of together) {
    if (!member.prepare || missingTools(member).length > 0) continue;
    const key = JSON.stringify(member.prepare);
    if (prepared.has(key)) continue;
    prepared.add(key);
    await run(member.prepare[0], member.prepare[1]);
  }
  const done = await Promise.all(lanes.map(async (lane) => {
    const ran = [];
    for (const member of lane) {
      const outcome = await runSuite(member, true);
      process.stdout.write(outcome.log);
      ran.push(outcome.result);
    }
    return ran;
  }));
  // The summary keeps the suites' own order.
  const byName = new Map(done.flat().map((result) => [result.name, result]));
  for (const member of chosen) if (together.has(member)) results.push(byName.get(member.name));
}
rmSync(reports, { recursive: true, force: true });
console.log("\n=== summary ===");
let passed = 0;
let failed = 0;
for (const { name, code, counts, seconds, skipped } of results) {
  if (skipped) {
    console.log(`SKIP ${name.padEnd(7)} needs: ${skipped.startsWith("set ") ? skipped : `apt-get install ${skipped}`}`);
    continue;
  }
  const ok = code === 0 && counts !== undefined && counts.failed === 0 && counts.passed > 0;
  console.log(
    `${ok ? "ok  " : "FAIL"} ${name.padEnd(7)} ${
      counts ? `${counts.passed} passed, ${counts.failed} failed` : "no counts"
    }` +
      ` (exit ${code}, ${seconds.toFixed(1)} s)`,
  );
  passed += counts?.passed ?? 0;
  failed += counts ? counts.failed : 1;
  if (!ok && counts?.failed === 0) failed += 1; // a suite that crashed or ran nothing
}
console.log(`all: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
