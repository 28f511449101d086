/**
 * `MemInfo` and `MemType` (upstream V2 `MemInfo`, `Memtype`): memory given to
 * `CacheManager.remapRegisteredMemory`.
 *
 * @module
 */
import { describe } from "./validate.ts";

/** Kinds of memory, as upstream `Memtype`. */
export const MemType = {
  MEM_TYPE_DEVICE: 0,
  MEM_TYPE_HOST: 1,
} as const;

/** A `MemType` value. */
export type MemType = (typeof MemType)[keyof typeof MemType];

/**
 * A range of memory: its kind, address and size in bytes.
 *
 * @example
 * ```ts
 * import { MemInfo, MemType } from "llm-datadist";
 * const info = new MemInfo(MemType.MEM_TYPE_DEVICE, 0x10000n, 4096);
 * console.log(info.size); // 4096
 * ```
 */
export class MemInfo {
  /** The kind of memory. */
  readonly memType: MemType;
  /** The first byte's address. */
  readonly addr: bigint;
  /** Bytes. */
  readonly size: number;

  /**
   * Upstream checks only the types here (TypeError); the values are checked
   * by `remapRegisteredMemory`.
   */
  constructor(memType: MemType, addr: bigint, size: number) {
    if (memType !== MemType.MEM_TYPE_DEVICE && memType !== MemType.MEM_TYPE_HOST) {
      throw new TypeError(`memType must be a MemType, got ${describe(memType)}`);
    }
    if (typeof addr !== "bigint") throw new TypeError(`addr must be a bigint, got ${describe(addr)}`);
    if (typeof size !== "number" || !Number.isInteger(size)) {
      throw new TypeError(`size must be an integer, got ${describe(size)}`);
    }
    this.memType = memType;
    this.addr = addr;
    this.size = size;
  }

  /** `MemInfo(memType=…, addr=…, size=…)`. */
  toString(): string {
    return `MemInfo(memType=${this.memType}, addr=${this.addr}, size=${this.size})`;
  }
}
