/**
 * `LLMClusterInfo`: whom to link to (upstream `LLMClusterInfo`).
 *
 * @module
 */
import { LLMRole } from "./enums.ts";
import { ValueError } from "./errors.ts";
import { describe, requireIntIn, requireUint64 } from "./validate.ts";

/** One `ip:port` of a cluster. */
export interface IpInfo {
  /** Dotted IPv4 address. */
  readonly ip: string;
  /** TCP port. */
  readonly port: number;
}

function ipv4(value: unknown, name: string): string {
  if (typeof value === "number") {
    // Upstream also takes the address as an integer: the one its own string
    // conversion makes (configs.py trans_str_ip: inet_aton bytes read
    // little-endian), so the first octet is the lowest byte and 16777343
    // (0x0100007F) is 127.0.0.1.
    const n = requireIntIn(value, name, 0, 0xFFFFFFFF);
    return [n & 0xFF, (n >>> 8) & 0xFF, (n >>> 16) & 0xFF, n >>> 24].join(".");
  }
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be an IPv4 string or integer, got ${describe(value)}`);
  }
  const parts = value.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new ValueError(`${name} must be a dotted IPv4 address, got ${describe(value)}`);
  }
  return value;
}

/**
 * Describes a remote cluster for `linkClusters` / `unlinkClusters`: its id,
 * its role, and the addresses to reach it by.
 *
 * @example
 * ```ts
 * import { LLMClusterInfo, LLMRole } from "llm-datadist";
 * const prompt = new LLMClusterInfo();
 * prompt.remoteClusterId = 1n;
 * prompt.remoteRoleType = LLMRole.PROMPT;
 * prompt.appendLocalIpInfo("127.0.0.1", 0);
 * prompt.appendRemoteIpInfo("127.0.0.1", 26000);
 * ```
 */
export class LLMClusterInfo {
  #remoteClusterId = 0n;
  #remoteRoleType: LLMRole = LLMRole.PROMPT;
  readonly #local: IpInfo[] = [];
  readonly #remote: IpInfo[] = [];

  /** The remote cluster's id (uint64). */
  get remoteClusterId(): bigint {
    return this.#remoteClusterId;
  }
  set remoteClusterId(value: bigint | number) {
    this.#remoteClusterId = requireUint64(value, "remoteClusterId");
  }

  /** The remote cluster's role; default PROMPT. */
  get remoteRoleType(): LLMRole {
    return this.#remoteRoleType;
  }
  set remoteRoleType(value: LLMRole) {
    if (typeof value !== "number") throw new TypeError(`remoteRoleType must be an LLMRole, got ${describe(value)}`);
    if (value !== LLMRole.PROMPT && value !== LLMRole.DECODER && value !== LLMRole.MIX) {
      throw new ValueError(`remoteRoleType ${value} is not an LLMRole`);
    }
    this.#remoteRoleType = value;
  }

  /**
   * Adds a local address (recorded; the host backend links over loopback TCP).
   * `ip` is a dotted string or, as upstream, an integer whose lowest byte is
   * the first octet (`16777343` is `127.0.0.1`).
   */
  appendLocalIpInfo(ip: string | number, port: number): void {
    this.#local.push({ ip: ipv4(ip, "ip"), port: requireIntIn(port, "port", 0, 65535) });
  }

  /**
   * Adds an address of the remote cluster; links use the first one. `ip` is
   * a dotted string or, as upstream, an integer whose lowest byte is the first
   * octet (`16777343` is `127.0.0.1`).
   */
  appendRemoteIpInfo(ip: string | number, port: number): void {
    this.#remote.push({ ip: ipv4(ip, "ip"), port: requireIntIn(port, "port", 0, 65535) });
  }

  /** The local addresses added so far. */
  get localIpInfoList(): readonly IpInfo[] {
    return [...this.#local];
  }

  /** The remote addresses added so far. */
  get remoteIpInfoList(): readonly IpInfo[] {
    return [...this.#remote];
  }
}
