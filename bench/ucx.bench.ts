// Pulls and pushes over UCX (llmdd.transport=ucx, UCX_TLS=tcp on loopback)
// against a plain TCP socket transfer of the same bytes between the same two
// processes.
// Runs unchanged on Bun, Deno and Node:
//
//   ./node_modules/.bin/bun bench/ucx.bench.ts
//   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-run --allow-net=127.0.0.1 \
//       --allow-sys bench/ucx.bench.ts
//   node --import ./test/support/register.mjs bench/ucx.bench.ts
//
// Processes: this one is the DECODER (cache manager mode, llmdd.transport=ucx).
// Its child, this file with {"role":"prompt"} on the same runtime and with
// UCX_TLS=tcp, is the PROMPT (cache manager mode, 127.0.0.1) and also a TCP
// server on 127.0.0.1 (node:net, TCP_NODELAY): on a bulk connection it answers
// a 4-byte length n with n bytes of its 64 MiB cache (the data of the pulls),
// on a push connection it takes a 4-byte length n and n bytes, copies them
// into a cache of its own and answers one byte once all are in, on an echo
// connection it sends back every byte. Both engines enable remote access
// (llm.EnableRemoteCacheAccessible=1), so pushes into the PROMPT's pools are
// UCX writes (ucp_put_nbx, then a flush). The PROMPT's UCP worker
// offers TCP only, so every UCX read goes over TCP whatever UCX this process
// would pick (UCX_TLS is read from the environment when UCX loads; Bun does
// not pass a variable set at run time to native code).
//
// Measurements (one run, interleaved: A B, B A, ...; medians of single calls):
//   (a) 64 MiB: pullCache of one row of 64 MiB (1 tensor, DT_UINT8) against
//       the TCP transfer of 64 MiB into a preallocated buffer. Goal: >= 80 %
//       of its bandwidth.
//   (b) 1024 × 16 KiB: pullBlocks of 1024 blocks of 16 KiB, in an order that
//       never puts two neighbours next to each other (dst = 7 × src mod 1024),
//       so no two reads merge: 1024 reads. Against the TCP transfer of 16 MiB.
//       Goal: >= 80 %.
//   (c) pushes: pushBlocks of one 64 MiB block, and of 1024 blocks of 16 KiB
//       (the same unmergeable order: 1024 writes), into blocks caches of the
//       PROMPT, against the TCP transfer of 64 MiB and 16 MiB the other way
//       (this process sends, the PROMPT copies and acknowledges). Goal, as for
//       pulls: >= 80 %.
//   (d) a 4 KiB pull (LOOKUP, one read, DONE) against a 64-byte round trip on
//       the echo connection. Goal: <= 2×. Context: the same pull over shared
//       memory (a second DECODER with llmdd.transport=shm), to show what the
//       UCX read adds.
//   Context, no goal: the 64 MiB and 4 KiB pulls out of registered memory of
//   the PROMPT (registerCache), whose keys it maps per pin (UCX_KEYS: one
//   round trip and a ucp_mem_map more), against the same pulls from its pools.
// What the TCP side does is JavaScript's node:net on this runtime: a write of
// a Uint8Array view of the cache on the PROMPT's side, the chunks copied into
// the destination as they come on this side.

import { spawn } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  CacheKeyByIdAndIndex,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { runtimeCommand } from "../test/support/children.ts";
import { fillPattern, firstMismatch, patternByte } from "../test/support/pattern.ts";
import { bytesOf } from "./support/bytes.ts";
import { gbps, ratio, yes } from "./support/format.ts";
import { time, timedLoop } from "./support/loop.ts";
import { cpuName, loadAverage, platformName, runtimeName } from "./support/machine.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BIG = 64 * MiB;
const BLOCK = 16 * KiB;
const BLOCKS = 1024;
const SMALL = 4 * KiB;
const ECHO_BYTES = 64;
const BANDWIDTH_GOAL = 0.8;
const RTT_GOAL = 2;
const POOL_BYTES = 2 * BIG + 2 * BLOCK * BLOCKS + 16 * MiB;
const DECODER_POOL_BYTES = 3 * BIG + BLOCK * BLOCKS + 16 * MiB; // and a 64 MiB check of the push
const SYNC_KV_TIMEOUT_MS = 60_000;
const PROMPT_CLUSTER = 0xC3_0000_0000n + BigInt(process.pid);
const DECODER_CLUSTER = 0xC4_0000_0000n + BigInt(process.pid);
const SCALE = Number(process.env.BENCH_SCALE ?? 1); // fewer rounds for a quick look
const PLAN = {
  big: { warmup: 3, iterations: Math.ceil(30 * SCALE) },
  blocks: { warmup: 5, iterations: Math.ceil(60 * SCALE) },
  pushBig: { warmup: 3, iterations: Math.ceil(30 * SCALE) },
  pushBlocks: { warmup: 5, iterations: Math.ceil(60 * SCALE) },
  small: { warmup: 200, iterations: Math.ceil(2000 * SCALE) },
};

