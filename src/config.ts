/**
 * `LLMConfig` (upstream `LLMConfig`) and the reading of the option dictionary
 * that `LLMDataDist.init()` receives.
 *
 * @module
 */
import { LLMException, ValueError } from "./errors.ts";
import { MAX_DEVICES } from "./native/symbols.ts";
import { LLMStatusCode } from "./status.ts";
import { describe, INT32_MAX, requireInt, requireIntIn, requireString } from "./validate.ts";

/** Upstream option keys (`llm_datadist` Python `LLMConfig.generate_options`). */
export const OptionKey = {
  DEVICE_ID: "ge.exec.deviceId",
  SYNC_KV_TIMEOUT: "llm.SyncKvCacheWaitTime",
  LISTEN_IP_INFO: "llm.listenIpInfo",
  POOL_SIZE: "ge.flowGraphMemMaxSize",
  /** The first device id, emitted beside `ge.exec.deviceId` (upstream `gen_options`). */
  SESSION_DEVICE_ID: "ge.session_device_id",
  MEM_UTILIZATION: "llm.MemoryUtilization",
  GLOBAL_RESOURCE_CONFIG: "llm.GlobalResourceConfig",
  ENABLE_CACHE_MANAGER: "llm.EnableCacheManager",
  ENABLE_REMOTE_CACHE_ACCESSIBLE: "llm.EnableRemoteCacheAccessible",
  MEM_POOL_CONFIG: "llm.MemPoolConfig",
  HOST_MEM_POOL_CONFIG: "llm.HostMemPoolConfig",
  ENABLE_SWITCH_ROLE: "llm.EnableSwitchRole",
} as const;

/**
 * This library's own option keys (upstream has none of them; the `llmdd.`
 * prefix says so). Pass them with the other options to `init()`.
 *
 * - `LINK_SECRET`: the secret links are authenticated with (16 to 256 bytes,
 *   the same on a PROMPT and its DECODERs); required to listen beyond loopback.
 * - `TRANSPORT`: how a DECODER's links move data, a {@link Transport}.
 * - `RESERVE_POOLS`: `"1"` takes every device pool whole at `init()` (host
 *   backend; a shortage is `LLM_DEVICE_OUT_OF_MEMORY` there), as a device
 *   pool is on an NPU; `"0"` (the default) lets pools fill as caches need them.
 *
 * @example
 * ```ts
 * import { LLMDataDist, LLMRole, LlmddOptionKey, type Transport } from "llm-datadist";
 * const transport: Transport = "shm"; // links on this machine only, over shared memory
 * await using decoder = new LLMDataDist(LLMRole.DECODER, 7n);
 * await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20), [LlmddOptionKey.TRANSPORT]: transport });
 * ```
 */
export const LlmddOptionKey = {
  LINK_SECRET: "llmdd.linkSecret",
  TRANSPORT: "llmdd.transport",
  RESERVE_POOLS: "llmdd.reservePools",
} as const;

/**
 * Values of `llmdd.transport` (host backend): how a DECODER's links move data.
 *
 * - `"auto"` (the default): shared memory to a PROMPT on this machine, UCX to
 *   one on another machine (its address is not one of this machine's).
 * - `"shm"`: shared memory only; a PROMPT on another machine cannot be linked.
 * - `"ucx"`: one-sided reads over UCX (`libucp.so.0`, Debian package
 *   `libucx0`), also on one machine. UCX reads its own variables (`UCX_TLS`,
 *   `UCX_NET_DEVICES`, ...) from the environment when it is first loaded.
 *   `init()` fails with `LLM_FEATURE_NOT_ENABLED`, naming the package, where
 *   UCX cannot be loaded.
 *
 * @example
 * ```ts
 * import { LLMDataDist, LLMRole, type Transport } from "llm-datadist";
 * const transport: Transport = "auto";
 * await using decoder = new LLMDataDist(LLMRole.DECODER, 8n);
 * await decoder.init({ "ge.flowGraphMemMaxSize": String(1 << 20), "llmdd.transport": transport });
 * ```
 */
