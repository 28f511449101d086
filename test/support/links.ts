// What several test files do around a link: open a cache-manager DECODER, name
// a PROMPT on loopback, link to it (asserting success), and look at or check
// the bytes a pull or push moved, here or in a PROMPT child.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  type Cache,
  type KvCache,
  LLMClusterInfo,
  LLMDataDist,
  LLMException,
  LLMRole,
  LLMStatusCode,
} from "../../mod.ts";
import type { Child } from "./children.ts";
import { freshClusterId } from "../helpers.ts";
import { firstMismatch } from "./pattern.ts";

export const LOOPBACK = "127.0.0.1";

/** The cluster info of a PROMPT listening on `address:port`. */
export function clusterAt(clusterId: bigint, port: number, address = LOOPBACK): LLMClusterInfo {
  const cluster = new LLMClusterInfo();
  cluster.remoteClusterId = clusterId;
  cluster.remoteRoleType = LLMRole.PROMPT;
  cluster.appendRemoteIpInfo(address, port);
  return cluster;
}

/** Links `decoder` to the PROMPT at loopback `port`; fails the test if it cannot. */
export async function link(
  decoder: LLMDataDist,
  clusterId: bigint,
  port: number,
  timeoutMs = 10_000,
): Promise<LLMClusterInfo> {
  const cluster = clusterAt(clusterId, port);
  const [status, each] = await decoder.linkClusters([cluster], timeoutMs);
  assert.equal(status, LLMStatusCode.LLM_SUCCESS, `link failed: ${each}`);
  return cluster;
}

/** The bytes of tensor `tensor` of a KvCache on its `device`-th device, in place. */
export function kvBytes(dd: LLMDataDist, cache: KvCache, tensor: number, device: number): Uint8Array {
  const view = dd.kvCacheManager.getCacheTensorViews(cache, tensor)[device];
  return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
}

/** Row `dstRow` of every tensor holds `size` pattern bytes of source row `srcRow`; every other byte is 0. */
export function assertRow(
  dd: LLMDataDist,
  cache: KvCache,
  dstRow: number,
  seed: number,
  srcRow: number,
  size: number,
  deviceIds: number[],
): void {
  const desc = cache.cacheDesc;
  const row = desc.size / desc.batchSize;
  for (let t = 0; t < desc.numTensors; t++) {
    deviceIds.forEach((deviceId, d) => {
      const bytes = kvBytes(dd, cache, t, d);
      const bad = firstMismatch(bytes, dstRow * row, size, seed, t, deviceId, srcRow * row);
      assert.equal(bad, -1, `tensor ${t} device ${deviceId}: byte ${bad} differs`);
      const outside = bytes.findIndex((b, i) => b !== 0 && (i < dstRow * row || i >= dstRow * row + size));
      assert.equal(outside, -1, `tensor ${t} device ${deviceId}: byte ${outside} outside the pulled range changed`);
    });
  }
}

/** A DECODER in cache-manager mode, with or without remote cache access. */
export async function openManagerDecoder(
  remote = false,
  poolBytes = 16 << 20,
  syncKvTimeout = 10_000,
): Promise<LLMDataDist> {
  const dd = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  await dd.init({
    "llm.EnableCacheManager": "1",
    "llm.EnableRemoteCacheAccessible": remote ? "1" : "0",
    "llm.MemPoolConfig": JSON.stringify({ memory_size: poolBytes }),
    "llm.SyncKvCacheWaitTime": String(syncKvTimeout),
  });
  return dd;
}

/** The bytes of tensor `tensor` of a cache-manager Cache (device 0), in place. */
export function cacheBytes(dd: LLMDataDist, cache: Cache, tensor = 0): Uint8Array {
  const view = dd.cacheManager.getCacheTensorViews(cache, tensor)[0];
  return new Uint8Array(view.data.buffer, view.data.byteOffset, view.byteLength);
}

/** Tensor `tensor` of cache `cache` of a test/support/push_prompt_process.ts child, as it is now. */
export async function dump(child: Child, cache: number, tensor: number): Promise<Uint8Array> {
  child.send({ dump: cache, tensor });
  const { bytes } = await child.next();
  return new Uint8Array(Buffer.from(bytes as string, "base64"));
}

/** Why UCX cannot be loaded here (a DECODER that asks for it by name says at init), or undefined. */
export async function ucxMissing(): Promise<string | undefined> {
  const probe = new LLMDataDist(LLMRole.DECODER, freshClusterId());
  try {
    await probe.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llmdd.transport": "ucx" });
    probe.finalize();
    return undefined;
  } catch (e) {
    if (e instanceof LLMException && e.statusCode === LLMStatusCode.LLM_FEATURE_NOT_ENABLED) return e.message;
    throw e;
  }
}