// deno-lint-ignore no-explicit-any
const g = globalThis as unknown as Record<string, any>;

/** Each function's median time (ns), from bench/support/loop.ts's interleaved loop. */
async function medians(fns: Record<string, () => Promise<unknown>>, warmup: number, iterations: number) {
  const stats = await timedLoop(fns, warmup, iterations);
  return Object.fromEntries(Object.entries(stats).map(([name, s]) => [name, s.median]));
}

// ---------------------------------------------------------------- the PROMPT child

const ACK = new Uint8Array([1]);

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

const kept: Cache[] = [];

async function servePrompt(): Promise<void> {
  const prompt = new LLMDataDist(LLMRole.PROMPT, PROMPT_CLUSTER_OF_PARENT());
  await prompt.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: POOL_BYTES }),
    "llm.listenIpInfo": "127.0.0.1:0",
    "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT_MS),
    "llm.EnableRemoteCacheAccessible": "1",
  });
  const m = prompt.cacheManager;
  const big = await m.allocateCache(new CacheDesc(1, [1, BIG], DataType.DT_UINT8));
  const blocks = await m.allocateBlocksCache(
    new CacheDesc(1, [BLOCKS, BLOCK], DataType.DT_UINT8),
    new BlocksCacheKey(prompt.clusterId, 0),
  );
  const small = await m.allocateCache(new CacheDesc(1, [1, SMALL], DataType.DT_UINT8));
  // Where the pushes go (BlocksCacheKey model 1 and 2).
  const bigIn = await m.allocateBlocksCache(
    new CacheDesc(1, [1, BIG], DataType.DT_UINT8),
    new BlocksCacheKey(prompt.clusterId, 1),
  );
  const blocksIn = await m.allocateBlocksCache(
    new CacheDesc(1, [BLOCKS, BLOCK], DataType.DT_UINT8),
    new BlocksCacheKey(prompt.clusterId, 2),
  );
  kept.push(big, blocks, small, bigIn, blocksIn); // referenced until the end (no garbage-collection warning)
  const view = (c: Cache) => bytesOf(m.getCacheTensorViews(c, 0)[0].data);
  fillPattern(view(big), 1, 0, 0);
  fillPattern(view(blocks), 2, 0, 0);
  fillPattern(view(small), 3, 0, 0);
  // Registered memory (registerCache) of the same bytes: pulled over UCX
  // with keys the PROMPT maps per pin (UCX_KEYS), a round trip more.
  const regBig = view(big).slice();
  const regSmall = view(small).slice();
  const registered = await m.registerCache(new CacheDesc(1, [1, BIG], DataType.DT_UINT8), [regBig]);
  const registeredSmall = await m.registerCache(new CacheDesc(1, [1, SMALL], DataType.DT_UINT8), [regSmall]);
  kept.push(registered, registeredSmall);
  const data = view(big);
  const landing = view(bigIn); // where the TCP pushes' bytes are copied
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    let mode: "unknown" | "echo" | "bulk" | "push" = "unknown";
    let pending: Uint8Array = new Uint8Array(0);
    let want = -1, got = 0; // push: the length (-1: not read yet), bytes in
    socket.on("data", (chunk: Uint8Array) => {
      if (mode === "unknown") {
        mode = chunk[0] === 0x45 ? "echo" : chunk[0] === 0x50 ? "push" : "bulk"; // 'E', 'P' or 'B'
        chunk = chunk.subarray(1);
      }
      if (mode === "echo") {
        if (chunk.length > 0) socket.write(chunk);
        return;
      }
      if (mode === "push") {
        while (chunk.length > 0) {
          if (want < 0) {
            // The client writes the 4-byte length and the data in separate writes.
            pending = concat(pending, chunk);
            if (pending.length < 4) return;
            want = new DataView(pending.buffer, pending.byteOffset, 4).getUint32(0, true);
            chunk = pending.subarray(4);
            pending = new Uint8Array(0);
            got = 0;
          }
          const n = Math.min(chunk.length, want - got);
          landing.set(chunk.subarray(0, n), got);
          got += n;
          chunk = chunk.subarray(n);
          if (got === want) {
            want = -1;
            socket.write(ACK);
          }
        }
        return;
      }
      const joined = new Uint8Array(pending.length + chunk.length);
      joined.set(pending);
      joined.set(chunk, pending.length);
      let at = 0;
      while (joined.length - at >= 4) {
        const n = new DataView(joined.buffer, joined.byteOffset + at, 4).getUint32(0, true);
        socket.write(data.subarray(0, n));
        at += 4;
      }
      pending = joined.slice(at);
    });
    socket.on("error", () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  console.log(JSON.stringify({
    ready: true,
    port: prompt.listenPort,
    tcpPort: address.port,
    pid: process.pid,
    big: String(big.cacheId),
    small: String(small.cacheId),
    registered: String(registered.cacheId),
    registeredSmall: String(registeredSmall.cacheId),
  }));
  process.stdin.resume();
  process.stdin.on("end", () => {
    server.close();
    prompt.finalize();
    process.exit(0);
  });
}

