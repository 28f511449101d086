// Who can link, read and disturb a PROMPT or a DECODER (issue 10): each attack
// of the issue, tried from this process (a stranger on the control port, idle
// sockets, a same-account impostor) or from a child process where a success of
// the attack would kill the runner (SIGBUS). The native suite
// (ffi/test/test_security.c) also tries them from a second account.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect, type Socket } from "node:net";
import { describe, test } from "node:test";
import {
  CacheDesc,
  CacheKey,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../mod.ts";
import { runtimeCommand } from "./support/children.ts";
import { freshClusterId, rejectsWithStatus } from "./helpers.ts";

const LOOPBACK = "127.0.0.1";
const SECRET = "correct horse battery staple";

function clusterAt(clusterId: bigint, port: number): LLMClusterInfo {
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = clusterId;
  cluster.appendRemoteIpInfo(LOOPBACK, port);
  return cluster;
}

async function openPrompt(clusterId: bigint, extra: Record<string, string> = {}): Promise<LLMDataDist> {
  const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
  await prompt.init({
    "ge.flowGraphMemMaxSize": String(1 << 20),
    "llm.listenIpInfo": `${LOOPBACK}:0`,
    ...extra,
  });
  return prompt;
}

async function openDecoder(extra: Record<string, string> = {}): Promise<LLMDataDist> {
  const decoder = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20), ...extra });
  return decoder;
}

/** Connects to the port; resolves once connected. */
function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, LOOPBACK, () => resolve(socket));
    socket.on("error", reject);
  });
}

/** Sends `bytes` (if any) and collects what comes back until the server closes
 * or `limitMs` passes: the bytes, whether it closed, and when. */
function exchange(socket: Socket, bytes: Uint8Array | null, limitMs: number) {
  const start = Date.now();
  return new Promise<{ received: number; closed: boolean; ms: number }>((resolve) => {
    let received = 0;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received, closed, ms: Date.now() - start });
    };
    const timer = setTimeout(() => done(false), limitMs);
    socket.on("data", (chunk: Uint8Array) => (received += chunk.length));
    socket.on("close", () => done(true));
    socket.on("error", () => {});
    if (bytes) socket.write(bytes);
  });
}

/** A stranger's HELLO naming cluster 1, spelt as protocol `version` spelt it. */
function strangerHello(version: number): Uint8Array {
  const m = new Uint8Array(48);
  const v = new DataView(m.buffer);
  v.setUint32(0, 0x44444c4c, true);
  v.setUint32(4, version | (1 << 16), true);
  v.setUint32(8, 24, true);
  v.setBigUint64(16, 1n, true);
  v.setBigUint64(32, 1n, true); // the cluster it guesses
  v.setUint32(40, 2, true);
  v.setUint32(44, 1, true);
  return m;
}

/** Runs test/support/security_process.ts on this runtime, under `wrapper` (a
 * command and its arguments that exec what follows), and returns its JSON line
 * and how it ended. */
function runChild(
  config: Record<string, unknown>,
  wrapper: string[] = [],
): Promise<{ message: Record<string, unknown> | null; code: number | null; signal: string | null; stderr: string }> {
  const { command, args } = runtimeCommand("security_process.ts");
  // Deno guards /dev and /proc behind --allow-all: without it the child could
  // not even try the attack, and would pass for the wrong reason.
  if ((globalThis as { Deno?: unknown }).Deno) args.splice(1, args.length - 2, "--allow-all");
  const all = [...wrapper, command, ...args, JSON.stringify(config)];
  const child = spawn(all[0], all.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => (out += s));
  child.stderr!.on("data", (s: string) => (err += s));
  return new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      const line = out.split("\n").find((l) => l.startsWith("{"));
      resolve({ message: line ? JSON.parse(line) : null, code, signal, stderr: err });
    })
  );
}

