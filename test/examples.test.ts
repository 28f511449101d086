// The paged example (`npm run paged`, examples/paged_prefill_decode.ts) runs as
// the README says, on the runtime running this file (the suite runs it on
// Deno, Bun and Node): it must exit 0 and report every request verified. The
// example itself checks every byte of every pulled block and exits 1 if one
// differs.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runtimeCommand } from "./support/children.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Runs `script` (relative to the repository) on this runtime, as the README's commands do. */
function run(script: string): Promise<{ code: number | null; out: string }> {
  const { command, args } = runtimeCommand(join(root, script));
  // The examples start a second process: Deno needs --allow-run for it.
  if ("Deno" in globalThis) args.splice(1, 0, "--allow-run");
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => (out += chunk));
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, out }));
  });
}

test("examples/paged_prefill_decode.ts runs and verifies every block", { timeout: 60_000 }, async () => {
  const { code, out } = await run("examples/paged_prefill_decode.ts");
  assert.equal(code, 0, `the example exited with ${code}:\n${out}`);
  const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
  assert.match(out, new RegExp(`^paged prefill → decode on ${runtime}`, "m"));
  // Five requests, each verified, then the layer-by-layer pull.
  assert.equal(out.match(/ yes$/gm)?.length, 5, out);
  assert.match(out, /layer by layer \(4 calls\): verified$/m);
  assert.match(out, /^all 5 requests verified, every byte of every block$/m);
});
