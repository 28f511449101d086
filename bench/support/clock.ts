// The benchmarks' clock.

// deno-lint-ignore no-explicit-any
const g = globalThis as unknown as Record<string, any>;

/** Nanoseconds, monotonic. */
export const now: () => number = typeof g.Bun?.nanoseconds === "function"
  ? g.Bun.nanoseconds
  : () => performance.now() * 1e6;
