// Formatting shared by the benchmarks' tables.

/** Bytes per nanosecond is GB/s (10^9 bytes per second). */
export function gbps(bytes: number, ns: number): string {
  return Number.isFinite(ns) ? `${(bytes / ns).toFixed(2)} GB/s` : "n/a";
}

/** `x` as a factor, for example `1.50×`. */
export function ratio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}×` : "n/a";
}

/** A goal's "met?" cell. */
export function yes(ok: boolean): string {
  return ok ? "yes" : "**no**";
}
