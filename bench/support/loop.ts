// The benchmarks' timed loop and how its numbers are printed.
//
// Not mitata: mitata runs each benchmark to completion before the next, and on
// a shared machine the noise drifts within seconds while every number here is
// a ratio of two measurements. timedLoop instead interleaves all functions,
// one call each per round, in an order that alternates (A B C, C B A, ...), so
// both sides of each ratio sample the same noise; each reported time is the
// median of single calls.

import { now } from "./clock.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

export interface Stats {
  median: number;
  p10: number;
  p90: number;
  min: number;
  n: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Median, 10th and 90th percentiles and minimum of `samples` (ns). */
export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p10: quantile(s, 0.1), p90: quantile(s, 0.9), min: s[0], n: s.length };
}

/**
 * Runs every function of `fns` once per round, in an order that alternates
 * between rounds (forward, backward), `warmup` rounds unrecorded and then
 * `iterations` recorded; returns each function's per-call times.
 *
 * `settle` untimed calls of the same function come right before each timed
 * one, so the timed call finds the caches as that function leaves them, not
 * as the previous function did: a copy with ordinary stores leaves dirty lines
 * that the next copy pays to write back, and with `settle` 0 a copy using
 * non-temporal stores would pay the plain memcpy's.
 */
export async function timedLoop(
  fns: Record<string, () => unknown>,
  warmup: number,
  iterations: number,
  settle = 0,
): Promise<Record<string, Stats>> {
  const names = Object.keys(fns);
  const reversed = [...names].reverse();
  const samples: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < warmup + iterations; i++) {
    for (const name of i % 2 === 0 ? names : reversed) {
      const fn = fns[name];
      for (let k = 0; k < settle; k++) {
        const result = fn();
        if (result instanceof Promise) await result;
      }
      const t0 = now();
      const result = fn();
      if (result instanceof Promise) await result;
      const t1 = now();
      if (i >= warmup) samples[name].push(t1 - t0);
    }
  }
  return Object.fromEntries(names.map((n) => [n, stats(samples[n])]));
}

/** A byte count as `4 KiB`, `16 MiB`, `1.50 MiB` or `64 B`. */
export function size(bytes: number): string {
  if (bytes >= MiB && bytes % MiB === 0) return `${bytes / MiB} MiB`;
  if (bytes >= KiB && bytes % KiB === 0 && bytes < MiB) return `${bytes / KiB} KiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(2)} MiB`;
  return `${bytes} B`;
}

/** Nanoseconds as `850 ns`, `12.3 µs` or `4.56 ms`. */
export function time(ns: number): string {
  if (!Number.isFinite(ns)) return "n/a";
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  return `${(ns / 1e6).toFixed(2)} ms`;
}
