/**
 * Argument checks shared by every public call. Like upstream Python: a value of
 * the wrong type is a `TypeError`; a value of the right type outside its range
 * is a `ValueError`. Each message names the argument.
 *
 * @module
 */
import { ValueError } from "./errors.ts";

export const INT32_MIN = -0x80000000;
export const INT32_MAX = 0x7FFFFFFF;
export const UINT32_MAX = 0xFFFFFFFF;
/** -2^63, the least int64, as a number (exact). */
export const INT64_MIN = -(2 ** 63);
export const UINT64_MAX = 0xFFFF_FFFF_FFFF_FFFFn;

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value);
    case "bigint":
      return `${value}n`;
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "function":
      return "a function";
    case "symbol":
      return "a symbol";
    default:
      return Array.isArray(value) ? "an array" : `an object (${value?.constructor?.name ?? "null prototype"})`;
  }
}

/** Checks that `value` is an integer number; returns it. */
export function requireInt(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${describe(value)}`);
  }
  return value;
}

/** Checks that `value` is an array and returns its elements, holes read as `undefined`. */
export function requireArray(value: unknown, name: string, of: string): unknown[] {
  if (!Array.isArray(value)) throw new TypeError(`${name} must be an array of ${of}, got ${describe(value)}`);
  // Array.from visits every index; forEach and map would skip a sparse array's holes.
  return Array.from(value);
}

/** Checks that `value` is an integer within [min, max]; returns it. */
export function requireIntIn(value: unknown, name: string, min: number, max: number): number {
  const n = requireInt(value, name);
  if (n < min || n > max) {
    throw new ValueError(`${name} must be in [${min}, ${max}], got ${n}`);
  }
  return n;
}

/** Checks that `value` is an integer that fits in int32; returns it. */
export function requireInt32(value: unknown, name: string): number {
  return requireIntIn(value, name, INT32_MIN, INT32_MAX);
}

/** Checks that `value` is a uint64 (bigint, or a non-negative safe integer); returns it as bigint. */
export function requireUint64(value: unknown, name: string): bigint {
  if (typeof value === "bigint") {
    if (value < 0n || value > UINT64_MAX) {
      throw new ValueError(`${name} must be in [0, 2^64 - 1], got ${value}n`);
    }
    return value;
  }
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be a bigint or an integer, got ${describe(value)}`);
  }
  if (value < 0 || !Number.isSafeInteger(value)) {
    throw new ValueError(`${name} must be a non-negative safe integer (or a bigint), got ${value}`);
  }
  return BigInt(value);
}

/** Checks that `value` is a string; returns it. */
export function requireString(value: unknown, name: string): string {
  if (typeof value !== "string") {
    throw new TypeError(`${name} must be a string, got ${describe(value)}`);
  }
  return value;
}

/** Checks that `value` is an instance of `cls`; returns it. */
export function requireInstance<T>(
  value: unknown,
  cls: abstract new (...args: never[]) => T,
  name: string,
): T {
  if (!(value instanceof cls)) {
    throw new TypeError(`${name} must be a ${cls.name}, got ${describe(value)}`);
  }
  return value;
}

/** Checks an optional list of `cls` instances (`undefined`: none); each bad item is named by its index. */
export function requireInstances<T>(
  value: unknown,
  cls: abstract new (...args: never[]) => T,
  name: string,
): T[] {
  if (value === undefined) return [];
  return requireArray(value, name, cls.name).map((item, i) => requireInstance(item, cls, `${name}[${i}]`));
}