export type Transport = "auto" | "shm" | "ucx";

const TRANSPORTS: readonly string[] = ["auto", "shm", "ucx"] satisfies Transport[];

/** Upstream default of `sync_kv_timeout`, in milliseconds. */
export const DEFAULT_SYNC_KV_TIMEOUT_MS = 1000;
/** Upstream default of `mem_utilization` (configs.py), emitted when not set. */
export const DEFAULT_MEM_UTILIZATION = 0.95;

function paramInvalid(message: string): LLMException {
  return new LLMException(LLMStatusCode.LLM_PARAM_INVALID, message);
}

// Upstream's order of checks (configs.py, device_id setter): the type of every
// id (TypeError), then `>= 0` (LLMException(LLM_PARAM_INVALID)), then int32
// (ValueError). Its count and duplicate checks are this library's own.
function checkDeviceIds(value: unknown): number[] {
  const ids = Array.isArray(value) ? Array.from(value) : [value]; // Array.from: holes become undefined
  const name = (i: number) => Array.isArray(value) ? `deviceId[${i}]` : "deviceId";
  const numbers = ids.map((id, i) => requireInt(id, name(i)));
  numbers.forEach((n, i) => {
    if (n < 0) throw paramInvalid(`${name(i)} must be >= 0, got ${n}`);
  });
  if (ids.length < 1 || ids.length > MAX_DEVICES) {
    throw new ValueError(`deviceId must list 1 to ${MAX_DEVICES} devices, got ${ids.length}`);
  }
  const seen = new Set<number>();
  return numbers.map((id, i) => {
    const n = requireIntIn(id, name(i), 0, INT32_MAX);
    if (seen.has(n)) throw new ValueError(`deviceId lists device ${n} twice`);
    seen.add(n);
    return n;
  });
}

