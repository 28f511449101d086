// A smoke run of the load script (bench/load_blocks.ts) on the runtime running
// this file: a PROMPT process and 2 DECODER processes pulling blocks for two
// seconds after a one-second solo baseline. The script verifies every pulled
// byte and every call itself and exits 1 otherwise; this checks that it ran,
// pulled, verified and said so. No speed is asserted (that is the script's
// job, on a quiet machine). A second run with --corrupt flips one byte after
// each DECODER's first pull: the script must catch it and fail.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { runtimeCommand } from "./support/children.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function runLoad(extra: string[]): Promise<{ code: number | null; out: string }> {
  const { command, args } = runtimeCommand(join(root, "bench/load_blocks.ts"));
  // The script starts the PROMPT and the DECODERs: Deno needs --allow-run for it.
  if ("Deno" in globalThis) args.splice(1, 0, "--allow-run");
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args, ...extra], { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => (out += chunk));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, out }));
  });
}

/** The cells of the table row of `phase`: [phase, DECODERs, calls ok, failed, late, hung, …, verified, wrong]. */
function row(out: string, phase: string): string[] {
  const line = out.split("\n").find((l) => l.startsWith(`| ${phase} |`));
  assert.ok(line, `no ${phase} row in:\n${out}`);
  return line.split("|").slice(1, -1).map((cell) => cell.trim());
}

describe("bench/load_blocks.ts, smoke", () => {
  test("2 DECODERs for 2 s: every call returns, every pulled byte verified", { timeout: 120_000 }, async () => {
    const { code, out } = await runLoad(["--seconds", "2", "--solo-seconds", "1", "--decoders", "2"]);
    assert.equal(code, 0, `the load script exited with ${code}:\n${out}`);
    assert.match(out, /^load: ok$/m);
    for (const [phase, decoders] of [["solo", "1"], ["load", "2"]]) {
      const cells = row(out, phase);
      assert.equal(cells[1], decoders);
      assert.ok(Number(cells[2]) > 0, `${phase}: no call succeeded:\n${out}`);
      assert.deepEqual(cells.slice(3, 6), ["0", "0", "0"], `${phase}: failed, late or hung calls:\n${out}`);
      assert.ok(Number(cells[11]) >= Number(cells[2]) * 64, `${phase}: fewer blocks verified than pulled:\n${out}`);
      assert.equal(cells[12], "0", `${phase}: wrong blocks:\n${out}`);
    }
    assert.match(out, /^calls: \d+ started, every one returned within its deadline, none failed or hung: ✓$/m);
    // The PROMPT's memory was sampled at the end, and it churned caches meanwhile.
    assert.match(out, /^\| end \| \d+\.\d \| \S+ \| \S+ \| [1-9]\d* \|$/m);
  });

  test("--corrupt: a flipped byte is caught and the run fails", { timeout: 120_000 }, async () => {
    const { code, out } = await runLoad(["--seconds", "1", "--solo-seconds", "1", "--decoders", "1", "--corrupt"]);
    assert.equal(code, 1, `the load script exited with ${code}:\n${out}`);
    assert.equal(row(out, "solo")[12], "1", out);
    assert.equal(row(out, "load")[12], "1", out);
    assert.match(
      out,
      /^FAILED: solo DECODER 0: .* 1 blocks wrong \(generation \d tensor 0: source block \d+ → block \d+ differs\)$/m,
    );
    assert.match(out, /^load: FAILED$/m);
  });
});
