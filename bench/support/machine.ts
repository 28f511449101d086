// What the benchmarks print about where they ran: the runtime, the platform,
// the CPU and the load average. Works on Bun, Deno and Node.

import { readFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import process from "node:process";

// deno-lint-ignore no-explicit-any
const g = globalThis as unknown as Record<string, any>;

/** The runtime, its version and its JavaScript engine's. */
export function runtimeName(): string {
  if (g.Deno) return `Deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  if (g.Bun) return `Bun ${g.Bun.version} (JavaScriptCore, revision ${String(g.Bun.revision).slice(0, 9)})`;
  return `Node ${process.version} (V8 ${process.versions.v8})`;
}

/** `os-arch`, for example `linux-x64`. */
export function platformName(): string {
  if (g.Deno) return `${g.Deno.build.os}-${g.Deno.build.arch}`;
  return `${process.platform}-${process.arch}`;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The CPU's model, clock and number of logical CPUs. */
export function cpuName(): string {
  // Deno wants --allow-all for /proc/cpuinfo, but gives node:os with --allow-sys.
  const info = readText("/proc/cpuinfo");
  if (info === undefined) {
    try {
      const list = cpus();
      return `${list[0]?.model ?? "unknown model"}, ${list.length} logical CPUs (node:os)`;
    } catch {
      return "unknown (/proc/cpuinfo not readable; on Deno add --allow-sys)";
    }
  }
  const model = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? "unknown model";
  const mhz = /^cpu MHz\s*:\s*(.*)$/m.exec(info)?.[1];
  const count = (info.match(/^processor\s*:/gm) ?? []).length;
  return `${model}${mhz ? ` @ ${Math.round(Number(mhz))} MHz` : ""}, ${count} logical CPUs`;
}

/** The 1, 5 and 15 minute load averages, now. */
export function loadAverage(): string {
  const proc = readText("/proc/loadavg");
  if (proc !== undefined) return proc.split(" ").slice(0, 3).join(" ");
  try {
    return loadavg().map((x) => x.toFixed(2)).join(" ");
  } catch {
    return "unknown";
  }
}
