/**
 * Paged prefill → decode (`npm run paged`): the blocks (paged) form of
 * `npm start`, across two processes on the host backend, with the cache
 * manager (upstream's V2 API).
 *
 * This process is the DECODER; it starts a PROMPT in a second process (this
 * same file with the argument `{"role":"prompt"}`). The PROMPT allocates one
 * blocks cache named by a BlocksCacheKey (K and V of 4 layers, 64 blocks of
 * 16 tokens) and, for each of a few requests, takes blocks from its free list
 * and writes the request's tokens into them (its block table). The DECODER
 * allocates its own blocks cache (a different number of blocks), links, and
 * for each request takes free blocks of its own (other numbers than the
 * PROMPT's, as a real block table would), pulls the request's block list in
 * one `pullBlocks` call, verifies every byte of every pulled block, and gives
 * the blocks back to its free list. The last request is pulled again layer by
 * layer (`srcLayerRange` / `dstLayerRange`). Exits non-zero if any byte differs.
 *
 *   deno run --allow-ffi --allow-env --allow-read --allow-run examples/paged_prefill_decode.ts
 *   bun examples/paged_prefill_decode.ts
 *   node --import ./test/support/register.mjs examples/paged_prefill_decode.ts
 */
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  BlocksCacheKey,
  type Cache,
  CacheDesc,
  type CacheManager,
  DataType,
  LLMClusterInfo,
  LLMDataDist,
  LLMRole,
  LLMStatusCode,
} from "../mod.ts";
import { startChild } from "../test/support/children.ts";

const PROMPT_CLUSTER = 0xB10C5n;
const DECODER_CLUSTER = 0xDEC0DE5n;
const LAYERS = 4;
const TENSORS = 2 * LAYERS; // K and V of every layer
const BLOCK_TOKENS = 16;
const HEAD_BYTES = 128 * 2; // 128 FP16 values per token
const BLOCK_BYTES = BLOCK_TOKENS * HEAD_BYTES; // 4 KiB of one tensor
const PROMPT_BLOCKS = 64;
const DECODER_BLOCKS = 48;
// The requests the PROMPT prefilled: their prompt lengths in tokens.
const REQUESTS = [40, 300, 7, 129, 256].map((tokens, i) => ({ reqId: i + 1, tokens }));
const POOL = JSON.stringify({ memory_size: 2 * TENSORS * PROMPT_BLOCKS * BLOCK_BYTES + (1 << 20) });

function descOf(blocks: number): CacheDesc {
  return new CacheDesc(TENSORS, [blocks, BLOCK_TOKENS, HEAD_BYTES / 2], DataType.DT_FLOAT16);
}

/** Byte `j` of token `p` of request `r` in tensor `t`: what the PROMPT writes and the DECODER expects. */
const expected = (r: number, t: number, p: number, j: number) => (r * 131 + t * 31 + p * 7 + j * 3 + (j >>> 7)) & 0xFF;

/** The bytes of tensor `t` of `cache` (a zero-copy view: host backend). */
function tensorBytes(manager: CacheManager, cache: Cache, t: number): Uint8Array {
  const view = manager.getCacheTensorViews(cache, t)[0];
  return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
}

/** Writes request `r`'s `tokens` into `blocks` of every tensor (the rest of the last block: zeros). */
function writeRequest(manager: CacheManager, cache: Cache, r: number, tokens: number, blocks: number[]): void {
  for (let t = 0; t < TENSORS; t++) {
    const bytes = tensorBytes(manager, cache, t);
    blocks.forEach((block, n) => {
      for (let k = 0; k < BLOCK_TOKENS; k++) {
        const p = n * BLOCK_TOKENS + k, at = block * BLOCK_BYTES + k * HEAD_BYTES;
        for (let j = 0; j < HEAD_BYTES; j++) bytes[at + j] = p < tokens ? expected(r, t, p, j) : 0;
      }
    });
  }
}

/** The first wrong byte of request `r` in `blocks` of tensors [first, end), or undefined if all are right. */
function findWrong(
  manager: CacheManager,
  cache: Cache,
  r: number,
  tokens: number,
  blocks: number[],
  first = 0,
  end = TENSORS,
): string | undefined {
  for (let t = first; t < end; t++) {
    const bytes = tensorBytes(manager, cache, t);
    for (let n = 0; n < blocks.length; n++) {
      for (let k = 0; k < BLOCK_TOKENS; k++) {
        const p = n * BLOCK_TOKENS + k, at = blocks[n] * BLOCK_BYTES + k * HEAD_BYTES;
        for (let j = 0; j < HEAD_BYTES; j++) {
          const want = p < tokens ? expected(r, t, p, j) : 0;
          if (bytes[at + j] !== want) return `tensor ${t} block ${blocks[n]} byte ${k * HEAD_BYTES + j}`;
        }
      }
    }
  }
  return undefined;
}

