// Test-only (test/sim/run.sh, V2): the cache manager over the simulated toolkit —
// memory the program owns registered with RegisterKvCache, blocks copied and
// swapped between HOST and DEVICE through the adapter's ACL copies, the role
// switched with SetRole — checked byte for byte.
import { CacheDesc, DataType, LLMDataDist, LLMRole, Placement } from "../../../../mod.ts";

const dd = new LLMDataDist(LLMRole.DECODER, 3n, { backend: "cann" });
await dd.init({ "llm.EnableCacheManager": "1", "llm.MemPoolConfig": '{"memory_size": 1048576}' });
const m = dd.cacheManager;
const host = new Uint8Array(4 * 64); // 4 blocks of 64 bytes
host.fill(5, 0, 64);
const registered = await m.registerBlocksCache(new CacheDesc(1, [4, 64], DataType.DT_UINT8, Placement.HOST), [host]);
await m.copyBlocks(registered, { 0: [1] });
if (host[64] !== 5 || host[127] !== 5) throw new Error("copyBlocks on registered host memory");
const device = await m.allocateBlocksCache(new CacheDesc(1, [8, 64], DataType.DT_UINT8));
await m.swapBlocks(registered, device, { 1: 6 }); // swap in
host.fill(0);
await m.swapBlocks(device, registered, { 6: 3 }); // swap out
if (host[3 * 64] !== 5 || host[3 * 64 + 63] !== 5 || host[0] !== 0) throw new Error("swapBlocks");
const [tensor] = await m.getCacheTensors(device);
if (tensor.data[6 * 64] !== 5) throw new Error("getCacheTensors of the device blocks");
await dd.switchRole(LLMRole.PROMPT);
await m.unregisterCache(registered.cacheId);
await m.deallocateBlocksCache(device);
dd.finalize();
console.log("cache manager over the simulated toolkit: register, copyBlocks, swapBlocks, switchRole, unregister: ok");
