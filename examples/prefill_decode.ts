/**
 * The main job (`npm start`): prefill → decode across two processes on the
 * host backend. This process is the DECODER; it starts a PROMPT in a second
 * process (this same file with the argument `{"role":"prompt"}`). The PROMPT fills one
 * cache per request and names each by a CacheKey; the DECODER links to it,
 * pulls each request's row straight out of the PROMPT's shared-memory pool,
 * checks it with getCacheTensors, and prints the size, time and bandwidth of
 * every pull.
 *
 *   deno run --allow-ffi --allow-env --allow-read --allow-run examples/prefill_decode.ts
 *   bun examples/prefill_decode.ts
 *   node --import ./test/support/register.mjs examples/prefill_decode.ts
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  CacheDesc,
  CacheKey,
  DataType,
  type KvCache,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
  Placement,
} from "../mod.ts";
import { startChild } from "../test/support/children.ts";

const PROMPT_CLUSTER = 0x5EEDn;
const DECODER_CLUSTER = 0xDEC0DEn;
// One request per size: the bytes of its K (and of its V) row.
const REQUESTS = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20].map((bytes, i) => ({ reqId: i + 1, bytes }));
const POOL = String(2 * REQUESTS.reduce((sum, r) => sum + r.bytes, 0) + (16 << 20));

/** Byte i of tensor t of request r: what the PROMPT writes and the DECODER expects. */
const expected = (r: number, t: number, i: number) => (r * 37 + t * 101 + i * 7 + (i >>> 12)) & 0xFF;

function descOf(bytes: number): CacheDesc {
  return new CacheDesc(2, [1, bytes / 2], DataType.DT_FLOAT16, Placement.DEVICE); // K and V, batch 1
}

const argument = process.argv.at(-1) ?? "";
if (argument.startsWith("{") && JSON.parse(argument).role === "prompt") {
  // ---- the PROMPT process ----
  const prompt = new LLMDataDist(LLMRole.PROMPT, PROMPT_CLUSTER);
  await prompt.init({ "llm.listenIpInfo": "127.0.0.1:0", "ge.flowGraphMemMaxSize": POOL });
  // The handles are kept: a cache's memory returns to the pool only once its id
  // is deallocated too, not just when its key is consumed by a pull.
  const caches: KvCache[] = [];
  for (const { reqId, bytes } of REQUESTS) {
    const cache = await prompt.kvCacheManager.allocateCache(descOf(bytes), [new CacheKey(PROMPT_CLUSTER, reqId)]);
    caches.push(cache);
    for (let t = 0; t < 2; t++) {
      const view = prompt.kvCacheManager.getCacheTensorViews(cache, t)[0].data;
      const out = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      for (let i = 0; i < out.length; i++) out[i] = expected(reqId, t, i);
    }
  }
  console.log(JSON.stringify({ port: prompt.listenPort }));
  process.stdin.resume();
  process.stdin.on("end", async () => {
    for (const cache of caches) await prompt.kvCacheManager.deallocateCache(cache);
    prompt.finalize();
    process.exit(0);
  });
} else {
  // ---- the DECODER process ----
  const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
  console.log(`prefill → decode on ${runtime}: starting a PROMPT process…`);
  const child = startChild(fileURLToPath(import.meta.url), { role: "prompt" });
  try {
    const { port } = await child.next() as { port: number };
    await using decoder = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER);
    await decoder.init({ "ge.flowGraphMemMaxSize": POOL, "llm.SyncKvCacheWaitTime": "10000" });
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = PROMPT_CLUSTER;
    cluster.remoteRoleType = LLMRole.PROMPT;
    cluster.appendRemoteIpInfo("127.0.0.1", port);
    let start = performance.now();
    const [status] = await decoder.linkClusters([cluster], 3000);
    if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: 0x${status.toString(16)}`);
    console.log(
      `linked to PROMPT cluster ${PROMPT_CLUSTER} at 127.0.0.1:${port} in ${(performance.now() - start).toFixed(2)} ms`,
    );
    const manager = decoder.kvCacheManager;
    console.log("request  bytes/tensor  pull time     GB/s   verified");
    for (const { reqId, bytes } of REQUESTS) {
      const cache = await manager.allocateCache(descOf(bytes));
      start = performance.now();
      await manager.pullCache(new CacheKey(PROMPT_CLUSTER, reqId), cache, 0);
      const seconds = (performance.now() - start) / 1000;
      let ok = true;
      for (let t = 0; t < 2; t++) {
        const [tensor] = await manager.getCacheTensors(cache, t);
        const got = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.byteLength);
        for (let i = 0; i < got.length && ok; i += 97) ok = got[i] === expected(reqId, t, i);
      }
      console.log(
        `${String(reqId).padStart(7)}  ${String(bytes).padStart(12)}  ${(seconds * 1000).toFixed(3).padStart(9)} ms` +
          `  ${(2 * bytes / seconds / 1e9).toFixed(2).padStart(6)}   ${ok ? "yes" : "NO"}`,
      );
      if (!ok) process.exitCode = 1;
      await manager.deallocateCache(cache);
    }
    const again = await manager.allocateCache(descOf(REQUESTS[0].bytes));
    await manager.pullCache(new CacheKey(PROMPT_CLUSTER, 1n), again).catch((err) =>
      console.log(`pulling request 1 again → ${err.message} (its key was consumed)`)
    );
    await decoder.unlinkClusters([cluster], 3000);
  } finally {
    await child.stop();
  }
}
