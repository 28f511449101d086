// The packages as users get them (run by `npm test` on Node; it drives the
// other runtimes itself):
// - npm: `npm pack`, install the tarball into a fresh project with no C
//   compiler on the PATH, and run a program on Node, Bun and Deno (npm: specifier)
//   that allocates a cache and calls getCacheTensors — the prebuilt library
//   must be found with no environment variable.
// - JSR: serve exactly the files `deno publish --dry-run` would publish over
//   HTTP, and import mod.ts from there with Deno, as a JSR user's Deno would.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = (name: string) => join(root, "node_modules", ".bin", name);
const work = mkdtempSync(join(tmpdir(), "llmdd-package-"));

// The program a user would write: the same on every runtime but for the import.
const program = (specifier: string) => `
import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "${specifier}";
await using dd = new LLMDataDist(LLMRole.DECODER, 1n);
await dd.init({ "ge.exec.deviceId": "0;1", "ge.flowGraphMemMaxSize": "1048576" });
const cache = await dd.kvCacheManager.allocateCache(new CacheDesc(2, [4, 8], DataType.DT_INT32, Placement.HOST));
dd.kvCacheManager.getCacheTensorViews(cache, 1).forEach((view, d) => view.data.fill(10 + d));
const tensors = await dd.kvCacheManager.getCacheTensors(cache, 1);
console.log(JSON.stringify(tensors.map((t) => [t.deviceId, t.data.length, t.data[31]])));
`;
const expected = JSON.stringify([[0, 32, 10], [1, 32, 11]]);

function run(
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
  timeout = 180_000,
): string {
  const result = spawnSync(command, args, { ...options, encoding: "utf8", timeout });
  assert.equal(result.status, 0, `${command} ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

describe("the npm package", { timeout: 600_000 }, () => {
  let project: string;
  let path: string; // a PATH with node, npm, bun and deno but no compiler
  let packed: { filename: string; size: number; unpackedSize: number; files: { path: string; size: number }[] };

  before(() => {
    const out = run("npm", ["pack", "--json", "--pack-destination", work], { cwd: root });
    packed = JSON.parse(out.slice(out.indexOf("[")))[0];
    console.log(
      `packed ${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${packed.files.length} files`,
    );
    const tools = join(work, "bin");
    mkdirSync(tools);
    symlinkSync(process.execPath, join(tools, "node"));
    symlinkSync(execFileSync("sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim(), join(tools, "npm"));
    symlinkSync(execFileSync("sh", ["-c", "command -v sh"], { encoding: "utf8" }).trim(), join(tools, "sh"));
    path = tools;
    project = join(work, "project");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "user", private: true, type: "module" }));
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", join(work, packed.filename)], {
      cwd: project,
      env: { ...process.env, PATH: path },
    });
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test("ships dist/, the prebuilt libraries for linux-x64 and linux-arm64, and the C sources", () => {
    const files = packed.files.map((f) => f.path);
    for (const file of ["dist/mod.js", "dist/mod.d.ts", "dist/src/native/load.js", "ffi/include/llmdd.h"]) {
      assert.ok(files.includes(file), `${file} is missing from the package`);
    }
    for (const platform of ["linux-x64", "linux-arm64"]) {
      assert.ok(files.includes(`prebuilds/${platform}/libllmdd_host.so`), `no prebuilt library for ${platform}`);
    }
    assert.ok(!files.some((f) => f.startsWith("test/") || f.startsWith("ffi/build/")), "tests or builds shipped");
    const arm = readFileSync(
      join(project, "node_modules", "llm-datadist", "prebuilds", "linux-arm64", "libllmdd_host.so"),
    );
    assert.equal(arm.readUInt16LE(18), 183, "the linux-arm64 library is an AArch64 ELF file (e_machine 183)");
  });

  test("the installed package.json has no scripts (npm would ask to approve `prepare`)", () => {
    const installed = JSON.parse(readFileSync(join(project, "node_modules", "llm-datadist", "package.json"), "utf8"));
    assert.equal(installed.scripts, undefined, `scripts shipped: ${JSON.stringify(installed.scripts)}`);
    assert.ok(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts.prepare, "the checkout keeps them");
  });

  test("the install had no compiler at hand", () => {
    const found = spawnSync("sh", ["-c", "command -v cc gcc clang make"], {
      env: { PATH: path },
      encoding: "utf8",
    });
    assert.equal(found.stdout.trim(), "", "a compiler was on the PATH");
  });

  test("Node runs a program against the installed package", () => {
    writeFileSync(join(project, "node.mjs"), program("llm-datadist"));
    // Node 20 does not parse `await using`; the program is the same otherwise.
    const source = readFileSync(join(project, "node.mjs"), "utf8").replace("await using dd", "const dd");
    writeFileSync(join(project, "node.mjs"), source + "dd.finalize();\n");
    assert.equal(run(process.execPath, ["node.mjs"], { cwd: project, env: { PATH: path } }).trim(), expected);
  });

  test("Bun runs the same program", () => {
    writeFileSync(join(project, "bun.mjs"), program("llm-datadist"));
    assert.equal(run(bin("bun"), ["bun.mjs"], { cwd: project, env: { PATH: path } }).trim(), expected);
  });

  test("Deno runs it through an npm: specifier", () => {
    writeFileSync(join(project, "deno.mjs"), program("npm:llm-datadist"));
    const out = run(bin("deno"), ["run", "--allow-ffi", "--allow-env", "--allow-read", "deno.mjs"], {
      cwd: project,
      env: { PATH: path, DENO_DIR: join(work, "deno-cache") },
    });
    assert.equal(out.trim(), expected);
  });
});

describe("a git dependency", { timeout: 600_000 }, () => {
  // Before publication users install from git: npm clones the repository,
  // installs its dev-dependencies, runs `prepare` (native library + dist/) and
  // packs it on the user's machine (without prepack: the package then carries
  // the library built for this machine in ffi/build/, not prebuilds/). The
  // repository here is this working tree, committed afresh.
  test("`npm install git+file://…` builds dist/ and the library, and a program runs", () => {
    const repo = join(work, "repo");
    const tracked = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: root,
      encoding: "utf8",
    }).split("\0").filter((f) => f && statSync(join(root, f), { throwIfNoEntry: false })?.isFile());
    for (const file of tracked) {
      mkdirSync(dirname(join(repo, file)), { recursive: true });
      cpSync(join(root, file), join(repo, file));
    }
    const git = (...args: string[]) => run("git", args, { cwd: repo });
    git("init", "-q");
    git("add", "-A");
    git("-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "-m", "snapshot");
    const user = join(work, "git-user");
    mkdirSync(user);
    writeFileSync(join(user, "package.json"), JSON.stringify({ name: "git-user", private: true, type: "module" }));
    // npm installs the repository's dev-dependencies (Deno and Bun among them)
    // to run `prepare`: about two minutes here.
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", `git+file://${repo}`], {
      cwd: user,
    }, 480_000);
    const installed = join(user, "node_modules", "llm-datadist");
    assert.ok(statSync(join(installed, "dist", "mod.js")).isFile(), "dist/ was built");
    assert.ok(statSync(join(installed, "ffi", "build", "libllmdd_host.so")).isFile(), "the library was built");
    writeFileSync(
      join(user, "node.mjs"),
      program("llm-datadist").replace("await using dd", "const dd") + "dd.finalize();\n",
    );
    assert.equal(run(process.execPath, ["node.mjs"], { cwd: user }).trim(), expected);
  });
});