function PROMPT_CLUSTER_OF_PARENT(): bigint {
  return BigInt(JSON.parse(process.argv[process.argv.length - 1]).cluster);
}

function startPrompt(): { ready: Promise<Record<string, string | number>>; stop(): Promise<void> } {
  const script = fileURLToPath(import.meta.url);
  const { command, args } = runtimeCommand(script);
  if (g.Deno) args.splice(args.indexOf("run") + 1, 0, "--allow-net=127.0.0.1");
  const child = spawn(command, [...args, JSON.stringify({ role: "prompt", cluster: String(PROMPT_CLUSTER) })], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, UCX_TLS: process.env.UCX_TLS ?? "tcp" },
  });
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const ready = new Promise<Record<string, string | number>>((resolve, reject) => {
    let buffered = "";
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      buffered += chunk;
      const line = buffered.split("\n").find((l) => l.trim().startsWith("{"));
      if (line !== undefined && buffered.includes("\n")) resolve(JSON.parse(line));
    });
    exited.then(() => reject(new Error("the PROMPT child exited before it was ready")));
  });
  return {
    ready,
    async stop() {
      child.stdin!.end();
      await exited;
    },
  };
}

// ---------------------------------------------------------------- TCP clients

async function open(port: number, mode: "E" | "B" | "P"): Promise<Socket> {
  const socket = connect({ host: "127.0.0.1", port });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.setNoDelay(true);
  socket.write(new TextEncoder().encode(mode));
  return socket;
}

/** `fetch(n)`: asks for n bytes and copies them into `into` as they come. */
async function bulkClient(port: number, into: Uint8Array) {
  const socket = await open(port, "B");
  let want = 0, got = 0;
  let done: (() => void) | undefined;
  socket.on("data", (chunk: Uint8Array) => {
    into.set(chunk, got);
    got += chunk.length;
    if (got >= want && done) {
      const d = done;
      done = undefined;
      d();
    }
  });
  return {
    fetch(n: number) {
      want = n;
      got = 0;
      const request = new Uint8Array(4);
      new DataView(request.buffer).setUint32(0, n, true);
      return new Promise<void>((resolve) => {
        done = resolve;
        socket.write(request);
      });
    },
    close: () => socket.destroy(),
  };
}

/** `send(n)`: sends n bytes of `from` and waits for the PROMPT's acknowledgement that all are in. */
async function pushClient(port: number, from: Uint8Array) {
  const socket = await open(port, "P");
  let done: (() => void) | undefined;
  socket.on("data", () => {
    const d = done;
    done = undefined;
    d?.();
  });
  return {
    send(n: number) {
      const header = new Uint8Array(4);
      new DataView(header.buffer).setUint32(0, n, true);
      return new Promise<void>((resolve) => {
        done = resolve;
        socket.write(header);
        socket.write(from.subarray(0, n));
      });
    },
    close: () => socket.destroy(),
  };
}