const argument = process.argv.at(-1) ?? "";
if (argument.startsWith("{") && JSON.parse(argument).role === "prompt") {
  // ---- the PROMPT process ----
  const prompt = new LLMDataDist(LLMRole.PROMPT, PROMPT_CLUSTER);
  await prompt.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": POOL, "llm.listenIpInfo": "127.0.0.1:0" });
  const manager = prompt.cacheManager;
  const cache = await manager.allocateBlocksCache(descOf(PROMPT_BLOCKS), new BlocksCacheKey(PROMPT_CLUSTER));
  // The PROMPT's block table: blocks from its free list, in the order it has them.
  const free = Array.from({ length: PROMPT_BLOCKS }, (_, i) => (i * 37) % PROMPT_BLOCKS);
  const table = REQUESTS.map(({ reqId, tokens }) => {
    const blocks = free.splice(0, Math.ceil(tokens / BLOCK_TOKENS));
    writeRequest(manager, cache, reqId, tokens, blocks);
    return { reqId, tokens, blocks };
  });
  console.log(JSON.stringify({ port: prompt.listenPort, table }));
  process.stdin.resume();
  process.stdin.on("end", async () => {
    await manager.deallocateBlocksCache(cache);
    prompt.finalize();
    process.exit(0);
  });
} else {
  // ---- the DECODER process ----
  const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
  console.log(`paged prefill → decode on ${runtime}: starting a PROMPT process…`);
  const child = startChild(fileURLToPath(import.meta.url), { role: "prompt" });
  try {
    const { port, table } = await child.next() as {
      port: number;
      table: { reqId: number; tokens: number; blocks: number[] }[];
    };
    await using decoder = new LLMDataDist(LLMRole.DECODER, DECODER_CLUSTER);
    await decoder.init({
      "llm.EnableCacheManager": "1",
      "llm.MemPoolConfig": POOL,
      "llm.SyncKvCacheWaitTime": "10000",
    });
    const manager = decoder.cacheManager;
    const cache = await manager.allocateBlocksCache(descOf(DECODER_BLOCKS));
    const cluster = new LLMClusterInfo();
    cluster.remoteClusterId = PROMPT_CLUSTER;
    cluster.remoteRoleType = LLMRole.PROMPT;
    cluster.appendRemoteIpInfo("127.0.0.1", port);
    const [status] = await decoder.linkClusters([cluster], 3000);
    if (status !== LLMStatusCode.LLM_SUCCESS) throw new Error(`link failed: 0x${status.toString(16)}`);
    console.log(`linked to PROMPT cluster ${PROMPT_CLUSTER} at 127.0.0.1:${port}`);
    console.log(`${TENSORS} tensors (K, V of ${LAYERS} layers), blocks of ${BLOCK_TOKENS} tokens = ${BLOCK_BYTES} B`);
    const key = new BlocksCacheKey(PROMPT_CLUSTER);
    // The DECODER's own free list: highest blocks first, so the numbers differ from the PROMPT's.
    const free = Array.from({ length: DECODER_BLOCKS }, (_, i) => DECODER_BLOCKS - 1 - i);
    let verified = 0;
    console.log("request  tokens  blocks  PROMPT blocks → DECODER blocks      bytes    pull ms    GB/s  verified");
    for (const { reqId, tokens, blocks: src } of table) {
      const dst = free.splice(0, src.length);
      const start = performance.now();
      await manager.pullBlocks(key, cache, src, dst); // the whole block list in one call
      const seconds = (performance.now() - start) / 1000;
      const bytes = src.length * BLOCK_BYTES * TENSORS;
      const wrong = findWrong(manager, cache, reqId, tokens, dst);
      const mapping = `${src.slice(0, 3).join(",")}${src.length > 3 ? ",…" : ""} → ${dst.slice(0, 3).join(",")}${
        dst.length > 3 ? ",…" : ""
      }`;
      console.log(
        `${String(reqId).padStart(7)}  ${String(tokens).padStart(6)}  ${String(src.length).padStart(6)}  ` +
          `${mapping.padEnd(30)}  ${String(bytes).padStart(9)}  ${(seconds * 1000).toFixed(3).padStart(9)}  ` +
          `${(bytes / seconds / 1e9).toFixed(2).padStart(6)}  ${wrong === undefined ? "yes" : `NO (${wrong})`}`,
      );
      if (wrong === undefined) verified++;
      free.push(...dst); // the request is decoded: its blocks go back
    }

    // The last request once more, layer by layer, as a decoder overlapping
    // the transfer with its first layers' compute would.
    const last = table[table.length - 1];
    const dst = free.splice(0, last.blocks.length);
    let layerWrong: string | undefined;
    for (let layer = 0; layer < LAYERS && layerWrong === undefined; layer++) {
      const layers = { start: layer, stop: layer + 1 };
      await manager.pullBlocks(key, cache, last.blocks, dst, { srcLayerRange: layers, dstLayerRange: layers });
      layerWrong = findWrong(manager, cache, last.reqId, last.tokens, dst, 0, 2 * layer + 2);
    }
    console.log(
      `request ${last.reqId} again, layer by layer (${LAYERS} calls): ${
        layerWrong === undefined ? "verified" : `NOT verified (${layerWrong})`
      }`,
    );
    await decoder.unlinkClusters([cluster], 3000);
    await manager.deallocateBlocksCache(cache);
    if (verified === table.length && layerWrong === undefined) {
      console.log(`all ${table.length} requests verified, every byte of every block`);
    } else {
      console.log(`${table.length - verified} of ${table.length} requests differ`);
      process.exitCode = 1;
    }
  } finally {
    await child.stop();
  }
}