// Upstream (configs.py, sync_kv_timeout setter): an int or a str (else
// TypeError); a str must be all digits and the value > 0 (else
// LLMException(LLM_PARAM_INVALID)); then int32 (else ValueError).
function checkSyncKvTimeout(value: unknown): number {
  const name = "syncKvTimeout";
  if (typeof value === "string") {
    if (!/^[0-9]+$/.test(value)) throw paramInvalid(`${name} must be digits, got ${describe(value)}`);
    value = Number(value);
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer number of milliseconds, got ${describe(value)}`);
  }
  const n = value + 0;
  if (n <= 0) throw paramInvalid(`${name} must be > 0, got ${n}`);
  return requireIntIn(n, name, 1, INT32_MAX);
}

// Upstream (configs.py, mem_utilization setter): a float (else TypeError) in
// [0, 1] (else LLMException(LLM_PARAM_INVALID)). Every JavaScript number is a
// float, so 1 is accepted as upstream accepts 1.0.
function checkMemUtilization(value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(`memUtilization must be a number in [0, 1], got ${describe(value)}`);
  }
  if (!(value >= 0 && value <= 1)) throw paramInvalid(`memUtilization must be in [0, 1], got ${value}`);
  return value + 0;
}

// Python's str(float), which upstream writes into the option: "1.0", "0.95", "5e-05".
function pythonFloat(value: number): string {
  if (Number.isInteger(value)) return `${value}.0`;
  if (value < 1e-4) return value.toExponential().replace(/e-(\d)$/, "e-0$1");
  return String(value);
}

// The option llm.SyncKvCacheWaitTime given to init() by hand (blanks around the digits allowed).
function checkTimeout(value: unknown, name: string): number {
  const n = typeof value === "string" && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== "number") {
    throw new TypeError(`${name} must be an integer number of milliseconds, got ${describe(value)}`);
  }
  return requireIntIn(n, name, 1, INT32_MAX);
}

// Upstream's bool setters (check_isinstance(..., [bool])): anything else is a TypeError.
function checkBool(value: unknown, name: string): boolean {
  if (typeof value !== "boolean") throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}

function checkListenIpInfo(value: unknown): string {
  const text = requireString(value, "listenIpInfo");
  const match = /^(.+):(\d{1,5})$/.exec(text);
  if (!match || Number(match[2]) > 65535 || /\s/.test(match[1])) {
    throw new ValueError(`listenIpInfo must be "ip:port" with a port in [0, 65535], got ${describe(text)}`);
  }
  return text;
}

/**
 * Configuration of an LLMDataDist instance; `generateOptions()` turns it into
 * the option dictionary that `LLMDataDist.init()` takes.
 *
 * @example
 * ```ts
 * import { LLMConfig } from "llm-datadist";
 * const config = new LLMConfig();
 * config.deviceId = [0, 1];
 * config.syncKvTimeout = 500;
 * config.geOptions = { "ge.flowGraphMemMaxSize": String(64 << 20) };
 * console.log(config.generateOptions());
 * // { "ge.flowGraphMemMaxSize": "67108864", "ge.exec.deviceId": "0;1", "ge.session_device_id": "0",
 * //   "llm.SyncKvCacheWaitTime": "500", "llm.MemoryUtilization": "0.95" }
 * ```
 */
export class LLMConfig {
  #deviceId: number | number[] | undefined;
  #syncKvTimeout: number | undefined;
  #listenIpInfo: string | undefined;
  #memUtilization: number | undefined;
  #globalResourceConfig: string | undefined;
  #geOptions: Record<string, string> = {};
  #enableCacheManager: boolean | undefined;
  #enableRemoteCacheAccessible: boolean | undefined;
  #memPoolConfig = "";
  #hostMemPoolConfig = "";
  #enableSwitchRole = false;

  /** The device id, or ids, of this instance (`ge.exec.deviceId`); default 0. */
  get deviceId(): number | number[] {
    const ids = this.#deviceId ?? 0;
    return Array.isArray(ids) ? [...ids] : ids;
  }
  set deviceId(value: number | number[]) {
    const ids = checkDeviceIds(value);
    this.#deviceId = Array.isArray(value) ? ids : ids[0];
  }

  /** Time limit of cache operations in milliseconds (`llm.SyncKvCacheWaitTime`); default 1000. */
  get syncKvTimeout(): number {
    return this.#syncKvTimeout ?? DEFAULT_SYNC_KV_TIMEOUT_MS;
  }
  set syncKvTimeout(value: number) {
    this.#syncKvTimeout = checkSyncKvTimeout(value);
  }

  /**
   * The share of device memory the engine may use, in [0, 1]
   * (`llm.MemoryUtilization`); default 0.95, which `generateOptions()` emits
   * unless `geOptions` carries the key. The host backend ignores it.
   */
  get memUtilization(): number {
    return this.#memUtilization ?? DEFAULT_MEM_UTILIZATION;
  }
  set memUtilization(value: number) {
    this.#memUtilization = checkMemUtilization(value);
  }

  /**
   * Upstream's global resource configuration, a JSON string passed as it is
   * (`llm.GlobalResourceConfig`); `""` until set, and emitted only once set.
   * The host backend ignores it.
   */
  get globalResourceConfig(): string {
    return this.#globalResourceConfig ?? "";
  }
  set globalResourceConfig(value: string) {
    this.#globalResourceConfig = requireString(value, "globalResourceConfig");
  }

  /** Where a PROMPT instance listens, `"ip:port"` (`llm.listenIpInfo`). */
  get listenIpInfo(): string | undefined {
    return this.#listenIpInfo;
  }
  set listenIpInfo(value: string) {
    this.#listenIpInfo = checkListenIpInfo(value);
  }

  /**
   * Upstream's V2 mode (`llm.EnableCacheManager`): `LLMDataDist.cacheManager`
   * instead of `kvCacheManager`; default false, emitted as "1"/"0" once set.
   */
  get enableCacheManager(): boolean {
    return this.#enableCacheManager ?? false;
  }
  set enableCacheManager(value: boolean) {
    this.#enableCacheManager = checkBool(value, "enableCacheManager");
  }

  /**
   * Whether linked peers may reach registered and allocated caches directly
   * (`llm.EnableRemoteCacheAccessible`); default false, emitted once set.
   */
  get enableRemoteCacheAccessible(): boolean {
    return this.#enableRemoteCacheAccessible ?? false;
  }
  set enableRemoteCacheAccessible(value: boolean) {
    this.#enableRemoteCacheAccessible = checkBool(value, "enableRemoteCacheAccessible");
  }

  /**
   * The device memory pool of the cache manager, upstream's JSON
   * `'{"memory_size": N}'` (optionally `"page_shift"`) (`llm.MemPoolConfig`);
   * `""` = none, and emitted only when not empty. The engine checks the JSON.
   */
  get memPoolConfig(): string {
    return this.#memPoolConfig;
  }
  set memPoolConfig(value: string) {
    this.#memPoolConfig = requireString(value, "memPoolConfig");
  }

  /** The host memory pool, in the same format (`llm.HostMemPoolConfig`); where HOST caches go. */
  get hostMemPoolConfig(): string {
    return this.#hostMemPoolConfig;
  }
  set hostMemPoolConfig(value: string) {
    this.#hostMemPoolConfig = requireString(value, "hostMemPoolConfig");
  }

  /** Whether `LLMDataDist.switchRole` may be called (`llm.EnableSwitchRole`, emitted as "1" when true). */
  get enableSwitchRole(): boolean {
    return this.#enableSwitchRole;
  }
  set enableSwitchRole(value: boolean) {
    this.#enableSwitchRole = checkBool(value, "enableSwitchRole");
  }

  /** Extra options passed as they are (`ge.flowGraphMemMaxSize` = pool bytes per device). */
  get geOptions(): Record<string, string> {
    return { ...this.#geOptions };
  }
  set geOptions(value: Record<string, string>) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new TypeError(`geOptions must be an object of string values, got ${describe(value)}`);
    }
    const copy: Record<string, string> = {};
    for (const [key, option] of Object.entries(value)) {
      copy[key] = requireString(option, `geOptions[${JSON.stringify(key)}]`);
    }
    this.#geOptions = copy;
  }

  /**
   * The option dictionary for `LLMDataDist.init()`, with upstream keys:
   * `geOptions`, then what was set here. A value set here wins over the same
   * key in `geOptions`; a default (device 0, 1000 ms, 0.95) fills a key only
   * when `geOptions` lacks it. `ge.session_device_id` (the first device id)
   * goes with `ge.exec.deviceId`.
   */
  generateOptions(): Record<string, string> {
    const options: Record<string, string> = { ...this.#geOptions };
    if (this.#deviceId !== undefined || options[OptionKey.DEVICE_ID] === undefined) {
      const ids = checkDeviceIds(this.deviceId);
      options[OptionKey.DEVICE_ID] = ids.join(";");
      options[OptionKey.SESSION_DEVICE_ID] = String(ids[0]);
    }
    if (this.#syncKvTimeout !== undefined || options[OptionKey.SYNC_KV_TIMEOUT] === undefined) {
      options[OptionKey.SYNC_KV_TIMEOUT] = String(this.syncKvTimeout);
    }
    if (this.#listenIpInfo !== undefined) options[OptionKey.LISTEN_IP_INFO] = this.#listenIpInfo;
    if (this.#globalResourceConfig !== undefined) {
      options[OptionKey.GLOBAL_RESOURCE_CONFIG] = this.#globalResourceConfig;
    }
    if (this.#memUtilization !== undefined || options[OptionKey.MEM_UTILIZATION] === undefined) {
      options[OptionKey.MEM_UTILIZATION] = pythonFloat(this.memUtilization);
    }
    // Upstream's _add_memory_options and gen_options: pools when not empty, the
    // two switches once set, EnableSwitchRole only when true.
    if (this.#memPoolConfig) options[OptionKey.MEM_POOL_CONFIG] = this.#memPoolConfig;
    if (this.#hostMemPoolConfig) options[OptionKey.HOST_MEM_POOL_CONFIG] = this.#hostMemPoolConfig;
    if (this.#enableCacheManager !== undefined) {
      options[OptionKey.ENABLE_CACHE_MANAGER] = this.#enableCacheManager ? "1" : "0";
    }
    if (this.#enableRemoteCacheAccessible !== undefined) {
      options[OptionKey.ENABLE_REMOTE_CACHE_ACCESSIBLE] = this.#enableRemoteCacheAccessible ? "1" : "0";
    }
    if (this.#enableSwitchRole) options[OptionKey.ENABLE_SWITCH_ROLE] = "1";
    return options;
  }
}

/** What `init()` takes from the option dictionary, checked. */
export interface EngineOptions {
  /** Device ids in configured order. */
  readonly deviceIds: readonly number[];
  /** `syncKvTimeout` in milliseconds. */
  readonly syncKvTimeout: number;
  /** All options as `key=value` lines for the native library. */
  readonly text: string;
  /** `llm.EnableCacheManager` is "1": the V2 cache manager mode. */
  readonly cacheManager: boolean;
  /** `llm.EnableRemoteCacheAccessible` is "1". */
  readonly remoteCacheAccessible: boolean;
  /** `llm.MemPoolConfig` is given and not empty. */
  readonly memPool: boolean;
  /** `llm.HostMemPoolConfig` is given and not empty. */
  readonly hostMemPool: boolean;
}

/** Checks an option dictionary (from `LLMConfig.generateOptions()` or written by hand). */
export function readEngineOptions(options: LLMConfig | Record<string, string>): EngineOptions {
  const record = options instanceof LLMConfig ? options.generateOptions() : options;
  if (typeof record !== "object" || record === null || Array.isArray(record)) {
    throw new TypeError(`options must be an LLMConfig or an object of string values, got ${describe(record)}`);
  }
  const lines: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    requireString(value, `options[${JSON.stringify(key)}]`);
    if (key === "" || /[=\n\r\0]/.test(key) || /[\n\r\0]/.test(value)) {
      throw new ValueError(`option ${JSON.stringify(key)} contains a character not allowed in options`);
    }
    if (key.trim() !== key) {
      // The native side would read " ge.exec.deviceId" as ge.exec.deviceId; this side would not.
      throw new ValueError(`option key ${JSON.stringify(key)} has blanks around it`);
    }
    lines.push(`${key}=${value}`);
  }
  const ids = record[OptionKey.DEVICE_ID] ?? "0";
  if (!/^\s*\d+\s*(;\s*\d+\s*)*$/.test(ids)) {
    throw new ValueError(`option ${OptionKey.DEVICE_ID} must be device ids separated by ";", got ${describe(ids)}`);
  }
  const transport = record[LlmddOptionKey.TRANSPORT];
  if (transport !== undefined && !TRANSPORTS.includes(transport)) {
    // The native library says the same; said here, it names the values as TypeScript spells them.
    throw paramInvalid(`option ${LlmddOptionKey.TRANSPORT} ${describe(transport)} is not "auto", "shm" or "ucx"`);
  }
  const timeout = record[OptionKey.SYNC_KV_TIMEOUT];
  return {
    deviceIds: checkDeviceIds(ids.split(";").map(Number)),
    syncKvTimeout: timeout === undefined
      ? DEFAULT_SYNC_KV_TIMEOUT_MS
      : checkTimeout(timeout, `option ${OptionKey.SYNC_KV_TIMEOUT}`),
    text: lines.join("\n"),
    // As upstream's LLMDataDist._setup_engine_option and CacheManager.__init__.
    cacheManager: record[OptionKey.ENABLE_CACHE_MANAGER] === "1",
    remoteCacheAccessible: record[OptionKey.ENABLE_REMOTE_CACHE_ACCESSIBLE] === "1",
    memPool: (record[OptionKey.MEM_POOL_CONFIG] ?? "").length > 0,
    hostMemPool: (record[OptionKey.HOST_MEM_POOL_CONFIG] ?? "").length > 0,
  };
}
