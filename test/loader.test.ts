// Finding the native library (SPEC §5): what is tried, in which order, and
// what a failure says.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LLMDataDist, LLMRole, LLMStatusCode } from "../mod.ts";
import { candidates } from "../src/native/load.ts";
import { ABI_VERSION } from "../src/native/symbols.ts";
import { rejectsWithStatus } from "./helpers.ts";

describe("loading the native library", () => {
  test("a missing library names what was tried and how to fix it; nothing crashes", async () => {
    const dd = new LLMDataDist(LLMRole.PROMPT, 1n, { libraryPath: "/nonexistent/libllmdd_host.so" });
    const err = await rejectsWithStatus(dd.init({}), LLMStatusCode.LLM_FAILED);
    assert.match(err.message, /cannot load the host native library/);
    assert.match(err.message, /\/nonexistent\/libllmdd_host\.so \(the libraryPath option\)/);
    assert.match(err.message, /make -C .*\/ffi`/);
    assert.equal(dd.kvCacheManager.isInitialized(), false);
  });

  test("the cann backend without a toolkit says so", async () => {
    const saved = process.env.LLMDD_LIBRARY;
    delete process.env.LLMDD_LIBRARY;
    try {
      const dd = new LLMDataDist(LLMRole.PROMPT, 1n, { backend: "cann" });
      const err = await rejectsWithStatus(dd.init({}), LLMStatusCode.LLM_FAILED);
      assert.match(err.message, /libllmdd_cann\.so/);
      assert.match(err.message, /CANN toolkit/);
    } finally {
      if (saved !== undefined) process.env.LLMDD_LIBRARY = saved;
    }
  });

  test("order: libraryPath, then LLMDD_LIBRARY, then the prebuilt library, then the local build", () => {
    const saved = process.env.LLMDD_LIBRARY;
    try {
      delete process.env.LLMDD_LIBRARY;
      const defaults = candidates("host");
      assert.equal(defaults.length, 2);
      assert.match(defaults[0].path, /prebuilds\/linux-(x64|arm64)\/libllmdd_host\.so$/);
      assert.match(defaults[1].path, /ffi\/build\/libllmdd_host\.so$/);
      process.env.LLMDD_LIBRARY = "/from/env.so";
      assert.deepEqual(candidates("host").map((c) => c.path), ["/from/env.so"]);
      assert.deepEqual(candidates("host", "/from/option.so").map((c) => c.path), ["/from/option.so"]);
    } finally {
      if (saved === undefined) delete process.env.LLMDD_LIBRARY;
      else process.env.LLMDD_LIBRARY = saved;
    }
  });

  test("LLMDD_LIBRARY is honoured", async () => {
    const saved = process.env.LLMDD_LIBRARY;
    process.env.LLMDD_LIBRARY = "/nonexistent/from-env.so";
    try {
      const err = await rejectsWithStatus(new LLMDataDist(LLMRole.PROMPT, 1n).init({}), LLMStatusCode.LLM_FAILED);
      assert.match(err.message, /from-env\.so \(the LLMDD_LIBRARY environment variable\)/);
    } finally {
      if (saved === undefined) delete process.env.LLMDD_LIBRARY;
      else process.env.LLMDD_LIBRARY = saved;
    }
  });

  test("Deno without --allow-ffi: the error leads with the permission, not with building", () => {
    // Whatever runs this file, the subject is a Deno child process (Deno comes
    // as a dev-dependency), with the library built and found but FFI denied.
    const root = join(dirname(fileURLToPath(import.meta.url)), "..");
    const script = `import { LLMDataDist, LLMRole } from ${JSON.stringify(pathToFileURL(join(root, "mod.ts")).href)};
try { await new LLMDataDist(LLMRole.DECODER, 2n).init({}); } catch (err) { console.log(err.message); }`;
    const dir = mkdtempSync(join(tmpdir(), "llmdd-deno-"));
    let out: string;
    try {
      writeFileSync(join(dir, "main.ts"), script);
      const deno = join(root, "node_modules", ".bin", "deno");
      out = execFileSync(deno, ["run", "--no-prompt", "--allow-read", "--allow-env", join(dir, "main.ts")], {
        encoding: "utf8",
        env: { ...process.env, NO_COLOR: "1" },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const first = out.split("\n")[0];
    assert.match(first, /Deno denied FFI access\. Run with --allow-ffi/, out);
    assert.doesNotMatch(out, /Build it from source/, out);
  });

  test("a library of another ABI version is refused with a clear error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "llmdd-abi-"));
    try {
      writeFileSync(join(dir, "old.c"), "int llmdd_abi_version(void) { return 999; }\n");
      const lib = join(dir, "libold.so");
      execFileSync("cc", ["-shared", "-fPIC", "-o", lib, join(dir, "old.c")]);
      const dd = new LLMDataDist(LLMRole.PROMPT, 1n, { libraryPath: lib });
      const err = await rejectsWithStatus(dd.init({}), LLMStatusCode.LLM_FAILED);
      assert.match(err.message, new RegExp(`ABI version 999 but this code needs version ${ABI_VERSION}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
