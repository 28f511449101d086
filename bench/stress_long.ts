/**
 * The long reliability run (issue 5): 10⁵ allocate/read/free cycles with
 * resident memory sampled, then a long stress across a PROMPT and a DECODER,
 * on whichever runtime runs it:
 *
 *   ./node_modules/.bin/bun bench/stress_long.ts
 *   ./node_modules/.bin/deno run --allow-ffi --allow-env --allow-read --allow-sys --v8-flags=--expose-gc bench/stress_long.ts
 *   node --expose-gc --import ./test/support/register.mjs bench/stress_long.ts
 *
 * Optional argument: the number of cycles (default 100000).
 */
import process from "node:process";
import { CacheDesc, DataType, LLMClusterInfo, LLMDataDist, LLMRole, LLMStatusCode } from "../mod.ts";
import { runStress } from "../test/support/stress.ts";

const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
const cycles = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 100_000);
const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function collectGarbage(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun) g.Bun.gc(true);
  else g.gc?.();
}

console.log(`# reliability long run on ${runtime} ${process.versions.bun ?? process.versions.deno ?? process.version}`);

// 1. Leaks: allocate, write through a view, read back, free.
{
  const dd = new LLMDataDist(LLMRole.DECODER, BigInt(process.pid) << 21n);
  await dd.init({ "ge.flowGraphMemMaxSize": String(16 << 20) });
  const manager = dd.kvCacheManager;
  const desc = new CacheDesc(2, [4, 64], DataType.DT_FLOAT16);
  const samples: string[] = [];
  let wrong = 0;
  const start = performance.now();
  for (let i = 0; i < cycles; i++) {
    const cache = await manager.allocateCache(desc);
    (manager.getCacheTensorViews(cache, i & 1)[0].data as Uint16Array)[7] = i & 0xFFFF;
    const [tensor] = await manager.getCacheTensors(cache, i & 1);
    if (tensor.data[7] !== (i & 0xFFFF)) wrong++;
    await manager.deallocateCache(cache);
    // Turn the event loop now and then, as any program does (Node frees the
    // native side of collected views only on a later turn).
    if (i % 1000 === 999) await new Promise((resolve) => setTimeout(resolve, 0));
    if ((i + 1) % (cycles / 10) === 0) {
      collectGarbage();
      samples.push(mib(process.memoryUsage().rss));
    }
  }
  const used = manager.poolUsage()[0].usedBytes;
  dd.finalize();
  console.log(
    `leaks: ${cycles} cycles in ${((performance.now() - start) / 1000).toFixed(1)} s, wrong reads ${wrong}, ` +
      `pool bytes in use at the end ${used}, RSS MiB every 10 %: ${samples.join(" ")}`,
  );
}

// 2. Stress: concurrent workers across a PROMPT and a DECODER.
{
  const prompt = new LLMDataDist(LLMRole.PROMPT, (BigInt(process.pid) << 21n) + 1n);
  await prompt.init({ "llm.listenIpInfo": "127.0.0.1:0", "ge.flowGraphMemMaxSize": String(64 << 20) });
  const decoder = new LLMDataDist(LLMRole.DECODER, (BigInt(process.pid) << 21n) + 2n);
  await decoder.init({ "ge.flowGraphMemMaxSize": String(64 << 20), "llm.SyncKvCacheWaitTime": "10000" });
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = prompt.clusterId;
  cluster.appendRemoteIpInfo("127.0.0.1", prompt.listenPort);
  if ((await decoder.linkClusters([cluster]))[0] !== LLMStatusCode.LLM_SUCCESS) throw new Error("link failed");
  const before = process.memoryUsage().rss;
  const result = await runStress(prompt, decoder, {
    workers: 16,
    rounds: Math.max(10, Math.round(cycles / 500)),
    seed: 1,
  });
  await new Promise((resolve) => setTimeout(resolve, 200)); // pins released asynchronously
  const usage = [...prompt.kvCacheManager.poolUsage(), ...decoder.kvCacheManager.poolUsage()].map((p) => p.usedBytes);
  console.log(
    `stress: ${result.operations} operations by ${result.workers} workers in ${(result.ms / 1000).toFixed(1)} s, ` +
      `mismatches ${result.mismatches}, pool bytes in use at the end ${usage.join(", ")}, ` +
      `RSS ${mib(before)} → ${mib(process.memoryUsage().rss)} MiB`,
  );
  decoder.finalize();
  prompt.finalize();
}