describe("security", () => {
  test("attack 1: a stranger's HELLO is never answered (before: the right cluster id came back)", async () => {
    const prompt = await openPrompt(freshClusterId());
    try {
      for (const version of [1, 2, 3, 4]) {
        const got = await exchange(await open(prompt.listenPort), strangerHello(version), 3000);
        assert.equal(got.received, 0, `version ${version}: ${got.received} bytes answered`);
        assert.ok(got.closed, `version ${version}: the connection stayed open`);
      }
    } finally {
      prompt.finalize();
    }
  });

  test("attack 1: a listen address beyond loopback needs llmdd.linkSecret; DECODERs without it cannot link", async () => {
    const clusterId = freshClusterId();
    const refused = new LLMDataDist(LLMRole.PROMPT, clusterId);
    await rejectsWithStatus(
      refused.init({ "llm.listenIpInfo": "0.0.0.0:0", "ge.flowGraphMemMaxSize": String(1 << 20) }),
      LLMStatusCode.LLM_PARAM_INVALID,
      /llmdd\.linkSecret/,
    );
    const prompt = new LLMDataDist(LLMRole.PROMPT, clusterId);
    await prompt.init({
      "llm.listenIpInfo": "0.0.0.0:0",
      "ge.flowGraphMemMaxSize": String(1 << 20),
      "llmdd.linkSecret": SECRET,
    });
    const decoders: LLMDataDist[] = [];
    try {
      const desc = new CacheDesc(1, [4, 16], DataType.DT_UINT8, Placement.HOST);
      const src = await prompt.kvCacheManager.allocateCache(desc, [new CacheKey(clusterId, 7n)]);
      (prompt.kvCacheManager.getCacheTensorViews(src, 0)[0].data as Uint8Array).fill(9);
      for (
        const [secret, want] of [
          [undefined, LLMStatusCode.LLM_LINK_FAILED],
          ["wrong horse battery staple", LLMStatusCode.LLM_LINK_FAILED],
          [SECRET, LLMStatusCode.LLM_SUCCESS],
        ] as const
      ) {
        const decoder = await openDecoder(secret ? { "llmdd.linkSecret": secret } : {});
        decoders.push(decoder);
        const [status] = await decoder.linkClusters([clusterAt(clusterId, prompt.listenPort)], 3000);
        assert.equal(status, want, `secret ${secret}`);
        if (status !== LLMStatusCode.LLM_SUCCESS) continue;
        const dst = await decoder.kvCacheManager.allocateCache(desc);
        await decoder.kvCacheManager.pullCache(new CacheKey(clusterId, 7n), dst);
        const [t] = await decoder.kvCacheManager.getCacheTensors(dst, 0);
        assert.equal((t.data as Uint8Array)[0], 9);
      }
    } finally {
      for (const d of decoders) d.finalize();
      prompt.finalize();
    }
  });

  test("attack 4: a silent connection is dropped within about 2 s, and 80 of them do not keep a DECODER out", async () => {
    const clusterId = freshClusterId();
    const prompt = await openPrompt(clusterId);
    const silent: Socket[] = [];
    const decoder = await openDecoder();
    try {
      const one = await exchange(await open(prompt.listenPort), null, 4000);
      assert.ok(one.closed && one.ms < 3000, `a silent connection: closed ${one.closed} after ${one.ms} ms`);
      for (let i = 0; i < 80; i++) {
        const s = await open(prompt.listenPort);
        s.on("error", () => {});
        silent.push(s);
      }
      const [status] = await decoder.linkClusters([clusterAt(clusterId, prompt.listenPort)], 3000);
      assert.equal(status, LLMStatusCode.LLM_SUCCESS);
    } finally {
      for (const s of silent) s.destroy();
      decoder.finalize();
      prompt.finalize();
    }
  });

  test("attack 5: names an impostor squats in /dev/shm do not stop a PROMPT (before: init failed)", async () => {
    const clusterId = freshClusterId();
    // The names engines used before; directories stand in for the impostor's
    // objects (made with mkdir: Deno asks for --allow-all to touch /dev).
    const names = [`/dev/shm/llmdd.${clusterId}.0`, `/dev/shm/llmdd.${clusterId}.lock`];
    const { execFileSync } = await import("node:child_process");
    for (const name of names) execFileSync("mkdir", [name]);
    try {
      const prompt = await openPrompt(clusterId);
      prompt.finalize();
    } finally {
      for (const name of names) execFileSync("rmdir", [name]);
    }
  });

  test("attack 3: a full /dev/shm is LLM_DEVICE_OUT_OF_MEMORY or no matter, never SIGBUS", async (t) => {
    // A 4 MiB tmpfs on /dev/shm in a private mount namespace, for the child only.
    const wrapper = [
      "unshare",
      "-m",
      "sh",
      "-c",
      'mount --make-rprivate / && mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$@"',
      "sh",
    ];
    const probe = await new Promise<number | null>((resolve) => {
      const p = spawn(wrapper[0], [...wrapper.slice(1), "true"], { stdio: "ignore" });
      p.on("error", () => resolve(-1));
      p.on("exit", (code) => resolve(code));
    });
    if (probe !== 0) {
      console.warn("SKIP attack 3: no private mount namespace here (unshare -m needs root or user namespaces)");
      t.skip("no private mount namespace (unshare -m)");
      return;
    }
    const got = await runChild({ action: "fill", clusterId: String(freshClusterId()) }, wrapper);
    assert.equal(got.signal, null, `the child died of ${got.signal}: ${got.stderr.slice(-400)}`);
    assert.ok(got.message, `no answer from the child: ${got.stderr.slice(-400)}`);
    assert.equal(got.message.status, LLMStatusCode.LLM_DEVICE_OUT_OF_MEMORY, String(got.message.message));
  });

  test("attack 2: truncating a pool cannot kill a DECODER (sealed memory; before: SIGBUS)", async () => {
    const got = await runChild({ action: "truncate", clusterId: String(freshClusterId()) });
    assert.equal(got.signal, null, `the child died of ${got.signal}: ${got.stderr.slice(-400)}`);
    assert.ok(got.message, `no answer from the child: ${got.stderr.slice(-400)}`);
    assert.equal(got.message.linked, LLMStatusCode.LLM_SUCCESS);
    assert.equal(got.message.truncated, 0, `${got.message.truncated} of ${got.message.tried} pools truncated`);
    assert.equal(got.message.pulled, LLMStatusCode.LLM_SUCCESS);
    assert.equal(got.message.first, 0x42);
  });
});