describe("the JSR package", { timeout: 300_000 }, () => {
  test("mod.ts imported over HTTP from exactly the published files works, with LLMDD_LIBRARY", async () => {
    const site = join(work, "jsr");
    const listing = spawnSync(bin("deno"), ["publish", "--dry-run", "--allow-dirty"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1" },
    });
    assert.equal(listing.status, 0, listing.stderr);
    const files = [...(listing.stdout + listing.stderr).matchAll(/file:\/\/(\S+)/g)].map((m) => m[1]);
    assert.ok(files.some((f) => f.endsWith("/mod.ts")), "mod.ts is published");
    for (const file of files) {
      const to = join(site, file.slice(root.length));
      mkdirSync(dirname(to), { recursive: true });
      cpSync(file, to);
    }
    writeFileSync(join(site, "user.ts"), program("./mod.ts"));
    const server = createServer((req, res) => {
      try {
        const body = readFileSync(join(site, decodeURIComponent(new URL(req.url!, "http://x").pathname)));
        res.writeHead(200, { "content-type": "application/typescript" }).end(body);
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const deno = (env: Record<string, string>) =>
        spawnAsync(bin("deno"), [
          "run",
          "--quiet",
          "--reload",
          `--allow-import=${host}`,
          "--allow-ffi",
          "--allow-env",
          "--allow-read",
          `http://${host}/user.ts`,
        ], { cwd: work, env: { PATH: process.env.PATH!, DENO_DIR: join(work, "deno-cache"), ...env } });
      const library = join(root, "ffi", "build", "libllmdd_host.so");
      const ok = await deno({ LLMDD_LIBRARY: library });
      assert.equal(ok.status, 0, ok.out);
      assert.equal(ok.out.trim().split("\n").at(-1), expected);
      const missing = await deno({});
      assert.notEqual(missing.status, 0);
      assert.match(missing.out, /was loaded from http:.*set LLMDD_LIBRARY or the libraryPath option/);
    } finally {
      server.close();
    }
  });
});

/** Runs a command without blocking the event loop (the HTTP server above must answer). */
function spawnAsync(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, options);
    let out = "";
    child.stdout.on("data", (chunk) => (out += chunk));
    child.stderr.on("data", (chunk) => (out += chunk));
    child.on("close", (status) => resolve({ status, out }));
  });
}
