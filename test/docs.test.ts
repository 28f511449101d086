// Every code block of the documentation runs, as written, on this runtime:
// README.md, ffi/cann/README.md, docs/DESIGN.md and the JSDoc of mod.ts and
// src/ (test/support/doc_blocks.ts says which blocks and how they are marked).
// Each block is a program of its own, in a child process of the runtime that
// runs this file; it imports the package by its name, "llm-datadist", which
// is pointed at this checkout's mod.ts. JavaScript blocks run as `.mjs`
// files, so Node 20 parses them itself, as a user's program would be parsed.
// A block passes when it exits with status 0 and writes nothing to stderr
// (the library warns there, for example about a cache lost to the garbage
// collector, which a good example never provokes).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { after, describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type DocBlock, documentationBlocks } from "./support/doc_blocks.ts";
import { runtimeCommand } from "./support/children.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modUrl = pathToFileURL(join(root, "mod.ts")).href;
const workDir = mkdtempSync(join(tmpdir(), "llmdd-docs-"));
after(() => rmSync(workDir, { recursive: true, force: true }));

const BLOCK_MS = 60_000;

/** A TCP port nobody listens on now (the examples' fixed 26000 may be taken here). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Writes `block` as a program importing this checkout under the package's name. */
function programFile(block: DocBlock, index: number, port: number): string {
  const code = block.code.replace(/(from\s+|import\s*\(\s*)(["'])llm-datadist\2/g, `$1"${modUrl}"`)
    .replaceAll("26000", String(port));
  const path = join(workDir, `block${index}.${block.language === "js" ? "mjs" : "ts"}`);
  writeFileSync(path, `// ${block.where}\n${code}\n`);
  return path;
}

interface Running {
  readonly where: string;
  /** Resolves when stdout has shown a line with "ready". */
  readonly ready: Promise<void>;
  /** Resolves when it has exited. */
  readonly exited: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>;
  /** What it has printed so far. */
  stdout(): string;
  interrupt(): void;
  kill(): void;
}

function start(block: DocBlock, index: number, port: number): Running {
  const { command, args } = runtimeCommand(programFile(block, index, port));
  const child = spawn(command, args, { env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
    if (/ready/i.test(stdout)) markReady();
  });
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>(
    (resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return {
    where: block.where,
    ready,
    exited,
    stdout: () => stdout,
    interrupt: () => child.kill("SIGINT"),
    kill: () => child.kill("SIGKILL"),
  };
}

/** Waits for `promise`, failing the test after `ms` (and killing what runs). */
async function within<T>(promise: Promise<T>, ms: number, what: string, running: Running[]): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      for (const r of running) r.kill();
      reject(new Error(`${what}: no result within ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function assertClean(
  where: string,
  result: { code: number | null; signal: string | null; stdout: string; stderr: string },
) {
  const output = `--- stdout ---\n${result.stdout}--- stderr ---\n${result.stderr}`;
  assert.equal(result.code, 0, `${where} exited with ${result.code ?? result.signal}\n${output}`);
  assert.equal(result.stderr.trim(), "", `${where} wrote to stderr\n${output}`);
}

/** Runs the blocks of one set (or one lone block): servers first, the last one to completion. */
async function runSet(blocks: { block: DocBlock; index: number }[]): Promise<void> {
  const running: Running[] = [];
  const port = await freePort();
  try {
    for (const { block, index } of blocks.slice(0, -1)) {
      const server = start(block, index, port);
      running.push(server);
      await within(
        Promise.race([server.ready, server.exited.then((r) => assertClean(server.where, r))]),
        BLOCK_MS,
        `${server.where} never printed "ready"`,
        running,
      );
    }
    const last = blocks[blocks.length - 1];
    const client = start(last.block, last.index, port);
    running.push(client);
    assertClean(client.where, await within(client.exited, BLOCK_MS, client.where, running));
    for (const server of running.slice(0, -1)) {
      const before = server.stdout().length;
      server.interrupt();
      const result = await within(server.exited, BLOCK_MS, `${server.where} after SIGINT`, running);
      // Deno's node:child_process reports the signal it sent as the cause of
      // exit even when the child handled it and exited with status 0; there,
      // a server that printed after the signal (its closing line) and wrote
      // nothing to stderr has finished cleanly.
      const handled = isDeno && result.signal === "SIGINT" && result.stdout.length > before;
      assertClean(server.where, handled ? { ...result, code: 0 } : result);
    }
  } finally {
    for (const r of running) r.kill();
  }
}

// Deno runs the lone blocks with its own documentation tests (`deno test --doc`,
// the "deno-doc" suite of test/support/run_all.mjs), which also type-check
// them; here it runs only the sets of processes, which those leave out.
const isDeno = "Deno" in globalThis;
const blocks = documentationBlocks(root).map((block, index) => ({ block, index }))
  .filter(({ block }) => !isDeno || block.processSet !== undefined);
const sets = new Map<string, { block: DocBlock; index: number }[]>();
for (const entry of blocks) {
  const key = entry.block.processSet ? `process=${entry.block.processSet}` : entry.block.where;
  sets.set(key, [...(sets.get(key) ?? []), entry]);
}

describe("documentation code blocks run as written", () => {
  test("the documentation has runnable blocks", () => {
    assert.ok(blocks.length >= (isDeno ? 2 : 20), `found only ${blocks.length} blocks`);
  });
  for (const [name, set] of sets) {
    const title = set.length === 1 ? name : `${name}: ${set.map((s) => s.block.where).join(" + ")}`;
    test(title, { timeout: BLOCK_MS * (set.length + 1) }, () => runSet(set));
  }
});