async function echoClient(port: number) {
  const socket = await open(port, "E");
  const payload = new Uint8Array(ECHO_BYTES).fill(0x42);
  let received = 0;
  let done: (() => void) | undefined;
  socket.on("data", (chunk: Uint8Array) => {
    received += chunk.length;
    if (received >= ECHO_BYTES && done) {
      received -= ECHO_BYTES;
      const d = done;
      done = undefined;
      d();
    }
  });
  return {
    roundTrip: () =>
      new Promise<void>((resolve) => {
        done = resolve;
        socket.write(payload);
      }),
    close: () => socket.destroy(),
  };
}

// ---------------------------------------------------------------- the DECODER

async function main(): Promise<void> {
  const child = startPrompt();
  const ready = await child.ready;
  const decoder = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER);
  await decoder.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: DECODER_POOL_BYTES }),
    "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT_MS),
    "llm.EnableRemoteCacheAccessible": "1",
    "llmdd.transport": "ucx",
  });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = PROMPT_CLUSTER;
  cluster.appendRemoteIpInfo("127.0.0.1", Number(ready.port));
  const [status] = await decoder.linkClusters([cluster], 10_000);
  if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: ${status}`);
  const m = decoder.cacheManager;
  const big = await m.allocateCache(new CacheDesc(1, [1, BIG], DataType.DT_UINT8));
  const blocks = await m.allocateBlocksCache(new CacheDesc(1, [BLOCKS, BLOCK], DataType.DT_UINT8));
  const small = await m.allocateCache(new CacheDesc(1, [1, SMALL], DataType.DT_UINT8));
  const bigOut = await m.allocateBlocksCache(new CacheDesc(1, [1, BIG], DataType.DT_UINT8));
  const view = (c: Cache) => bytesOf(m.getCacheTensorViews(c, 0)[0].data);
  fillPattern(view(bigOut), 4, 0, 0);
  const src = Array.from({ length: BLOCKS }, (_, i) => i);
  const dst = src.map((i) => (7 * i) % BLOCKS);
  const bigKey = new CacheKeyByIdAndIndex(PROMPT_CLUSTER, BigInt(ready.big), 0);
  const smallKey = new CacheKeyByIdAndIndex(PROMPT_CLUSTER, BigInt(ready.small), 0);
  const regKey = new CacheKeyByIdAndIndex(PROMPT_CLUSTER, BigInt(ready.registered), 0);
  const regSmallKey = new CacheKeyByIdAndIndex(PROMPT_CLUSTER, BigInt(ready.registeredSmall), 0);
  const blocksKey = new BlocksCacheKey(PROMPT_CLUSTER, 0);
  const bigInKey = new BlocksCacheKey(PROMPT_CLUSTER, 1);
  const blocksInKey = new BlocksCacheKey(PROMPT_CLUSTER, 2);
  const one = { tensorNumPerLayer: 1 }; // the caches have one tensor (the default, 2, would push nothing)
  // Context: the same 4 KiB pull over shared memory (a second DECODER,
  // llmdd.transport=shm): the LOOKUP round trip and the copy without UCX.
  const shmDecoder = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER + 1n);
  await shmDecoder.init({
    "llm.EnableCacheManager": "1",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: 1 * MiB }),
    "llm.SyncKvCacheWaitTime": String(SYNC_KV_TIMEOUT_MS),
    "llmdd.transport": "shm",
  });
  if ((await shmDecoder.linkClusters([cluster], 10_000))[0] !== LLMStatusCode.LLM_SUCCESS) throw new Error("shm link");
  const shmSmall = await shmDecoder.cacheManager.allocateCache(new CacheDesc(1, [1, SMALL], DataType.DT_UINT8));
  const sink = new Uint8Array(BIG);
  const bulk = await bulkClient(Number(ready.tcpPort), sink);
  const echo = await echoClient(Number(ready.tcpPort));
  const pushSocket = await pushClient(Number(ready.tcpPort), view(bigOut));

  // Verified before timing: every byte the pulls and the TCP transfer move.
  await m.pullCache(bigKey, big, 0);
  if (firstMismatch(view(big), 0, BIG, 1, 0, 0, 0) !== -1) throw new Error("the 64 MiB pull is wrong");
  await m.pullBlocks(blocksKey, blocks, src, dst);
  const got = view(blocks);
  for (const i of src) {
    for (const at of [0, BLOCK - 1]) {
      if (got[dst[i] * BLOCK + at] !== patternByte(2, 0, 0, i * BLOCK + at)) throw new Error(`block ${i} is wrong`);
    }
  }
  view(big).fill(0);
  await m.pullCache(regKey, big, 0);
  if (firstMismatch(view(big), 0, BIG, 1, 0, 0, 0) !== -1) throw new Error("the registered 64 MiB pull is wrong");
  await m.pullCache(regSmallKey, small, 0);
  if (firstMismatch(view(small), 0, SMALL, 3, 0, 0, 0) !== -1) throw new Error("the registered 4 KiB pull is wrong");
  view(small).fill(0);
  await m.pullCache(smallKey, small, 0);
  if (firstMismatch(view(small), 0, SMALL, 3, 0, 0, 0) !== -1) throw new Error("the 4 KiB pull is wrong");
  await bulk.fetch(BIG);
  if (firstMismatch(sink, 0, BIG, 1, 0, 0, 0) !== -1) throw new Error("the TCP transfer is wrong");
  // The pushes, read back with pulls (into the 64 MiB pull's destination).
  await m.pushBlocks(bigInKey, bigOut, [0], [0], one);
  const check = await m.allocateBlocksCache(new CacheDesc(1, [1, BIG], DataType.DT_UINT8));
  await m.pullBlocks(bigInKey, check, [0], [0], one);
  if (firstMismatch(view(check), 0, BIG, 4, 0, 0, 0) !== -1) throw new Error("the 64 MiB push is wrong");
  await m.deallocateBlocksCache(check);
  const before = view(blocks).slice();
  await m.pushBlocks(blocksInKey, blocks, src, dst, one);
  view(blocks).fill(0);
  await m.pullBlocks(blocksInKey, blocks, dst, src, one); // back where each block came from
  if (view(blocks).some((b, i) => b !== before[i])) throw new Error("the 1024-block push is wrong");
  await pushSocket.send(BIG);

  console.log("# UCX pulls and pushes against plain TCP between the same two processes");
  console.log(`runtime:        ${runtimeName()} on ${platformName()}`);
  console.log(`cpu:            ${cpuName()}`);
  console.log(`load average:   ${loadAverage()} (at start)`);
  console.log(
    `processes:      DECODER = this one (pid ${process.pid}); PROMPT + TCP server = child pid ${ready.pid} ` +
      `(this file, {"role":"prompt"}), UCX_TLS=${process.env.UCX_TLS ?? "tcp"} in the child`,
  );
  const big64 = await medians(
    {
      "UCX pullCache 64 MiB": () => m.pullCache(bigKey, big, 0),
      "TCP 64 MiB": () => bulk.fetch(BIG),
      "UCX pullCache 64 MiB registered": () => m.pullCache(regKey, big, 0),
    },
    PLAN.big.warmup,
    PLAN.big.iterations,
  );
  const blk = await medians(
    {
      "UCX pullBlocks 1024 × 16 KiB": () => m.pullBlocks(blocksKey, blocks, src, dst),
      "TCP 16 MiB": () => bulk.fetch(BLOCK * BLOCKS),
    },
    PLAN.blocks.warmup,
    PLAN.blocks.iterations,
  );
  const pushBig = await medians(
    {
      "UCX pushBlocks 64 MiB": () => m.pushBlocks(bigInKey, bigOut, [0], [0], one),
      "TCP 64 MiB out": () => pushSocket.send(BIG),
    },
    PLAN.pushBig.warmup,
    PLAN.pushBig.iterations,
  );
  const pushBlk = await medians(
    {
      "UCX pushBlocks 1024 × 16 KiB": () => m.pushBlocks(blocksInKey, blocks, src, dst, one),
      "TCP 16 MiB out": () => pushSocket.send(BLOCK * BLOCKS),
    },
    PLAN.pushBlocks.warmup,
    PLAN.pushBlocks.iterations,
  );
  const lat = await medians(
    {
      "UCX pullCache 4 KiB": () => m.pullCache(smallKey, small, 0),
      "TCP round trip 64 B": () => echo.roundTrip(),
      "shm pullCache 4 KiB": () => shmDecoder.cacheManager.pullCache(smallKey, shmSmall, 0),
      "UCX pullCache 4 KiB registered": () => m.pullCache(regSmallKey, small, 0),
    },
    PLAN.small.warmup,
    PLAN.small.iterations,
  );
  console.log(`load average:   ${loadAverage()} (at end)`);
  console.log("");
  console.log("| measurement | UCX | TCP baseline | UCX / TCP | goal | met |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  const row = (name: string, ucx: number, tcp: number, bytes: number) => {
    const share = tcp / ucx; // bandwidth ratio
    console.log(
      `| ${name} | ${time(ucx)} (${gbps(bytes, ucx)}) | ${time(tcp)} (${gbps(bytes, tcp)}) | ${
        (100 * share).toFixed(0)
      } % ` +
        `of TCP's bandwidth | >= ${100 * BANDWIDTH_GOAL} % | ${yes(share >= BANDWIDTH_GOAL)} |`,
    );
  };
  row("64 MiB, one row", big64["UCX pullCache 64 MiB"], big64["TCP 64 MiB"], BIG);
  row("1024 × 16 KiB blocks (1024 reads)", blk["UCX pullBlocks 1024 × 16 KiB"], blk["TCP 16 MiB"], BLOCK * BLOCKS);
  row("push: 64 MiB, one block", pushBig["UCX pushBlocks 64 MiB"], pushBig["TCP 64 MiB out"], BIG);
  row(
    "push: 1024 × 16 KiB blocks (1024 writes)",
    pushBlk["UCX pushBlocks 1024 × 16 KiB"],
    pushBlk["TCP 16 MiB out"],
    BLOCK * BLOCKS,
  );
  const r = lat["UCX pullCache 4 KiB"] / lat["TCP round trip 64 B"];
  console.log(
    `| 4 KiB pull vs 64 B round trip | ${time(lat["UCX pullCache 4 KiB"])} | ${time(lat["TCP round trip 64 B"])} | ` +
      `${ratio(r)} | <= ${RTT_GOAL}× | ${yes(r <= RTT_GOAL)} |`,
  );
  console.log(
    `| context: 4 KiB pull over shared memory | ${time(lat["shm pullCache 4 KiB"])} | | ` +
      `${ratio(lat["shm pullCache 4 KiB"] / lat["TCP round trip 64 B"])} of the round trip | | |`,
  );
  console.log(
    `| context: registered memory (keys per pin), 64 MiB / 4 KiB | ` +
      `${time(big64["UCX pullCache 64 MiB registered"])} / ${time(lat["UCX pullCache 4 KiB registered"])} | | ` +
      `${ratio(big64["UCX pullCache 64 MiB registered"] / big64["UCX pullCache 64 MiB"])} / ` +
      `${ratio(lat["UCX pullCache 4 KiB registered"] / lat["UCX pullCache 4 KiB"])} of the pools' | | |`,
  );
  console.log(
    `\nrounds: 64 MiB ${PLAN.big.iterations}, blocks ${PLAN.blocks.iterations}, pushes ${PLAN.pushBig.iterations} ` +
      `and ${PLAN.pushBlocks.iterations}, 4 KiB ${PLAN.small.iterations} ` +
      "(after warm-up); medians of single calls, the two sides interleaved",
  );
  bulk.close();
  echo.close();
  pushSocket.close();
  await m.deallocateCache(big);
  await m.deallocateBlocksCache(blocks);
  await m.deallocateCache(small);
  await m.deallocateBlocksCache(bigOut);
  await shmDecoder.cacheManager.deallocateCache(shmSmall);
  shmDecoder.finalize();
  decoder.finalize();
  await child.stop();
}

const arg = process.argv[process.argv.length - 1];
if (arg.startsWith("{") && JSON.parse(arg).role === "prompt") await servePrompt();
else await main();
