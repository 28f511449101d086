// Shared by the test files; runs unchanged on Deno, Bun and Node.
import assert from "node:assert/strict";
import process from "node:process";
import { LLMDataDist, LLMException, LLMRole, type LLMStatusCode } from "../mod.ts";

/** Options for {@link openInstance}. */
export interface OpenOptions {
  devices?: number[];
  poolBytes?: number;
  syncKvTimeout?: number;
  role?: LLMRole;
}

// Cluster ids are owned machine-wide by live PROMPT instances: keep each test
// process's ids apart from other processes'.
let nextCluster = BigInt(process.pid) << 20n;

/** A cluster id no other instance of this process has used. */
export function freshClusterId(): bigint {
  return nextCluster++;
}

/**
 * An initialized host-backend instance (finalize it, or `await using`). A
 * DECODER unless told otherwise: its pools are private memory, where a PROMPT's
 * are shared memory.
 */
export async function openInstance(options: OpenOptions = {}): Promise<LLMDataDist> {
  const dd = new LLMDataDist(options.role ?? LLMRole.DECODER, freshClusterId());
  await dd.init({
    "ge.exec.deviceId": (options.devices ?? [0]).join(";"),
    "ge.flowGraphMemMaxSize": String(options.poolBytes ?? 64 << 20),
    "llm.SyncKvCacheWaitTime": String(options.syncKvTimeout ?? 1000),
  });
  return dd;
}

/** Asserts that `action` throws or rejects with `LLMException(code)`; returns it. */
export async function rejectsWithStatus(
  action: Promise<unknown> | (() => unknown),
  code: LLMStatusCode,
  message?: RegExp,
): Promise<LLMException> {
  let caught: unknown;
  try {
    await (typeof action === "function" ? action() : action);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof LLMException, `expected an LLMException, got ${caught}`);
  assert.equal(caught.statusCode, code, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Asserts that `action` throws or rejects with an instance of `cls`; returns it. */
export async function rejectsWith<E extends Error>(
  action: Promise<unknown> | (() => unknown),
  cls: new (...args: never[]) => E,
  message?: RegExp,
): Promise<E> {
  let caught: unknown;
  try {
    await (typeof action === "function" ? action() : action);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof cls, `expected a ${cls.name}, got ${caught}`);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
