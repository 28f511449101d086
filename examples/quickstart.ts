/**
 * The main example (`npm start`): a PROMPT instance on the embedded host
 * backend with two devices allocates a KV cache, writes it in place through
 * views, reads it back with getCacheTensors, and prints values and timings.
 *
 * Runs as it is on every runtime:
 *   deno run --allow-ffi --allow-env --allow-read examples/quickstart.ts
 *   bun examples/quickstart.ts
 *   node --import ./test/support/register.mjs examples/quickstart.ts   (what `npm start` does)
 */
import { CacheDesc, DataType, LLMConfig, LLMDataDist, LLMException, LLMRole, Placement } from "../mod.ts";

const runtime = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "Node";
const ms = (start: number) => `${(performance.now() - start).toFixed(3)} ms`;

// 1. An instance with two devices; each device is a host-memory pool of 256 MiB.
const config = new LLMConfig();
config.deviceId = [0, 1];
config.syncKvTimeout = 1000;
config.geOptions = { "ge.flowGraphMemMaxSize": String(256 << 20) };
await using dd = new LLMDataDist(LLMRole.PROMPT, 1n);
await dd.init(config.generateOptions());
const manager = dd.kvCacheManager;
console.log(`llm-datadist quick start on ${runtime}, options ${JSON.stringify(config.generateOptions())}`);

// 2. A cache for one layer: a K and a V tensor of [batch 4, seq 16, hidden 8] FP32.
const desc = new CacheDesc(2, [4, 16, 8], DataType.DT_FLOAT, Placement.HOST);
await using cache = await manager.allocateCache(desc);
console.log(`allocated ${cache} — ${desc.size} bytes per tensor, id ${cache.cacheId}`);

// 3. Write in place through zero-copy views: K = 1000·device + position, V = -K.
for (const [index, sign] of [[0, 1], [1, -1]]) {
  for (const view of manager.getCacheTensorViews(cache, index)) {
    const data = view.data as Float32Array;
    for (let i = 0; i < data.length; i++) data[i] = sign * (1000 * view.deviceId + i);
  }
}

// 4. Read tensor 0 (K) and 1 (V): one host copy per device, in device order.
let start = performance.now();
const keys = await manager.getCacheTensors(cache, 0);
console.log(`getCacheTensors(cache, 0) took ${ms(start)}`);
const values = await manager.getCacheTensors(cache, 1);
for (const [name, tensors] of [["K", keys], ["V", values]] as const) {
  for (const t of tensors) {
    const first = [...(t.data as Float32Array).subarray(0, 4)].join(", ");
    console.log(`  ${name} on device ${t.deviceId}: ${t} = [${first}, …]`);
  }
}

// 5. Many concurrent callers are served one at a time, and none sees another's result.
start = performance.now();
const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => manager.getCacheTensors(cache, i % 2)));
const mixedUp = results.filter((tensors, i) => (tensors[1].data[5] as number) !== (i % 2 ? -1005 : 1005)).length;
console.log(`1000 concurrent getCacheTensors calls: ${ms(start)}, results mixed up: ${mixedUp}`);

// 6. A 64 MiB tensor: the copy runs off the JavaScript thread.
await using big = await manager.allocateCache(new CacheDesc(1, [16 << 20], DataType.DT_FLOAT));
(manager.getCacheTensorViews(big, 0)[0].data as Float32Array).fill(0.5);
let ticks = 0;
const timer = setInterval(() => ticks++, 1);
start = performance.now();
const [bigCopy] = await manager.getCacheTensors(big, 0);
const seconds = (performance.now() - start) / 1000;
clearInterval(timer);
console.log(
  `64 MiB tensor on 2 devices: ${(seconds * 1000).toFixed(1)} ms, ${
    (2 * bigCopy.byteLength / seconds / 1e9).toFixed(2)
  } GB/s,` +
    ` the event loop ticked ${ticks} times meanwhile; value ${bigCopy.data[123456]}`,
);

// 7. Errors are typed, with upstream status codes.
try {
  await manager.getCacheTensors(cache, 2);
} catch (err) {
  if (err instanceof LLMException) {
    console.log(`getCacheTensors(cache, 2) → ${err.message} (0x${err.statusCode.toString(16)})`);
  }
}
try {
  await manager.getCacheTensors(big, 0, { signal: AbortSignal.timeout(0) });
} catch (err) {
  console.log(`aborted call → ${(err as Error).name}`);
}
console.log(
  "pool usage:",
  manager.poolUsage().map((p) => `device ${p.deviceId}: ${p.usedBytes} of ${p.capacityBytes} bytes`).join("; "),
);
